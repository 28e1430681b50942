package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/image/internal/layer"
)

// Endpoint is one place to pull a reference from: a mirror or the origin.
type Endpoint struct {
	// Ref is the reference rewritten to this endpoint's host.
	Ref name.Reference
	// Mirror is true for mirrors; a failing mirror falls through to the
	// next endpoint, a failing origin ends the pull.
	Mirror bool
	// Options carry the transport and authentication for this endpoint.
	Options []remote.Option
}

// Phase of one layer during a pull.
type Phase string

// Layer phases reported through PullOptions.Progress.
const (
	PhaseWaiting Phase = "waiting"
	PhasePulling Phase = "pulling" // downloading, verifying and unpacking, streamed together
	PhaseExists  Phase = "exists"  // already in the store
	PhaseDone    Phase = "done"
)

// Progress reports one layer's state during a pull.
type Progress struct {
	Digest  v1.Hash
	Phase   Phase
	Current int64 // compressed bytes read so far
	Total   int64 // compressed size
}

// PullOptions configure Pull.
type PullOptions struct {
	// Platform picks the image from a multi-platform index; nil means the
	// host's.
	Platform *v1.Platform
	// Endpoints lists where to fetch a reference from, mirrors first; nil
	// means the origin only, with Remote's options.
	Endpoints func(ref name.Reference) ([]Endpoint, error)
	// Remote options for the origin when Endpoints is nil (auth, transport).
	Remote []remote.Option
	// Progress, if set, receives per-layer updates from several goroutines.
	Progress func(Progress)
	// Jobs bounds the layers fetched and unpacked at once; 0 means 3.
	Jobs int
}

// HostPlatform is the platform berth runs on, as an image index names it.
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
	}
	return p
}

// ParsePlatform parses os/arch[/variant].
func ParsePlatform(s string) (*v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
		return nil, fmt.Errorf("invalid platform %q: want os/arch[/variant], e.g. linux/arm64", s)
	}
	p := &v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// platformMatches reports whether an index entry's platform serves want.
func platformMatches(have *v1.Platform, want v1.Platform) bool {
	if have == nil || have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	hv, wv := have.Variant, want.Variant
	if want.Architecture == "arm64" {
		// arm64 images say v8 or nothing; both are the same machine.
		if hv == "v8" {
			hv = ""
		}
		if wv == "v8" {
			wv = ""
		}
	}
	return wv == "" || hv == wv
}

// Pull fetches ref (a tag or digest reference) with its layers into the
// store and records it. It is atomic and resumable: nothing counts as
// present until verified, and layers already in the store are not fetched.
func (s *Store) Pull(ctx context.Context, refStr string, o PullOptions) (*Record, error) {
	ref, err := ParseReference(refStr)
	if err != nil {
		return nil, err
	}
	want := HostPlatform()
	if o.Platform != nil {
		want = *o.Platform
	}
	endpoints := []Endpoint{{Ref: ref, Options: o.Remote}}
	if o.Endpoints != nil {
		if endpoints, err = o.Endpoints(ref); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, ep := range endpoints {
		rec, err := s.pullFrom(ctx, ref, ep, want, o)
		if err == nil {
			return rec, nil
		}
		if !ep.Mirror || ctx.Err() != nil {
			return nil, errors.Join(append(errs, err)...)
		}
		s.log.Warn("mirror failed, trying the next endpoint", "mirror", ep.Ref.Context().RegistryStr(), "err", err)
		errs = append(errs, fmt.Errorf("mirror %s: %w", ep.Ref.Context().RegistryStr(), err))
	}
	return nil, errors.Join(errs...)
}

func (s *Store) pullFrom(ctx context.Context, ref name.Reference, ep Endpoint, want v1.Platform, o PullOptions) (*Record, error) {
	registry := ep.Ref.Context().RegistryStr()
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 3
	}
	// ggcr deadlocks when more blob bodies are open than its job count.
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithJobs(jobs + 1)}, ep.Options...)

	desc, err := remote.Get(ep.Ref, opts...)
	if err != nil {
		return nil, classify(registry, err)
	}
	var (
		img         v1.Image
		indexDigest *v1.Hash
		indexRaw    []byte
	)
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, classify(registry, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("%s: parse index: %w", Name(ref), err)
		}
		var pick *v1.Descriptor
		var seen []string
		for i := range im.Manifests {
			m := &im.Manifests[i]
			if m.Platform != nil {
				seen = append(seen, platformString(*m.Platform))
			}
			if m.MediaType.IsImage() && platformMatches(m.Platform, want) {
				pick = m
				break
			}
		}
		if pick == nil {
			return nil, fmt.Errorf("%w: %s has no image for %s (it has %s)", ErrNoMatchingPlatform, Name(ref), platformString(want), strings.Join(seen, ", "))
		}
		d := desc.Digest
		indexDigest = &d
		indexRaw = desc.Manifest
		img, err = remote.Image(ep.Ref.Context().Digest(pick.Digest.String()), opts...)
		if err != nil {
			return nil, classify(registry, err)
		}
	case desc.MediaType.IsImage():
		if img, err = desc.Image(); err != nil {
			return nil, classify(registry, err)
		}
	default:
		return nil, fmt.Errorf("%s: unsupported manifest media type %q", Name(ref), desc.MediaType)
	}

	return s.ingestImage(ctx, ref, registryImage{img, registry}, indexDigest, indexRaw, o, registry)
}

