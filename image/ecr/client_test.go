package ecr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/berth-dev/berth/image/ecr/ecrtest"
)

const (
	testHost   = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
	testKey    = "AKIDBERTHTEST0000001"
	testSecret = "berth-test-secret-1"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup starts the fake ECR API, isolates the AWS environment and puts the
// test's access key in the environment.
func setup(t *testing.T) (*ecrtest.Server, ecrtest.Files) {
	t.Helper()
	fake := ecrtest.Start(t, testKey, testSecret, "pw-1")
	files := fake.IsolateEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", testKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	return fake, files
}

func TestClientFetchAndCache(t *testing.T) {
	fake, _ := setup(t)
	dir := t.TempDir()
	ctx := context.Background()
	c := New(Options{CacheDir: dir})

	tok, err := c.Token(ctx, testHost)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Username != "AWS" || tok.Password != "pw-1" || tok.RegistryID != "123456789012" || tok.Region != "us-east-1" {
		t.Fatalf("token %+v", tok)
	}
	if d := time.Until(tok.ExpiresAt); d < 11*time.Hour || d > 13*time.Hour {
		t.Fatalf("token expires in %s, want about 12h", d)
	}
	if !strings.Contains(tok.Source, "environment variables") {
		t.Fatalf("token source %q", tok.Source)
	}
	if got := fake.Regions(); len(got) != 1 || got[0] != "us-east-1" {
		t.Fatalf("requests signed for regions %v, want [us-east-1] (from the hostname)", got)
	}

	// Memory, then disk: neither asks AWS again.
	if _, err := c.Token(ctx, testHost); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{CacheDir: dir}).Token(ctx, testHost); err != nil {
		t.Fatal(err)
	}
	if n := fake.Calls(); n != 1 {
		t.Fatalf("GetAuthorizationToken called %d times, want 1", n)
	}
	if fi, err := os.Stat(filepath.Join(dir, "123456789012.us-east-1.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token cache file: %v, %v", fi, err)
	}

	// The FIPS and dual-stack names of the registry share its token; a
	// registry in another region gets its own.
	for _, h := range []string{"123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", "123456789012.dkr-ecr.us-east-1.on.aws"} {
		if _, err := c.Token(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.Calls(); n != 1 {
		t.Fatalf("GetAuthorizationToken called %d times for other names of one registry, want 1", n)
	}
	if _, err := c.Token(ctx, "123456789012.dkr.ecr.eu-central-1.amazonaws.com"); err != nil {
		t.Fatal(err)
	}
	if got := fake.Regions(); len(got) != 2 || got[1] != "eu-central-1" {
		t.Fatalf("regions %v, want a second request for eu-central-1", got)
	}
}

func TestClientExpiry(t *testing.T) {
	fake, _ := setup(t)
	clk := &clock{t: time.Now()}
	ctx := context.Background()
	c := New(Options{CacheDir: t.TempDir(), Now: clk.now})
	if _, err := c.Token(ctx, testHost); err != nil {
		t.Fatal(err)
	}
	clk.advance(12*time.Hour - RefreshMargin - time.Minute)
	if _, err := c.Token(ctx, testHost); err != nil || fake.Calls() != 1 {
		t.Fatalf("before the margin: %v, %d calls", err, fake.Calls())
	}
	fake.SetPassword("pw-2")
	clk.advance(2 * time.Minute)
	tok, err := c.Token(ctx, testHost)
	if err != nil || fake.Calls() != 2 || tok.Password != "pw-2" {
		t.Fatalf("inside the margin: %+v, %v, %d calls; want a new token", tok, err, fake.Calls())
	}
}

// TestClientRefreshFailure: when AWS can't give a new token, the old one
// serves while it lasts (with a pause between attempts); once it has
// expired, the error says so and why.
func TestClientRefreshFailure(t *testing.T) {
	fake, _ := setup(t)
	clk := &clock{t: time.Now()}
	ctx := context.Background()
	c := New(Options{CacheDir: t.TempDir(), Now: clk.now})
	if _, err := c.Token(ctx, testHost); err != nil {
		t.Fatal(err)
	}
	fake.SetCredentials("AKIDSOMEONEELSE00000", "x")
	clk.advance(12*time.Hour - 10*time.Minute)
	tok, err := c.Token(ctx, testHost)
	if err != nil || tok.Password != "pw-1" {
		t.Fatalf("refresh failed inside the margin: %+v, %v; want the old token", tok, err)
	}
	calls := fake.Calls()
	if _, err := c.Token(ctx, testHost); err != nil || fake.Calls() != calls {
		t.Fatalf("retried at once: %v, %d calls, want %d", err, fake.Calls(), calls)
	}
	clk.advance(11 * time.Minute)
	_, err = c.Token(ctx, testHost)
	if !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrCredentialsRejected) || !strings.Contains(err.Error(), "expired at") || !strings.Contains(err.Error(), "UnrecognizedClientException") {
		t.Fatalf("after expiry: %v; want ErrTokenExpired with AWS's error", err)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("rejected", func(t *testing.T) {
		setup(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDWRONG00000000000")
		_, err := New(Options{}).Token(ctx, testHost)
		if !errors.Is(err, ErrCredentialsRejected) {
			t.Fatalf("got %v, want ErrCredentialsRejected", err)
		}
		for _, want := range []string{testHost, "UnrecognizedClientException", "The security token included in the request is invalid.", "AKIDWRONG00000000000", "environment variables"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
	t.Run("bad secret", func(t *testing.T) {
		setup(t)
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
		_, err := New(Options{}).Token(ctx, testHost)
		if !errors.Is(err, ErrCredentialsRejected) || !strings.Contains(err.Error(), "InvalidSignatureException") {
			t.Fatalf("got %v, want ErrCredentialsRejected with InvalidSignatureException", err)
		}
	})
	t.Run("access denied", func(t *testing.T) {
		fake, _ := setup(t)
		fake.Fail(400, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/edge is not authorized to perform: ecr:GetAuthorizationToken")
		_, err := New(Options{}).Token(ctx, testHost)
		if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "is not authorized to perform: ecr:GetAuthorizationToken") {
			t.Fatalf("got %v, want ErrAccessDenied with AWS's message", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		fake, files := setup(t)
		os.Unsetenv("AWS_ACCESS_KEY_ID")
		os.Unsetenv("AWS_SECRET_ACCESS_KEY")
		_, err := New(Options{}).Token(ctx, testHost)
		if !errors.Is(err, ErrNoCredentials) {
			t.Fatalf("got %v, want ErrNoCredentials", err)
		}
		for _, want := range []string{"AWS_ACCESS_KEY_ID", files.Credentials, files.Config, "does not exist", `profile "default"`, "EC2 instance metadata", "AWS_EC2_METADATA_DISABLED", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if fake.Calls() != 0 {
			t.Fatalf("ECR called without credentials")
		}
	})
	t.Run("unknown profile", func(t *testing.T) {
		setup(t)
		_, err := New(Options{Profile: "nosuch"}).Token(ctx, testHost)
		if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), `AWS profile "nosuch" not found`) {
			t.Fatalf("got %v, want ErrCredentials naming the profile", err)
		}
	})
	t.Run("not ECR", func(t *testing.T) {
		_, err := New(Options{}).Token(ctx, "ghcr.io")
		if !errors.Is(err, ErrNotECR) {
			t.Fatalf("got %v, want ErrNotECR", err)
		}
	})
}

// TestClientProfile: credentials from a named profile of the shared
// credentials file, chosen by Options.Profile over the environment's keys.
func TestClientProfile(t *testing.T) {
	fake, files := setup(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDWRONG00000000000")
	ecrtest.WriteCredentials(t, files.Credentials, "edge", testKey, testSecret)
	tok, err := New(Options{Profile: "edge"}).Token(context.Background(), testHost)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tok.Source, `profile "edge"`) || !strings.Contains(tok.Source, files.Credentials) {
		t.Fatalf("source %q", tok.Source)
	}
	if keys := fake.AccessKeys(); len(keys) != 1 || keys[0] != testKey {
		t.Fatalf("signed with %v", keys)
	}
}

// TestClientRotatingCredentialsFile: ECS Anywhere's SSM agent rewrites the
// shared credentials file with new keys every 30 minutes and the old ones
// stop working; every token fetch reads the file again.
func TestClientRotatingCredentialsFile(t *testing.T) {
	fake, files := setup(t)
	os.Unsetenv("AWS_ACCESS_KEY_ID")
	os.Unsetenv("AWS_SECRET_ACCESS_KEY")
	ecrtest.WriteCredentials(t, files.Credentials, "default", testKey, testSecret)
	clk := &clock{t: time.Now()}
	ctx := context.Background()
	c := New(Options{Now: clk.now})
	if _, err := c.Token(ctx, testHost); err != nil {
		t.Fatal(err)
	}
	ecrtest.WriteCredentials(t, files.Credentials, "default", "AKIDROTATED000000002", "rotated-secret")
	fake.SetCredentials("AKIDROTATED000000002", "rotated-secret")
	clk.advance(12 * time.Hour)
	if _, err := c.Token(ctx, testHost); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if keys := fake.AccessKeys(); len(keys) != 2 || keys[1] != "AKIDROTATED000000002" {
		t.Fatalf("signed with %v, want the rotated key second", keys)
	}
}

func TestKeychain(t *testing.T) {
	fake, _ := setup(t)
	kc := New(Options{}).Keychain()
	ctx := context.Background()
	for _, host := range []string{"public.ecr.aws", "ghcr.io", "127.0.0.1:5000"} {
		reg, err := name.NewRegistry(host)
		if err != nil {
			t.Fatal(err)
		}
		auth, err := authn.Resolve(ctx, kc, reg)
		if err != nil || auth != authn.Anonymous {
			t.Fatalf("%s: %v, %v; want anonymous", host, auth, err)
		}
	}
	if fake.Calls() != 0 {
		t.Fatal("AWS asked for a token for a registry that is not private ECR")
	}

	reg, _ := name.NewRegistry("12345.dkr.ecr.us-east-1.amazonaws.com")
	if _, err := authn.Resolve(ctx, kc, reg); !errors.Is(err, ErrInvalidHost) {
		t.Fatalf("mistyped ECR host: %v, want ErrInvalidHost", err)
	}

	reg, _ = name.NewRegistry(testHost)
	auth, err := authn.Resolve(ctx, kc, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil || cfg.Username != "AWS" || cfg.Password != "pw-1" {
		t.Fatalf("authorization %+v, %v", cfg, err)
	}

	// Without credentials an ECR host is an error, never anonymous.
	os.Unsetenv("AWS_ACCESS_KEY_ID")
	kc = New(Options{}).Keychain()
	if auth, err := authn.Resolve(ctx, kc, reg); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("no credentials: %v, %v; want ErrNoCredentials", auth, err)
	}
}

func TestLogin(t *testing.T) {
	fake, _ := setup(t)
	dir := t.TempDir()
	ctx := context.Background()
	c := New(Options{CacheDir: dir})
	if _, err := c.Token(ctx, testHost); err != nil {
		t.Fatal(err)
	}
	// Login always asks AWS, and caches only a token the check accepts.
	fake.SetPassword("pw-2")
	refused := errors.New("refused")
	if _, err := c.Login(ctx, testHost, func(context.Context, *Token) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("login with a failing check: %v", err)
	}
	if tok, _ := (cache{dir: dir}).load("123456789012.us-east-1"); tok == nil || tok.Password != "pw-1" {
		t.Fatalf("a refused login replaced the cached token: %+v", tok)
	}
	tok, err := c.Login(ctx, testHost, func(_ context.Context, tok *Token) error {
		if tok.Password != "pw-2" {
			return errors.New("old token")
		}
		return nil
	})
	if err != nil || tok.Password != "pw-2" || fake.Calls() != 3 {
		t.Fatalf("login: %+v, %v, %d calls", tok, err, fake.Calls())
	}
	if tok, err := New(Options{CacheDir: dir}).Token(ctx, testHost); err != nil || tok.Password != "pw-2" || fake.Calls() != 3 {
		t.Fatalf("after login, another client: %+v, %v, %d calls", tok, err, fake.Calls())
	}
}
