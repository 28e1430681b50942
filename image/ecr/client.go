package ecr

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsecr "github.com/aws/aws-sdk-go-v2/service/ecr"
)

const (
	// fetchTimeout bounds one token fetch: loading the AWS configuration,
	// getting credentials (IMDS, SSO, STS) and GetAuthorizationToken.
	fetchTimeout = 60 * time.Second
	// retryFetchAfter is how long a failed fetch is not retried while the
	// old token, inside its refresh margin, still works.
	retryFetchAfter = 30 * time.Second
	// expirySafety: an old token this close to its expiry is not used as a
	// stand-in when its replacement cannot be fetched.
	expirySafety = time.Minute
	// defaultLifetime is ECR's token lifetime, assumed when AWS names none.
	defaultLifetime = 12 * time.Hour
)

// Options configure a Client.
type Options struct {
	// CacheDir holds the token cache (RUN_ROOT/ecr-tokens for the CLI and
	// the daemon); "" keeps tokens in memory only.
	CacheDir string
	// Profile is the AWS profile to take credentials from; "" means the
	// SDK's choice ($AWS_PROFILE, else "default").
	Profile string
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AWSOptions are appended to the options of every
	// config.LoadDefaultConfig call (an HTTP client, say).
	AWSOptions []func(*config.LoadOptions) error
}

// Client fetches, caches and refreshes ECR authorization tokens with the
// AWS SDK's default credential chain. It is safe for concurrent use; one
// per process is enough, and processes share tokens through the cache
// directory.
type Client struct {
	opts  Options
	log   *slog.Logger
	cache cache

	mu      sync.Mutex
	entries map[string]*entry // by Registry.key
}

// entry is the token state of one registry.
type entry struct {
	mu         sync.Mutex // held while fetching, so one fetch serves all
	tok        *Token
	prev       string    // the password tok replaced
	retryAfter time.Time // no fetch before this while tok still works
}

func (e *entry) set(t *Token) {
	if e.tok != nil && e.tok.Password != t.Password {
		e.prev = e.tok.Password
	}
	e.tok = t
	e.retryAfter = time.Time{}
}

// New returns a Client.
func New(o Options) *Client {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: o, log: log, cache: cache{dir: o.CacheDir}, entries: map[string]*entry{}}
}

func (c *Client) now() time.Time {
	if c.opts.Now != nil {
		return c.opts.Now()
	}
	return time.Now()
}

func (c *Client) entry(key string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		e = &entry{}
		c.entries[key] = e
	}
	return e
}

// Token returns a fresh token for the ECR registry host: from memory, else
// from the cache directory, else from AWS (then cached).
func (c *Client) Token(ctx context.Context, host string) (*Token, error) {
	reg, err := ParseHost(host)
	if err != nil {
		return nil, err
	}
	return c.token(ctx, reg)
}

func (c *Client) token(ctx context.Context, reg Registry) (*Token, error) {
	e := c.entry(reg.key())
	e.mu.Lock()
	defer e.mu.Unlock()
	now := c.now()
	if e.tok.Fresh(now) {
		return e.tok, nil
	}
	old := e.tok
	if t, err := c.cache.load(reg.key()); err != nil {
		c.log.Warn("ignoring the ECR token cache", "err", err)
	} else if t != nil {
		if t.Fresh(now) {
			e.set(t)
			return t, nil
		}
		if old == nil || t.ExpiresAt.After(old.ExpiresAt) {
			old = t
		}
	}
	// The old token, inside its refresh margin, stands in while AWS
	// can't be reached, with a pause between attempts.
	usable := old != nil && now.Before(old.ExpiresAt.Add(-expirySafety))
	if usable && now.Before(e.retryAfter) {
		return old, nil
	}
	t, err := c.fetch(ctx, reg)
	if err != nil {
		if usable {
			c.log.Warn("could not refresh the ECR token; using the current one until it expires", "registry", reg.Host, "expires", old.ExpiresAt, "err", err)
			if e.tok != old {
				e.set(old)
			}
			e.retryAfter = now.Add(retryFetchAfter)
			return old, nil
		}
		if old != nil {
			verb := "expired"
			if now.Before(old.ExpiresAt) {
				verb = "expires"
			}
			return nil, &wrapError{
				msg:  fmt.Sprintf("ECR registry %s: the authorization token %s at %s and a new one could not be fetched: %v", reg.Host, verb, old.ExpiresAt.Local().Format(time.RFC3339), err),
				errs: []error{ErrTokenExpired, err},
			}
		}
		return nil, err
	}
	c.store(reg, t)
	e.set(t)
	return t, nil
}

