//go:build linux

package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Helpers shared by the robust_*_test.go files: a throttling, counting,
// fault-injecting reverse proxy in front of the registry fixture, a re-exec
// helper that pulls in a child process, and store inspection.

// rbProxy is a reverse proxy on 127.0.0.1 in front of a registry. It counts
// requests, can slow or stall blob bodies, hold blob GETs behind a gate,
// answer with injected errors or never answer at all.
type rbProxy struct {
	Host string // 127.0.0.1:PORT: use it in references instead of the registry's

	srv  *httptest.Server
	rp   *httputil.ReverseProxy
	stop chan struct{}

	mu   sync.Mutex
	gets map[string]int  // GET .../blobs/<digest>, by digest
	reqs map[string]int  // by "METHOD path"
	rate int64           // bytes per second per blob body; 0 for full speed
	hold map[string]bool // blob digests whose body stalls half way
	cut  map[string]bool // blob digests whose connection is cut half way
	fail func(r *http.Request, n int) int
	hang bool
	gate chan struct{}
}

// rbStartProxy starts a proxy to the registry at host ("127.0.0.1:PORT",
// plain HTTP); it is closed when the test ends.
func rbStartProxy(t *testing.T, host string) *rbProxy {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: host}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	p := &rbProxy{stop: make(chan struct{}), gets: map[string]int{}, reqs: map[string]int{}, hold: map[string]bool{}, cut: map[string]bool{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:      tr,
		FlushInterval:  -1, // a stalled body has really sent what it read
		ModifyResponse: p.modify,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	p.srv = httptest.NewUnstartedServer(p)
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Start()
	p.Host = strings.TrimPrefix(p.srv.URL, "http://")
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() {
		close(p.stop)
		p.srv.CloseClientConnections()
	})
	return p
}

// Ref is a reference to repoAndTag through the proxy.
func (p *rbProxy) Ref(repoAndTag string) string { return p.Host + "/" + repoAndTag }

// rbBlobDigest returns the digest a /v2/<name>/blobs/<digest> path names, or "".
func rbBlobDigest(path string) string {
	i := strings.LastIndex(path, "/blobs/")
	if !strings.HasPrefix(path, "/v2/") || i < 0 {
		return ""
	}
	d := path[i+len("/blobs/"):]
	if !strings.HasPrefix(d, "sha256:") || strings.Contains(d, "/") {
		return ""
	}
	return d
}

func (p *rbProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	digest := rbBlobDigest(r.URL.Path)
	p.mu.Lock()
	n := p.reqs[key]
	p.reqs[key]++
	if r.Method == http.MethodGet && digest != "" {
		p.gets[digest]++
	}
	fail, hang, gate := p.fail, p.hang, p.gate
	p.mu.Unlock()

	if hang {
		select {
		case <-r.Context().Done():
		case <-p.stop:
		}
		return
	}
	if fail != nil {
		if code := fail(r, n); code != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected status %d"}]}`, code)
			return
		}
	}
	if gate != nil && digest != "" {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		case <-p.stop:
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// modify wraps blob bodies that are throttled or held.
func (p *rbProxy) modify(resp *http.Response) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := rbBlobDigest(resp.Request.URL.Path)
	if d == "" || resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return nil
	}
	holdAt := int64(-1)
	if p.hold[d] || p.cut[d] {
		holdAt = resp.ContentLength / 2
	}
	if p.rate == 0 && holdAt < 0 {
		return nil
	}
	resp.Body = &rbSlowBody{rc: resp.Body, ctx: resp.Request.Context(), stop: p.stop, rate: p.rate, holdAt: holdAt, cut: p.cut[d]}
	return nil
}

// set changes the proxy's behaviour for requests that arrive from now on.
func (p *rbProxy) set(f func(p *rbProxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// reset clears the counters.
func (p *rbProxy) reset() {
	p.set(func(p *rbProxy) { clear(p.gets); clear(p.reqs) })
}

// blobGets is how many times the blob was fetched with GET.
func (p *rbProxy) blobGets(d v1.Hash) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets[d.String()]
}

// requests is how many "METHOD path" requests arrived.
func (p *rbProxy) requests(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reqs[method+" "+path]
}

// rbSlowBody throttles a body to rate bytes per second and, with holdAt >= 0,
// stops after holdAt bytes until the request or the proxy ends, or, with
// cut, fails there, which makes the ReverseProxy drop the connection.
type rbSlowBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	stop   chan struct{}
	rate   int64
	holdAt int64
	cut    bool
	n      int64
}

