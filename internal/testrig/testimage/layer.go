package testimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Epoch is the modification time of every entry unless [ModTime] says
// otherwise, and the creation time of every image config. A fixed time keeps
// builds deterministic. Do not modify it.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Overlay whiteout names (OCI image spec, "Whiteouts").
const (
	// WhiteoutPrefix marks a deleted path: dir/.wh.name deletes dir/name.
	WhiteoutPrefix = ".wh."
	// OpaqueWhiteout in a directory hides everything lower layers put there.
	OpaqueWhiteout = ".wh..wh..opq"
)

// Compression selects how [LayerBuilder.Layer] encodes a layer blob.
type Compression int

// The supported layer compressions.
const (
	Gzip Compression = iota
	Zstd
	Uncompressed
)

// String returns "gzip", "zstd" or "uncompressed".
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Uncompressed:
		return "uncompressed"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Format selects the media types of layers, configs, manifests and indexes.
type Format int

// The supported formats. Docker schema 2 defines no zstd layer type, so Zstd
// combined with Docker fails the test.
const (
	OCI Format = iota
	Docker
)

// String returns "oci" or "docker".
func (f Format) String() string {
	switch f {
	case OCI:
		return "oci"
	case Docker:
		return "docker"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// LayerMediaType returns the layer media type for c in format f, or an error
// for combinations that do not exist (zstd in Docker schema 2).
func LayerMediaType(c Compression, f Format) (types.MediaType, error) {
	switch {
	case f == OCI && c == Gzip:
		return types.OCILayer, nil
	case f == OCI && c == Zstd:
		return types.OCILayerZStd, nil
	case f == OCI && c == Uncompressed:
		return types.OCIUncompressedLayer, nil
	case f == Docker && c == Gzip:
		return types.DockerLayer, nil
	case f == Docker && c == Uncompressed:
		return types.DockerUncompressedLayer, nil
	case f == Docker && c == Zstd:
		return "", errors.New("docker schema 2 has no zstd layer media type: use OCI")
	}
	return "", fmt.Errorf("unknown layer encoding %v/%v", c, f)
}

// EntryOption changes one entry's tar header before it is written. Any
// function of this type works; [Owner], [ModTime] and [Xattr] are the usual
// ones.
type EntryOption func(*tar.Header)

// Owner sets the entry's numeric uid and gid (default 0:0).
func Owner(uid, gid int) EntryOption {
	return func(h *tar.Header) { h.Uid, h.Gid = uid, gid }
}

// ModTime sets the entry's modification time (default [Epoch]).
func ModTime(t time.Time) EntryOption {
	return func(h *tar.Header) { h.ModTime = t }
}

// Xattr adds an extended attribute, written as a PAX "SCHILY.xattr.name"
// record. value is raw bytes (security.capability is binary).
func Xattr(name, value string) EntryOption {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattr+name] = value
	}
}

// paxXattr prefixes the PAX records that carry extended attributes.
const paxXattr = "SCHILY.xattr."

// Opener opens the content of a streamed file each time the layer is encoded.
type Opener func() (io.ReadCloser, error)

// LayerBuilder collects tar entries, in order, for one layer. Its methods
// return the builder for chaining and record the first misuse (a name that
// leaves the layer root, a bad mode, an entry after [LayerBuilder.Truncated]);
// [LayerBuilder.Layer] then fails the test with it.
//
// Names are relative to the layer root: a leading "/" is dropped and the name
// is cleaned, so "/etc/passwd" and "etc//passwd" both become "etc/passwd".
// Directories are written with a trailing "/". Nothing is added implicitly:
// add every parent directory yourself, in order, as real layers do.
//
// Modes are the low 12 bits of st_mode as chmod takes them: 0o4755 is setuid,
// 0o2755 setgid, 0o1777 sticky. The file type comes from the method.
type LayerBuilder struct {
	entries []entry
	err     error
	ended   bool
}

// entry is one tar entry to write: its header and where its content comes
// from (data, open, or hostPath, whose size is taken when writing).
type entry struct {
	hdr      tar.Header
	data     []byte
	open     Opener
	hostPath string
	truncate bool
}

// NewLayer starts an empty layer.
func NewLayer() *LayerBuilder { return &LayerBuilder{} }

// fail records the first misuse, reported by Layer.
func (b *LayerBuilder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf(format, args...)
	}
}

// clean makes name relative to the layer root, recording a misuse if it
// leaves it.
func (b *LayerBuilder) clean(name string) string {
	n := strings.TrimLeft(name, "/")
	c := path.Clean(n)
	if n == "" || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		b.fail("entry name %q is not below the layer root (use Raw for hostile names)", name)
	}
	return c
}

// add appends e with mode, the default mtime and opts applied.
func (b *LayerBuilder) add(e entry, mode int64, opts []EntryOption) *LayerBuilder {
	if b.ended {
		b.fail("entry %q added after Truncated, which ends the stream", e.hdr.Name)
	}
	if mode&^0o7777 != 0 {
		b.fail("entry %q: mode %#o has bits outside 07777", e.hdr.Name, mode)
	}
	e.hdr.Mode = mode
	e.hdr.ModTime = Epoch
	for _, o := range opts {
		o(&e.hdr)
	}
	b.entries = append(b.entries, e)
	return b
}

