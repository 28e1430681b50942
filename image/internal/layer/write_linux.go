//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writer puts accepted tar entries into the layer directory. The validator
// has already decided that an entry is safe to write; the writer makes the
// kernel enforce the part that matters most on its own: every directory it
// writes into is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)
// below the layer root (or component by component with O_NOFOLLOW where
// openat2 is missing), and every entry is then created, changed and timed
// relative to that directory's fd without following a symlink in its last
// component. A bug in the validator can therefore make a layer fail, never
// make it write outside the root or through a symlink.
//
// It also does fewer system calls per entry than containerd's applier,
// which resolved each parent with an lstat per component and changed owner,
// mode and times by path: a regular file costs openat, write, fchown,
// fchmod, utimensat on the fd and close.
type writer struct {
	dirCache        // the root's fd and fds of directories below it
	dir      string // the layer root, for os.Root and messages
	// times are the directories' headers' times, set once everything
	// below them is written (creating entries changes a directory's mtime).
	times  []dirTimes
	buf    []byte
	userns bool // device nodes cannot be made: skip them, as containerd does
	noProc bool // /proc/self/fd is not there
	osRoot *os.Root
	// removals counts removeAll calls: file workers drop their cached
	// directory fds when it changed (a directory may be gone).
	removals uint64
}

// dirCache holds O_DIRECTORY fds of directories below a layer root, by
// clean relative path: entries come grouped by directory, so most parents
// are hits. Each goroutine has its own; root is shared and stays open
// until all are done.
type dirCache struct {
	root  int // O_DIRECTORY fd of the layer root
	noOA2 bool
	dirs  map[string]int
}

type dirTimes struct {
	name string
	ts   [2]unix.Timespec
}

// fallbacksOnly makes writers take the paths for kernels without openat2
// and hosts without /proc; tests set it.
var fallbacksOnly bool

// maxCachedDirs bounds the open directory fds (a variable for tests).
var maxCachedDirs = 128

func newWriter(dir string) (*writer, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("layer directory: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	w := &writer{dirCache: newDirCache(fd, fallbacksOnly), dir: dir, buf: make([]byte, 128<<10), userns: inUserNS()}
	if _, err := os.Stat("/proc/self/fd"); err != nil || fallbacksOnly {
		w.noProc = true
	}
	return w, nil
}

func newDirCache(root int, noOA2 bool) dirCache {
	return dirCache{root: root, noOA2: noOA2, dirs: make(map[string]int)}
}

func (w *writer) close() {
	w.forget("")
	unix.Close(w.root)
	if w.osRoot != nil {
		w.osRoot.Close()
	}
}

// forget closes the cached fds of name and everything below it ("" for
// all of them).
func (w *dirCache) forget(name string) {
	for k, fd := range w.dirs {
		if name == "" || k == name || strings.HasPrefix(k, name+"/") {
			unix.Close(fd)
			delete(w.dirs, k)
		}
	}
}

// prepare checks an accepted entry's names and makes the directory it
// goes in, returning that directory's name and the entry's last component.
func (w *writer) prepare(hdr *tar.Header) (ppath, base string, err error) {
	w.trim()
	if !local(hdr.Name) || hdr.Typeflag == tar.TypeLink && !local(hdr.Linkname) {
		return "", "", fmt.Errorf("%q: not a clean name inside the layer", hdr.Name) // the validator refuses these
	}
	ppath, base = split(hdr.Name)
	_, err = w.parent(ppath, true)
	return ppath, base, err
}

// entry writes one accepted entry; r holds a regular file's data.
func (w *writer) entry(hdr *tar.Header, r io.Reader) error {
	if w.userns && (hdr.Typeflag == tar.TypeBlock || hdr.Typeflag == tar.TypeChar) {
		return nil
	}
	ppath, base, err := w.prepare(hdr)
	if err != nil {
		return err
	}
	pfd, err := w.parent(ppath, false)
	if err != nil {
		return err
	}
	switch {
	case base == whiteoutOpaque:
		return unix.Fsetxattr(pfd, "trusted.overlay.opaque", []byte("y"), 0)
	case strings.HasPrefix(base, whiteoutPrefix):
		// An overlayfs whiteout: a 0/0 character device with the
		// whiteout's owner.
		name := base[len(whiteoutPrefix):]
		if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
			return err
		}
		return unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	}

	switch hdr.Typeflag {
	case tar.TypeReg:
		return w.file(pfd, ppath, base, hdr, r)
	case tar.TypeDir:
		return w.mkdir(pfd, ppath, base, hdr)
	case tar.TypeSymlink:
		err = w.create(ppath, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) })
	case tar.TypeLink:
		// The target's directory is looked up again after a removal,
		// which may have taken it (and closed its cached fd).
		tp, tb := split(hdr.Linkname)
		err = w.create(ppath, base, func() error {
			tfd, err := w.parent(tp, false)
			if err != nil {
				return err
			}
			return unix.Linkat(tfd, tb, pfd, base, 0)
		})
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		// The validator bounds major and minor to what the kernel holds.
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		err = w.create(ppath, base, func() error { return unix.Mknodat(pfd, base, mode, dev) })
	default:
		return fmt.Errorf("unexpected entry type %q", hdr.Typeflag) // the validator refuses these
	}
	if err != nil {
		return err
	}
	return w.meta(pfd, ppath, base, hdr)
}

