package testimage

import (
	"testing"
)

// TestLayeredTree proves Layered's hand-written merged Tree is what applying
// its layers with OCI whiteout semantics gives (the oracle in
// helpers_test.go), in every encoding, and that the image is valid.
func TestLayeredTree(t *testing.T) {
	for _, enc := range encodings() {
		c, f := Compression(enc[0]), Format(enc[1])
		t.Run(c.String()+"/"+f.String(), func(t *testing.T) {
			img, want := Layered(t, WithCompression(c), WithFormat(f))
			checkImage(t, img, f, c)
			les := layerEntries(t, img)
			if len(les) != 3 {
				t.Fatalf("%d layers, want 3", len(les))
			}
			got, err := applyLayers(les)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffTrees(got, want); d != "" {
				t.Errorf("merged tree differs from Layered's:\n%s", d)
			}
		})
	}
}

// TestOracle checks the oracle itself on the cases Layered relies on, so a
// bug in it cannot hide one in the Tree.
func TestOracle(t *testing.T) {
	enc := func(b *LayerBuilder) []Entry { return Entries(t, b.Layer(t, Uncompressed, OCI)) }
	base := enc(NewLayer().Dir("d", 0o755).File("d/a", []byte("a"), 0o644).Dir("d/s", 0o755).File("d/s/b", nil, 0o644).File("f", nil, 0o644))
	for name, tc := range map[string]struct {
		top  *LayerBuilder
		want []string
	}{
		"whiteout file":      {NewLayer().Dir("d", 0o755).Whiteout("d/a"), []string{"d", "d/s", "d/s/b", "f"}},
		"whiteout dir":       {NewLayer().Whiteout("d"), []string{"f"}},
		"opaque keeps own":   {NewLayer().Dir("d", 0o755).Opaque("d").File("d/n", nil, 0o644), []string{"d", "d/n", "f"}},
		"opaque order free":  {NewLayer().Dir("d", 0o755).File("d/n", nil, 0o644).Opaque("d"), []string{"d", "d/n", "f"}},
		"file over dir":      {NewLayer().File("d", nil, 0o644), []string{"d", "f"}},
		"dir over file":      {NewLayer().Dir("f", 0o755).File("f/x", nil, 0o644), []string{"d", "d/a", "d/s", "d/s/b", "f", "f/x"}},
		"dir over dir keeps": {NewLayer().Dir("d", 0o700), []string{"d", "d/a", "d/s", "d/s/b", "f"}},
	} {
		t.Run(name, func(t *testing.T) {
			tree, err := applyLayers([][]Entry{base, enc(tc.top)})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for p := range tree {
				got = append(got, p)
			}
			if d := diffPaths(got, tc.want); d != "" {
				t.Error(d)
			}
		})
	}
	for name, top := range map[string]*LayerBuilder{
		"no parent":       NewLayer().File("nope/x", nil, 0o644),
		"lower hard link": NewLayer().Hardlink("h", "f"),
		"whiteout absent": NewLayer().Whiteout("zzz"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := applyLayers([][]Entry{base, enc(top)}); err == nil {
				t.Error("oracle accepted a malformed layer")
			}
		})
	}
}

func diffPaths(got, want []string) string {
	g := map[string]bool{}
	for _, p := range got {
		g[p] = true
	}
	var out string
	for _, p := range want {
		if !g[p] {
			out += "missing " + p + "\n"
		}
		delete(g, p)
	}
	for p := range g {
		out += "unexpected " + p + "\n"
	}
	return out
}
