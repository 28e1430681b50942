package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// badKeys are malformed keys, each with the reason it must be rejected.
var badKeys = []struct{ name, key string }{
	{"empty", ""},
	{"absolute", "/etc/passwd"},
	{"root", "/"},
	{"dotdot", ".."},
	{"dotdot first", "../x"},
	{"dotdot middle", "a/../../x"},
	{"dotdot last", "a/.."},
	{"dot", "."},
	{"dot component", "a/./b"},
	{"empty component", "a//b"},
	{"trailing slash", "a/"},
	{"leading dot", ".hidden"},
	{"dot component inside", "a/.locks/b"},
	{"temp file name", "a/.b.tmp-0123456789abcdef"},
	{"backslash", `a\b`},
	{"backslash dotdot", `..\x`},
	{"NUL", "a\x00b"},
	{"NUL only", "\x00"},
}

var goodKeys = []string{
	"a",
	"tasks/abc/state.json",
	"images/docker.io_library_alpine:3.20.json",
	"taskdefs/web/12.json",
	"a..b",
	"a/b../c",
	"x.",
	"spaces are fine",
	"ünïcode/ключ",
}

// TestValidateKey checks the key rules: malformed keys are rejected with
// ErrInvalidKey, and ordinary ones (including names merely containing dots)
// are accepted.
func TestValidateKey(t *testing.T) {
	for _, tc := range badKeys {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateKey(tc.key)
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, want ErrInvalidKey", tc.key, err)
			}
			if !strings.Contains(err.Error(), "invalid key") {
				t.Errorf("error %q does not say what is wrong", err)
			}
		})
	}
	for _, key := range goodKeys {
		if err := ValidateKey(key); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", key, err)
		}
	}
}

// TestMethodsRejectInvalidKeys checks that every method taking a key
// rejects malformed ones before touching the disk.
func TestMethodsRejectInvalidKeys(t *testing.T) {
	s := newStore(t)
	for _, tc := range badKeys {
		t.Run(tc.name, func(t *testing.T) {
			var v map[string]any
			checks := map[string]error{
				"Put":    s.Put(tc.key, map[string]int{"x": 1}),
				"Get":    s.Get(tc.key, &v),
				"Delete": s.Delete(tc.key),
				"Update": s.Update(t.Context(), tc.key, &v, func(bool) error { return nil }),
			}
			_, checks["Lock"] = s.Lock(t.Context(), tc.key)
			if tc.key != "" { // List("") lists the root
				_, checks["List"] = s.List(tc.key)
			}
			for m, err := range checks {
				if !errors.Is(err, ErrInvalidKey) {
					t.Errorf("%s(%q) = %v, want ErrInvalidKey", m, tc.key, err)
				}
			}
			if p := s.Path(tc.key); p != "" {
				t.Errorf("Path(%q) = %q, want \"\"", tc.key, p)
			}
		})
	}
	// Nothing was written anywhere, not even a lock file.
	names, err := s.List("")
	if err != nil || len(names) != 0 {
		t.Fatalf("List(\"\") = %q, %v after only invalid keys", names, err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), locksDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lock directory exists after only invalid keys: %v", err)
	}
}

type taskState struct {
	ID     string            `json:"id"`
	Status string            `json:"status"`
	Pid    int               `json:"pid"`
	Labels map[string]string `json:"labels,omitempty"`
}

