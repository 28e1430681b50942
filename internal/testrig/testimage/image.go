package testimage

import (
	"fmt"
	"maps"
	"os/exec"
	"path"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/testapp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and defaults shared by the images.
const (
	// BusyboxHost is the busybox-static binary copied into images.
	BusyboxHost = "/bin/busybox"
	// DefaultPath is the PATH every image's config sets.
	DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// AppPath is where [App] and [Index] put the test app.
	AppPath = "/usr/local/bin/testapp"
	// AppWorkDir is the working directory of [App].
	AppWorkDir = "/srv"
)

// The users and groups of [Busybox]'s /etc/passwd and /etc/group.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
		"app:x:1000:1000:app:/home/app:/bin/sh\n"
	Group = "root:x:0:\n" +
		"nogroup:x:65534:\n" +
		"app:x:1000:\n"
)

// Option adjusts an image built by [Busybox], [App], [Layered], [Index] or
// [Random].
type Option func(*options)

// options are the settings Options adjust.
type options struct {
	user   string
	env    []string
	labels map[string]string
	extra  []*LayerBuilder
	format Format
	comp   Compression
	seed   uint64
}

// makeOptions applies opts over the defaults: OCI, gzip, seed 1.
func makeOptions(opts []Option) *options {
	o := &options{format: OCI, comp: Gzip, seed: 1}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithUser sets the config's User ("app", "1000", "1000:1000", …).
func WithUser(user string) Option { return func(o *options) { o.user = user } }

// WithEnv adds "KEY=value" variables to the config, replacing earlier values
// of the same KEY (including PATH).
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// WithLabels adds config labels, replacing defaults with the same key.
func WithLabels(labels map[string]string) Option {
	return func(o *options) {
		if o.labels == nil {
			o.labels = map[string]string{}
		}
		maps.Copy(o.labels, labels)
	}
}

// WithLayers appends layers on top of the image's own, encoded with the
// image's compression and format.
func WithLayers(layers ...*LayerBuilder) Option {
	return func(o *options) { o.extra = append(o.extra, layers...) }
}

// WithFormat selects OCI (default) or Docker schema 2 media types for the
// manifest, config, layers and index.
func WithFormat(f Format) Option { return func(o *options) { o.format = f } }

// WithCompression selects the layer compression (default Gzip).
func WithCompression(c Compression) Option { return func(o *options) { o.comp = c } }

// WithSeed changes [Random]'s content (default seed 1); the same seed gives
// the same image.
func WithSeed(seed uint64) Option { return func(o *options) { o.seed = seed } }

// HostPlatform is linux on the architecture the tests run on.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// Busybox returns a one-layer image holding /bin/busybox (from the host's
// busybox-static) with every applet of `busybox --list-full` as an absolute
// symlink to /bin/busybox (as `busybox --install -s` and Alpine do),
// /etc/passwd and /etc/group ([Passwd], [Group]: root, nobody 65534 and app
// 1000:1000), /tmp (1777), /root (0700) and /home/app (owned by app). The
// config sets PATH, Cmd ["sh"] and the host platform.
func Busybox(t testing.TB, opts ...Option) v1.Image {
	t.Helper()
	o := makeOptions(opts)
	cfg := v1.Config{
		Env:    []string{DefaultPath},
		Cmd:    []string{"sh"},
		Labels: map[string]string{"dev.berth.testimage": "busybox"},
	}
	return o.image(t, HostPlatform(), cfg, busyboxLayer(t))
}

// App returns [Busybox] plus a layer holding the host build of the static
// test app at [AppPath] and the directory [AppWorkDir]. The config sets
// Entrypoint [AppPath], Cmd ["serve"], ExposedPorts 8080/tcp and 9090/udp,
// WorkingDir [AppWorkDir] and OCI title labels; User stays root unless
// [WithUser] says otherwise.
func App(t testing.TB, opts ...Option) v1.Image {
	t.Helper()
	o := makeOptions(opts)
	bin := testapp.Build(t)
	app := NewLayer().
		Dir("srv", 0o755).
		Dir("usr", 0o755).
		Dir("usr/local", 0o755).
		Dir("usr/local/bin", 0o755).
		HostFile(AppPath, bin, 0o755)
	return o.image(t, HostPlatform(), appConfig(),
		busyboxLayer(t), layer{b: app, createdBy: "testapp", key: "app " + bin})
}

// appConfig is the config of App and of Index's images.
func appConfig() v1.Config {
	return v1.Config{
		Env:          []string{DefaultPath},
		Entrypoint:   []string{AppPath},
		Cmd:          []string{"serve"},
		WorkingDir:   AppWorkDir,
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9090/udp": {}},
		Labels: map[string]string{
			"dev.berth.testimage":            "app",
			"org.opencontainers.image.title": "berth-testapp",
		},
	}
}

// busyboxLayer is Busybox's only layer, shared between tests.
func busyboxLayer(t testing.TB) layer {
	t.Helper()
	testrig.RequireFile(t, BusyboxHost, "busybox-static")
	return layer{b: busyboxBuilder(t), createdBy: "busybox", key: "busybox"}
}

// busyboxBuilder describes the busybox layer: directories, the binary,
// applet symlinks, passwd and group.
func busyboxBuilder(t testing.TB) *LayerBuilder {
	t.Helper()
	out, err := exec.Command(BusyboxHost, "--list-full").Output()
	if err != nil {
		t.Fatalf("testimage: %s --list-full: %v", BusyboxHost, err)
	}
	var applets []string
	dirs := map[string]bool{"bin": true, "etc": true, "home": true, "home/app": true, "root": true, "tmp": true}
	for _, a := range strings.Fields(string(out)) {
		if a == "bin/busybox" {
			continue
		}
		applets = append(applets, a)
		for d := path.Dir(a); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	slices.Sort(applets)
	b := NewLayer()
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		switch d {
		case "root":
			b.Dir(d, 0o700)
		case "tmp":
			b.Dir(d, 0o1777)
		case "home/app":
			b.Dir(d, 0o755, Owner(1000, 1000))
		default:
			b.Dir(d, 0o755)
		}
	}
	b.HostFile("bin/busybox", BusyboxHost, 0o755)
	for _, a := range applets {
		b.Symlink(a, BusyboxHost)
	}
	b.File("etc/group", []byte(Group), 0o644)
	b.File("etc/passwd", []byte(Passwd), 0o644)
	return b
}

// layer is one layer of an image being built, with its history line. A
// non-empty key identifies content that never changes within the process:
// the layer is then encoded once per encoding and shared (see Cleanup).
type layer struct {
	b         *LayerBuilder
	createdBy string
	key       string
}

// image encodes layers (then o.extra) and assembles the image for platform
// with cfg, adjusted by o.
func (o *options) image(t testing.TB, p v1.Platform, cfg v1.Config, layers ...layer) v1.Image {
	t.Helper()
	for i, b := range o.extra {
		layers = append(layers, layer{b: b, createdBy: fmt.Sprintf("extra layer %d", i+1)})
	}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		var encoded v1.Layer
		if l.key != "" {
			encoded = sharedLayer(t, l.key, l.b, o.comp, o.format)
		} else {
			encoded = l.b.Layer(t, o.comp, o.format)
		}
		adds = append(adds, mutate.Addendum{
			Layer:   encoded,
			History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "testimage: " + l.createdBy},
		})
	}
	return o.assemble(t, p, cfg, adds)
}

// assemble builds the image from already encoded layers.
func (o *options) assemble(t testing.TB, p v1.Platform, cfg v1.Config, adds []mutate.Addendum) v1.Image {
	t.Helper()
	if o.user != "" {
		cfg.User = o.user
	}
	cfg.Env = mergeEnv(cfg.Env, o.env)
	if len(o.labels) > 0 {
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		maps.Copy(cfg.Labels, o.labels)
	}
	cf := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		Created:      v1.Time{Time: Epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	}
	base := empty.Image
	if o.format == OCI {
		base = mutate.ConfigMediaType(mutate.MediaType(base, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	base, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatalf("testimage: setting config: %v", err)
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		t.Fatalf("testimage: appending layers: %v", err)
	}
	if _, err := img.Digest(); err != nil {
		t.Fatalf("testimage: computing image: %v", err)
	}
	return img
}

// mergeEnv appends add to base, a later KEY=value replacing an earlier one
// in place.
func mergeEnv(base, add []string) []string {
	out := slices.Clone(base)
	for _, kv := range add {
		key, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool {
			k, _, _ := strings.Cut(e, "=")
			return k == key
		})
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}
