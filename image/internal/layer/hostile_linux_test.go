//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/berth-dev/berth/internal/testrig"
)

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// headerOnly is a tar stream of one header that declares size bytes and
// carries none of them.
func headerOnly(t testing.TB, name string, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes() // no Close: it would complain about the missing body
}

// TestHostile feeds layers that try to write outside the layer directory,
// or are corrupt or too big, and checks each is refused with the right
// error and that nothing outside the directory changed: dir is
// parent/root, and parent holds sentinels (a file, a directory with a file,
// a symlink) whose state is compared byte for byte before and after.
func TestHostile(t *testing.T) {
	testrig.RequireRoot(t)

	type tc struct {
		name    string
		layer   func(parent string) []byte // uncompressed unless gz
		gz      bool
		opts    Options
		want    error // nil: must succeed
		reason  string
		inside  func(parent string) string // for want == nil: this path must exist inside root
		notWant error
	}
	mib := strings.Repeat("z", 1<<20)
	many := make([]ent, 100)
	for i := range many {
		many[i] = fileE("f"+strings.Repeat("x", i), "", 0o644)
	}
	cases := []tc{
		{name: "dotdot", layer: func(string) []byte { return tarOf(t, fileE("../x", "x", 0o644)) }, want: ErrHostile, reason: "escapes the layer root"},
		{name: "dotdot-sentinel", layer: func(string) []byte { return tarOf(t, fileE("../sentinel", "pwned", 0o644)) }, want: ErrHostile, reason: "escapes"},
		{name: "inner-dotdot", layer: func(string) []byte { return tarOf(t, fileE("a/../../x", "x", 0o644)) }, want: ErrHostile, reason: "escapes"},
		{name: "deep-dotdot-dir", layer: func(string) []byte { return tarOf(t, dirE("a/b/../../../outdir/", 0o755)) }, want: ErrHostile, reason: "escapes"},
		{name: "absolute-lands-inside", layer: func(parent string) []byte { return tarOf(t, fileE(filepath.Join(parent, "sentinel"), "pwned", 0o644)) },
			inside: func(parent string) string { return filepath.Join(parent, "sentinel") }},
		{name: "absolute-simple", layer: func(string) []byte { return tarOf(t, fileE("/abs", "x", 0o644)) }, inside: func(string) string { return "abs" }},
		{name: "symlink-abs-then-write", layer: func(parent string) []byte {
			return tarOf(t, symE("a", parent), fileE("a/sentinel", "pwned", 0o644))
		}, want: ErrHostile, reason: "symlink created earlier"},
		{name: "symlink-outside-then-write", layer: func(string) []byte {
			return tarOf(t, symE("a", "/outside"), fileE("a/f", "pwned", 0o644))
		}, want: ErrHostile, reason: "symlink"},
		{name: "symlink-relative-then-write", layer: func(string) []byte {
			return tarOf(t, symE("a", "../../.."), fileE("a/f", "pwned", 0o644))
		}, want: ErrHostile, reason: "symlink"},
		{name: "symlink-up-then-write-deep", layer: func(string) []byte {
			return tarOf(t, dirE("d/", 0o755), symE("d/up", ".."), symE("d/up2", "../.."), fileE("d/up2/sentinel", "pwned", 0o644))
		}, want: ErrHostile, reason: "symlink"},
		{name: "symlink-then-mkdir-through", layer: func(parent string) []byte {
			return tarOf(t, symE("a", parent), dirE("a/newdir/", 0o777))
		}, want: ErrHostile, reason: "symlink"},
		{name: "dir-replaced-by-symlink-then-write", layer: func(parent string) []byte {
			return tarOf(t, dirE("d/", 0o755), symE("d", parent), fileE("d/sentinel", "pwned", 0o644))
		}, want: ErrHostile, reason: "symlink"},
		{name: "hardlinked-symlink-then-write", layer: func(parent string) []byte {
			return tarOf(t, symE("s", parent), linkE("h", "s", 0o777), fileE("h/sentinel", "pwned", 0o644))
		}, want: ErrHostile, reason: "symlink"},
		{name: "symlink-then-whiteout-through", layer: func(parent string) []byte {
			return tarOf(t, symE("a", parent), whE("a/.wh.sentinel"))
		}, want: ErrHostile, reason: "symlink"},
		{name: "symlink-then-opaque-through", layer: func(parent string) []byte {
			return tarOf(t, symE("a", parent), whE("a/.wh..wh..opq"))
		}, want: ErrHostile, reason: "symlink"},
		{name: "write-below-file", layer: func(string) []byte {
			return tarOf(t, fileE("f", "f", 0o644), fileE("f/x", "x", 0o644))
		}, want: ErrHostile, reason: "not a directory"},
		{name: "hardlink-etc-passwd", layer: func(string) []byte { return tarOf(t, linkE("pw", "/etc/passwd", 0o644)) }, want: ErrHostile, reason: "absolute"},
		{name: "hardlink-sentinel", layer: func(string) []byte { return tarOf(t, linkE("s", "../sentinel", 0o644)) }, want: ErrHostile, reason: "escapes"},
		{name: "hardlink-abs-sentinel", layer: func(parent string) []byte {
			return tarOf(t, linkE("s", filepath.Join(parent, "sentinel"), 0o644))
		}, want: ErrHostile, reason: "absolute"},
		{name: "hardlink-through-symlink", layer: func(parent string) []byte {
			return tarOf(t, symE("a", parent), linkE("s", "a/sentinel", 0o644))
		}, want: ErrHostile, reason: "passes through symlink"},
		{name: "hardlink-to-dir", layer: func(string) []byte {
			return tarOf(t, dirE("d/", 0o755), linkE("h", "d", 0o755))
		}, want: ErrHostile, reason: "directory"},
		{name: "hardlink-to-itself", layer: func(string) []byte {
			return tarOf(t, fileE("f", "f", 0o644), linkE("f", "f", 0o644))
		}, want: ErrHostile, reason: "itself"},
		{name: "hardlink-to-whiteout", layer: func(string) []byte {
			return tarOf(t, whE(".wh.w"), linkE("h", "w", 0o644))
		}, want: ErrHostile, reason: "whiteout"},
		{name: "hardlink-to-lower", layer: func(string) []byte { return tarOf(t, linkE("h", "usr/bin/perl", 0o755)) }, want: ErrHardlinkToLower, notWant: ErrHostile, reason: "not in this layer"},
		{name: "whiteout-dotdot", layer: func(string) []byte { return tarOf(t, whE(".wh..")) }, want: ErrHostile, reason: "whiteout"},
		{name: "whiteout-dot", layer: func(string) []byte { return tarOf(t, whE("d/.wh..")) }, want: ErrHostile, reason: "whiteout"},
		{name: "whiteout-empty", layer: func(string) []byte { return tarOf(t, whE("d/.wh.")) }, want: ErrHostile, reason: "whiteout"},
		{name: "whiteout-escape", layer: func(string) []byte { return tarOf(t, whE("a/../../.wh.sentinel")) }, want: ErrHostile, reason: "escapes"},
		{name: "whiteout-as-dir", layer: func(string) []byte { return tarOf(t, fileE(".wh.a/b", "b", 0o644)) }, want: ErrHostile, reason: "used as a directory"},
		{name: "header-size-over-max", layer: func(string) []byte { return headerOnly(t, "big", 1<<40) }, opts: Options{MaxSize: 1 << 20}, want: ErrTooLarge, reason: "declares"},
		{name: "files-sum-over-max", layer: func(string) []byte {
			return tarOf(t, fileE("a", mib[:600<<10], 0o644), fileE("b", mib[:600<<10], 0o644))
		}, opts: Options{MaxSize: 1 << 20}, want: ErrTooLarge},
		{name: "sparse-sum-over-max", layer: func(string) []byte {
			return sparseTar(t, map[string]int64{"s1": 600 << 10, "s2": 600 << 10})
		}, opts: Options{MaxSize: 1 << 20}, want: ErrTooLarge, reason: "in total"},
		{name: "gzip-bomb-file", gz: true, layer: func(string) []byte {
			return tarOf(t, fileE("bomb", strings.Repeat("\x00", 64<<20), 0o644))
		}, opts: Options{MaxSize: 1 << 20}, want: ErrTooLarge},
		{name: "gzip-bomb-padding", gz: true, layer: func(string) []byte {
			return append(tarOf(t, fileE("f", "x", 0o644)), make([]byte, 64<<20)...)
		}, opts: Options{MaxSize: 1 << 20}, want: ErrTooLarge, reason: ""},
		{name: "too-many-entries", layer: func(string) []byte { return tarOf(t, many...) }, opts: Options{MaxEntries: 10}, want: ErrTooLarge, reason: "entries"},
		{name: "truncated-in-body", layer: func(string) []byte {
			b := tarOf(t, fileE("f", mib[:10000], 0o644))
			return b[:512+5000]
		}, want: ErrCorrupt},
		{name: "truncated-in-header", layer: func(string) []byte {
			b := tarOf(t, fileE("f", "x", 0o644), fileE("g", "y", 0o644))
			return b[:1024+100]
		}, want: ErrCorrupt},
		{name: "truncated-gzip", gz: true, layer: func(string) []byte { return tarOf(t, fileE("f", mib, 0o644)) }, want: ErrCorrupt},
		{name: "corrupt-gzip", gz: true, layer: func(string) []byte { return tarOf(t, fileE("f", mib, 0o644)) }, want: ErrCorrupt},
		{name: "garbage-header", layer: func(string) []byte { return bytes.Repeat([]byte("garbage!"), 128) }, want: ErrCorrupt},
		{name: "unsupported-type", layer: func(string) []byte {
			return tarOf(t, ent{hdr: tar.Header{Typeflag: 'X', Name: "x", Mode: 0o644, ModTime: epoch}})
		}, want: ErrHostile, reason: "unsupported entry type"},
		{name: "contiguous-type", layer: func(string) []byte {
			return tarOf(t, ent{hdr: tar.Header{Typeflag: tar.TypeCont, Name: "x", Mode: 0o644, ModTime: epoch}})
		}, want: ErrHostile, reason: "unsupported entry type"},
		{name: "device-out-of-range", layer: func(string) []byte {
			return tarOf(t, ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Mode: 0o600, Devmajor: 1 << 20, Devminor: 0, ModTime: epoch}})
		}, want: ErrHostile, reason: "device number"},
		{name: "xattr-too-big", layer: func(string) []byte {
			e := fileE("x", "x", 0o644)
			e.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 70000)}
			return tarOf(t, e)
		}, want: ErrHostile, reason: "xattr"},
		{name: "xattr-name-too-long", layer: func(string) []byte {
			e := fileE("x", "x", 0o644)
			e.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user." + strings.Repeat("n", 300): "v"}
			return tarOf(t, e)
		}, want: ErrHostile, reason: "xattr name"},
		{name: "name-component-too-long", layer: func(string) []byte { return tarOf(t, fileE(strings.Repeat("n", 300), "x", 0o644)) }, want: ErrHostile, reason: "longer than"},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(parent, "sentinel"), []byte("sentinel"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(parent, "outside", "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(parent, "outside", "etc", "passwd"), []byte("root:x:0:0"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("outside", filepath.Join(parent, "link")); err != nil {
				t.Fatal(err)
			}
			old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
			for _, p := range []string{"sentinel", "outside/etc/passwd", "outside/etc", "outside", "."} {
				if err := os.Chtimes(filepath.Join(parent, p), old, old); err != nil {
					t.Fatal(err)
				}
			}
			before := treeState(t, parent, root)
			passwd := lstat(t, "/etc/passwd")

			data := c.layer(parent)
			var r io.Reader = bytes.NewReader(data)
			if c.gz {
				z := gzipOf(t, data)
				switch c.name {
				case "truncated-gzip":
					z = z[:len(z)/2]
				case "corrupt-gzip":
					z[len(z)/2] ^= 0xff
				}
				dr, err := Decompress(bytes.NewReader(z))
				if err != nil {
					r = nil
					checkErr(t, err, c.want, c.notWant, c.reason)
				} else {
					defer dr.Close()
					r = dr
				}
			}
			if r != nil {
				res, err := Apply(context.Background(), root, r, c.opts)
				switch {
				case c.want == nil && err != nil:
					t.Fatalf("Apply: %v, want success", err)
				case c.want == nil:
					if in := filepath.Join(root, c.inside(parent)); !fileIs(in, "pwned", "x") {
						t.Errorf("want %s inside the layer root", in)
					}
					if res.DiffID != sha256Hex(data) {
						t.Errorf("DiffID mismatch")
					}
				default:
					checkErr(t, err, c.want, c.notWant, c.reason)
				}
			}

			if d := diffStates(before, treeState(t, parent, root)); len(d) > 0 {
				t.Errorf("outside the layer root:\n  %s", strings.Join(d, "\n  "))
			}
			if st := lstat(t, "/etc/passwd"); st.Nlink != passwd.Nlink || st.Mtim != passwd.Mtim || st.Ctim != passwd.Ctim {
				t.Errorf("/etc/passwd changed: nlink %d->%d", passwd.Nlink, st.Nlink)
			}
			if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
				t.Errorf("layer root is no longer a directory: %v, %v", fi, err)
			}
		})
	}
}

func fileIs(p string, contents ...string) bool {
	b, err := os.ReadFile(p)
	return err == nil && slices.Contains(contents, string(b))
}

func checkErr(t *testing.T, err, want, notWant error, reason string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if notWant != nil && errors.Is(err, notWant) {
		t.Errorf("err = %v, must not wrap %v", err, notWant)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("err = %q, want it to say %q", err, reason)
	}
	t.Logf("refused: %v", err)
}
