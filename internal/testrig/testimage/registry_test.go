//go:build linux

package testimage

import (
	"testing"

	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func ref(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pullBoth pulls repo by tag and by digest, checks both give the pushed
// digest, and returns the by-digest image.
func pullBoth(t *testing.T, reg *registry.Registry, repo string, want v1.Hash) v1.Image {
	t.Helper()
	var img v1.Image
	for _, s := range []string{reg.Ref(repo + ":v1"), reg.Ref(repo + "@" + want.String())} {
		var err error
		img, err = remote.Image(ref(t, s), reg.RemoteOptions()...)
		if err != nil {
			t.Fatalf("pull %s: %v", s, err)
		}
		if got, err := img.Digest(); err != nil || got != want {
			t.Fatalf("pull %s: digest %s (%v), pushed %s", s, got, err, want)
		}
	}
	return img
}

// TestRegistryRoundTrip pushes every constructor's image to the real
// registry fixture (docker-registry, TLS and basic auth) and pulls it back:
// by tag and by digest the digest is the one pushed and every blob is intact; the Layered image's layers hold,
// entry by entry, exactly the whiteout, opaque, link, device, xattr and
// setuid entries built, and still merge into the expected Tree, in gzip,
// zstd and uncompressed; an index pulled back selects the right image per
// platform.
func TestRegistryRoundTrip(t *testing.T) {
	reg := registry.Start(t, registry.WithTLS(), registry.WithBasicAuth("berth", "s3cret"))
	opts := reg.RemoteOptions()

	t.Run("busybox", func(t *testing.T) {
		img := Busybox(t)
		d := Push(t, img, reg.Ref("busybox:v1"), opts...)
		checkBlobs(t, pullBoth(t, reg, "busybox", d))
	})
	t.Run("app/docker", func(t *testing.T) {
		img := App(t, WithFormat(Docker))
		d := Push(t, img, reg.Ref("app:v1"), opts...)
		pulled := pullBoth(t, reg, "app", d)
		checkBlobs(t, pulled)
		want, _ := img.RawConfigFile()
		got, _ := pulled.RawConfigFile()
		if string(got) != string(want) {
			t.Errorf("config changed:\n%s\n%s", got, want)
		}
	})

	for _, enc := range encodings() {
		c, f := Compression(enc[0]), Format(enc[1])
		t.Run("layered/"+c.String()+"/"+f.String(), func(t *testing.T) {
			img, tree := Layered(t, WithCompression(c), WithFormat(f))
			repo := "layered-" + c.String() + "-" + f.String()
			d := Push(t, img, reg.Ref(repo+":v1"), opts...)
			pulled := pullBoth(t, reg, repo, d)
			checkImage(t, pulled, f, c)

			built, got := layerEntries(t, img), layerEntries(t, pulled)
			if len(got) != len(built) {
				t.Fatalf("%d layers pulled, %d built", len(got), len(built))
			}
			for i := range built {
				compareEntries(t, got[i], built[i])
			}
			merged, err := applyLayers(got)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffTrees(merged, tree); d != "" {
				t.Errorf("pulled layers merge differently:\n%s", d)
			}
		})
	}

	for _, f := range allFormats {
		t.Run("index/"+f.String(), func(t *testing.T) {
			idx := Index(t, nil, WithFormat(f))
			repo := "multi-" + f.String()
			d := PushIndex(t, idx, reg.Ref(repo+":v1"), opts...)
			for _, s := range []string{reg.Ref(repo + ":v1"), reg.Ref(repo + "@" + d.String())} {
				pulled, err := remote.Index(ref(t, s), opts...)
				if err != nil {
					t.Fatalf("pull %s: %v", s, err)
				}
				if got, _ := pulled.Digest(); got != d {
					t.Fatalf("pull %s: digest %s, pushed %s", s, got, d)
				}
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, desc := range im.Manifests {
				p := *desc.Platform
				img, err := remote.Image(ref(t, reg.Ref(repo+":v1")), append(opts, remote.WithPlatform(p))...)
				if err != nil {
					t.Fatalf("pull for %s: %v", p, err)
				}
				if got, _ := img.Digest(); got != desc.Digest {
					t.Errorf("%s selected %s, want %s", p, got, desc.Digest)
				}
				checkBlobs(t, img)
				layers, err := img.Layers()
				if err != nil {
					t.Fatal(err)
				}
				if got := string(fileContent(t, layers[len(layers)-1], "etc/platform")); got != p.String()+"\n" {
					t.Errorf("%s: /etc/platform says %q", p, got)
				}
			}
		})
	}
}
