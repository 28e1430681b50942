//go:build linux

package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestRobustConcurrentPulls pulls two images that share their two lower
// layers (busybox and a 2 MiB random layer) at the same time into one store,
// from two goroutines and from two processes. The proxy holds every blob
// until both pulls have their manifests, so they really overlap. Both
// succeed, each shared blob is fetched once and each shared layer unpacked
// once (one pull reports it done, the other exists), and both merged views
// are right.
func TestRobustConcurrentPulls(t *testing.T) {
	testrig.RequireRoot(t)
	r := registry.Start(t)
	sharedBig := rbRandomFile(1, 2<<20)
	layers := func(who string, seed byte) []*testimage.LayerBuilder {
		shared := testimage.NewLayer().Dir("shared", 0o755).File("shared/big.bin", sharedBig, 0o644)
		own := testimage.NewLayer().Dir(who, 0o755).
			File(who+"/only", []byte(who+"\n"), 0o644).
			File(who+"/big.bin", rbRandomFile(seed, 1<<20), 0o644)
		return []*testimage.LayerBuilder{shared, own}
	}
	imgA := testimage.Busybox(t, testimage.WithLayers(layers("a", 2)...))
	imgB := testimage.Busybox(t, testimage.WithLayers(layers("b", 3)...))
	testimage.Push(t, imgA, r.Ref("sa:1"))
	testimage.Push(t, imgB, r.Ref("sb:1"))
	la, lb := rbLayers(t, imgA), rbLayers(t, imgB)
	if len(la) != 3 || len(lb) != 3 || la[0] != lb[0] || la[1] != lb[1] || la[2].Digest == lb[2].Digest {
		t.Fatalf("test images do not share exactly their two lower layers: %v %v", la, lb)
	}

	type puller func(t *testing.T, s *Store, refA, refB string) (phA, phB map[v1.Hash]Phase)
	run := func(t *testing.T, pull puller) {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		p := rbStartProxy(t, r.Host)
		gate := make(chan struct{})
		p.set(func(p *rbProxy) { p.gate, p.rate = gate, 16<<20 })
		gateDone := make(chan struct{})
		go func() {
			defer close(gateDone)
			deadline := time.Now().Add(20 * time.Second)
			for p.requests("GET", "/v2/sa/manifests/1") == 0 || p.requests("GET", "/v2/sb/manifests/1") == 0 {
				if time.Now().After(deadline) {
					break // the pulls fail the test on their own
				}
				time.Sleep(2 * time.Millisecond)
			}
			close(gate)
		}()
		t.Cleanup(func() { <-gateDone })

		refA, refB := p.Ref("sa:1"), p.Ref("sb:1")
		phA, phB := pull(t, s, refA, refB)

		for i := range 2 {
			d := la[i].Digest
			if n := p.blobGets(d); n != 1 {
				t.Errorf("shared layer %d fetched %d times, want 1", i, n)
			}
			if got := []Phase{phA[d], phB[d]}; !(got[0] == PhaseDone && got[1] == PhaseExists) && !(got[0] == PhaseExists && got[1] == PhaseDone) {
				t.Errorf("shared layer %d: phases %v, want one done and one exists", i, got)
			}
		}
		for _, c := range []struct {
			l  rbLayer
			ph map[v1.Hash]Phase
		}{{la[2], phA}, {lb[2], phB}} {
			if n := p.blobGets(c.l.Digest); n != 1 || c.ph[c.l.Digest] != PhaseDone {
				t.Errorf("own layer %s: fetched %d times, phase %q", c.l.Digest, n, c.ph[c.l.Digest])
			}
		}
		rbCheckConsistent(t, s)
		if tmp := rbTemps(s); len(tmp) > 0 {
			t.Errorf("temp leftovers: %v", tmp)
		}
		_, snaps := rbContent(t, s)
		if len(snaps) != 4 {
			t.Errorf("%d snapshots, want 4", len(snaps))
		}

		// Unpacked once, and left alone by later pulls: the snapshot dirs
		// keep their inodes and meta.json.
		type ident struct {
			ino  uint64
			meta string
		}
		idents := func() map[string]ident {
			m := map[string]ident{}
			for hx := range snaps {
				fi, err := os.Stat(filepath.Join(s.Root(), snapshotsDir, hx))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(s.Root(), snapshotsDir, hx, "meta.json"))
				if err != nil {
					t.Fatal(err)
				}
				m[hx] = ident{fi.Sys().(*syscall.Stat_t).Ino, string(b)}
			}
			return m
		}
		before := idents()
		p.reset()
		recs := map[string]*Record{}
		for _, ref := range []string{refA, refB} {
			progress, ph := rbPhases()
			rec, err := s.Pull(context.Background(), ref, PullOptions{Remote: r.RemoteOptions(), Progress: progress})
			if err != nil {
				t.Fatalf("pull %s again: %v", ref, err)
			}
			for d, phase := range ph {
				if phase != PhaseExists || p.blobGets(d) != 0 {
					t.Errorf("pull %s again: layer %s %s, fetched %d times", ref, d, phase, p.blobGets(d))
				}
			}
			recs[ref] = rec
		}
		if after := idents(); len(after) != len(before) {
			t.Errorf("snapshots changed: %v -> %v", before, after)
		} else {
			for hx, id := range before {
				if after[hx] != id {
					t.Errorf("snapshot %s was replaced: %+v -> %+v", hx, id, after[hx])
				}
			}
		}

		for _, c := range []struct{ ref, own, other string }{{refA, "a", "b"}, {refB, "b", "a"}} {
			m := mountMerged(t, s, recs[c.ref])
			b, err := os.ReadFile(filepath.Join(m, "shared/big.bin"))
			if err != nil || !bytes.Equal(b, sharedBig) {
				t.Errorf("%s: shared/big.bin: %d bytes, %v", c.ref, len(b), err)
			}
			if b, err := os.ReadFile(filepath.Join(m, c.own, "only")); err != nil || string(b) != c.own+"\n" {
				t.Errorf("%s: %s/only = %q, %v", c.ref, c.own, b, err)
			}
			if _, err := os.Stat(filepath.Join(m, c.other)); err == nil {
				t.Errorf("%s: has the other image's /%s", c.ref, c.other)
			}
			if _, err := os.Stat(filepath.Join(m, "bin/busybox")); err != nil {
				t.Errorf("%s: %v", c.ref, err)
			}
		}
	}

	t.Run("goroutines", func(t *testing.T) {
		run(t, func(t *testing.T, s *Store, refA, refB string) (map[v1.Hash]Phase, map[v1.Hash]Phase) {
			var wg sync.WaitGroup
			var errA, errB error
			progA, phA := rbPhases()
			progB, phB := rbPhases()
			ctx := context.Background()
			wg.Go(func() { _, errA = s.Pull(ctx, refA, PullOptions{Remote: r.RemoteOptions(), Progress: progA}) })
			wg.Go(func() { _, errB = s.Pull(ctx, refB, PullOptions{Remote: r.RemoteOptions(), Progress: progB}) })
			wg.Wait()
			if errA != nil || errB != nil {
				t.Fatalf("concurrent pulls: %v; %v", errA, errB)
			}
			return phA, phB
		})
	})
	t.Run("processes", func(t *testing.T) {
		run(t, func(t *testing.T, s *Store, refA, refB string) (map[v1.Hash]Phase, map[v1.Hash]Phase) {
			a := rbChild(t, s.Root(), refA)
			b := rbChild(t, s.Root(), refB)
			return a.wait(t), b.wait(t)
		})
	})
}
