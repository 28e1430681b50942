//go:build linux

package testimage

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// CheckTree compares the filesystem under root (an unpacked and merged
// rootfs, e.g. an overlay mount) with want, path by path: type, mode,
// ownership, content, link targets, hard-link identity, devices and the
// xattrs want names. Paths in root that want lacks are errors too, except
// those under a directory named in skip. Every difference is reported.
func CheckTree(t testing.TB, root string, want Tree, skip ...string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		seen[rel] = true
		if _, ok := want[rel]; !ok {
			t.Errorf("%s: present in the rootfs, not expected", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, rel := range paths {
		n := want[rel]
		if !seen[rel] {
			t.Errorf("%s: missing from the rootfs", rel)
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(rel))
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if n.HardLinkTo != "" {
			var other unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, filepath.FromSlash(n.HardLinkTo)), &other); err != nil || other.Ino != st.Ino || other.Dev != st.Dev {
				t.Errorf("%s: not a hard link to %s", rel, n.HardLinkTo)
			}
		}
		typ := st.Mode & unix.S_IFMT
		wantTyp := map[byte]uint32{tar.TypeReg: unix.S_IFREG, tar.TypeDir: unix.S_IFDIR, tar.TypeSymlink: unix.S_IFLNK,
			tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[n.Type]
		if typ != wantTyp {
			t.Errorf("%s: file type %o, want %o (tar type %q)", rel, typ, wantTyp, n.Type)
			continue
		}
		if n.Type != tar.TypeSymlink && int64(st.Mode&07777) != n.Mode {
			t.Errorf("%s: mode %04o, want %04o", rel, st.Mode&07777, n.Mode)
		}
		if int(st.Uid) != n.UID || int(st.Gid) != n.GID {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, n.UID, n.GID)
		}
		switch n.Type {
		case tar.TypeReg:
			b, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(b, []byte(n.Content)) {
				t.Errorf("%s: content %q (%v), want %q", rel, truncate(b), err, truncate([]byte(n.Content)))
			}
		case tar.TypeSymlink:
			if l, err := os.Readlink(p); err != nil || l != n.Linkname {
				t.Errorf("%s: symlink to %q (%v), want %q", rel, l, err, n.Linkname)
			}
		case tar.TypeChar, tar.TypeBlock:
			if int64(unix.Major(st.Rdev)) != n.Devmajor || int64(unix.Minor(st.Rdev)) != n.Devminor {
				t.Errorf("%s: device %d:%d, want %d:%d", rel, unix.Major(st.Rdev), unix.Minor(st.Rdev), n.Devmajor, n.Devminor)
			}
		}
		for k, v := range n.Xattrs {
			buf := make([]byte, 4096)
			sz, err := unix.Lgetxattr(p, k, buf)
			if err != nil || string(buf[:sz]) != v {
				t.Errorf("%s: xattr %s = %q (%v), want %q", rel, k, buf[:max(sz, 0)], err, v)
			}
		}
		// No overlay whiteout may show through a merged view.
		if typ == unix.S_IFCHR && st.Rdev == 0 {
			t.Errorf("%s: an overlay whiteout (0/0 char device) is visible", rel)
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
