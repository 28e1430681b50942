package regconf

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultConfigPath is where berth reads its registry configuration.
const DefaultConfigPath = "/etc/berth/registries.json"

// Defaults for the top-level timeouts of the registry configuration.
const (
	DefaultConnectTimeout  = 15 * time.Second
	DefaultResponseTimeout = 60 * time.Second
	DefaultReadTimeout     = 60 * time.Second
)

// Limits on what a configuration may hold; generous for real files, small
// enough that a hostile one can't make berth read much.
const (
	maxConfigSize = 1 << 20 // registries.json
	maxCAFileSize = 1 << 20 // each caFiles entry
	maxTimeout    = time.Hour
)

// ConfigError is a problem with the registry configuration: the file, the
// key (a path such as registries["docker.io"].mirrors[1]) and what is wrong.
type ConfigError struct {
	File string // the configuration file ("" when parsed from memory)
	Key  string // where in the file; "" for the file as a whole
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Config is berth's registry configuration: per-registry mirrors, CAs,
// insecure flags and endpoint overrides, and the timeouts of every registry
// connection. A Config is safe for concurrent use; it caches one
// [http.Transport] per registry host so connections are reused across pulls.
type Config struct {
	file       string
	timeouts   timeouts
	registries map[string]*registryConfig // exact keys
	wildcards  []*registryConfig          // "*.domain[:port]" keys, most specific first

	mu         sync.Mutex
	transports map[*registryConfig]*http.Transport // by settings; nil key: unconfigured hosts
}

type timeouts struct {
	connect, response, read time.Duration
}

// registryConfig is one entry of "registries".
type registryConfig struct {
	key      string // normalised key as written ("index.docker.io", "*.example.com:5000")
	domain   string // wildcards: "example.com"
	port     string // wildcards: "" or "5000"
	mirrors  []mirror
	caFiles  []string // as resolved (absolute)
	certs    []*x509.Certificate
	insecure bool
	endpoint string // "host[:port]" or ""
}

// mirror is one "mirrors" entry: a registry host and an optional repository
// path prefix.
type mirror struct {
	host, prefix string
}

func (m mirror) String() string {
	if m.prefix == "" {
		return m.host
	}
	return m.host + "/" + m.prefix
}

// DefaultConfig returns the configuration used when there is no file:
// no mirrors, no extra CAs, nothing insecure but loopback, default timeouts.
func DefaultConfig() *Config {
	return &Config{
		timeouts:   timeouts{DefaultConnectTimeout, DefaultResponseTimeout, DefaultReadTimeout},
		registries: map[string]*registryConfig{},
	}
}

// LoadConfig reads the registry configuration at path. A missing file gives
// [DefaultConfig]; anything else that can't be read or is not valid — an
// unknown key, a value of the wrong type or form, a duplicated key, a CA file
// without a certificate — is a [*ConfigError] naming the file, the key and
// the problem. Relative caFiles are taken relative to path's directory.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		c := DefaultConfig()
		c.file = path
		return c, nil
	}
	if err != nil {
		return nil, &ConfigError{File: path, Msg: err.Error()}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, &ConfigError{File: path, Msg: err.Error()}
	}
	if len(data) > maxConfigSize {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("larger than %d bytes", maxConfigSize)}
	}
	c, err := parseConfig(data, path)
	if err != nil {
		return nil, err
	}
	if err := c.loadCAs(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseConfig parses a registry configuration held in memory; file names it
// in errors, and relative caFiles are taken relative to dir.
func ParseConfig(data []byte, file, dir string) (*Config, error) {
	c, err := parseConfig(data, file)
	if err != nil {
		return nil, err
	}
	if err := c.loadCAs(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// parseConfig checks and decodes data without touching the filesystem.
func parseConfig(data []byte, file string) (*Config, error) {
	fail := func(key, format string, args ...any) error {
		return &ConfigError{File: file, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if err := checkJSON(data); err != nil {
		var je *jsonError
		if errors.As(err, &je) {
			return nil, fail(je.key, "%s", je.msg)
		}
		return nil, fail("", "%v", err)
	}
	top, err := object(data)
	if err != nil {
		return nil, fail("", "the file must hold a JSON object")
	}
	c := DefaultConfig()
	c.file = file
	for _, k := range sortedKeys(top) {
		v := top[k]
		switch k {
		case "registries":
			regs, err := object(v)
			if err != nil {
				return nil, fail(k, "must be an object of registry host → settings")
			}
			for _, host := range sortedKeys(regs) {
				rc, err := parseRegistry(host, regs[host], fail)
				if err != nil {
					return nil, err
				}
				if err := c.add(rc); err != nil {
					return nil, fail(keyPath("registries", host), "%v", err)
				}
			}
		case "connectTimeout", "responseTimeout", "readTimeout":
			d, err := duration(v)
			if err != nil {
				return nil, fail(k, "%v", err)
			}
			switch k {
			case "connectTimeout":
				c.timeouts.connect = d
			case "responseTimeout":
				c.timeouts.response = d
			default:
				c.timeouts.read = d
			}
		default:
			return nil, fail(k, "unknown key (known: registries, connectTimeout, responseTimeout, readTimeout)")
		}
	}
	return c, nil
}

func parseRegistry(host string, raw json.RawMessage, fail func(key, format string, args ...any) error) (*registryConfig, error) {
	base := keyPath("registries", host)
	rc, err := parseRegistryKey(host)
	if err != nil {
		return nil, fail(base, "%v", err)
	}
	fields, err := object(raw)
	if err != nil {
		return nil, fail(base, "must be an object (keys: mirrors, caFiles, insecure, endpoint)")
	}
	for _, k := range sortedKeys(fields) {
		key := base + "." + k
		v := fields[k]
		switch k {
		case "mirrors":
			list, err := stringList(v)
			if err != nil {
				return nil, fail(key, "%v", err)
			}
			seen := map[string]bool{}
			for i, s := range list {
				m, err := parseMirror(s)
				if err != nil {
					return nil, fail(fmt.Sprintf("%s[%d]", key, i), "%q: %v", s, err)
				}
				if rc.domain == "" && m.host == rc.key {
					return nil, fail(fmt.Sprintf("%s[%d]", key, i), "%q: a registry can't be its own mirror", s)
				}
				if seen[m.String()] {
					return nil, fail(fmt.Sprintf("%s[%d]", key, i), "%q is listed twice", s)
				}
				seen[m.String()] = true
				rc.mirrors = append(rc.mirrors, m)
			}
		case "caFiles":
			list, err := stringList(v)
			if err != nil {
				return nil, fail(key, "%v", err)
			}
			for i, s := range list {
				if s == "" || strings.ContainsRune(s, 0) {
					return nil, fail(fmt.Sprintf("%s[%d]", key, i), "must be a file name")
				}
			}
			rc.caFiles = list
		case "insecure":
			var b bool
			if bytes.Equal(bytes.TrimSpace(v), []byte("null")) || json.Unmarshal(v, &b) != nil {
				return nil, fail(key, "must be true or false")
			}
			rc.insecure = b
		case "endpoint":
			var s string
			if !isString(v) || json.Unmarshal(v, &s) != nil {
				return nil, fail(key, "must be a string \"host[:port]\"")
			}
			if err := checkEndpoint(s); err != nil {
				return nil, fail(key, "%q: %v", s, err)
			}
			rc.endpoint = s
		default:
			return nil, fail(key, "unknown key (known: mirrors, caFiles, insecure, endpoint)")
		}
	}
	return rc, nil
}

// add files rc under its key, refusing two keys that name the same registry
// (docker.io and index.docker.io, say).
func (c *Config) add(rc *registryConfig) error {
	if rc.domain != "" {
		for _, w := range c.wildcards {
			if w.key == rc.key {
				return fmt.Errorf("registry %q is configured twice", rc.key)
			}
		}
		c.wildcards = append(c.wildcards, rc)
		// Most specific (longest domain) first, then by key for determinism.
		slices.SortStableFunc(c.wildcards, func(a, b *registryConfig) int {
			if d := len(b.domain) - len(a.domain); d != 0 {
				return d
			}
			return strings.Compare(a.key, b.key)
		})
		return nil
	}
	if _, dup := c.registries[rc.key]; dup {
		return fmt.Errorf("registry %q is configured twice (docker.io, index.docker.io and registry-1.docker.io are one registry)", rc.key)
	}
	c.registries[rc.key] = rc
	return nil
}

// loadCAs reads every caFiles entry; relative names are taken relative to dir.
func (c *Config) loadCAs(dir string) error {
	var all []*registryConfig
	for _, k := range sortedKeys(c.registries) {
		all = append(all, c.registries[k])
	}
	for _, rc := range append(all, c.wildcards...) {
		for i, f := range rc.caFiles {
			p := f
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			certs, err := readCAFile(p)
			if err != nil {
				return &ConfigError{File: c.file, Key: fmt.Sprintf("%s.caFiles[%d]", keyPath("registries", rc.key), i), Msg: err.Error()}
			}
			rc.caFiles[i] = p
			rc.certs = append(rc.certs, certs...)
		}
	}
	return nil
}

// readCAFile reads PEM certificates from a regular file of bounded size.
func readCAFile(path string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCAFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCAFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxCAFileSize)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

// lookup returns the settings for a registry host ("host[:port]"): the exact
// key first, then the most specific wildcard whose port matches; nil if none.
func (c *Config) lookup(host string) *registryConfig {
	host = canonicalRegistry(host)
	if rc, ok := c.registries[host]; ok {
		return rc
	}
	h, port := splitHostPort(host)
	for _, w := range c.wildcards {
		if w.port == port && strings.HasSuffix(h, "."+w.domain) {
			return w
		}
	}
	return nil
}

// lookupAddr finds the settings for a network address "host:port" as dialled
// or as in a URL: the key with the port, or for the scheme's default ports
// the key without it.
func (c *Config) lookupAddr(addr string) *registryConfig {
	if rc := c.lookup(addr); rc != nil {
		return rc
	}
	h, port := splitHostPort(addr)
	if port == "443" || port == "80" {
		return c.lookup(h)
	}
	return nil
}

// parseRegistryKey checks a "registries" key: "host[:port]" or
// "*.domain[:port]", lower case, without scheme or path.
func parseRegistryKey(key string) (*registryConfig, error) {
	if key == "" {
		return nil, errors.New("empty registry host")
	}
	if key != strings.ToLower(key) {
		return nil, errors.New("registry hosts are written in lower case")
	}
	if strings.Contains(key, "://") {
		return nil, errors.New("write the registry as host[:port], without a scheme (plain HTTP is the insecure setting)")
	}
	if strings.Contains(key, "/") {
		return nil, errors.New("write the registry as host[:port], without a path")
	}
	if rest, ok := strings.CutPrefix(key, "*."); ok {
		if err := checkHostPort(rest); err != nil {
			return nil, err
		}
		domain, port := splitHostPort(rest)
		if strings.Contains(domain, "*") || net.ParseIP(domain) != nil {
			return nil, errors.New("a wildcard is written *.domain[:port]")
		}
		return &registryConfig{key: key, domain: domain, port: port}, nil
	}
	if strings.Contains(key, "*") {
		return nil, errors.New("a wildcard is written *.domain[:port], with * as the whole first label")
	}
	if err := checkHostPort(key); err != nil {
		return nil, err
	}
	return &registryConfig{key: canonicalRegistry(key)}, nil
}

// parseMirror checks a "mirrors" entry: "host[:port][/path/prefix]".
func parseMirror(s string) (mirror, error) {
	if strings.Contains(s, "://") {
		return mirror{}, errors.New("write host[:port][/path] without a scheme (plain HTTP is the mirror's own insecure setting)")
	}
	host, prefix, _ := strings.Cut(s, "/")
	if host != strings.ToLower(host) {
		return mirror{}, errors.New("registry hosts are written in lower case")
	}
	if strings.Contains(host, "*") {
		return mirror{}, errors.New("a mirror can't be a wildcard")
	}
	if err := checkHostPort(host); err != nil {
		return mirror{}, err
	}
	if prefix != "" {
		// The prefix becomes the start of repository names: check it as one.
		if strings.HasSuffix(prefix, "/") {
			return mirror{}, errors.New("the path must not end with /")
		}
		if _, err := name.NewRepository("example.com/"+prefix+"/x", name.StrictValidation); err != nil {
			return mirror{}, fmt.Errorf("path %q is not a valid repository prefix (lower-case letters, digits, . _ - separated by /)", prefix)
		}
	}
	return mirror{host: canonicalRegistry(host), prefix: prefix}, nil
}

// checkEndpoint checks an "endpoint" value: "host[:port]".
func checkEndpoint(s string) error {
	if strings.Contains(s, "://") {
		return errors.New("write host[:port] without a scheme")
	}
	if strings.ContainsAny(s, "/*") {
		return errors.New("write host[:port] (no path, no wildcard)")
	}
	return checkHostPort(s)
}

// checkHostPort accepts "host", "host:port", "[v6]" and "[v6]:port".
func checkHostPort(s string) error {
	if s == "" {
		return errors.New("empty host")
	}
	if _, err := name.NewRegistry(s, name.StrictValidation); err != nil {
		return fmt.Errorf("not a valid registry host[:port]")
	}
	h, port := splitHostPort(s)
	if h == "" {
		return errors.New("empty host")
	}
	if strings.HasPrefix(s, "[") {
		if ip := net.ParseIP(h); ip == nil || ip.To4() != nil {
			return errors.New("brackets hold an IPv6 address")
		}
	} else if net.ParseIP(h) == nil {
		for label := range strings.SplitSeq(h, ".") {
			if !validLabel(label) {
				return fmt.Errorf("%q is not a valid host name", h)
			}
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	} else if strings.HasSuffix(s, ":") {
		return errors.New("empty port")
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, r := range l {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// splitHostPort splits "host:port", "[v6]:port", "host" or "[v6]"; the port
// is "" when absent.
func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return strings.ToLower(h), p
	}
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")), ""
}

// canonicalRegistry lower-cases a registry host and maps Docker Hub's names
// to ggcr's (index.docker.io).
func canonicalRegistry(host string) string {
	host = strings.ToLower(host)
	switch host {
	case "docker.io", "registry-1.docker.io":
		return name.DefaultRegistry
	}
	return host
}

// isLoopback reports whether a registry host is this machine: localhost,
// *.localhost (RFC 6761), 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	h, _ := splitHostPort(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func keyPath(parent, key string) string {
	b, _ := json.Marshal(key)
	return parent + "[" + string(b) + "]"
}

// http.Transport-wide settings that don't belong in the file.
const (
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
)

var _ http.RoundTripper = (*router)(nil)
