package testimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testrig/testapp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	testapp.Cleanup()
	os.Exit(code)
}

var (
	allCompressions = []Compression{Gzip, Zstd, Uncompressed}
	allFormats      = []Format{OCI, Docker}
)

// encodings lists every valid compression/format pair.
func encodings() [][2]int {
	var out [][2]int
	for _, f := range allFormats {
		for _, c := range allCompressions {
			if _, err := LayerMediaType(c, f); err == nil {
				out = append(out, [2]int{int(c), int(f)})
			}
		}
	}
	return out
}

func sha(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func readAll(t testing.TB, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decompress undoes c by itself, independently of ggcr's readers.
func decompress(t testing.TB, c Compression, b []byte) []byte {
	t.Helper()
	switch c {
	case Gzip:
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Fatalf("gzip layer lacks the gzip magic: % x", b[:min(4, len(b))])
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case Zstd:
		if !bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			t.Fatalf("zstd layer lacks the zstd magic: % x", b[:min(4, len(b))])
		}
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return b
}

func manifestTypes(f Format) (manifest, config types.MediaType) {
	if f == Docker {
		return types.DockerManifestSchema2, types.DockerConfigJSON
	}
	return types.OCIManifestSchema1, types.OCIConfigJSON
}

// checkImage validates img from scratch: manifest digest and media types,
// config digest, and for every layer its media type, compressed digest and
// size, compression (by magic), and DiffID against the config and against
// both the Uncompressed stream and an independent decompression.
func checkImage(t testing.TB, img v1.Image, f Format, c Compression) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d != sha(raw) {
		t.Errorf("Digest() = %s, sha256(manifest) = %s", d, sha(raw))
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	wantM, wantC := manifestTypes(f)
	if m.MediaType != wantM || m.Config.MediaType != wantC {
		t.Errorf("media types manifest %q config %q, want %q %q", m.MediaType, m.Config.MediaType, wantM, wantC)
	}
	if m.SchemaVersion != 2 {
		t.Errorf("schemaVersion %d", m.SchemaVersion)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != sha(rawCfg) || m.Config.Size != int64(len(rawCfg)) {
		t.Errorf("config descriptor %s/%d, blob %s/%d", m.Config.Digest, m.Config.Size, sha(rawCfg), len(rawCfg))
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(rawCfg, &cf); err != nil {
		t.Fatal(err)
	}
	if cf.RootFS.Type != "layers" || len(cf.RootFS.DiffIDs) != len(m.Layers) {
		t.Fatalf("rootfs %+v for %d layers", cf.RootFS, len(m.Layers))
	}
	if len(cf.History) != len(m.Layers) {
		t.Errorf("%d history entries for %d layers", len(cf.History), len(m.Layers))
	}
	wantL, err := LayerMediaType(c, f)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		desc := m.Layers[i]
		if desc.MediaType != wantL {
			t.Errorf("layer %d media type %q, want %q", i, desc.MediaType, wantL)
		}
		comp := readAll(t, l.Compressed)
		if desc.Digest != sha(comp) || desc.Size != int64(len(comp)) {
			t.Errorf("layer %d descriptor %s/%d, blob %s/%d", i, desc.Digest, desc.Size, sha(comp), len(comp))
		}
		plain := decompress(t, c, comp)
		if c == Uncompressed && (bytes.HasPrefix(comp, []byte{0x1f, 0x8b}) || bytes.HasPrefix(comp, []byte{0x28, 0xb5})) {
			t.Errorf("uncompressed layer %d looks compressed", i)
		}
		diff, _ := l.DiffID()
		if cf.RootFS.DiffIDs[i] != sha(plain) || diff != sha(plain) {
			t.Errorf("layer %d: config DiffID %s, layer DiffID %s, sha256(decompressed blob) %s", i, cf.RootFS.DiffIDs[i], diff, sha(plain))
		}
		if u := readAll(t, l.Uncompressed); !bytes.Equal(u, plain) {
			t.Errorf("layer %d: Uncompressed() differs from the decompressed blob", i)
		}
	}
}

// checkBlobs is the cheap form of checkImage for images read back from
// storage whose digest equals one checkImage validated: manifest, config
// and every compressed blob hash to the digests that name them.
func checkBlobs(t testing.TB, img v1.Image) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d != sha(raw) {
		t.Errorf("Digest() = %s, sha256(manifest) = %s", d, sha(raw))
	}
	if cfg, err := img.RawConfigFile(); err != nil || sha(cfg) != m.Config.Digest {
		t.Errorf("config blob %s (%v), manifest says %s", sha(cfg), err, m.Config.Digest)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != len(m.Layers) {
		t.Fatalf("%d layers, manifest lists %d", len(layers), len(m.Layers))
	}
	for i, l := range layers {
		if b := readAll(t, l.Compressed); sha(b) != m.Layers[i].Digest || int64(len(b)) != m.Layers[i].Size {
			t.Errorf("layer %d blob %s/%d, manifest says %s/%d", i, sha(b), len(b), m.Layers[i].Digest, m.Layers[i].Size)
		}
	}
}

// layerEntries reads every layer of img back with Entries.
func layerEntries(t testing.TB, img v1.Image) [][]Entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]Entry, len(layers))
	for i, l := range layers {
		out[i] = Entries(t, l)
	}
	return out
}

