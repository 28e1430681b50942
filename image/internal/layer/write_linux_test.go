//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testrig"
)

// TestWriterContainsWithoutValidator feeds the writer, with no validator
// in front of it, entries that a validator bug could let through: writes
// through a symlink the layer made, names with "..", hard links out of the
// root. The kernel must refuse each (openat2 RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS, or O_NOFOLLOW per component), so nothing outside
// the root changes. It runs on both of the writer's paths.
func TestWriterContainsWithoutValidator(t *testing.T) {
	testrig.RequireRoot(t)
	for _, fallback := range []bool{false, true} {
		t.Run(map[bool]string{false: "openat2", true: "fallback"}[fallback], func(t *testing.T) {
			fallbacksOnly = fallback
			t.Cleanup(func() { fallbacksOnly = false })
			testWriterContains(t)
		})
	}
}

func testWriterContains(t *testing.T) {
	hdr := func(typ byte, name, link string) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o644, ModTime: epoch}
	}
	cases := []struct {
		name    string
		entries func(parent string) []*tar.Header
	}{
		{"file-through-symlink", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeReg, "a/sentinel", "")}
		}},
		{"file-through-relative-symlink", func(string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", ".."), hdr(tar.TypeReg, "a/pwned", "")}
		}},
		{"mkdir-through-symlink", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeDir, "a/newdir", "")}
		}},
		{"implicit-parent-through-symlink", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeReg, "a/new/deeper", "")}
		}},
		{"whiteout-through-symlink", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeReg, "a/.wh.sentinel", "")}
		}},
		{"opaque-through-symlink", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeReg, "a/.wh..wh..opq", "")}
		}},
		{"symlink-through-symlink", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeSymlink, "a/l", "x")}
		}},
		{"fifo-through-symlink", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeFifo, "a/fifo", "")}
		}},
		{"hardlink-from-outside", func(p string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeSymlink, "a", p), hdr(tar.TypeLink, "h", "a/sentinel")}
		}},
		{"hardlink-dotdot", func(string) []*tar.Header { return []*tar.Header{hdr(tar.TypeLink, "h", "../sentinel")} }},
		{"dotdot-name", func(string) []*tar.Header { return []*tar.Header{hdr(tar.TypeReg, "../pwned", "")} }},
		{"dotdot-dir", func(string) []*tar.Header { return []*tar.Header{hdr(tar.TypeReg, "../outside/pwned", "")} }},
		{"dotdot-base", func(string) []*tar.Header {
			return []*tar.Header{hdr(tar.TypeDir, "..", ""), hdr(tar.TypeSymlink, "..", "x"), hdr(tar.TypeReg, "a/../..", "")}
		}},
		{"dot", func(string) []*tar.Header { return []*tar.Header{hdr(tar.TypeReg, "x", ""), hdr(tar.TypeReg, ".", "")} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			for _, d := range []string{root, filepath.Join(parent, "outside")} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(parent, "sentinel"), []byte("sentinel"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := treeState(t, parent, root)
			w, err := newWriter(root)
			if err != nil {
				t.Fatal(err)
			}
			defer w.close()
			var last error
			for _, h := range c.entries(parent) {
				last = w.entry(h, strings.NewReader(""))
			}
			if last == nil {
				last = w.finish()
			}
			if last == nil {
				t.Errorf("the last entry was written")
			}
			t.Logf("refused: %v", last)
			if d := diffStates(before, treeState(t, parent, root)); len(d) > 0 {
				t.Errorf("outside the layer root:\n  %s", strings.Join(d, "\n  "))
			}
		})
	}
}

// TestWriterManyDirectories: more directories than the writer keeps fds
// of, with hard links between far-apart ones, deep implicit parents and
// directory times set at the end, come out as containerd's applier makes
// them.
func TestWriterManyDirectories(t *testing.T) {
	testrig.RequireRoot(t)
	for _, max := range []int{maxCachedDirs, 1, 2, 3} {
		t.Run(fmt.Sprint("cache-", max), func(t *testing.T) {
			old := maxCachedDirs
			maxCachedDirs = max
			t.Cleanup(func() { maxCachedDirs = old })
			testManyDirectories(t, 384)
		})
	}
}

func testManyDirectories(t *testing.T, n int) {
	var es []ent
	for i := range n {
		es = append(es, dirE(fmt.Sprintf("d%03d/", i), 0o755), fileE(fmt.Sprintf("d%03d/f", i), fmt.Sprint(i), 0o644))
	}
	for i := range n {
		es = append(es, linkE(fmt.Sprintf("d%03d/link", i), fmt.Sprintf("d%03d/f", (i*7+1)%n), 0o644))
		es = append(es, fileE(fmt.Sprintf("deep/%03d/a/b/c/f", i), "x", 0o600))
	}
	layer := tarOf(t, es...)
	base := fastTempDir(t)
	ours, theirs := filepath.Join(base, "ours"), filepath.Join(base, "containerd")
	for _, d := range []string{ours, theirs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Apply(context.Background(), ours, bytes.NewReader(layer), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := containerdApply(theirs, layer); err != nil {
		t.Fatal(err)
	}
	if d := diffStates(relState(t, theirs, layer), relState(t, ours, layer)); len(d) > 0 {
		t.Fatalf("trees differ (containerd -> Apply):\n  %s", strings.Join(d[:min(len(d), 20)], "\n  "))
	}
	for i := range n {
		a := lstat(t, filepath.Join(ours, fmt.Sprintf("d%03d/link", i)))
		b := lstat(t, filepath.Join(ours, fmt.Sprintf("d%03d/f", (i*7+1)%n)))
		if a.Ino != b.Ino {
			t.Fatalf("d%03d/link is not a link to d%03d/f", i, (i*7+1)%n)
		}
	}
}
