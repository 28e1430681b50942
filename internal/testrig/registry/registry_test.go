//go:build linux

package registry_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/berth-dev/berth/internal/testrig/registry"
)

// schemeRecorder counts, by scheme, the requests that got a successful
// (below 400) answer.
type schemeRecorder struct {
	next http.RoundTripper

	mu      sync.Mutex
	schemes map[string]int
}

func (s *schemeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err == nil && resp.StatusCode < 400 {
		s.mu.Lock()
		if s.schemes == nil {
			s.schemes = map[string]int{}
		}
		s.schemes[req.URL.Scheme]++
		s.mu.Unlock()
	}
	return resp, err
}

func (s *schemeRecorder) answered() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.schemes
}

func parse(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPushPull pushes a random image and pulls it back by tag and by digest
// through ggcr, in every mode, checking that TLS and auth are really in use.
func TestPushPull(t *testing.T) {
	tests := []struct {
		name string
		opts []registry.Option
		tls  bool
		auth bool
	}{
		{"plain", nil, false, false},
		{"basic auth", []registry.Option{registry.WithBasicAuth("alice", "s3cret:with colon")}, false, true},
		{"tls", []registry.Option{registry.WithTLS()}, true, false},
		{"tls and basic auth", []registry.Option{registry.WithTLS(), registry.WithBasicAuth("bob", "pw")}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := registry.Start(t, tc.opts...)
			if got, want := reg.Scheme(), map[bool]string{true: "https", false: "http"}[tc.tls]; got != want {
				t.Fatalf("Scheme() = %q, want %q", got, want)
			}
			if tc.tls != (reg.CACertPEM != nil) || tc.tls != (reg.CAPath != "") {
				t.Fatalf("CACertPEM/CAPath set = %v/%v, want %v", reg.CACertPEM != nil, reg.CAPath != "", tc.tls)
			}
			if tc.tls {
				if data, err := os.ReadFile(reg.CAPath); err != nil || string(data) != string(reg.CACertPEM) {
					t.Fatalf("CAPath %s does not hold CACertPEM (%v)", reg.CAPath, err)
				}
			}
			if tc.auth != (reg.Username != "") {
				t.Fatalf("Username = %q with auth %v", reg.Username, tc.auth)
			}

			rec := &schemeRecorder{next: reg.Transport()}
			opts := append(reg.RemoteOptions(), remote.WithTransport(rec))

			img, err := random.Image(1024, 3)
			if err != nil {
				t.Fatal(err)
			}
			want := digest(t, img)
			tag := parse(t, reg.Ref("berth/random:v1"))
			if err := remote.Write(tag, img, opts...); err != nil {
				t.Fatalf("push %s: %v", tag, err)
			}

			for _, ref := range []name.Reference{tag, parse(t, reg.Ref("berth/random@"+want.String()))} {
				pulled, err := remote.Image(ref, opts...)
				if err != nil {
					t.Fatalf("pull %s: %v", ref, err)
				}
				if got := digest(t, pulled); got != want {
					t.Fatalf("pull %s: digest %s, want %s", ref, got, want)
				}
				// Reads every blob and checks it against its digest.
				if err := validate.Image(pulled); err != nil {
					t.Fatalf("pull %s: %v", ref, err)
				}
			}

			// Every request that got an answer used the registry's scheme:
			// with TLS, ggcr's http fallback for loopback never succeeded.
			wantScheme := reg.Scheme()
			if rec.answered()[wantScheme] == 0 {
				t.Fatalf("no request answered over %s: %v", wantScheme, rec.answered())
			}
			for scheme := range rec.answered() {
				if scheme != wantScheme {
					t.Fatalf("requests answered over %s, want only %s: %v", scheme, wantScheme, rec.answered())
				}
			}

			if tc.tls {
				// The port speaks only TLS: a plain-HTTP request is refused.
				if code, _ := get(t, http.DefaultTransport, "http://"+reg.Host+"/v2/"); code != http.StatusBadRequest {
					t.Fatalf("plain HTTP to the TLS port: status %d, want 400", code)
				}
			}
			if tc.auth {
				// Without credentials the registry refuses.
				anon := append(reg.RemoteOptions(), remote.WithAuth(authn.Anonymous))
				_, err := remote.Image(tag, anon...)
				if !isStatus(err, http.StatusUnauthorized) {
					t.Fatalf("anonymous pull: %v, want 401", err)
				}
			}

			// Deletion is enabled.
			if err := remote.Delete(parse(t, reg.Ref("berth/random@"+want.String())), opts...); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := remote.Image(tag, opts...); !isStatus(err, http.StatusNotFound) {
				t.Fatalf("pull after delete: %v, want 404", err)
			}
		})
	}
}

