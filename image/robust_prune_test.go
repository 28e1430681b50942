//go:build linux

package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

// TestRobustPruneExact removes one of two images that share their base
// layer and checks that prune removes exactly the removed image's own blobs
// (manifest, config, unique layers) and snapshots, reports exactly their
// bytes, and leaves the other image whole; then that prune -a spares an
// image in use and, with nothing in use, empties the store.
func TestRobustPruneExact(t *testing.T) {
	s := newStore(t)
	r := registry.Start(t)
	ctx := context.Background()
	bigA := rbRandomFile(7, 512<<10)
	// A: busybox + two layers of its own (one with a hard link, which
	// counts once); B: busybox + one layer of its own.
	imgA := testimage.Busybox(t, testimage.WithLayers(
		testimage.NewLayer().Dir("a", 0o755).File("a/big.bin", bigA, 0o644).Hardlink("a/big.link", "a/big.bin"),
		testimage.NewLayer().File("a/second", []byte("second layer of A\n"), 0o600),
	))
	imgB := testimage.Busybox(t, testimage.WithLayers(
		testimage.NewLayer().Dir("b", 0o755).File("b/only", []byte("B\n"), 0o644),
	))
	refA, refB := r.Ref("prune-a:1"), r.Ref("prune-b:1")
	testimage.Push(t, imgA, refA)
	testimage.Push(t, imgB, refB)
	recA, err := s.Pull(ctx, refA, pullOpts(r))
	if err != nil {
		t.Fatal(err)
	}
	recB, err := s.Pull(ctx, refB, pullOpts(r))
	if err != nil {
		t.Fatal(err)
	}
	if recA.Layers[0] != recB.Layers[0] {
		t.Fatal("test images do not share their base layer")
	}

	// What A alone holds, from the store's contents before the prune.
	blobs, snaps := rbContent(t, s)
	wantBlobs, wantSnaps := map[string]bool{recA.Digest.Hex: true, recA.ID.Hex: true}, map[string]bool{}
	for _, l := range recA.Layers[1:] {
		wantBlobs[l.Digest.Hex], wantSnaps[l.ChainID.Hex] = true, true
	}
	var wantBytes int64
	for hx := range wantBlobs {
		n, ok := blobs[hx]
		if !ok {
			t.Fatalf("blob %s of A missing before the prune", hx)
		}
		wantBytes += n
	}
	for hx := range wantSnaps {
		n, ok := snaps[hx]
		if !ok {
			t.Fatalf("snapshot %s of A missing before the prune", hx)
		}
		wantBytes += n
	}
	if len(wantBlobs) != 4 || len(wantSnaps) != 2 {
		t.Fatalf("A's own content: %d blobs, %d snapshots, want 4 and 2", len(wantBlobs), len(wantSnaps))
	}

	if _, err := s.Remove(refA, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(refA); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove: %v", err)
	}
	rep, err := s.Prune(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Images) != 0 || rep.Blobs != len(wantBlobs) || rep.Snapshots != len(wantSnaps) || rep.Bytes != wantBytes {
		t.Errorf("prune report %+v, want 0 images, %d blobs, %d snapshots, %d bytes", rep, len(wantBlobs), len(wantSnaps), wantBytes)
	}
	blobs2, snaps2 := rbContent(t, s)
	for hx := range blobs {
		if _, still := blobs2[hx]; still == wantBlobs[hx] {
			t.Errorf("blob %s: present after prune %v, A's own %v", hx, still, wantBlobs[hx])
		}
	}
	for hx := range snaps {
		if _, still := snaps2[hx]; still == wantSnaps[hx] {
			t.Errorf("snapshot %s: present after prune %v, A's own %v", hx, still, wantSnaps[hx])
		}
	}
	if tmp := rbTemps(s); len(tmp) > 0 {
		t.Errorf("temp leftovers after prune: %v", tmp)
	}
	rbCheckConsistent(t, s)

	// B is whole: every layer exists, and its merged view is right.
	progress, phases := rbPhases()
	o := pullOpts(r)
	o.Progress = progress
	if _, err := s.Pull(ctx, refB, o); err != nil {
		t.Fatal(err)
	}
	for _, l := range recB.Layers {
		if phases[l.Digest] != PhaseExists {
			t.Errorf("B layer %s after the prune: %q, want exists", l.Digest, phases[l.Digest])
		}
	}
	m := mountMerged(t, s, recB)
	if b, err := os.ReadFile(filepath.Join(m, "b/only")); err != nil || string(b) != "B\n" {
		t.Errorf("B's b/only: %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(m, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("B's bin/sh -> %q, %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(m, "a")); err == nil {
		t.Error("B's merged view shows A's files")
	}

	// prune -a with B in use: nothing more goes.
	rep, err = s.Prune(ctx, true, func(rec *Record) (bool, string) { return rec.Name == recB.Name, "task b-1" })
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Images)+rep.Blobs+rep.Snapshots != 0 || rep.Bytes != 0 {
		t.Errorf("prune -a with B in use removed %+v", rep)
	}
	if _, err := s.Get(refB); err != nil {
		t.Fatal(err)
	}

	// prune -a with nothing in use: B goes, and with it everything.
	blobs, snaps = rbContent(t, s)
	wantBytes = 0
	for _, n := range blobs {
		wantBytes += n
	}
	for _, n := range snaps {
		wantBytes += n
	}
	rep, err = s.Prune(ctx, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Images) != 1 || rep.Images[0] != recB.Name || rep.Blobs != len(blobs) || rep.Snapshots != len(snaps) || rep.Bytes != wantBytes {
		t.Errorf("prune -a: %+v, want B, %d blobs, %d snapshots, %d bytes", rep, len(blobs), len(snaps), wantBytes)
	}
	if len(blobs) != 4 || len(snaps) != 2 {
		t.Errorf("B held %d blobs and %d snapshots, want 4 and 2", len(blobs), len(snaps))
	}
	for _, d := range []string{blobsDir, snapshotsDir} {
		ents, err := os.ReadDir(filepath.Join(s.Root(), d))
		if err != nil || len(ents) != 0 {
			t.Errorf("%s after prune -a: %d entries, %v", d, len(ents), err)
		}
	}
	if recs, err := s.List(); err != nil || len(recs) != 0 {
		t.Errorf("records after prune -a: %v, %v", recs, err)
	}
}
