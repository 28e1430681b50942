package network

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// FuzzResolvConf feeds arbitrary bytes as the host's resolv.conf (and as
// systemd-resolved's file) through what WriteDNSFiles does between reading
// the host files and writing its own: choosing the source, parsing and
// rendering. It checks that this never
// panics, that bridge mode always yields at least one nameserver and never
// an unreachable one, that its output is plain printable text and a fixed
// point (rendering it again changes nothing), and that host and none modes
// copy the host file byte for byte.
func FuzzResolvConf(f *testing.F) {
	seeds := []string{
		"",
		"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
		"nameserver 10.0.0.2\nnameserver 2001:db8::53\nsearch a.example b.example\n",
		"# c\n; c\n\tnameserver\t10.0.0.2 # x\r\nnameserver 10.0.0.3;x\noptions ndots:2 rotate\ndomain d.example",
		"nameserver ::ffff:127.0.0.1\nnameserver 0.0.0.0\nnameserver fe80::1%eth0\nNAMESERVER 127.0.0.1\n",
		"sortlist 130.155.160.0/255.255.240.0\nnameserver\nsearch\noptions\ndomain\n",
		"\x00nameserver 127.0.0.1\n\xffnameserver 1.1.1.1\nnameserver 1.1.1.1\x00\n",
		strings.Repeat("nameserver 127.0.0.1 ", 1000),
	}
	for i, s := range seeds {
		f.Add([]byte(s), []byte(seeds[(i+1)%len(seeds)]), i%2 == 0, i%3 == 0)
	}
	const hostPath, systemdPath = "/host/etc/resolv.conf", "/host/run/systemd/resolve/resolv.conf"
	f.Fuzz(func(t *testing.T, host, systemd []byte, v6, haveSystemd bool) {
		// The host files, in memory: files make fuzzing ten times slower.
		read := func(path string, limit int64) ([]byte, bool, error) {
			var data []byte
			switch path {
			case hostPath:
				data = host
			case systemdPath:
				if !haveSystemd {
					return nil, false, nil
				}
				data = systemd
			default:
				t.Fatalf("read %s", path)
			}
			if int64(len(data)) > limit {
				t.Skip("input too large")
			}
			return data, true, nil
		}
		task := []netip.Addr{netip.MustParseAddr("10.209.0.2")}
		if v6 {
			task = append(task, netip.MustParseAddr("fd00:b::2"))
		}
		render := func(mode DNSMode, hostFile []byte) ([]byte, []string) {
			t.Helper()
			c := DNSConfig{Mode: mode, Hostname: "h", Addrs: task, HostResolvConf: hostPath, SystemdResolvConf: systemdPath, HostHosts: "/host/etc/hosts"}
			if err := c.check(); err != nil {
				t.Fatal(err)
			}
			if hostFile != nil {
				return c.resolvConfFile(hostFile, hostPath)
			}
			src, from, err := c.loadResolvConf(read)
			if err != nil {
				t.Fatal(err)
			}
			return c.resolvConfFile(src, from)
		}

		for _, mode := range []DNSMode{DNSHost, DNSNone} {
			if out, warnings := render(mode, nil); !bytes.Equal(out, host) || len(warnings) != 0 {
				t.Fatalf("%s mode: output %q (warnings %q), want the host file %q", mode, out, warnings, host)
			}
		}

		out, warnings := render(DNSBridge, nil)
		checkBridgeResolvConf(t, out, v6)
		fellBack := bytes.Contains(out, []byte("\n# No usable nameserver there"))
		if fellBack != (len(warnings) == 1) || len(warnings) > 1 {
			t.Fatalf("fallback %v but warnings %q", fellBack, warnings)
		}
		again, warnings := render(DNSBridge, out)
		if len(warnings) != 0 || withoutComments(string(again)) != withoutComments(string(out)) {
			t.Fatalf("not a fixed point:\n%q\nrendered again:\n%q (warnings %q)", out, again, warnings)
		}
	})
}

// checkBridgeResolvConf checks a bridge task's resolv.conf the way a C
// library reads it, independently of parseResolvConf.
func checkBridgeResolvConf(t *testing.T, out []byte, v6 bool) {
	t.Helper()
	for i, b := range out {
		if (b < ' ' || b > '~') && b != '\n' {
			t.Fatalf("byte %#x at %d in output %q", b, i, out)
		}
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		t.Fatalf("output does not end with a newline: %q", out)
	}
	n := 0
	for line := range strings.SplitSeq(string(out), "\n") {
		words := strings.Fields(line)
		if len(words) == 0 || !strings.EqualFold(words[0], "nameserver") {
			continue
		}
		if words[0] != "nameserver" || len(words) != 2 {
			t.Fatalf("bad nameserver line %q in:\n%s", line, out)
		}
		a, err := netip.ParseAddr(words[1])
		if err != nil {
			t.Fatalf("nameserver line %q: %v", line, err)
		}
		if a.Unmap().IsLoopback() || a.IsUnspecified() || a.Zone() != "" || a.Is4In6() || (a.Is6() && !v6) {
			t.Fatalf("unreachable nameserver %s in bridge mode (task IPv6: %v):\n%s", a, v6, out)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("no nameserver in bridge mode:\n%s", out)
	}
}

// FuzzParseAddHost checks that ParseAddHost never panics and that what it
// accepts makes a well-formed hosts line and reads back from its String.
func FuzzParseAddHost(f *testing.F) {
	for _, s := range []string{"db:10.0.0.5", "db=10.0.0.5", "v6:::1", "v6:[::1]", "gw:host-gateway", "a b:1.2.3.4", ":", "x:[", "a:b=c", "db:fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseAddHost(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid --add-host ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if back, err := ParseAddHost(e.String()); err != nil || back != e {
			t.Fatalf("ParseAddHost(%q) = %+v; its String %q reads back as %+v, %v", s, e, e.String(), back, err)
		}
		c := DNSConfig{Hostname: "h", ExtraHosts: []HostEntry{e}, Gateway: netip.MustParseAddr("10.209.0.1")}
		if err := c.check(); err != nil {
			t.Fatalf("ParseAddHost(%q) = %+v, which check rejects: %v", s, e, err)
		}
		hosts, err := c.hostsFile()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(hosts), "\n"), "\n")
		if last := strings.Fields(lines[len(lines)-1]); len(last) != 2 || last[1] != e.Name {
			t.Fatalf("hosts line for %q: %q", s, lines[len(lines)-1])
		}
	})
}
