package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors. Errors returned by the store wrap them; test with
// [errors.Is].
var (
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt means the object's file exists but does not decode as the
	// requested JSON value. The error names the file.
	ErrCorrupt = errors.New("corrupt object")
	// ErrInvalidKey means a key or lock name failed [ValidateKey].
	ErrInvalidKey = errors.New("invalid key")
)

// TempMaxAge is how old a temporary file must be before [Store.CleanTemp]
// removes it. A live writer holds its temporary file for milliseconds; one
// that holds it longer than this loses it, and its write fails cleanly.
const TempMaxAge = time.Minute

const (
	filePerm = 0o600
	dirPerm  = 0o700

	// locksDir holds the lock files, under the root. It starts with a dot, so
	// no key can name it.
	locksDir = ".locks"

	// cleanDepth is how many directory levels below the root CleanTemp
	// searches: enough for every key layout in berth's state root
	// (tasks/<id>/state.json, taskdefs/<family>/<rev>.json), without walking
	// into unpacked layers and container root filesystems.
	cleanDepth = 3
)

var errNotDir = syscall.ENOTDIR

// Store is a directory of JSON objects, one file per object, addressed by
// slash-separated keys. It is safe for concurrent use by goroutines and by
// processes sharing the same root. The zero value is not usable; call [Open].
type Store struct {
	root string
}

// Open returns the store rooted at root, creating the directory (mode 0700)
// if it does not exist. A relative root is made absolute. Open also removes,
// best-effort and ignoring errors, temporary files that killed writers left
// behind (see [Store.CleanTemp]).
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("store: open: empty root")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", root, err)
	}
	if err := mkdirAll(abs); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	s := &Store{root: abs}
	_ = s.CleanTemp()
	return s, nil
}

// Root returns the store's root directory, an absolute path.
func (s *Store) Root() string { return s.root }

// ValidateKey checks that key is a valid object key or lock name: a relative
// slash-separated path of one or more components, none of which is empty,
// "." or "..", or starts with a dot (names starting with a dot are reserved
// for the store's temporary and lock files), with no backslash and no NUL. A
// valid key always names a path inside the store's root. The error wraps
// [ErrInvalidKey].
func ValidateKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("store: %w %q: %s", ErrInvalidKey, key, why)
	}
	switch {
	case key == "":
		return bad("empty")
	case strings.IndexByte(key, 0) >= 0:
		return bad("contains NUL")
	case strings.IndexByte(key, '\\') >= 0:
		return bad("contains a backslash")
	case key[0] == '/' || filepath.IsAbs(key):
		return bad("absolute")
	}
	for c := range strings.SplitSeq(key, "/") {
		switch {
		case c == "":
			return bad("empty path component")
		case c == "." || c == "..":
			return bad(fmt.Sprintf("%q path component", c))
		case c[0] == '.':
			return bad(fmt.Sprintf("path component %q starts with a dot (reserved for the store)", c))
		}
	}
	return nil
}

// Path returns the file that holds the object with the given key, or "" if
// the key is invalid. It does not check that the file exists.
func (s *Store) Path(key string) string {
	if ValidateKey(key) != nil {
		return ""
	}
	return filepath.Join(s.root, filepath.FromSlash(key))
}

