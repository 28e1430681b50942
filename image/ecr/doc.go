// Package ecr authenticates to Amazon ECR registries natively: no Docker,
// no credential helper binary, no `aws ecr get-login-password`.
//
// Private registries are recognised by hostname ([ParseHost]): commercial
// (ACCOUNT.dkr.ecr.REGION.amazonaws.com), China (….amazonaws.com.cn), FIPS
// (dkr.ecr-fips, dkr-ecr-fips), dual-stack (ACCOUNT.dkr-ecr.REGION.on.aws)
// and the other partitions' domains. The registry ID and region come from
// the name. ECR Public (public.ecr.aws) needs no token: its own token
// server serves anonymous pulls.
//
// A [Client] gets tokens from ECR's GetAuthorizationToken with the AWS SDK
// for Go v2 and its default credential chain: environment variables, the
// shared config and credentials files with profiles (Options.Profile,
// AWS_PROFILE), IAM Identity Center (SSO), web identity, the container
// credentials endpoint, EC2 instance metadata (IMDSv2). The configuration
// is loaded afresh for every token, so a shared credentials file that
// another agent rotates (ECS Anywhere: AWS_SHARED_CREDENTIALS_FILE, or
// root's ~/.aws/credentials, rewritten by the SSM agent) is read again each
// time. AWS_ENDPOINT_URL_ECR points the SDK at another ECR API endpoint.
//
// Tokens are cached in memory and in Options.CacheDir, one file per
// registry ID and region (<id>.<region>.json, mode 0600, replaced
// atomically), so the CLI and the daemon share them. A token is replaced
// [RefreshMargin] before it expires; if AWS can't be reached then, the old
// one serves until shortly before its expiry.
//
// Two pieces plug into go-containerregistry: [Client.Keychain] hands out
// tokens (berth puts it after the auth file and credential helpers), and
// [Client.Transport] wraps the registry transport so that a token the
// registry refuses (401, or 403 "token expired") is replaced once and the
// request sent again; refusals that remain are reported with the registry's
// words plus what berth knows (repository, registry, where the credentials
// came from). No error ever turns into anonymous access for an ECR host.
package ecr
