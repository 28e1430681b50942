//go:build linux

package image

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRobustRegistryErrors puts a fault-injecting proxy in front of the
// registry: transient 503s are retried and the pull succeeds; persistent
// 503s and 429s (on the manifest or on a layer) end as a retryable
// *RegistryError carrying the status and the registry's message; a registry
// that never answers, or stalls in the middle of a layer, ends the pull
// promptly at the context's deadline with a retryable error and leaves
// nothing behind.
func TestRobustRegistryErrors(t *testing.T) {
	testrig.RequireRoot(t)
	r := registry.Start(t)
	img := testimage.App(t)
	testimage.Push(t, img, r.Ref("app:1"))
	top := rbLayers(t, img)[1]
	manifestPath := "/v2/app/manifests/1"
	layerPath := "/v2/app/blobs/" + top.Digest.String()
	// ggcr's default backoff waits 1 s then 3 s; the same three attempts,
	// quicker.
	fast := remote.WithRetryBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 3})

	setup := func(t *testing.T, fail func(r *http.Request, n int) int) (*Store, *rbProxy, PullOptions) {
		s := newStore(t)
		p := rbStartProxy(t, r.Host)
		p.set(func(p *rbProxy) { p.fail = fail })
		return s, p, PullOptions{Remote: append(r.RemoteOptions(), fast)}
	}
	// failOn answers code to the first times GETs of path (all of them if
	// times < 0).
	failOn := func(path string, code, times int) func(*http.Request, int) int {
		return func(req *http.Request, n int) int {
			if req.Method == http.MethodGet && req.URL.Path == path && (times < 0 || n < times) {
				return code
			}
			return 0
		}
	}
	assertClean := func(t *testing.T, s *Store, ref string) {
		t.Helper()
		if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("record after a failed pull: %v", err)
		}
		if tmp := rbTemps(s); len(tmp) > 0 {
			t.Errorf("temp leftovers after a failed pull: %v", tmp)
		}
		rbCheckConsistent(t, s)
	}

	t.Run("503-twice-then-ok", func(t *testing.T) {
		for _, path := range []string{manifestPath, layerPath} {
			s, p, o := setup(t, failOn(path, http.StatusServiceUnavailable, 2))
			if _, err := s.Pull(context.Background(), p.Ref("app:1"), o); err != nil {
				t.Fatalf("503 twice on %s: pull failed: %v", path, err)
			}
			if n := p.requests("GET", path); n != 3 {
				t.Errorf("GET %s seen %d times, want 3 (two 503s, one retry that passes)", path, n)
			}
			rec, err := s.Get(p.Ref("app:1"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.LayerDirs(rec); err != nil {
				t.Fatal(err)
			}
		}
	})

	for _, c := range []struct {
		name string
		path string
		code int
	}{
		{"503-manifest", manifestPath, http.StatusServiceUnavailable},
		{"503-layer", layerPath, http.StatusServiceUnavailable},
		{"429-manifest", manifestPath, http.StatusTooManyRequests},
		{"429-layer", layerPath, http.StatusTooManyRequests},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, p, o := setup(t, failOn(c.path, c.code, -1))
			_, err := s.Pull(context.Background(), p.Ref("app:1"), o)
			var re *RegistryError
			if !errors.As(err, &re) || re.StatusCode != c.code || !re.Temporary() || !IsRetryable(err) {
				t.Fatalf("pull: %v (%T), want a retryable RegistryError with status %d", err, err, c.code)
			}
			if !strings.Contains(err.Error(), "injected status") {
				t.Errorf("error lacks the registry's own message: %v", err)
			}
			if n := p.requests("GET", c.path); n != 3 {
				t.Errorf("GET %s seen %d times, want 3 attempts", c.path, n)
			}
			assertClean(t, s, p.Ref("app:1"))
		})
	}

	t.Run("hang", func(t *testing.T) {
		s, p, o := setup(t, nil)
		p.set(func(p *rbProxy) { p.hang = true })
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.Pull(ctx, p.Ref("app:1"), o)
		elapsed := time.Since(start)
		if err == nil || !IsRetryable(err) {
			t.Fatalf("pull from a registry that never answers: %v (%T), want a retryable error", err, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("pull from a silent registry ended with %v, want the caller's deadline", err)
		}
		t.Logf("after %v: %v", elapsed.Round(time.Millisecond), err)
		assertClean(t, s, p.Ref("app:1"))
	})

	t.Run("cut-mid-layer", func(t *testing.T) {
		s, p, o := setup(t, nil)
		p.set(func(p *rbProxy) { p.cut[top.Digest.String()] = true })
		_, err := s.Pull(context.Background(), p.Ref("app:1"), o)
		var re *RegistryError
		if !errors.As(err, &re) || !IsRetryable(err) {
			t.Fatalf("pull whose connection broke mid-layer: %v (%T), want a retryable RegistryError", err, err)
		}
		t.Logf("error: %v", err)
		assertClean(t, s, p.Ref("app:1"))
	})

	t.Run("stall-mid-layer", func(t *testing.T) {
		s, p, o := setup(t, nil)
		p.set(func(p *rbProxy) { p.hold[top.Digest.String()] = true })
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := s.Pull(ctx, p.Ref("app:1"), o)
		elapsed := time.Since(start)
		if err == nil || !IsRetryable(err) {
			t.Fatalf("pull stalled mid-layer: %v (%T), want a retryable error", err, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("pull stalled mid-layer ended with %v, want the caller's deadline", err)
		}
		t.Logf("after %v: %v", elapsed.Round(time.Millisecond), err)
		assertClean(t, s, p.Ref("app:1"))
	})
}
