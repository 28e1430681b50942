//go:build linux

package regconf

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/testrig/registry"
)

// Tests against Debian's docker-registry (the test rig's fixture, Linux only).

// A TLS registry with a private CA: trusted through caFiles (in addition to
// the system roots), refused with a certificate error without it. Login is
// checked against the registry, saved, and used by the keychain.
func TestTLSRegistryCAFilesAndLogin(t *testing.T) {
	t.Parallel()
	reg := registry.Start(t, registry.WithTLS(), registry.WithBasicAuth("alice", "correct horse"))
	img := randomImage(t)
	ref := reg.Ref("team/app:1")
	if err := remote.Write(mustRef(t, nil, ref), img, reg.RemoteOptions()...); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	authPath := filepath.Join(t.TempDir(), "auth.json")
	kc := Keychain(authPath)
	trusted := configFor(t, map[string]any{reg.Host: map[string]any{"caFiles": []string{reg.CAPath}}})
	untrusted := configFor(t, nil)

	t.Run("no caFiles: certificate error", func(t *testing.T) {
		_, err := pull(ctx, onlyEndpoint(t, untrusted, ref), kc)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("err = %v, want x509.UnknownAuthorityError", err)
		}
		err = CheckLogin(ctx, reg.Host, "alice", "correct horse", untrusted)
		if !errors.As(err, &unknown) || errors.Is(err, ErrCredentialsRejected) {
			t.Fatalf("CheckLogin without the CA: %v", err)
		}
	})
	t.Run("anonymous is refused", func(t *testing.T) {
		_, err := pull(ctx, onlyEndpoint(t, trusted, ref), kc)
		if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Fatalf("err = %v, want the registry's UNAUTHORIZED", err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		err := CheckLogin(ctx, reg.Host, "alice", "wrong", trusted)
		if !errors.Is(err, ErrCredentialsRejected) || !strings.Contains(err.Error(), "authentication required") {
			t.Fatalf("err = %v, want ErrCredentialsRejected with the registry's message", err)
		}
		t.Logf("wrong password: %v", err)
	})
	t.Run("login then pull", func(t *testing.T) {
		if err := CheckLogin(ctx, reg.Host, "alice", "correct horse", trusted); err != nil {
			t.Fatal(err)
		}
		if err := Login(authPath, reg.Host, "alice", "correct horse"); err != nil {
			t.Fatal(err)
		}
		got, err := pull(ctx, onlyEndpoint(t, trusted, ref), kc)
		if err != nil {
			t.Fatal(err)
		}
		if want := digestOf(t, img); got != want {
			t.Fatalf("digest %s, want %s", got, want)
		}
	})
}

// Credentials from a credential helper (a real executable speaking the
// protocol) reach the registry.
func TestPullWithCredentialHelper(t *testing.T) {
	logPath := installHelper(t) // sets PATH: not parallel
	reg := registry.Start(t, registry.WithBasicAuth("helperuser", "helperpass"))
	t.Setenv("BERTHTEST_USER", "helperuser")
	t.Setenv("BERTHTEST_PASS", "helperpass")
	img := randomImage(t)
	ref := reg.Ref("app:1")
	if err := remote.Write(mustRef(t, nil, ref), img, reg.RemoteOptions()...); err != nil {
		t.Fatal(err)
	}
	authPath := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, authPath, []byte(`{"credHelpers": {"`+reg.Host+`": "berthtest"}}`), 0o600)
	cfg := configFor(t, nil)
	got, err := pull(testContext(t), onlyEndpoint(t, cfg, ref), Keychain(authPath))
	if err != nil {
		t.Fatal(err)
	}
	if got != digestOf(t, img) {
		t.Fatal("wrong image")
	}
	if calls, _ := os.ReadFile(logPath); !strings.Contains(string(calls), "get "+reg.Host+"\n") {
		t.Fatalf("helper calls: %q", calls)
	}
}

// Mirrors are tried in order, then the origin: a mirror that is down is
// skipped; a mirror holding the image under its prefix serves it; when every
// mirror fails, the origin does.
func TestMirrorFallback(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	origin := registry.Start(t)
	mirror := registry.Start(t)
	originImg, mirrorImg := randomImage(t), randomImage(t)
	if err := remote.Write(mustRef(t, nil, origin.Ref("team/app:1")), originImg, origin.RemoteOptions()...); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, nil, mirror.Ref("cache/team/app:1")), mirrorImg, mirror.RemoteOptions()...); err != nil {
		t.Fatal(err)
	}
	down := closedAddr(t)

	for _, tc := range []struct {
		name    string
		mirrors []string
		want    int // index of the endpoint that serves
		origin  bool
	}{
		{"down then working mirror", []string{down, mirror.Host + "/cache"}, 1, false},
		{"all mirrors fail", []string{down, mirror.Host + "/empty"}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configFor(t, map[string]any{origin.Host: map[string]any{"mirrors": tc.mirrors}})
			eps, err := cfg.Endpoints(mustRef(t, cfg, origin.Ref("team/app:1")))
			if err != nil {
				t.Fatal(err)
			}
			if len(eps) != 3 || eps[0].Ref.String() != down+"/team/app:1" || eps[1].Ref.Context().RepositoryStr() != strings.SplitN(tc.mirrors[1], "/", 2)[1]+"/team/app" {
				t.Fatalf("endpoints: %v", eps)
			}
			start := time.Now()
			got, used, err := pullFirst(ctx, eps, Keychain(""))
			if err != nil {
				t.Fatal(err)
			}
			want := mirrorImg
			if tc.origin {
				want = originImg
			}
			if used != tc.want || got != digestOf(t, want) {
				t.Fatalf("served by endpoint %d (%s), want %d", used, got, tc.want)
			}
			t.Logf("served by %s after %s", eps[used].Ref, time.Since(start).Round(time.Millisecond))
		})
	}
	t.Run("docker hub library convention", func(t *testing.T) {
		cfg := configFor(t, map[string]any{"docker.io": map[string]any{"mirrors": []string{down, mirror.Host}}})
		if err := remote.Write(mustRef(t, nil, mirror.Ref("library/busybox:1.36")), mirrorImg, mirror.RemoteOptions()...); err != nil {
			t.Fatal(err)
		}
		eps, err := cfg.Endpoints(mustRef(t, cfg, "busybox:1.36"))
		if err != nil {
			t.Fatal(err)
		}
		// Only the mirrors: the origin is Docker Hub, off limits to tests.
		got, used, err := pullFirst(ctx, eps[:2], Keychain(""))
		if err != nil || used != 1 || got != digestOf(t, mirrorImg) {
			t.Fatalf("pull busybox via mirror: %s from %d, %v", got, used, err)
		}
	})
}
