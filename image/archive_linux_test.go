//go:build linux

package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

// TestLoadFormats loads the same image from an OCI layout directory, an OCI
// archive and a docker save archive; digests and content match the original.
func TestLoadFormats(t *testing.T) {
	img, tree := testimage.Layered(t)
	want, _ := img.Digest()
	cfgName, _ := img.ConfigName()
	const ref = "registry.example/team/layered:1"
	dir := t.TempDir()

	cases := map[string]func() string{
		"layout": func() string {
			p := filepath.Join(dir, "layout")
			testimage.WriteLayout(t, p, testimage.LayoutEntry{Ref: ref, Image: img})
			return p
		},
		"oci-archive": func() string {
			p := filepath.Join(dir, "oci.tar")
			testimage.WriteOCIArchive(t, p, testimage.LayoutEntry{Ref: ref, Image: img})
			return p
		},
		"docker-archive": func() string {
			p := filepath.Join(dir, "docker.tar")
			testimage.WriteDockerArchive(t, p, ref, img)
			return p
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			recs, err := s.Load(context.Background(), mk(), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Name != ref {
				t.Fatalf("loaded %+v", recs)
			}
			rec := recs[0]
			if rec.ID != cfgName {
				t.Errorf("image ID %s, want %s", rec.ID, cfgName)
			}
			// docker save archives carry no manifest: ggcr rebuilds one.
			if name != "docker-archive" && rec.Digest != want {
				t.Errorf("manifest digest %s, want %s", rec.Digest, want)
			}
			testimage.CheckTree(t, mountMerged(t, s, rec), tree)
		})
	}
}

// TestSaveLoadRoundTrip pulls an image, saves it, loads the archive into a
// fresh store: same name, manifest digest, ID and layers.
func TestSaveLoadRoundTrip(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	testimage.Push(t, testimage.App(t), r.Ref("app:save"))
	testimage.Push(t, testimage.Busybox(t), r.Ref("bb:save"))
	ctx := context.Background()
	a, err := s.Pull(ctx, r.Ref("app:save"), pullOpts(r))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Pull(ctx, r.Ref("bb:save"), pullOpts(r))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "images.tar")
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, f, []string{r.Ref("app:save"), b.ID.Hex[:12]}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s2 := newStore(t)
	recs, err := s2.Load(ctx, out, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("loaded %d images, want 2", len(recs))
	}
	for i, orig := range []*Record{a, b} {
		got := recs[i]
		if got.Name != orig.Name || got.Digest != orig.Digest || got.ID != orig.ID || len(got.Layers) != len(orig.Layers) {
			t.Errorf("round trip changed the image:\n got %+v\nwant %+v", got, orig)
		}
		for j := range got.Layers {
			if got.Layers[j] != orig.Layers[j] {
				t.Errorf("layer %d: %+v, want %+v", j, got.Layers[j], orig.Layers[j])
			}
		}
	}
	if _, err := os.Stat(filepath.Join(mountMerged(t, s2, recs[0]), "usr/local/bin/testapp")); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	s := newStore(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not a tar at all, just text that is long enough to not be a header"), 0o600)
	emptyTar := filepath.Join(dir, "empty.tar")
	os.WriteFile(emptyTar, make([]byte, 1024), 0o600)
	unnamed := filepath.Join(dir, "unnamed")
	testimage.WriteLayout(t, unnamed, testimage.LayoutEntry{Image: testimage.Busybox(t)})

	for name, tc := range map[string]struct {
		path string
		want string
	}{
		"missing": {filepath.Join(dir, "nope.tar"), "no such file"},
		"garbage": {garbage, "not a tar archive"},
		"empty":   {emptyTar, "neither an OCI archive"},
		"unnamed": {unnamed, "has no name"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Load(context.Background(), tc.path, LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// --name fixes the unnamed case.
	recs, err := s.Load(context.Background(), unnamed, LoadOptions{Name: "local/bb:1"})
	if err != nil || recs[0].Name != "docker.io/local/bb:1" {
		t.Fatalf("Load with a name: %v %v", recs, err)
	}
	list, _ := s.List()
	if len(list) != 1 {
		t.Fatalf("failed loads left records: %+v", list)
	}
}
