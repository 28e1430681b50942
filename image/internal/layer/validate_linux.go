//go:build linux

package layer

import (
	"archive/tar"
	"fmt"
	"math"
	"path/filepath"
	"strings"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"

	paxXattr = "SCHILY.xattr."

	maxPathLen     = 4096  // PATH_MAX
	maxNameLen     = 255   // NAME_MAX
	maxXattrName   = 255   // XATTR_NAME_MAX
	maxXattrValue  = 65536 // XATTR_SIZE_MAX
	maxDevMajor    = 1<<12 - 1
	maxDevMinor    = 1<<20 - 1
	maxID          = math.MaxUint32 - 1 // (uid_t)-1 means "leave unchanged"
	maxEntryXattrs = 1024
)

// kind is what a path in the layer directory is, as far as writing below
// it is concerned.
type kind uint8

const (
	kindDir      kind = iota
	kindFile          // regular file, device, fifo: nothing can go below it
	kindSymlink       // nothing may go below it either: that would follow it
	kindWhiteout      // the 0/0 character device of a converted whiteout
)

func (k kind) String() string {
	switch k {
	case kindDir:
		return "directory"
	case kindSymlink:
		return "symlink"
	case kindWhiteout:
		return "whiteout"
	default:
		return "file"
	}
}

// node mirrors one path that this layer put in the (initially empty)
// layer directory, so the filter knows what is on disk without looking.
type node struct {
	kind kind
	// whitedOut: a whiteout in this layer named this path. If the path
	// ends up a directory it must be opaque: the whiteout hides the lower
	// layers' content, this layer's own content stays.
	whitedOut bool
	children  map[string]*node
}

func (n *node) child(name string) *node {
	if n.children == nil {
		return nil
	}
	return n.children[name]
}

func (n *node) add(name string, k kind) *node {
	if n.children == nil {
		n.children = make(map[string]*node)
	}
	c := &node{kind: k}
	n.children[strings.Clone(name)] = c
	return c
}

// replace turns n into an entry of kind k the way the writer does on disk:
// a directory over a directory merges, anything else removes the old entry
// (and all below it) first.
func (n *node) replace(k kind) {
	if n.kind == kindDir && k == kindDir {
		return
	}
	n.kind = k
	n.children = nil
}

// validator judges every header (after filepath.Clean of the name) before
// anything is written for it, and refuses, skips or accepts it; Apply's
// writer writes what it accepts.
type validator struct {
	opts     Options
	consumed func() int64 // uncompressed bytes read so far
	root     node
	entries  int
	declared int64 // sum of regular files' declared sizes
	opaque   []string
	// opaqueRoot: the layer has a root-level .wh..wh..opq.
	opaqueRoot bool
	// fresh: the entry filter last accepted creates a name that nothing
	// in this layer had before (not a whiteout or opaque marker), so
	// writing it removes or replaces nothing.
	fresh bool
}

func newValidator(opts Options, consumed func() int64) *validator {
	return &validator{opts: opts, consumed: consumed, root: node{kind: kindDir}}
}

