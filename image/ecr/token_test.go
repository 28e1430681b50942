package ecr

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTokenFresh(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ecr := &Token{Username: "AWS", Password: "p", FetchedAt: t0, ExpiresAt: t0.Add(12 * time.Hour)}
	short := &Token{Username: "AWS", Password: "p", FetchedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	unknownFetch := &Token{Username: "AWS", Password: "p", ExpiresAt: t0.Add(time.Hour)}
	for _, tc := range []struct {
		name string
		tok  *Token
		at   time.Time
		want bool
	}{
		{"new", ecr, t0, true},
		{"just before the margin", ecr, t0.Add(12*time.Hour - RefreshMargin - time.Second), true},
		{"at the margin", ecr, t0.Add(12*time.Hour - RefreshMargin), false},
		{"inside the margin", ecr, t0.Add(12*time.Hour - time.Minute), false},
		{"expired", ecr, t0.Add(13 * time.Hour), false},
		{"short-lived, first half", short, t0.Add(4 * time.Minute), true},
		{"short-lived, second half", short, t0.Add(5 * time.Minute), false},
		{"no fetch time: full margin", unknownFetch, t0.Add(44 * time.Minute), true},
		{"no fetch time: inside the margin", unknownFetch, t0.Add(46 * time.Minute), false},
		{"nil", nil, t0, false},
		{"no password", &Token{Username: "AWS", FetchedAt: t0, ExpiresAt: t0.Add(time.Hour)}, t0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tok.Fresh(tc.at); got != tc.want {
				t.Fatalf("Fresh at +%s = %v, want %v", tc.at.Sub(t0), got, tc.want)
			}
		})
	}
}

func TestCacheStoreLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ecr-tokens")
	c := cache{dir: dir}
	key := "123456789012.us-east-1"
	if got, err := c.load(key); got != nil || err != nil {
		t.Fatalf("load from a missing directory: %+v, %v", got, err)
	}
	want := &Token{RegistryID: "123456789012", Region: "us-east-1", Username: "AWS", Password: "secret",
		FetchedAt: time.Now().UTC().Truncate(time.Second), ExpiresAt: time.Now().Add(12 * time.Hour).UTC().Truncate(time.Second), Source: "environment variables"}
	if err := c.store(key, want); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, key+".json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory: %v, %v; want mode 0700", di.Mode(), err)
	}
	got, err := c.load(key)
	if err != nil || got == nil || *got != *want {
		t.Fatalf("load = %+v, %v; want %+v", got, err, want)
	}

	// An existing file with a loose mode is replaced by a 0600 one.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.store(key, want); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("rewritten token file mode %v, want 0600", fi.Mode().Perm())
	}

	// Garbage, another registry's token, or an oversized file count as absent.
	for name, data := range map[string]string{
		"garbage":          "{not json",
		"another registry": `{"registryID":"999999999999","region":"us-east-1","username":"AWS","password":"x"}`,
		"oversized":        `{"password":"` + strings.Repeat("x", maxCacheFile) + `"}`,
		"empty":            "",
	} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := c.load(key); got != nil || err != nil {
			t.Errorf("%s: load = %+v, %v; want nothing", name, got, err)
		}
	}

	if err := c.remove(key); err != nil {
		t.Fatal(err)
	}
	if err := c.remove(key); err != nil {
		t.Fatalf("removing a missing token: %v", err)
	}

	// No directory: nothing is cached, nothing fails.
	if err := (cache{}).store(key, want); err != nil {
		t.Fatal(err)
	}
	if got, err := (cache{}).load(key); got != nil || err != nil {
		t.Fatalf("load without a directory: %+v, %v", got, err)
	}
}

// TestCacheAtomic: readers racing writers (goroutines standing in for the
// CLI and the daemon) only ever see a whole token, and no temporary file
// is left behind.
func TestCacheAtomic(t *testing.T) {
	c := cache{dir: t.TempDir()}
	key := "123456789012.eu-west-1"
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 100)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tok := &Token{RegistryID: "123456789012", Region: "eu-west-1", Username: "AWS",
					Password: fmt.Sprintf("%d-%d-%s", w, i, strings.Repeat("p", 2000)), ExpiresAt: time.Now().Add(time.Hour)}
				if err := c.store(key, tok); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	reads := 0
	for time.Now().Before(deadline) {
		if _, err := os.Stat(c.path(key)); err != nil {
			continue
		}
		got, err := c.load(key)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || !strings.HasSuffix(got.Password, strings.Repeat("p", 2000)) {
			t.Fatalf("read a partial token: %+v", got)
		}
		reads++
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if reads == 0 {
		t.Fatal("no reads")
	}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != key+".json" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("cache directory holds %v, want only %s.json", names, key)
	}
}
