//go:build linux

package image

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testapp"
	"github.com/berth-dev/berth/internal/testrig/testimage"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testimage.Cleanup()
	testapp.Cleanup()
	os.Exit(code)
}

// newStore opens a store in a fresh state root.
func newStore(t *testing.T) *Store {
	t.Helper()
	testrig.RequireRoot(t)
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pullOpts pulls from the fixture with its own transport and credentials.
func pullOpts(r *registry.Registry) PullOptions {
	return PullOptions{Remote: r.RemoteOptions()}
}

// mountMerged mounts the image's layers as one read-only overlay view and
// returns its path; unmounted at cleanup.
func mountMerged(t *testing.T, s *Store, rec *Record) string {
	t.Helper()
	dirs, err := s.LayerDirs(rec)
	if err != nil {
		t.Fatal(err)
	}
	lower := make([]string, len(dirs))
	for i, d := range dirs {
		lower[len(dirs)-1-i] = d
	}
	base := t.TempDir()
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return merged
}

func TestPullByTagAndDigest(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	ctx := context.Background()
	d := testimage.Push(t, testimage.App(t), r.Ref("app:1"))

	var mu sync.Mutex
	phases := map[Phase]int{}
	o := pullOpts(r)
	o.Progress = func(p Progress) { mu.Lock(); phases[p.Phase]++; mu.Unlock() }
	rec, err := s.Pull(ctx, r.Ref("app:1"), o)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Digest != d || rec.Name != r.Ref("app:1") || len(rec.Layers) != 2 {
		t.Fatalf("record %+v, want digest %s, 2 layers", rec, d)
	}
	if phases[PhaseDone] != 2 || phases[PhaseExists] != 0 {
		t.Fatalf("first pull phases %v, want 2 done", phases)
	}
	merged := mountMerged(t, s, rec)
	for _, p := range []string{"bin/busybox", "usr/local/bin/testapp", "etc/passwd"} {
		if _, err := os.Stat(filepath.Join(merged, p)); err != nil {
			t.Errorf("merged rootfs: %v", err)
		}
	}
	if l, err := os.Readlink(filepath.Join(merged, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q (%v)", l, err)
	}

	// Again by digest: every layer is already there, nothing is fetched.
	clear(phases)
	byDigest := r.Ref("app@" + d.String())
	rec2, err := s.Pull(ctx, byDigest, o)
	if err != nil {
		t.Fatal(err)
	}
	if rec2.Digest != d || rec2.ID != rec.ID || phases[PhaseExists] != 2 || phases[PhaseDone] != 0 {
		t.Fatalf("pull by digest: record %+v, phases %v", rec2, phases)
	}
	got, err := s.Get(byDigest)
	if err != nil || got.Digest != d {
		t.Fatalf("Get(%s) = %v, %v", byDigest, got, err)
	}
	cfg, err := s.Config(rec)
	if err != nil || cfg.Config.Entrypoint[0] != "/usr/local/bin/testapp" {
		t.Fatalf("config %+v, %v", cfg, err)
	}
}

// TestPullMergedView checks whiteouts, opaque dirs, links, devices, xattrs
// and setuid bits on the merged overlay of a pulled multi-layer image, for
// every layer compression.
func TestPullMergedView(t *testing.T) {
	r := registry.Start(t)
	for _, c := range []testimage.Compression{testimage.Gzip, testimage.Zstd, testimage.Uncompressed} {
		t.Run(c.String(), func(t *testing.T) {
			s := newStore(t)
			img, tree := testimage.Layered(t, testimage.WithCompression(c))
			testimage.Push(t, img, r.Ref("layered:"+c.String()))
			rec, err := s.Pull(context.Background(), r.Ref("layered:"+c.String()), pullOpts(r))
			if err != nil {
				t.Fatal(err)
			}
			testimage.CheckTree(t, mountMerged(t, s, rec), tree)
		})
	}
}

func TestPullMultiArch(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	ctx := context.Background()
	idx := testimage.Index(t, nil)
	testimage.PushIndex(t, idx, r.Ref("multi:1"))

	rec, err := s.Pull(ctx, r.Ref("multi:1"), pullOpts(r))
	if err != nil {
		t.Fatal(err)
	}
	host := HostPlatform()
	if rec.Platform != platformString(host) || rec.IndexDigest == nil {
		t.Fatalf("host pull: platform %s, index %v", rec.Platform, rec.IndexDigest)
	}
	b, err := os.ReadFile(filepath.Join(mountMerged(t, s, rec), "etc/platform"))
	if err != nil || !strings.Contains(string(b), platformString(host)) {
		t.Fatalf("/etc/platform = %q, %v; want %s", b, err, platformString(host))
	}

	o := pullOpts(r)
	o.Platform = &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	rec, err = s.Pull(ctx, r.Ref("multi:1"), o)
	if err != nil || rec.Platform != "linux/arm/v7" {
		t.Fatalf("arm/v7 pull: %+v, %v", rec, err)
	}
	o.Platform = &v1.Platform{OS: "linux", Architecture: "s390x"}
	if _, err = s.Pull(ctx, r.Ref("multi:1"), o); !errors.Is(err, ErrNoMatchingPlatform) || !strings.Contains(err.Error(), "linux/arm64") {
		t.Fatalf("s390x pull: %v, want ErrNoMatchingPlatform listing what the index has", err)
	}
}

// TestPullAuthTLS pulls from a registry with TLS (a test CA) and htpasswd.
func TestPullAuthTLS(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t, registry.WithTLS(), registry.WithBasicAuth("berth", "s3cret"))
	testimage.Push(t, testimage.Busybox(t), r.Ref("bb:1"), r.RemoteOptions()...)
	if _, err := s.Pull(context.Background(), r.Ref("bb:1"), pullOpts(r)); err != nil {
		t.Fatal(err)
	}
	// Without credentials: a typed, non-retryable unauthorized error.
	_, err := s.Pull(context.Background(), r.Ref("bb:1"), PullOptions{Remote: []remote.Option{remote.WithTransport(r.Transport())}})
	var re *RegistryError
	if !errors.As(err, &re) || re.StatusCode != 401 || !errors.Is(err, ErrUnauthorized) || IsRetryable(err) {
		t.Fatalf("anonymous pull: %v (%T), want a 401 RegistryError", err, err)
	}
	// Without the CA: the certificate error, not ggcr's plain-HTTP fallback.
	_, err = s.Pull(context.Background(), r.Ref("bb:1"), PullOptions{})
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "certificate") || IsRetryable(err) {
		t.Fatalf("pull without the CA: %v", err)
	}
}