func (s *Store) path(op, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", fmt.Errorf("store: %s: %w", op, err)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put stores v, encoded as JSON, under key, replacing any previous object
// atomically (see [WriteFileAtomic]): concurrent readers see the old object or
// the new one, and the new one is durable once Put returns nil. Missing
// parent directories are created with mode 0700; the file gets mode 0600.
func (s *Store) Put(key string, v any) error {
	if _, err := s.path("put", key); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return s.putRaw(key, append(data, '\n'))
}

// putRaw is Put after the JSON encoding: it stores data under key.
func (s *Store) putRaw(key string, data []byte) error {
	p, err := s.path("put", key)
	if err != nil {
		return err
	}
	if err := mkdirAll(filepath.Dir(p)); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	if err := writeFile(p, data, filePerm); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return nil
}

// Get decodes the object stored under key into v, which must be a non-nil
// pointer (to a zero value: JSON decoding merges into what is there). It
// returns an error wrapping [ErrNotFound] if there is no such object, and one
// wrapping [ErrCorrupt] and naming the file if the file does not decode into
// v.
func (s *Store) Get(key string, v any) error {
	p, err := s.path("get", key)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		if isNotExist(err) {
			return fmt.Errorf("store: get %s: %w", key, ErrNotFound)
		}
		return fmt.Errorf("store: get %s: %w", key, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		var inv *json.InvalidUnmarshalError
		if errors.As(err, &inv) {
			return fmt.Errorf("store: get %s: %w", key, err)
		}
		return fmt.Errorf("store: get %s: %w: file %s: %w", key, ErrCorrupt, p, err)
	}
	return nil
}

// Delete removes the object stored under key (or the directory key, if it is
// empty) and fsyncs its directory. Deleting an object that does not exist is
// not an error.
func (s *Store) Delete(key string) error {
	p, err := s.path("delete", key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	return nil
}

// List returns the sorted names of the entries (objects and directories) in
// the directory dir, a key, or the root if dir is "". Temporary files and
// other names starting with a dot are left out. A directory that does not
// exist has no entries: List returns nil and no error. Listing a file, or
// below one, is an error.
func (s *Store) List(dir string) ([]string, error) {
	p := s.root
	if dir != "" {
		var err error
		if p, err = s.path("list", dir); err != nil {
			return nil, err
		}
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("store: list %q: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Update does a locked read-modify-write of the object under key: it takes
// [Store.Lock] for key, decodes the object into v (a pointer to a zero value),
// calls fn with whether the object existed, and, if fn returns nil, stores v
// under key. If fn returns an error nothing is written and Update returns
// that error. A corrupt object is not passed to fn: Update returns the
// [ErrCorrupt] error. Waiting for the lock honours ctx.
//
// Update excludes other Update calls (and Lock holders) on the same key in
// any process; plain [Store.Put] calls do not take the lock.
func (s *Store) Update(ctx context.Context, key string, v any, fn func(exists bool) error) error {
	return s.update(ctx, key, v, fn, true)
}

// UpdateVolatile is [Store.Update] for an object that is about to be
// deleted: its write is atomic (readers see the old object or the new one,
// and killing the writer loses neither) but not fsynced, so after a power
// loss the old object may be back. It spares the writer the fsyncs of a
// record that is gone a moment later (the final state of an auto-removed
// task, read once by the client that waits for it).
func (s *Store) UpdateVolatile(ctx context.Context, key string, v any, fn func(exists bool) error) error {
	return s.update(ctx, key, v, fn, false)
}

func (s *Store) update(ctx context.Context, key string, v any, fn func(exists bool) error, durable bool) (err error) {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("store: update: %w", err)
	}
	l, err := s.Lock(ctx, key)
	if err != nil {
		return err
	}
	defer func() {
		if uerr := l.Unlock(); err == nil {
			err = uerr
		}
	}()
	exists := true
	if err := s.Get(key, v); err != nil {
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		exists = false
	}
	if err := fn(exists); err != nil {
		return err
	}
	if durable {
		return s.Put(key, v)
	}
	p, err := s.path("put", key)
	if err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	if err := writeAtomic(p, append(data, '\n'), filePerm, false); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return nil
}

// CleanTemp removes temporary files left behind by writers that were killed
// mid-write, once they are older than [TempMaxAge]; younger ones may belong
// to a live writer and are kept. It searches the root and the directories up
// to three levels below it (every key layout berth uses), does not follow
// symlinks or cross into other filesystems, and skips directories starting
// with a dot. Stale temporary files deeper down are harmless: they are
// invisible to List and Get. It returns the first error met, after trying
// everything.
func (s *Store) CleanTemp() error {
	return s.cleanTemp(time.Now().Add(-TempMaxAge))
}

// cleanTemp removes temporary files modified before cutoff.
func (s *Store) cleanTemp(cutoff time.Time) error {
	fi, err := os.Lstat(s.root)
	if err != nil {
		return fmt.Errorf("store: clean: %w", err)
	}
	dev, _ := deviceOf(fi)
	var first error
	note := func(err error) {
		if first == nil {
			first = fmt.Errorf("store: clean: %w", err)
		}
	}
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			if !isNotExist(err) {
				note(err)
			}
			return
		}
		for _, e := range ents {
			name, p := e.Name(), filepath.Join(dir, e.Name())
			switch {
			case e.Type().IsRegular() && isTempName(name):
				info, err := e.Info()
				if err != nil {
					if !isNotExist(err) {
						note(err)
					}
					continue
				}
				if info.ModTime().Before(cutoff) {
					if err := os.Remove(p); err != nil && !isNotExist(err) {
						note(err)
					}
				}
			case e.IsDir() && depth < cleanDepth && !strings.HasPrefix(name, "."):
				info, err := e.Info()
				if err != nil {
					continue
				}
				if d, ok := deviceOf(info); ok && d != dev {
					continue
				}
				walk(p, depth+1)
			}
		}
	}
	walk(s.root, 0)
	return first
}

// isNotExist reports whether err means the path does not exist, including
// the case where one of its parents is a file.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
