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
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
)

// TestApplyRoundTrip applies a layer holding every supported kind of entry
// and checks each on disk, and that DiffID and Size describe the whole
// stream including the padding after the end-of-archive marker.
func TestApplyRoundTrip(t *testing.T) {
	testrig.RequireRoot(t)

	owned := fileE("home/user/notes", "mine", 0o640)
	owned.hdr.Uid, owned.hdr.Gid = 1234, 5678
	owned.hdr.ModTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	home := dirE("home/user/", 0o700)
	home.hdr.Uid, home.hdr.Gid = 1234, 5678
	home.hdr.ModTime = time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	withXattr := fileE("etc/xattr", "x", 0o644)
	withXattr.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.berth":             "yes",
		"SCHILY.xattr.trusted.overlay.opaque": "y", // forged overlay metadata: dropped
	}
	symXattr := symE("etc/symx", "xattr")
	symXattr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.no": "x"} // the kernel refuses user.* on symlinks: dropped
	null := ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: epoch}}
	loop := ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Mode: 0o660, Devmajor: 7, Devminor: 9, Gid: 6, ModTime: epoch}}
	fifo := ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: epoch}}
	global := ent{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "git"}}}

	layer := tarOf(t,
		global,
		dirE("./", 0o755),
		dirE("bin/", 0o755),
		fileE("bin/su", "#!su", 0o4755),
		fileE("bin/sg", "#!sg", 0o2755),
		linkE("bin/su-link", "bin/su", 0o4755),
		linkE("./bin/su-dot", "./bin/su", 0o4755),
		dirE("tmp/", 0o1777),
		dirE("etc/", 0o755),
		withXattr,
		symXattr,
		symE("lib", "usr/lib"),
		symE("etc/localtime", "/usr/share/zoneinfo/UTC"),
		symE("etc/far", "../../../../../outside"),    // any target is fine for a link itself
		linkE("etc/lt-link", "etc/localtime", 0o777), // a hard link to a symlink
		dirE("home/", 0o755),
		home,
		owned,
		null,
		loop,
		fifo,
		whE(".wh.gone"),
		whE("etc/.wh.passwd-"),
		dirE("opq/", 0o755),
		whE("opq/.wh..wh..opq"),
		fileE("opq/keep", "k", 0o644),
		dirE(".wh..wh.plnk/", 0o700), // AUFS metadata: dropped
		fileE("/abs", "abs", 0o644),
		fileE("a/../b/implicit", "i", 0o644),
	)

	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Apply(context.Background(), dir, bytes.NewReader(layer), Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if want := sha256Hex(layer); res.DiffID != want {
		t.Errorf("DiffID = %s, want %s", res.DiffID, want)
	}
	if res.Size != int64(len(layer)) {
		t.Errorf("Size = %d, want %d", res.Size, len(layer))
	}
	if res.Entries != 29 {
		t.Errorf("Entries = %d, want 29", res.Entries)
	}

	p := func(name string) string { return filepath.Join(dir, name) }
	checkMode := func(name string, typ, perm uint32) unix.Stat_t {
		t.Helper()
		st := lstat(t, p(name))
		if st.Mode&unix.S_IFMT != typ || st.Mode&0o7777 != perm {
			t.Errorf("%s: mode %o, want type %o perm %o", name, st.Mode, typ, perm)
		}
		return st
	}
	checkMode("bin/su", unix.S_IFREG, 0o4755)
	checkMode("bin/sg", unix.S_IFREG, 0o2755)
	checkMode("tmp", unix.S_IFDIR, 0o1777)
	checkMode("home/user", unix.S_IFDIR, 0o700)
	checkMode("run/fifo", unix.S_IFIFO, 0o600)

	su := lstat(t, p("bin/su"))
	for _, l := range []string{"bin/su-link", "bin/su-dot"} {
		if st := lstat(t, p(l)); st.Ino != su.Ino {
			t.Errorf("%s: inode %d, want %d (hard link to bin/su)", l, st.Ino, su.Ino)
		}
	}
	if su.Nlink != 3 {
		t.Errorf("bin/su: nlink %d, want 3", su.Nlink)
	}
	if lt, ltl := lstat(t, p("etc/localtime")), lstat(t, p("etc/lt-link")); lt.Ino != ltl.Ino || lt.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("etc/lt-link: not a hard link to the symlink etc/localtime")
	}

	st := lstat(t, p("home/user/notes"))
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("home/user/notes: owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	if got := time.Unix(st.Mtim.Unix()); !got.Equal(owned.hdr.ModTime) {
		t.Errorf("home/user/notes: mtime %v, want %v", got, owned.hdr.ModTime)
	}
	st = lstat(t, p("home/user"))
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("home/user: owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	if got := time.Unix(st.Mtim.Unix()); !got.Equal(home.hdr.ModTime) {
		t.Errorf("home/user: mtime %v, want %v (directory mtimes are set after their content)", got, home.hdr.ModTime)
	}
	if b, err := os.ReadFile(p("home/user/notes")); err != nil || string(b) != "mine" {
		t.Errorf("home/user/notes: %q, %v", b, err)
	}

	for name, want := range map[string]string{
		"lib":           "usr/lib",
		"etc/localtime": "/usr/share/zoneinfo/UTC",
		"etc/far":       "../../../../../outside",
	} {
		if got, err := os.Readlink(p(name)); err != nil || got != want {
			t.Errorf("%s: readlink %q, %v; want %q", name, got, err, want)
		}
	}

	st = checkMode("dev/null", unix.S_IFCHR, 0o666)
	if unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null: rdev %d:%d, want 1:3", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	st = checkMode("dev/loop9", unix.S_IFBLK, 0o660)
	if unix.Major(st.Rdev) != 7 || unix.Minor(st.Rdev) != 9 || st.Gid != 6 {
		t.Errorf("dev/loop9: rdev %d:%d gid %d, want 7:9 gid 6", unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Gid)
	}

	if v, ok := getxattr(t, p("etc/xattr"), "user.berth"); !ok || v != "yes" {
		t.Errorf("etc/xattr: user.berth = %q, %v; want yes", v, ok)
	}
	if _, ok := getxattr(t, p("etc/xattr"), "trusted.overlay.opaque"); ok {
		t.Errorf("etc/xattr: trusted.overlay.opaque was set from the archive")
	}

	for _, w := range []string{"gone", "etc/passwd-"} {
		if st := lstat(t, p(w)); !isWhiteout(st) || st.Uid != 0 {
			t.Errorf("%s: mode %o rdev %d, want a 0/0 character device (overlay whiteout)", w, st.Mode, st.Rdev)
		}
		if _, err := os.Lstat(p(filepath.Join(filepath.Dir(w), ".wh."+filepath.Base(w)))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("whiteout file for %s written as is: %v", w, err)
		}
	}
	if v, ok := getxattr(t, p("opq"), "trusted.overlay.opaque"); !ok || v != "y" {
		t.Errorf("opq: trusted.overlay.opaque = %q, %v; want y", v, ok)
	}
	for _, absent := range []string{"opq/.wh..wh..opq", ".wh..wh.plnk", "pax_global_header"} {
		if _, err := os.Lstat(p(absent)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: should not exist: %v", absent, err)
		}
	}
	if b, err := os.ReadFile(p("abs")); err != nil || string(b) != "abs" {
		t.Errorf("/abs: want it inside the root as abs: %q, %v", b, err)
	}
	if b, err := os.ReadFile(p("b/implicit")); err != nil || string(b) != "i" {
		t.Errorf("a/../b/implicit: want b/implicit: %q, %v", b, err)
	}
	if _, err := os.Lstat(p("a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a: should not exist: %v", err)
	}
}

