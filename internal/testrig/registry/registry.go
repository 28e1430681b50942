//go:build linux

package registry

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/berth-dev/berth/internal/testrig"
)

const (
	readyTimeout = 10 * time.Second
	pollInterval = 10 * time.Millisecond
	bindAttempts = 5
	// idHeader carries a token unique to one registry, so the readiness
	// check can't mistake another server that took the port for ours.
	idHeader = "X-Berth-Test-Registry"
)

// Option configures Start.
type Option func(*config)

type config struct {
	user, pass string
	tls        bool
	tlsNames   []string
}

// WithBasicAuth makes the registry require HTTP basic auth (htpasswd with a
// bcrypt hash) for user and pass.
func WithBasicAuth(user, pass string) Option {
	return func(c *config) { c.user, c.pass = user, pass }
}

// WithTLS serves https with a server certificate for 127.0.0.1 and localhost
// signed by a CA generated for this registry.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithTLSNames is WithTLS with a server certificate that also covers the
// given DNS names, so that a client can reach the registry under another
// name (with an endpoint override) and still verify TLS for that name.
func WithTLSNames(names ...string) Option {
	return func(c *config) {
		c.tls = true
		c.tlsNames = append(c.tlsNames, names...)
	}
}

// Registry is a running docker-registry.
type Registry struct {
	Host               string // "127.0.0.1:PORT"
	Username, Password string // empty without auth
	CACertPEM          []byte // nil without TLS
	CAPath             string // file holding CACertPEM ("" without TLS)
	Dir                string // storage directory

	id   string // value of idHeader
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	log  *logBuffer

	stopOnce sync.Once
}

// Start runs docker-registry for the test and waits until it answers. It is
// stopped when the test ends; a failed test gets its log.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := testrig.RequireBinary(t, "docker-registry", "docker-registry")
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	// Directories first: cleanups run last-in first-out, so the registry is
	// stopped before its directories are removed.
	r := &Registry{Dir: t.TempDir(), id: randomHex(16), log: &logBuffer{}}
	etc := t.TempDir()
	if err := r.writeFiles(etc, cfg); err != nil {
		t.Fatalf("registry: %v", err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("docker-registry log (%s):\n%s", r.Host, r.Logs())
		}
	})

	var err error
	for range bindAttempts {
		if err = r.start(bin, etc); err == nil {
			return r
		}
		if !errors.Is(err, errBind) {
			break
		}
	}
	t.Fatalf("registry: %v (its log follows the test's failure)", err)
	return nil
}

// errBind means the registry could not listen on the port picked for it.
var errBind = errors.New("registry could not bind its port")

