package ecr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"
)

// profile is the AWS profile the SDK uses.
func (c *Client) profile() string {
	if c.opts.Profile != "" {
		return c.opts.Profile
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "default"
}

// sharedFiles returns the shared credentials and config files the SDK reads.
func sharedFiles() (credentials, conf string) {
	credentials = os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if credentials == "" {
		credentials = config.DefaultSharedCredentialsFilename()
	}
	conf = os.Getenv("AWS_CONFIG_FILE")
	if conf == "" {
		conf = config.DefaultSharedConfigFilename()
	}
	return credentials, conf
}

func fileState(path string) string {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return path
	case errors.Is(err, fs.ErrNotExist):
		return path + " (does not exist)"
	default:
		return fmt.Sprintf("%s (%v)", path, err)
	}
}

// configError explains a failure to load the AWS configuration.
func (c *Client) configError(reg Registry, err error) error {
	credFile, confFile := sharedFiles()
	var pe config.SharedConfigProfileNotExistError
	if errors.As(err, &pe) {
		return &wrapError{
			msg:  fmt.Sprintf("ECR registry %s: AWS profile %q not found in the shared config file %s or the shared credentials file %s", reg.Host, pe.Profile, fileState(confFile), fileState(credFile)),
			errs: []error{ErrCredentials, err},
		}
	}
	return &wrapError{
		msg:  fmt.Sprintf("ECR registry %s: loading the AWS configuration (profile %q, %s, %s): %v", reg.Host, c.profile(), confFile, credFile, err),
		errs: []error{ErrCredentials, err},
	}
}

// credentialsError explains a failure to get credentials from the chain.
func (c *Client) credentialsError(reg Registry, cfg aws.Config, err error) error {
	src := sources(cfg)
	if len(src) == 1 && src[0] == aws.CredentialSourceIMDS {
		// Nothing configured anywhere: the chain fell through to the
		// instance metadata service, which had nothing either.
		return c.noCredentials(reg, err)
	}
	return &wrapError{
		msg:  fmt.Sprintf("ECR registry %s: %s: could not get credentials from %s: %v", reg.Host, ErrCredentials, c.describeSource(cfg), err),
		errs: []error{ErrCredentials, err},
	}
}

// noCredentials names every place the default chain looked.
func (c *Client) noCredentials(reg Registry, imdsErr error) error {
	credFile, confFile := sharedFiles()
	var b strings.Builder
	fmt.Fprintf(&b, "ECR registry %s: %s; looked in: ", reg.Host, ErrNoCredentials)
	b.WriteString("environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI: none set)")
	fmt.Fprintf(&b, "; profile %q (no keys, role, SSO session or credential_process) in the shared credentials file %s and the shared config file %s", c.profile(), fileState(credFile), fileState(confFile))
	b.WriteString("; EC2 instance metadata (IMDSv2): ")
	switch {
	case isTrue(os.Getenv("AWS_EC2_METADATA_DISABLED")):
		b.WriteString("disabled by AWS_EC2_METADATA_DISABLED")
	case imdsErr != nil:
		fmt.Fprintf(&b, "no instance role (%v)", imdsErr)
	default:
		b.WriteString("no instance role")
	}
	b.WriteString(". Set credentials in one of these places, or pick a profile with --aws-profile or AWS_PROFILE")
	errs := []error{ErrNoCredentials}
	if imdsErr != nil {
		errs = append(errs, imdsErr)
	}
	return &wrapError{msg: b.String(), errs: errs}
}

func isTrue(s string) bool {
	v, err := strconv.ParseBool(s)
	return err == nil && v
}

// sources returns where the configured credentials provider gets its
// credentials, outermost first.
func sources(cfg aws.Config) []aws.CredentialSource {
	if p, ok := cfg.Credentials.(aws.CredentialProviderSource); ok {
		return p.ProviderSources()
	}
	return nil
}

