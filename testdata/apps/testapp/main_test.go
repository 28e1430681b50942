package main

// These tests sit under testdata/, which `go test ./...` skips: run them with
// `go test ./testdata/apps/testapp`. Process-level behaviour (signals, exit
// codes of the built binary, serve end to end) is tested through the built
// binary in internal/testrig/testapp.

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer serves a fresh app's routes and records the app's exit calls
// and log lines.
type testServer struct {
	*httptest.Server
	app *app

	mu    sync.Mutex
	exits []int
	log   bytes.Buffer
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{}
	ts.app = newApp(log.New(lockedWriter{&ts.mu, &ts.log}, "", 0), func(code int) {
		ts.mu.Lock()
		ts.exits = append(ts.exits, code)
		ts.mu.Unlock()
	})
	ts.Server = httptest.NewServer(ts.app.routes())
	t.Cleanup(ts.Close)
	return ts
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (ts *testServer) logText() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.log.String()
}

func (ts *testServer) do(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, string(body)
}

func TestHandlers(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TESTAPP_ZZZ", "last")
	t.Setenv("TESTAPP_AAA", "first=with=equals")

	tests := []struct {
		name, method, path string
		code               int
		body               string // exact, unless contains is set
		contains           bool
	}{
		{"root", "GET", "/", 200, "hello from " + host + "\n", false},
		{"hello", "GET", "/hello", 200, "hello from " + host + "\n", false},
		{"unknown path", "GET", "/nope", 404, "", true},
		{"hello is GET only", "POST", "/hello", 405, "", true},
		{"health", "GET", "/health", 200, "ok\n", false},
		{"env", "GET", "/env", 200, "TESTAPP_AAA=first=with=equals\n", true},
		{"sleep", "GET", "/sleep?s=0.01", 200, "slept 10ms\n", false},
		{"sleep bad", "GET", "/sleep?s=-1", 400, "", true},
		{"sleep missing", "GET", "/sleep", 400, "", true},
		{"alloc bad", "GET", "/alloc?mib=x", 400, "", true},
		{"exit bad code", "GET", "/exit?code=256", 400, "", true},
		{"health set bad", "POST", "/health/set?state=sick", 400, "", true},
	}
	ts := newTestServer(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := ts.do(t, tc.method, tc.path)
			if code != tc.code {
				t.Fatalf("%s %s: status %d, want %d (body %q)", tc.method, tc.path, code, tc.code, body)
			}
			if tc.contains && !strings.Contains(body, tc.body) || !tc.contains && body != tc.body {
				t.Fatalf("%s %s: body %q, want %q", tc.method, tc.path, body, tc.body)
			}
		})
	}
}

func TestEnvSorted(t *testing.T) {
	t.Setenv("TESTAPP_B", "2")
	t.Setenv("TESTAPP_A", "1")
	ts := newTestServer(t)
	_, body := ts.do(t, "GET", "/env")
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) != len(os.Environ()) {
		t.Fatalf("got %d lines, want %d", len(lines), len(os.Environ()))
	}
	for i := 1; i < len(lines); i++ {
		if lines[i-1] > lines[i] {
			t.Fatalf("not sorted: %q before %q", lines[i-1], lines[i])
		}
	}
	if !strings.Contains(body, "TESTAPP_A=1\nTESTAPP_B=2\n") {
		t.Fatalf("TESTAPP_A and TESTAPP_B missing or out of order:\n%s", body)
	}
}

func TestHealthSwitch(t *testing.T) {
	ts := newTestServer(t)
	steps := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/health", 200, "ok\n"},
		{"POST", "/health/set?state=unhealthy", 200, "unhealthy\n"},
		{"GET", "/health", 503, "unhealthy\n"},
		{"GET", "/health/set?state=healthy", 200, "healthy\n"},
		{"GET", "/health", 200, "ok\n"},
	}
	for _, s := range steps {
		code, body := ts.do(t, s.method, s.path)
		if code != s.code || body != s.body {
			t.Fatalf("%s %s: %d %q, want %d %q", s.method, s.path, code, body, s.code, s.body)
		}
	}
}

func TestExitHandler(t *testing.T) {
	ts := newTestServer(t)
	code, body := ts.do(t, "GET", "/exit?code=7")
	if code != 200 || body != "exiting with code 7\n" {
		t.Fatalf("got %d %q", code, body)
	}
	if _, body := ts.do(t, "POST", "/exit"); body != "exiting with code 0\n" {
		t.Fatalf("default code: got %q", body)
	}
	// The handler exits after the answer is flushed, so the client may see
	// the answer first,
	// and of two requests either may call exit first.
	var exits []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ts.mu.Lock()
		exits = slices.Clone(ts.exits)
		ts.mu.Unlock()
		if len(exits) == 2 {
			break
		}
	}
	slices.Sort(exits)
	if !slices.Equal(exits, []int{0, 7}) {
		t.Fatalf("exit calls %v, want 0 and 7", exits)
	}
}