// Dir adds a directory.
func (b *LayerBuilder) Dir(name string, mode int64, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeDir, Name: b.clean(name) + "/"}
	return b.add(entry{hdr: h}, mode, opts)
}

// File adds a regular file holding content.
func (b *LayerBuilder) File(name string, content []byte, mode int64, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeReg, Name: b.clean(name), Size: int64(len(content))}
	return b.add(entry{hdr: h, data: content}, mode, opts)
}

// FileFrom adds a regular file of exactly size bytes read from open when the
// layer is encoded, so large content never has to sit in memory.
func (b *LayerBuilder) FileFrom(name string, size int64, open Opener, mode int64, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeReg, Name: b.clean(name), Size: size}
	return b.add(entry{hdr: h, open: open}, mode, opts)
}

// HostFile adds a regular file copied from hostPath on this machine when the
// layer is encoded.
func (b *LayerBuilder) HostFile(name, hostPath string, mode int64, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeReg, Name: b.clean(name)}
	return b.add(entry{hdr: h, hostPath: hostPath}, mode, opts)
}

// Symlink adds a symbolic link to target, stored verbatim: relative,
// absolute or pointing outside the layer, as the test needs.
func (b *LayerBuilder) Symlink(name, target string, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeSymlink, Name: b.clean(name), Linkname: target}
	return b.add(entry{hdr: h}, 0o777, opts)
}

// Hardlink adds a hard link to target, a path in the layer written earlier
// (cleaned like names; use Raw for a link outside the layer).
func (b *LayerBuilder) Hardlink(name, target string, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeLink, Name: b.clean(name), Linkname: b.clean(target)}
	return b.add(entry{hdr: h}, 0o644, opts)
}

// CharDev adds a character device node.
func (b *LayerBuilder) CharDev(name string, major, minor int64, mode int64, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeChar, Name: b.clean(name), Devmajor: major, Devminor: minor}
	return b.add(entry{hdr: h}, mode, opts)
}

// BlockDev adds a block device node.
func (b *LayerBuilder) BlockDev(name string, major, minor int64, mode int64, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeBlock, Name: b.clean(name), Devmajor: major, Devminor: minor}
	return b.add(entry{hdr: h}, mode, opts)
}

// Fifo adds a named pipe.
func (b *LayerBuilder) Fifo(name string, mode int64, opts ...EntryOption) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeFifo, Name: b.clean(name)}
	return b.add(entry{hdr: h}, mode, opts)
}

// Whiteout deletes name from lower layers: it adds the empty regular file
// dir/.wh.base, as overlay-style layers do.
func (b *LayerBuilder) Whiteout(name string) *LayerBuilder {
	c := b.clean(name)
	h := tar.Header{Typeflag: tar.TypeReg, Name: path.Join(path.Dir(c), WhiteoutPrefix+path.Base(c))}
	return b.add(entry{hdr: h}, 0, nil)
}

// Opaque hides everything lower layers put in dir: it adds dir/.wh..wh..opq.
// Entries this layer adds under dir stay visible.
func (b *LayerBuilder) Opaque(dir string) *LayerBuilder {
	h := tar.Header{Typeflag: tar.TypeReg, Name: path.Join(b.clean(dir), OpaqueWhiteout)}
	return b.add(entry{hdr: h}, 0, nil)
}

// Raw adds hdr exactly as given (name, linkname, type, mode, format: nothing
// is cleaned or checked) followed by content; Size is set to len(content).
// It is how hostile layers are made: names like "../x" or "/abs", hard links
// to "/etc/passwd", odd types.
func (b *LayerBuilder) Raw(hdr tar.Header, content []byte) *LayerBuilder {
	if b.ended {
		b.fail("entry %q added after Truncated, which ends the stream", hdr.Name)
	}
	hdr.Size = int64(len(content))
	b.entries = append(b.entries, entry{hdr: hdr, data: content})
	return b
}

// Truncated adds hdr exactly as given, keeping its Size (which may be huge,
// e.g. 1<<40), writes content (at most Size bytes), and then ends the stream
// there: no padding and no end-of-archive blocks. It must be the last entry.
// The compressed stream around it is still well formed; only the tar inside
// is cut short.
func (b *LayerBuilder) Truncated(hdr tar.Header, content []byte) *LayerBuilder {
	if b.ended {
		b.fail("entry %q added after Truncated, which ends the stream", hdr.Name)
	}
	if int64(len(content)) > hdr.Size {
		b.fail("Truncated %q: %d bytes of content exceed the header size %d", hdr.Name, len(content), hdr.Size)
	}
	b.ended = true
	b.entries = append(b.entries, entry{hdr: hdr, data: content, truncate: true})
	return b
}