func (b *rbSlowBody) Read(buf []byte) (int, error) {
	if b.holdAt >= 0 && b.n >= b.holdAt {
		if b.cut {
			return 0, errors.New("connection cut by the test proxy")
		}
		select {
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		case <-b.stop:
			return 0, errors.New("proxy stopped")
		}
	}
	buf = buf[:min(len(buf), 32<<10)]
	if b.holdAt >= 0 {
		buf = buf[:min(int64(len(buf)), b.holdAt-b.n)]
	}
	n, err := b.rc.Read(buf)
	b.n += int64(n)
	if b.rate > 0 && n > 0 {
		select {
		case <-time.After(time.Duration(int64(n) * int64(time.Second) / b.rate)):
		case <-b.ctx.Done():
			return n, b.ctx.Err()
		case <-b.stop:
			return n, errors.New("proxy stopped")
		}
	}
	return n, err
}

func (b *rbSlowBody) Close() error { return b.rc.Close() }

// Child processes: TestHelperPull runs only when re-executed by rbChild.
const (
	rbEnvRoot = "BERTH_PULL_CHILD"
	rbEnvRef  = "BERTH_PULL_REF"
)

// TestHelperPull is not a test: rbChild re-executes the test binary to run it
// in a child process, which pulls $BERTH_PULL_REF into the store at
// $BERTH_PULL_CHILD and prints each layer's final phase as "PHASE <digest>
// <phase>".
func TestHelperPull(t *testing.T) {
	root := os.Getenv(rbEnvRoot)
	if root == "" {
		t.Skip("helper process for the robust_* tests; runs only when re-executed")
	}
	s, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	var mu sync.Mutex
	final := map[v1.Hash]Phase{}
	o := PullOptions{
		Remote: []remote.Option{remote.WithTransport(tr)},
		Progress: func(p Progress) {
			if p.Phase == PhaseDone || p.Phase == PhaseExists {
				mu.Lock()
				final[p.Digest] = p.Phase
				mu.Unlock()
			}
		},
	}
	if _, err := s.Pull(context.Background(), os.Getenv(rbEnvRef), o); err != nil {
		t.Fatal(err)
	}
	for d, ph := range final {
		fmt.Printf("PHASE %s %s\n", d, ph)
	}
}

// rbProc is a child process pulling into a store.
type rbProc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	err  error // Wait's, once done is closed
}

// rbChild starts a child process that pulls ref into root; it is killed at
// cleanup if still running.
func rbChild(t *testing.T, root, ref string) *rbProc {
	t.Helper()
	c := &rbProc{done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperPull$", "-test.count=1", "-test.timeout=60s")
	c.cmd.Env = append(os.Environ(), rbEnvRoot+"="+root, rbEnvRef+"="+ref)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			<-c.done
		}
	})
	return c
}

// exited reports whether the child has ended.
func (c *rbProc) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the child to die.
func (c *rbProc) kill(t *testing.T) {
	t.Helper()
	if c.exited() {
		t.Fatalf("child ended before it could be killed (%v):\n%s", c.err, c.out.String())
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
}

// wait waits for a successful exit and returns the final phase of each layer.
func (c *rbProc) wait(t *testing.T) map[v1.Hash]Phase {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("child pull did not finish in 30 s:\n%s", c.out.String())
	}
	if c.err != nil {
		t.Fatalf("child pull: %v\n%s", c.err, c.out.String())
	}
	phases := map[v1.Hash]Phase{}
	sc := bufio.NewScanner(bytes.NewReader(c.out.Bytes()))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "PHASE" {
			h, err := v1.NewHash(f[1])
			if err != nil {
				t.Fatal(err)
			}
			phases[h] = Phase(f[2])
		}
	}
	return phases
}

