package regconf

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A download that stops mid-body fails after readTimeout instead of hanging;
// a server that never answers fails after responseTimeout.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/silent" {
			<-release
			return
		}
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("first bytes"))
		w.(http.Flusher).Flush()
		<-release // then nothing more
	}))
	defer srv.Close()
	defer close(release)

	path := filepath.Join(t.TempDir(), "registries.json")
	writeFile(t, path, []byte(`{"readTimeout": "600ms", "responseTimeout": "300ms"}`), 0o644)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.CloseIdleConnections()
	client := &http.Client{Transport: cfg.Transport()}

	resp, err := client.Get(srv.URL + "/stall")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled body: err = %v, want a deadline error", err)
	}
	// The error kinds show which timeout fired; no wall-clock bound.
	_, err = client.Get(srv.URL + "/silent")
	if err == nil || !strings.Contains(err.Error(), "awaiting response headers") {
		t.Fatalf("silent server: err = %v", err)
	}
	t.Logf("silent server: %v", err)
}
