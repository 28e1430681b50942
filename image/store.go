package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/store"
)

// Options configure a Store.
type Options struct {
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// MaxLayerSize caps one layer's uncompressed size (decompression
	// bombs); 0 means the layer package's default.
	MaxLayerSize int64
}

// Store is the image store under one state root. It is safe for concurrent
// use by several goroutines and several processes.
type Store struct {
	root  string
	state *store.Store
	log   *slog.Logger
	opts  Options
}

// Record is what the store knows of one image reference.
type Record struct {
	// Name is the canonical reference: docker.io/library/busybox:latest.
	Name string `json:"name"`
	// Digest is the manifest's digest; IndexDigest the index's, when the
	// reference named a multi-platform index.
	Digest      v1.Hash  `json:"digest"`
	IndexDigest *v1.Hash `json:"indexDigest,omitempty"`
	MediaType   string   `json:"mediaType"`
	// ID is the config digest, as docker's image ID.
	ID       v1.Hash `json:"id"`
	Platform string  `json:"platform"`
	Layers   []Layer `json:"layers"`
	// Size is the sum of the compressed layers.
	Size     int64     `json:"size"`
	Created  time.Time `json:"created,omitzero"`
	Pulled   time.Time `json:"pulled"`
	LastUsed time.Time `json:"lastUsed,omitzero"`
}

// Layer is one layer of an image record.
type Layer struct {
	Digest    v1.Hash `json:"digest"`
	DiffID    v1.Hash `json:"diffID"`
	ChainID   v1.Hash `json:"chainID"`
	Size      int64   `json:"size"`
	MediaType string  `json:"mediaType"`
}

// snapshotMeta is written inside a snapshot before it is renamed into place.
type snapshotMeta struct {
	ChainID v1.Hash `json:"chainID"`
	DiffID  v1.Hash `json:"diffID"`
	Size    int64   `json:"size"`
	Entries int     `json:"entries"`
	// OpaqueRoot: the layer hides everything below it (".wh..wh..opq" at
	// its root), which overlayfs ignores on a lower dir's root, so the
	// layers below are left out of the mount.
	OpaqueRoot bool      `json:"opaqueRoot,omitempty"`
	Created    time.Time `json:"created"`
}

const (
	blobsDir     = "blobs/sha256"
	imagesDir    = "images"
	snapshotsDir = "snapshots"
	tmpPrefix    = ".tmp-"
)

// Open opens (creating if needed) the image store under root.
func Open(root string, opts Options) (*Store, error) {
	st, err := store.Open(root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{blobsDir, imagesDir, snapshotsDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{root: root, state: st, log: log, opts: opts}, nil
}

// Root is the state root the store lives in.
func (s *Store) Root() string { return s.root }

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.root, blobsDir, h.Hex)
}

func (s *Store) snapshotPath(chain v1.Hash) string {
	return filepath.Join(s.root, snapshotsDir, chain.Hex)
}

// SnapshotDir is the unpacked layer for a chain ID: an overlayfs lower dir.
func (s *Store) SnapshotDir(chain v1.Hash) string {
	return filepath.Join(s.snapshotPath(chain), "fs")
}

func recordKey(name string) string {
	return imagesDir + "/" + url.PathEscape(name) + ".json"
}

// hasBlob reports whether a verified blob of that digest and size is
// present (size < 0 skips the size check).
func (s *Store) hasBlob(h v1.Hash, size int64) bool {
	fi, err := os.Stat(s.blobPath(h))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

func (s *Store) hasSnapshot(chain v1.Hash) bool {
	_, err := os.Stat(filepath.Join(s.snapshotPath(chain), "meta.json"))
	return err == nil
}

// readBlob returns a blob's bytes, checking its digest.
func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != h.Hex {
		return nil, fmt.Errorf("%w: blob %s on disk has digest sha256:%x", ErrVerify, h, got)
	}
	return b, nil
}

// blobWriter writes one blob to a temp file, hashing and counting. commit
// verifies digest and size, fsyncs and renames it into place; a layer's
// blob is instead finished (verified) when written and published (renamed)
// after the pull's shared sync.
type blobWriter struct {
	s    *Store
	want v1.Hash
	size int64
	f    *os.File
	h    hash.Hash
	n    int64
}

func (s *Store) newBlobWriter(want v1.Hash, size int64) (*blobWriter, error) {
	return s.newBlobWriterKeyed(want, size, want.Hex)
}

// newBlobWriterKeyed names the temp file after key: a layer's writer uses
// its chain ID, whose lock it holds, so the next holder of that lock can
// remove what a killed writer left (removeTemps) without touching the temp
// file of a live writer of the same blob under another chain ID.
func (s *Store) newBlobWriterKeyed(want v1.Hash, size int64, key string) (*blobWriter, error) {
	if want.Algorithm != "sha256" {
		return nil, fmt.Errorf("%w: unsupported digest algorithm %q", ErrVerify, want.Algorithm)
	}
	f, err := os.CreateTemp(filepath.Join(s.root, blobsDir), tmpPrefix+key+"-")
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", want, err)
	}
	return &blobWriter{s: s, want: want, size: size, f: f, h: sha256.New()}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	if w.size >= 0 && w.n+int64(len(p)) > w.size {
		return 0, fmt.Errorf("%w: blob %s is larger than its descriptor's %d bytes", ErrVerify, w.want, w.size)
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	w.h.Write(p[:n])
	return n, err
}