// rbWaitFor polls cond every 5 ms until it holds, failing after 20 s or when
// the child (if any) ends first.
func rbWaitFor(t *testing.T, c *rbProc, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if c != nil && c.exited() {
			t.Fatalf("child ended (%v) while waiting for %s:\n%s", c.err, what, c.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rbPhases returns PullOptions.Progress that records each layer's final
// phase, and the map it fills (read it after Pull returns).
func rbPhases() (func(Progress), map[v1.Hash]Phase) {
	var mu sync.Mutex
	m := map[v1.Hash]Phase{}
	return func(p Progress) {
		if p.Phase == PhaseDone || p.Phase == PhaseExists {
			mu.Lock()
			m[p.Digest] = p.Phase
			mu.Unlock()
		}
	}, m
}

// rbLayers is the (digest, size, chain ID) of each layer of img, lowest first.
type rbLayer struct {
	Digest, DiffID, Chain v1.Hash
	Size                  int64
}

func rbLayers(t *testing.T, img v1.Image) []rbLayer {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []rbLayer
	var chain v1.Hash
	for i, l := range m.Layers {
		diff := cfg.RootFS.DiffIDs[i]
		if i == 0 {
			chain = diff
		} else {
			sum := sha256.Sum256([]byte(chain.String() + " " + diff.String()))
			chain = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
		}
		out = append(out, rbLayer{Digest: l.Digest, DiffID: diff, Chain: chain, Size: l.Size})
	}
	return out
}

// rbContent lists the store's visible blobs (size) and snapshots (bytes of
// their regular files, each inode once), ignoring temp entries.
func rbContent(t *testing.T, s *Store) (blobs, snaps map[string]int64) {
	t.Helper()
	blobs, snaps = map[string]int64{}, map[string]int64{}
	bes, err := os.ReadDir(filepath.Join(s.Root(), blobsDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range bes {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		blobs[e.Name()] = fi.Size()
	}
	ses, err := os.ReadDir(filepath.Join(s.Root(), snapshotsDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ses {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		var n int64
		seen := map[uint64]bool{}
		err := filepath.WalkDir(filepath.Join(s.Root(), snapshotsDir, e.Name()), func(_ string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			ino := fi.Sys().(*syscall.Stat_t).Ino
			if !seen[ino] {
				seen[ino] = true
				n += fi.Size()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		snaps[e.Name()] = n
	}
	return blobs, snaps
}

// rbTemps lists temp leftovers under blobs/sha256 and snapshots.
func rbTemps(s *Store) []string {
	a, _ := filepath.Glob(filepath.Join(s.Root(), blobsDir, tmpPrefix+"*"))
	b, _ := filepath.Glob(filepath.Join(s.Root(), snapshotsDir, tmpPrefix+"*"))
	return append(a, b...)
}

// rbCheckConsistent checks what a crashed or finished pull may leave
// visible: every blob matches its digest, every snapshot is complete.
func rbCheckConsistent(t *testing.T, s *Store) {
	t.Helper()
	blobs, snaps := rbContent(t, s)
	for hx := range blobs {
		b, err := os.ReadFile(filepath.Join(s.Root(), blobsDir, hx))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != hx {
			t.Errorf("visible blob %s has digest %x", hx, sum)
		}
	}
	for hx := range snaps {
		b, err := os.ReadFile(filepath.Join(s.Root(), snapshotsDir, hx, "meta.json"))
		if err != nil {
			t.Errorf("visible snapshot %s: %v", hx, err)
			continue
		}
		var m snapshotMeta
		if err := json.Unmarshal(b, &m); err != nil || m.ChainID.Hex != hx {
			t.Errorf("snapshot %s meta.json: %s (%v)", hx, b, err)
		}
		if fi, err := os.Stat(filepath.Join(s.Root(), snapshotsDir, hx, "fs")); err != nil || !fi.IsDir() {
			t.Errorf("snapshot %s has no fs dir: %v", hx, err)
		}
	}
}

// rbRandomFile is n deterministic, incompressible bytes for seed.
func rbRandomFile(seed byte, n int) []byte {
	var key [32]byte
	key[0] = seed
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}
