package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Lock is an exclusive lock taken with [Store.Lock]. Release it with
// [Lock.Unlock]; the kernel releases it if the process dies.
type Lock struct {
	name string

	mu sync.Mutex
	f  *os.File // nil once unlocked
}

// Polling intervals while waiting for a lock held elsewhere: flock(2) cannot
// be interrupted by a context, so Lock retries LOCK_NB with a jittered,
// growing sleep.
const (
	lockPollMin = 500 * time.Microsecond
	lockPollMax = 20 * time.Millisecond
)

// Lock takes the exclusive lock called name, waiting until it is free or ctx
// is done; in the latter case it returns an error wrapping ctx.Err(). Names
// follow the rules for keys ([ValidateKey]) and live in their own namespace:
// locking "tasks/abc" does not touch the object "tasks/abc", and [Store.Update]
// on a key takes the lock of the same name.
//
// The lock is a flock(2) lock on the file root/.locks/<name> (each directory
// component suffixed ".d" and the file ".lock", so a lock "a" and a lock
// "a/b" never collide). Lock files are never removed. Each call opens the
// file anew, so the lock excludes holders in other processes and in other
// goroutines of this one; it is not reentrant.
func (s *Store) Lock(ctx context.Context, name string) (*Lock, error) {
	if err := ValidateKey(name); err != nil {
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	p := s.lockPath(name)
	if err := os.MkdirAll(filepath.Dir(p), dirPerm); err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", name, err)
	}
	var timer *time.Timer
	wait := lockPollMin
	for {
		ok, err := tryLock(f)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("store: lock %s: %w", name, err)
		}
		if ok {
			if timer != nil {
				timer.Stop()
			}
			return &Lock{name: name, f: f}, nil
		}
		// Jitter so that waiters polling in step do not keep colliding.
		d := wait/2 + rand.N(wait/2+1)
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			_ = f.Close()
			return nil, fmt.Errorf("store: lock %s: %w", name, ctx.Err())
		case <-timer.C:
		}
		wait = min(wait*2, lockPollMax)
	}
}

// lockPath maps a lock name to its file; see Lock.
func (s *Store) lockPath(name string) string {
	parts := strings.Split(name, "/")
	for i := range parts[:len(parts)-1] {
		parts[i] += ".d"
	}
	parts[len(parts)-1] += ".lock"
	return filepath.Join(append([]string{s.root, locksDir}, parts...)...)
}

// Unlock releases the lock. Calling it again does nothing and returns nil.
func (l *Lock) Unlock() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	err := unlock(f)
	// Closing the last descriptor releases the lock even if unlock failed.
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: unlock %s: %w", l.name, err)
	}
	return nil
}
