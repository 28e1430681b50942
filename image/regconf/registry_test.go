package regconf

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// configFor writes registries.json holding regs and loads it.
func configFor(t *testing.T, regs map[string]any) *Config {
	t.Helper()
	if regs == nil {
		regs = map[string]any{}
	}
	data, err := json.Marshal(map[string]any{"registries": regs, "connectTimeout": "5s"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "registries.json")
	writeFile(t, path, data, 0o644)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func onlyEndpoint(t *testing.T, c *Config, ref string) Endpoint {
	t.Helper()
	eps, err := c.Endpoints(mustRef(t, c, ref))
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 {
		t.Fatalf("%d endpoints for %s, want 1", len(eps), ref)
	}
	return eps[0]
}

// endpoint: the registry's name resolves nowhere; its connections go to a
// local registry whose certificate is valid only for that name, and TLS
// verifies the configured name (not 127.0.0.1).
func TestEndpointOverride(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, host string // host: the configuration key and the reference's registry
	}{
		{"without port", "registry.berth.test"},
		{"with port", "registry.berth.test:5443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pki := newPKI(t, "registry.berth.test")
			mem := startMemRegistry(t, pki)
			cfg := configFor(t, map[string]any{tc.host: map[string]any{
				"endpoint": mem.addr(),
				"caFiles":  []string{pki.writeCA(t, dir)},
			}})
			img := randomImage(t)
			ref := tc.host + "/ecr/app:1.4"
			push(t, cfg, ref, img)
			before := mem.hits.Load()
			got, err := pull(ctx, onlyEndpoint(t, cfg, ref), Keychain(""))
			if err != nil {
				t.Fatal(err)
			}
			if got != digestOf(t, img) || mem.hits.Load() == before {
				t.Fatalf("digest %s (want %s), %d requests served", got, digestOf(t, img), mem.hits.Load()-before)
			}
		})
	}
	t.Run("certificate for another name", func(t *testing.T) {
		pki := newPKI(t, "other.berth.test")
		mem := startMemRegistry(t, pki)
		cfg := configFor(t, map[string]any{"registry.berth.test": map[string]any{
			"endpoint": mem.addr(),
			"caFiles":  []string{pki.writeCA(t, dir)},
		}})
		_, err := pull(ctx, onlyEndpoint(t, cfg, "registry.berth.test/app:1"), Keychain(""))
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) || hostErr.Host != "registry.berth.test" {
			t.Fatalf("err = %v, want x509.HostnameError for registry.berth.test", err)
		}
	})
}

// insecure: plain HTTP, and TLS without verification, for that registry.
func TestInsecure(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	plain := startMemRegistry(t, nil)
	untrusted := startMemRegistry(t, newPKI(t, "someone-else.example"))
	img := randomImage(t)
	for _, mem := range []*memRegistry{plain, untrusted} {
		pushCfg := configFor(t, map[string]any{"seed.berth.test": map[string]any{"endpoint": mem.addr(), "insecure": true}})
		push(t, pushCfg, "seed.berth.test/app:1", img)
	}
	for _, tc := range []struct {
		name     string
		mem      *memRegistry
		insecure bool
		wantErr  string
	}{
		{"plain HTTP allowed", plain, true, ""},
		{"plain HTTP refused", plain, false, "server gave HTTP response to HTTPS client"},
		{"unverified TLS allowed", untrusted, true, ""},
		{"unverified TLS refused", untrusted, false, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configFor(t, map[string]any{"plain.berth.test:5000": map[string]any{"endpoint": tc.mem.addr(), "insecure": tc.insecure}})
			got, err := pull(ctx, onlyEndpoint(t, cfg, "plain.berth.test:5000/app:1"), Keychain(""))
			if tc.wantErr == "" {
				if err != nil || got != digestOf(t, img) {
					t.Fatalf("pull: %s, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// tokenRegistry is ggcr's registry behind Docker's bearer-token flow: /v2/
// answers 401 with a Bearer challenge, /token trades basic credentials for a
// token. It stands in for Docker Hub-style registries.
func tokenRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	const token = "t0ken"
	inner := ggcrregistry.New(ggcrregistry.Logger(discardLogger()))
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}`)
				return
			}
			if r.URL.Query().Get("scope") == "" {
				http.Error(w, "no scope", http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, token)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="berth-test"`, srv.URL))
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestCheckLoginBearer(t *testing.T) {
	t.Parallel()
	host := tokenRegistry(t, "bob", "pw")
	ctx := testContext(t)
	cfg := configFor(t, nil)
	if err := CheckLogin(ctx, host, "bob", "pw", cfg); err != nil {
		t.Fatalf("right password: %v", err)
	}
	err := CheckLogin(ctx, "http://"+host+"/v1/", "bob", "nope", cfg)
	if !errors.Is(err, ErrCredentialsRejected) || !strings.Contains(err.Error(), "incorrect username or password") {
		t.Fatalf("wrong password: %v", err)
	}
	t.Logf("wrong password: %v", err)
	// And nil cfg means the defaults.
	if err := CheckLogin(ctx, host, "bob", "pw", nil); err != nil {
		t.Fatalf("nil cfg: %v", err)
	}
}