// TestPutGetRoundTrip stores objects at several depths and reads them back,
// including overwriting an existing one.
func TestPutGetRoundTrip(t *testing.T) {
	s := newStore(t)
	cases := []struct {
		key string
		val taskState
	}{
		{"top.json", taskState{ID: "top"}},
		{"services/web.json", taskState{ID: "web", Status: "running", Labels: map[string]string{"a": "b"}}},
		{"tasks/abc/state.json", taskState{ID: "abc", Status: "created", Pid: 42}},
		{"tasks/abc/state.json", taskState{ID: "abc", Status: "running", Pid: 43}}, // overwrite
		{"a/b/c/d/e/f.json", taskState{ID: "deep"}},
	}
	for _, tc := range cases {
		if err := s.Put(tc.key, tc.val); err != nil {
			t.Fatalf("Put(%q): %v", tc.key, err)
		}
		var got taskState
		if err := s.Get(tc.key, &got); err != nil {
			t.Fatalf("Get(%q): %v", tc.key, err)
		}
		if got.ID != tc.val.ID || got.Status != tc.val.Status || got.Pid != tc.val.Pid || len(got.Labels) != len(tc.val.Labels) {
			t.Fatalf("Get(%q) = %+v, want %+v", tc.key, got, tc.val)
		}
		if p := s.Path(tc.key); p != filepath.Join(s.Root(), filepath.FromSlash(tc.key)) {
			t.Fatalf("Path(%q) = %q", tc.key, p)
		}
	}
	// Put leaves no temporary files behind.
	for _, dir := range []string{"tasks/abc", "services", "a/b/c/d/e"} {
		ents, err := os.ReadDir(s.Path(dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 {
			t.Errorf("%s holds %d entries, want 1", dir, len(ents))
		}
	}
}

// TestPutUnencodable checks that a value JSON cannot encode is an error and
// writes nothing.
func TestPutUnencodable(t *testing.T) {
	s := newStore(t)
	if err := s.Put("bad", make(chan int)); err == nil {
		t.Fatal("Put(chan) succeeded")
	}
	if names, _ := s.List(""); len(names) != 0 {
		t.Fatalf("Put(chan) left %q", names)
	}
}

// TestGetNotFound checks ErrNotFound for a missing object, a missing parent
// directory, and a parent that is a file.
func TestGetNotFound(t *testing.T) {
	s := newStore(t)
	if err := s.Put("file", 1); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"missing", "no/such/dir.json", "file/child"} {
		var v any
		err := s.Get(key, &v)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", key, err)
		}
		if errors.Is(err, ErrCorrupt) {
			t.Errorf("Get(%q) = %v, also ErrCorrupt", key, err)
		}
	}
}

// TestGetCorrupt checks that a file that does not decode gives ErrCorrupt
// with the file's path in the message, while a bad destination (not a
// pointer) is the caller's error, not corruption.
func TestGetCorrupt(t *testing.T) {
	s := newStore(t)
	cases := map[string]string{
		"garbage":   "\x00\x01garbage\xff",
		"empty":     "",
		"truncated": `{"id":"abc","sta`,
		"trailing":  `{"id":"abc"} {"id":"def"}`,
		"wrongtype": `["not","an","object"]`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			key := "tasks/" + name + "/state.json"
			if err := os.MkdirAll(filepath.Dir(s.Path(key)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(key), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			var v taskState
			err := s.Get(key, &v)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get = %v, want ErrCorrupt", err)
			}
			if errors.Is(err, ErrNotFound) {
				t.Fatalf("Get = %v, also ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), s.Path(key)) {
				t.Fatalf("error %q does not name the file %s", err, s.Path(key))
			}
		})
	}
	if err := s.Put("ok", taskState{ID: "x"}); err != nil {
		t.Fatal(err)
	}
	var notPtr taskState
	if err := s.Get("ok", notPtr); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get into a non-pointer = %v, want a non-ErrCorrupt error", err)
	}
}