// registryImage marks read errors of its layers' bodies as the registry's:
// a connection that breaks in the middle of a layer (io.ErrUnexpectedEOF,
// a reset) is then a retryable *RegistryError, not a bare read error.
type registryImage struct {
	v1.Image
	registry string
}

func (i registryImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return registryLayer{l, i.registry}, nil
}

type registryLayer struct {
	v1.Layer
	registry string
}

func (l registryLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return &registryBody{rc, l.registry}, nil
}

type registryBody struct {
	io.ReadCloser
	registry string
}

func (b *registryBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, &RegistryError{Registry: b.registry, Message: "layer download cut short: " + err.Error(), Err: err}
	}
	if err != nil && err != io.EOF {
		err = classify(b.registry, err) // network errors; others (ggcr's digest check) stay as they are
	}
	return n, err
}

// ingestImage stores one image (manifest, config, layers) under ref's name.
// registry names the source in errors.
func (s *Store) ingestImage(ctx context.Context, ref name.Reference, img v1.Image, indexDigest *v1.Hash, indexRaw []byte, o PullOptions, registry string) (*Record, error) {
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 3
	}
	want := HostPlatform()
	if o.Platform != nil {
		want = *o.Platform
	}
	unlock, err := s.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()

	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, classify(registry, err)
	}
	mdigest := sha256Hash(rawManifest)
	if d, ok := ref.(name.Digest); ok && indexDigest == nil && d.DigestStr() != mdigest.String() {
		return nil, fmt.Errorf("%w: %s: registry sent a manifest with digest %s", ErrVerify, Name(ref), mdigest)
	}
	if indexDigest != nil && sha256Hash(indexRaw) != *indexDigest {
		return nil, fmt.Errorf("%w: %s: index digest mismatch", ErrVerify, Name(ref))
	}
	manifest, err := v1.ParseManifest(strings.NewReader(string(rawManifest)))
	if err != nil {
		return nil, fmt.Errorf("%s: parse manifest: %w", Name(ref), err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, classify(registry, err)
	}
	if got := sha256Hash(rawConfig); got != manifest.Config.Digest {
		return nil, fmt.Errorf("%w: %s: config blob has digest %s, manifest says %s", ErrVerify, Name(ref), got, manifest.Config.Digest)
	}
	cfg, err := v1.ParseConfigFile(strings.NewReader(string(rawConfig)))
	if err != nil {
		return nil, fmt.Errorf("%s: parse image config: %w", Name(ref), err)
	}
	if o.Platform != nil && indexDigest == nil && !platformMatches(&v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}, want) {
		return nil, fmt.Errorf("%w: %s is %s/%s, not %s", ErrNoMatchingPlatform, Name(ref), cfg.OS, cfg.Architecture, platformString(want))
	}

	rec, err := s.recordFor(ref, manifest, cfg, mdigest, indexDigest)
	if err != nil {
		return nil, err
	}
	open := func(l Layer) (io.ReadCloser, error) {
		rl, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, classify(registry, err)
		}
		rc, err := rl.Compressed()
		if err != nil {
			return nil, classify(registry, err)
		}
		return rc, nil
	}
	if err := s.ingestLayers(ctx, rec.Layers, jobs, open, o.Progress); err != nil {
		return nil, err
	}
	if indexDigest != nil {
		if err := s.putBlob(*indexDigest, indexRaw); err != nil {
			return nil, err
		}
	}
	if err := s.putBlob(rec.ID, rawConfig); err != nil {
		return nil, err
	}
	if err := s.putBlob(mdigest, rawManifest); err != nil {
		return nil, err
	}
	rec.Pulled = time.Now().UTC()
	if err := s.putRecord(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// recordFor builds the record of an image from its manifest and config,
// checking that they agree.
func (s *Store) recordFor(ref name.Reference, m *v1.Manifest, cfg *v1.ConfigFile, mdigest v1.Hash, indexDigest *v1.Hash) (*Record, error) {
	var layers []v1.Descriptor
	for _, l := range m.Layers {
		if !l.MediaType.IsDistributable() {
			continue // foreign layers are not pulled, as docker does
		}
		layers = append(layers, l)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%w: %s: manifest lists %d layers, config %d DiffIDs", ErrVerify, Name(ref), len(layers), len(cfg.RootFS.DiffIDs))
	}
	if !isSHA256(m.Config.Digest) {
		return nil, fmt.Errorf("%w: %s: config digest %q: only sha256 digests are supported", ErrVerify, Name(ref), m.Config.Digest)
	}
	rec := &Record{
		Name:        Name(ref),
		Digest:      mdigest,
		IndexDigest: indexDigest,
		MediaType:   string(m.MediaType),
		ID:          m.Config.Digest,
		Platform:    platformString(v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}),
		Created:     cfg.Created.Time,
	}
	if rec.MediaType == "" {
		rec.MediaType = string(types.OCIManifestSchema1)
	}
	var chain v1.Hash
	for i, l := range layers {
		diffID := cfg.RootFS.DiffIDs[i]
		if i == 0 {
			chain = diffID
		} else {
			chain = sha256Hash([]byte(chain.String() + " " + diffID.String()))
		}
		if !isSHA256(l.Digest) || !isSHA256(diffID) {
			return nil, fmt.Errorf("%w: %s: layer %d: only sha256 digests are supported", ErrVerify, Name(ref), i)
		}
		rec.Layers = append(rec.Layers, Layer{Digest: l.Digest, DiffID: diffID, ChainID: chain, Size: l.Size, MediaType: string(l.MediaType)})
		rec.Size += l.Size
	}
	return rec, nil
}

