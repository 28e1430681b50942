package image

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSyncs replaces the syncfs rounds for one test: each round blocks
// until release is called for it and returns the error given there.
type fakeSyncs struct {
	started chan struct{} // a value per round started
	release chan error
	rounds  atomic.Int32
}

func withFakeSyncs(t *testing.T) *fakeSyncs {
	f := &fakeSyncs{started: make(chan struct{}, 100), release: make(chan error)}
	old := syncRoundFunc
	syncRoundFunc = func(*syncer) error {
		f.rounds.Add(1)
		f.started <- struct{}{}
		return <-f.release
	}
	t.Cleanup(func() { syncRoundFunc = old })
	return f
}

func (f *fakeSyncs) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-f.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no sync round started")
	}
}

func newTestSyncer(t *testing.T) *syncer {
	s, err := newSyncer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSyncerWaitsForALaterRound: a wait that arrives while a round runs
// is not released by that round (it may have started before the caller's
// writes), only by the next one, which every such wait shares.
func TestSyncerWaitsForALaterRound(t *testing.T) {
	f := withFakeSyncs(t)
	s := newTestSyncer(t)
	defer s.close()

	first := make(chan error, 1)
	go func() { first <- s.wait(context.Background()) }()
	f.waitStarted(t) // round 1 runs

	var wg sync.WaitGroup
	var released atomic.Int32
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.wait(context.Background()); err != nil {
				t.Error(err)
			}
			released.Add(1)
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the five queue behind round 1
	f.release <- nil                  // round 1 ends
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	f.waitStarted(t) // round 2, shared by the five
	time.Sleep(20 * time.Millisecond)
	if n := released.Load(); n != 0 {
		t.Fatalf("%d waits released by the round that was running when they came", n)
	}
	f.release <- nil
	wg.Wait()
	if n := f.rounds.Load(); n != 2 {
		t.Errorf("%d rounds for six waits, want 2", n)
	}
}

// TestSyncerErrorsStick: once a round fails, every later wait fails too,
// without a new sync (a writeback error is reported once per fd).
func TestSyncerErrorsStick(t *testing.T) {
	f := withFakeSyncs(t)
	s := newTestSyncer(t)
	defer s.close()
	boom := errors.New("EIO")
	done := make(chan error, 1)
	go func() { done <- s.wait(context.Background()) }()
	f.waitStarted(t)
	f.release <- boom
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("wait: %v, want the round's error", err)
	}
	if err := s.wait(context.Background()); !errors.Is(err, boom) {
		t.Errorf("later wait: %v, want the first error again", err)
	}
	if n := f.rounds.Load(); n != 1 {
		t.Errorf("%d rounds, want 1", n)
	}
}

// TestSyncerWaitCancelled: a cancelled wait returns at once; the round
// goes on and close waits for it.
func TestSyncerWaitCancelled(t *testing.T) {
	f := withFakeSyncs(t)
	s := newTestSyncer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.wait(ctx) }()
	f.waitStarted(t)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("wait: %v", err)
	}
	closed := make(chan struct{})
	go func() { s.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a round was running")
	case <-time.After(20 * time.Millisecond):
	}
	f.release <- nil
	<-closed
}
