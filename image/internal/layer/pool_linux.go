//go:build linux

package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// Small regular files are written by worker goroutines while Apply reads
// on: creating a file costs far more than reading it from the stream, and
// a layer of many small files is otherwise bound by one goroutine's system
// calls. A file goes to a worker only when writing it cannot depend on or
// disturb anything written before or after it, out of order:
//
//   - it creates a name that nothing in this layer had (the validator's
//     fresh), so it removes or replaces nothing;
//   - its directory exists already: Apply makes missing ones before
//     handing the file over, and workers only ever create files.
//
// Everything else is written by Apply itself, in stream order; before an
// entry that removes or replaces something (a name that existed) or that
// needs a file complete (a hard link), Apply waits for the workers to
// finish what they have. Directory times and opaque markers come after all
// of them. A worker opens directories the same way Apply does (openat2
// below the root, no symlink), with a cache of its own that it drops when
// Apply has removed anything since.
const (
	poolWorkers  = 2
	poolMaxFile  = 64 << 10 // larger files are written by Apply itself
	poolMaxQueue = 64       // files read ahead of the workers: 4 MiB at most
)

type filePool struct {
	w       *writer
	jobs    chan fileJob
	pending sync.WaitGroup // files handed over and not written yet
	workers sync.WaitGroup
	bufs    sync.Pool
	once    sync.Once

	mu  sync.Mutex
	err error // the first failure
}

type fileJob struct {
	hdr         *tar.Header
	ppath, base string
	data        *[]byte
	removals    uint64 // the writer's removals when the file was handed over
}

func newFilePool(w *writer, workers int) *filePool {
	p := &filePool{w: w, jobs: make(chan fileJob, poolMaxQueue)}
	p.bufs.New = func() any { b := make([]byte, poolMaxFile); return &b }
	for range workers {
		c := newDirCache(w.root, w.noOA2)
		p.workers.Add(1)
		go p.work(c)
	}
	return p
}

// takes reports whether a worker may write the entry the validator just
// accepted (see above).
func (p *filePool) takes(hdr *tar.Header, fresh bool) bool {
	return fresh && hdr.Typeflag == tar.TypeReg && hdr.Size <= poolMaxFile
}

// submit reads the file's content and hands it to a worker, after making
// its directory.
func (p *filePool) submit(hdr *tar.Header, r io.Reader) error {
	if err := p.failed(); err != nil {
		return err
	}
	ppath, base, err := p.w.prepare(hdr)
	if err != nil {
		return err
	}
	buf := p.bufs.Get().(*[]byte)
	if _, err := io.ReadFull(r, (*buf)[:hdr.Size]); err != nil {
		p.bufs.Put(buf)
		return err
	}
	p.pending.Add(1)
	p.jobs <- fileJob{hdr: hdr, ppath: ppath, base: base, data: buf, removals: p.w.removals}
	return nil
}

// wait returns once every file handed over is written, with the first
// failure.
func (p *filePool) wait() error {
	p.pending.Wait()
	return p.failed()
}

// close stops the workers once they have written what they have (or, when
// Apply fails with err, skipped it) and returns the first failure.
func (p *filePool) close(err error) error {
	if err != nil {
		p.fail(err)
	}
	p.once.Do(func() {
		close(p.jobs)
		p.workers.Wait()
	})
	return p.failed()
}

func (p *filePool) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (p *filePool) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *filePool) work(c dirCache) {
	defer p.workers.Done()
	defer c.forget("")
	var removals uint64
	for j := range p.jobs {
		if p.failed() == nil {
			if j.removals != removals {
				c.forget("")
				removals = j.removals
			}
			c.trim()
			if err := writeNewFile(&c, j.ppath, j.base, j.hdr, (*j.data)[:j.hdr.Size]); err != nil {
				p.fail(fmt.Errorf("%s: %w", j.hdr.Name, err))
			}
		}
		p.bufs.Put(j.data)
		p.pending.Done()
	}
}

// writeNewFile creates a regular file that does not exist yet in the
// existing directory ppath and gives it data, owner, xattrs, mode and
// times, all on its fd.
func writeNewFile(c *dirCache, ppath, base string, hdr *tar.Header, data []byte) error {
	pfd := c.root
	if ppath != "" {
		var err error
		if pfd, err = c.dirFD(ppath); err != nil {
			return err
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return err
		}
		data = data[n:]
	}
	return finishFile(fd, hdr)
}