// TestApplySameLayerWhiteouts checks the OCI rule that a whiteout hides
// only lower layers' entries: this layer's own entry of the same name stays,
// and a directory becomes opaque, in whichever order the two come.
func TestApplySameLayerWhiteouts(t *testing.T) {
	testrig.RequireRoot(t)
	layer := tarOf(t,
		dirE("d/", 0o755), fileE("d/own", "o", 0o644), whE(".wh.d"), // dir, then its whiteout
		whE(".wh.e"), dirE("e/", 0o755), fileE("e/own", "o", 0o644), // whiteout, then the dir
		fileE("f", "f", 0o644), whE(".wh.f"), // file, then its whiteout
		whE(".wh.g"), fileE("g", "g", 0o644), // whiteout, then the file
		whE(".wh.h"), whE(".wh.h"), // twice
		dirE("i/", 0o755), fileE("i", "now a file", 0o644), whE(".wh.i"), // dir replaced by a file in the layer
	)
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), dir, bytes.NewReader(layer), Options{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, d := range []string{"d", "e"} {
		if v, ok := getxattr(t, filepath.Join(dir, d), "trusted.overlay.opaque"); !ok || v != "y" {
			t.Errorf("%s: want opaque (whited out and created in the same layer), got %q %v", d, v, ok)
		}
		if _, err := os.Stat(filepath.Join(dir, d, "own")); err != nil {
			t.Errorf("%s/own: %v", d, err)
		}
	}
	for _, f := range []string{"f", "g", "i"} {
		if st := lstat(t, filepath.Join(dir, f)); st.Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("%s: mode %o, want the layer's own regular file", f, st.Mode)
		}
	}
	if st := lstat(t, filepath.Join(dir, "h")); !isWhiteout(st) {
		t.Errorf("h: want a whiteout")
	}
}