// TestDelete checks that Delete removes an object, is idempotent, and
// refuses to remove a directory that still has entries.
func TestDelete(t *testing.T) {
	s := newStore(t)
	if err := s.Put("tasks/abc/state.json", taskState{ID: "abc"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("tasks/abc"); err == nil {
		t.Fatal("Delete of a non-empty directory succeeded")
	}
	for range 2 {
		if err := s.Delete("tasks/abc/state.json"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		var v taskState
		if err := s.Get("tasks/abc/state.json", &v); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
		}
	}
	for _, key := range []string{"tasks/abc", "never/existed", "tasks/abc/state.json/below"} {
		if err := s.Delete(key); err != nil {
			t.Fatalf("Delete(%q) = %v, want nil", key, err)
		}
	}
}

// TestList checks List's sorting, that it shows directories, hides dotfiles
// (temporary and lock files included), and treats a missing directory as
// empty.
func TestList(t *testing.T) {
	s := newStore(t)
	for _, key := range []string{"svc/b.json", "svc/a.json", "svc/c/x.json", "svc/B.json", "other.json"} {
		if err := s.Put(key, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{".a.json.tmp-0123456789abcdef", ".hidden"} {
		if err := os.WriteFile(filepath.Join(s.Path("svc"), name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := s.Lock(t.Context(), "svc/a.json")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()

	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"svc", []string{"B.json", "a.json", "b.json", "c"}},
		{"svc/c", []string{"x.json"}},
		{"", []string{"other.json", "svc"}},
		{"missing", nil},
	} {
		got, err := s.List(tc.dir)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.dir, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.dir, got, tc.want)
		}
	}
	for _, dir := range []string{"other.json", "svc/c/x.json/below"} {
		if _, err := s.List(dir); err == nil {
			t.Errorf("List(%q) of a file succeeded", dir)
		}
	}
}

// TestPermissions checks the modes of what the store creates: the root and
// every directory 0700, every object 0600.
func TestPermissions(t *testing.T) {
	root := filepath.Join(t.TempDir(), "var", "lib", "berth")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("tasks/abc/state.json", 1); err != nil {
		t.Fatal(err)
	}
	l, err := s.Lock(t.Context(), "tasks/abc")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	for _, tc := range []struct {
		path string
		mode fs.FileMode
	}{
		{filepath.Dir(filepath.Dir(root)), fs.ModeDir | 0o700},
		{root, fs.ModeDir | 0o700},
		{s.Path("tasks"), fs.ModeDir | 0o700},
		{s.Path("tasks/abc"), fs.ModeDir | 0o700},
		{s.Path("tasks/abc/state.json"), 0o600},
		{filepath.Join(root, locksDir), fs.ModeDir | 0o700},
		{s.lockPath("tasks/abc"), 0o600},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s has mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
}

// TestOpen checks that Open makes a relative root absolute, reuses an
// existing one, and refuses a root that is a file.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := Open("state")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state"); s.Root() != want {
		t.Fatalf("Root() = %q, want %q", s.Root(), want)
	}
	if err := s.Put("x", 1); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s2.Get("x", &n); err != nil || n != 1 {
		t.Fatalf("Get through a second Open = %d, %v", n, err)
	}
	if _, err := Open(filepath.Join(dir, "state", "x")); err == nil {
		t.Fatal("Open on a file succeeded")
	}
	if _, err := Open(""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
}

// TestWriteFileAtomic checks creating and replacing a file (the new mode
// wins), and that a failed write leaves the target and no temporary file.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "two" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	if fi, _ := os.Stat(p); fi.Mode() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}

	// The rename fails: the target is a non-empty directory.
	blocker := filepath.Join(dir, "blocker")
	if err := os.MkdirAll(filepath.Join(blocker, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(blocker, []byte("x"), 0o600); err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	// The directory does not exist.
	if err := WriteFileAtomic(filepath.Join(dir, "nodir", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if err := WriteFileAtomic(dir+"/", []byte("x"), 0o600); err == nil {
		t.Fatal("write to a path ending in a slash succeeded")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"blocker", "f"}; !slices.Equal(names, want) {
		t.Fatalf("directory holds %q, want %q (a temporary file leaked)", names, want)
	}
}

// TestReadersNeverSeePartial has readers Get an object while a writer keeps
// replacing it with objects of very different sizes: every read is complete.
func TestReadersNeverSeePartial(t *testing.T) {
	s := newStore(t)
	big := strings.Repeat("x", 256<<10)
	type obj struct {
		N    int    `json:"n"`
		Data string `json:"data"`
	}
	if err := s.Put("o", obj{0, ""}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(done)
		for i := 1; i <= 30; i++ {
			data := ""
			if i%2 == 1 {
				data = big
			}
			if err := s.Put("o", obj{i, data}); err != nil {
				errs <- err
				return
			}
		}
	}()
	reads := 0
	for {
		select {
		case <-done:
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			t.Logf("%d complete reads", reads)
			return
		default:
		}
		var o obj
		if err := s.Get("o", &o); err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		if (o.N%2 == 1) != (o.Data == big) {
			t.Fatalf("read %d: version %d has %d bytes of data", reads, o.N, len(o.Data))
		}
		reads++
	}
}

// TestTempNames checks the temporary-file naming: generated names are
// recognised, and other dotfiles and ordinary names are not.
func TestTempNames(t *testing.T) {
	for _, base := range []string{"a", "state.json", strings.Repeat("x", 255)} {
		n := tempName(base)
		if !isTempName(n) || len(n) > 255 {
			t.Errorf("tempName(%.10q...) = %q: not recognised", base, n)
		}
	}
	if n := tempName(strings.Repeat("x", maxTempBase)); len(n) != 255 {
		t.Errorf("longest temporary name is %d bytes, want 255", len(n))
	}
	for _, name := range []string{"a.tmp-0123456789abcdef", ".a.tmp-0123456789abcde", ".a.tmp-0123456789abcdeg", ".a.tmp-0123456789ABCDEF", ".hidden", ".tmp-", "x"} {
		if isTempName(name) {
			t.Errorf("isTempName(%q) = true", name)
		}
	}
}

// TestCleanTemp checks the sweep: stale temporary files go, young ones (a
// live writer's) and other dotfiles stay, and Open runs it.
func TestCleanTemp(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-2 * TempMaxAge)
	mk := func(rel string, mtime time.Time) string {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const tmp = ".state.json.tmp-00000000deadbeef"
	gone := []string{
		mk(tmp, old),
		mk("tasks/"+tmp, old),
		mk("tasks/abc/"+tmp, old),
		mk("a/b/c/"+tmp, old),
	}
	kept := []string{
		mk("tasks/abc/.state.json.tmp-00000000cafebabe", time.Now()), // a live writer's
		mk("tasks/abc/.hidden", old),                                 // not ours
		mk("tasks/abc/state.json", old),                              // an object
		mk("a/b/c/d/"+tmp, old),                                      // too deep to search
		mk(".dotdir/"+tmp, old),                                      // dot directories are skipped
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	for _, p := range gone {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived the sweep: %v", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
}

// TestUpdate checks Update's contract: exists reports whether the object
// was there, v is stored when fn succeeds, nothing is written when fn fails,
// and a corrupt object is reported without calling fn.
// TestUpdate runs the same checks on Update and on UpdateVolatile (which
// differs only in skipping the fsyncs).
func TestUpdate(t *testing.T) {
	for name, method := range map[string]func(*Store) func(context.Context, string, any, func(bool) error) error{
		"durable":  func(s *Store) func(context.Context, string, any, func(bool) error) error { return s.Update },
		"volatile": func(s *Store) func(context.Context, string, any, func(bool) error) error { return s.UpdateVolatile },
	} {
		t.Run(name, func(t *testing.T) { testUpdate(t, method) })
	}
}

func testUpdate(t *testing.T, method func(*Store) func(context.Context, string, any, func(bool) error) error) {
	s := newStore(t)
	update := method(s)
	ctx := t.Context()
	var c counter
	calls := 0
	inc := func(wantExists bool) func(bool) error {
		return func(exists bool) error {
			calls++
			if exists != wantExists {
				t.Fatalf("exists = %v, want %v", exists, wantExists)
			}
			c.N++
			return nil
		}
	}
	if err := update(ctx, "c", &c, inc(false)); err != nil {
		t.Fatal(err)
	}
	c = counter{}
	if err := update(ctx, "c", &c, inc(true)); err != nil {
		t.Fatal(err)
	}
	if c.N != 2 {
		t.Fatalf("after two updates N = %d", c.N)
	}

	boom := errors.New("boom")
	c = counter{}
	err := update(ctx, "c", &c, func(bool) error { c.N = 100; return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	var got counter
	if err := s.Get("c", &got); err != nil || got.N != 2 {
		t.Fatalf("after a failed update Get = %+v, %v, want N=2", got, err)
	}
	if err := update(ctx, "new", &counter{}, func(bool) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := s.Get("new", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed update created the object: %v", err)
	}

	if err := os.WriteFile(s.Path("c"), []byte("{bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	calls = 0
	if err := update(ctx, "c", &counter{}, inc(true)); !errors.Is(err, ErrCorrupt) || calls != 0 {
		t.Fatalf("Update of a corrupt object = %v with %d calls, want ErrCorrupt and none", err, calls)
	}
	// Written whole, with the store's mode, no temporary file left.
	if fi, err := os.Stat(s.Path("c")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored file: %v, %v", fi, err)
	}
	ents, err := os.ReadDir(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if isTempName(e.Name()) {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
	// The lock was released every time.
	l, err := s.Lock(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// FuzzKey checks that ValidateKey never accepts a key naming a path outside
// the root (or the root itself, or the store's reserved names), and that
// Path agrees with it.
func FuzzKey(f *testing.F) {
	for _, tc := range badKeys {
		f.Add(tc.key)
	}
	for _, k := range goodKeys {
		f.Add(k)
	}
	f.Add("a/b/../../../etc")
	f.Add("a/\x00/b")
	root := f.TempDir()
	s := &Store{root: root}
	f.Fuzz(func(t *testing.T, key string) {
		p := s.Path(key)
		if err := ValidateKey(key); err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, not ErrInvalidKey", key, err)
			}
			if p != "" {
				t.Fatalf("Path(%q) = %q for an invalid key", key, p)
			}
			return
		}
		if strings.ContainsAny(key, "\x00\\") {
			t.Fatalf("accepted %q", key)
		}
		for _, q := range []string{p, s.lockPath(key)} {
			rel, err := filepath.Rel(root, q)
			if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
				t.Fatalf("key %q maps to %q, outside root %q", key, q, root)
			}
			if filepath.Clean(q) != q {
				t.Fatalf("key %q maps to unclean path %q", key, q)
			}
		}
		if rel, _ := filepath.Rel(root, p); filepath.ToSlash(rel) != key {
			t.Fatalf("key %q maps to %q, not root/key", key, p)
		}
		if strings.HasPrefix(key, locksDir) && (len(key) == len(locksDir) || key[len(locksDir)] == '/') {
			t.Fatalf("key %q names the lock directory", key)
		}
	})
}
