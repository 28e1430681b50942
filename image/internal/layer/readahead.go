package layer

import (
	"io"
	"sync"
	"sync/atomic"
)

// Read-ahead buffers: four of 256 KiB keep a decoder a megabyte ahead of
// Apply.
const (
	aheadBuffers = 4
	aheadSize    = 256 << 10
)

// ReadAhead reads r in its own goroutine, up to a megabyte ahead of the
// caller, so that what r does (network reads, hashing, decompression) runs
// in parallel with what the caller does with the bytes (Apply creating
// files). Reads return r's bytes in order, then r's error (io.EOF at the
// end) once everything before it was read.
//
// The goroutine owns r until Close returns: Close stops it and waits for
// it, so a caller that goes on reading r afterwards (the bytes past the
// decompressed stream) reads where it stopped. A goroutine blocked in
// r.Read keeps Close waiting: on an error path, close what r reads from
// first. After the last byte and the error were returned, the goroutine
// has already ended.
func ReadAhead(r io.Reader) io.ReadCloser {
	a := &aheadReader{
		full: make(chan []byte, aheadBuffers),
		free: make(chan []byte, aheadBuffers),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range aheadBuffers {
		a.free <- make([]byte, aheadSize)
	}
	go a.run(r)
	return a
}

type aheadReader struct {
	full   chan []byte // filled buffers, in order; closed after the last
	free   chan []byte // buffers to fill
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool
	err    error // r's error, set before full is closed

	cur  []byte // unread part of buf
	buf  []byte // the buffer being read, returned to free when empty
	rerr error  // the error to return once full is drained
}

func (a *aheadReader) run(r io.Reader) {
	defer close(a.done)
	defer close(a.full)
	for {
		var b []byte
		select {
		case b = <-a.free:
		case <-a.stop:
			return
		}
		n, err := 0, error(nil)
		for n < len(b) && err == nil {
			var m int
			m, err = r.Read(b[n:])
			n += m
		}
		if n > 0 {
			select {
			case a.full <- b[:n]:
			case <-a.stop:
				return
			}
		}
		if err != nil {
			a.err = err
			return
		}
	}
}

func (a *aheadReader) Read(p []byte) (int, error) {
	if a.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	for len(a.cur) == 0 {
		if a.rerr != nil {
			return 0, a.rerr
		}
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)]
			a.buf = nil
		}
		b, ok := <-a.full
		if !ok {
			a.rerr = a.err
			if a.rerr == nil {
				a.rerr = io.ErrClosedPipe // stopped by Close
			}
			return 0, a.rerr
		}
		a.cur, a.buf = b, b
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the read-ahead and waits for its goroutine to end; it does
// not close r.
func (a *aheadReader) Close() error {
	a.closed.Store(true)
	a.once.Do(func() { close(a.stop) })
	<-a.done
	return nil
}
