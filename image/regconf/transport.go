package regconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// ErrPlainHTTP is returned (wrapped) for a plain-HTTP request to a registry
// that is neither on loopback nor marked insecure.
var ErrPlainHTTP = errors.New("plain HTTP refused")

// Transport returns the HTTP transport for registry traffic under this
// configuration. Every request is handled by the settings of its own URL's
// host — registry, mirror, token server or blob store alike: the system roots
// plus that host's caFiles, its insecure setting, its endpoint override, the
// configured timeouts, and plain HTTP only for loopback and insecure hosts.
//
// It is a plain round tripper (not a ggcr transport.Wrapper), so ggcr's
// remote package still wraps it with its retries and auth handshake.
func (c *Config) Transport() http.RoundTripper { return (*router)(c) }

// router is a Config's transport: it routes each request to the
// http.Transport built for its host's settings.
type router Config

func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	c := (*Config)(r)
	rc := c.lookupAddr(hostWithPort(req.URL))
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Host) && (rc == nil || !rc.insecure) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%w to %s: it is not on loopback and not marked insecure in %s", ErrPlainHTTP, req.URL.Host, c.fileName())
	}
	return c.base(rc).RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transports behind the router.
func (r *router) CloseIdleConnections() { (*Config)(r).CloseIdleConnections() }

// base returns the http.Transport for a registry's settings (nil: none).
func (c *Config) base(rc *registryConfig) *http.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.transports[rc]; ok {
		return t
	}
	if c.transports == nil {
		c.transports = map[*registryConfig]*http.Transport{}
	}
	t := c.newHTTPTransport(rc)
	c.transports[rc] = t
	return t
}

// CloseIdleConnections closes the idle connections of every transport.
func (c *Config) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.transports {
		t.CloseIdleConnections()
	}
}

// newHTTPTransport builds the transport for one registry's settings.
func (c *Config) newHTTPTransport(rc *registryConfig) *http.Transport {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		// No system roots readable: only the configured CAs are trusted.
		roots = x509.NewCertPool()
	}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if rc != nil {
		for _, cert := range rc.certs {
			roots.AddCert(cert)
		}
		// Docker's insecure registry: TLS without verification. Only
		// requests to this registry's hosts are routed here.
		tlsConf.InsecureSkipVerify = rc.insecure
	}
	dialer := &net.Dialer{Timeout: c.timeouts.connect, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: c.proxy,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, c.dialAddr(addr))
			if err != nil {
				return nil, err
			}
			return &stallConn{Conn: conn, timeout: c.timeouts.read}, nil
		},
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   min(tlsHandshakeTimeout, c.timeouts.connect),
		ResponseHeaderTimeout: c.timeouts.response,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   50,
		ForceAttemptHTTP2:     true,
	}
}

// dialAddr applies endpoint overrides: a connection to a configured
// registry's address goes to its endpoint instead, keeping the port when the
// endpoint names none. TLS still verifies the registry's own name, because
// the request (and so the TLS server name) is unchanged.
func (c *Config) dialAddr(addr string) string {
	rc := c.lookupAddr(addr)
	if rc == nil || rc.endpoint == "" {
		return addr
	}
	eh, ep := splitHostPort(rc.endpoint)
	if ep == "" {
		_, ep = splitHostPort(addr)
	}
	return net.JoinHostPort(eh, ep)
}

// proxy is http.ProxyFromEnvironment, except that registries with an
// endpoint override are always reached directly.
func (c *Config) proxy(req *http.Request) (*url.URL, error) {
	if rc := c.lookupAddr(hostWithPort(req.URL)); rc != nil && rc.endpoint != "" {
		return nil, nil
	}
	return http.ProxyFromEnvironment(req)
}

func hostWithPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "443"
	if u.Scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func (c *Config) fileName() string {
	if c.file == "" {
		return "the registry configuration"
	}
	return c.file
}

// stallConn fails a read when nothing has arrived for timeout since the last
// read or write: it catches stalled connections (a dead link, a hung server)
// mid-body, where http.Transport has no timeout of its own. An idle pooled
// connection simply closes after timeout.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	// A request is going out: its answer gets a full timeout.
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
