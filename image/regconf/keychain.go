package regconf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// helperTimeout bounds one credential helper run.
const helperTimeout = 30 * time.Second

// notFoundMessage is what credential helpers print (with a non-zero exit)
// when they hold nothing for a server: docker-credential-helpers' protocol.
const notFoundMessage = "credentials not found in native keychain"

// Keychain returns berth's keychain. For a registry it returns the first
// credentials found in this order:
//
//  1. the auths entry for the registry in the auth file at authFilePath
//     (re-read on every lookup, so a login takes effect at once; a missing
//     file holds nothing; "" skips the file);
//  2. the credential helper the file names for the registry — its
//     credHelpers entry, else its credsStore — run as
//     `docker-credential-NAME get` with the registry on stdin. A helper that
//     answers "credentials not found" gives nothing; any other failure
//     (missing binary, crash, bad output) is returned as an error, never
//     turned into anonymous access;
//  3. each of extra, in order (the seam for the ECR keychain); an error
//     from one is returned;
//  4. anonymous.
//
// It never reads $HOME/.docker/config.json, $DOCKER_CONFIG or Podman's
// files: under sudo those belong to whoever ran sudo, or to root by accident.
// An auth file readable by group or others is used with a warning, logged
// once per keychain through slog's default logger.
func Keychain(authFilePath string, extra ...authn.Keychain) authn.Keychain {
	return &keychain{path: authFilePath, extra: extra}
}

type keychain struct {
	path  string
	extra []authn.Keychain
	warn  sync.Once
}

var _ authn.ContextKeychain = (*keychain)(nil)

func (k *keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

func (k *keychain) ResolveContext(ctx context.Context, target authn.Resource) (authn.Authenticator, error) {
	host := target.RegistryStr()
	if k.path != "" {
		a, err := LoadAuthFile(k.path)
		if err != nil {
			return nil, err
		}
		if w := a.Warnings(); len(w) > 0 {
			k.warn.Do(func() {
				for _, msg := range w {
					slog.Warn(msg)
				}
			})
		}
		if cfg, ok := a.Credentials(host); ok {
			return authn.FromConfig(cfg), nil
		}
		if helper := a.Helper(host); helper != "" {
			cfg, found, err := runHelper(ctx, helper, authKey(host))
			if err != nil {
				return nil, fmt.Errorf("credentials for %s (credential helper named in %s): %w", host, k.path, err)
			}
			if found {
				return authn.FromConfig(cfg), nil
			}
		}
	}
	for _, kc := range k.extra {
		auth, err := authn.Resolve(ctx, kc, target)
		if err != nil {
			return nil, err
		}
		if auth != nil && auth != authn.Anonymous {
			return auth, nil
		}
	}
	return authn.Anonymous, nil
}

// helperOutput is what `docker-credential-NAME get` prints.
type helperOutput struct {
	ServerURL string
	Username  string
	Secret    string
}

// runHelper runs `docker-credential-NAME get` for serverURL. found is false
// when the helper holds no credentials for it.
func runHelper(ctx context.Context, helper, serverURL string) (cfg authn.AuthConfig, found bool, err error) {
	if err := checkHelperName(helper); err != nil {
		return cfg, false, err
	}
	prog := "docker-credential-" + helper
	path, err := exec.LookPath(prog)
	if err != nil {
		return cfg, false, fmt.Errorf("%s not found on PATH: %w", prog, err)
	}
	ctx, cancel := context.WithTimeout(ctx, helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "get")
	cmd.Stdin = strings.NewReader(serverURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limitedBuffer{b: &stdout, n: 1 << 20}, &limitedBuffer{b: &stderr, n: 4 << 10}
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		out := strings.TrimSpace(stdout.String())
		if out == notFoundMessage {
			return cfg, false, nil
		}
		if ctx.Err() != nil {
			return cfg, false, fmt.Errorf("%s get: %w", prog, ctx.Err())
		}
		// On failure helpers print a message, not credentials.
		msg := strings.TrimSpace(out + " " + strings.TrimSpace(stderr.String()))
		if len(msg) > 512 {
			msg = msg[:512] + "…"
		}
		if msg != "" {
			return cfg, false, fmt.Errorf("%s get: %w: %s", prog, err, msg)
		}
		return cfg, false, fmt.Errorf("%s get: %w", prog, err)
	}
	var out helperOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		// Don't echo the output: it may hold the secret.
		return cfg, false, fmt.Errorf("%s get: output is not the credential helper JSON {ServerURL, Username, Secret}", prog)
	}
	if out.Secret == "" {
		return cfg, false, nil
	}
	if out.Username == "<token>" {
		// An identity (OAuth refresh) token, per Docker's helper protocol.
		return authn.AuthConfig{Username: out.Username, IdentityToken: out.Secret}, true, nil
	}
	return authn.AuthConfig{Username: out.Username, Password: out.Secret}, true, nil
}

func checkHelperName(h string) error {
	if h == "" {
		return errors.New("empty credential helper name")
	}
	for _, r := range h {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("credential helper name %q: use letters, digits, dash, underscore and dot only", h)
		}
	}
	return nil
}

// limitedBuffer keeps the first n bytes written and discards the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
