//go:build linux

package network

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The IPv6 tests run in a private host (privateHost, forward_linux_test.go):
// a network namespace of the test's own that stands in for the host, so
// that IPv6 forwarding, the bridge, the ip and ip6 tables and the outside
// client touch nothing of the real host, and every packet stays on links
// the test made. Prefixes are random ULAs.

// freeSubnet6 picks a random ULA /64 (fd00::/8 and 56 random bits) that no
// address the calling thread's namespace has falls into.
func freeSubnet6(t *testing.T) netip.Prefix {
	t.Helper()
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V6) })
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		var b [16]byte
		b[0] = 0xfd
		if _, err := rand.Read(b[1:8]); err != nil {
			t.Fatal(err)
		}
		p := netip.PrefixFrom(netip.AddrFrom16(b), 64)
		clash := false
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && p.Contains(ip) {
				clash = true
			}
		}
		if !clash {
			return p
		}
	}
	t.Fatal("no free ULA /64")
	return netip.Prefix{}
}

// newDualStackNetwork moves the test into a private host and makes a
// dual-stack network there (newHostNetwork with a random ULA /64).
func newDualStackNetwork(t *testing.T, tasks ...string) *Network {
	t.Helper()
	privateHost(t)
	return newHostNetworkWith(t, func(c *Config) { c.Subnet6 = freeSubnet6(t) }, tasks...)
}

func talkIn(t *testing.T, nsPath, network, addr string) error {
	t.Helper()
	return inNetNS(t, nsPath, func() error { return talk(network, addr) })
}