func isStatus(err error, code int) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == code
}

// get does one GET and returns the status code (0 and the error on failure).
func get(t *testing.T, rt http.RoundTripper, url string) (int, error) {
	t.Helper()
	client := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	reg := registry.Start(t, registry.WithBasicAuth("alice", "right"))
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	opts := append(reg.RemoteOptions(), remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"}))
	err = remote.Write(parse(t, reg.Ref("berth/denied:v1")), img, opts...)
	if !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("push with a wrong password: %v, want a 401 transport.Error", err)
	}
	// The registry answers 401 at /v2/ with a basic challenge.
	code, err := get(t, reg.Transport(), "http://"+reg.Host+"/v2/")
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("GET /v2/ without credentials: %d %v, want 401", code, err)
	}
}

func TestUntrustedCA(t *testing.T) {
	t.Parallel()
	reg := registry.Start(t, registry.WithTLS())

	// A client that trusts only the system roots rejects the certificate.
	_, err := get(t, http.DefaultTransport, "https://"+reg.Host+"/v2/")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("GET with system roots: %v, want x509.UnknownAuthorityError", err)
	}

	// So does ggcr, through both its https attempt and its http fallback.
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	plain := http.DefaultTransport.(*http.Transport).Clone()
	plain.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	err = remote.Write(parse(t, reg.Ref("berth/untrusted:v1")), img, remote.WithTransport(plain))
	if !errors.As(err, &unknown) {
		t.Fatalf("ggcr push without the CA: %v, want x509.UnknownAuthorityError", err)
	}

	// The same request with the registry's transport succeeds.
	if code, err := get(t, reg.Transport(), "https://"+reg.Host+"/v2/"); err != nil || code != http.StatusOK {
		t.Fatalf("GET trusting the CA: %d %v", code, err)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	reg := registry.Start(t)
	if !strings.Contains(reg.Logs(), "listening on "+reg.Host) {
		t.Fatalf("log lacks the listening line:\n%s", reg.Logs())
	}
	pid := registryPID(t, reg.Host)

	reg.Stop()
	reg.Stop() // idempotent

	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("registry pid %d still in /proc after Stop (%v)", pid, err)
	}
	if left := groupMembers(t, pid); len(left) > 0 {
		t.Fatalf("processes left in the registry's group %d: %v", pid, left)
	}
	ln, err := net.Listen("tcp", reg.Host)
	if err != nil {
		t.Fatalf("port not free after Stop: %v", err)
	}
	_ = ln.Close()
}

// registryPID finds the docker-registry process that serves host, from /proc.
func registryPID(t *testing.T, host string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if !strings.HasSuffix(exe, "/docker-registry") {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) < 3 {
			continue
		}
		cfg, _ := os.ReadFile(args[len(args)-1])
		if strings.Contains(string(cfg), `addr: "`+host+`"`) {
			return pid
		}
	}
	t.Fatalf("no docker-registry process serving %s in /proc", host)
	return 0
}

// groupMembers lists the processes whose process group is pgid.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state ppid pgrp ...
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