func (o Options) withDefaults() Options {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

func hostile(name, format string, args ...any) error {
	return &EntryError{Name: name, Reason: fmt.Sprintf(format, args...), Err: ErrHostile}
}

func tooLarge(name, format string, args ...any) error {
	return &EntryError{Name: name, Reason: fmt.Sprintf(format, args...), Err: ErrTooLarge}
}

func (v *validator) filter(hdr *tar.Header) (bool, error) {
	v.fresh = false
	v.entries++
	if v.entries > v.opts.MaxEntries {
		return false, tooLarge(hdr.Name, "more than %d entries (MaxEntries)", v.opts.MaxEntries)
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return false, nil // PAX global header: no file; Go does not apply it to later entries
	}

	name, err := cleanName(hdr.Name)
	if err != nil {
		return false, err
	}
	hdr.Name = name
	if name == "." {
		return false, nil // the root itself: containerd ignores it as well
	}
	if err := v.checkHeader(hdr); err != nil {
		return false, err
	}

	parts := strings.Split(name, "/")
	base := parts[len(parts)-1]
	parent, missing, err := v.walkParents(name, parts[:len(parts)-1])
	if err != nil {
		return false, err
	}

	switch {
	case base == whiteoutOpaque:
		// The writer sets trusted.overlay.opaque=y on the parent, creating
		// it first if needed.
		v.opaqueRoot = v.opaqueRoot || len(parts) == 1
		v.makeParents(parent, parts[missing:len(parts)-1])
		return true, nil

	case strings.HasPrefix(base, whiteoutMeta):
		return false, nil // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): Docker drops it too

	case strings.HasPrefix(base, whiteoutPrefix):
		target := base[len(whiteoutPrefix):]
		if target == "" || target == "." || target == ".." {
			return false, hostile(name, "whiteout names no entry of its directory")
		}
		if missing == len(parts)-1 { // parent exists in this layer
			if existing := parent.child(target); existing != nil {
				// OCI: a whiteout hides only lower layers' entries; this
				// layer's own entry stays. A directory becomes opaque.
				existing.whitedOut = true
				if existing.kind == kindDir {
					v.opaque = append(v.opaque, filepath.Join(filepath.Dir(name), target))
				}
				return false, nil
			}
		}
		p := v.makeParents(parent, parts[missing:len(parts)-1])
		p.add(target, kindWhiteout).whitedOut = true
		return true, nil
	}

	k, err := v.entryKind(hdr, name)
	if err != nil {
		return false, err
	}
	p := v.makeParents(parent, parts[missing:len(parts)-1])
	if existing := p.child(base); existing != nil {
		wasDir := existing.kind == kindDir
		existing.replace(k)
		if existing.whitedOut && k == kindDir && !wasDir {
			v.opaque = append(v.opaque, name)
		}
	} else {
		p.add(base, k)
		v.fresh = true
	}
	return true, nil
}

// cleanName returns the entry name relative to the layer root, refusing
// one that would resolve outside it. A leading "/" is dropped, as Docker
// does: "/etc/x" is "etc/x". So is a leading "./" (common in real layers).
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", hostile(name, "NUL byte in name")
	}
	if len(name) > maxPathLen {
		return "", hostile(name[:64]+"…", "name longer than %d bytes", maxPathLen)
	}
	c := filepath.Clean(name)
	if filepath.IsAbs(c) {
		c = filepath.Clean(strings.TrimLeft(c, "/"))
		if c == "" {
			c = "."
		}
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", hostile(name, "name escapes the layer root")
	}
	for _, p := range strings.Split(c, "/") {
		if len(p) > maxNameLen {
			return "", hostile(name, "name component longer than %d bytes", maxNameLen)
		}
	}
	return c, nil
}

// checkHeader refuses unsupported types and absurd numbers, and enforces
// the size ceilings that can be judged from the header.
func (v *validator) checkHeader(hdr *tar.Header) error {
	name := hdr.Name
	switch hdr.Typeflag {
	// archive/tar reports the old TypeRegA ('\x00') as TypeReg.
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return hostile(name, "unsupported entry type %q", hdr.Typeflag)
	}
	if hdr.Size < 0 {
		return &EntryError{Name: name, Reason: "negative size", Err: ErrCorrupt}
	}
	// Only regular files have data: archive/tar reads none for the other
	// types, whatever their size field says.
	if hdr.Typeflag == tar.TypeReg {
		if left := v.opts.MaxSize - v.consumed(); hdr.Size > left {
			return tooLarge(name, "declares %d bytes, more than the %d left of MaxSize %d", hdr.Size, max(left, 0), v.opts.MaxSize)
		}
		// A sparse entry expands to its declared size on disk: bound the sum.
		v.declared += hdr.Size
		if v.declared > v.opts.MaxSize {
			return tooLarge(name, "regular files declare more than MaxSize %d bytes in total", v.opts.MaxSize)
		}
	}
	if hdr.Uid < 0 || hdr.Uid > maxID || hdr.Gid < 0 || hdr.Gid > maxID {
		return hostile(name, "uid %d or gid %d out of range", hdr.Uid, hdr.Gid)
	}
	if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
		if hdr.Devmajor < 0 || hdr.Devmajor > maxDevMajor || hdr.Devminor < 0 || hdr.Devminor > maxDevMinor {
			return hostile(name, "device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
	}
	return v.checkXattrs(hdr)
}

// checkXattrs refuses absurd xattrs and drops the ones that cannot or must
// not be set: trusted.* (would forge overlayfs metadata; containerd refuses
// them anyway), namespaces the kernel does not know, and user.* on entries
// other than regular files and directories (the kernel refuses those).
func (v *validator) checkXattrs(hdr *tar.Header) error {
	n := 0
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, paxXattr)
		if !ok {
			continue
		}
		n++
		switch {
		case n > maxEntryXattrs:
			return hostile(hdr.Name, "more than %d xattrs", maxEntryXattrs)
		case attr == "" || len(attr) > maxXattrName || strings.IndexByte(attr, 0) >= 0:
			return hostile(hdr.Name, "invalid xattr name %q", attr)
		case len(value) > maxXattrValue:
			return hostile(hdr.Name, "xattr %q value of %d bytes (limit %d)", attr, len(value), maxXattrValue)
		}
		keep := false
		switch {
		case strings.HasPrefix(attr, "user."):
			keep = hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir
		case strings.HasPrefix(attr, "security."), attr == "system.posix_acl_access", attr == "system.posix_acl_default":
			keep = true
		}
		if !keep {
			delete(hdr.PAXRecords, key)
		}
	}
	return nil
}

