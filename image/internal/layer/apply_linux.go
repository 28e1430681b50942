//go:build linux

package layer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Apply unpacks the uncompressed tar stream r into dir, which must be an
// existing, empty directory (not a symlink), converting OCI whiteouts to
// overlayfs form and refusing hostile input (see the package doc). It reads
// r to EOF, past the tar end-of-archive marker, so Result.DiffID covers the
// whole stream. ctx cancels it between reads.
//
// On error, dir holds whatever was written so far, all of it inside dir:
// the caller removes it. Nothing is ever written outside dir.
func Apply(ctx context.Context, dir string, r io.Reader, opts Options) (Result, error) {
	opts = opts.withDefaults()
	if err := checkEmptyDir(dir); err != nil {
		return Result{}, err
	}
	c := &counter{ctx: ctx, r: r, h: sha256.New(), max: opts.MaxSize}
	v := newValidator(opts, func() int64 { return c.n })
	w, err := newWriter(dir)
	if err != nil {
		return Result{}, err
	}
	defer w.close()

	if err := applyEntries(ctx, tar.NewReader(c), v, w); err != nil {
		return Result{Entries: v.entries}, classifyApply(ctx, c, err)
	}
	if err := v.makeOpaque(w); err != nil {
		return Result{Entries: v.entries}, err
	}
	// archive/tar stops after the end-of-archive marker's two zero blocks;
	// the rest of the record padding belongs to the DiffID too.
	if _, err := io.CopyBuffer(io.Discard, c, w.buf); err != nil {
		return Result{Entries: v.entries}, classifyApply(ctx, c, err)
	}
	return Result{
		DiffID:     "sha256:" + hex.EncodeToString(c.h.Sum(nil)),
		Size:       c.n,
		Entries:    v.entries,
		OpaqueRoot: v.opaqueRoot,
	}, nil
}

// applyEntries reads the tar stream, lets the validator judge each header
// (after cleaning its name as containerd's applier did, so that messages
// name entries as before) and writes what it accepts: small new files in
// the pool's workers, the rest itself, in order. Then it sets the
// directories' times.
func applyEntries(ctx context.Context, tr *tar.Reader, v *validator, w *writer) (err error) {
	pool := newFilePool(w, poolWorkers)
	defer func() {
		if cerr := pool.close(err); err == nil {
			err = cerr
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := pool.failed(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		hdr.Name = filepath.Clean(hdr.Name)
		ok, err := v.filter(hdr)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if pool.takes(hdr, v.fresh) {
			if err := pool.submit(hdr, tr); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
			continue
		}
		// Removing or replacing something, or linking to a file, waits
		// for the files handed over so far.
		if !v.fresh || hdr.Typeflag == tar.TypeLink {
			if err := pool.wait(); err != nil {
				return err
			}
		}
		if err := w.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	if err := pool.close(nil); err != nil {
		return err
	}
	return w.finish()
}

func checkEmptyDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("layer directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("layer directory %s: not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("layer directory: %w", err)
	}
	defer f.Close()
	if names, err := f.Readdirnames(1); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("layer directory: %w", err)
		}
		return fmt.Errorf("layer directory %s: not empty (holds %q)", dir, names[0])
	}
	return nil
}

// makeOpaque marks the directories that a whiteout of this same layer
// named: overlayfs must not show the lower layers' content below them.
func (v *validator) makeOpaque(w *writer) error {
	done := make(map[string]bool, len(v.opaque))
	for _, name := range v.opaque {
		n := v.lookup(name)
		if done[name] || n == nil || n.kind != kindDir || !n.whitedOut {
			continue
		}
		done[name] = true
		w.trim()
		fd, err := w.dirFD(name)
		if err == nil {
			err = unix.Fsetxattr(fd, "trusted.overlay.opaque", []byte("y"), 0)
		}
		if err != nil {
			return fmt.Errorf("mark %q opaque: %w", name, err)
		}
	}
	return nil
}

// classifyApply maps applyEntries' error onto the package's sentinels.
func classifyApply(ctx context.Context, c *counter, err error) error {
	var ee *EntryError
	switch {
	case errors.As(err, &ee):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("apply layer: %w", ctx.Err())
	case c.err != nil && !errors.Is(c.err, io.EOF):
		// The stream's own failure (too large, corrupt compressed data, a
		// network error), whatever archive/tar made of it.
		return fmt.Errorf("apply layer: %w", c.err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: truncated tar stream", ErrCorrupt)
	case errors.Is(err, tar.ErrHeader):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case errors.Is(err, tar.ErrInsecurePath): // only with GODEBUG=tarinsecurepath=0
		return fmt.Errorf("%w: %w", ErrHostile, err)
	}
	return fmt.Errorf("apply layer: %w", err)
}

// counter hashes and counts the uncompressed stream, fails past max with
// ErrTooLarge, and stops on ctx. Its first error sticks.
type counter struct {
	ctx context.Context
	r   io.Reader
	h   hash.Hash
	n   int64
	max int64
	err error
}

func (c *counter) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	if room := c.max - c.n + 1; int64(len(p)) > room {
		p = p[:room] // one byte past max is enough to know
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.max {
		c.err = fmt.Errorf("%w: more than %d uncompressed bytes (MaxSize)", ErrTooLarge, c.max)
		return n, c.err
	}
	if err != nil {
		c.err = err
	}
	return n, err
}