// --- the test oracle: applying layers to an in-memory tree -----------------

// applyLayers merges layers, bottom first, with OCI whiteout semantics into
// a Tree. It is written from the image spec, independently of Layered's
// hand-written tree, and is strict: it rejects entries whose parent is not
// an existing directory and hard links to anything but a regular file
// written earlier in the same layer.
func applyLayers(layers [][]Entry) (Tree, error) {
	tree := Tree{}
	for i, es := range layers {
		if err := applyLayer(tree, es); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return tree, nil
}

func applyLayer(tree Tree, es []Entry) error {
	// Whiteouts act on the lower layers only, wherever they sit in this one.
	for _, e := range es {
		p := strings.TrimSuffix(e.Name, "/")
		dir, base := path.Dir(p), path.Base(p)
		switch {
		case base == OpaqueWhiteout:
			removeBelow(tree, dir)
		case strings.HasPrefix(base, WhiteoutPrefix):
			victim := path.Join(dir, strings.TrimPrefix(base, WhiteoutPrefix))
			if _, ok := tree[victim]; !ok {
				return fmt.Errorf("whiteout %s: nothing to delete", e.Name)
			}
			removeBelow(tree, victim)
			delete(tree, victim)
		}
	}
	seen := map[string]bool{}
	for _, e := range es {
		p := strings.TrimSuffix(e.Name, "/")
		if p != path.Clean(p) || path.IsAbs(p) || strings.HasPrefix(p, "..") {
			return fmt.Errorf("unclean name %q", e.Name)
		}
		if strings.HasPrefix(path.Base(p), WhiteoutPrefix) {
			continue
		}
		if dir := path.Dir(p); dir != "." {
			if parent, ok := tree[dir]; !ok || parent.Type != tar.TypeDir {
				return fmt.Errorf("%s: parent is not a directory", e.Name)
			}
		}
		old, exists := tree[p]
		if exists && (old.Type == tar.TypeDir) != (e.Type == tar.TypeDir) {
			removeBelow(tree, p)
			delete(tree, p)
		}
		var n Node
		switch e.Type {
		case tar.TypeLink:
			target := strings.TrimSuffix(e.Linkname, "/")
			tn, ok := tree[target]
			if !ok || tn.Type != tar.TypeReg || !seen[target] {
				return fmt.Errorf("hard link %s -> %s: not a regular file of this layer", e.Name, e.Linkname)
			}
			n = tn
			n.HardLinkTo = target
			if tn.HardLinkTo != "" {
				n.HardLinkTo = tn.HardLinkTo
			}
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			n = Node{
				Type: e.Type, Mode: e.Mode & 0o7777, UID: e.UID, GID: e.GID, ModTime: e.ModTime,
				Devmajor: e.Devmajor, Devminor: e.Devminor, Xattrs: e.Xattrs,
			}
			switch e.Type {
			case tar.TypeReg:
				n.Content = string(e.Content)
				if e.Size > MaxEntryContent {
					n.Content = "<large file " + e.Digest.String() + ">"
				}
			case tar.TypeSymlink:
				n.Linkname = e.Linkname
			}
		default:
			return fmt.Errorf("%s: unexpected type %q", e.Name, e.Type)
		}
		tree[p] = n
		seen[p] = true
	}
	return nil
}

// removeBelow deletes everything under dir ("." is the root), not dir itself.
func removeBelow(tree Tree, dir string) {
	prefix := dir + "/"
	for p := range tree {
		if dir == "." || strings.HasPrefix(p, prefix) {
			delete(tree, p)
		}
	}
}

// resolve follows symlinks in p within tree, as a chroot would, and returns
// the final path.
func resolve(tree Tree, p string) (string, error) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := ""
	for hops := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			if cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, part)
		n, ok := tree[next]
		if !ok {
			return "", fmt.Errorf("%s: %s does not exist", p, next)
		}
		if n.Type != tar.TypeSymlink {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many symlinks", p)
		}
		if strings.HasPrefix(n.Linkname, "/") {
			cur = ""
		}
		parts = append(strings.Split(n.Linkname, "/"), parts...)
	}
	return cur, nil
}

// diffTrees describes how got differs from want, or returns "".
func diffTrees(got, want Tree) string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("missing %s", p))
		case !nodesEqual(g, w):
			out = append(out, fmt.Sprintf("%s:\n\tgot  %+v\n\twant %+v", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, fmt.Sprintf("unexpected %s: %+v", p, got[p]))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func nodesEqual(a, b Node) bool {
	if !a.ModTime.Equal(b.ModTime) {
		return false
	}
	a.ModTime = b.ModTime
	if len(a.Xattrs) == 0 && len(b.Xattrs) == 0 {
		a.Xattrs, b.Xattrs = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// fileContent returns the full content of a regular file in layer.
func fileContent(t testing.TB, layer v1.Layer, name string) []byte {
	t.Helper()
	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not found in layer: %v", name, err)
		}
		if hdr.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// fatalTB records the first Fatal instead of failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// expectFatal runs fn and returns the message it failed with, failing the
// test if it did not.
func expectFatal(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	if ft.msg == "" {
		t.Fatal("expected a fatal error, got none")
	}
	return ft.msg
}