// start picks a port, writes the config for it, starts the registry and
// waits until it answers.
func (r *Registry) start(bin, etc string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	r.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfgPath := filepath.Join(etc, "config.yml")
	if err := os.WriteFile(cfgPath, r.configYAML(etc), 0o600); err != nil {
		return err
	}

	logStart := len(r.Logs())
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Env = registryEnv()
	cmd.Stdout, cmd.Stderr = r.log, r.log
	// Its own group, so Stop can kill all of it; killed if the test process
	// dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Don't let a stray holder of the output pipes block Wait forever.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.cmd, r.done = cmd, done

	client := &http.Client{Transport: r.Transport(), Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		ok, lastErr := r.ready(client)
		if ok {
			return nil
		}
		select {
		case <-done:
			if strings.Contains(r.Logs()[logStart:], "address already in use") {
				r.log.printf("berth test fixture: docker-registry could not bind port %d\n", port)
				return fmt.Errorf("%w: %d", errBind, port)
			}
			return fmt.Errorf("docker-registry exited before answering: %s", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			r.Stop()
			return fmt.Errorf("docker-registry did not answer GET %s://%s/v2/ within %s (last: %v)", r.Scheme(), r.Host, readyTimeout, lastErr)
		}
		time.Sleep(pollInterval)
	}
}

// ready reports whether GET /v2/ answers 200, or 401 with auth, from this
// registry (not some other server that took the port).
func (r *Registry) ready(client *http.Client) (bool, error) {
	resp, err := client.Get(r.Scheme() + "://" + r.Host + "/v2/")
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.Header.Get(idHeader) != r.id {
		return false, fmt.Errorf("GET /v2/ answered by another server (%s)", resp.Status)
	}
	want := http.StatusOK
	if r.Username != "" {
		want = http.StatusUnauthorized
	}
	if resp.StatusCode != want {
		return false, fmt.Errorf("GET /v2/: %s, want %d", resp.Status, want)
	}
	return true, nil
}

// writeFiles writes the htpasswd file and the TLS material into etc.
func (r *Registry) writeFiles(etc string, cfg config) error {
	if cfg.user != "" || cfg.pass != "" {
		if cfg.user == "" || strings.ContainsAny(cfg.user, ":\n") {
			return fmt.Errorf("invalid basic auth user %q", cfg.user)
		}
		// MinCost: the registry checks the hash on every request.
		hash, err := bcrypt.GenerateFromPassword([]byte(cfg.pass), bcrypt.MinCost)
		if err != nil {
			return err
		}
		line := cfg.user + ":" + string(hash) + "\n"
		if err := os.WriteFile(filepath.Join(etc, "htpasswd"), []byte(line), 0o600); err != nil {
			return err
		}
		r.Username, r.Password = cfg.user, cfg.pass
	}
	if cfg.tls {
		pki, err := newTestPKI(cfg.tlsNames...)
		if err != nil {
			return err
		}
		r.CACertPEM = pki.caCertPEM
		r.CAPath = filepath.Join(etc, "ca.pem")
		for name, data := range map[string][]byte{"ca.pem": pki.caCertPEM, "cert.pem": pki.certPEM, "key.pem": pki.keyPEM} {
			if err := os.WriteFile(filepath.Join(etc, name), data, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// configYAML renders the registry's configuration (distribution 2.8 keys).
// Strings are JSON-quoted, which YAML reads as double-quoted scalars.
func (r *Registry) configYAML(etc string) []byte {
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
  headers:
    %s: [%s]
`, q(r.Dir), q(r.Host), q(randomHex(32)), idHeader, q(r.id))
	if r.CACertPEM != nil {
		fmt.Fprintf(&b, `  tls:
    certificate: %s
    key: %s
`, q(filepath.Join(etc, "cert.pem")), q(filepath.Join(etc, "key.pem")))
	}
	if r.Username != "" {
		fmt.Fprintf(&b, `auth:
  htpasswd:
    realm: %s
    path: %s
`, q("berth-test-registry"), q(filepath.Join(etc, "htpasswd")))
	}
	return b.Bytes()
}

// Ref returns a reference to repoAndTag ("repo:tag" or "repo@digest") in
// this registry.
func (r *Registry) Ref(repoAndTag string) string {
	return r.Host + "/" + repoAndTag
}

// Scheme is "https" with WithTLS, else "http".
func (r *Registry) Scheme() string {
	if r.CACertPEM != nil {
		return "https"
	}
	return "http"
}

// Transport returns a transport that trusts only the registry's CA (with
// WithTLS) and uses no proxy.
func (r *Registry) Transport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if r.CACertPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(r.CACertPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr
}

// RemoteOptions returns ggcr options to reach the registry: its transport
// and, with WithBasicAuth, its credentials.
func (r *Registry) RemoteOptions() []remote.Option {
	var auth authn.Authenticator = authn.Anonymous
	if r.Username != "" {
		auth = &authn.Basic{Username: r.Username, Password: r.Password}
	}
	return []remote.Option{remote.WithTransport(r.Transport()), remote.WithAuth(auth)}
}

// Stop kills the registry's process group and waits for the registry to
// exit. It is idempotent and also runs when the test ends.
func (r *Registry) Stop() {
	r.stopOnce.Do(func() {
		if r.cmd == nil || r.cmd.Process == nil {
			return
		}
		// The registry leads its own group: kill everything in it.
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	})
}

// Logs returns what the registry has written to stdout and stderr so far.
func (r *Registry) Logs() string {
	return r.log.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// registryEnv is the test's environment without REGISTRY_* variables, which
// would override the configuration file.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return fmt.Sprintf("%x", b)
}

// logBuffer collects the registry's output; safe for concurrent use.
type logBuffer struct{ testrig.SyncBuffer }

func (l *logBuffer) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(l, format, args...)
}
