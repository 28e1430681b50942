package testimage

import (
	"fmt"
	"os"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The layers whose content never changes within a test process (busybox,
// the test app) are encoded once per encoding and kept in a per-process
// directory, so the many images tests build share them: compression is what
// costs, above all under -race.
var (
	cacheMu  sync.Mutex
	cacheDir string                  // created lazily, removed by Cleanup
	cached   map[string]*cachedEntry // by key and encoding
)

// cachedEntry is one shared layer, encoded once.
type cachedEntry struct {
	once  sync.Once
	layer v1.Layer
	err   error
}

// Cleanup removes the directory of layers shared between tests. Images
// built before are unreadable afterwards; later builds encode again. A
// package that builds images may call it from TestMain after m.Run, as
// testapp.Cleanup:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testimage.Cleanup()
//		testapp.Cleanup()
//		os.Exit(code)
//	}
//
// Without it the directory (named berth-testimage-*, a few MB per encoding
// of busybox and per architecture of the test app) stays in os.TempDir.
func Cleanup() {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if cacheDir != "" {
		_ = os.RemoveAll(cacheDir)
	}
	cacheDir, cached = "", nil
}

// sharedLayer encodes b once per process for key and encoding; key must
// identify b's content.
func sharedLayer(t testing.TB, key string, b *LayerBuilder, c Compression, f Format) v1.Layer {
	t.Helper()
	if b.err != nil {
		t.Fatalf("testimage: %v", b.err)
	}
	mt, err := LayerMediaType(c, f)
	if err != nil {
		t.Fatalf("testimage: %v", err)
	}
	full := fmt.Sprintf("%s|%v|%v", key, c, f)
	cacheMu.Lock()
	if cached == nil {
		cached = map[string]*cachedEntry{}
	}
	e := cached[full]
	if e == nil {
		e = &cachedEntry{}
		cached[full] = e
	}
	if cacheDir == "" {
		if cacheDir, err = os.MkdirTemp("", "berth-testimage-"); err != nil {
			cacheMu.Unlock()
			t.Fatalf("testimage: %v", err)
		}
	}
	parent := cacheDir
	cacheMu.Unlock()

	e.once.Do(func() {
		var dir string
		if dir, e.err = os.MkdirTemp(parent, "layer-"); e.err == nil {
			e.layer, e.err = b.encode(dir, c, mt)
		}
	})
	if e.err != nil {
		t.Fatalf("testimage: encoding shared layer %s: %v", full, e.err)
	}
	return e.layer
}
