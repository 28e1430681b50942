//go:build linux

package image

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

// TestRobustVerifiedLayerSurvivesSiblingFailure: a layer that is unpacked
// and verified, waiting only for the sync before it is published, is
// published even when another layer of the same pull fails meanwhile, so
// the next pull reuses it; the failed layer leaves nothing behind.
func TestRobustVerifiedLayerSurvivesSiblingFailure(t *testing.T) {
	testrig.RequireRoot(t)
	r := registry.Start(t)
	img := testimage.App(t)
	testimage.Push(t, img, r.Ref("app:1"))
	layers := rbLayers(t, img)
	s := newStore(t)
	p := rbStartProxy(t, r.Host)
	p.set(func(p *rbProxy) { p.hold[layers[1].Digest.String()] = true })

	// The first sync starts when layer 0 waits for it: cut layer 1's
	// stalled download then, and give the failure time to cancel the pull.
	var once sync.Once
	old := syncRoundFunc
	syncRoundFunc = func(sy *syncer) error {
		once.Do(func() {
			p.srv.CloseClientConnections()
			time.Sleep(300 * time.Millisecond)
		})
		return sy.sync()
	}
	t.Cleanup(func() { syncRoundFunc = old })

	_, err := s.Pull(context.Background(), p.Ref("app:1"), PullOptions{Remote: r.RemoteOptions()})
	if err == nil {
		t.Fatal("pull succeeded with layer 1 cut")
	}
	t.Logf("pull failed as it should: %v", err)
	if !s.hasSnapshot(layers[0].Chain) || !s.hasBlob(layers[0].Digest, layers[0].Size) {
		t.Errorf("layer 0 was verified before layer 1 failed, but is not in the store")
	}
	if s.hasSnapshot(layers[1].Chain) || s.hasBlob(layers[1].Digest, layers[1].Size) {
		t.Errorf("the failed layer 1 is in the store")
	}
	if tmp := rbTemps(s); len(tmp) > 0 {
		t.Errorf("temp leftovers: %v", tmp)
	}
	rbCheckConsistent(t, s)

	// The next pull fetches only layer 1.
	syncRoundFunc = old
	p.set(func(p *rbProxy) { clear(p.hold) })
	p.reset()
	if _, err := s.Pull(context.Background(), p.Ref("app:1"), PullOptions{Remote: r.RemoteOptions()}); err != nil {
		t.Fatal(err)
	}
	if n := p.blobGets(layers[0].Digest); n != 0 {
		t.Errorf("layer 0 fetched %d times by the second pull, want 0", n)
	}
	if n := p.blobGets(layers[1].Digest); n != 1 {
		t.Errorf("layer 1 fetched %d times by the second pull, want 1", n)
	}
}