// walkParents checks the directories leading to an entry against what this
// layer created: none may be a symlink (writing through it) or another
// non-directory. It returns the deepest existing one and the index in
// parents of the first one that does not exist yet (the writer will create
// it and all below as plain directories).
func (v *validator) walkParents(name string, parents []string) (*node, int, error) {
	n := &v.root
	for i, p := range parents {
		if strings.HasPrefix(p, whiteoutPrefix) {
			return nil, 0, hostile(name, "whiteout name %q used as a directory", p)
		}
		c := n.child(p)
		if c == nil {
			for _, q := range parents[i+1:] {
				if strings.HasPrefix(q, whiteoutPrefix) {
					return nil, 0, hostile(name, "whiteout name %q used as a directory", q)
				}
			}
			return n, i, nil
		}
		switch c.kind {
		case kindDir:
		case kindSymlink:
			return nil, 0, hostile(name, "parent %q is a symlink created earlier in this layer: refusing to write through it", strings.Join(parents[:i+1], "/"))
		default:
			return nil, 0, hostile(name, "parent %q is a %s, not a directory", strings.Join(parents[:i+1], "/"), c.kind)
		}
		n = c
	}
	return n, len(parents), nil
}

func (v *validator) makeParents(n *node, missing []string) *node {
	for _, p := range missing {
		n = n.add(p, kindDir)
	}
	return n
}

// entryKind checks a non-whiteout entry's link target and says what the
// entry will be on disk.
func (v *validator) entryKind(hdr *tar.Header, name string) (kind, error) {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return kindDir, nil
	case tar.TypeSymlink:
		switch {
		case hdr.Linkname == "":
			return 0, hostile(name, "symlink with an empty target")
		case strings.IndexByte(hdr.Linkname, 0) >= 0:
			return 0, hostile(name, "NUL byte in symlink target")
		case len(hdr.Linkname) > maxPathLen:
			return 0, hostile(name, "symlink target longer than %d bytes", maxPathLen)
		}
		// Any target is fine, absolute or outside: it is only a link.
		// Writing through it is what walkParents refuses.
		return kindSymlink, nil
	case tar.TypeLink:
		return v.hardlinkKind(hdr, name)
	default:
		return kindFile, nil
	}
}

// hardlinkKind checks a hard link's target: relative, inside the root, not
// through a symlink, created earlier in this layer and not a directory.
func (v *validator) hardlinkKind(hdr *tar.Header, name string) (kind, error) {
	ln := hdr.Linkname
	switch {
	case ln == "":
		return 0, hostile(name, "hard link with an empty target")
	case strings.IndexByte(ln, 0) >= 0:
		return 0, hostile(name, "NUL byte in hard link target")
	case len(ln) > maxPathLen:
		return 0, hostile(name, "hard link target longer than %d bytes", maxPathLen)
	case filepath.IsAbs(ln):
		return 0, hostile(name, "hard link target %q is absolute", ln)
	}
	target := filepath.Clean(ln)
	switch {
	case target == ".." || strings.HasPrefix(target, "../"):
		return 0, hostile(name, "hard link target %q escapes the layer root", ln)
	case target == ".":
		return 0, hostile(name, "hard link to the layer root")
	case target == name:
		return 0, hostile(name, "hard link to itself")
	}
	hdr.Linkname = target

	parts := strings.Split(target, "/")
	n := &v.root
	for i, p := range parts {
		c := n.child(p)
		if c == nil {
			return 0, &EntryError{Name: name, Reason: fmt.Sprintf("hard link target %q is not in this layer", target), Err: ErrHardlinkToLower}
		}
		last := i == len(parts)-1
		switch {
		case c.kind == kindDir && !last:
		case c.kind == kindDir:
			return 0, hostile(name, "hard link to directory %q", target)
		case c.kind == kindWhiteout:
			return 0, hostile(name, "hard link to whiteout %q", strings.Join(parts[:i+1], "/"))
		case !last && c.kind == kindSymlink:
			return 0, hostile(name, "hard link target %q passes through symlink %q", target, strings.Join(parts[:i+1], "/"))
		case !last:
			return 0, hostile(name, "hard link target %q: %q is not a directory", target, strings.Join(parts[:i+1], "/"))
		default:
			return c.kind, nil // a link to a symlink is a symlink
		}
		n = c
	}
	return 0, hostile(name, "invalid hard link target %q", target) // not reached: the loop decides at the last part
}

// lookup finds the node for a clean relative path, or nil.
func (v *validator) lookup(name string) *node {
	n := &v.root
	for _, p := range strings.Split(name, "/") {
		if n = n.child(p); n == nil {
			return nil
		}
	}
	return n
}
