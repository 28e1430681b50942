package regconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testPKI is a CA and a server certificate it signed for some DNS names.
type testPKI struct {
	caPEM []byte
	cert  tls.Certificate
}

// newPKI makes a CA and a server certificate valid for names only (no IP
// addresses, so a client that verified against 127.0.0.1 would fail).
func newPKI(t testing.TB, names ...string) *testPKI {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "regconf test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// writeCA writes the CA into dir and returns its path.
func (p *testPKI) writeCA(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("ca-%d.pem", time.Now().UnixNano()))
	writeFile(t, path, p.caPEM, 0o644)
	return path
}

// memRegistry is ggcr's in-process registry on a 127.0.0.1 port, counting
// the requests it serves.
type memRegistry struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func (m *memRegistry) addr() string { return m.srv.Listener.Addr().String() }

// startMemRegistry serves ggcr's registry on 127.0.0.1, over TLS with
// pki's certificate when pki is not nil.
func startMemRegistry(t testing.TB, pki *testPKI) *memRegistry {
	t.Helper()
	m := &memRegistry{}
	h := ggcrregistry.New(ggcrregistry.Logger(discardLogger()))
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	if pki != nil {
		m.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12}
		m.srv.StartTLS()
	} else {
		m.srv.Start()
	}
	t.Cleanup(m.srv.Close)
	return m
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func randomImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// push writes img to ref through the configuration's transport.
func push(t testing.TB, cfg *Config, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r := mustRef(t, cfg, ref)
	opts = append([]remote.Option{remote.WithTransport(cfg.Transport())}, opts...)
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// mustRef parses ref; with cfg, as the origin endpoint cfg makes of it
// (insecure where cfg allows plain HTTP).
func mustRef(t testing.TB, cfg *Config, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		return r
	}
	eps, err := cfg.Endpoints(r)
	if err != nil {
		t.Fatal(err)
	}
	return eps[len(eps)-1].Ref
}

// pull fetches ref's image from the endpoint the way image.Pull does: the
// manifest, the config and every layer read to the end (which makes ggcr
// verify their digests). It returns the image's digest.
func pull(ctx context.Context, ep Endpoint, kc authn.Keychain) (v1.Hash, error) {
	img, err := remote.Image(ep.Ref, remote.WithContext(ctx), remote.WithTransport(ep.Transport),
		remote.WithAuthFromKeychain(kc), remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Steps: 1}))
	if err != nil {
		return v1.Hash{}, err
	}
	if _, err := img.ConfigFile(); err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return v1.Hash{}, err
		}
	}
	return img.Digest()
}

// pullFirst tries the endpoints in order, as image.Pull does: a failing
// mirror passes to the next endpoint. It returns the digest and which
// endpoint answered.
func pullFirst(ctx context.Context, eps []Endpoint, kc authn.Keychain) (v1.Hash, int, error) {
	var errs []error
	for i, ep := range eps {
		d, err := pull(ctx, ep, kc)
		if err == nil {
			return d, i, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep.Ref, err))
	}
	return v1.Hash{}, -1, errors.Join(errs...)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