// readSysctlIn reads a sysctl (a path under /proc/sys) in a namespace.
func readSysctlIn(t *testing.T, nsPath, key string) string {
	t.Helper()
	var v []byte
	err := inNetNS(t, nsPath, func() (err error) {
		v, err = os.ReadFile(filepath.Join("/proc/sys", key))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

func tableExists6(name string) bool {
	c, err := nftables.New()
	if err != nil {
		return false
	}
	_, err = c.ListTableOfFamily(name, nftables.TableFamilyIPv6)
	return err == nil
}

// outsideClient is a namespace joined to the (private) host by a veth pair
// on links of its own, an IPv4 /30 and an IPv6 /64, with default routes
// via the host's end: a client of published ports from outside.
type outsideClient struct {
	ns           string
	host4, host6 netip.Addr // the host's end
	client6      netip.Addr
}

func newOutsideClient(t *testing.T) *outsideClient {
	t.Helper()
	ns := filepath.Join(t.TempDir(), "client")
	// The client's interfaces take accept_dad=0 from the default: its
	// link-local address must be usable at once for neighbour discovery.
	if err := createNetNS(ns, sysctl{"net/ipv6/conf/default/accept_dad", "0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeNetNS(ns); err != nil {
			t.Error(err)
		}
	})
	nsh, err := netns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	id := randHex(t, 6)
	la := netlink.NewLinkAttrs()
	la.Name = "hc" + id
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "cc" + id, PeerNamespace: netlink.NsFd(int(nsh))}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(la.Name); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	if err := writeSysctl("/proc/sys/net/ipv6/conf/"+la.Name+"/accept_dad", "0"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	link4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 214, b[0], b[1] &^ 3}), 30)
	link6 := freeSubnet6(t)
	oc := &outsideClient{ns: ns, host4: link4.Addr().Next(), host6: link6.Addr().Next()}
	client4 := oc.host4.Next()
	oc.client6 = oc.host6.Next()
	addrs := func(a4, a6 netip.Addr) []*netlink.Addr {
		return []*netlink.Addr{
			{IPNet: &net.IPNet{IP: a4.AsSlice(), Mask: net.CIDRMask(30, 32)}},
			{IPNet: &net.IPNet{IP: a6.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD},
		}
	}
	hostEnd, err := netlink.LinkByName(la.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs(oc.host4, oc.host6) {
		if err := netlink.AddrAdd(hostEnd, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkSetUp(hostEnd); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	cc, err := h.LinkByName("cc" + id)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs(client4, oc.client6) {
		if err := h.AddrAdd(cc, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(cc); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*netlink.Route{
		{LinkIndex: cc.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: oc.host4.AsSlice()},
		{LinkIndex: cc.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: oc.host6.AsSlice()},
	} {
		if err := h.RouteAdd(r); err != nil {
			t.Fatalf("route %v in the client namespace: %v", r, err)
		}
	}
	return oc
}

// TestRuleTag6: the comment of an ip6 rule names the IPv6 host side and
// target, in brackets, and reads back.
func TestRuleTag6(t *testing.T) {
	ap := netip.MustParseAddrPort
	p := PortMapping{HostIP: netip.MustParseAddr("fd00::1"), HostPort: 8080, ContainerPort: 80, Proto: UDP}
	tag := ruleTag("web", p, netip.MustParseAddr("fd00::5"))
	if tag != "berth task=web udp [fd00::1]:8080 -> [fd00::5]:80" {
		t.Errorf("ruleTag = %q", tag)
	}
	if id, proto, host, target, ok := parseRuleTag(tag); !ok || id != "web" || proto != UDP || host != ap("[fd00::1]:8080") || target != ap("[fd00::5]:80") {
		t.Errorf("parseRuleTag(%q) = %s %s %s %s %v", tag, id, proto, host, target, ok)
	}
}

// checkTaskNS6 checks a dual-stack task's namespace: eth0 holds its IPv4
// and IPv6 addresses, the IPv6 one not tentative (usable at once), default
// routes of both families via the gateways, and IPv6 settings that make
// eth0 usable at once and deaf to router advertisements.
func checkTaskNS6(t *testing.T, n *Network, ep *Endpoint) {
	t.Helper()
	nsh, err := netns.GetFromPath(ep.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		family int
		prefix netip.Prefix
		gw     netip.Addr
	}{{netlink.FAMILY_V4, ep.Prefix, n.gateway}, {netlink.FAMILY_V6, ep.Prefix6, n.gateway6}} {
		addrs, err := h.AddrList(eth0, f.family)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range addrs {
			if a.IPNet.String() == f.prefix.String() {
				found = true
				if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
					t.Errorf("%s on eth0 of %s: flags %#x", f.prefix, ep.NetNSPath, a.Flags)
				}
			}
		}
		if !found {
			t.Errorf("eth0 of %s lacks %s: %v", ep.NetNSPath, f.prefix, addrs)
		}
		routes, err := h.RouteList(eth0, f.family)
		if err != nil {
			t.Fatal(err)
		}
		var gw net.IP
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && r.Dst.Mask != nil && net.IP(r.Dst.Mask).IsUnspecified() {
				gw = r.Gw
			}
		}
		if gw.String() != f.gw.String() {
			t.Errorf("default route of family %d in %s via %v, want %s: %v", f.family, ep.NetNSPath, gw, f.gw, routes)
		}
	}
	for key, want := range map[string]string{
		"net/ipv6/conf/eth0/accept_dad":   "0",
		"net/ipv6/conf/eth0/accept_ra":    "0",
		"net/ipv6/conf/eth0/disable_ipv6": "0",
		"net/ipv6/conf/lo/disable_ipv6":   "0",
	} {
		if got := readSysctlIn(t, ep.NetNSPath, key); got != want {
			t.Errorf("%s in %s = %s, want %s", key, ep.NetNSPath, got, want)
		}
	}
}

// TestDualStackSetupTask: on a dual-stack network EnsureBridge gives the
// bridge the IPv6 gateway address (usable at once), turns on IPv6
// forwarding and makes the ip6 table with the bridge's two masquerade
// rules, twice without duplicates. Tasks get both addresses, both default
// routes, reach each other and the host over IPv6 at once (no duplicate
// address detection to wait for) and keep their IPv6 address across
// setups and Network values on the same state dir; a task leased while the
// network was IPv4 only gets an IPv6 address and keeps its IPv4 one.
// Teardown releases all; Remove leaves neither table.
func TestDualStackSetupTask(t *testing.T) {
	n := newDualStackNetwork(t, "a", "b", "old")
	v4only, err := New(Config{BridgeName: n.bridge, Subnet: n.subnet, StateDir: n.st.Root(), RunRoot: n.runRoot, Table: n.table})
	if err != nil {
		t.Fatal(err)
	}
	old4, err := v4only.Allocate("old")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := n.EnsureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V6) })
	if err != nil {
		t.Fatal(err)
	}
	gw6 := netip.PrefixFrom(n.gateway6, n.subnet6.Bits()).String()
	found := false
	for _, a := range addrs {
		if a.IPNet.String() == gw6 {
			found = a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0
		}
	}
	if !found {
		t.Fatalf("bridge lacks a usable %s: %v", gw6, addrs)
	}
	for path, want := range map[string]string{
		"/proc/sys/net/ipv6/conf/all/forwarding":                "1",
		"/proc/sys/net/ipv6/conf/" + n.bridge + "/accept_dad":   "0",
		"/proc/sys/net/ipv6/conf/" + n.bridge + "/disable_ipv6": "0",
	} {
		if v := readSysctl(t, path); v != want {
			t.Errorf("%s = %s, want %s", path, v, want)
		}
	}
	c := nftConn(t)
	nt := n.natTable(nftables.TableFamilyIPv6)
	if rules, err := c.GetRules(nt.t, nt.post); err != nil || len(rules) != 2 || ruleComment(rules[0]) != n.bridgeTag() {
		t.Fatalf("ip6 postrouting rules: %d, %v (want 2 of the bridge's)", len(rules), err)
	}
	if !n.TableExists() {
		t.Fatal("TableExists = false after EnsureBridge")
	}

	a, err := n.SetupTask("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.SetupTask("b")
	if err != nil {
		t.Fatal(err)
	}
	o, err := n.SetupTask("old")
	if err != nil {
		t.Fatal(err)
	}
	if o.Addr != old4 || !n.usable6(o.Addr6) {
		t.Fatalf("task leased before IPv6: %v %v (had %v)", o.Addr, o.Addr6, old4)
	}
	seen := map[netip.Addr]bool{}
	for _, ep := range []*Endpoint{a, b, o} {
		if !n.usable6(ep.Addr6) || seen[ep.Addr6] || ep.Gateway6 != n.gateway6 || ep.Prefix6 != netip.PrefixFrom(ep.Addr6, n.subnet6.Bits()) {
			t.Fatalf("endpoint %+v", ep)
		}
		seen[ep.Addr6] = true
		checkTaskNS6(t, n, ep)
	}

	// At once, over IPv6: task to task across the bridge, host to task,
	// task to the host's gateway address.
	a6 := netip.AddrPortFrom(a.Addr6, 7000).String()
	listenEchoIn(t, a.NetNSPath, "tcp6", a6)
	if err := talkIn(t, b.NetNSPath, "tcp6", a6); err != nil {
		t.Fatalf("b -> %s: %v", a6, err)
	}
	if err := talk("tcp6", a6); err != nil {
		t.Fatalf("host -> %s: %v", a6, err)
	}
	ln, err := net.Listen("tcp6", netip.AddrPortFrom(n.gateway6, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoTCP(ln)
	if err := talkIn(t, b.NetNSPath, "tcp6", ln.Addr().String()); err != nil {
		t.Fatalf("b -> host at %s: %v", ln.Addr(), err)
	}

	// The leases persist: another Network on the state dir sees them, and
	// setting a task up again keeps both addresses.
	m, err := New(Config{BridgeName: n.bridge, Subnet: n.subnet, Subnet6: n.subnet6, StateDir: n.st.Root(), RunRoot: n.runRoot, Table: n.table})
	if err != nil {
		t.Fatal(err)
	}
	if l6, err := m.Leases6(); err != nil || len(l6) != 3 || l6["a"] != a.Addr6 || l6["b"] != b.Addr6 || l6["old"] != o.Addr6 {
		t.Fatalf("Leases6 through another Network: %v, %v", l6, err)
	}
	a2, err := m.SetupTask("a")
	if err != nil {
		t.Fatal(err)
	}
	if a2.Addr != a.Addr || a2.Addr6 != a.Addr6 {
		t.Fatalf("setting a up again: %v %v, was %v %v", a2.Addr, a2.Addr6, a.Addr, a.Addr6)
	}
	checkTaskNS6(t, n, a2)

	for _, id := range []string{"a", "b", "old"} {
		if err := n.TeardownTask(id); err != nil {
			t.Fatal(err)
		}
	}
	if l6, err := n.Leases6(); err != nil || len(l6) != 0 {
		t.Fatalf("Leases6 after teardown: %v, %v", l6, err)
	}
	if err := n.Remove(); err != nil {
		t.Fatal(err)
	}
	if tableExists(n.table) || tableExists6(n.table) {
		t.Fatalf("a table is left after Remove: ip %v, ip6 %v", tableExists(n.table), tableExists6(n.table))
	}
}

// TestIPv6PublishedPorts: on a dual-stack network, from an outside client
// over links the test made:
//
//   - a mapping on an IPv6 host address has ip6 rules only and answers
//     over IPv6, TCP and UDP;
//   - a mapping without a host address has rules in both families and
//     answers over IPv4 and IPv6, from outside, from the host through the
//     IPv6 gateway address, and from tasks through it (hairpin), the
//     published task itself included;
//   - a mapping on an IPv4 address has ip rules only;
//   - Ports holds one entry per mapping, not per family;
//   - [::1] is refused naming the reason, is not DNAT'd by mappings on
//     every address, and a host socket on it keeps its port and its
//     traffic;
//   - conflicts and dynamic ports take both families into account;
//   - RemovePorts removes the rules of both families.
func TestIPv6PublishedPorts(t *testing.T) {
	n := newDualStackNetwork(t, "web", "peer")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	web, err := n.SetupTask("web")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := n.SetupTask("peer")
	if err != nil {
		t.Fatal(err)
	}
	oc := newOutsideClient(t)
	listenEchoIn(t, web.NetNSPath, "tcp", ":8080") // both families
	listenEchoIn(t, web.NetNSPath, "udp6", "[::]:8053")

	base := freePortBlock(t, 10)
	p6tcp, p6udp, pAll, p4, pLoop, pDyn := base, base+1, base+2, base+3, base+4, base+5
	ports := []PortMapping{
		{HostIP: oc.host6, HostPort: p6tcp, ContainerPort: 8080},
		{HostIP: oc.host6, HostPort: p6udp, ContainerPort: 8053, Proto: UDP},
		{HostPort: pAll, ContainerPort: 8080},
		{HostIP: loopback, HostPort: p4, ContainerPort: 8080},
	}
	got, err := n.AddPorts("web", ports)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := n.Ports("web"); err != nil || len(p) != len(ports) || fmt.Sprint(p) != fmt.Sprint(got) {
		t.Fatalf("Ports(web) = %v, %v; want one entry per mapping: %v", p, err, got)
	}
	rules, err := n.portRules("web")
	if err != nil {
		t.Fatal(err)
	}
	to4, to6 := web.Addr.String()+":8080", "["+web.Addr6.String()+"]:8080"
	var want []string
	for _, ch := range []string{"prerouting", "output"} {
		want = append(want,
			fmt.Sprintf("%s: berth task=web tcp 0.0.0.0:%d -> %s", ch, pAll, to4),
			fmt.Sprintf("%s: berth task=web tcp 127.0.0.1:%d -> %s", ch, p4, to4),
			fmt.Sprintf("ip6 %s: berth task=web tcp [%s]:%d -> %s", ch, oc.host6, p6tcp, to6),
			fmt.Sprintf("ip6 %s: berth task=web udp [%s]:%d -> [%s]:8053", ch, oc.host6, p6udp, web.Addr6),
			fmt.Sprintf("ip6 %s: berth task=web tcp 0.0.0.0:%d -> %s", ch, pAll, to6),
		)
	}
	slices.Sort(rules)
	slices.Sort(want)
	if !slices.Equal(rules, want) {
		t.Fatalf("rules of web:\n%q\nwant\n%q", rules, want)
	}

	hostPort := func(a netip.Addr, p uint16) string { return netip.AddrPortFrom(a, p).String() }
	for _, c := range []struct{ what, network, addr string }{
		{"IPv6 mapping, tcp", "tcp6", hostPort(oc.host6, p6tcp)},
		{"IPv6 mapping, udp", "udp6", hostPort(oc.host6, p6udp)},
		{"every address, over IPv6", "tcp6", hostPort(oc.host6, pAll)},
		{"every address, over IPv4", "tcp4", hostPort(oc.host4, pAll)},
	} {
		if err := talkIn(t, oc.ns, c.network, c.addr); err != nil {
			t.Errorf("client -> %s (%s): %v", c.addr, c.what, err)
		}
	}
	// An IPv4 mapping does not answer over IPv6, an IPv6 one not over IPv4.
	if err := talkIn(t, oc.ns, "tcp4", hostPort(oc.host4, p6tcp)); err == nil {
		t.Error("an IPv6 mapping answers over IPv4")
	}
	if err := talk("tcp4", hostPort(loopback, p4)); err != nil {
		t.Errorf("host -> 127.0.0.1:%d: %v", p4, err)
	}
	gwAll := hostPort(n.gateway6, pAll)
	if err := talk("tcp6", gwAll); err != nil {
		t.Errorf("host -> %s: %v", gwAll, err)
	}
	if err := talkIn(t, peer.NetNSPath, "tcp6", gwAll); err != nil {
		t.Errorf("peer task -> %s (hairpin): %v", gwAll, err)
	}
	if err := talkIn(t, web.NetNSPath, "tcp6", gwAll); err != nil {
		t.Errorf("web -> its own published port %s (hairpin): %v", gwAll, err)
	}

	// [::1]: refused by name; not DNAT'd by a mapping on every address.
	_, err = n.AddPorts("web", []PortMapping{{HostIP: netip.IPv6Loopback(), HostPort: pLoop, ContainerPort: 8080}})
	if err == nil || !strings.Contains(err.Error(), "[::1]") || !strings.Contains(err.Error(), "route_localnet") || !strings.Contains(err.Error(), "userland proxy") {
		t.Fatalf("AddPorts on [::1]: %v; want a refusal naming the reason", err)
	}
	if err := talk("tcp6", hostPort(netip.IPv6Loopback(), pAll)); err == nil {
		t.Error("[::1] is DNAT'd to the task")
	}
	own, err := net.Listen("tcp6", hostPort(netip.IPv6Loopback(), pLoop))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	go func() {
		for {
			c, err := own.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "host\n")
			c.Close()
		}
	}()
	if _, err := n.AddPorts("peer", []PortMapping{{HostPort: pLoop, ContainerPort: 9}}); err != nil {
		t.Fatalf("a mapping on every address over a host socket on [::1]: %v", err)
	}
	if c, err := net.DialTimeout("tcp6", own.Addr().String(), 2*time.Second); err != nil {
		t.Errorf("host socket on %s after the mapping: %v", own.Addr(), err)
	} else {
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != "host\n" {
			t.Errorf("%s answered %q: taken by the mapping", own.Addr(), line)
		}
	}

	// Conflicts across families.
	for _, m := range []PortMapping{
		{HostIP: oc.host6, HostPort: p6tcp, ContainerPort: 1},                // same IPv6 address
		{HostIP: netip.IPv6Unspecified(), HostPort: p6tcp, ContainerPort: 1}, // :: covers it
		{HostPort: p6tcp, ContainerPort: 1},                                  // every address covers it
		{HostIP: oc.host6, HostPort: pAll, ContainerPort: 1},                 // under every address
	} {
		var ce *ConflictError
		if _, err := n.AddPorts("peer", []PortMapping{m}); !errors.As(err, &ce) || ce.Holder != "web" {
			t.Errorf("AddPorts(%v) = %v; want a ConflictError naming web", m, err)
		}
	}
	if _, err := n.AddPorts("peer", []PortMapping{{HostIP: loopback, HostPort: p6tcp, ContainerPort: 1}}); err != nil {
		t.Errorf("an IPv4 mapping on the port of an IPv6 one: %v", err)
	}
	ln6, err := net.Listen("tcp6", hostPort(oc.host6, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	held := netip.MustParseAddrPort(ln6.Addr().String()).Port()
	var ce *ConflictError
	if _, err := n.AddPorts("peer", []PortMapping{{HostPort: held, ContainerPort: 1}}); !errors.As(err, &ce) || ce.PID != os.Getpid() {
		t.Errorf("a mapping on every address over a host socket on %s: %v; want a ConflictError naming this process", ln6.Addr(), err)
	}
	// Dynamic ports skip a host socket on an IPv6 address.
	ln6d, err := net.Listen("tcp6", hostPort(oc.host6, pDyn))
	if err != nil {
		t.Fatal(err)
	}
	defer ln6d.Close()
	n.portRange = PortRange{pDyn, pDyn + 1}
	if d, err := n.AddPorts("peer", []PortMapping{{ContainerPort: 9}}); err != nil || d[0].HostPort != pDyn+1 {
		t.Errorf("dynamic port next to a host socket on [%s]:%d: %v, %v", oc.host6, pDyn, d, err)
	}

	for range 2 {
		if err := n.RemovePorts("web"); err != nil {
			t.Fatal(err)
		}
	}
	if rules, err := n.portRules("web"); err != nil || len(rules) != 0 {
		t.Fatalf("rules of web after RemovePorts: %q, %v", rules, err)
	}
	if err := talkIn(t, oc.ns, "tcp6", hostPort(oc.host6, p6tcp)); err == nil {
		t.Error("IPv6 mapping answers after RemovePorts")
	}
	if err := n.TeardownTask("peer"); err != nil {
		t.Fatal(err)
	}
	if rules, err := n.portRules("peer"); err != nil || len(rules) != 0 {
		t.Fatalf("rules of peer after TeardownTask: %q, %v", rules, err)
	}
}

// TestIPv6Reconcile: after the ip6 table alone is deleted, TableExists
// says so and Reconcile brings it back with the masquerade rules and the
// live task's ip6 rules (its ip rules untouched), and IPv6 traffic flows
// again; ip6 rules of a task without a lease, aimed at the IPv6 subnet,
// are removed. When the network is configured IPv4 only again, Reconcile
// removes the task's ip6 rules, and Remove the ip6 table.
func TestIPv6Reconcile(t *testing.T) {
	n := newDualStackNetwork(t, "web")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	web, err := n.SetupTask("web")
	if err != nil {
		t.Fatal(err)
	}
	oc := newOutsideClient(t)
	listenEchoIn(t, web.NetNSPath, "tcp", ":8080")
	base := freePortBlock(t, 3)
	if _, err := n.AddPorts("web", []PortMapping{{HostIP: oc.host6, HostPort: base, ContainerPort: 8080}, {HostPort: base + 1, ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}
	before, err := n.portRules("web")
	if err != nil || len(before) != 6 {
		t.Fatalf("rules of web: %q, %v", before, err)
	}
	targets := []string{netip.AddrPortFrom(oc.host6, base).String(), netip.AddrPortFrom(oc.host6, base+1).String()}
	reach := func() error {
		for _, a := range targets {
			if err := talkIn(t, oc.ns, "tcp6", a); err != nil {
				return fmt.Errorf("client -> %s: %w", a, err)
			}
		}
		return talkIn(t, oc.ns, "tcp4", netip.AddrPortFrom(oc.host4, base+1).String())
	}
	if err := reach(); err != nil {
		t.Fatal(err)
	}
	live := func(id string) bool { return id == "web" }
	if rep, err := n.Reconcile(live); err != nil || !emptyReport(rep) {
		t.Fatalf("Reconcile of a consistent network: %+v, %v", rep, err)
	}

	c := nftConn(t)
	c.DelTable(n.nftTable6())
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n.TableExists() {
		t.Fatal("TableExists = true without the ip6 table")
	}
	if err := talkIn(t, oc.ns, "tcp6", targets[0]); err == nil {
		t.Fatal("IPv6 mapping answers without the ip6 table")
	}
	// A leftover of a task without a lease, aimed at the IPv6 subnet.
	c = nftConn(t)
	n.addPortRules(c, taskPortRules("ghost", n.gateway.Next().Next().Next(), n.gateway6.Next().Next().Next(),
		[]PortMapping{{HostIP: oc.host6, HostPort: base + 2, ContainerPort: 80, Proto: TCP}}), nil)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	rep, err := n.Reconcile(live)
	if err != nil || !slices.Equal(rep.Rebuilt, []string{"web"}) || rep.OrphanRules != 2 || len(rep.TornDown) != 0 {
		t.Fatalf("Reconcile after the ip6 table was deleted: %+v, %v", rep, err)
	}
	if after, err := n.portRules("web"); err != nil || !slices.Equal(after, before) {
		t.Fatalf("rules after Reconcile:\n%q\nwant\n%q (%v)", after, before, err)
	}
	if rules, err := n.portRules("ghost"); err != nil || len(rules) != 0 {
		t.Fatalf("rules of ghost after Reconcile: %q, %v", rules, err)
	}
	nt := n.natTable(nftables.TableFamilyIPv6)
	if r, err := nftConn(t).GetRules(nt.t, nt.post); err != nil || len(r) != 2 {
		t.Fatalf("ip6 postrouting after Reconcile: %d rules, %v", len(r), err)
	}
	if err := reach(); err != nil {
		t.Fatalf("after Reconcile: %v", err)
	}
	if rep, err := n.Reconcile(live); err != nil || !emptyReport(rep) {
		t.Fatalf("second Reconcile: %+v, %v", rep, err)
	}

	// Configured IPv4 only again: the ip6 rules go, the ip ones stay.
	v4, err := New(Config{BridgeName: n.bridge, Subnet: n.subnet, StateDir: n.st.Root(), RunRoot: n.runRoot, Table: n.table})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := v4.Reconcile(live); err != nil || !slices.Equal(rep.Rebuilt, []string{"web"}) {
		t.Fatalf("IPv4-only Reconcile: %+v, %v", rep, err)
	}
	after, err := v4.portRules("web")
	if err != nil || len(after) != 2 || strings.Contains(strings.Join(after, "\n"), "ip6") {
		t.Fatalf("rules after an IPv4-only Reconcile: %q, %v", after, err)
	}
	if err := talkIn(t, oc.ns, "tcp4", netip.AddrPortFrom(oc.host4, base+1).String()); err != nil {
		t.Fatalf("IPv4 after an IPv4-only Reconcile: %v", err)
	}
	if err := v4.TeardownTask("web"); err != nil {
		t.Fatal(err)
	}
	if err := v4.Remove(); err != nil {
		t.Fatal(err)
	}
	if tableExists(n.table) || tableExists6(n.table) {
		t.Fatalf("a table is left after Remove: ip %v, ip6 %v", tableExists(n.table), tableExists6(n.table))
	}
}

// TestIPv4OnlyNoIPv6: a network without Subnet6 makes no ip6 table, no
// IPv6 address on the bridge or in tasks and leaves IPv6 forwarding as it
// was; IPv6 mappings are refused naming the missing IPv6 subnet, mappings
// on every address make ip rules only.
func TestIPv4OnlyNoIPv6(t *testing.T) {
	privateHost(t)
	fwd := "/proc/sys/net/ipv6/conf/all/forwarding"
	before := readSysctl(t, fwd)
	n := newHostNetwork(t, "web")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	ep, err := n.SetupTask("web")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Addr6.IsValid() || ep.Prefix6.IsValid() || ep.Gateway6.IsValid() {
		t.Fatalf("IPv6 in the endpoint of an IPv4-only network: %+v", ep)
	}
	if _, err := n.AddPorts("web", []PortMapping{{HostPort: freePort(t, "tcp"), ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	if rules, err := n.portRules("web"); err != nil || len(rules) != 2 || strings.Contains(strings.Join(rules, ""), "ip6") {
		t.Fatalf("rules: %q, %v", rules, err)
	}
	_, err = n.AddPorts("web", []PortMapping{{HostIP: netip.MustParseAddr("fd00::1"), HostPort: 1, ContainerPort: 80}})
	if err == nil || !strings.Contains(err.Error(), "IPv6 subnet") {
		t.Fatalf("IPv6 mapping on an IPv4-only network: %v", err)
	}
	if tableExists6(n.table) {
		t.Fatal("an IPv4-only network made an ip6 table")
	}
	if got := readSysctl(t, fwd); got != before {
		t.Fatalf("IPv6 forwarding changed from %s to %s", before, got)
	}
	global := func(addrs []netlink.Addr, err error) []string {
		if err != nil {
			t.Fatal(err)
		}
		var g []string
		for _, a := range addrs {
			if a.IP.IsGlobalUnicast() {
				g = append(g, a.IPNet.String())
			}
		}
		return g
	}
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	if g := global(retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V6) })); len(g) != 0 {
		t.Fatalf("IPv6 addresses on the bridge: %v", g)
	}
	nsh, err := netns.GetFromPath(ep.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if g := global(h.AddrList(eth0, netlink.FAMILY_V6)); len(g) != 0 {
		t.Fatalf("IPv6 addresses on eth0: %v", g)
	}
	if routes, err := h.RouteList(eth0, netlink.FAMILY_V6); err != nil || slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Gw != nil }) {
		t.Fatalf("IPv6 routes via a gateway in the task: %v, %v", routes, err)
	}
	// Remove deletes an ip6 table of the network's name, left by an
	// earlier dual-stack configuration.
	c := nftConn(t)
	c.AddTable(n.nftTable6())
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := n.TeardownTask("web"); err != nil {
		t.Fatal(err)
	}
	if err := n.Remove(); err != nil {
		t.Fatal(err)
	}
	if tableExists6(n.table) {
		t.Fatal("Remove left the ip6 table")
	}
}
