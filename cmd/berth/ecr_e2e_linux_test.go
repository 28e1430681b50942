//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/image/ecr"
	"github.com/berth-dev/berth/image/ecr/ecrtest"
	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

const (
	ecrHost      = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
	ecrKey       = "AKIDBERTHE2E00000001"
	ecrSecret    = "berth-e2e-secret"
	ecrPassword  = "ecr-registry-password"
	ecrTokenFile = "123456789012.us-east-1.json"
)

// ecrCLI runs berth through execute with private --root, --config-dir and
// --run-root.
type ecrCLI struct {
	t                     *testing.T
	root, config, runRoot string
}

func newECRCLI(t *testing.T, config string) *ecrCLI {
	return &ecrCLI{t: t, root: t.TempDir(), config: config, runRoot: t.TempDir()}
}

func (c *ecrCLI) run(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := execute(context.Background(), append([]string{"--root", c.root, "--config-dir", c.config, "--run-root", c.runRoot}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func (c *ecrCLI) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != exitOK {
		c.t.Fatalf("berth %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

// fails runs berth, expects exit 125, and returns stderr.
func (c *ecrCLI) fails(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != exitBerth {
		c.t.Fatalf("berth %v: exit %d, want %d\n%s%s", args, code, exitBerth, out, errs)
	}
	c.t.Logf("berth %v: %s", args, errs)
	return errs
}

func (c *ecrCLI) tokenPath() string {
	return filepath.Join(c.runRoot, ecrTokenDir, ecrTokenFile)
}

func (c *ecrCLI) cachedToken() *ecr.Token {
	c.t.Helper()
	b, err := os.ReadFile(c.tokenPath())
	if err != nil {
		c.t.Fatalf("token cache: %v", err)
	}
	var tok ecr.Token
	if err := json.Unmarshal(b, &tok); err != nil {
		c.t.Fatalf("token cache: %v", err)
	}
	return &tok
}

func (c *ecrCLI) writeToken(tok *ecr.Token) {
	c.t.Helper()
	b, _ := json.Marshal(tok)
	if err := os.MkdirAll(filepath.Dir(c.tokenPath()), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(c.tokenPath(), b, 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func wantIn(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// TestCLIECR pulls from "Amazon ECR" end to end with real parts: the AWS
// SDK, speaking awsJson1.1 and signing with SigV4, fetches tokens from a
// local fake of the ECR API (AWS_ENDPOINT_URL_ECR); Debian's
// docker-registry, with TLS for the ECR hostname and htpasswd user AWS,
// checks them; registries.json points the hostname at it, and TLS still
// verifies the ECR hostname against the test CA.
func TestCLIECR(t *testing.T) {
	testrig.RequireRoot(t)
	fake := ecrtest.Start(t, ecrKey, ecrSecret, ecrPassword)
	files := fake.IsolateEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", ecrKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ecrSecret)

	r := registry.Start(t, registry.WithTLSNames(ecrHost), registry.WithBasicAuth("AWS", ecrPassword))
	digest := testimage.Push(t, testimage.Random(t, 2, 64<<10, testimage.WithSeed(6)), r.Ref("team/app:1"), r.RemoteOptions()...)
	config := t.TempDir()
	conf := fmt.Sprintf(`{"registries": {%q: {"endpoint": %q, "caFiles": [%q]}}}`, ecrHost, r.Host, r.CAPath)
	if err := os.WriteFile(filepath.Join(config, "registries.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ref := ecrHost + "/team/app:1"
	c := newECRCLI(t, config)

	// Pull: one token from AWS, signed for the hostname's region, cached
	// 0600 under the run root.
	if out := c.ok("pull", "-q", ref); strings.TrimSpace(out) != digest.String() {
		t.Fatalf("pull -q printed %q, want %s", out, digest)
	}
	if n := fake.Calls(); n != 1 {
		t.Fatalf("first pull: %d GetAuthorizationToken calls, want 1", n)
	}
	if regions := fake.Regions(); regions[0] != "us-east-1" {
		t.Fatalf("token request signed for %v, want us-east-1", regions)
	}
	fi, err := os.Stat(c.tokenPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token cache %s: %v, %v; want mode 0600", c.tokenPath(), fi, err)
	}
	if tok := c.cachedToken(); tok.Username != "AWS" || tok.Password != ecrPassword || time.Until(tok.ExpiresAt) < 11*time.Hour {
		t.Fatalf("cached token %+v", tok)
	}

	// A second pull (a new process, as far as berth can tell) uses the
	// cached token.
	c.ok("pull", "-q", ref)
	if n := fake.Calls(); n != 1 {
		t.Fatalf("second pull: %d GetAuthorizationToken calls, want 1 (the cached token)", n)
	}

	t.Run("expired token is refreshed", func(t *testing.T) {
		fake.SetLifetime(2 * time.Second)
		out := c.ok("login", "--ecr", ecrHost)
		wantIn(t, "login --ecr output", out, "Login Succeeded", ecrHost)
		fake.SetLifetime(12 * time.Hour)
		calls := fake.Calls()
		expires := c.cachedToken().ExpiresAt
		if d := time.Until(expires); d > 3*time.Second {
			t.Fatalf("login cached a token expiring in %s, want about 2s", d)
		}
		time.Sleep(time.Until(expires) + 100*time.Millisecond)
		c.ok("pull", "-q", ref)
		if n := fake.Calls(); n != calls+1 {
			t.Fatalf("pull after expiry: %d calls, want %d", n, calls+1)
		}
		if d := time.Until(c.cachedToken().ExpiresAt); d < 11*time.Hour {
			t.Fatalf("the refreshed token expires in %s", d)
		}
	})

	t.Run("token refused with 401 is refreshed", func(t *testing.T) {
		// The cached token is within its life but the registry no longer
		// takes it (revoked, or its password rotated).
		stale := c.cachedToken()
		stale.Password = "revoked-token"
		c.writeToken(stale)
		calls := fake.Calls()
		c.ok("pull", "-q", ref)
		if n := fake.Calls(); n != calls+1 {
			t.Fatalf("pull with a refused token: %d calls, want %d", n, calls+1)
		}
		if tok := c.cachedToken(); tok.Password != ecrPassword {
			t.Fatalf("cache still holds %q", tok.Password)
		}
	})

	t.Run("access denied to the repository", func(t *testing.T) {
		// AWS hands out tokens the registry does not accept, however fresh.
		fake.SetPassword("not-for-this-registry")
		defer fake.SetPassword(ecrPassword)
		calls := fake.Calls()
		d := newECRCLI(t, config)
		errs := d.fails("pull", "-q", ref)
		if n := fake.Calls(); n != calls+2 {
			t.Errorf("%d GetAuthorizationToken calls, want %d (the token, then one refresh after the 401)", n-calls, 2)
		}
		wantIn(t, "stderr", errs, "UNAUTHORIZED", `access denied to repository "team/app"`, "123456789012 (us-east-1)", "fetched just now", "environment variables")
	})

	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDNOTKNOWN00000000")
		d := newECRCLI(t, config)
		errs := d.fails("pull", "-q", ref)
		wantIn(t, "stderr", errs, ecrHost, "AWS rejected the credentials", "UnrecognizedClientException", "The security token included in the request is invalid.", "AKIDNOTKNOWN00000000")
		if bare401.MatchString(errs) {
			t.Errorf("stderr mentions a 401:\n%s", errs)
		}
		if _, err := os.Stat(d.tokenPath()); err == nil {
			t.Error("a failed token fetch left a token file")
		}
		// login --ecr says the same.
		wantIn(t, "login --ecr stderr", d.fails("login", "--ecr", ecrHost), "UnrecognizedClientException", "The security token included in the request is invalid.")
	})

	t.Run("no credentials", func(t *testing.T) {
		os.Unsetenv("AWS_ACCESS_KEY_ID")
		os.Unsetenv("AWS_SECRET_ACCESS_KEY")
		t.Cleanup(func() {
			os.Setenv("AWS_ACCESS_KEY_ID", ecrKey)
			os.Setenv("AWS_SECRET_ACCESS_KEY", ecrSecret)
		})
		calls := fake.Calls()
		d := newECRCLI(t, config)
		errs := d.fails("pull", "-q", ref)
		wantIn(t, "stderr", errs, ecrHost, "no AWS credentials found", "looked in", "AWS_ACCESS_KEY_ID", files.Credentials, files.Config, `profile "default"`, "EC2 instance metadata (IMDSv2)", "--aws-profile")
		if bare401.MatchString(errs) || strings.Contains(errs, "UNAUTHORIZED") {
			t.Errorf("stderr reports the registry's refusal instead:\n%s", errs)
		}
		if fake.Calls() != calls {
			t.Error("ECR was called without credentials")
		}

		// Credentials in a shared credentials file only, as ECS Anywhere's
		// SSM agent writes them, and in a named profile for --aws-profile.
		ecrtest.WriteCredentials(t, files.Credentials, "default", ecrKey, ecrSecret)
		d = newECRCLI(t, config)
		d.ok("pull", "-q", ref)
		if src := d.cachedToken().Source; !strings.Contains(src, `profile "default"`) || !strings.Contains(src, files.Credentials) {
			t.Fatalf("token source %q", src)
		}
		ecrtest.WriteCredentials(t, files.Credentials, "edge", ecrKey, ecrSecret)
		d = newECRCLI(t, config)
		wantIn(t, "stderr", d.fails("pull", "-q", ref), "no AWS credentials found")
		d.ok("--aws-profile", "edge", "pull", "-q", ref)
		wantIn(t, "stderr", d.fails("--aws-profile", "nosuch", "login", "--ecr", ecrHost), `AWS profile "nosuch" not found`)
	})

	t.Run("login errors", func(t *testing.T) {
		wantIn(t, "stderr", c.fails("login", "--ecr", "ghcr.io"), "not an Amazon ECR registry")
		wantIn(t, "stderr", c.fails("login", "--ecr", "public.ecr.aws"), "needs no login")
		wantIn(t, "stderr", c.fails("login", "--ecr", "12345.dkr.ecr.us-east-1.amazonaws.com"), "12-digit")
		wantIn(t, "stderr", c.fails("login", "--ecr", "-u", "AWS", ecrHost), "takes no -u")
	})
}

// bare401 finds a 401 status in an error, not the digits 401 inside a
// temp dir name.
var bare401 = regexp.MustCompile(`\b401\b`)
