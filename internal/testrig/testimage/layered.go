package testimage

import (
	"archive/tar"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Node is what one path of a correctly unpacked and merged root filesystem
// holds, for assertions against a real rootfs.
type Node struct {
	Type     byte  // tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock or tar.TypeFifo
	Mode     int64 // permissions plus setuid/setgid/sticky (the low 07777 bits of st_mode)
	UID, GID int
	// ModTime is the mtime the topmost layer recorded for the path.
	ModTime  time.Time
	Content  string // regular files
	Linkname string // symlinks: the target, verbatim
	// HardLinkTo names another path of the tree that must be the same inode
	// (os.SameFile); Type is then tar.TypeReg and the rest is that file's.
	HardLinkTo string
	Devmajor   int64 // devices
	Devminor   int64
	Xattrs     map[string]string // extended attributes; nil when none
}

// Tree is a merged root filesystem: slash-separated paths relative to the
// root ("etc/passwd"; the root itself is not listed) to what they hold. It is
// complete: a correct rootfs has these paths and no others (whiteout files
// included: they must never show).
type Tree map[string]Node

// Times of the three layers of [Layered]; each layer's entries carry its own
// mtime, so [Node.ModTime] tells which layer a path came from.
var (
	LayeredTime1 = Epoch
	LayeredTime2 = Epoch.Add(24 * time.Hour)
	LayeredTime3 = Epoch.Add(48 * time.Hour)
)

// CapNetBindService is a security.capability value (struct
// vfs_cap_data, revision 2, little endian) granting CAP_NET_BIND_SERVICE as
// effective and permitted, as `setcap cap_net_bind_service=ep` writes it.
const CapNetBindService = "\x01\x00\x00\x02" + // magic_etc: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	"\x00\x04\x00\x00" + "\x00\x00\x00\x00" + // data[0]: permitted bit 10, inheritable 0
	"\x00\x00\x00\x00" + "\x00\x00\x00\x00" // data[1]: permitted, inheritable

// Layered returns a three-layer image (no busybox; it is not meant to run)
// that exercises what layer application must get right, and the [Tree] a
// correct unpack and overlay merge of it shows:
//
//   - layer 1 lays out directories (one sticky, one owned by 1000), regular
//     files (setuid, setgid, an xattr'd file with user.* values, one with a
//     security.capability value, a directory with an xattr), a hard link,
//     relative, absolute, directory and dangling symlinks, a fifo, a char and
//     a block device;
//   - layer 2 modifies data/keep.txt, deletes data/gone.txt and
//     data/reborn.txt and the whole rmdir/ tree with whiteouts, turns the file
//     swap/f2d into a directory and the directory swap/d2f into a file;
//   - layer 3 makes opaque/ opaque and re-populates it (including a
//     re-created subdirectory whose lower content must stay hidden),
//     re-creates rmdir/ with other content and mode, and brings back
//     data/reborn.txt.
//
// Every later layer repeats the directory entries of the parents it changes,
// with its own mtime, as real layer diffs do. Options select compression and
// format (and may add config settings or layers; extra layers are not
// reflected in the returned Tree).
func Layered(t testing.TB, opts ...Option) (v1.Image, Tree) {
	t.Helper()
	o := makeOptions(opts)
	t1, t2, t3 := ModTime(LayeredTime1), ModTime(LayeredTime2), ModTime(LayeredTime3)

	l1 := NewLayer().
		Dir("bin", 0o755, t1).
		File("bin/setuid-tool", []byte("#!/bin/sh\necho setuid\n"), 0o4755, t1).
		File("bin/setgid-tool", []byte("#!/bin/sh\necho setgid\n"), 0o2711, Owner(0, 42), t1).
		File("bin/netbind", []byte("netbind\n"), 0o755, Xattr("security.capability", CapNetBindService), t1).
		Dir("data", 0o755, t1).
		File("data/keep.txt", []byte("keep v1\n"), 0o644, t1).
		File("data/gone.txt", []byte("gone\n"), 0o644, t1).
		File("data/reborn.txt", []byte("reborn v1\n"), 0o644, t1).
		File("data/xattr.txt", []byte("xattrs\n"), 0o640, Owner(1000, 1000), t1,
			Xattr("user.berth.test", "hello"), Xattr("user.berth.bin", "\x00\x01\x02\xff")).
		File("data/hl-target.txt", []byte("shared inode\n"), 0o644, t1).
		Hardlink("data/hl-link", "data/hl-target.txt", t1).
		Dir("dev", 0o755, t1).
		CharDev("dev/null", 1, 3, 0o666, t1).
		BlockDev("dev/loop0", 7, 0, 0o660, Owner(0, 6), t1).
		Fifo("dev/fifo", 0o600, t1).
		Dir("home", 0o755, t1).
		Dir("home/app", 0o700, Owner(1000, 1000), t1).
		File("home/app/.profile", []byte("export APP=1\n"), 0o644, Owner(1000, 1000), t1).
		Dir("links", 0o755, t1).
		Symlink("links/rel", "../data/keep.txt", t1).
		Symlink("links/abs", "/data/keep.txt", t1).
		Symlink("links/dir", "../data", t1).
		Symlink("links/dangling", "/nonexistent/target", t1).
		Dir("opaque", 0o755, t1).
		File("opaque/a.txt", []byte("a\n"), 0o644, t1).
		Dir("opaque/sub", 0o755, t1).
		File("opaque/sub/b.txt", []byte("b\n"), 0o644, t1).
		Dir("rmdir", 0o750, t1).
		File("rmdir/x.txt", []byte("x\n"), 0o644, t1).
		Dir("rmdir/nested", 0o755, t1).
		File("rmdir/nested/y.txt", []byte("y\n"), 0o644, t1).
		Dir("swap", 0o755, t1).
		File("swap/f2d", []byte("was a file\n"), 0o644, t1).
		Dir("swap/d2f", 0o755, t1).
		File("swap/d2f/inner.txt", []byte("inner\n"), 0o644, t1).
		Dir("tmp", 0o1777, t1).
		Dir("xattrdir", 0o755, Xattr("user.berth.dir", "dir"), t1)

	l2 := NewLayer().
		Dir("data", 0o755, t2).
		Whiteout("data/gone.txt").
		File("data/keep.txt", []byte("keep v2\n"), 0o644, t2).
		Whiteout("data/reborn.txt").
		Whiteout("rmdir").
		Dir("swap", 0o755, t2).
		File("swap/d2f", []byte("was a dir\n"), 0o600, t2).
		Dir("swap/f2d", 0o755, t2).
		File("swap/f2d/child.txt", []byte("child\n"), 0o644, t2)

	l3 := NewLayer().
		Dir("data", 0o755, t3).
		File("data/reborn.txt", []byte("reborn v3\n"), 0o600, t3).
		Dir("opaque", 0o755, t3).
		Opaque("opaque").
		File("opaque/c.txt", []byte("c\n"), 0o644, t3).
		Dir("opaque/sub", 0o755, t3).
		File("opaque/sub/d.txt", []byte("d\n"), 0o644, t3).
		Dir("rmdir", 0o755, t3).
		File("rmdir/new.txt", []byte("new\n"), 0o644, t3)

	cfg := v1.Config{
		Env:    []string{DefaultPath},
		Labels: map[string]string{"dev.berth.testimage": "layered"},
	}
	img := o.image(t, HostPlatform(), cfg,
		layer{b: l1, createdBy: "layered: base"},
		layer{b: l2, createdBy: "layered: whiteouts"},
		layer{b: l3, createdBy: "layered: opaque"})
	return img, layeredTree()
}

// layeredTree is the merged view of Layered's layers, written out by hand
// (the tests check it against a simulated apply of the layers).
func layeredTree() Tree {
	dir := func(mode int64, tm time.Time) Node {
		return Node{Type: tar.TypeDir, Mode: mode, ModTime: tm}
	}
	file := func(content string, mode int64, tm time.Time) Node {
		return Node{Type: tar.TypeReg, Mode: mode, ModTime: tm, Content: content}
	}
	link := func(target string) Node {
		return Node{Type: tar.TypeSymlink, Mode: 0o777, ModTime: LayeredTime1, Linkname: target}
	}
	t1, t2, t3 := LayeredTime1, LayeredTime2, LayeredTime3

	tree := Tree{
		"bin":             dir(0o755, t1),
		"bin/setuid-tool": file("#!/bin/sh\necho setuid\n", 0o4755, t1),
		"bin/setgid-tool": file("#!/bin/sh\necho setgid\n", 0o2711, t1),
		"bin/netbind":     file("netbind\n", 0o755, t1),

		"data":               dir(0o755, t3),
		"data/keep.txt":      file("keep v2\n", 0o644, t2),
		"data/reborn.txt":    file("reborn v3\n", 0o600, t3),
		"data/xattr.txt":     file("xattrs\n", 0o640, t1),
		"data/hl-target.txt": file("shared inode\n", 0o644, t1),

		"dev":       dir(0o755, t1),
		"dev/null":  {Type: tar.TypeChar, Mode: 0o666, ModTime: t1, Devmajor: 1, Devminor: 3},
		"dev/loop0": {Type: tar.TypeBlock, Mode: 0o660, GID: 6, ModTime: t1, Devmajor: 7},
		"dev/fifo":  {Type: tar.TypeFifo, Mode: 0o600, ModTime: t1},

		"home":              dir(0o755, t1),
		"home/app":          {Type: tar.TypeDir, Mode: 0o700, UID: 1000, GID: 1000, ModTime: t1},
		"home/app/.profile": {Type: tar.TypeReg, Mode: 0o644, UID: 1000, GID: 1000, ModTime: t1, Content: "export APP=1\n"},

		"links":          dir(0o755, t1),
		"links/rel":      link("../data/keep.txt"),
		"links/abs":      link("/data/keep.txt"),
		"links/dir":      link("../data"),
		"links/dangling": link("/nonexistent/target"),

		"opaque":           dir(0o755, t3),
		"opaque/c.txt":     file("c\n", 0o644, t3),
		"opaque/sub":       dir(0o755, t3),
		"opaque/sub/d.txt": file("d\n", 0o644, t3),

		"rmdir":         dir(0o755, t3),
		"rmdir/new.txt": file("new\n", 0o644, t3),

		"swap":               dir(0o755, t2),
		"swap/d2f":           file("was a dir\n", 0o600, t2),
		"swap/f2d":           dir(0o755, t2),
		"swap/f2d/child.txt": file("child\n", 0o644, t2),

		"tmp":      dir(0o1777, t1),
		"xattrdir": {Type: tar.TypeDir, Mode: 0o755, ModTime: t1, Xattrs: map[string]string{"user.berth.dir": "dir"}},
	}

	n := tree["bin/setgid-tool"]
	n.GID = 42
	tree["bin/setgid-tool"] = n

	n = tree["bin/netbind"]
	n.Xattrs = map[string]string{"security.capability": CapNetBindService}
	tree["bin/netbind"] = n

	n = tree["data/xattr.txt"]
	n.UID, n.GID = 1000, 1000
	n.Xattrs = map[string]string{"user.berth.test": "hello", "user.berth.bin": "\x00\x01\x02\xff"}
	tree["data/xattr.txt"] = n

	n = tree["data/hl-target.txt"]
	n.HardLinkTo = "data/hl-target.txt"
	tree["data/hl-link"] = n
	return tree
}
