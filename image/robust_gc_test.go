//go:build linux

package image

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

// TestRobustGCDiskPressure runs image GC on a small tmpfs state root filled
// past the high watermark: below the watermark GC does nothing; above it,
// unreferenced content goes first, then the least recently used unprotected
// image (by LastUsed, not pull order), never the one in use, until usage is
// at most the low watermark or nothing removable is left; the report counts
// exactly what disappeared.
func TestRobustGCDiskPressure(t *testing.T) {
	testrig.RequireRoot(t)
	r := registry.Start(t)
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=80m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount tmpfs: %v", err)
		}
	})
	s, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o := pullOpts(r)

	used := func() float64 {
		t.Helper()
		u, err := usedPercent(root)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	// Four distinct images of one incompressible 6 MiB layer each: 12 MiB
	// with blob and snapshot, about 15% of the tmpfs. Pulled in the order
	// C, A, B, D; each one's share measured as the growth it caused.
	share := map[string]float64{} // percent of the tmpfs
	refs := map[string]string{}
	for i, n := range []string{"c", "a", "b", "d"} {
		refs[n] = r.Ref("gc-" + n + ":1")
		testimage.Push(t, testimage.Random(t, 1, 6<<20, testimage.WithSeed(uint64(100+i))), refs[n])
		before := used()
		if _, err := s.Pull(ctx, refs[n], o); err != nil {
			t.Fatal(err)
		}
		share[n] = used() - before
		if share[n] < 10 {
			t.Fatalf("image %s took only %.1f%% of the tmpfs", n, share[n])
		}
	}
	// Used in the order B, A, C: B is the least recently used but a task
	// needs it.
	for _, n := range []string{"b", "a", "c"} {
		if err := s.Touch(ctx, refs[n]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	inUse := func(rec *Record) (bool, string) { return rec.Name == refs["b"], "task b-1" }
	// D's record goes: its content is unreferenced.
	if _, err := s.Remove(refs["d"], false, inUse); err != nil {
		t.Fatal(err)
	}

	// fill grows a file outside the store until the tmpfs is pct full.
	fill := filepath.Join(root, "ballast")
	fillTo := func(pct float64) {
		t.Helper()
		f, err := os.OpenFile(fill, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for used() < pct {
			if _, err := f.Write(buf); err != nil {
				t.Fatalf("filling the tmpfs to %.0f%%: %v", pct, err)
			}
		}
	}
	// gc runs one pass and checks its report against what disappeared.
	gc := func(p GCPolicy) *GCReport {
		t.Helper()
		blobs, snaps := rbContent(t, s)
		rep, err := s.GC(ctx, p, inUse)
		if err != nil {
			t.Fatalf("GC %+v: %v", p, err)
		}
		blobs2, snaps2 := rbContent(t, s)
		var gone, wantBytes int64
		for hx, n := range blobs {
			if _, ok := blobs2[hx]; !ok {
				gone++
				wantBytes += n
			}
		}
		if int(gone) != rep.Blobs {
			t.Errorf("GC %+v: report says %d blobs removed, %d disappeared", p, rep.Blobs, gone)
		}
		gone = 0
		for hx, n := range snaps {
			if _, ok := snaps2[hx]; !ok {
				gone++
				wantBytes += n
			}
		}
		if int(gone) != rep.Snapshots {
			t.Errorf("GC %+v: report says %d snapshots removed, %d disappeared", p, rep.Snapshots, gone)
		}
		if rep.Bytes != wantBytes {
			t.Errorf("GC %+v: report says %d bytes freed, the removed content held %d", p, rep.Bytes, wantBytes)
		}
		if tmp := rbTemps(s); len(tmp) > 0 {
			t.Errorf("temp leftovers after GC: %v", tmp)
		}
		rbCheckConsistent(t, s)
		if _, err := s.Get(refs["b"]); err != nil {
			t.Fatalf("GC removed the image in use: %v", err)
		}
		t.Logf("GC high=%g low=%.1f: %.1f%% -> %.1f%%, removed %v, %d blobs, %d snapshots, %d bytes",
			p.HighPercent, p.LowPercent, rep.UsedPercentBefore, rep.UsedPercentAfter, rep.Images, rep.Blobs, rep.Snapshots, rep.Bytes)
		return rep
	}
	names := func() []string {
		recs, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.Name)
		}
		return out
	}
	wantNames := func(step string, want ...string) {
		t.Helper()
		var w []string
		for _, n := range want {
			w = append(w, refs[n])
		}
		slices.Sort(w)
		if got := names(); !slices.Equal(got, w) {
			t.Fatalf("%s: images %v, want %v", step, got, w)
		}
	}

	// 1. Below the high watermark nothing happens, not even to D's
	// unreferenced content.
	rep := gc(GCPolicy{HighPercent: used() + 5, LowPercent: 1})
	if rep.Blobs+rep.Snapshots+len(rep.Images) != 0 || rep.Bytes != 0 {
		t.Fatalf("GC below the high watermark removed %+v", rep.PruneReport)
	}

	// 2. Above it, with a low watermark that D's content alone reaches:
	// only the unreferenced content goes, no image.
	fillTo(92)
	u := used()
	rep = gc(GCPolicy{HighPercent: 85, LowPercent: u - share["d"]/2})
	if len(rep.Images) != 0 || rep.Blobs != 3 || rep.Snapshots != 1 {
		t.Fatalf("GC that unreferenced content satisfies: %+v, want D's 3 blobs and 1 snapshot, no image", rep.PruneReport)
	}
	wantNames("after the orphan sweep", "a", "b", "c")

	// 3. Again above it, with a low watermark one image away: A goes, the
	// least recently used image nothing needs (B is older but in use; C,
	// pulled first, was used last).
	fillTo(92)
	u = used()
	rep = gc(GCPolicy{HighPercent: 85, LowPercent: u - share["a"]/2})
	if !slices.Equal(rep.Images, []string{refs["a"]}) || rep.UsedPercentAfter > u-share["a"]/2 {
		t.Fatalf("GC one image away from the low watermark: removed %v, %.1f%% after", rep.Images, rep.UsedPercentAfter)
	}
	wantNames("after removing the LRU image", "b", "c")

	// 4. A low watermark that cannot be reached: everything removable
	// (C) goes, B stays, usage stays above the low watermark.
	fillTo(92)
	rep = gc(GCPolicy{HighPercent: 85, LowPercent: 1})
	if !slices.Equal(rep.Images, []string{refs["c"]}) || rep.UsedPercentAfter <= 1 {
		t.Fatalf("GC with an unreachable low watermark: removed %v, %.1f%% after", rep.Images, rep.UsedPercentAfter)
	}
	wantNames("after removing everything removable", "b")
	rec, err := s.Get(refs["b"])
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.LayerDirs(rec)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("in-use image's layers: %v, %v", dirs, err)
	}
	if ents, err := os.ReadDir(filepath.Join(dirs[0], "data/layer0")); err != nil || len(ents) == 0 {
		t.Fatalf("in-use image's snapshot: %d entries, %v", len(ents), err)
	}
	// 5. Above the high watermark with nothing left to remove: a no-op.
	fillTo(92)
	rep = gc(GCPolicy{HighPercent: 85, LowPercent: 1})
	if len(rep.Images)+rep.Blobs+rep.Snapshots != 0 {
		t.Fatalf("GC with nothing removable: %+v", rep.PruneReport)
	}
}