func TestAllocHolds(t *testing.T) {
	ts := newTestServer(t)
	if _, body := ts.do(t, "GET", "/alloc?mib=2"); body != "allocated 2 MiB, holding 2 MiB\n" {
		t.Fatalf("first alloc: %q", body)
	}
	if _, body := ts.do(t, "POST", "/alloc?mib=3"); body != "allocated 3 MiB, holding 5 MiB\n" {
		t.Fatalf("second alloc: %q", body)
	}
	ts.app.mu.Lock()
	defer ts.app.mu.Unlock()
	for i, b := range ts.app.held {
		if len(b) != 1<<20 || b[0] != 1 || b[len(b)-4096] != 1 {
			t.Fatalf("chunk %d not allocated and touched", i)
		}
	}
}

func TestWhoamiHandler(t *testing.T) {
	ts := newTestServer(t)
	code, body := ts.do(t, "GET", "/whoami")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	var id identity
	if err := json.Unmarshal([]byte(body), &id); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	wd, _ := os.Getwd()
	host, _ := os.Hostname()
	if id.UID != os.Getuid() || id.GID != os.Getgid() || id.Cwd != wd || id.Hostname != host || id.Groups == nil {
		t.Fatalf("whoami %+v; want uid %d gid %d cwd %s hostname %s, groups non-null",
			id, os.Getuid(), os.Getgid(), wd, host)
	}
}

func TestRequestLog(t *testing.T) {
	ts := newTestServer(t)
	ts.do(t, "GET", "/hello?x=1")
	ts.do(t, "GET", "/missing")
	lines := strings.Split(strings.TrimSpace(ts.logText()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one log line per request, got:\n%s", ts.logText())
	}
	if !strings.HasPrefix(lines[0], "GET /hello?x=1 200 ") || !strings.HasPrefix(lines[1], "GET /missing 404 ") {
		t.Fatalf("unexpected log lines:\n%s", ts.logText())
	}
}

// runCmd runs a subcommand in-process. Only subcommands that install no
// signal handlers run this way.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSubcommands(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	health := newTestServer(t)

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // prefix
	}{
		{"exit 0", []string{"exit", "0"}, 0, ""},
		{"exit 42", []string{"exit", "42"}, 42, ""},
		{"exit bad", []string{"exit", "x"}, 2, ""},
		{"exit range", []string{"exit", "256"}, 2, ""},
		{"echo", []string{"echo", "a", "b c"}, 0, "a b c\n"},
		{"echo none", []string{"echo"}, 0, "\n"},
		{"alloc", []string{"alloc", "3"}, 0, "allocated 3 MiB\n"},
		{"alloc bad", []string{"alloc", "-1"}, 2, ""},
		{"alloc missing", []string{"alloc"}, 2, ""},
		{"write", []string{"write", file, "hello", "world"}, 0, ""},
		{"cat", []string{"cat", file}, 0, "hello world"},
		{"cat missing", []string{"cat", filepath.Join(dir, "nope")}, 1, ""},
		{"write bad dir", []string{"write", filepath.Join(dir, "no", "f"), "x"}, 1, ""},
		{"healthcheck ok", []string{"healthcheck", health.URL + "/health"}, 0, "200 OK\n"},
		{"healthcheck 404", []string{"healthcheck", health.URL + "/nope"}, 1, "404 Not Found\n"},
		{"healthcheck refused", []string{"healthcheck", "http://127.0.0.1:1/"}, 1, ""},
		{"unknown", []string{"frobnicate"}, 2, ""},
		{"serve bad flag", []string{"serve", "-nope"}, 2, ""},
		{"serve bad listen", []string{"-listen", "256.0.0.1:1"}, 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tc.args...)
			if code != tc.code {
				t.Fatalf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, stderr)
			}
			if !strings.HasPrefix(stdout, tc.stdout) {
				t.Fatalf("%v: stdout %q, want prefix %q", tc.args, stdout, tc.stdout)
			}
			if tc.code == 2 && !strings.HasPrefix(stderr, "usage: testapp") && !strings.Contains(stderr, "flag provided but not defined") {
				t.Fatalf("%v: want usage on stderr, got %q", tc.args, stderr)
			}
		})
	}
}

func TestStatusAndEnvCommands(t *testing.T) {
	code, out, _ := runCmd(t, "status")
	if code != 0 {
		t.Fatalf("status exit %d", code)
	}
	want := map[string]bool{"CapEff": true, "CapBnd": true, "NoNewPrivs": true, "Seccomp": true}
	for line := range strings.Lines(out) {
		k, _, _ := strings.Cut(line, ":")
		if !want[k] {
			t.Fatalf("status printed unexpected line %q", line)
		}
		delete(want, k)
	}
	if len(want) != 0 {
		t.Fatalf("status output lacks %v:\n%s", want, out)
	}

	t.Setenv("TESTAPP_ENV", "v")
	code, out, _ = runCmd(t, "env")
	if code != 0 || !strings.Contains(out, "TESTAPP_ENV=v\n") {
		t.Fatalf("env: exit %d, output lacks TESTAPP_ENV:\n%s", code, out)
	}

	code, out, _ = runCmd(t, "whoami")
	var id identity
	if code != 0 || json.Unmarshal([]byte(out), &id) != nil || id.UID != os.Getuid() {
		t.Fatalf("whoami: exit %d, output %q", code, out)
	}
}
