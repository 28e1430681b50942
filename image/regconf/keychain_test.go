package regconf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// helperScript is docker-credential-berthtest: it speaks the credential
// helper protocol (`get`, server URL on stdin, JSON on stdout) and logs each
// call to $BERTHTEST_LOG.
const helperScript = `#!/bin/sh
[ "$1" = get ] || { echo "unsupported action $1" >&2; exit 2; }
server=$(cat)
echo "$1 $server" >> "$BERTHTEST_LOG"
case "$server" in
helper.berth.test)
	printf '{"ServerURL":"%s","Username":"hu","Secret":"hp"}\n' "$server" ;;
token.berth.test)
	printf '{"ServerURL":"%s","Username":"<token>","Secret":"idtok"}\n' "$server" ;;
https://index.docker.io/v1/)
	printf '{"ServerURL":"%s","Username":"hubuser","Secret":"hubpass"}\n' "$server" ;;
garbage.berth.test)
	echo 'not json, maybe a secret' ;;
broken.berth.test)
	echo "the keyring is locked"; exit 1 ;;
127.0.0.1:*)
	printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "$server" "$BERTHTEST_USER" "$BERTHTEST_PASS" ;;
*)
	echo "credentials not found in native keychain"; exit 1 ;;
esac
`

// installHelper puts docker-credential-berthtest first on PATH and returns
// the file its calls are logged to. Tests that call it can't run in parallel.
func installHelper(t *testing.T) (logPath string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "docker-credential-berthtest"), []byte(helperScript), 0o755)
	logPath = filepath.Join(dir, "calls.log")
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("BERTHTEST_LOG", logPath)
	return logPath
}

func resolve(t *testing.T, kc authn.Keychain, host string) (*authn.AuthConfig, error) {
	t.Helper()
	reg, err := name.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := authn.Resolve(context.Background(), kc, reg)
	if err != nil {
		return nil, err
	}
	if auth == authn.Anonymous {
		return nil, nil
	}
	return authn.Authorization(context.Background(), auth)
}

// fakeKeychain stands in for an extra keychain (ECR's): it answers for one
// host and counts how often it is asked.
type fakeKeychain struct {
	host  string
	err   error
	calls atomic.Int64
}

func (f *fakeKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	if r.RegistryStr() == f.host {
		return &authn.Basic{Username: "AWS", Password: "ecr-token"}, nil
	}
	return authn.Anonymous, nil
}

func TestKeychainOrder(t *testing.T) {
	logPath := installHelper(t)
	path := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, path, []byte(`{
		"auths": {
			"file.berth.test": {"auth": "`+b64("fu:fp")+`"},
			"both.berth.test": {"auth": "`+b64("fileuser:filepass")+`"},
			"placeholder.berth.test": {}
		},
		"credHelpers": {
			"helper.berth.test": "berthtest",
			"token.berth.test": "berthtest",
			"both.berth.test": "berthtest",
			"notfound.berth.test": "berthtest",
			"broken.berth.test": "berthtest",
			"garbage.berth.test": "berthtest",
			"missing.berth.test": "nosuchhelper",
			"docker.io": "berthtest"
		}
	}`), 0o600)
	extra := &fakeKeychain{host: "ecr.berth.test"}
	kc := Keychain(path, extra)

	for _, tc := range []struct {
		host       string
		user, pass string // "" user: anonymous
		token      string
		err        string
		extraAsked bool
	}{
		{host: "file.berth.test", user: "fu", pass: "fp"},
		{host: "both.berth.test", user: "fileuser", pass: "filepass"}, // the file before the helper
		{host: "helper.berth.test", user: "hu", pass: "hp"},
		{host: "token.berth.test", user: "<token>", token: "idtok"},
		{host: "docker.io", user: "hubuser", pass: "hubpass"}, // helper asked for Docker's hub key
		{host: "notfound.berth.test", extraAsked: true},       // not found: next source
		{host: "placeholder.berth.test", extraAsked: true},    // {} holds nothing
		{host: "ecr.berth.test", user: "AWS", pass: "ecr-token", extraAsked: true},
		{host: "broken.berth.test", err: "the keyring is locked"},
		{host: "garbage.berth.test", err: "not the credential helper JSON"},
		{host: "missing.berth.test", err: "docker-credential-nosuchhelper not found"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			before := extra.calls.Load()
			cfg, err := resolve(t, kc, tc.host)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "maybe a secret") {
					t.Fatalf("error echoes helper output: %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if asked := extra.calls.Load() > before; asked != tc.extraAsked {
				t.Errorf("extra keychain asked = %v, want %v", asked, tc.extraAsked)
			}
			if tc.err != "" {
				return
			}
			switch {
			case tc.user == "" && cfg != nil:
				t.Errorf("got %+v, want anonymous", cfg)
			case tc.user != "" && (cfg == nil || cfg.Username != tc.user || cfg.Password != tc.pass || cfg.IdentityToken != tc.token):
				t.Errorf("got %+v, want %s/%s/%s", cfg, tc.user, tc.pass, tc.token)
			}
		})
	}

	calls, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"get helper.berth.test\n", "get https://index.docker.io/v1/\n", "get broken.berth.test\n"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("helper calls %q lack %q", calls, want)
		}
	}
	if strings.Contains(string(calls), "both.berth.test") || strings.Contains(string(calls), "file.berth.test") {
		t.Errorf("helper asked for a registry the file answers: %q", calls)
	}
}

