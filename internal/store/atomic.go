package store

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writeFile is the write strategy behind [Store.Put]. It is a variable only so
// that the crash test can swap in a plain truncate-and-write and prove that it
// catches the corruption that strategy causes.
var writeFile = writeFileAtomic

// WriteFileAtomic replaces the file at path with data, atomically and durably.
//
// It writes data to a new temporary file in path's directory (created with
// O_EXCL and mode perm before the umask), fsyncs it, renames it over path and
// fsyncs the directory. Readers see either the old content of path or data,
// never anything in between, even if the caller is killed; once it returns nil
// the new content survives a power loss. On error the temporary file is
// removed and path is left as it was (or, if only the final directory fsync
// failed, holds data but may not be durable yet).
//
// The directory must exist. The new file gets mode perm (less the umask)
// whatever the mode of the file it replaces.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, true)
}

// writeAtomic is writeFileAtomic, with the fsyncs only when durable: a
// write without them is still atomic for every reader and survives the
// writer being killed, but a power loss may bring the old file back.
func writeAtomic(path string, data []byte, perm os.FileMode, durable bool) (err error) {
	dir, base := filepath.Split(path)
	if base == "" {
		return fmt.Errorf("store: write %s: no file name", path)
	}
	if dir == "" {
		dir = "."
	}
	f, tmp, err := createTemp(dir, base, perm)
	if err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	closed, renamed := false, false
	defer func() {
		if err == nil {
			return
		}
		if !closed {
			_ = f.Close()
		}
		if !renamed {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	if durable {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("store: write %s: sync: %w", path, err)
		}
	}
	closed = true
	if err = f.Close(); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	renamed = true
	if !durable {
		return nil
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	return nil
}

// Temporary files are named ".<base>.tmp-<16 hex digits>": a dotfile, so no
// valid key names one and List skips it, and a pattern CleanTemp can
// recognise.
const (
	tempInfix   = ".tmp-"
	tempRandLen = 16
	// maxTempBase keeps temporary names within NAME_MAX (255) for any base
	// name the filesystem accepts.
	maxTempBase = 255 - 1 - len(tempInfix) - tempRandLen
)

// createTemp creates a new temporary file for base in dir with O_EXCL,
// retrying on the (unlikely) name collision.
func createTemp(dir, base string, perm os.FileMode) (*os.File, string, error) {
	for range 100 {
		name := filepath.Join(dir, tempName(base))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			return f, name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, "", err
		}
	}
	return nil, "", fmt.Errorf("create temporary file in %s: too many name collisions", dir)
}

func tempName(base string) string {
	if len(base) > maxTempBase {
		base = base[:maxTempBase]
	}
	r := strconv.FormatUint(rand.Uint64(), 16)
	return "." + base + tempInfix + strings.Repeat("0", tempRandLen-len(r)) + r
}

// isTempName reports whether a directory entry name is one of our temporary
// files.
func isTempName(name string) bool {
	if len(name) < 2+len(tempInfix)+tempRandLen || name[0] != '.' {
		return false
	}
	i := len(name) - tempRandLen - len(tempInfix)
	if name[i:i+len(tempInfix)] != tempInfix {
		return false
	}
	for _, c := range name[i+len(tempInfix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// syncDir fsyncs a directory, making the entries created, renamed or removed
// in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// mkdirAll creates dir and any missing parents with mode 0700, fsyncing each
// parent that gains an entry so the new directories survive a power loss.
func mkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errNotDir}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, dirPerm); err != nil {
		// Lost a race with another process creating it: fine, as long as it
		// is a directory. Sync the parent anyway, since that process may be
		// killed before it does.
		fi, serr := os.Stat(dir)
		if serr != nil || !fi.IsDir() {
			return err
		}
	}
	return syncDir(parent)
}
