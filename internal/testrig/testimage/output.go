package testimage

import (
	"archive/tar"
	"bufio"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Push writes img to the registry at ref ("127.0.0.1:5000/repo:tag"; loopback
// registries are plain HTTP unless opts say otherwise, e.g. a registry
// fixture's RemoteOptions) and returns the manifest digest, so tests can pull
// it back by digest as well as by tag.
func Push(t testing.TB, img v1.Image, ref string, opts ...remote.Option) v1.Hash {
	t.Helper()
	r := parseRef(t, ref)
	opts = append([]remote.Option{remote.WithContext(t.Context())}, opts...)
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("testimage: pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("testimage: image digest: %v", err)
	}
	return d
}

// PushIndex writes idx and every image it lists to the registry at ref and
// returns the index digest.
func PushIndex(t testing.TB, idx v1.ImageIndex, ref string, opts ...remote.Option) v1.Hash {
	t.Helper()
	r := parseRef(t, ref)
	opts = append([]remote.Option{remote.WithContext(t.Context())}, opts...)
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		t.Fatalf("testimage: pushing index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("testimage: index digest: %v", err)
	}
	return d
}

// parseRef parses ref or fails the test.
func parseRef(t testing.TB, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatalf("testimage: reference %q: %v", ref, err)
	}
	return r
}

// Annotations recording an image's name in an OCI layout's index.json.
const (
	// AnnotationRefName holds the tag (or digest) part of the reference.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName holds the full reference, as containerd and
	// `docker save` of OCI layouts write it.
	AnnotationImageName = "io.containerd.image.name"
)

// LayoutEntry is one manifest of an OCI image layout: exactly one of Image
// and Index, and the reference it is stored under.
type LayoutEntry struct {
	// Ref, when set, is recorded verbatim as AnnotationImageName and its tag
	// (or digest) as AnnotationRefName.
	Ref   string
	Image v1.Image
	Index v1.ImageIndex
}

// WriteLayout writes an OCI image layout at dir (created if missing, which
// should be empty) holding every entry's blobs, with index.json listing the
// entries in order, and returns it.
func WriteLayout(t testing.TB, dir string, entries ...LayoutEntry) layout.Path {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatalf("testimage: creating layout %s: %v", dir, err)
	}
	for i, e := range entries {
		var opts []layout.Option
		if e.Ref != "" {
			r := parseRef(t, e.Ref)
			opts = append(opts, layout.WithAnnotations(map[string]string{
				AnnotationImageName: e.Ref,
				AnnotationRefName:   r.Identifier(),
			}))
		}
		switch {
		case e.Image != nil && e.Index == nil:
			err = p.AppendImage(e.Image, opts...)
		case e.Index != nil && e.Image == nil:
			err = p.AppendIndex(e.Index, opts...)
		default:
			t.Fatalf("testimage: layout entry %d must set exactly one of Image and Index", i)
		}
		if err != nil {
			t.Fatalf("testimage: writing layout entry %d (%s): %v", i, e.Ref, err)
		}
	}
	return p
}

// WriteOCIArchive writes a tar of an OCI image layout holding entries (the
// "oci-archive" transport of skopeo and podman, and what `docker save`
// writes since Docker 25 minus manifest.json) to path, which must not exist.
func WriteOCIArchive(t testing.TB, path string, entries ...LayoutEntry) {
	t.Helper()
	dir := t.TempDir()
	WriteLayout(t, dir, entries...)
	if err := tarDir(dir, path); err != nil {
		t.Fatalf("testimage: writing %s: %v", path, err)
	}
}

// tarDir writes the tree under dir, in lexical order, as a tar at path with
// normalized owners, modes and times.
func tarDir(dir, path string) (err error) {
	f, err := createFile(path)
	if err != nil {
		return err
	}
	defer closeInto(f, &err)
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: Epoch, Mode: 0o644, Typeflag: tar.TypeReg}
		if d.IsDir() {
			hdr.Name += "/"
			hdr.Mode = 0o755
			hdr.Typeflag = tar.TypeDir
			return tw.WriteHeader(hdr)
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil {
			return err
		}
		hdr.Size = st.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteDockerArchive writes img tagged ref in `docker save` format
// (manifest.json, config and layer blobs; ggcr's tarball.Write) to path,
// which must not exist. Layer blobs are written as they are: Docker itself
// loads gzip and uncompressed layers only.
func WriteDockerArchive(t testing.TB, path, ref string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatalf("testimage: tag %q: %v", ref, err)
	}
	f, err := createFile(path)
	if err != nil {
		t.Fatalf("testimage: %v", err)
	}
	bw := bufio.NewWriter(f)
	err = tarball.Write(tag, img, bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("testimage: writing %s: %v", path, err)
	}
}
