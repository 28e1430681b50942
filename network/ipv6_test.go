package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func newTestNetwork6(t *testing.T, dir, subnet, subnet6 string) *Network {
	t.Helper()
	cfg := Config{StateDir: dir, RunRoot: t.TempDir(), Subnet: netip.MustParsePrefix(subnet)}
	if subnet6 != "" {
		cfg.Subnet6 = netip.MustParsePrefix(subnet6)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNewSubnet6: an IPv6 subnet is masked and its gateway is its first
// host address; anything but a unicast IPv6 prefix of /64 to /120 is
// refused with an error naming it; without one the network is IPv4 only.
func TestNewSubnet6(t *testing.T) {
	n, err := New(Config{StateDir: t.TempDir(), Subnet6: netip.MustParsePrefix("fd12:3456:789a:1::77/64")})
	if err != nil || n.Subnet6().String() != "fd12:3456:789a:1::/64" || n.Gateway6().String() != "fd12:3456:789a:1::1" {
		t.Fatalf("New with Subnet6: %v %v %v", n.Subnet6(), n.Gateway6(), err)
	}
	if n, err := New(Config{StateDir: t.TempDir(), Subnet6: netip.MustParsePrefix("2001:db8::/120")}); err != nil || n.Gateway6().String() != "2001:db8::1" {
		t.Fatalf("a /120: %v", err)
	}
	if n := newTestNetwork(t, ""); n.Subnet6().IsValid() || n.Gateway6().IsValid() {
		t.Fatalf("IPv4-only network: subnet6 %v gateway6 %v", n.Subnet6(), n.Gateway6())
	}
	for _, tt := range []struct{ subnet6, want string }{
		{"10.1.0.0/24", "not an IPv6 prefix"},
		{"::ffff:10.1.0.0/120", "not an IPv6 prefix"},
		{"fd00::/48", "64 to 120"},
		{"fd00::/121", "64 to 120"},
		{"fe80::/64", "not a unicast prefix"},
		{"ff02::/64", "not a unicast prefix"},
		{"::/64", "not a unicast prefix"},
	} {
		_, err := New(Config{StateDir: t.TempDir(), Subnet6: netip.MustParsePrefix(tt.subnet6)})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.subnet6) {
			t.Errorf("New with Subnet6 %s: %v; want an error with %q", tt.subnet6, err, tt.want)
		}
	}
}

// TestAllocate6: on a dual-stack network every task gets an IPv6 address
// besides its IPv4 one, next fit like IPv4 (a released address is not
// reused at once; the search wraps around, skipping the subnet-router
// anycast address and the gateway), keeps it, and two tasks never share
// one; a full subnet is ErrExhausted naming it.
func TestAllocate6(t *testing.T) {
	n := newTestNetwork6(t, t.TempDir(), "10.9.0.0/24", "fd00:9::ff00/120")
	get := func(id string) netip.Addr {
		t.Helper()
		l, err := n.allocate(id)
		if err != nil {
			t.Fatal(err)
		}
		return l.Addr6
	}
	if a, b := get("a"), get("b"); a.String() != "fd00:9::ff02" || b.String() != "fd00:9::ff03" {
		t.Fatalf("first addresses %s %s", a, b)
	}
	if a := get("a"); a.String() != "fd00:9::ff02" {
		t.Fatalf("a again: %s", a)
	}
	if err := n.Release("a"); err != nil {
		t.Fatal(err)
	}
	if c := get("c"); c.String() != "fd00:9::ff04" {
		t.Fatalf("after releasing a, c got %s (the freed address reused at once?)", c)
	}
	m, err := n.Leases6()
	if err != nil || len(m) != 2 || m["b"].String() != "fd00:9::ff03" || m["c"].String() != "fd00:9::ff04" {
		t.Fatalf("Leases6 = %v, %v", m, err)
	}
	// Fill the /120 (254 task addresses: ::ff02 to ::ffff); the IPv4 /24
	// has 253, so fill that with a bigger one: a new network on the same
	// state dir, as after a configuration change.
	n = newTestNetwork6(t, n.st.Root(), "10.9.0.0/16", "fd00:9::ff00/120")
	seen := map[netip.Addr]string{m["b"]: "b", m["c"]: "c"}
	for i := range 252 {
		id := fmt.Sprintf("t%d", i)
		a := get(id)
		if other, dup := seen[a]; dup || !n.usable6(a) {
			t.Fatalf("%s got %s (usable %v, also %q's)", id, a, n.usable6(a), other)
		}
		seen[a] = id
	}
	if _, ok := seen[netip.MustParseAddr("fd00:9::ff02")]; !ok {
		t.Fatal("the search did not wrap around to a's released address")
	}
	if _, err := n.allocate("full"); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "fd00:9::ff00/120") {
		t.Fatalf("allocate on a full IPv6 subnet: %v", err)
	}
	if _, err := os.Stat(n.st.Path(leaseKey("full"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed allocation left a lease: %v", err)
	}
}

// TestAllocate6Upgrade: a lease file written before berth knew IPv6, and a
// lease made while the network was IPv4 only, still read, keep their
// addresses and ports, and get an IPv6 address on the next Allocate, one
// no other task holds; an IPv4-only network ignores IPv6 addresses in
// leases.
func TestAllocate6Upgrade(t *testing.T) {
	dir := t.TempDir()
	v4 := newTestNetwork6(t, dir, "10.8.0.0/24", "")
	if l, err := v4.allocate("made-v4"); err != nil || l.Addr6.IsValid() {
		t.Fatalf("allocate on an IPv4-only network: %+v, %v", l, err)
	}
	old := []byte(`{"taskID":"old","addr":"10.8.0.9","ports":[{"hostPort":8080,"containerPort":80,"proto":"tcp"}]}` + "\n")
	if err := os.WriteFile(v4.st.Path(leaseKey("old")), old, 0o600); err != nil {
		t.Fatal(err)
	}
	dual := newTestNetwork6(t, dir, "10.8.0.0/24", "fd00:8::/64")
	if m, err := dual.Leases6(); err != nil || len(m) != 0 {
		t.Fatalf("Leases6 before any IPv6 allocation: %v, %v", m, err)
	}
	a6 := map[netip.Addr]string{}
	for _, id := range []string{"made-v4", "old", "new"} {
		before, _ := v4.Leases()
		l, err := dual.allocate(id)
		if err != nil || !dual.usable6(l.Addr6) {
			t.Fatalf("%s: %+v, %v", id, l, err)
		}
		if b, ok := before[id]; ok && b != l.Addr {
			t.Fatalf("%s: IPv4 address changed from %s to %s", id, b, l.Addr)
		}
		if other, dup := a6[l.Addr6]; dup {
			t.Fatalf("%s and %s share %s", id, other, l.Addr6)
		}
		a6[l.Addr6] = id
	}
	if p, err := dual.Ports("old"); err != nil || len(p) != 1 || p[0].HostPort != 8080 {
		t.Fatalf("ports of the old lease after it got an IPv6 address: %v, %v", p, err)
	}
	// Back to IPv4 only: the IPv6 addresses are not reported, the IPv4
	// ones stay.
	if m, err := v4.Leases6(); err != nil || len(m) != 0 {
		t.Fatalf("Leases6 of an IPv4-only network: %v, %v", m, err)
	}
	if a, err := v4.Allocate("old"); err != nil || a.String() != "10.8.0.9" {
		t.Fatalf("IPv4-only Allocate of a dual-stack lease: %v, %v", a, err)
	}
	// Another IPv6 subnet: new IPv6 addresses from it.
	other := newTestNetwork6(t, dir, "10.8.0.0/24", "fd00:7::/64")
	if l, err := other.allocate("old"); err != nil || !netip.MustParsePrefix("fd00:7::/64").Contains(l.Addr6) || l.Addr.String() != "10.8.0.9" {
		t.Fatalf("allocate after the IPv6 subnet changed: %+v, %v", l, err)
	}
}

// TestOverlaps6: host sides of both families: 0.0.0.0 (every address)
// overlaps everything, :: every IPv6 address, an IPv6 address only itself.
func TestOverlaps6(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"0.0.0.0:80", "[fd00::1]:80", true},
		{"0.0.0.0:80", "[::]:80", true},
		{"[::]:80", "[fd00::1]:80", true},
		{"[::]:80", "127.0.0.1:80", false},
		{"[fd00::1]:80", "[fd00::1]:80", true},
		{"[fd00::1]:80", "[fd00::2]:80", false},
		{"[fd00::1]:80", "127.0.0.1:80", false},
		{"[::]:80", "[::]:81", false},
	} {
		for _, x := range [][2]string{{tt.a, tt.b}, {tt.b, tt.a}} {
			if got := overlaps(TCP, ap(x[0]), TCP, ap(x[1])); got != tt.want {
				t.Errorf("overlaps(%s, %s) = %v", x[0], x[1], got)
			}
		}
	}
	p := PortMapping{HostIP: netip.MustParseAddr("fd00::1"), HostPort: 8080, ContainerPort: 80, Proto: UDP}
	if proto, a, ok := parseHostSide(p.hostSide()); !ok || proto != UDP || a != ap("[fd00::1]:8080") {
		t.Errorf("parseHostSide(%q) = %s %s %v", p.hostSide(), proto, a, ok)
	}
}

