//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/image"
	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testapp"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testimage.Cleanup()
	testapp.Cleanup()
	os.Exit(code)
}

// cli runs berth with a private state root and config dir.
type cli struct {
	t      *testing.T
	root   string
	config string
}

func newCLI(t *testing.T) *cli {
	testrig.RequireRoot(t)
	return &cli{t: t, root: t.TempDir(), config: t.TempDir()}
}

func (c *cli) run(stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCommand(&out, &errb)
	cmd.SetIn(strings.NewReader(stdin))
	code := executeCommand(context.Background(), cmd, append([]string{"--root", c.root, "--config-dir", c.config}, args...), &errb)
	return code, out.String(), errb.String()
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("berth %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

func (c *cli) fails(want string, args ...string) {
	c.t.Helper()
	code, _, errs := c.run("", args...)
	if code != exitBerth || !strings.Contains(errs, want) {
		c.t.Fatalf("berth %v: exit %d, stderr %q; want 125 and %q", args, code, errs, want)
	}
}

// TestCLIImages drives the image commands end to end against a TLS registry
// with htpasswd: login (checked against the registry), pull with the CA from
// registries.json, images, inspect, tag, rmi, save/load, prune, logout.
func TestCLIImages(t *testing.T) {
	c := newCLI(t)
	r := registry.Start(t, registry.WithTLS(), registry.WithBasicAuth("berth", "pw"))
	digest := testimage.Push(t, testimage.App(t), r.Ref("team/app:1"), r.RemoteOptions()...)
	conf := fmt.Sprintf(`{"registries": {%q: {"caFiles": [%q]}}}`, r.Host, r.CAPath)
	if err := os.WriteFile(filepath.Join(c.config, "registries.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	// Not logged in: a 401 with the registry's words, exit 125.
	c.fails("UNAUTHORIZED", "pull", "-q", r.Ref("team/app:1"))
	// A wrong password is refused before anything is saved.
	if code, _, errs := c.run("nope\n", "login", r.Host, "-u", "berth", "--password-stdin"); code != exitBerth || !strings.Contains(errs, "rejected") {
		t.Fatalf("login with a wrong password: %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(c.config, "auth.json")); err == nil {
		t.Fatal("a rejected login wrote auth.json")
	}
	if code, out, errs := c.run("pw\n", "login", r.Host, "-u", "berth", "--password-stdin"); code != 0 || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %d %q %q", code, out, errs)
	}
	if fi, err := os.Stat(filepath.Join(c.config, "auth.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("auth.json: %v, %v; want mode 0600", fi, err)
	}

	if out := c.ok("pull", "-q", r.Ref("team/app:1")); strings.TrimSpace(out) != digest.String() {
		t.Fatalf("pull -q printed %q, want the digest %s", out, digest)
	}
	out := c.ok("pull", r.Ref("team/app:1"))
	if !strings.Contains(out, "already present") || !strings.Contains(out, "Digest: "+digest.String()) {
		t.Fatalf("second pull output:\n%s", out)
	}

	out = c.ok("images")
	if !strings.Contains(out, r.Host+"/team/app") || !strings.Contains(out, "REPOSITORY") {
		t.Fatalf("images:\n%s", out)
	}
	var recs []image.Record
	if err := json.Unmarshal([]byte(c.ok("images", "--format", "json")), &recs); err != nil || len(recs) != 1 {
		t.Fatalf("images --format json: %v %+v", err, recs)
	}
	var insp []imageInspect
	if err := json.Unmarshal([]byte(c.ok("image", "inspect", recs[0].ID.Hex[:12])), &insp); err != nil || len(insp) != 1 || insp[0].Digest != digest {
		t.Fatalf("image inspect: %v %+v", err, insp)
	}

	c.ok("tag", r.Ref("team/app:1"), "local/app:v2")
	if out := c.ok("images", "-q"); strings.Count(out, "\n") != 2 {
		t.Fatalf("after tag, images -q:\n%s", out)
	}
	archive := filepath.Join(t.TempDir(), "app.tar")
	c.ok("save", "-o", archive, "local/app:v2")
	if out := c.ok("rmi", "local/app:v2", r.Ref("team/app:1")); !strings.Contains(out, "Untagged: local/app:v2") {
		t.Fatalf("rmi:\n%s", out)
	}
	c.fails("image not found", "rmi", "local/app:v2")
	if out := c.ok("image", "prune"); !strings.Contains(out, "Deleted") || strings.Contains(out, "Deleted 0 blobs") {
		t.Fatalf("prune after rmi freed nothing:\n%s", out)
	}
	if out := c.ok("load", "-q", "-i", archive); !strings.Contains(out, "Loaded image: local/app:v2") {
		t.Fatalf("load:\n%s", out)
	}
	if out := c.ok("image", "prune", "-a"); !strings.Contains(out, "Untagged: local/app:v2") {
		t.Fatalf("prune -a:\n%s", out)
	}
	for _, d := range []string{"blobs/sha256", "snapshots", "images"} {
		if ents, _ := os.ReadDir(filepath.Join(c.root, d)); len(ents) != 0 {
			t.Errorf("%s not empty after prune -a: %d entries", d, len(ents))
		}
	}

	c.ok("logout", r.Host)
	c.fails("not logged in", "logout", r.Host)
	c.fails("UNAUTHORIZED", "pull", "-q", r.Ref("team/app:1"))
}

// TestCLIMirror: the mirror that is down is skipped, the second serves;
// the origin (which does not resolve) is never needed.
func TestCLIMirror(t *testing.T) {
	c := newCLI(t)
	mirror := registry.Start(t)
	testimage.Push(t, testimage.Busybox(t), mirror.Ref("cache/team/bb:1"))
	conf := fmt.Sprintf(`{"registries": {"registry.berth.test": {"mirrors": ["127.0.0.1:1/x", "%s/cache"]}}}`, mirror.Host)
	os.WriteFile(filepath.Join(c.config, "registries.json"), []byte(conf), 0o600)
	out := c.ok("pull", "registry.berth.test/team/bb:1")
	if !strings.Contains(out, "registry.berth.test/team/bb:1") {
		t.Fatalf("pull through the mirror:\n%s", out)
	}
}

func TestCLIImageErrors(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"invalid image reference", []string{"pull", "UPPER/Case:x"}},
		{"invalid platform", []string{"pull", "--platform", "linux", "busybox"}},
		{"pull needs one image reference", []string{"pull"}},
		{"image not found", []string{"image", "inspect", "nothing:here"}},
		{"load needs -i FILE", []string{"load"}},
		{"save needs -o FILE", []string{"save", "x"}},
		{"login needs --password-stdin", []string{"login", "example.test", "-u", "x"}},
	} {
		c.fails(tc.want, tc.args...)
	}
	bad := filepath.Join(c.config, "registries.json")
	os.WriteFile(bad, []byte(`{"registries": {"x.io": {"mirrorz": []}}}`), 0o600)
	c.fails("mirrorz", "pull", "x.io/a:1")
}

// TestCLIAutoGC: with the state root on a small filesystem and a low high
// watermark in berth.json, a pull that crosses it removes the least
// recently used other image, never the one just pulled.
func TestCLIAutoGC(t *testing.T) {
	c := newCLI(t)
	if err := unix.Mount("tmpfs", c.root, "tmpfs", 0, "size=40m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(c.root, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(c.config, "berth.json"), []byte(`{"imageGC": {"highWatermarkPercent": 30, "lowWatermarkPercent": 20}}`), 0o600)
	r := registry.Start(t)
	// Each image: one layer of ~6 MiB random data (blob + snapshot ~12 MiB).
	testimage.Push(t, testimage.Random(t, 1, 6<<20, testimage.WithSeed(1)), r.Ref("a:1"))
	testimage.Push(t, testimage.Random(t, 1, 6<<20, testimage.WithSeed(2)), r.Ref("b:1"))

	c.ok("pull", "-q", r.Ref("a:1")) // ~30% used: at the watermark, nothing to do
	c.ok("pull", "-q", r.Ref("b:1")) // ~60%: a goes, b stays
	out := c.ok("images")
	if strings.Contains(out, r.Host+"/a") || !strings.Contains(out, r.Host+"/b") {
		t.Fatalf("after crossing the high watermark, images:\n%s", out)
	}

	os.WriteFile(filepath.Join(c.config, "berth.json"), []byte(`{"imageGC": {"highWatermarkPercent": 20, "lowWatermarkPercent": 30}}`), 0o600)
	c.fails("invalid image GC watermarks", "images")
	os.WriteFile(filepath.Join(c.config, "berth.json"), []byte(`{"imageGC": {"disabled": true}, "bogus": 1}`), 0o600)
	c.fails(`unknown field "bogus"`, "images")
}
