package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockGoroutines has goroutines of one process contend for one key: the
// critical sections never overlap and no increment is lost, so separate
// Lock calls exclude each other within a process.
func TestLockGoroutines(t *testing.T) {
	s := newStore(t)
	const workers, each = 8, 50
	var inside atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				var c counter
				err := s.Update(t.Context(), "counter", &c, func(bool) error {
					if n := inside.Add(1); n != 1 {
						return fmt.Errorf("%d goroutines inside the lock", n)
					}
					defer inside.Add(-1)
					c.N++
					time.Sleep(10 * time.Microsecond)
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var c counter
	if err := s.Get("counter", &c); err != nil || c.N != workers*each {
		t.Fatalf("counter = %d, %v, want %d", c.N, err, workers*each)
	}
}

// TestLockProcesses has several child processes (re-execs of this test
// binary) and goroutines of this one increment one counter with Update: the
// critical sections never overlap (each creates an O_EXCL marker file) and
// the final count is exact, so the lock excludes across processes.
func TestLockProcesses(t *testing.T) {
	s := newStore(t)
	const procs, goroutines, each = 4, 2, 50
	type child struct {
		name   string
		stderr bytes.Buffer
		done   chan error
	}
	children := make([]*child, procs)
	for i := range children {
		c := &child{name: fmt.Sprintf("child %d", i), done: make(chan error, 1)}
		cmd := helperCmd(t, "increment", s.Root(), countEnv+"="+strconv.Itoa(each))
		cmd.Stderr = &c.stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { c.done <- cmd.Wait() }()
		children[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() {
			if err := increment(t.Context(), s, each); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range children {
		if err := <-c.done; err != nil {
			t.Errorf("%s: %v\n%s", c.name, err, c.stderr.String())
		}
	}
	var c counter
	if err := s.Get("counter", &c); err != nil || c.N != (procs+goroutines)*each {
		t.Fatalf("counter = %d, %v, want %d", c.N, err, (procs+goroutines)*each)
	}
}

// startHolder starts a child process that takes the lock "held" and keeps
// it until its stdin closes; it returns once the child holds the lock.
func startHolder(t *testing.T, s *Store) (release, kill func() error) {
	t.Helper()
	cmd := helperCmd(t, "hold", s.Root())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	wait := func() { once.Do(func() { _ = cmd.Wait() }) }
	t.Cleanup(func() { _ = cmd.Process.Kill(); wait() })
	if line, err := readLine(bufio.NewReader(stdout), 30*time.Second); err != nil || line != "locked\n" {
		t.Fatalf("holder: %q, %v\n%s", line, err, stderr.String())
	}
	release = func() error {
		_ = stdin.Close()
		wait()
		if !cmd.ProcessState.Success() {
			return fmt.Errorf("holder: %v\n%s", cmd.ProcessState, stderr.String())
		}
		return nil
	}
	kill = func() error {
		err := cmd.Process.Kill()
		wait()
		return err
	}
	return release, kill
}

// TestLockHeldByOtherProcess checks that a lock held by another process
// makes Lock wait until its ctx ends, and is granted once the holder
// unlocks.
func TestLockHeldByOtherProcess(t *testing.T) {
	s := newStore(t)
	release, _ := startHolder(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "held"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while another process holds it = %v, want DeadlineExceeded", err)
	}
	// Other names are not affected.
	l, err := s.Lock(t.Context(), "other")
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Unlock()
	released := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		released <- release()
	}()
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l, err = s.Lock(ctx, "held")
	if err != nil {
		t.Fatalf("Lock after the holder unlocked: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
}

// TestLockReleasedWhenHolderKilled checks that SIGKILLing the holder frees
// the lock: a crash never leaves a key locked.
func TestLockReleasedWhenHolderKilled(t *testing.T) {
	s := newStore(t)
	_, kill := startHolder(t, s)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := s.Lock(ctx, "held")
		if err == nil {
			err = l.Unlock()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Lock returned while the holder was alive: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
}

// TestLockContext checks that a wait ends with ctx's error when ctx is
// canceled or its deadline passes, promptly, and that a ctx already done
// fails even when the lock is free.
func TestLockContext(t *testing.T) {
	s := newStore(t)
	held, err := s.Lock(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(30*time.Millisecond, cancel)
	_, err = s.Lock(ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with canceled ctx = %v, want Canceled", err)
	}

	ctx, cancel2 := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel2()
	if _, err := s.Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock past deadline = %v, want DeadlineExceeded", err)
	}
	if err := s.Update(ctx, "k", &counter{}, func(bool) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update past deadline = %v, want DeadlineExceeded", err)
	}

	done, cancel3 := context.WithCancel(t.Context())
	cancel3()
	if _, err := s.Lock(done, "free"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with a done ctx = %v, want Canceled", err)
	}
}

// TestLockNames checks that lock names live apart from objects and from each
// other: "a" and "a/b" can both be held, and holding a lock does not stop
// Put or Get of the object of the same name.
func TestLockNames(t *testing.T) {
	s := newStore(t)
	var locks []*Lock
	for _, name := range []string{"a", "a/b", "a/b/c", "a.d", "a.lock", "b.lock/c"} {
		l, err := s.Lock(t.Context(), name)
		if err != nil {
			t.Fatalf("Lock(%q) while holding %d others: %v", name, len(locks), err)
		}
		locks = append(locks, l)
	}
	if err := s.Put("a", 1); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Get("a", &n); err != nil || n != 1 {
		t.Fatalf("Get = %d, %v", n, err)
	}
	for _, l := range locks {
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		// A second Unlock does nothing.
		if err := l.Unlock(); err != nil {
			t.Fatalf("second Unlock: %v", err)
		}
	}
}
