package regconf

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// parse parses a configuration held in a string, CA files relative to dir.
func parse(t *testing.T, dir, text string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(text), "registries.json", dir)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return c
}

func TestLoadConfigMissingFileIsDefault(t *testing.T) {
	c, err := LoadConfig(filepath.Join(t.TempDir(), "registries.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := timeouts{DefaultConnectTimeout, DefaultResponseTimeout, DefaultReadTimeout}
	if c.timeouts != want || len(c.registries) != 0 || len(c.wildcards) != 0 {
		t.Fatalf("missing file: got %+v, want defaults", c)
	}
	eps, err := c.Endpoints(name.MustParseReference("busybox"))
	if err != nil || len(eps) != 1 || eps[0].Mirror || eps[0].Ref.String() != "index.docker.io/library/busybox:latest" {
		t.Fatalf("Endpoints with defaults = %v, %v", eps, err)
	}
}

func TestLoadConfigFull(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, "ca.example")
	writeFile(t, filepath.Join(dir, "certs", "ca.pem"), pki.caPEM, 0o644)
	path := filepath.Join(dir, "registries.json")
	writeFile(t, path, []byte(`{
	  "connectTimeout": "5s",
	  "responseTimeout": "2m",
	  "readTimeout": "90s",
	  "registries": {
	    "docker.io": {"mirrors": ["mirror.internal:5000", "harbor.internal/dockerhub-proxy"]},
	    "ghcr.io": {"caFiles": ["certs/ca.pem", "`+filepath.Join(dir, "certs", "ca.pem")+`"]},
	    "10.0.0.5:5000": {"insecure": true},
	    "registry.internal": {"endpoint": "127.0.0.1:8443"},
	    "*.corp.example.com": {"insecure": false, "caFiles": []},
	    "*.a.corp.example.com": {"mirrors": []},
	    "*.corp.example.com:5000": {"endpoint": "[::1]"}
	  }
	}`), 0o644)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (timeouts{5 * time.Second, 2 * time.Minute, 90 * time.Second}); c.timeouts != want {
		t.Errorf("timeouts = %+v, want %+v", c.timeouts, want)
	}
	hub := c.registries["index.docker.io"]
	if hub == nil || !reflect.DeepEqual(hub.mirrors, []mirror{{"mirror.internal:5000", ""}, {"harbor.internal", "dockerhub-proxy"}}) {
		t.Errorf("docker.io entry = %+v", hub)
	}
	if gh := c.registries["ghcr.io"]; len(gh.certs) != 2 || gh.caFiles[0] != filepath.Join(dir, "certs", "ca.pem") {
		t.Errorf("ghcr.io: %d certs from %v, want 2 with relative names resolved", len(gh.certs), gh.caFiles)
	}

	for _, tc := range []struct{ host, wantKey string }{
		{"docker.io", "index.docker.io"},
		{"registry-1.docker.io", "index.docker.io"},
		{"INDEX.docker.io", "index.docker.io"},
		{"10.0.0.5:5000", "10.0.0.5:5000"},
		{"10.0.0.5", ""},
		{"x.corp.example.com", "*.corp.example.com"},
		{"x.y.corp.example.com", "*.corp.example.com"},
		{"x.a.corp.example.com", "*.a.corp.example.com"},
		{"corp.example.com", ""},
		{"x.corp.example.com:5000", "*.corp.example.com:5000"},
		{"x.corp.example.com:6000", ""},
		{"xcorp.example.com", ""},
	} {
		got := ""
		if rc := c.lookup(tc.host); rc != nil {
			got = rc.key
		}
		if got != tc.wantKey {
			t.Errorf("lookup(%q) = %q, want %q", tc.host, got, tc.wantKey)
		}
	}

	for _, tc := range []struct{ addr, want string }{
		{"registry.internal:443", "127.0.0.1:8443"},
		{"registry.internal:80", "127.0.0.1:8443"},
		{"registry.internal:5001", "registry.internal:5001"}, // another port of the name: DNS
		{"x.corp.example.com:5000", "[::1]:5000"},            // endpoint without port keeps it
		{"x.corp.example.com:443", "x.corp.example.com:443"},
		{"ghcr.io:443", "ghcr.io:443"},
	} {
		if got := c.dialAddr(tc.addr); got != tc.want {
			t.Errorf("dialAddr(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	// Overridden hosts never go through a proxy from the environment.
	req, _ := http.NewRequest(http.MethodGet, "https://registry.internal/v2/", nil)
	if u, err := c.proxy(req); u != nil || err != nil {
		t.Errorf("proxy for an overridden host = %v, %v", u, err)
	}
}

func TestEndpoints(t *testing.T) {
	c := parse(t, t.TempDir(), `{"registries": {
	  "docker.io": {"mirrors": ["127.0.0.1:5001", "mirror.example.com/hub/proxy"]},
	  "quay.io": {"mirrors": ["plain.example.com:5000"]},
	  "plain.example.com:5000": {"insecure": true}
	}}`)
	dgst := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		ref  string
		want []string // mirrors then origin
		insc []bool   // name.Insecure on each
	}{
		{"busybox", []string{
			"127.0.0.1:5001/library/busybox:latest",
			"mirror.example.com/hub/proxy/library/busybox:latest",
			"index.docker.io/library/busybox:latest",
		}, []bool{true, false, false}},
		{"docker.io/grafana/grafana:11@" + dgst, []string{
			"127.0.0.1:5001/grafana/grafana@" + dgst,
			"mirror.example.com/hub/proxy/grafana/grafana@" + dgst,
			"index.docker.io/grafana/grafana@" + dgst,
		}, []bool{true, false, false}},
		{"quay.io/coreos/etcd:v3", []string{"plain.example.com:5000/coreos/etcd:v3", "quay.io/coreos/etcd:v3"}, []bool{true, false}},
		{"ghcr.io/a/b:c", []string{"ghcr.io/a/b:c"}, []bool{false}},
		{"localhost:5000/a:1", []string{"localhost:5000/a:1"}, []bool{true}},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			ref, err := name.ParseReference(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			eps, err := c.Endpoints(ref)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, ep := range eps {
				got = append(got, ep.Ref.String())
				if wantMirror := i < len(eps)-1; ep.Mirror != wantMirror {
					t.Errorf("endpoint %d: Mirror = %v, want %v", i, ep.Mirror, wantMirror)
				}
				if ep.Transport == nil {
					t.Errorf("endpoint %d: nil transport", i)
				}
				// ggcr's scheme "http" means: https, falling back to http.
				if insecure := ep.Ref.Context().Scheme() == "http"; insecure != tc.insc[i] {
					t.Errorf("endpoint %d (%s): scheme %s, want insecure=%v", i, ep.Ref, ep.Ref.Context().Scheme(), tc.insc[i])
				}
				if (len(ep.NameOptions) > 0) != tc.insc[i] {
					t.Errorf("endpoint %d (%s): NameOptions %d, want insecure=%v", i, ep.Ref, len(ep.NameOptions), tc.insc[i])
				}
				if _, isDigest := ep.Ref.(name.Digest); isDigest != strings.Contains(tc.ref, "@") {
					t.Errorf("endpoint %d: %T for %s", i, ep.Ref, tc.ref)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Endpoints(%s) =\n  %q\nwant\n  %q", tc.ref, got, tc.want)
			}
		})
	}
}

// A plain-HTTP request to a host that is neither loopback nor insecure is
// refused before any connection is made (ggcr itself would allow it for
// RFC 1918 addresses).
func TestPlainHTTPRefused(t *testing.T) {
	c := parse(t, t.TempDir(), `{"registries": {"10.9.9.9:5000": {"caFiles": []}}}`)
	for _, u := range []string{"http://10.9.9.9:5000/v2/", "http://192.168.7.7/v2/", "http://registry.example.com/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		_, err := c.Transport().RoundTrip(req)
		if !errors.Is(err, ErrPlainHTTP) {
			t.Errorf("GET %s: err = %v, want ErrPlainHTTP", u, err)
		}
	}
	// ggcr's own view of those names, for the record: it would try http.
	if s := name.MustParseReference("10.9.9.9:5000/a").Context().Scheme(); s != "http" {
		t.Logf("note: ggcr scheme for RFC 1918 is now %q", s)
	}
}

func TestMalformedConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "empty.pem"), []byte("no certificates here\n"), 0o644)
	writeFile(t, filepath.Join(dir, "bad.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	for _, tc := range []struct {
		name, json string
		key, msg   string // expected in the error
	}{
		{"not json", `{"registries": `, "", "invalid JSON"},
		{"syntax position", "{\n  \"registries\": {,}\n}", "", "line 2"},
		{"trailing data", `{} {}`, "", "after the top-level value"},
		{"top not object", `[]`, "", "must hold a JSON object"},
		{"null", `null`, "", "must hold a JSON object"},
		{"unknown top key", `{"registry": {}}`, "registry", "unknown key"},
		{"duplicate top key", `{"registries": {}, "registries": {}}`, "registries", "more than once"},
		{"duplicate host", `{"registries": {"a.io": {}, "a.io": {}}}`, `registries["a.io"]`, "more than once"},
		{"duplicate nested", `{"registries": {"a.io": {"insecure": true, "insecure": false}}}`, `registries["a.io"].insecure`, "more than once"},
		{"hub aliases", `{"registries": {"docker.io": {}, "index.docker.io": {}}}`, `registries["index.docker.io"]`, "configured twice"},
		{"registries not object", `{"registries": []}`, "registries", "must be an object"},
		{"registry not object", `{"registries": {"a.io": true}}`, `registries["a.io"]`, "must be an object"},
		{"registry null", `{"registries": {"a.io": null}}`, `registries["a.io"]`, "must be an object"},
		{"unknown registry key", `{"registries": {"a.io": {"mirror": []}}}`, `registries["a.io"].mirror`, "unknown key"},
		{"host with scheme", `{"registries": {"https://a.io": {}}}`, `registries["https://a.io"]`, "without a scheme"},
		{"host with path", `{"registries": {"a.io/x": {}}}`, `registries["a.io/x"]`, "without a path"},
		{"host upper case", `{"registries": {"A.io": {}}}`, `registries["A.io"]`, "lower case"},
		{"host empty", `{"registries": {"": {}}}`, `registries[""]`, "empty"},
		{"host bad port", `{"registries": {"a.io:99999": {}}}`, `registries["a.io:99999"]`, "port"},
		{"host bad char", `{"registries": {"a b.io": {}}}`, `registries["a b.io"]`, "not a valid"},
		{"wildcard inner", `{"registries": {"a.*.io": {}}}`, `registries["a.*.io"]`, "wildcard"},
		{"wildcard ip", `{"registries": {"*.1.2.3.4": {}}}`, `registries["*.1.2.3.4"]`, "wildcard"},
		{"mirrors not list", `{"registries": {"a.io": {"mirrors": "m.io"}}}`, `registries["a.io"].mirrors`, "list of strings"},
		{"mirrors null", `{"registries": {"a.io": {"mirrors": null}}}`, `registries["a.io"].mirrors`, "list of strings"},
		{"mirror not string", `{"registries": {"a.io": {"mirrors": [1]}}}`, `registries["a.io"].mirrors`, "item 0 must be a string"},
		{"mirror scheme", `{"registries": {"a.io": {"mirrors": ["m.io", "http://m2.io"]}}}`, `registries["a.io"].mirrors[1]`, "without a scheme"},
		{"mirror bad path", `{"registries": {"a.io": {"mirrors": ["m.io/UPPER"]}}}`, `registries["a.io"].mirrors[0]`, "repository prefix"},
		{"mirror trailing slash", `{"registries": {"a.io": {"mirrors": ["m.io/p/"]}}}`, `registries["a.io"].mirrors[0]`, "end with /"},
		{"mirror self", `{"registries": {"docker.io": {"mirrors": ["index.docker.io"]}}}`, `registries["docker.io"].mirrors[0]`, "own mirror"},
		{"mirror twice", `{"registries": {"a.io": {"mirrors": ["m.io", "m.io"]}}}`, `registries["a.io"].mirrors[1]`, "twice"},
		{"mirror wildcard", `{"registries": {"a.io": {"mirrors": ["*.m.io"]}}}`, `registries["a.io"].mirrors[0]`, "wildcard"},
		{"insecure string", `{"registries": {"a.io": {"insecure": "yes"}}}`, `registries["a.io"].insecure`, "true or false"},
		{"insecure null", `{"registries": {"a.io": {"insecure": null}}}`, `registries["a.io"].insecure`, "true or false"},
		{"endpoint number", `{"registries": {"a.io": {"endpoint": 5000}}}`, `registries["a.io"].endpoint`, "must be a string"},
		{"endpoint scheme", `{"registries": {"a.io": {"endpoint": "https://1.2.3.4"}}}`, `registries["a.io"].endpoint`, "without a scheme"},
		{"endpoint path", `{"registries": {"a.io": {"endpoint": "1.2.3.4/v2"}}}`, `registries["a.io"].endpoint`, "no path"},
		{"endpoint empty", `{"registries": {"a.io": {"endpoint": ""}}}`, `registries["a.io"].endpoint`, "empty host"},
		{"endpoint port 0", `{"registries": {"a.io": {"endpoint": "1.2.3.4:0"}}}`, `registries["a.io"].endpoint`, "port"},
		{"caFiles string", `{"registries": {"a.io": {"caFiles": "ca.pem"}}}`, `registries["a.io"].caFiles`, "list of strings"},
		{"caFiles empty name", `{"registries": {"a.io": {"caFiles": [""]}}}`, `registries["a.io"].caFiles[0]`, "file name"},
		{"caFile missing", `{"registries": {"a.io": {"caFiles": ["nope.pem"]}}}`, `registries["a.io"].caFiles[0]`, "no such file"},
		{"caFile no cert", `{"registries": {"a.io": {"caFiles": ["empty.pem"]}}}`, `registries["a.io"].caFiles[0]`, "no PEM CERTIFICATE"},
		{"caFile bad cert", `{"registries": {"a.io": {"caFiles": ["bad.pem"]}}}`, `registries["a.io"].caFiles[0]`, "bad.pem"},
		{"caFile directory", `{"registries": {"a.io": {"caFiles": ["."]}}}`, `registries["a.io"].caFiles[0]`, "not a regular file"},
		{"timeout number", `{"connectTimeout": 30}`, "connectTimeout", "duration string"},
		{"timeout unit", `{"readTimeout": "30"}`, "readTimeout", "not a duration"},
		{"timeout negative", `{"responseTimeout": "-1s"}`, "responseTimeout", "more than 0"},
		{"timeout huge", `{"responseTimeout": "2h"}`, "responseTimeout", "at most 1h"},
		{"too deep", `{"registries": {"a.io": {"mirrors": [[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}}}`, `registries["a.io"].mirrors`, "nested too deeply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "registries.json")
			writeFile(t, path, []byte(tc.json), 0o644)
			_, err := LoadConfig(path)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *ConfigError", err, err)
			}
			if ce.File != path {
				t.Errorf("File = %q, want %q", ce.File, path)
			}
			if !strings.HasPrefix(ce.Key, tc.key) {
				t.Errorf("Key = %q, want %q", ce.Key, tc.key)
			}
			if !strings.Contains(ce.Msg, tc.msg) {
				t.Errorf("Msg = %q, want it to mention %q", ce.Msg, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), path+": ") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestLoadConfigUnreadable(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("LoadConfig(directory) = %v, want an error naming it", err)
	}
	big := filepath.Join(dir, "big.json")
	writeFile(t, big, []byte(`{"registries": {}, "x": "`+strings.Repeat("a", maxConfigSize)+`"}`), 0o644)
	if _, err := LoadConfig(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("LoadConfig(huge) = %v", err)
	}
}

// render writes a parsed configuration back as JSON (caFiles left out: the
// fuzz target parses without the filesystem).
func render(c *Config) []byte {
	regs := map[string]map[string]any{}
	all := append(slicesOf(c.registries), c.wildcards...)
	for _, rc := range all {
		e := map[string]any{}
		if rc.mirrors != nil {
			var ms []string
			for _, m := range rc.mirrors {
				ms = append(ms, m.String())
			}
			e["mirrors"] = ms
		}
		if rc.insecure {
			e["insecure"] = true
		}
		if rc.endpoint != "" {
			e["endpoint"] = rc.endpoint
		}
		regs[rc.key] = e
	}
	out, _ := json.Marshal(map[string]any{
		"registries":      regs,
		"connectTimeout":  c.timeouts.connect.String(),
		"responseTimeout": c.timeouts.response.String(),
		"readTimeout":     c.timeouts.read.String(),
	})
	return out
}

func slicesOf(m map[string]*registryConfig) []*registryConfig {
	var out []*registryConfig
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

// FuzzParseConfig feeds arbitrary bytes to the parser: it must never panic,
// and whatever it accepts must render back to an equivalent configuration
// whose Endpoints are well formed.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"registries": {}}`,
		`{"connectTimeout": "1s", "responseTimeout": "1m", "readTimeout": "1h"}`,
		`{"registries": {"docker.io": {"mirrors": ["m.io:5000", "h.io/a/b"]}}}`,
		`{"registries": {"*.corp.io:5000": {"insecure": true, "endpoint": "[::1]:5443"}}}`,
		`{"registries": {"a.io": {"mirrors": ["a.io"]}}}`,
		`{"registries": {"a.io": {"caFiles": ["x.pem"]}}}`,
		`{"registries": {"docker.io": {}, "registry-1.docker.io": {}}}`,
		`{"registries": {"a.io": {"insecure": true, "insecure": true}}}`,
	} {
		f.Add([]byte(s))
	}
	refs := []name.Reference{
		name.MustParseReference("busybox"),
		name.MustParseReference("a.io/x/y:1"),
		name.MustParseReference("x.corp.io:5000/z@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
		name.MustParseReference("h.io/a/b/c"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data, "fuzz.json")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != "fuzz.json" || ce.Msg == "" {
				t.Fatalf("error %v (%T) is not a ConfigError naming the file", err, err)
			}
			return
		}
		again, err := parseConfig(render(c), "again.json")
		if err != nil {
			t.Fatalf("rendered configuration does not parse: %v\n%s", err, render(c))
		}
		if a, b := render(c), render(again); string(a) != string(b) {
			t.Fatalf("render/parse not stable:\n%s\n%s", a, b)
		}
		for _, ref := range refs {
			eps, err := c.Endpoints(ref)
			if err != nil {
				// A mirror prefix may make a repository name too long.
				continue
			}
			if len(eps) == 0 || eps[len(eps)-1].Mirror {
				t.Fatalf("Endpoints(%s): origin missing or not last: %v", ref, eps)
			}
			for _, ep := range eps {
				if ep.Ref.Identifier() != ref.Identifier() {
					t.Fatalf("Endpoints(%s): %s changed the identifier", ref, ep.Ref)
				}
			}
			_ = c.dialAddr(ref.Context().RegistryStr() + ":443")
		}
	})
}

func writeFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}