// describeSource says where the credentials come from, for messages.
func (c *Client) describeSource(cfg aws.Config) string {
	credFile, confFile := sharedFiles()
	profile := fmt.Sprintf("profile %q", c.profile())
	var parts []string
	seen := map[string]bool{}
	for _, s := range sources(cfg) {
		var d string
		switch s {
		case aws.CredentialSourceEnvVars:
			d = "environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
		case aws.CredentialSourceEnvVarsSTSWebIDToken:
			d = "the web identity token in AWS_WEB_IDENTITY_TOKEN_FILE"
		case aws.CredentialSourceProfile:
			d = fmt.Sprintf("%s in %s or %s", profile, credFile, confFile)
		case aws.CredentialSourceProfileSourceProfile:
			d = "the source_profile of " + profile
		case aws.CredentialSourceProfileNamedProvider:
			d = "the credential_source of " + profile
		case aws.CredentialSourceProfileSTSWebIDToken:
			d = "the web_identity_token_file of " + profile
		case aws.CredentialSourceSTSAssumeRole, aws.CredentialSourceSTSAssumeRoleWebID:
			d = "a role assumed with AWS STS"
		case aws.CredentialSourceProfileSSO, aws.CredentialSourceSSO, aws.CredentialSourceProfileSSOLegacy, aws.CredentialSourceSSOLegacy:
			d = "the IAM Identity Center (SSO) session of " + profile
		case aws.CredentialSourceProfileLogin, aws.CredentialSourceLogin:
			d = "the `aws login` session of " + profile
		case aws.CredentialSourceProfileProcess, aws.CredentialSourceProcess:
			d = "the credential_process of " + profile
		case aws.CredentialSourceHTTP:
			d = "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)"
		case aws.CredentialSourceIMDS:
			d = "EC2 instance metadata (IMDSv2)"
		default:
			continue
		}
		if !seen[d] {
			seen[d] = true
			parts = append(parts, d)
		}
	}
	if len(parts) == 0 {
		return "the AWS SDK's default credential chain (" + profile + ")"
	}
	return strings.Join(parts, " via ")
}

// rejectedCodes are AWS error codes meaning the credentials themselves are
// bad: unknown or deactivated keys, bad signatures, expired sessions.
var rejectedCodes = map[string]bool{
	"UnrecognizedClientException": true,
	"InvalidClientTokenId":        true,
	"InvalidSignatureException":   true,
	"SignatureDoesNotMatch":       true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"ExpiredTokenException":       true,
	"ExpiredToken":                true,
	"RequestExpired":              true,
	"AuthFailure":                 true,
	"InvalidAccessKeyId":          true,
}

// apiError explains a failed GetAuthorizationToken call, with AWS's error
// code and message.
func apiError(reg Registry, source, accessKey string, err error) error {
	who := "credentials from " + source
	if accessKey != "" {
		who = "access key " + accessKey + " from " + source
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return &wrapError{
			msg:  fmt.Sprintf("ECR registry %s: GetAuthorizationToken in %s (%s): %v", reg.Host, reg.Region, who, err),
			errs: []error{err},
		}
	}
	code, msg := ae.ErrorCode(), ae.ErrorMessage()
	switch {
	case rejectedCodes[code]:
		return &wrapError{
			msg:  fmt.Sprintf("ECR registry %s: %s (%s): %s: %s", reg.Host, ErrCredentialsRejected, who, code, msg),
			errs: []error{ErrCredentialsRejected, err},
		}
	case code == "AccessDeniedException" || code == "AccessDenied":
		return &wrapError{
			msg:  fmt.Sprintf("ECR registry %s: %s to the AWS identity of %s: %s: %s", reg.Host, ErrAccessDenied, who, code, msg),
			errs: []error{ErrAccessDenied, err},
		}
	}
	return &wrapError{
		msg:  fmt.Sprintf("ECR registry %s: GetAuthorizationToken in %s failed (%s): %s: %s", reg.Host, reg.Region, who, code, msg),
		errs: []error{err},
	}
}
