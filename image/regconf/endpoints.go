package regconf

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Endpoint is one place to fetch a reference from.
type Endpoint struct {
	// Ref is the reference rewritten for this endpoint's registry (and
	// mirror path prefix); its registry is marked insecure (http fallback
	// allowed) when the configuration or loopback allows it.
	Ref name.Reference
	// Mirror is true for a mirror, false for the origin.
	Mirror bool
	// Transport carries the configuration's CAs, insecure settings, endpoint
	// overrides and timeouts; pass it to remote.WithTransport.
	Transport http.RoundTripper
	// NameOptions parse further references for this registry the same way
	// (name.Insecure where plain HTTP is allowed).
	NameOptions []name.Option
}

// Endpoints returns where to fetch ref from, in order: the mirrors configured
// for its registry, then the registry itself. A mirror entry "host/prefix"
// turns docker.io/library/busybox:1 into host/prefix/library/busybox:1 —
// Docker Hub's implicit library/ is spelled out, as mirrors expect.
func (c *Config) Endpoints(ref name.Reference) ([]Endpoint, error) {
	if ref == nil {
		return nil, fmt.Errorf("regconf: nil reference")
	}
	origin := canonicalRegistry(ref.Context().RegistryStr())
	repo := ref.Context().RepositoryStr()
	var eps []Endpoint
	if rc := c.lookup(origin); rc != nil {
		for _, m := range rc.mirrors {
			path := repo
			if m.prefix != "" {
				path = m.prefix + "/" + repo
			}
			ep, err := c.endpoint(m.host, path, ref)
			if err != nil {
				return nil, fmt.Errorf("mirror %s for %s: %w", m, ref, err)
			}
			ep.Mirror = true
			eps = append(eps, ep)
		}
	}
	ep, err := c.endpoint(origin, repo, ref)
	if err != nil {
		return nil, err
	}
	return append(eps, ep), nil
}

// endpoint builds the endpoint for repository path on registry host, with
// ref's tag or digest.
func (c *Config) endpoint(host, path string, ref name.Reference) (Endpoint, error) {
	opts := c.NameOptions(host)
	r, err := name.NewRepository(host+"/"+path, opts...)
	if err != nil {
		return Endpoint{}, err
	}
	var out name.Reference
	switch ref.(type) {
	case name.Digest, *name.Digest:
		out = r.Digest(ref.Identifier())
	default:
		out = r.Tag(ref.Identifier())
	}
	return Endpoint{Ref: out, Transport: c.Transport(), NameOptions: opts}, nil
}

// NameOptions returns the name options for references to registry host:
// name.Insecure (ggcr may fall back to plain HTTP) for loopback hosts and
// hosts configured insecure.
func (c *Config) NameOptions(host string) []name.Option {
	if isLoopback(host) {
		return []name.Option{name.Insecure}
	}
	if rc := c.lookup(host); rc != nil && rc.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// registryFor returns the registry named by host as the network sees it:
// Docker Hub's aliases become index.docker.io and a scheme or trailing path
// ("https://host/v1/") is dropped.
func registryFor(host string, cfg *Config) (name.Registry, error) {
	h := hostOf(host)
	if cfg == nil {
		cfg = DefaultConfig()
	}
	return name.NewRegistry(canonicalRegistry(h), cfg.NameOptions(h)...)
}

// hostOf strips a scheme and a path: "https://index.docker.io/v1/" →
// "index.docker.io".
func hostOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(s)
}