// create runs mk, which creates base in the directory ppath; where base
// exists already it is removed first, with all below it, as containerd
// does (a directory over a directory merges, but that is mkdir's case).
// The removal closes the cached fds of what it removes, never the fd of
// ppath itself; mk must look up any other directory fd it needs itself.
func (w *writer) create(ppath, base string, mk func() error) error {
	err := mk()
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := w.removeAll(join(ppath, base)); err != nil {
		return err
	}
	return mk()
}

// removeAll removes name (relative to the root) and all below it,
// following no symlink.
func (w *writer) removeAll(name string) error {
	w.forget(name)
	w.removals++
	if w.osRoot == nil {
		r, err := os.OpenRoot(w.dir)
		if err != nil {
			return err
		}
		w.osRoot = r
	}
	return w.osRoot.RemoveAll(name)
}

// meta gives an entry that is not a regular file or directory its owner,
// xattrs, mode and times, relative to its directory's fd and without
// following a symlink.
func (w *writer) meta(pfd int, ppath, base string, hdr *tar.Header) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if err := setXattrs(hdr, func(k string, v []byte) error {
		p, err := w.nofdPath(pfd, ppath, base)
		if err != nil {
			return err
		}
		return unix.Lsetxattr(p, k, v, 0)
	}); err != nil {
		return err
	}
	// A symlink has no mode of its own, and a hard link can be one;
	// devices and fifos were just made at base by this writer.
	chmod := hdr.Typeflag != tar.TypeSymlink
	if hdr.Typeflag == tar.TypeLink {
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		chmod = st.Mode&unix.S_IFMT != unix.S_IFLNK
	}
	if chmod {
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return err
		}
	}
	ts := times(hdr)
	return unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
}

// nofdPath names base in the directory pfd for calls that take a path and
// no directory fd (lsetxattr, which does not follow base itself):
// /proc/self/fd/N resolves to the directory pfd is. Without /proc it is the
// path below the layer root, once that is checked to lead to the same
// directory (no symlink on the way).
func (w *writer) nofdPath(pfd int, ppath, base string) (string, error) {
	if !w.noProc {
		return "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base, nil
	}
	dir := filepath.Join(w.dir, ppath)
	var want, got unix.Stat_t
	if err := unix.Fstat(pfd, &want); err != nil {
		return "", err
	}
	if err := unix.Stat(dir, &got); err != nil {
		return "", err
	}
	if want.Dev != got.Dev || want.Ino != got.Ino {
		return "", fmt.Errorf("%s: not the directory being written", dir)
	}
	return filepath.Join(dir, base), nil
}

// setXattrs sets the header's xattrs (the validator kept only those that may
// be set) with set; as containerd, it ignores a filesystem that does not
// support them.
func setXattrs(hdr *tar.Header, set func(k string, v []byte) error) error {
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, paxXattr)
		if !ok {
			continue
		}
		if err := set(attr, []byte(value)); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("setxattr %s: %w", attr, err)
		}
	}
	return nil
}

