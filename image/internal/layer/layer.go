// Package layer turns one image layer blob into one snapshot directory: it
// decompresses the blob (gzip, zstd or plain tar) and applies the tar stream
// into an empty directory that later serves as a read-only overlayfs lower
// dir, refusing hostile input on the way.
//
// The caller streams
//
//	registry body → (tee: blob file + digest) → Decompress → ReadAhead → Apply(tmpdir)
//
// (ReadAhead runs everything before it in a goroutine of its own) and
// renames tmpdir to snapshots/<chainID> once the compressed digest and
// the returned DiffID both check out and a sync has made it durable.
//
// # What Apply writes
//
// Apply writes what containerd's pkg/archive applier with overlay whiteout
// conversion wrote (it used that applier until it had its own writer, and
// a test holds the two to the same trees): a whiteout entry ".wh.NAME"
// becomes a 0/0 character device NAME, an opaque marker "DIR/.wh..wh..opq"
// becomes the xattr trusted.overlay.opaque=y on DIR. Ownership, modes
// (setuid, setgid, sticky), mtimes, xattrs, hard links, symlinks, device
// nodes and fifos are preserved. Whiteouts follow the OCI rule that they
// apply only to lower layers: a whiteout for a name this same layer also
// creates leaves this layer's entry in place, and when that entry is a
// directory it is made opaque, so the lower layers' content below it
// stays hidden. A directory's times are set after everything below it is
// written, on whatever holds its name by then (containerd followed a
// symlink there, or failed when a later entry had replaced a directory
// above it).
//
// The validator decides what is written; the writer then makes the kernel
// hold it inside dir regardless: each directory written into is opened
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) (or one O_NOFOLLOW
// component at a time where openat2 is missing), and entries are created,
// owned, moded and timed relative to that fd, never following a symlink in
// the last component. Regular files cost openat, write, fchown, fchmod,
// utimensat on the fd and close: no lstat per path component, no call by
// full path. Small files that create a new name are written by two worker
// goroutines while Apply reads on; anything that removes, replaces or links
// waits for them, so the result is the stream's, in order.
//
// Some entries are dropped on purpose: the root entry ("." or "/", whose
// metadata containerd ignores too), PAX global headers, AUFS metadata such
// as ".wh..wh.plnk" (as Docker does), and xattrs that cannot or must not be
// set: trusted.* (they could forge overlayfs metadata; containerd refuses
// them anyway), namespaces other than user.*, security.* and the two POSIX
// ACLs, and user.* on entries other than files and directories (the kernel
// refuses those). A raw 0/0 character device in the tar acts as a whiteout
// in overlayfs, exactly as a ".wh." entry would; it cannot reach outside.
//
// # Names
//
// Every name is cleaned lexically (filepath.Clean, as containerd did)
// before any check sees it; errors name entries in that form. A leading "/" is dropped, as
// Docker does ("/etc/x" is "etc/x"), and so is a leading "./" (common in
// real layers). Hard link targets get the same cleaning but must be
// relative. Symlink targets are only stored, never resolved: an absolute or
// outward target is fine, writing through the link is not.
//
// # What Apply refuses
//
// Every refusal of an entry is an *EntryError naming the entry and the
// reason, wrapping one of the sentinels:
//
//   - ErrHostile: a name with ".." that leaves the root; NUL bytes; names
//     past PATH_MAX or NAME_MAX; any entry (file, directory, whiteout,
//     opaque marker) below a symlink or other non-directory that this layer
//     created earlier, whatever the link's target; a hard link whose target
//     is absolute, leaves the root, passes through a symlink, or is a
//     directory, a whiteout or the entry itself; a whiteout naming "", "."
//     or ".."; a whiteout name used as a directory; an entry type other than
//     regular file, directory, symlink, hard link, character or block device
//     and fifo (GNU old-style sparse, contiguous and vendor types); a uid or
//     gid outside 0..2^32-2; a device number the kernel cannot hold; an xattr
//     with an empty, over-long or NUL-bearing name, a value over 64 KiB, or
//     more than 1024 of them on one entry.
//   - ErrTooLarge: more uncompressed bytes than Options.MaxSize (counted on
//     the stream, and separately as the sum of regular files' declared
//     sizes, which bounds what sparse entries expand to on disk), a header
//     declaring more than what is left, or more entries than
//     Options.MaxEntries.
//   - ErrCorrupt: a truncated or malformed tar stream (errors of this kind
//     do not name an entry), or a corrupt compressed stream from Decompress.
//   - ErrHardlinkToLower: a hard link to a relative, in-root path that this
//     layer did not create. OCI allows it (the target lives in a lower
//     layer), but a per-layer snapshot directory cannot hold a link to an
//     inode in another directory. It does not wrap ErrHostile: the pull code
//     decides what to do (for instance copy the file up from the lower
//     snapshot).
//
// A stream cut exactly at an entry boundary, with no end-of-archive marker,
// reads as a complete archive (Go's archive/tar, containerd and Docker all
// accept archives without the marker); the DiffID check catches it.
//
// # For the snapshot store
//
// A snapshot holds whatever the image holds: setuid-root binaries and
// device nodes (a 0666 block device for the host's disk, say). Keep the
// snapshot directories where unprivileged host users cannot reach them
// (a 0700 parent), as Docker does with /var/lib/docker.
//
// Apply keeps a small tree of what the layer created, about 100 bytes per
// entry (some 100 MiB at DefaultMaxEntries).
package layer

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors from Apply and Decompress wrap at most one of them.
var (
	// ErrHostile marks input that tries to write outside the layer
	// directory, or that is malformed in a way only an attacker produces.
	ErrHostile = errors.New("hostile layer")
	// ErrTooLarge marks a layer past Options.MaxSize or Options.MaxEntries.
	ErrTooLarge = errors.New("layer too large")
	// ErrCorrupt marks a truncated or corrupt tar or compressed stream.
	ErrCorrupt = errors.New("corrupt layer")
	// ErrHardlinkToLower marks a hard link whose target is not in this
	// layer, which OCI allows (it is in a lower layer) but a standalone
	// per-layer directory cannot represent. It does not wrap ErrHostile.
	ErrHardlinkToLower = errors.New("hard link to a file in a lower layer")
)

// Defaults for Options' zero values.
const (
	// DefaultMaxSize is the ceiling on a layer's uncompressed bytes: 32 GiB.
	DefaultMaxSize int64 = 32 << 30
	// DefaultMaxEntries is the ceiling on a layer's tar entries: 2^20
	// (1,048,576). Large real layers hold around 10^5.
	DefaultMaxEntries = 1 << 20
)

// Options bound what Apply accepts.
type Options struct {
	// MaxSize is the ceiling on uncompressed bytes, the decompression-bomb
	// guard; 0 means DefaultMaxSize.
	MaxSize int64
	// MaxEntries is the ceiling on tar entries (headers); 0 means
	// DefaultMaxEntries.
	MaxEntries int
}

// Result describes an applied layer.
type Result struct {
	// DiffID is "sha256:<hex>" of the whole uncompressed stream, read to
	// EOF including the tar end-of-archive padding: compare it with the
	// image config's rootfs.diff_ids.
	DiffID string
	// Size is the length of the uncompressed stream in bytes.
	Size int64
	// Entries is the number of tar entries read, including skipped ones.
	Entries int
	// OpaqueRoot reports a ".wh..wh..opq" at the layer's root: the layer
	// hides everything below it. Apply sets trusted.overlay.opaque on dir
	// as for any directory, but overlayfs ignores it on a layer's root, so
	// whoever builds a lowerdir list must leave out the layers below this
	// one (the xattr on the snapshot root says so too, for later mounts).
	OpaqueRoot bool
}

// EntryError is a refusal of one tar entry.
type EntryError struct {
	// Name is the entry's name after lexical cleaning (names are cleaned
	// before any check sees them).
	Name string
	// Reason says what is wrong with it.
	Reason string
	// Err is ErrHostile, ErrTooLarge, ErrCorrupt or ErrHardlinkToLower.
	Err error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("%v: entry %q: %s", e.Err, e.Name, e.Reason)
}

func (e *EntryError) Unwrap() error { return e.Err }
