package testimage

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Kinds of [Random] layers, in the order they cycle.
const (
	// RandomBlobs: incompressible random files of up to 16 MiB.
	RandomBlobs = iota
	// RandomText: compressible text files of up to 1 MiB.
	RandomText
	// RandomSmallFiles: small files of 1 B to 8 KiB, half text and half
	// random, 256 per directory: thousands per layer at benchmark sizes.
	RandomSmallFiles
	// RandomLinks: 256 KiB random files, each with a hard link and a
	// relative symlink.
	RandomLinks
	numRandomKinds
)

// Random returns an image of n generated layers holding about size
// uncompressed content bytes each (at least one file), for benchmarks and
// volume tests: layer i is of kind i%4 ([RandomBlobs], [RandomText],
// [RandomSmallFiles], [RandomLinks]) and its files live under
// /data/layer<i>/. Content is generated while encoding and each layer is
// streamed through temp files, so a 200 MB image never sits in memory:
// Random(t, 5, 40<<20) is the ~200 MB 5-layer benchmark image. The content
// depends only on the seed ([WithSeed], default 1), so digests repeat.
func Random(t testing.TB, n int, size int64, opts ...Option) v1.Image {
	t.Helper()
	o := makeOptions(opts)
	layers := make([]layer, n)
	for i := range n {
		layers[i] = layer{b: randomLayer(o.seed, i, size), createdBy: fmt.Sprintf("random layer %d", i)}
	}
	cfg := v1.Config{
		Env:    []string{DefaultPath},
		Cmd:    []string{"sh"},
		Labels: map[string]string{"dev.berth.testimage": "random"},
	}
	return o.image(t, HostPlatform(), cfg, layers...)
}

// randomLayer describes layer i of a Random image.
func randomLayer(seed uint64, i int, size int64) *LayerBuilder {
	root := fmt.Sprintf("data/layer%d", i)
	b := NewLayer().Dir("data", 0o755).Dir(root, 0o755)
	// sizes deals out file sizes of at most limit until size is used up.
	sizes := func(limit int64, next func() int64) []int64 {
		var out []int64
		for left := size; left > 0 || len(out) == 0; {
			s := min(next(), limit, max(left, 1))
			out = append(out, s)
			left -= s
		}
		return out
	}
	fixed := func(n int64) func() int64 { return func() int64 { return n } }
	rng := rand.New(rand.NewPCG(seed, uint64(i)))

	switch i % numRandomKinds {
	case RandomBlobs:
		for j, s := range sizes(16<<20, fixed(16<<20)) {
			b.FileFrom(fmt.Sprintf("%s/blob-%03d.bin", root, j), s, randomBytes(seed, i, j, s), 0o644)
		}
	case RandomText:
		for j, s := range sizes(1<<20, fixed(1<<20)) {
			b.FileFrom(fmt.Sprintf("%s/text-%03d.txt", root, j), s, randomText(seed, i, j, s), 0o644)
		}
	case RandomSmallFiles:
		for j, s := range sizes(8<<10, func() int64 { return 1 + rng.Int64N(8<<10) }) {
			if j%256 == 0 {
				b.Dir(fmt.Sprintf("%s/d%04d", root, j/256), 0o755)
			}
			name := fmt.Sprintf("%s/d%04d/f%06d", root, j/256, j)
			open := randomText(seed, i, j, s)
			if j%2 == 1 {
				open = randomBytes(seed, i, j, s)
			}
			b.FileFrom(name, s, open, 0o644)
		}
	case RandomLinks:
		for j, s := range sizes(256<<10, fixed(256<<10)) {
			name := fmt.Sprintf("%s/f%04d.bin", root, j)
			b.FileFrom(name, s, randomBytes(seed, i, j, s), 0o644)
			b.Hardlink(fmt.Sprintf("%s/f%04d.hard", root, j), name)
			b.Symlink(fmt.Sprintf("%s/f%04d.sym", root, j), fmt.Sprintf("f%04d.bin", j))
		}
	}
	return b
}

// randomBytes opens n bytes of ChaCha8 output seeded by (seed, layer, file).
func randomBytes(seed uint64, layer, file int, n int64) Opener {
	return func() (io.ReadCloser, error) {
		var key [32]byte
		binary.LittleEndian.PutUint64(key[0:], seed)
		binary.LittleEndian.PutUint64(key[8:], uint64(layer))
		binary.LittleEndian.PutUint64(key[16:], uint64(file))
		return io.NopCloser(io.LimitReader(rand.NewChaCha8(key), n)), nil
	}
}

// words make up randomText's lines.
var words = []string{
	"berth", "container", "layer", "image", "registry", "overlay", "digest",
	"manifest", "task", "service", "network", "bridge", "namespace", "cgroup",
	"snapshot", "whiteout", "opaque", "tar", "gzip", "zstd", "config", "the",
	"a", "of", "and", "to", "in", "is", "runs", "pulls", "unpacks", "mounts",
}

// randomText opens n bytes of word soup seeded by (seed, layer, file).
func randomText(seed uint64, layer, file int, n int64) Opener {
	return func() (io.ReadCloser, error) {
		r := &textReader{
			rng:  rand.New(rand.NewPCG(seed, uint64(layer)<<32|uint64(file))),
			left: n,
		}
		return io.NopCloser(r), nil
	}
}

// textReader yields lines of random words until left bytes were read.
type textReader struct {
	rng  *rand.Rand
	left int64
	line []byte
}

// Read fills p with whole or partial lines.
func (r *textReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		if len(r.line) == 0 {
			r.line = r.line[:0]
			for w := 4 + r.rng.IntN(12); w > 0; w-- {
				r.line = append(r.line, words[r.rng.IntN(len(words))]...)
				r.line = append(r.line, ' ')
			}
			r.line[len(r.line)-1] = '\n'
		}
		c := copy(p[n:min(int64(len(p)), int64(n)+r.left)], r.line)
		r.line = r.line[c:]
		n += c
		r.left -= int64(c)
	}
	return n, nil
}
