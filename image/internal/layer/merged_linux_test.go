//go:build linux

package layer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
)

// applyLayers applies each layer into its own directory, as the snapshot
// store does, and mounts them read-only as one overlayfs view (the last
// layer on top). The mount goes away in cleanup.
func applyLayers(t *testing.T, layers ...[]byte) string {
	t.Helper()
	testrig.RequireRoot(t)
	testrig.RequireFile(t, "/proc/filesystems", "procps")
	if fss, err := os.ReadFile("/proc/filesystems"); err != nil || !bytes.Contains(fss, []byte("\toverlay\n")) {
		testrig.Missing(t, "overlayfs not in /proc/filesystems (modprobe overlay)")
	}
	base := t.TempDir()
	lowers := make([]string, len(layers))
	for i, l := range layers {
		dir := filepath.Join(base, "l"+string(rune('1'+i)))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(context.Background(), dir, bytes.NewReader(l), Options{}); err != nil {
			t.Fatalf("Apply layer %d: %v", i+1, err)
		}
		lowers[len(layers)-1-i] = dir // overlayfs lists the top layer first
	}
	mnt := filepath.Join(base, "merged")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	sort.Strings(out)
	return out
}

// TestMergedView stacks three applied layers with overlayfs and checks
// that whiteouts and opaque directories mean what OCI says they mean.
func TestMergedView(t *testing.T) {
	l1 := tarOf(t,
		dirE("a/", 0o755), fileE("a/f1", "1", 0o644), fileE("a/f2", "2", 0o644),
		fileE("del", "d", 0o644),
		dirE("opq/", 0o755), fileE("opq/l1", "1", 0o644),
		fileE("f2d", "file", 0o644),
		dirE("d2f/", 0o755), fileE("d2f/x", "x", 0o644),
		dirE("same/", 0o755), fileE("same/lower", "l", 0o644),
		fileE("keep", "k", 0o644),
	)
	l2 := tarOf(t,
		dirE("a/", 0o755), whE("a/.wh.f1"), // a/f1 deleted in layer 2
		whE(".wh.del"),
		dirE("opq/", 0o755), fileE("opq/l2", "2", 0o644),
		dirE("f2d/", 0o755), fileE("f2d/inside", "i", 0o644), // file replaced by a dir
		fileE("d2f", "now a file", 0o644), // dir replaced by a file
	)
	l3 := tarOf(t,
		dirE("opq/", 0o755), whE("opq/.wh..wh..opq"), fileE("opq/l3", "3", 0o644), // only layer 3's content
		whE(".wh.same"), dirE("same/", 0o755), fileE("same/own", "o", 0o644), // whiteout + dir in one layer
		fileE("a/f1", "back", 0o644), // re-created above its whiteout
	)
	m := applyLayers(t, l1, l2, l3)

	for _, gone := range []string{"del", "same/lower"} {
		if _, err := os.Lstat(filepath.Join(m, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: should be gone in the merged view: %v", gone, err)
		}
	}
	if got := names(t, filepath.Join(m, "a")); strings.Join(got, ",") != "f1,f2" {
		t.Errorf("a: %v, want [f1 f2]", got)
	}
	if b, _ := os.ReadFile(filepath.Join(m, "a/f1")); string(b) != "back" {
		t.Errorf("a/f1: %q, want layer 3's", b)
	}
	if got := names(t, filepath.Join(m, "opq")); strings.Join(got, ",") != "l3" {
		t.Errorf("opaque opq: %v, want only layer 3's [l3]", got)
	}
	if got := names(t, filepath.Join(m, "same")); strings.Join(got, ",") != "own" {
		t.Errorf("same (whiteout and dir in one layer): %v, want [own]", got)
	}
	if got := names(t, filepath.Join(m, "f2d")); strings.Join(got, ",") != "inside" {
		t.Errorf("f2d (file replaced by dir): %v, want [inside]", got)
	}
	if b, err := os.ReadFile(filepath.Join(m, "d2f")); err != nil || string(b) != "now a file" {
		t.Errorf("d2f (dir replaced by file): %q, %v", b, err)
	}
	if got := names(t, m); strings.Join(got, ",") != "a,d2f,f2d,keep,opq,same" {
		t.Errorf("root: %v", got)
	}
}

// TestOpaqueRoot: an opaque marker at a layer's root means "hide every
// lower layer", but overlayfs ignores trusted.overlay.opaque on a layer's
// root (measured on 6.18: the lower x stays visible). Apply therefore
// reports it in Result.OpaqueRoot so the mount can leave the lower layers
// out; the xattr is set as well.
func TestOpaqueRoot(t *testing.T) {
	testrig.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Apply(context.Background(), dir, bytes.NewReader(tarOf(t, whE("./.wh..wh..opq"), fileE("y", "y", 0o644))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OpaqueRoot {
		t.Errorf("Result.OpaqueRoot = false, want true")
	}
	if v, ok := getxattr(t, dir, "trusted.overlay.opaque"); !ok || v != "y" {
		t.Errorf("root: trusted.overlay.opaque = %q, %v; want y", v, ok)
	}

	l1 := tarOf(t, fileE("x", "x", 0o644))
	l2 := tarOf(t, whE(".wh..wh..opq"), fileE("y", "y", 0o644))
	m := applyLayers(t, l1, l2)
	t.Logf("overlayfs view of [root-opaque layer, layer with x]: %v (x visible: the kernel ignores opaque on a layer root)", names(t, m))
}