// TestPortAllocResolve6: conflicts and free ports across families. A
// mapping on every address of a dual-stack task (wild6) also conflicts
// with host sockets on IPv6 addresses, except ::1, which it leaves alone;
// for an IPv4-only task it does not. IPv6 mappings conflict with task
// mappings on the same IPv6 address, on :: and on every address, not with
// IPv4 ones.
func TestPortAllocResolve6(t *testing.T) {
	ap := netip.MustParseAddrPort
	v6 := netip.MustParseAddr("fd00::10")
	held := []heldPort{
		{TCP, ap("[fd00::10]:8080"), "web6"},
		{TCP, ap("127.0.0.1:8081"), "web4"},
		{TCP, ap("0.0.0.0:8082"), "all"},
		{TCP, ap("[::]:8083"), "any6"},
	}
	socks := []hostSocket{
		{proto: TCP, local: ap("[fd00::10]:7000"), state: tcpListen, inode: 1},
		{proto: TCP, local: ap("[::1]:7001"), state: tcpListen, inode: 2},
		{proto: TCP, local: ap("0.0.0.0:7002"), state: tcpListen, inode: 3},
		{proto: TCP, local: ap("[fd00::10]:20000"), state: tcpListen, inode: 4},
	}
	dyn := PortRange{20000, 20001}
	for _, tt := range []struct {
		name  string
		wild6 bool
		p     PortMapping
		want  uint16 // resolved host port, 0 for an error
		err   string
	}{
		{"same v6 address", true, PortMapping{HostIP: v6, HostPort: 8080}, 0, "published by task web6"},
		{"other v6 address", true, PortMapping{HostIP: netip.MustParseAddr("fd00::11"), HostPort: 8080}, 8080, ""},
		{"every v6 address covers one", true, PortMapping{HostIP: netip.IPv6Unspecified(), HostPort: 8080}, 0, "published by task web6"},
		{"every address covers a v6 one", true, PortMapping{HostPort: 8080}, 0, "published by task web6"},
		{"v6 and v4 apart", true, PortMapping{HostIP: v6, HostPort: 8081}, 8081, ""},
		{"v6 under every address", true, PortMapping{HostIP: v6, HostPort: 8082}, 0, "published by task all"},
		{"v6 under ::", true, PortMapping{HostIP: v6, HostPort: 8083}, 0, "published by task any6"},
		{"v4 not under ::", true, PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8083}, 8083, ""},
		{"v6 listener, dual-stack task", true, PortMapping{HostPort: 7000}, 0, "in use on the host"},
		{"v6 listener, IPv4-only task", false, PortMapping{HostPort: 7000}, 7000, ""},
		{"v6 listener, v6 mapping", false, PortMapping{HostIP: v6, HostPort: 7000}, 0, "in use on the host"},
		{"::1 listener is left alone", true, PortMapping{HostPort: 7001}, 7001, ""},
		{"::1 listener, :: mapping", true, PortMapping{HostIP: netip.IPv6Unspecified(), HostPort: 7001}, 7001, ""},
		{"0.0.0.0 listener, v6 mapping", true, PortMapping{HostIP: v6, HostPort: 7002}, 7002, ""},
		{"0.0.0.0 listener, every address", true, PortMapping{HostPort: 7002}, 0, "in use on the host"},
		{"dynamic skips a v6 listener", true, PortMapping{}, 20001, ""},
		{"dynamic v6 skips it too", true, PortMapping{HostIP: v6}, 20001, ""},
		{"dynamic IPv4-only takes it", false, PortMapping{}, 20000, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newPortAlloc(held, socks, dyn, 0, nil)
			a.wild6 = tt.wild6
			p := tt.p
			p.ContainerPort = 80
			got, err := a.resolve("me", []PortMapping{p.normalized()})
			if tt.err != "" {
				var ce *ConflictError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("resolve(%v) = %v, %v; want a ConflictError with %q", p, got, err, tt.err)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0].HostPort != tt.want {
				t.Fatalf("resolve(%v) = %v, %v; want host port %d", p, got, err, tt.want)
			}
		})
	}
}