func isSHA256(h v1.Hash) bool {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 {
		return false
	}
	_, err := hex.DecodeString(h.Hex)
	return err == nil
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// ingestLayers brings every layer's blob and snapshot into the store: up
// to jobs layers download and unpack at once, each then waits (without its
// slot) for a shared sync that makes it durable, and is published.
func (s *Store) ingestLayers(ctx context.Context, layers []Layer, jobs int, open func(Layer) (io.ReadCloser, error), progress func(Progress)) error {
	if progress == nil {
		progress = func(Progress) {}
	}
	for _, l := range layers {
		progress(Progress{Digest: l.Digest, Phase: PhaseWaiting, Total: l.Size})
	}
	// Opened before anything is written, so that it reports this pull's
	// writeback errors.
	sy, err := newSyncer(filepath.Join(s.root, snapshotsDir), filepath.Join(s.root, blobsDir))
	if err != nil {
		return err
	}
	defer sy.close()

	// A layer that fails cancels the others' downloads, not the publishing
	// of layers already verified: those stay for the next pull.
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(err error) error {
		cancel(err)
		return err
	}
	var unpack, publish errgroup.Group
	unpack.SetLimit(jobs)
	// The same chain ID twice in one image (rare, but legal) must not be
	// unpacked by two goroutines of this process: the lock is per chain,
	// held from before the unpack until after the publish.
	for _, l := range layers {
		unpack.Go(func() error {
			pub, err := s.ingestLayer(ctx, l, open, progress)
			if err != nil {
				return fail(err)
			}
			if pub != nil {
				publish.Go(func() error {
					if err := pub(parent, sy); err != nil {
						return fail(err)
					}
					return nil
				})
			}
			return nil
		})
	}
	errUnpack, errPublish := unpack.Wait(), publish.Wait()
	if err := context.Cause(ctx); err != nil {
		return err // the first failure (or the caller's cancellation)
	}
	return errors.Join(errUnpack, errPublish) // nil: failures cancel ctx
}

// ingestLayer makes one layer's blob and snapshot present. Under the
// chain-ID lock it removes a killed writer's leftovers, then streams the
// compressed blob (from the registry, or from the store when only the
// snapshot is missing) through a digest check into a temp blob file and,
// decompressed, into a temp snapshot dir. Once the blob digest, the size
// and the DiffID all check it returns a publish func, which still holds
// the lock: it waits for a sync that makes both durable, then renames them
// into place. A layer already present needs no publish (nil).
func (s *Store) ingestLayer(ctx context.Context, l Layer, open func(Layer) (io.ReadCloser, error), progress func(Progress)) (publish func(context.Context, *syncer) error, err error) {
	lock, err := s.lockSnapshot(ctx, l.ChainID)
	if err != nil {
		return nil, err
	}
	var (
		bw  *blobWriter
		tmp string
	)
	// cleanup undoes everything not published and releases the lock; it
	// runs on error here, or at the end of publish.
	cleanup := func() {
		if bw != nil {
			bw.abort()
		}
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		lock.Unlock()
	}
	defer func() {
		if publish == nil {
			cleanup()
		}
	}()
	s.removeTemps(snapshotsDir, l.ChainID.Hex)
	s.removeTemps(blobsDir, l.ChainID.Hex)

	haveBlob, haveSnap := s.hasBlob(l.Digest, l.Size), s.hasSnapshot(l.ChainID)
	if haveBlob && haveSnap {
		progress(Progress{Digest: l.Digest, Phase: PhaseExists, Current: l.Size, Total: l.Size})
		return nil, nil
	}

	var src io.ReadCloser
	if haveBlob {
		if src, err = os.Open(s.blobPath(l.Digest)); err != nil {
			return nil, err
		}
	} else {
		if src, err = open(l); err != nil {
			return nil, err
		}
		if bw, err = s.newBlobWriterKeyed(l.Digest, l.Size, l.ChainID.Hex); err != nil {
			src.Close()
			return nil, err
		}
	}
	defer src.Close()

	counted := &progressReader{r: src, report: func(n int64) {
		progress(Progress{Digest: l.Digest, Phase: PhasePulling, Current: n, Total: l.Size})
	}}
	// The blob writer hashes what it writes; a blob read back from the
	// store is hashed here.
	var hasher hash.Hash
	var sink io.Writer = bw
	if bw == nil {
		hasher = sha256.New()
		sink = hasher
	}
	tee := io.TeeReader(counted, sink)

	if !haveSnap {
		tmp, err = os.MkdirTemp(filepath.Join(s.root, snapshotsDir), tmpPrefix+l.ChainID.Hex+"-")
		if err != nil {
			return nil, err
		}
		fsDir := filepath.Join(tmp, "fs")
		if err := os.Mkdir(fsDir, 0o755); err != nil {
			return nil, err
		}
		dec, err := layer.Decompress(tee)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		// Download, digest and decompression run ahead in a goroutine of
		// their own while Apply creates files.
		ahead := layer.ReadAhead(dec)
		res, err := layer.Apply(ctx, fsDir, ahead, layer.Options{MaxSize: s.opts.MaxLayerSize})
		if err != nil {
			src.Close() // the read-ahead may be blocked reading it
		}
		ahead.Close()
		dec.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		if res.DiffID != l.DiffID.String() {
			return nil, fmt.Errorf("%w: layer %s uncompressed to %s, the image config says %s", ErrVerify, l.Digest, res.DiffID, l.DiffID)
		}
		meta := snapshotMeta{ChainID: l.ChainID, DiffID: l.DiffID, Size: res.Size, Entries: res.Entries, OpaqueRoot: res.OpaqueRoot, Created: time.Now().UTC()}
		// No fsync of its own: the sync before the publish covers it.
		if err := writeNew(filepath.Join(tmp, "meta.json"), meta); err != nil {
			return nil, err
		}
	}
	// Read what the decompressor left (trailing bytes) so the digest covers
	// the whole blob.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	if counted.n != l.Size {
		return nil, fmt.Errorf("%w: layer blob %s has %d bytes, the manifest says %d", ErrVerify, l.Digest, counted.n, l.Size)
	}
	if bw != nil {
		if err := bw.finish(); err != nil {
			return nil, err
		}
	} else if got := hex.EncodeToString(hasher.Sum(nil)); got != l.Digest.Hex {
		return nil, fmt.Errorf("%w: layer blob %s arrived with digest sha256:%s", ErrVerify, l.Digest, got)
	}

	return func(ctx context.Context, sy *syncer) error {
		defer cleanup()
		// One syncfs, shared with the other layers that finished meanwhile,
		// makes every unpacked file and the blob durable before a rename
		// publishes them: a power cut never leaves a visible snapshot or
		// blob with missing or torn content.
		if err := sy.wait(ctx); err != nil {
			return fmt.Errorf("layer %s: sync: %w", l.Digest, err)
		}
		if bw != nil {
			err := bw.publish()
			bw = nil
			if err != nil {
				return err
			}
		}
		if tmp != "" {
			if err := os.Rename(tmp, s.snapshotPath(l.ChainID)); err != nil {
				return err
			}
			tmp = ""
			if err := syncDir(filepath.Join(s.root, snapshotsDir)); err != nil {
				return err
			}
		}
		progress(Progress{Digest: l.Digest, Phase: PhaseDone, Current: l.Size, Total: l.Size})
		return nil
	}, nil
}

// progressReader counts bytes and reports at most every 100 ms.
type progressReader struct {
	r      io.Reader
	n      int64
	last   time.Time
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.report(p.n)
	}
	return n, err
}