// Layer encodes the entries into a layer blob with compression c and the
// media type of format f, and returns it as a v1.Layer backed by files in
// t.TempDir(). Its Digest, DiffID and Size are computed while writing, in a
// single streaming pass. The builder may be encoded again, in other
// encodings; the output is deterministic.
func (b *LayerBuilder) Layer(t testing.TB, c Compression, f Format) v1.Layer {
	t.Helper()
	if b.err != nil {
		t.Fatalf("testimage: %v", b.err)
	}
	mt, err := LayerMediaType(c, f)
	if err != nil {
		t.Fatalf("testimage: %v", err)
	}
	l, err := b.encode(t.TempDir(), c, mt)
	if err != nil {
		t.Fatalf("testimage: encoding layer: %v", err)
	}
	return l
}

// encode writes the layer into dir in one pass: the tar (hashed for the
// DiffID) and, unless uncompressed, the compressed blob (hashed and counted
// for the digest and size).
func (b *LayerBuilder) encode(dir string, c Compression, mt types.MediaType) (_ *fileLayer, err error) {
	l := &fileLayer{mediaType: mt, uncompressed: filepath.Join(dir, "layer.tar")}
	tf, err := createFile(l.uncompressed)
	if err != nil {
		return nil, err
	}
	defer closeInto(tf, &err)
	diff := sha256.New()
	sinks := []io.Writer{tf, diff}

	var (
		cw   io.WriteCloser
		dig  hash.Hash
		size countWriter
	)
	if c == Uncompressed {
		l.compressed = l.uncompressed
	} else {
		l.compressed = filepath.Join(dir, "layer.tar."+c.String())
		var cf *os.File
		if cf, err = createFile(l.compressed); err != nil {
			return nil, err
		}
		defer closeInto(cf, &err)
		dig = sha256.New()
		out := io.MultiWriter(cf, dig, &size)
		switch c {
		case Gzip:
			cw, err = gzip.NewWriterLevel(out, gzip.BestSpeed)
		case Zstd:
			// One encoder goroutine keeps the output independent of GOMAXPROCS.
			cw, err = zstd.NewWriter(out, zstd.WithEncoderConcurrency(1))
		default:
			err = fmt.Errorf("unknown compression %v", c)
		}
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, cw)
	}

	bw := bufio.NewWriterSize(io.MultiWriter(sinks...), 1<<20)
	tw := tar.NewWriter(bw)
	truncated := false
	buf := make([]byte, 256<<10)
	for i := range b.entries {
		e := &b.entries[i]
		if err := writeEntry(tw, e, buf); err != nil {
			return nil, fmt.Errorf("entry %q: %w", e.hdr.Name, err)
		}
		truncated = e.truncate
	}
	if !truncated {
		if err := tw.Close(); err != nil {
			return nil, err
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	l.diffID = sumHash(diff)
	if cw == nil {
		st, err := tf.Stat()
		if err != nil {
			return nil, err
		}
		l.digest, l.size = l.diffID, st.Size()
		return l, nil
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	l.digest, l.size = sumHash(dig), int64(size)
	return l, nil
}

// writeEntry writes e's header and content, copying through buf.
func writeEntry(tw *tar.Writer, e *entry, buf []byte) error {
	hdr := e.hdr
	var src io.Reader
	switch {
	case e.hostPath != "":
		f, err := os.Open(e.hostPath)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		hdr.Size = st.Size()
		src = f
	case e.open != nil:
		rc, err := e.open()
		if err != nil {
			return err
		}
		defer rc.Close()
		src = rc
	case len(e.data) > 0:
		src = bytes.NewReader(e.data)
	}
	if err := tw.WriteHeader(&hdr); err != nil {
		return err
	}
	if src == nil {
		return nil
	}
	n, err := io.CopyBuffer(tw, src, buf)
	if err != nil {
		return err
	}
	if !e.truncate && n != hdr.Size {
		return fmt.Errorf("content is %d bytes, header says %d", n, hdr.Size)
	}
	return nil
}

// fileLayer is a v1.Layer whose blobs are files written by encode. For
// uncompressed layers both paths name the same file.
type fileLayer struct {
	uncompressed, compressed string
	digest, diffID           v1.Hash
	size                     int64
	mediaType                types.MediaType
}

// fileLayer implements v1.Layer.
var _ v1.Layer = (*fileLayer)(nil)

// Digest is the sha256 of the compressed blob.
func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the sha256 of the uncompressed tar.
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Compressed opens the blob as stored in a registry.
func (l *fileLayer) Compressed() (io.ReadCloser, error) { return os.Open(l.compressed) }

// Uncompressed opens the tar stream.
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.uncompressed) }

// Size is the compressed blob's length.
func (l *fileLayer) Size() (int64, error) { return l.size, nil }

// MediaType is the layer's media type.
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

// countWriter counts the bytes written to it.
type countWriter int64

// Write counts p.
func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// sumHash returns h's sum as a sha256 v1.Hash.
func sumHash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// createFile creates a new file, refusing to truncate an existing one.
func createFile(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// closeInto closes c, keeping its error in *err unless that holds one.
func closeInto(c io.Closer, err *error) {
	if cerr := c.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}