// replace is called when the registry refused the token with password
// rejected. It returns the token to retry with: one another goroutine or
// process fetched meanwhile, else a new one from AWS. ok is false when
// rejected is not a token this client handed out (credentials from
// elsewhere), and then nothing changes.
func (c *Client) replace(ctx context.Context, reg Registry, rejected string) (t *Token, ok bool, err error) {
	e := c.entry(reg.key())
	e.mu.Lock()
	defer e.mu.Unlock()
	now := c.now()
	switch {
	case e.tok == nil:
		return nil, false, nil
	case e.tok.Password != rejected:
		if e.prev == rejected && e.tok.Fresh(now) {
			return e.tok, true, nil
		}
		return nil, false, nil
	}
	if t, err := c.cache.load(reg.key()); err == nil && t != nil && t.Password != rejected && t.Fresh(now) {
		e.set(t)
		return t, true, nil
	}
	c.log.Debug("the registry refused the ECR token; fetching a new one", "registry", reg.Host)
	t, err = c.fetch(ctx, reg)
	if err != nil {
		// The refused token is no use to anyone: drop it.
		e.prev, e.tok = rejected, nil
		if rerr := c.cache.remove(reg.key()); rerr != nil {
			c.log.Warn("could not remove the refused ECR token", "err", rerr)
		}
		return nil, true, err
	}
	c.store(reg, t)
	e.set(t)
	return t, true, nil
}

// Login fetches a new token for host from AWS, whatever is cached, checks
// it with check (nil: no check) and then caches it: `berth login --ecr`.
func (c *Client) Login(ctx context.Context, host string, check func(context.Context, *Token) error) (*Token, error) {
	reg, err := ParseHost(host)
	if err != nil {
		return nil, err
	}
	e := c.entry(reg.key())
	e.mu.Lock()
	defer e.mu.Unlock()
	t, err := c.fetch(ctx, reg)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(ctx, t); err != nil {
			return nil, err
		}
	}
	if err := c.cache.store(reg.key(), t); err != nil {
		return nil, err
	}
	e.set(t)
	return t, nil
}

// store caches t on disk; a failure costs only a fetch later.
func (c *Client) store(reg Registry, t *Token) {
	if err := c.cache.store(reg.key(), t); err != nil {
		c.log.Warn("could not cache the ECR token", "registry", reg.Host, "err", err)
	}
}

// fetch gets a new token from ECR's GetAuthorizationToken. The AWS
// configuration is loaded anew each time: credentials in the shared
// credentials file are read once per load, and files that another agent
// rotates (ECS Anywhere's SSM agent replaces them every 30 minutes) must
// be read again for every token, hours apart.
func (c *Client) fetch(ctx context.Context, reg Registry) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(reg.Region),
		config.WithAppID("berth"),
	}
	if c.opts.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.opts.Profile))
	}
	if reg.FIPS {
		opts = append(opts, config.WithUseFIPSEndpoint(aws.FIPSEndpointStateEnabled))
	}
	if reg.DualStack {
		opts = append(opts, config.WithUseDualStackEndpoint(aws.DualStackEndpointStateEnabled))
	}
	opts = append(opts, c.opts.AWSOptions...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, c.configError(reg, err)
	}
	if cfg.Credentials == nil {
		return nil, c.noCredentials(reg, nil)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, c.credentialsError(reg, cfg, err)
	}
	source := c.describeSource(cfg)
	out, err := awsecr.NewFromConfig(cfg).GetAuthorizationToken(ctx, &awsecr.GetAuthorizationTokenInput{})
	if err != nil {
		return nil, apiError(reg, source, creds.AccessKeyID, err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return nil, fmt.Errorf("ECR registry %s: GetAuthorizationToken returned no token", reg.Host)
	}
	ad := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(ad.AuthorizationToken))
	if err != nil {
		return nil, fmt.Errorf("ECR registry %s: GetAuthorizationToken returned a token that is not base64: %w", reg.Host, err)
	}
	user, pass, found := strings.Cut(string(raw), ":")
	if !found || user == "" || pass == "" {
		return nil, fmt.Errorf("ECR registry %s: GetAuthorizationToken returned a token that is not USER:PASSWORD", reg.Host)
	}
	now := c.now()
	t := &Token{
		RegistryID:    reg.ID,
		Region:        reg.Region,
		Username:      user,
		Password:      pass,
		ExpiresAt:     now.Add(defaultLifetime),
		FetchedAt:     now,
		ProxyEndpoint: aws.ToString(ad.ProxyEndpoint),
		Source:        source,
	}
	if ad.ExpiresAt != nil {
		t.ExpiresAt = *ad.ExpiresAt
	}
	if !now.Before(t.ExpiresAt) {
		return nil, fmt.Errorf("ECR registry %s: GetAuthorizationToken returned a token that expired at %s (is this host's clock right? it says %s)", reg.Host, t.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	c.log.Debug("fetched an ECR token", "registry", reg.Host, "expires", t.ExpiresAt, "credentials", source)
	return t, nil
}

// wrapError is an error with its own message that wraps several errors
// (a sentinel and the cause) without repeating their text.
type wrapError struct {
	msg  string
	errs []error
}

func (e *wrapError) Error() string   { return e.msg }
func (e *wrapError) Unwrap() []error { return e.errs }
