package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Tag records dst as another name for the image src resolves to.
func (s *Store) Tag(src, dst string) (*Record, error) {
	rec, err := s.Resolve(src)
	if err != nil {
		return nil, err
	}
	ref, err := ParseReference(dst)
	if err != nil {
		return nil, err
	}
	out := *rec
	out.Name = Name(ref)
	if err := s.putRecord(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Touch records that an image was just used (for least-recently-used GC).
func (s *Store) Touch(ctx context.Context, name string) error {
	var rec Record
	return s.state.Update(ctx, recordKey(name), &rec, func(exists bool) error {
		if !exists {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		rec.LastUsed = time.Now().UTC()
		return nil
	})
}

// InUseFunc reports whether something (a task, a service) needs an image,
// and what, for the error message. The service layer provides it.
type InUseFunc func(rec *Record) (bool, string)

// Remove deletes an image record (the name; content goes on prune). It
// refuses while inUse says the image is needed, unless force.
func (s *Store) Remove(ref string, force bool, inUse InUseFunc) (*Record, error) {
	rec, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	if inUse != nil && !force {
		if used, by := inUse(rec); used {
			return nil, fmt.Errorf("%w: %s is used by %s (use -f to remove it anyway)", ErrInUse, FamiliarName(rec.Name), by)
		}
	}
	if err := s.state.Delete(recordKey(rec.Name)); err != nil {
		return nil, err
	}
	return rec, nil
}

// PruneReport says what a prune removed.
type PruneReport struct {
	Images    []string `json:"images,omitempty"`
	Blobs     int      `json:"blobs"`
	Snapshots int      `json:"snapshots"`
	Bytes     int64    `json:"bytes"`
}

// Prune removes blobs and snapshots no image record references. With all,
// it first removes every image record that inUse does not protect.
func (s *Store) Prune(ctx context.Context, all bool, inUse InUseFunc) (*PruneReport, error) {
	unlock, err := s.lockGC(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep := &PruneReport{}
	recs, err := s.List()
	if err != nil {
		return nil, err
	}
	var keep []Record
	for i := range recs {
		r := &recs[i]
		if all {
			if used, _ := inUse.check(r); !used {
				if err := s.state.Delete(recordKey(r.Name)); err != nil {
					return rep, err
				}
				rep.Images = append(rep.Images, r.Name)
				continue
			}
		}
		keep = append(keep, *r)
	}
	return rep, s.sweep(keep, rep)
}

func (f InUseFunc) check(r *Record) (bool, string) {
	if f == nil {
		return false, ""
	}
	return f(r)
}

// sweep deletes content not referenced by keep. The caller holds the
// exclusive GC lock, so no pull is adding content meanwhile.
func (s *Store) sweep(keep []Record, rep *PruneReport) error {
	blobs := map[string]bool{}
	snaps := map[string]bool{}
	for _, r := range keep {
		blobs[r.Digest.Hex], blobs[r.ID.Hex] = true, true
		if r.IndexDigest != nil {
			blobs[r.IndexDigest.Hex] = true
		}
		for _, l := range r.Layers {
			blobs[l.Digest.Hex], snaps[l.ChainID.Hex] = true, true
		}
	}
	bdir := filepath.Join(s.root, blobsDir)
	entries, err := os.ReadDir(bdir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if blobs[e.Name()] {
			continue
		}
		// A temp file here belongs to a writer that holds the shared GC
		// lock, which we would not have got: it is a killed writer's.
		p := filepath.Join(bdir, e.Name())
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			rep.Blobs++
		}
		rep.Bytes += fi.Size()
	}
	sdir := filepath.Join(s.root, snapshotsDir)
	entries, err = os.ReadDir(sdir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if snaps[e.Name()] {
			continue
		}
		p := filepath.Join(sdir, e.Name())
		size := dirSize(p)
		// Rename first so a half-removed snapshot never looks complete.
		doomed := filepath.Join(sdir, tmpPrefix+"rm-"+e.Name())
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Rename(p, doomed); err != nil {
				return err
			}
			p = doomed
			rep.Snapshots++
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		rep.Bytes += size
	}
	return nil
}

// dirSize adds up the sizes of the regular files under dir, each inode once.
func dirSize(dir string) int64 {
	var n int64
	seen := map[uint64]bool{}
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if ino, ok := inode(fi); ok {
			if seen[ino] {
				return nil
			}
			seen[ino] = true
		}
		n += fi.Size()
		return nil
	})
	return n
}
