package ecr

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRegistry answers registry API requests with basic auth for user AWS
// and its current password; refuse decides how a wrong password is refused.
type fakeRegistry struct {
	mu       sync.Mutex
	password string
	refuse   func(w http.ResponseWriter) // nil: 401 UNAUTHORIZED
	forbid   bool                        // refuse even the right password with a plain 403
	requests int
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	user, pass, ok := r.BasicAuth()
	switch {
	case !ok:
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		writeRegistryError(w, 401, "UNAUTHORIZED", "authentication required")
	case user != "AWS" || pass != f.password:
		if f.refuse != nil {
			f.refuse(w)
			return
		}
		writeRegistryError(w, 401, "UNAUTHORIZED", "authentication required")
	case f.forbid:
		writeRegistryError(w, 403, "DENIED", "User: arn:aws:iam::123456789012:user/edge is not authorized to perform: ecr:BatchGetImage")
	default:
		_, _ = io.WriteString(w, "manifest")
	}
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// startRegistry serves reg on 127.0.0.1 and returns a transport that
// connects there whatever host a request names.
func startRegistry(t *testing.T, reg http.Handler) http.RoundTripper {
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
}

// get fetches a manifest from host with the client's current token.
func get(t *testing.T, c *Client, rt http.RoundTripper, host string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/team/app/manifests/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if reg, err := ParseHost(host); err == nil {
		tok, err := c.token(context.Background(), reg)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(tok.Username, tok.Password)
	} else {
		req.SetBasicAuth("AWS", "whatever")
	}
	resp, err := c.Transport(rt).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestTransportRefreshOn401: a cached token the registry no longer accepts
// (revoked, or the password rotated) is replaced once, and the request
// succeeds with the new one.
func TestTransportRefreshOn401(t *testing.T) {
	fake, _ := setup(t)
	dir := t.TempDir()
	reg := &fakeRegistry{password: "pw-1"}
	rt := startRegistry(t, reg)
	stale := &Token{RegistryID: "123456789012", Region: "us-east-1", Username: "AWS", Password: "revoked", FetchedAt: time.Now(), ExpiresAt: time.Now().Add(6 * time.Hour)}
	if err := (cache{dir: dir}).store("123456789012.us-east-1", stale); err != nil {
		t.Fatal(err)
	}
	// Two clients (two processes) both hold the stale token.
	c1, c2 := New(Options{CacheDir: dir}), New(Options{CacheDir: dir})
	for _, c := range []*Client{c1, c2} {
		if tok, err := c.Token(context.Background(), testHost); err != nil || tok.Password != "revoked" {
			t.Fatalf("%+v, %v; want the cached stale token", tok, err)
		}
	}
	resp, body := get(t, c1, rt, testHost)
	if resp.StatusCode != 200 || body != "manifest" {
		t.Fatalf("got %s %q, want 200 after a refresh", resp.Status, body)
	}
	if fake.Calls() != 1 || reg.requests != 2 {
		t.Fatalf("%d token fetches, %d registry requests; want 1 and 2", fake.Calls(), reg.requests)
	}
	if tok, _ := (cache{dir: dir}).load("123456789012.us-east-1"); tok == nil || tok.Password != "pw-1" {
		t.Fatalf("cache holds %+v, want the new token", tok)
	}
	// The second one, refused in turn, takes the new token from the cache
	// instead of asking AWS again.
	resp, body = get(t, c2, rt, testHost)
	if resp.StatusCode != 200 || body != "manifest" || fake.Calls() != 1 || reg.requests != 4 {
		t.Fatalf("second client: %s %q, %d fetches, %d requests", resp.Status, body, fake.Calls(), reg.requests)
	}
}

// TestTransportExpired403: ECR's 403 "Your authorization token has
// expired" refreshes the token too.
func TestTransportExpired403(t *testing.T) {
	fake, _ := setup(t)
	reg := &fakeRegistry{password: "pw-2", refuse: func(w http.ResponseWriter) {
		writeRegistryError(w, 403, "DENIED", "Your authorization token has expired. Reauthenticate and try again.")
	}}
	rt := startRegistry(t, reg)
	c := New(Options{})
	if _, err := c.Token(context.Background(), testHost); err != nil {
		t.Fatal(err)
	}
	fake.SetPassword("pw-2")
	if resp, body := get(t, c, rt, testHost); resp.StatusCode != 200 || body != "manifest" || fake.Calls() != 2 {
		t.Fatalf("got %s %q after %d fetches", resp.Status, body, fake.Calls())
	}
}

// TestTransportDenied: refusals that a new token does not cure come back
// with the registry's words and berth's explanation.
func TestTransportDenied(t *testing.T) {
	t.Run("fresh token refused", func(t *testing.T) {
		fake, _ := setup(t)
		reg := &fakeRegistry{password: "something-else"}
		rt := startRegistry(t, reg)
		c := New(Options{})
		resp, body := get(t, c, rt, testHost)
		if resp.StatusCode != 401 || fake.Calls() != 2 || reg.requests != 2 {
			t.Fatalf("%s, %d fetches, %d requests; want 401 after one refresh", resp.Status, fake.Calls(), reg.requests)
		}
		for _, want := range []string{"UNAUTHORIZED", "authentication required", "DENIED", `access denied to repository \"team/app\"`, "123456789012 (us-east-1)", "fetched just now", "environment variables"} {
			if !strings.Contains(body, want) {
				t.Errorf("body %s lacks %q", body, want)
			}
		}
	})
	t.Run("plain 403", func(t *testing.T) {
		fake, _ := setup(t)
		reg := &fakeRegistry{password: "pw-1", forbid: true}
		rt := startRegistry(t, reg)
		c := New(Options{})
		resp, body := get(t, c, rt, testHost)
		if resp.StatusCode != 403 || fake.Calls() != 1 || reg.requests != 1 {
			t.Fatalf("%s, %d fetches, %d requests; want 403 and no refresh", resp.Status, fake.Calls(), reg.requests)
		}
		for _, want := range []string{"is not authorized to perform: ecr:BatchGetImage", `access denied to repository \"team/app\"`, "IAM policy"} {
			if !strings.Contains(body, want) {
				t.Errorf("body %s lacks %q", body, want)
			}
		}
	})
	t.Run("no new token", func(t *testing.T) {
		fake, _ := setup(t)
		reg := &fakeRegistry{password: "pw-2"}
		rt := startRegistry(t, reg)
		c := New(Options{})
		if _, err := c.Token(context.Background(), testHost); err != nil {
			t.Fatal(err)
		}
		fake.SetCredentials("AKIDSOMEONEELSE00000", "x")
		resp, body := get(t, c, rt, testHost)
		if resp.StatusCode != 401 {
			t.Fatalf("%s, want 401", resp.Status)
		}
		for _, want := range []string{"UNAUTHORIZED", "refused the authorization token", "a new one could not be fetched", "UnrecognizedClientException"} {
			if !strings.Contains(body, want) {
				t.Errorf("body %s lacks %q", body, want)
			}
		}
	})
}

// TestTransportPassThrough: other registries, the unauthenticated ping and
// credentials the client did not hand out are none of its business.
func TestTransportPassThrough(t *testing.T) {
	fake, _ := setup(t)
	reg := &fakeRegistry{password: "pw-1"}
	rt := startRegistry(t, reg)
	c := New(Options{})
	resp, body := get(t, c, rt, "registry.example.com")
	if resp.StatusCode != 401 || strings.Contains(body, "DENIED") {
		t.Fatalf("other registry: %s %s", resp.Status, body)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+testHost+"/v2/", nil)
	resp, err := c.Transport(rt).RoundTrip(req)
	if err != nil || resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("ping: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, "http://"+testHost+"/v2/team/app/manifests/1", nil)
	req.SetBasicAuth("AWS", "from-auth-json")
	resp, err = c.Transport(rt).RoundTrip(req)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("foreign credentials: %v %v", resp, err)
	}
	b, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(b), "DENIED") {
		t.Fatalf("foreign credentials annotated: %s", b)
	}
	if fake.Calls() != 0 {
		t.Fatalf("%d token fetches for requests that carried no token of ours", fake.Calls())
	}
}

func TestRepository(t *testing.T) {
	for path, want := range map[string]string{
		"/v2/team/app/manifests/1":              "team/app",
		"/v2/a/blobs/sha256:abc":                "a",
		"/v2/x/manifests/y/blobs/z/manifests/1": "x/manifests/y/blobs/z",
		"/v2/app/tags/list":                     "app",
		"/v2/":                                  "",
		"/other":                                "",
	} {
		if got := repository(path); got != want {
			t.Errorf("repository(%q) = %q, want %q", path, got, want)
		}
	}
}
