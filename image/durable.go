package image

import (
	"context"
	"os"
	"sync"
)

// syncer makes a pull's unpacked snapshots and layer blobs durable with
// syncfs(2) calls shared between layers: a layer that has written and
// verified everything asks for a sync and waits for one that *began* after
// it asked, so what it wrote is on stable storage when the wait returns.
// Requests that arrive while a sync runs share the next one. A layer waits
// without holding its download slot, so the other layers keep downloading
// and unpacking while the disk catches up; the one sync left at the end of
// the pull flushes only what the last layer wrote since the previous one.
//
// The fd syncfs reports writeback errors through is opened before the
// pull writes anything, so a failed writeback of this pull's data is
// reported. Errors are sticky: once a sync fails, every later one fails
// too (the kernel reports a writeback error once per fd, and a later sync
// succeeding says nothing about data whose writeback failed before).
type syncer struct {
	fs []*os.File // a directory on each filesystem the pull writes to

	mu   sync.Mutex
	cur  *syncRound // running
	next *syncRound // to start when cur is done, shared by its waiters
	err  error      // sticky
}

// syncRoundFunc runs one round; tests replace it to hold or fail syncs.
var syncRoundFunc = (*syncer).sync

type syncRound struct {
	done chan struct{}
	err  error
}

// newSyncer syncs the filesystems that hold dirs (one syncfs each, so
// usually one).
func newSyncer(dirs ...string) (*syncer, error) {
	s := &syncer{}
	seen := map[uint64]bool{}
	for _, d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			s.closeFiles()
			return nil, err
		}
		if dev, ok := device(f); ok && seen[dev] {
			f.Close()
			continue
		} else if ok {
			seen[dev] = true
		}
		s.fs = append(s.fs, f)
	}
	return s, nil
}

func (s *syncer) closeFiles() {
	for _, f := range s.fs {
		f.Close()
	}
}

// sync is one round: every filesystem, the first error wins.
func (s *syncer) sync() error {
	var first error
	for _, f := range s.fs {
		if err := syncFD(f); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// close waits for a running sync and releases the fd.
func (s *syncer) close() {
	s.mu.Lock()
	r := s.cur
	if s.next != nil {
		r = s.next
	}
	s.mu.Unlock()
	if r != nil {
		<-r.done
	}
	s.closeFiles()
}

// wait returns once a sync that began after the call has completed, with
// its error (or the first error of any earlier one).
func (s *syncer) wait(ctx context.Context) error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if s.next == nil {
		s.next = &syncRound{done: make(chan struct{})}
	}
	r := s.next
	if s.cur == nil {
		s.startLocked()
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *syncer) startLocked() {
	r := s.next
	s.cur, s.next = r, nil
	go func() {
		err := syncRoundFunc(s)
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		r.err = s.err
		close(r.done)
		s.cur = nil
		if s.next != nil {
			s.startLocked()
		}
		s.mu.Unlock()
	}()
}
