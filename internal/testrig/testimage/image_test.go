package testimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testrig/testapp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestBusybox proves Busybox is a valid one-layer image whose merged tree has
// /bin/busybox identical to the host's, every applet resolving to it (so
// /bin/sh works), the documented users, groups and directories, and the
// documented config; and that builds are deterministic.
func TestBusybox(t *testing.T) {
	img := Busybox(t)
	checkImage(t, img, OCI, Gzip)

	les := layerEntries(t, img)
	if len(les) != 1 {
		t.Fatalf("%d layers, want 1", len(les))
	}
	tree, err := applyLayers(les)
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile(BusyboxHost)
	if err != nil {
		t.Fatal(err)
	}
	var bb *Entry
	for i, e := range les[0] {
		if e.Name == "bin/busybox" {
			bb = &les[0][i]
		}
	}
	if bb == nil || bb.Type != tar.TypeReg || bb.Mode != 0o755 || bb.Digest != sha(host) {
		t.Fatalf("bin/busybox entry %+v, want the host binary (%s) mode 0755", bb, sha(host))
	}

	out, err := exec.Command(BusyboxHost, "--list-full").Output()
	if err != nil {
		t.Fatal(err)
	}
	applets := strings.Fields(string(out))
	if len(applets) < 100 {
		t.Fatalf("only %d applets", len(applets))
	}
	for _, a := range append(applets, "bin/sh", "/bin/sh", "usr/bin/wget") {
		p, err := resolve(tree, a)
		if err != nil || p != "bin/busybox" {
			t.Errorf("%s resolves to %q, %v; want bin/busybox", a, p, err)
		}
	}
	if n := tree["bin/sh"]; n.Type != tar.TypeSymlink || n.Linkname != "/bin/busybox" {
		t.Errorf("bin/sh is %+v, want a symlink to /bin/busybox", n)
	}

	for p, want := range map[string]Node{
		"etc/passwd": {Type: tar.TypeReg, Mode: 0o644, Content: Passwd},
		"etc/group":  {Type: tar.TypeReg, Mode: 0o644, Content: Group},
		"tmp":        {Type: tar.TypeDir, Mode: 0o1777},
		"root":       {Type: tar.TypeDir, Mode: 0o700},
		"home/app":   {Type: tar.TypeDir, Mode: 0o755, UID: 1000, GID: 1000},
	} {
		want.ModTime = Epoch
		if got := tree[p]; !nodesEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", p, got, want)
		}
	}
	for _, line := range []string{"root:x:0:0:", "nobody:x:65534:65534:", "app:x:1000:1000:"} {
		if !strings.Contains(tree["etc/passwd"].Content, "\n"+line) && !strings.HasPrefix(tree["etc/passwd"].Content, line) {
			t.Errorf("/etc/passwd lacks %q", line)
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !reflect.DeepEqual(cf.Config.Cmd, []string{"sh"}) || !reflect.DeepEqual(cf.Config.Env, []string{DefaultPath}) {
		t.Errorf("config %+v", cf.Config)
	}

	d1, _ := img.Digest()
	d2, _ := Busybox(t).Digest()
	if d1 != d2 {
		t.Errorf("two builds: %s and %s", d1, d2)
	}
}

// TestApp proves App adds the host test app on top of Busybox with the
// documented config, that options (user, env, labels, extra layers, format,
// compression) land where they should, and that each combination is a
// valid image with the media types asked for.
func TestApp(t *testing.T) {
	appBin, err := os.ReadFile(testapp.Build(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f Format
		c Compression
	}{{OCI, Gzip}, {OCI, Zstd}, {Docker, Gzip}, {Docker, Uncompressed}} {
		t.Run(tc.f.String()+"/"+tc.c.String(), func(t *testing.T) {
			t.Parallel()
			extra := NewLayer().Dir("etc", 0o755).File("etc/extra", []byte("extra\n"), 0o644)
			img := App(t, WithFormat(tc.f), WithCompression(tc.c),
				WithUser("app"), WithEnv("FOO=bar", "PATH=/bin"),
				WithLabels(map[string]string{"k": "v"}), WithLayers(extra))
			checkImage(t, img, tc.f, tc.c)

			les := layerEntries(t, img)
			if len(les) != 3 {
				t.Fatalf("%d layers, want busybox, app, extra", len(les))
			}
			var found bool
			for _, e := range les[1] {
				if e.Name == "usr/local/bin/testapp" {
					found = true
					if e.Mode != 0o755 || e.Digest != sha(appBin) {
						t.Errorf("testapp entry mode %#o digest %s, want 0755 %s", e.Mode, e.Digest, sha(appBin))
					}
				}
			}
			if !found {
				t.Error("layer 2 lacks usr/local/bin/testapp")
			}
			if les[2][1].Name != "etc/extra" {
				t.Errorf("extra layer holds %+v", les[2])
			}

			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			wantPorts := map[string]struct{}{"8080/tcp": {}, "9090/udp": {}}
			if !reflect.DeepEqual(c.Entrypoint, []string{AppPath}) || !reflect.DeepEqual(c.Cmd, []string{"serve"}) ||
				!reflect.DeepEqual(c.ExposedPorts, wantPorts) || c.WorkingDir != AppWorkDir || c.User != "app" {
				t.Errorf("config %+v", c)
			}
			if !reflect.DeepEqual(c.Env, []string{"PATH=/bin", "FOO=bar"}) {
				t.Errorf("env %q", c.Env)
			}
			if c.Labels["k"] != "v" || c.Labels["org.opencontainers.image.title"] != "berth-testapp" {
				t.Errorf("labels %v", c.Labels)
			}
		})
	}
}

// TestIndex proves Index lists one image per platform with matching
// descriptor and config platforms, each holding the platform marker and the
// test app compiled for that architecture (checked in the ELF header), with
// busybox only in the host's image, in OCI and Docker flavours.
func TestIndex(t *testing.T) {
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM}
	for _, f := range allFormats {
		t.Run(f.String(), func(t *testing.T) {
			t.Parallel()
			idx := Index(t, nil, WithFormat(f))
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			wantIdx := types.OCIImageIndex
			if f == Docker {
				wantIdx = types.DockerManifestList
			}
			if mt, _ := idx.MediaType(); mt != wantIdx || im.MediaType != wantIdx {
				t.Errorf("index media type %q / %q, want %q", mt, im.MediaType, wantIdx)
			}
			raw, _ := idx.RawManifest()
			if d, _ := idx.Digest(); d != sha(raw) {
				t.Errorf("index digest %s, sha256(manifest) %s", d, sha(raw))
			}
			if len(im.Manifests) != len(DefaultPlatforms) {
				t.Fatalf("%d manifests", len(im.Manifests))
			}
			for i, desc := range im.Manifests {
				want, _ := v1.ParsePlatform(DefaultPlatforms[i])
				if desc.Platform == nil || !desc.Platform.Equals(*want) {
					t.Errorf("manifest %d platform %v, want %v", i, desc.Platform, want)
				}
				img, err := idx.Image(desc.Digest)
				if err != nil {
					t.Fatal(err)
				}
				checkImage(t, img, f, Gzip)
				cf, _ := img.ConfigFile()
				if cf.Platform() == nil || !cf.Platform().Equals(*want) {
					t.Errorf("config platform %v, want %v", cf.Platform(), want)
				}
				layers, _ := img.Layers()
				wantLayers := 1
				if want.Architecture == runtime.GOARCH {
					wantLayers = 2
				}
				if len(layers) != wantLayers {
					t.Fatalf("%s: %d layers, want %d", want, len(layers), wantLayers)
				}
				top := layers[len(layers)-1]
				if got := string(fileContent(t, top, "etc/platform")); got != want.String()+"\n" {
					t.Errorf("%s: /etc/platform %q", want, got)
				}
				ef, err := elf.NewFile(bytes.NewReader(fileContent(t, top, "usr/local/bin/testapp")))
				if err != nil {
					t.Fatal(err)
				}
				if ef.Machine != machines[want.Architecture] {
					t.Errorf("%s: testapp is for %v", want, ef.Machine)
				}
			}
		})
	}
}

// TestRandom proves Random builds valid images of the requested shape and
// size from a seed: same seed, same digest; another seed, another digest.
func TestRandom(t *testing.T) {
	const size = 1 << 20
	img := Random(t, 4, size, WithCompression(Zstd))
	checkImage(t, img, OCI, Zstd)
	les := layerEntries(t, img)
	if len(les) != 4 {
		t.Fatalf("%d layers", len(les))
	}
	for i, es := range les {
		var total int64
		counts := map[byte]int{}
		for _, e := range es {
			total += e.Size
			counts[e.Type]++
		}
		if total != size {
			t.Errorf("layer %d holds %d content bytes, want %d", i, total, size)
		}
		t.Logf("layer %d: %d entries %v", i, len(es), counts)
		switch i {
		case RandomSmallFiles:
			if counts[tar.TypeReg] < 200 {
				t.Errorf("small-files layer has %d files", counts[tar.TypeReg])
			}
		case RandomLinks:
			if counts[tar.TypeLink] == 0 || counts[tar.TypeSymlink] != counts[tar.TypeLink] {
				t.Errorf("links layer: %v", counts)
			}
		}
	}
	if _, err := applyLayers(les); err != nil {
		t.Errorf("layers do not apply: %v", err)
	}
	d1, _ := img.Digest()
	d2, _ := Random(t, 4, size, WithCompression(Zstd)).Digest()
	d3, _ := Random(t, 4, size, WithCompression(Zstd), WithSeed(2)).Digest()
	if d1 != d2 || d1 == d3 {
		t.Errorf("digests: seed 1 %s and %s, seed 2 %s", d1, d2, d3)
	}
}

// BenchmarkRandom200MB builds the ~200 MB 5-layer benchmark image (run with
// -bench Random -benchtime 1x).
func BenchmarkRandom200MB(b *testing.B) {
	for _, c := range allCompressions {
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(5 * 40 << 20)
			for b.Loop() {
				img := Random(b, 5, 40<<20, WithCompression(c))
				size, err := img.Size()
				if err != nil {
					b.Fatal(err)
				}
				m, _ := img.Manifest()
				var blobs int64
				for _, l := range m.Layers {
					blobs += l.Size
				}
				b.ReportMetric(float64(blobs)/(1<<20), "blobMB")
				_ = size
			}
		})
	}
}
