package testimage

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// checkLayout reads the layout at dir back with ggcr and checks it lists an
// image and an index under their names with the digests written, and that
// every blob is intact.
func checkLayout(t *testing.T, dir string, img v1.Image, idx v1.ImageIndex) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("index.json lists %d manifests", len(im.Manifests))
	}
	imgD, _ := img.Digest()
	idxD, _ := idx.Digest()
	want := []struct {
		digest  v1.Hash
		mt      types.MediaType
		ref, id string
	}{
		{imgD, types.OCIManifestSchema1, "example.com/berth/busybox:v1", "v1"},
		{idxD, types.OCIImageIndex, "example.com/berth/multi:v2", "v2"},
	}
	for i, w := range want {
		d := im.Manifests[i]
		if d.Digest != w.digest || d.MediaType != w.mt ||
			d.Annotations[AnnotationImageName] != w.ref || d.Annotations[AnnotationRefName] != w.id {
			t.Errorf("manifest %d: %+v, want %s %s %s", i, d, w.digest, w.mt, w.ref)
		}
	}
	got, err := root.Image(imgD)
	if err != nil {
		t.Fatal(err)
	}
	checkBlobs(t, got)
	gotIdx, err := root.ImageIndex(idxD)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := gotIdx.Digest(); d != idxD {
		t.Errorf("index digest %s, wrote %s", d, idxD)
	}
	children, _ := idx.IndexManifest()
	for _, c := range children.Manifests {
		child, err := gotIdx.Image(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkBlobs(t, child)
	}
}

// TestLayoutAndArchives proves WriteLayout and WriteOCIArchive produce OCI
// layouts ggcr's layout package reads back with identical digests and
// names, and WriteDockerArchive a `docker save` tar that tarball.ImageFromPath
// reads back with identical config and layer digests (and, for a Docker
// format image, an identical manifest digest).
func TestLayoutAndArchives(t *testing.T) {
	img := Busybox(t)
	idx := Index(t, []string{"linux/amd64", "linux/arm64"})
	entries := []LayoutEntry{
		{Ref: "example.com/berth/busybox:v1", Image: img},
		{Ref: "example.com/berth/multi:v2", Index: idx},
	}

	t.Run("layout", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		WriteLayout(t, dir, entries...)
		checkLayout(t, dir, img, idx)
	})

	t.Run("oci-archive", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "image.tar")
		WriteOCIArchive(t, archive, entries...)
		dir := t.TempDir()
		names := untar(t, archive, dir)
		for _, n := range []string{"oci-layout", "index.json", "blobs/", "blobs/sha256/"} {
			if !names[n] {
				t.Errorf("archive lacks %s: %v", n, names)
			}
		}
		checkLayout(t, dir, img, idx)
	})

	t.Run("layout entry misuse", func(t *testing.T) {
		expectFatal(t, func(tb testing.TB) {
			WriteLayout(tb, t.TempDir(), LayoutEntry{Ref: "x:1", Image: img, Index: idx})
		})
	})

	for _, f := range allFormats {
		t.Run("docker-archive/"+f.String(), func(t *testing.T) {
			src := Busybox(t, WithFormat(f))
			archive := filepath.Join(t.TempDir(), "image.tar")
			const refStr = "example.com/berth/busybox:v1"
			WriteDockerArchive(t, archive, refStr, src)
			tag, err := name.NewTag(refStr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tarball.ImageFromPath(archive, &tag)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, got, Docker, Gzip)
			wantCfg, _ := src.ConfigName()
			if c, _ := got.ConfigName(); c != wantCfg {
				t.Errorf("config digest %s, wrote %s", c, wantCfg)
			}
			wantM, _ := src.Manifest()
			gotM, _ := got.Manifest()
			for i := range wantM.Layers {
				if gotM.Layers[i].Digest != wantM.Layers[i].Digest {
					t.Errorf("layer %d digest %s, wrote %s", i, gotM.Layers[i].Digest, wantM.Layers[i].Digest)
				}
			}
			if f == Docker {
				dw, _ := src.Digest()
				if dg, _ := got.Digest(); dg != dw {
					t.Errorf("manifest digest %s, wrote %s", dg, dw)
				}
			}
		})
	}
}

// untar extracts a flat archive of regular files and directories into dir
// and returns the names it held.
func untar(t *testing.T, archive, dir string) map[string]bool {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
		if strings.Contains(h.Name, "..") || filepath.IsAbs(h.Name) {
			t.Fatalf("unsafe name %q", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var out *os.File
			if out, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
				_, err = io.Copy(out, tr)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
			}
		default:
			t.Fatalf("unexpected entry %q type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