func TestKeychainExtras(t *testing.T) {
	// No file at all: extras in order, errors returned, then anonymous.
	missing := filepath.Join(t.TempDir(), "none.json")
	first, second := &fakeKeychain{host: "a.berth.test"}, &fakeKeychain{host: "b.berth.test"}
	kc := Keychain(missing, first, second)
	if cfg, err := resolve(t, kc, "b.berth.test"); err != nil || cfg == nil || cfg.Username != "AWS" {
		t.Fatalf("b: %+v, %v", cfg, err)
	}
	if first.calls.Load() != 1 || second.calls.Load() != 1 {
		t.Errorf("calls = %d, %d; want 1, 1", first.calls.Load(), second.calls.Load())
	}
	if cfg, err := resolve(t, kc, "a.berth.test"); err != nil || cfg == nil || second.calls.Load() != 1 {
		t.Errorf("a: %+v, %v; second asked %d times (want only the first)", cfg, err, second.calls.Load())
	}
	if cfg, err := resolve(t, kc, "c.berth.test"); err != nil || cfg != nil {
		t.Errorf("c: %+v, %v; want anonymous", cfg, err)
	}
	boom := errors.New("no AWS credentials (looked in env, ~/.aws/credentials, IMDS)")
	kc = Keychain(missing, &fakeKeychain{err: boom}, second)
	if _, err := resolve(t, kc, "x.berth.test"); !errors.Is(err, boom) {
		t.Errorf("extra's error: got %v", err)
	}

	// A corrupt auth file is an error, not anonymous.
	bad := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, bad, []byte(`{"auths": 1}`), 0o600)
	if _, err := resolve(t, Keychain(bad, first), "a.berth.test"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("corrupt file: %v", err)
	}
	// "" skips the file.
	if cfg, err := resolve(t, Keychain("", first), "a.berth.test"); err != nil || cfg == nil {
		t.Errorf("no file: %+v, %v", cfg, err)
	}
}

// The keychain sees logins at once: it re-reads the file.
func TestKeychainSeesLogin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	kc := Keychain(path)
	if cfg, err := resolve(t, kc, "a.berth.test"); err != nil || cfg != nil {
		t.Fatalf("before login: %+v, %v", cfg, err)
	}
	if err := Login(path, "a.berth.test", "u", "p"); err != nil {
		t.Fatal(err)
	}
	if cfg, err := resolve(t, kc, "a.berth.test"); err != nil || cfg == nil || cfg.Password != "p" {
		t.Fatalf("after login: %+v, %v", cfg, err)
	}
}