// abort removes the temp file; safe after commit.
func (w *blobWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

func (w *blobWriter) commit() error {
	if err := w.finish(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.abort()
		return err
	}
	return w.publish()
}

// finish checks the blob's size and digest. The file stays open and in
// place: publish renames it, abort removes it.
func (w *blobWriter) finish() error {
	if w.size >= 0 && w.n != w.size {
		w.abort()
		return fmt.Errorf("%w: blob %s has %d bytes, its descriptor says %d", ErrVerify, w.want, w.n, w.size)
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); got != w.want.Hex {
		w.abort()
		return fmt.Errorf("%w: blob %s arrived with digest sha256:%s", ErrVerify, w.want, got)
	}
	return nil
}

// publish renames a finished blob into place, for callers that have made
// its content durable (commit's fsync, or a syncfs that began after
// finish), and makes the rename durable.
func (w *blobWriter) publish() error {
	defer w.abort()
	if err := w.f.Close(); err != nil {
		return err
	}
	name := w.f.Name()
	w.f = nil
	if err := os.Rename(name, w.s.blobPath(w.want)); err != nil {
		os.Remove(name)
		return err
	}
	return syncDir(filepath.Dir(name))
}

// putBlob stores a small blob (manifest, config, index) held in memory.
func (s *Store) putBlob(h v1.Hash, b []byte) error {
	if s.hasBlob(h, int64(len(b))) {
		return nil
	}
	w, err := s.newBlobWriter(h, int64(len(b)))
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		w.abort()
		return err
	}
	return w.commit()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get returns the record for a reference (anything ParseReference takes).
func (s *Store) Get(ref string) (*Record, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := s.state.Get(recordKey(Name(r)), &rec); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, Name(r))
		}
		return nil, err
	}
	return &rec, nil
}

// Resolve finds an image by reference, by ID (config digest, or a unique
// hex prefix of it, as docker allows) or by manifest digest.
func (s *Store) Resolve(ref string) (*Record, error) {
	if rec, err := s.Get(ref); err == nil {
		return rec, nil
	} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalidReference) {
		return nil, err
	}
	prefix := strings.TrimPrefix(ref, "sha256:")
	if len(prefix) < 4 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	recs, err := s.List()
	if err != nil {
		return nil, err
	}
	var found *Record
	for i := range recs {
		r := &recs[i]
		if strings.HasPrefix(r.ID.Hex, prefix) || strings.HasPrefix(r.Digest.Hex, prefix) {
			if found != nil && found.ID != r.ID {
				return nil, fmt.Errorf("%w: %s is ambiguous", ErrNotFound, ref)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return found, nil
}

// List returns every image record, sorted by name.
func (s *Store) List() ([]Record, error) {
	names, err := s.state.List(imagesDir)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(names))
	for _, n := range names {
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		var rec Record
		if err := s.state.Get(imagesDir+"/"+n, &rec); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue // removed meanwhile
			}
			return nil, err
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *Store) putRecord(rec *Record) error {
	return s.state.Put(recordKey(rec.Name), rec)
}

// Config returns an image's config file.
func (s *Store) Config(rec *Record) (*v1.ConfigFile, error) {
	b, err := s.readBlob(rec.ID)
	if err != nil {
		return nil, err
	}
	return v1.ParseConfigFile(strings.NewReader(string(b)))
}

// Manifest returns an image's manifest.
func (s *Store) Manifest(rec *Record) (*v1.Manifest, error) {
	b, err := s.readBlob(rec.Digest)
	if err != nil {
		return nil, err
	}
	return v1.ParseManifest(strings.NewReader(string(b)))
}

// LayerDirs returns the image's snapshot dirs, lowest layer first: the
// overlayfs lower dirs (overlayfs wants them highest first).
func (s *Store) LayerDirs(rec *Record) ([]string, error) {
	dirs := make([]string, 0, len(rec.Layers))
	for _, l := range rec.Layers {
		b, err := os.ReadFile(filepath.Join(s.snapshotPath(l.ChainID), "meta.json"))
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot %s of %s is missing; pull the image again", ErrNotFound, l.ChainID, rec.Name)
		}
		var meta snapshotMeta
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, fmt.Errorf("snapshot %s: meta.json: %w", l.ChainID, err)
		}
		if meta.OpaqueRoot {
			dirs = dirs[:0]
		}
		dirs = append(dirs, s.SnapshotDir(l.ChainID))
	}
	return dirs, nil
}

// lockSnapshot takes the per-chain-ID lock that serialises unpacking.
func (s *Store) lockSnapshot(ctx context.Context, chain v1.Hash) (*store.Lock, error) {
	return s.state.Lock(ctx, "snapshot-"+chain.Hex)
}

// removeTemps removes temp files and dirs left for one digest or chain ID by
// a killed writer. Callers hold the matching lock.
func (s *Store) removeTemps(dir, hexID string) {
	matches, _ := filepath.Glob(filepath.Join(s.root, dir, tmpPrefix+hexID+"-*"))
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			s.log.Warn("remove stale temp", "path", m, "err", err)
		}
	}
}

var _ io.Writer = (*blobWriter)(nil)

// writeNew writes a small JSON file that must not exist yet, without an
// fsync: for files inside a temp dir that a later sync makes durable.
func writeNew(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
