// Command demoimage writes the demo's image as an OCI layout directory:
// busybox-static with its applets, a passwd/group, and a web page served by
// busybox httpd on port 8080. It needs /bin/busybox (Debian busybox-static)
// and nothing from the network.
//
//	go run ./hack/demoimage DIR
package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const imageName = "berth.local/demo:latest"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: demoimage DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "demoimage:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("%w (install busybox-static)", err)
	}
	list, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	dirEntry := func(name string, mode int64) {
		tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: mtime})
	}
	file := func(name string, mode int64, body []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body)), ModTime: mtime})
		tw.Write(body)
	}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "www", "root"} {
		dirEntry(d, 0o755)
	}
	dirEntry("tmp", 0o1777)
	file("bin/busybox", 0o755, bb)
	for _, applet := range strings.Fields(string(list)) {
		if applet == "bin/busybox" || !strings.Contains(applet, "/") {
			continue
		}
		tw.WriteHeader(&tar.Header{Name: applet, Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox", Mode: 0o777, ModTime: mtime})
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nwww:x:33:\nnogroup:x:65534:\n"))
	file("www/index.html", 0o644, []byte("<h1>Hello from berth</h1>\n<p>Served by busybox httpd in a berth task.</p>\n"))
	if err := tw.Close(); err != nil {
		return err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch()
	cf.Created = v1.Time{Time: mtime}
	cf.Config = v1.Config{
		Env:          []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:          []string{"httpd", "-f", "-v", "-p", "8080", "-h", "/www"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Labels:       map[string]string{"org.opencontainers.image.title": "berth demo"},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": imageName,
		"io.containerd.image.name":          imageName,
	}))
}