// TestApplyDirMustBeEmpty: Apply refuses a directory it did not start.
func TestApplyDirMustBeEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), dir, bytes.NewReader(tarOf(t)), Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty dir: err = %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), link, bytes.NewReader(tarOf(t)), Options{}); err == nil {
		t.Errorf("symlink as dir: no error")
	}
}

// cancelAfter cancels a context once n bytes have been read through it.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestApplyCancel: a cancelled context stops Apply with its error, before
// the first entry or in the middle of a big file.
func TestApplyCancel(t *testing.T) {
	testrig.RequireRoot(t)
	layer := tarOf(t, fileE("small", "x", 0o644), fileE("big", strings.Repeat("b", 8<<20), 0o644))
	for _, after := range []int{0, 1 << 20} {
		ctx, cancel := context.WithCancel(context.Background())
		var r io.Reader = &cancelAfter{r: bytes.NewReader(layer), n: after, cancel: cancel}
		if after == 0 {
			cancel()
		}
		dir := filepath.Join(t.TempDir(), "root")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := Apply(ctx, dir, r, Options{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancel after %d bytes: err = %v, want context.Canceled", after, err)
		}
		cancel()
	}
}

// TestCleanName covers what no tar writer produces: NUL bytes and names
// past the kernel's limits.
func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{in: "a/b", want: "a/b"},
		{in: "./a/", want: "a"},
		{in: "/a", want: "a"},
		{in: "//a//b/", want: "a/b"},
		{in: "/../a", want: "a"},
		{in: "/", want: "."},
		{in: "./", want: "."},
		{in: "a/../b", want: "b"},
		{in: "..", err: true},
		{in: "../a", err: true},
		{in: "a/../../b", err: true},
		{in: "a\x00b", err: true},
		{in: strings.Repeat("a", 256), err: true},
		{in: strings.Repeat("a/", 2049), err: true},
	} {
		got, err := cleanName(tc.in)
		if tc.err {
			if !errors.Is(err, ErrHostile) {
				t.Errorf("cleanName(%q) = %q, %v; want ErrHostile", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestApplySparse: a PAX sparse entry is expanded to its full size (the
// bytes are zeros); its declared size counts toward MaxSize.
func TestApplySparse(t *testing.T) {
	testrig.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), dir, bytes.NewReader(sparseTar(t, map[string]int64{"s": 100000})), Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "s"))
	if err != nil || len(b) != 100000 || bytes.Count(b, []byte{0}) != 100000 {
		t.Errorf("s: %d bytes, %v; want 100000 zeros", len(b), err)
	}
}

// TestEntryError: refusals carry the entry's name for the caller.
func TestEntryError(t *testing.T) {
	testrig.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(context.Background(), dir, bytes.NewReader(tarOf(t, linkE("./usr/bin/x", "./usr/bin/perl", 0o755))), Options{})
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Name != "usr/bin/x" || !errors.Is(err, ErrHardlinkToLower) || errors.Is(err, ErrHostile) {
		t.Fatalf("err = %#v", err)
	}
}