func TestPullNotFound(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	_, err := s.Pull(context.Background(), r.Ref("nothing:here"), pullOpts(r))
	var re *RegistryError
	if !errors.As(err, &re) || re.StatusCode != 404 || !errors.Is(err, ErrNotFound) || IsRetryable(err) {
		t.Fatalf("pull of a missing image: %v", err)
	}
	if !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") && !strings.Contains(err.Error(), "manifest unknown") {
		t.Errorf("error lacks the registry's own message: %v", err)
	}
}

// TestPullCorruptBlob flips a byte of a layer in the registry's storage: the
// pull fails with a verification error and leaves nothing visible.
func TestPullCorruptBlob(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	img := testimage.App(t)
	testimage.Push(t, img, r.Ref("app:bad"))
	layers, _ := img.Layers()
	d, _ := layers[1].Digest()
	data := filepath.Join(r.Dir, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatalf("registry storage layout: %v", err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(data, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = s.Pull(context.Background(), r.Ref("app:bad"), pullOpts(r))
	if err == nil {
		t.Fatal("pull of a corrupt layer succeeded")
	}
	t.Logf("error: %v", err)
	if _, err := s.Get(r.Ref("app:bad")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record after a failed pull: %v", err)
	}
	if s.hasBlob(d, -1) {
		t.Fatal("corrupt blob is visible in the store")
	}
	cfg, _ := img.ConfigFile()
	chain := sha256Hash([]byte(cfg.RootFS.DiffIDs[0].String() + " " + cfg.RootFS.DiffIDs[1].String()))
	if s.hasSnapshot(chain) {
		t.Fatal("snapshot of the corrupt layer is visible")
	}
	leftovers, _ := filepath.Glob(filepath.Join(s.Root(), "*", tmpPrefix+"*"))
	more, _ := filepath.Glob(filepath.Join(s.Root(), blobsDir, tmpPrefix+"*"))
	if len(leftovers)+len(more) > 0 {
		t.Fatalf("temp files left: %v %v", leftovers, more)
	}
}

// TestPullHostileLayer: a layer that writes through a symlink pointing out
// of the root is refused and nothing lands outside the store.
func TestPullHostileLayer(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	outside := t.TempDir()
	evil := testimage.NewLayer().Symlink("escape", outside).File("escape/pwned", []byte("x"), 0o644)
	img := testimage.Busybox(t, testimage.WithLayers(evil))
	testimage.Push(t, img, r.Ref("evil:1"))
	_, err := s.Pull(context.Background(), r.Ref("evil:1"), pullOpts(r))
	if err == nil || !strings.Contains(err.Error(), "escape") {
		t.Fatalf("hostile pull: %v, want an error naming the entry", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); err == nil {
		t.Fatal("hostile layer wrote outside the snapshot")
	}
	if _, err := s.Get(r.Ref("evil:1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record of a refused image: %v", err)
	}
}

// TestPullOpaqueRoot: a layer opaque at its root hides every lower layer in
// the merged view (overlayfs alone would ignore the marker there).
func TestPullOpaqueRoot(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	top := testimage.NewLayer().Raw(tar.Header{Name: ".wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o644}, nil).File("only", []byte("top"), 0o644)
	testimage.Push(t, testimage.Busybox(t, testimage.WithLayers(top)), r.Ref("opq:1"))
	rec, err := s.Pull(context.Background(), r.Ref("opq:1"), pullOpts(r))
	if err != nil {
		t.Fatal(err)
	}
	merged := mountMerged(t, s, rec)
	if _, err := os.Stat(filepath.Join(merged, "bin/busybox")); err == nil {
		t.Fatal("lower layer shows through a root-opaque layer")
	}
	if b, err := os.ReadFile(filepath.Join(merged, "only")); err != nil || string(b) != "top" {
		t.Fatalf("top layer: %q %v", b, err)
	}
}