// file writes a regular file: created exclusively (never through a
// symlink), filled, then owner, xattrs, mode and times set on its fd.
func (w *writer) file(pfd int, ppath, base string, hdr *tar.Header, r io.Reader) error {
	var fd int
	err := w.create(ppath, base, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	if err := w.fill(fd, r); err != nil {
		unix.Close(fd)
		return err
	}
	return finishFile(fd, hdr)
}

// finishFile gives a new regular file, its data written, the header's
// owner, xattrs, mode and times through its fd, and closes the fd.
func finishFile(fd int, hdr *tar.Header) error {
	if err := fdMeta(fd, hdr); err != nil {
		unix.Close(fd)
		return err
	}
	ts := times(hdr)
	if err := futimens(fd, &ts); err != nil {
		unix.Close(fd)
		return err
	}
	return unix.Close(fd)
}

// fdMeta sets owner, xattrs and mode through an fd: chown first, since it
// clears setuid and setgid bits and file capabilities.
func fdMeta(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if err := setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	return unix.Fchmod(fd, uint32(hdr.Mode&0o7777))
}

// fill copies r to fd in large writes. r is a tar entry: io.EOF ends
// it, any other error (io.ErrUnexpectedEOF for a truncated body) fails.
func (w *writer) fill(fd int, r io.Reader) error {
	for {
		n, rerr := 0, error(nil)
		for n < len(w.buf) && rerr == nil {
			var m int
			m, rerr = r.Read(w.buf[n:])
			n += m
		}
		for b := w.buf[:n]; len(b) > 0; {
			m, err := unix.Write(fd, b)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			b = b[m:]
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// mkdir creates a directory, or merges with one that is there (any other
// entry of that name is replaced); owner, xattrs and mode are set now,
// times at the end. Its fd is kept: the entries below it follow.
func (w *writer) mkdir(pfd int, ppath, base string, hdr *tar.Header) error {
	name := join(ppath, base)
	if err := unix.Mkdirat(pfd, base, 0o700); errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := w.removeAll(name); err != nil {
				return err
			}
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	}
	fd, err := w.dirFD(name)
	if err != nil {
		return err
	}
	if err := fdMeta(fd, hdr); err != nil {
		return err
	}
	w.times = append(w.times, dirTimes{name: name, ts: times(hdr)})
	return nil
}

// parent returns an fd of the directory ppath ("" is the root). With
// create, missing directories are made (mode 0755, as containerd does);
// without, a missing one is an error.
func (w *writer) parent(ppath string, create bool) (int, error) {
	if ppath == "" {
		return w.root, nil
	}
	fd, err := w.dirFD(ppath)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	// Make the missing ones top down, each opened relative to the one
	// above it without following a symlink; only ppath's fd is kept.
	cur, owned := w.root, false
	parts := strings.Split(ppath, "/")
	for i, p := range parts {
		if fd, ok := w.dirs[strings.Join(parts[:i+1], "/")]; ok {
			if owned {
				unix.Close(cur)
			}
			cur, owned = fd, false
			continue
		}
		err := unix.Mkdirat(cur, p, 0o755)
		switch {
		case err == nil:
			err = unix.Fchmodat(cur, p, 0o755, 0)
		case errors.Is(err, unix.EEXIST):
			err = nil
		}
		fd := -1
		if err == nil {
			fd, err = unix.Openat(cur, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if owned {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur, owned = fd, true
	}
	if owned {
		w.dirs[ppath] = cur
	}
	return cur, nil
}

// dirFD opens the directory name below the root, following no symlink,
// and caches its fd.
func (w *dirCache) dirFD(name string) (int, error) {
	if fd, ok := w.dirs[name]; ok {
		return fd, nil
	}
	fd, err := w.openBeneath(name)
	if err != nil {
		return -1, err
	}
	w.dirs[name] = fd
	return fd, nil
}

// trim bounds the cached directory fds. It closes them all, so it runs
// only where no fd from the cache is in use: before an entry.
func (w *dirCache) trim() {
	if len(w.dirs) > maxCachedDirs {
		w.forget("")
	}
}

func (w *dirCache) openBeneath(name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !w.noOA2 {
		fd, err := unix.Openat2(w.root, name, &unix.OpenHow{
			Flags:   flags,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		for errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			fd, err = unix.Openat2(w.root, name, &unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV})
		}
		if !errors.Is(err, unix.ENOSYS) {
			return fd, err
		}
		w.noOA2 = true
	}
	// Before Linux 5.6: one component at a time, none followed. Names are
	// clean and relative (the validator), so there is no "." or "..".
	cur := w.root
	for _, p := range strings.Split(name, "/") {
		if p == "." || p == ".." || p == "" {
			if cur != w.root {
				unix.Close(cur)
			}
			return -1, fmt.Errorf("%q: not a clean relative name", name)
		}
		fd, err := unix.Openat(cur, p, flags, 0)
		if cur != w.root {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// finish sets the directories' times, in the order their headers came
// (a later header for the same directory wins). It sets them on whatever
// the name holds now, not following a symlink, and skips names that no
// longer resolve (a directory below one the layer replaced).
func (w *writer) finish() error {
	for _, d := range w.times {
		w.trim()
		ppath, base := split(d.name)
		pfd, err := w.parent(ppath, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s: utimensat: %w", d.name, err)
		}
	}
	return nil
}

// times are an entry's atime and mtime as containerd sets them: the atime
// is the later of the two, and a time the kernel cannot hold is the epoch.
func times(hdr *tar.Header) [2]unix.Timespec {
	m := boundTime(hdr.ModTime)
	a := hdr.AccessTime
	if a.Before(hdr.ModTime) {
		a = hdr.ModTime
	}
	return [2]unix.Timespec{unix.NsecToTimespec(boundTime(a).UnixNano()), unix.NsecToTimespec(m.UnixNano())}
}

var maxTime = time.Unix(0, math.MaxInt64)

func boundTime(t time.Time) time.Time {
	if t.Before(time.Unix(0, 0)) || t.After(maxTime) {
		return time.Unix(0, 0)
	}
	return t
}

// futimens sets an open file's times (utimensat with a NULL path).
func futimens(fd int, ts *[2]unix.Timespec) error {
	for {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// split cuts a clean relative name into its directory ("" for the root)
// and last component.
func split(name string) (string, string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

// local reports a clean, relative name below the root: not "." and with no
// ".." component.
func local(name string) bool {
	return name != "." && filepath.IsLocal(name) && filepath.Clean(name) == name && !strings.Contains("/"+name+"/", "/../")
}

func join(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// inUserNS reports whether this process runs in a user namespace other
// than the initial one, whose uid_map is the identity over all 2^32 ids.
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(bytes.TrimSpace(b)))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}
