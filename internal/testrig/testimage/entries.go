package testimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// MaxEntryContent is the largest regular-file content [Entries] keeps in
// [Entry.Content]; larger files are represented by their digest only.
const MaxEntryContent = 64 << 10

// Entry is one tar entry of a layer as read back by [Entries]: the header
// fields that matter when unpacking, and the content of small files.
type Entry struct {
	Name     string // as stored, not cleaned
	Type     byte   // tar typeflag: tar.TypeReg, tar.TypeDir, tar.TypeSymlink, …
	Mode     int64  // header mode (permissions plus setuid/setgid/sticky)
	UID, GID int
	Size     int64
	ModTime  time.Time
	Linkname string // symlink target or hard link target
	Devmajor int64
	Devminor int64
	// Xattrs holds the SCHILY.xattr.* PAX records, by attribute name; nil
	// when there are none.
	Xattrs map[string]string
	// Digest is the sha256 of a regular file's content.
	Digest v1.Hash
	// Content is a regular file's content when at most MaxEntryContent
	// bytes, else nil.
	Content []byte
}

// Entries reads a layer's uncompressed tar stream to the end and returns its
// entries in order. It fails the test if the stream is not a complete tar or
// if its sha256 differs from the layer's DiffID (ggcr itself never checks
// DiffIDs).
func Entries(t testing.TB, layer v1.Layer) []Entry {
	t.Helper()
	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatalf("testimage: opening layer: %v", err)
	}
	defer rc.Close()
	h := sha256.New()
	es, err := readEntries(io.TeeReader(rc, h))
	if err != nil {
		t.Fatalf("testimage: reading layer: %v", err)
	}
	// Drain the padding the tar reader leaves unread so the hash covers it.
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("testimage: reading layer: %v", err)
	}
	want, err := layer.DiffID()
	if err != nil {
		t.Fatalf("testimage: layer DiffID: %v", err)
	}
	if got := sumHash(h); got != want {
		t.Fatalf("testimage: layer stream hashes to %s, DiffID says %s", got, want)
	}
	return es
}

// readEntries reads tar entries from r until the end-of-archive marker.
func readEntries(r io.Reader) ([]Entry, error) {
	tr := tar.NewReader(r)
	var es []Entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return es, nil
		}
		if err != nil {
			return es, err
		}
		e := Entry{
			Name:     hdr.Name,
			Type:     hdr.Typeflag,
			Mode:     hdr.Mode,
			UID:      hdr.Uid,
			GID:      hdr.Gid,
			Size:     hdr.Size,
			ModTime:  hdr.ModTime,
			Linkname: hdr.Linkname,
			Devmajor: hdr.Devmajor,
			Devminor: hdr.Devminor,
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, paxXattr); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			ch := sha256.New()
			var buf bytes.Buffer
			w := io.Writer(ch)
			if hdr.Size <= MaxEntryContent {
				w = io.MultiWriter(ch, &buf)
			}
			if _, err := io.Copy(w, tr); err != nil {
				return es, err
			}
			e.Digest = sumHash(ch)
			if hdr.Size <= MaxEntryContent {
				e.Content = buf.Bytes()
			}
		}
		es = append(es, e)
	}
}
