//go:build linux

package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

// TestRobustKillMidPull SIGKILLs a child process in the middle of a pull
// (at several points), then checks that the store is consistent and that an
// in-process re-pull succeeds, fetching only the layers that were not
// complete, and leaves no temp files.
func TestRobustKillMidPull(t *testing.T) {
	testrig.RequireRoot(t)
	r := registry.Start(t)
	// Four layers of different kinds: random blobs, text, small files, links.
	img := testimage.Random(t, 4, 3<<20)
	testimage.Push(t, img, r.Ref("big:1"))
	layers := rbLayers(t, img)

	cases := []struct {
		name  string
		hold  []int // layers whose bodies stall half way
		rate  int64 // per blob body, bytes/s
		snaps int   // kill once this many snapshots are complete
	}{
		// Layer 1 (text) completes; the others are half downloaded.
		{name: "one-done", hold: []int{0, 2, 3}, snaps: 1},
		// Three complete; the last is half downloaded.
		{name: "three-done", hold: []int{3}, snaps: 3},
		// No stall, just slow: kill wherever the first snapshot lands.
		{name: "throttled", rate: 4 << 20, snaps: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := Open(root, Options{})
			if err != nil {
				t.Fatal(err)
			}
			p := rbStartProxy(t, r.Host)
			p.set(func(p *rbProxy) {
				p.rate = c.rate
				for _, i := range c.hold {
					p.hold[layers[i].Digest.String()] = true
				}
			})
			ref := p.Ref("big:1")
			child := rbChild(t, root, ref)

			complete := func() int {
				n := 0
				for _, l := range layers {
					if s.hasSnapshot(l.Chain) {
						n++
					}
				}
				return n
			}
			rbWaitFor(t, child, "snapshots to complete", func() bool {
				if complete() < c.snaps {
					return false
				}
				// Held layers must be mid-download: some bytes in a temp blob.
				for _, i := range c.hold {
					m, _ := filepath.Glob(filepath.Join(root, blobsDir, tmpPrefix+layers[i].Chain.Hex+"-*"))
					if len(m) == 0 {
						return false
					}
					if fi, err := os.Stat(m[0]); err != nil || fi.Size() == 0 {
						return false
					}
				}
				return true
			})
			child.kill(t)

			// The store as the kill left it.
			if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after the kill: %v, want ErrNotFound", err)
			}
			rbCheckConsistent(t, s)
			haveBlob := make([]bool, len(layers))
			haveSnap := make([]bool, len(layers))
			var done []int
			for i, l := range layers {
				haveBlob[i], haveSnap[i] = s.hasBlob(l.Digest, l.Size), s.hasSnapshot(l.Chain)
				if haveSnap[i] {
					done = append(done, i)
					if !haveBlob[i] {
						t.Errorf("layer %d: snapshot complete without its blob", i)
					}
				}
			}
			t.Logf("killed with layers %v complete, temps %d", done, len(rbTemps(s)))
			if len(done) < c.snaps || len(done) == len(layers) {
				t.Fatalf("complete layers at the kill: %v, want at least %d and not all", done, c.snaps)
			}
			for _, i := range c.hold {
				if haveBlob[i] || haveSnap[i] {
					t.Errorf("held layer %d is present after the kill", i)
				}
			}

			// Re-pull, in process, through the same (now unrestricted) proxy.
			p.set(func(p *rbProxy) { p.rate = 0; clear(p.hold) })
			p.reset()
			o := PullOptions{Remote: r.RemoteOptions()}
			progress, final := rbPhases()
			o.Progress = progress
			rec, err := s.Pull(context.Background(), ref, o)
			if err != nil {
				t.Fatalf("re-pull: %v", err)
			}
			for i, l := range layers {
				gets := p.blobGets(l.Digest)
				switch {
				case haveBlob[i] && gets != 0:
					t.Errorf("layer %d: blob was complete before the kill but fetched %d times again", i, gets)
				case !haveBlob[i] && gets != 1:
					t.Errorf("layer %d: blob incomplete before the kill, fetched %d times, want 1", i, gets)
				}
				want := PhaseDone
				if haveBlob[i] && haveSnap[i] {
					want = PhaseExists
				}
				if final[l.Digest] != want {
					t.Errorf("layer %d: re-pull phase %q, want %q", i, final[l.Digest], want)
				}
			}
			if tmp := rbTemps(s); len(tmp) > 0 {
				t.Errorf("temp leftovers after the re-pull: %v", tmp)
			}
			rbCheckConsistent(t, s)
			merged := mountMerged(t, s, rec)
			for i := range layers {
				ents, err := os.ReadDir(filepath.Join(merged, "data", "layer"+string(rune('0'+i))))
				if err != nil || len(ents) == 0 {
					t.Errorf("merged view: data/layer%d: %d entries, %v", i, len(ents), err)
				}
			}
			if got, err := s.Get(ref); err != nil || got.Digest != rec.Digest {
				t.Fatalf("Get after the re-pull: %v, %v", got, err)
			}
		})
	}
}
