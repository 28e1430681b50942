package ecr

import "errors"

// Sentinel errors. Errors from this package that fit one wrap it; test with
// errors.Is.
var (
	// ErrNotECR: the host is not a private Amazon ECR registry.
	ErrNotECR = errors.New("not an Amazon ECR registry")
	// ErrInvalidHost: the host has ECR's form but a bad registry ID or region.
	ErrInvalidHost = errors.New("invalid Amazon ECR registry hostname")
	// ErrNoCredentials: the AWS SDK's default chain found no credentials.
	// The error names every place it looked.
	ErrNoCredentials = errors.New("no AWS credentials found")
	// ErrCredentials: credentials are configured but could not be obtained
	// (an expired SSO session, a failing credential_process, a web identity
	// token AWS STS refused, an unknown profile, ...).
	ErrCredentials = errors.New("AWS credentials unavailable")
	// ErrCredentialsRejected: AWS refused the credentials (unknown access
	// key, bad signature, expired session token). The error carries AWS's
	// error code and message.
	ErrCredentialsRejected = errors.New("AWS rejected the credentials")
	// ErrAccessDenied: the credentials are valid but not allowed to call
	// ecr:GetAuthorizationToken.
	ErrAccessDenied = errors.New("AWS denied ecr:GetAuthorizationToken")
	// ErrTokenExpired: the cached ECR token expired and no new one could be
	// fetched; the cause is wrapped as well.
	ErrTokenExpired = errors.New("ECR authorization token expired")
)
