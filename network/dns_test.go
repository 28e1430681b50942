package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dnsHost is a fake host for the DNS tests: its resolv.conf,
// systemd-resolved file and hosts file live in a temporary directory, and
// are missing unless written. Tests never read the real /etc.
type dnsHost struct {
	t                      *testing.T
	resolv, systemd, hosts string
	dir                    string // where WriteDNSFiles writes
}

func newDNSHost(t *testing.T) *dnsHost {
	t.Helper()
	root := t.TempDir()
	h := &dnsHost{
		t:       t,
		resolv:  filepath.Join(root, "etc-resolv.conf"),
		systemd: filepath.Join(root, "systemd-resolv.conf"),
		hosts:   filepath.Join(root, "etc-hosts"),
		dir:     filepath.Join(root, "task"),
	}
	if err := os.Mkdir(h.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *dnsHost) write(path, content string) {
	h.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// config returns c pointing at the fake host's files, with a host name if
// c has none.
func (h *dnsHost) config(c DNSConfig) DNSConfig {
	c.HostResolvConf, c.SystemdResolvConf, c.HostHosts = h.resolv, h.systemd, h.hosts
	if c.Hostname == "" {
		c.Hostname = "abc123"
	}
	return c
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutComments drops the comment lines berth writes at the top.
func withoutComments(s string) string {
	var out []string
	for l := range strings.SplitAfterSeq(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

const (
	stubResolv = "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n" +
		"nameserver 127.0.0.53\n" +
		"options edns0 trust-ad\n" +
		"search lan\n"
	upstreamResolv = "# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).\n" +
		"nameserver 192.168.1.1\n" +
		"nameserver fd00::1\n" +
		"search lan corp.example\n"
	fallback4 = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
)

func TestDNSResolvConf(t *testing.T) {
	none := "\x00missing"
	tests := []struct {
		name    string
		host    string // none: no host file
		systemd string // none: no systemd-resolved file
		c       DNSConfig
		want    string // without berth's comment lines
		// verbatim: want is the whole file (host mode's copy).
		verbatim bool
		warn     string // a substring of the one warning expected; "" for none
	}{
		{
			name: "plain host file", host: "nameserver 192.168.1.1\nsearch example.com\noptions ndots:2\n", systemd: none,
			want: "nameserver 192.168.1.1\nsearch example.com\noptions ndots:2\n",
		},
		{
			name: "stub replaced by upstreams", host: stubResolv, systemd: upstreamResolv,
			want: "nameserver 192.168.1.1\nsearch lan corp.example\n",
		},
		{
			name: "127.0.0.54 stub replaced by upstreams", host: "nameserver 127.0.0.54\n", systemd: upstreamResolv,
			want: "nameserver 192.168.1.1\nsearch lan corp.example\n",
		},
		{
			name: "stub with IPv6 task keeps upstream IPv6", host: stubResolv, systemd: upstreamResolv,
			c:    DNSConfig{Addrs: addrs("10.209.0.2", "fd00:b::2")},
			want: "nameserver 192.168.1.1\nnameserver fd00::1\nsearch lan corp.example\n",
		},
		{
			name: "stub without systemd file falls back to defaults", host: stubResolv, systemd: none,
			want: fallback4 + "search lan\noptions edns0 trust-ad\n",
			warn: "8.8.8.8, 8.8.4.4",
		},
		{
			name: "defaults with IPv6 task", host: stubResolv, systemd: none,
			c:    DNSConfig{Addrs: addrs("fd00:b::2")},
			want: fallback4 + "nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\nsearch lan\noptions edns0 trust-ad\n",
			warn: "2001:4860:4860::8888",
		},
		{
			name: "no host file falls back", host: none, systemd: upstreamResolv,
			want: fallback4, warn: "default public nameservers",
		},
		{
			name: "empty host file falls back", host: "", systemd: upstreamResolv,
			want: fallback4, warn: "default public nameservers",
		},
		{
			name: "loopback mixed with others is dropped, systemd file unused", host: "nameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver ::1\n", systemd: upstreamResolv,
			want: "nameserver 10.0.0.2\n",
		},
		{
			name: "loopback-only, not the stub, also uses upstreams", host: "nameserver 127.0.1.1\n", systemd: upstreamResolv,
			want: "nameserver 192.168.1.1\nsearch lan corp.example\n",
		},
		{
			name: "mapped and unspecified addresses", host: "nameserver ::ffff:127.0.0.1\nnameserver 0.0.0.0\nnameserver ::\nnameserver ::ffff:10.1.1.1\n", systemd: none,
			want: "nameserver 10.1.1.1\n",
		},
		{
			name: "IPv6 dropped without a v6 address", host: "nameserver 10.0.0.2\nnameserver 2001:db8::53\n", systemd: none,
			c:    DNSConfig{Addrs: addrs("10.209.0.2")},
			want: "nameserver 10.0.0.2\n",
		},
		{
			name: "IPv6 kept with a v6 address", host: "nameserver 10.0.0.2\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\n", systemd: none,
			c:    DNSConfig{Addrs: addrs("10.209.0.2", "2001:db8:1::2")},
			want: "nameserver 10.0.0.2\nnameserver 2001:db8::53\n",
		},
		{
			name: "link-local v6 address does not count", host: "nameserver 2001:db8::53\n", systemd: none,
			c:    DNSConfig{Addrs: addrs("fe80::2")},
			want: fallback4, warn: "8.8.8.8",
		},
		{
			name: "only IPv6 nameservers and no v6 falls back", host: "nameserver 2001:db8::53\nsearch x.example\n", systemd: none,
			want: fallback4 + "search x.example\n", warn: "8.8.8.8",
		},
		{
			name: "comments and odd whitespace",
			host: "# comment\n; another\n  nameserver\t10.0.0.2   # trailing\n\tnameserver 10.0.0.3;x\r\n" +
				"nameserver not-an-ip\nnameserver\nNAMESERVER 10.9.9.9\n" +
				"options  ndots:3\t\toptions-two\noptions rotate\n" +
				"domain first.example\nsearch  a.example\tb.example  \n" +
				"sortlist 130.155.160.0/255.255.240.0\n" + strings.Repeat("x", 200000) + " y\n" +
				"nameserver 10.0.0.4", // no trailing newline
			systemd: none,
			want: "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nsearch a.example b.example\noptions ndots:3 options-two rotate\n" +
				"sortlist 130.155.160.0/255.255.240.0\n" + strings.Repeat("x", 200000) + " y\n",
		},
		{
			name: "domain after search wins", host: "nameserver 10.0.0.2\nsearch a.example\ndomain b.example extra\n", systemd: none,
			want: "nameserver 10.0.0.2\ndomain b.example\n",
		},
		{
			name: "control bytes dropped", host: "nameserver 10.0.0.2\nsearch ok.example bad\x01.example\nweird\x00 line\n\xff\xfe nameserver 127.0.0.1\n", systemd: none,
			want: "nameserver 10.0.0.2\nsearch ok.example\n",
		},
		{
			name: "--dns replaces nameservers", host: "nameserver 10.0.0.2\nsearch a.example\noptions ndots:2\n", systemd: none,
			c:    DNSConfig{Nameservers: addrs("1.1.1.1", "2606:4700:4700::1111")},
			want: "nameserver 1.1.1.1\nnameserver 2606:4700:4700::1111\nsearch a.example\noptions ndots:2\n",
		},
		{
			name: "--dns loopback kept with a warning", host: "nameserver 10.0.0.2\n", systemd: none,
			c:    DNSConfig{Nameservers: addrs("127.0.0.1")},
			want: "nameserver 127.0.0.1\n", warn: "--dns 127.0.0.1 is a loopback address",
		},
		{
			name: "--dns with stub host and no systemd file: no fallback", host: stubResolv, systemd: none,
			c:    DNSConfig{Nameservers: addrs("9.9.9.9")},
			want: "nameserver 9.9.9.9\nsearch lan\noptions edns0 trust-ad\n",
		},
		{
			name: "--dns-search replaces search and domain", host: "nameserver 10.0.0.2\ndomain d.example\n", systemd: none,
			c:    DNSConfig{Search: []string{"x.example", "y.example."}},
			want: "nameserver 10.0.0.2\nsearch x.example y.example\n",
		},
		{
			name: `--dns-search "." clears the search list`, host: "nameserver 10.0.0.2\nsearch a.example\noptions ndots:2\n", systemd: none,
			c:    DNSConfig{Search: []string{"."}},
			want: "nameserver 10.0.0.2\noptions ndots:2\n",
		},
		{
			name: "--dns-option replaces options", host: "nameserver 10.0.0.2\noptions ndots:2\noptions rotate\n", systemd: none,
			c:    DNSConfig{Options: []string{"ndots:5", "timeout:1"}},
			want: "nameserver 10.0.0.2\noptions ndots:5 timeout:1\n",
		},
		{
			name: "all overrides", host: stubResolv, systemd: upstreamResolv,
			c:    DNSConfig{Nameservers: addrs("9.9.9.9"), Search: []string{"s.example"}, Options: []string{"use-vc"}},
			want: "nameserver 9.9.9.9\nsearch s.example\noptions use-vc\n",
		},
		{
			name: "host mode copies the stub as is", host: stubResolv, systemd: upstreamResolv,
			c:    DNSConfig{Mode: DNSHost},
			want: stubResolv, verbatim: true,
		},
		{
			name: "host mode keeps loopback and comments byte for byte", host: "# hi\nnameserver 127.0.0.1\nnameserver ::1", systemd: none,
			c:    DNSConfig{Mode: DNSHost},
			want: "# hi\nnameserver 127.0.0.1\nnameserver ::1", verbatim: true,
		},
		{
			name: "host mode without a host file", host: none, systemd: upstreamResolv,
			c:    DNSConfig{Mode: DNSHost},
			want: "", verbatim: true,
		},
		{
			name: "host mode with --dns-search keeps loopback nameservers", host: stubResolv, systemd: upstreamResolv,
			c:    DNSConfig{Mode: DNSHost, Search: []string{"h.example"}},
			want: "nameserver 127.0.0.53\nsearch h.example\noptions edns0 trust-ad\n",
		},
		{
			name: "none mode as host's, no fallback", host: stubResolv, systemd: none,
			c:    DNSConfig{Mode: DNSNone},
			want: stubResolv, verbatim: true,
		},
		{
			name: "none mode with --dns-option", host: "nameserver 127.0.0.53\n", systemd: upstreamResolv,
			c:    DNSConfig{Mode: DNSNone, Options: []string{"ndots:1"}},
			want: "nameserver 127.0.0.53\noptions ndots:1\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newDNSHost(t)
			if tc.host != none {
				h.write(h.resolv, tc.host)
			}
			if tc.systemd != none {
				h.write(h.systemd, tc.systemd)
			}
			files, err := WriteDNSFiles(h.dir, h.config(tc.c))
			if err != nil {
				t.Fatal(err)
			}
			got := readString(t, files.ResolvConf)
			if !tc.verbatim {
				if !strings.HasPrefix(got, "# Generated by berth from ") {
					t.Errorf("no header comment:\n%s", got)
				}
				got = withoutComments(got)
			}
			if got != tc.want {
				t.Errorf("resolv.conf:\n%s\nwant:\n%s", got, tc.want)
			}
			switch {
			case tc.warn == "" && len(files.Warnings) != 0:
				t.Errorf("warnings %q, want none", files.Warnings)
			case tc.warn != "" && (len(files.Warnings) != 1 || !strings.Contains(files.Warnings[0], tc.warn)):
				t.Errorf("warnings %q, want one with %q", files.Warnings, tc.warn)
			}
		})
	}
}

// The header says which file the content came from.
func TestDNSResolvConfHeader(t *testing.T) {
	h := newDNSHost(t)
	h.write(h.resolv, stubResolv)
	h.write(h.systemd, upstreamResolv)
	files, err := WriteDNSFiles(h.dir, h.config(DNSConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readString(t, files.ResolvConf), "# Generated by berth from \""+h.systemd+"\".\n"; !strings.HasPrefix(got, want) {
		t.Errorf("resolv.conf:\n%s\nwant it to start with %q", got, want)
	}
}

func TestDNSHosts(t *testing.T) {
	const localhost = "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n"
	hostHosts := "127.0.0.1 localhost\n127.0.1.1 myhost\n# comment\n10.0.0.9 nas" // no trailing newline
	mustAddHost := func(s string) HostEntry {
		e, err := ParseAddHost(s)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	gw := netip.MustParseAddr("10.209.0.1")
	tests := []struct {
		name    string
		c       DNSConfig
		noHosts bool // no host hosts file
		want    string
	}{
		{
			name: "bridge", c: DNSConfig{Hostname: "abc123", Name: "web", Addrs: addrs("10.209.0.2")},
			want: localhost + "10.209.0.2\tabc123 web\n",
		},
		{
			name: "bridge name same as hostname", c: DNSConfig{Hostname: "web", Name: "web", Addrs: addrs("10.209.0.2")},
			want: localhost + "10.209.0.2\tweb\n",
		},
		{
			name: "bridge without name, two addresses", c: DNSConfig{Hostname: "abc123", Addrs: addrs("10.209.0.2", "fd00:b::2")},
			want: localhost + "10.209.0.2\tabc123\nfd00:b::2\tabc123\n",
		},
		{
			name: "bridge with add-host",
			c: DNSConfig{
				Hostname: "abc123", Name: "web", Addrs: addrs("10.209.0.2"), Gateway: gw,
				ExtraHosts: []HostEntry{mustAddHost("db:10.0.0.5"), mustAddHost("host.docker.internal:host-gateway"), mustAddHost("v6:::1"), mustAddHost("v6b=[2001:db8::7]")},
			},
			want: localhost + "10.0.0.5\tdb\n10.209.0.1\thost.docker.internal\n::1\tv6\n2001:db8::7\tv6b\n10.209.0.2\tabc123 web\n",
		},
		{
			name: "none", c: DNSConfig{Mode: DNSNone, Hostname: "abc123", Name: "web", ExtraHosts: []HostEntry{mustAddHost("db:10.0.0.5")}},
			want: localhost + "10.0.0.5\tdb\n",
		},
		{
			name: "host", c: DNSConfig{Mode: DNSHost, Hostname: "myhost", Name: "web", Addrs: addrs("192.168.1.5")},
			want: hostHosts + "\n",
		},
		{
			name: "host with add-host",
			c: DNSConfig{
				Mode: DNSHost, Hostname: "myhost", Gateway: gw,
				ExtraHosts: []HostEntry{mustAddHost("db=10.0.0.5"), mustAddHost("gw:host-gateway")},
			},
			want: hostHosts + "\n10.0.0.5\tdb\n10.209.0.1\tgw\n",
		},
		{
			name: "host without hosts file", noHosts: true,
			c:    DNSConfig{Mode: DNSHost, Hostname: "myhost", ExtraHosts: []HostEntry{mustAddHost("db:10.0.0.5")}},
			want: "10.0.0.5\tdb\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newDNSHost(t)
			h.write(h.resolv, "nameserver 10.0.0.2\n")
			if !tc.noHosts {
				h.write(h.hosts, hostHosts)
			}
			files, err := WriteDNSFiles(h.dir, h.config(tc.c))
			if err != nil {
				t.Fatal(err)
			}
			if got := readString(t, files.Hosts); got != tc.want {
				t.Errorf("hosts:\n%s\nwant:\n%s", got, tc.want)
			}
			if got := readString(t, files.Hostname); got != tc.c.Hostname+"\n" {
				t.Errorf("hostname %q, want %q", got, tc.c.Hostname+"\n")
			}
		})
	}
}

func TestDNSConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		c    DNSConfig
		want string // substring of the error
	}{
		{"host-gateway without gateway", DNSConfig{Mode: DNSNone, ExtraHosts: []HostEntry{{Name: "gw", HostGateway: true}}}, `invalid --add-host "gw:host-gateway": no gateway`},
		{"add-host without address", DNSConfig{ExtraHosts: []HostEntry{{Name: "db"}}}, `invalid --add-host for "db": no address`},
		{"add-host bad name", DNSConfig{ExtraHosts: []HostEntry{{Name: "a b", Addr: netip.MustParseAddr("10.0.0.1")}}}, `invalid --add-host "a b:10.0.0.1"`},
		{"bad mode", DNSConfig{Mode: "container"}, `mode "container"`},
		{"newline in hostname", DNSConfig{Hostname: "a\n10.0.0.1 evil"}, "host name"},
		{"hostname too long", DNSConfig{Hostname: strings.Repeat("a", 65)}, "host name"},
		{"bad name", DNSConfig{Name: "a#b"}, `name "a#b"`},
		{"invalid task address", DNSConfig{Addrs: []netip.Addr{{}}}, "invalid task address"},
		{"bad nameserver", DNSConfig{Nameservers: addrs("0.0.0.0")}, "nameserver 0.0.0.0"},
		{"bad search", DNSConfig{Search: []string{"bad_domain"}}, `invalid --dns-search "bad_domain"`},
		{"bad option", DNSConfig{Options: []string{"ndots 2"}}, `invalid --dns-option "ndots 2"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newDNSHost(t)
			_, err := WriteDNSFiles(h.dir, h.config(tc.c))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(h.dir); len(ents) != 0 {
				t.Errorf("files written despite the error: %v", ents)
			}
		})
	}
	t.Run("no hostname", func(t *testing.T) {
		h := newDNSHost(t)
		c := h.config(DNSConfig{})
		c.Hostname = ""
		if _, err := WriteDNSFiles(h.dir, c); err == nil {
			t.Fatal("no error without a host name")
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		h := newDNSHost(t)
		if _, err := WriteDNSFiles(filepath.Join(h.dir, "nope"), h.config(DNSConfig{})); err == nil {
			t.Fatal("no error for a missing directory")
		}
	})
	t.Run("host file too large", func(t *testing.T) {
		h := newDNSHost(t)
		h.write(h.resolv, strings.Repeat("#", maxResolvConfSize+1))
		if _, err := WriteDNSFiles(h.dir, h.config(DNSConfig{})); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("err = %v, want a size error", err)
		}
	})
	t.Run("host file unreadable", func(t *testing.T) {
		h := newDNSHost(t)
		if err := os.Mkdir(h.resolv, 0o755); err != nil { // a directory: reading fails
			t.Fatal(err)
		}
		if _, err := WriteDNSFiles(h.dir, h.config(DNSConfig{})); err == nil {
			t.Fatal("no error for an unreadable host file")
		}
	})
}

func TestDNSConfigDefaults(t *testing.T) {
	c := DNSConfig{Hostname: "h"}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	if c.Mode != DNSBridge || c.HostResolvConf != "/etc/resolv.conf" || c.SystemdResolvConf != "/run/systemd/resolve/resolv.conf" || c.HostHosts != "/etc/hosts" {
		t.Errorf("defaults: %+v", c)
	}
}

// The files are 0644 whatever the mode of the files they replace, replaced
// atomically, and no temporary file is left, also when a write fails.
func TestDNSFilesWriteAtomic(t *testing.T) {
	h := newDNSHost(t)
	h.write(h.resolv, "nameserver 10.0.0.2\n")
	for _, name := range []string{"hosts", "resolv.conf", "hostname"} {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := h.config(DNSConfig{Hostname: "first", Addrs: addrs("10.209.0.2")})
	if _, err := WriteDNSFiles(h.dir, c); err != nil {
		t.Fatal(err)
	}
	c.Hostname = "second"
	files, err := WriteDNSFiles(h.dir, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{files.Hosts, files.ResolvConf, files.Hostname} {
		if !filepath.IsAbs(p) || filepath.Dir(p) != h.dir {
			t.Errorf("path %s: want an absolute path in %s", p, h.dir)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", p, fi.Mode().Perm())
		}
	}
	if got := readString(t, files.Hostname); got != "second\n" {
		t.Errorf("hostname %q, want second", got)
	}
	if got := readString(t, files.Hosts); !strings.HasSuffix(got, "10.209.0.2\tsecond\n") {
		t.Errorf("hosts not rewritten:\n%s", got)
	}
	assertDirNames(t, h.dir, "hostname", "hosts", "resolv.conf")

	// A relative dir gives absolute paths.
	t.Chdir(h.dir)
	files, err = WriteDNSFiles(".", c)
	if err != nil {
		t.Fatal(err)
	}
	if files.Hosts != filepath.Join(h.dir, "hosts") {
		t.Errorf("relative dir: hosts at %s, want %s", files.Hosts, filepath.Join(h.dir, "hosts"))
	}

	// resolv.conf can't be replaced (a non-empty directory is in the way):
	// the error leaves no temporary file behind.
	h2 := newDNSHost(t)
	if err := os.MkdirAll(filepath.Join(h2.dir, "resolv.conf", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDNSFiles(h2.dir, h2.config(DNSConfig{})); err == nil {
		t.Fatal("no error with a directory in resolv.conf's place")
	}
	assertDirNames(t, h2.dir, "hosts", "resolv.conf")
}

func assertDirNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func TestParseAddHost(t *testing.T) {
	good := []struct {
		in   string
		want HostEntry
	}{
		{"db:10.0.0.5", HostEntry{Name: "db", Addr: netip.MustParseAddr("10.0.0.5")}},
		{"db=10.0.0.5", HostEntry{Name: "db", Addr: netip.MustParseAddr("10.0.0.5")}},
		{"my-host.example.com:192.168.1.1", HostEntry{Name: "my-host.example.com", Addr: netip.MustParseAddr("192.168.1.1")}},
		{"v6:::1", HostEntry{Name: "v6", Addr: netip.MustParseAddr("::1")}},
		{"v6:[::1]", HostEntry{Name: "v6", Addr: netip.MustParseAddr("::1")}},
		{"v6=2001:db8::1", HostEntry{Name: "v6", Addr: netip.MustParseAddr("2001:db8::1")}},
		{"v6=[2001:db8::1]", HostEntry{Name: "v6", Addr: netip.MustParseAddr("2001:db8::1")}},
		{"v6:2001:db8:0:0:0:0:0:1", HostEntry{Name: "v6", Addr: netip.MustParseAddr("2001:db8::1")}},
		{"v4b:[10.0.0.1]", HostEntry{Name: "v4b", Addr: netip.MustParseAddr("10.0.0.1")}},
		{"mapped:::ffff:10.0.0.1", HostEntry{Name: "mapped", Addr: netip.MustParseAddr("10.0.0.1")}},
		{"host.docker.internal:host-gateway", HostEntry{Name: "host.docker.internal", HostGateway: true}},
		{"gw=host-gateway", HostEntry{Name: "gw", HostGateway: true}},
		{"1up:0.0.0.0", HostEntry{Name: "1up", Addr: netip.MustParseAddr("0.0.0.0")}},
	}
	for _, tc := range good {
		got, err := ParseAddHost(tc.in)
		if err != nil {
			t.Errorf("ParseAddHost(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseAddHost(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if back, err := ParseAddHost(got.String()); err != nil || back != got {
			t.Errorf("ParseAddHost(%q.String() = %q) = %+v, %v", tc.in, got.String(), back, err)
		}
	}
	bad := []struct{ in, why string }{
		{"", "want name:address"},
		{"db", "want name:address"},
		{":10.0.0.1", "no host name"},
		{"=10.0.0.1", "no host name"},
		{"db:", "no address"},
		{"db=", "no address"},
		{"db:[]", "not an IP address"},
		{"db:10.0.0.256", "not an IP address"},
		{"db:example.com", "not an IP address"},
		{"db: 10.0.0.1", "not an IP address"},
		{"db:fe80::1%eth0", "zones"},
		{"db:HOST-GATEWAY", "not an IP address"},
		{"a b:10.0.0.1", "invalid character"},
		{"a:b=10.0.0.1", "invalid character"},
		{"under_score:10.0.0.1", "invalid character"},
		{"-db:10.0.0.1", "hyphen"},
		{"db-:10.0.0.1", "hyphen"},
		{"a..b:10.0.0.1", "empty label"},
		{"trailing.:10.0.0.1", "empty label"},
		{strings.Repeat("a", 64) + ":10.0.0.1", "longer than 63"},
		{strings.Repeat("a.", 127) + "ab:10.0.0.1", "longer than 253"},
		{"db\n10.0.0.9 evil:10.0.0.1", "invalid character"},
	}
	for _, tc := range bad {
		_, err := ParseAddHost(tc.in)
		if err == nil {
			t.Errorf("ParseAddHost(%q) succeeded", tc.in)
			continue
		}
		if prefix := "invalid --add-host " + strconv.Quote(tc.in) + ": "; !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseAddHost(%q): %v; want %q…%q", tc.in, err, prefix, tc.why)
		}
	}
}

func TestParseNameserver(t *testing.T) {
	good := map[string]string{
		"8.8.8.8":              "8.8.8.8",
		" 1.1.1.1 ":            "1.1.1.1",
		"2001:4860:4860::8888": "2001:4860:4860::8888",
		"::ffff:10.0.0.1":      "10.0.0.1",
		"127.0.0.1":            "127.0.0.1",
		"::1":                  "::1",
	}
	for in, want := range good {
		got, err := ParseNameserver(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseNameserver(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "dns.google", "8.8.8", "8.8.8.8:53", "[::1]", "fe80::1%eth0", "0.0.0.0", "::", "1.2.3.4/32"} {
		_, err := ParseNameserver(in)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid --dns "+strconv.Quote(in)+": ") {
			t.Errorf("ParseNameserver(%q): err = %v", in, err)
		}
	}
}

func TestParseSearchDomainAndDNSOption(t *testing.T) {
	for in, want := range map[string]string{".": ".", "example.com": "example.com", "example.com.": "example.com", "a-b.c1": "a-b.c1", "lan": "lan"} {
		if got, err := ParseSearchDomain(in); err != nil || got != want {
			t.Errorf("ParseSearchDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "..", "a..b", "-a.com", "a_b.com", "a b", "ex#ample", strings.Repeat("a", 64)} {
		if _, err := ParseSearchDomain(in); err == nil || !strings.HasPrefix(err.Error(), "invalid --dns-search "+strconv.Quote(in)+": ") {
			t.Errorf("ParseSearchDomain(%q): err = %v", in, err)
		}
	}
	for _, in := range []string{"ndots:2", "rotate", "edns0", "timeout:1", "attempts:5"} {
		if got, err := ParseDNSOption(in); err != nil || got != in {
			t.Errorf("ParseDNSOption(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "ndots 2", "a#b", "a;b", "tab\there", "new\nline", "é"} {
		if _, err := ParseDNSOption(in); err == nil || !strings.HasPrefix(err.Error(), "invalid --dns-option "+strconv.Quote(in)+": ") {
			t.Errorf("ParseDNSOption(%q): err = %v", in, err)
		}
	}
}
