package testimage

import (
	"testing"

	"github.com/berth-dev/berth/internal/testrig/testapp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultPlatforms are the platforms [Index] builds when given none.
var DefaultPlatforms = []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}

// PlatformFile is the marker file in every [Index] image; it holds the
// image's platform (v1.Platform.String, e.g. "linux/arm/v7") and a newline.
const PlatformFile = "/etc/platform"

// Index returns a multi-platform index (OCI image index, or Docker manifest
// list with [WithFormat](Docker)) with one image per platform ("os/arch" or
// "os/arch/variant"; nil means [DefaultPlatforms]), in the order given. Each
// image holds the test app built for its architecture at [AppPath], the
// marker [PlatformFile] and the [App] config; the host platform's image also
// starts with the Busybox layer (busybox-static is only at hand for the
// host). Index descriptors carry the platforms.
func Index(t testing.TB, platforms []string, opts ...Option) v1.ImageIndex {
	t.Helper()
	if len(platforms) == 0 {
		platforms = DefaultPlatforms
	}
	o := makeOptions(opts)
	var idx v1.ImageIndex = empty.Index
	if o.format == Docker {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	host := HostPlatform()
	for _, s := range platforms {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			t.Fatalf("testimage: platform %q: %v", s, err)
		}
		goarch := p.Architecture
		if p.Variant != "" {
			goarch += "/" + p.Variant
		}
		bin := testapp.BuildFor(t, goarch)
		app := NewLayer().
			Dir("etc", 0o755).
			File(PlatformFile, []byte(p.String()+"\n"), 0o644).
			Dir("srv", 0o755).
			Dir("usr", 0o755).
			Dir("usr/local", 0o755).
			Dir("usr/local/bin", 0o755).
			HostFile(AppPath, bin, 0o755)
		var layers []layer
		if p.OS == host.OS && p.Architecture == host.Architecture {
			layers = append(layers, busyboxLayer(t))
		}
		layers = append(layers, layer{b: app, createdBy: "testapp " + p.String(), key: "index app " + p.String() + " " + bin})
		cfg := appConfig()
		cfg.Labels["dev.berth.testimage.platform"] = p.String()
		img := o.image(t, *p, cfg, layers...)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: p},
		})
	}
	if _, err := idx.Digest(); err != nil {
		t.Fatalf("testimage: computing index: %v", err)
	}
	return idx
}
