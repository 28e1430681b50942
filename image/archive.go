package image

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations that name an image inside an OCI layout.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
)

// LoadOptions configure Load.
type LoadOptions struct {
	// Name names the image when the archive holds one image and no name.
	Name string
	// Platform picks from a multi-platform index; nil means the host's.
	Platform *v1.Platform
	// Progress, if set, receives per-layer updates.
	Progress func(Progress)
}

// Load imports the images of an OCI layout directory, an OCI archive (a tar
// of such a directory) or a `docker save` archive: the air-gapped path.
// Content is verified as for a pull.
func (s *Store) Load(ctx context.Context, path string, o LoadOptions) ([]*Record, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	popts := PullOptions{Platform: o.Platform, Progress: o.Progress}
	if fi.IsDir() {
		return s.loadLayout(ctx, path, o, popts)
	}
	kind, err := sniffArchive(path)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "oci":
		// Not under blobs/: prune would take it for a killed writer's file.
		if err := os.MkdirAll(filepath.Join(s.root, "tmp"), 0o700); err != nil {
			return nil, err
		}
		tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "load-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := extractLayout(path, tmp); err != nil {
			return nil, err
		}
		return s.loadLayout(ctx, tmp, o, popts)
	default:
		return s.loadDocker(ctx, path, o, popts)
	}
}

// sniffArchive tells an OCI archive ("oci") from a docker save archive
// ("docker") by the entries at its top.
func sniffArchive(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	sawManifest := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("load %s: not a tar archive of images: %w", path, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "oci-layout":
			return "oci", nil
		case "manifest.json":
			sawManifest = true
		}
	}
	if sawManifest {
		return "docker", nil
	}
	return "", fmt.Errorf("load %s: neither an OCI archive (no oci-layout) nor a docker save archive (no manifest.json)", path)
}

// extractLayout unpacks an OCI archive's layout files into dir. Only the
// layout's own names are accepted: oci-layout, index.json and
// blobs/<alg>/<hex>.
func extractLayout(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load %s: %w", path, err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return fmt.Errorf("load %s: unexpected entry %q of type %c in an OCI archive", path, h.Name, h.Typeflag)
		}
		parts := strings.Split(n, "/")
		ok := n == "oci-layout" || n == "index.json" ||
			(len(parts) == 3 && parts[0] == "blobs" && parts[1] == "sha256" && isSHA256(v1.Hash{Algorithm: "sha256", Hex: parts[2]}))
		if !ok {
			continue // not part of the layout (e.g. manifest.json of docker's dual format)
		}
		dst := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("load %s: %s: %w", path, n, err)
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("load %s: %s: %w", path, n, err)
		}
	}
}

func (s *Store) loadLayout(ctx context.Context, dir string, o LoadOptions, popts PullOptions) ([]*Record, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("load %s: index.json: %w", dir, err)
	}
	want := HostPlatform()
	if o.Platform != nil {
		want = *o.Platform
	}
	var out []*Record
	for _, d := range im.Manifests {
		refName := d.Annotations[annotationContainerName]
		if rn := d.Annotations[annotationRefName]; refName == "" && strings.Contains(rn, "/") {
			// The OCI spec lets ref.name be a bare tag ("1.0"); only a
			// full reference names an image on its own.
			refName = rn
		}
		if o.Name != "" && len(im.Manifests) == 1 {
			refName = o.Name
		}
		if refName == "" {
			return nil, fmt.Errorf("load %s: image %s has no name (annotation %s); give one with --name", dir, d.Digest, annotationRefName)
		}
		ref, err := ParseReference(refName)
		if err != nil {
			return nil, fmt.Errorf("load %s: image %s: name %q is not a full reference: %w", dir, d.Digest, refName, err)
		}
		var img v1.Image
		var indexDigest *v1.Hash
		var indexRaw []byte
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", dir, err)
			}
			cim, err := child.IndexManifest()
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", dir, err)
			}
			for _, m := range cim.Manifests {
				if m.MediaType.IsImage() && platformMatches(m.Platform, want) {
					if img, err = child.Image(m.Digest); err != nil {
						return nil, fmt.Errorf("load %s: %w", dir, err)
					}
					break
				}
			}
			if img == nil {
				return nil, fmt.Errorf("%w: %s in %s has no image for %s", ErrNoMatchingPlatform, refName, dir, platformString(want))
			}
			dd := d.Digest
			indexDigest = &dd
			if indexRaw, err = child.RawManifest(); err != nil {
				return nil, err
			}
		case d.MediaType.IsImage():
			if img, err = idx.Image(d.Digest); err != nil {
				return nil, fmt.Errorf("load %s: %w", dir, err)
			}
		default:
			continue
		}
		rec, err := s.ingestImage(ctx, ref, img, indexDigest, indexRaw, popts, dir)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load %s: no images in index.json", dir)
	}
	return out, nil
}

func (s *Store) loadDocker(ctx context.Context, path string, o LoadOptions, popts PullOptions) ([]*Record, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("load %s: manifest.json: %w", path, err)
	}
	var out []*Record
	for _, d := range m {
		tags := d.RepoTags
		if len(tags) == 0 {
			if o.Name == "" || len(m) != 1 {
				return nil, fmt.Errorf("load %s: image %s has no RepoTags; give a name with --name", path, d.Config)
			}
			tags = []string{o.Name}
		}
		first, err := name.NewTag(tags[0])
		if err != nil {
			return nil, fmt.Errorf("load %s: tag %q: %w", path, tags[0], err)
		}
		img, err := tarball.Image(opener, &first)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
		for _, t := range tags {
			ref, err := ParseReference(t)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", path, err)
			}
			rec, err := s.ingestImage(ctx, ref, img, nil, nil, popts, path)
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
		}
	}
	return out, nil
}

// Save writes the named images as an OCI archive (a tar of an OCI image
// layout) to w. Manifest, config and layer digests are those the store
// holds, so a load of the archive gives the same digests back.
func (s *Store) Save(ctx context.Context, w io.Writer, refs []string) error {
	var recs []*Record
	for _, r := range refs {
		rec, err := s.Resolve(r)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	tw := tar.NewWriter(w)
	writeFile := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := writeFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	written := map[v1.Hash]bool{}
	writeBlob := func(h v1.Hash) error {
		if written[h] {
			return nil
		}
		written[h] = true
		f, err := os.Open(s.blobPath(h))
		if err != nil {
			return fmt.Errorf("save: blob %s: %w", h, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + h.Hex, Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err = io.Copy(tw, ctxReader{ctx, f})
		return err
	}
	for _, rec := range recs {
		raw, err := s.readBlob(rec.Digest)
		if err != nil {
			return err
		}
		if err := writeBlob(rec.ID); err != nil {
			return err
		}
		for _, l := range rec.Layers {
			if err := writeBlob(l.Digest); err != nil {
				return err
			}
		}
		if err := writeBlob(rec.Digest); err != nil {
			return err
		}
		p, _ := ParsePlatform(rec.Platform)
		index.Manifests = append(index.Manifests, v1.Descriptor{
			MediaType: types.MediaType(rec.MediaType),
			Digest:    rec.Digest,
			Size:      int64(len(raw)),
			Platform:  p,
			Annotations: map[string]string{
				annotationRefName:       rec.Name,
				annotationContainerName: rec.Name,
			},
		})
	}
	b, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := writeFile("index.json", b); err != nil {
		return err
	}
	return tw.Close()
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
