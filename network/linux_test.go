//go:build linux

package network

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func randHex(t *testing.T, n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)[:n]
}

// freeSubnet picks a random /24 in 10.213.0.0/16 that no address on the host
// falls into.
func freeSubnet(t *testing.T) netip.Prefix {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		b := make([]byte, 1)
		_, _ = rand.Read(b)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, b[0], 0}), 24)
		clash := false
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && p.Contains(ip) {
				clash = true
			}
		}
		if !clash {
			return p
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16")
	return netip.Prefix{}
}

// newHostNetwork makes a Network with a bridge and table unique to this test,
// removed (with every task named in tasks) when the test ends.
func newHostNetwork(t *testing.T, tasks ...string) *Network {
	t.Helper()
	return newHostNetworkWith(t, nil, tasks...)
}

// newHostNetworkWith is newHostNetwork with the Config changed by mod
// before New (nil: unchanged).
func newHostNetworkWith(t *testing.T, mod func(*Config), tasks ...string) *Network {
	t.Helper()
	testrig.RequireRoot(t)
	// Temp dirs first: cleanups run last-in first-out, so the netns mounts
	// inside RunRoot are gone before the temp dir is removed.
	stateDir, runRoot := t.TempDir(), t.TempDir()
	id := randHex(t, 6)
	cfg := Config{
		BridgeName: "bt" + id,
		Subnet:     freeSubnet(t),
		StateDir:   stateDir,
		RunRoot:    runRoot,
		Table:      "berth_t_" + id,
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, task := range tasks {
			if err := n.TeardownTask(task); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := n.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return n
}

// inNetNS runs fn on a thread that has entered the network namespace at
// path. The thread is never handed back to the Go scheduler: it exits with
// the goroutine. Sockets fn creates stay in that namespace.
func inNetNS(t *testing.T, path string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// echoTCP serves one line-echo per connection until ln is closed.
func echoTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			_, _ = io.WriteString(c, "echo "+line)
		}()
	}
}

func echoUDP(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
	}
}

// listenEchoIn starts a line-echo TCP server or a datagram-echo UDP server
// (network tcp, tcp6, udp, udp6, ...) at addr in a network namespace.
func listenEchoIn(t *testing.T, nsPath, network, addr string) {
	t.Helper()
	var c io.Closer
	err := inNetNS(t, nsPath, func() error {
		if strings.HasPrefix(network, "udp") {
			pc, err := net.ListenPacket(network, addr)
			if err == nil {
				c = pc
				go echoUDP(pc)
			}
			return err
		}
		ln, err := net.Listen(network, addr)
		if err == nil {
			c = ln
			go echoTCP(ln)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
}

// talk dials addr (from the calling thread's namespace) and checks the
// echo; UDP retries a lost datagram.
func talk(network, addr string) error {
	if !strings.HasPrefix(network, "udp") {
		c, err := net.DialTimeout(network, addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if line != "echo hello\n" {
			return fmt.Errorf("got %q", line)
		}
		return nil
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for range 3 {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err = c.Write([]byte("ping")); err != nil {
			continue
		}
		buf := make([]byte, 100)
		var k int
		if k, err = c.Read(buf); err == nil {
			if string(buf[:k]) != "echo ping" {
				return fmt.Errorf("got %q", buf[:k])
			}
			return nil
		}
	}
	return err
}

// listenTCPIn starts a TCP (IPv4) echo server inside a network namespace.
func listenTCPIn(t *testing.T, nsPath, addr string) {
	t.Helper()
	listenEchoIn(t, nsPath, "tcp4", addr)
}

// listenUDPIn starts a UDP (IPv4) echo server inside a network namespace.
func listenUDPIn(t *testing.T, nsPath, addr string) {
	t.Helper()
	listenEchoIn(t, nsPath, "udp4", addr)
}

// talkTCP connects over IPv4 and checks the echo.
func talkTCP(addr string) error { return talk("tcp4", addr) }

// talkUDP sends a datagram over IPv4 and checks the echo.
func talkUDP(addr string) error { return talk("udp4", addr) }

// freePort returns a port nothing listens on at 127.0.0.1 just now.
func freePort(t *testing.T, network string) uint16 {
	t.Helper()
	var a net.Addr
	if network == "udp" {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a = pc.LocalAddr()
		pc.Close()
	} else {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a = ln.Addr()
		ln.Close()
	}
	return uint16(netip.MustParseAddrPort(a.String()).Port())
}

func readSysctl(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func tableExists(name string) bool {
	c, err := nftables.New()
	if err != nil {
		return false
	}
	_, err = c.ListTableOfFamily(name, nftables.TableFamilyIPv4)
	return err == nil
}

// TestEnsureBridge: the bridge comes up with the gateway address,
// forwarding and route_localnet are on, the table holds the bridge's three
// masquerade rules; a second call changes nothing; Remove removes bridge and
// table and may be repeated.
func TestEnsureBridge(t *testing.T) {
	n := newHostNetwork(t)
	for range 2 {
		if err := n.EnsureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	if br.Attrs().HardwareAddr.String() != bridgeMAC(n.bridge).String() {
		t.Errorf("bridge MAC %s, want %s", br.Attrs().HardwareAddr, bridgeMAC(n.bridge))
	}
	if br.Type() != "bridge" || br.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("%s: type %s flags %v", n.bridge, br.Type(), br.Attrs().Flags)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != netip.PrefixFrom(n.gateway, n.subnet.Bits()).String() {
		t.Fatalf("addresses of %s: %v, %v", n.bridge, addrs, err)
	}
	if v := readSysctl(t, "/proc/sys/net/ipv4/ip_forward"); v != "1" {
		t.Errorf("ip_forward = %s", v)
	}
	if v := readSysctl(t, filepath.Join("/proc/sys/net/ipv4/conf", n.bridge, "route_localnet")); v != "1" {
		t.Errorf("route_localnet = %s", v)
	}
	c, _ := nftables.New()
	tbl := n.nftTable()
	_, _, post := n.nftChains(tbl)
	rules, err := c.GetRules(tbl, post)
	if err != nil || len(rules) != 3 {
		t.Fatalf("postrouting rules: %d, %v (want 3: EnsureBridge twice must not duplicate)", len(rules), err)
	}
	for _, r := range rules {
		if ruleComment(r) != n.bridgeTag() {
			t.Errorf("rule comment %q", ruleComment(r))
		}
	}
	for range 2 {
		if err := n.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := netlink.LinkByName(n.bridge); err == nil {
		t.Error("bridge still there after Remove")
	}
	if tableExists(n.table) {
		t.Error("table still there after Remove")
	}
}

// postChainRules lists the rules of the network's ip postrouting chain.
func postChainRules(t *testing.T, n *Network) []*nftables.Rule {
	t.Helper()
	tbl := n.nftTable()
	_, _, post := n.nftChains(tbl)
	rules, err := nftConn(t).GetRules(tbl, post)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// postRules describes the rules of the network's ip postrouting chain:
// handle and comment, so that two listings compare equal only if no rule
// was added, removed or replaced.
func postRules(t *testing.T, n *Network) []string {
	t.Helper()
	rules := postChainRules(t, n)
	var out []string
	for _, r := range rules {
		out = append(out, fmt.Sprintf("%d %s", r.Handle, ruleComment(r)))
	}
	return out
}

// checkMasqRules checks that the ip postrouting chain holds exactly the
// bridge's masquerade rules, in order.
func checkMasqRules(t *testing.T, n *Network) {
	t.Helper()
	rules := postChainRules(t, n)
	want := n.masqRules(nftables.TableFamilyIPv4)
	ok := len(rules) == len(want)
	for i := 0; ok && i < len(rules); i++ {
		ok = ruleComment(rules[i]) == n.bridgeTag() && exprBytes(t, rules[i].Exprs) == exprBytes(t, want[i])
	}
	if !ok {
		t.Fatalf("postrouting: %q, want the bridge's %d masquerade rules", postRules(t, n), len(want))
	}
}

// exprBytes is the netlink form of an IPv4 rule's expressions.
func exprBytes(t *testing.T, exprs []expr.Any) string {
	t.Helper()
	var b []byte
	for _, e := range exprs {
		m, err := expr.Marshal(byte(nftables.TableFamilyIPv4), e)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, m...)
	}
	return string(b)
}

// TestEnsureBridgeReadsOnly: once everything is in place EnsureBridge
// rewrites nothing (the rules keep their handles, the address stays), and
// it still repairs what differs: a missing, doubled or changed masquerade
// rule, a missing chain, a missing gateway address, a bridge that is down.
func TestEnsureBridgeReadsOnly(t *testing.T) {
	n := newHostNetwork(t)
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	before := postRules(t, n)
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	if got := postRules(t, n); !slices.Equal(got, before) {
		t.Fatalf("EnsureBridge rewrote the rules in place:\n%q\nwas\n%q", got, before)
	}
	checkMasqRules(t, n)

	tbl := n.nftTable()
	pre, _, post := n.nftChains(tbl)
	rules, err := nftConn(t).GetRules(tbl, post)
	if err != nil || len(rules) != 3 {
		t.Fatalf("postrouting: %d rules, %v", len(rules), err)
	}
	tag := comment(n.bridgeTag())
	for _, tc := range []struct {
		name   string
		damage func(c *nftables.Conn)
	}{
		{"a rule missing", func(c *nftables.Conn) {
			rules, _ := c.GetRules(tbl, post)
			_ = c.DelRule(rules[1])
		}},
		{"a rule twice", func(c *nftables.Conn) {
			c.AddRule(&nftables.Rule{Table: tbl, Chain: post, Exprs: n.masqRules(nftables.TableFamilyIPv4)[0], UserData: tag})
		}},
		{"a rule changed", func(c *nftables.Conn) {
			rules, _ := c.GetRules(tbl, post)
			_ = c.DelRule(rules[2])
			c.AddRule(&nftables.Rule{Table: tbl, Chain: post, UserData: tag,
				Exprs: concat(matchOifname(n.bridge, true), matchSaddr(netip.MustParsePrefix("192.0.2.0/24")), matchCtDNAT(), masq())})
		}},
		{"rules out of order", func(c *nftables.Conn) {
			rules, _ := c.GetRules(tbl, post)
			_ = c.DelRule(rules[0])
			c.AddRule(&nftables.Rule{Table: tbl, Chain: post, Exprs: n.masqRules(nftables.TableFamilyIPv4)[0], UserData: tag})
		}},
		{"a chain missing", func(c *nftables.Conn) { c.DelChain(pre) }},
	} {
		c := nftConn(t)
		tc.damage(c)
		if err := c.Flush(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := n.EnsureBridge(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkMasqRules(t, n)
		chains, err := listChains(nftConn(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range []*nftables.Chain{pre, post} {
			if !chains.hasAsMade(ch) {
				t.Fatalf("%s: chain %s not back", tc.name, ch.Name)
			}
		}
	}

	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: n.gateway.AsSlice(), Mask: net.CIDRMask(n.subnet.Bits(), 32)}}
	if err := netlink.AddrDel(br, gw); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetDown(br); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	br, err = netlink.LinkByName(n.bridge)
	if err != nil || br.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("bridge not up again: %v", err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(gw.IP) {
		t.Fatalf("addresses of %s after EnsureBridge: %v, %v", n.bridge, addrs, err)
	}
}

func TestEnsureBridgeRefusesNonBridge(t *testing.T) {
	n := newHostNetwork(t)
	la := netlink.NewLinkAttrs()
	la.Name = n.bridge
	// A veth pair (dummy links are not built into every kernel).
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "bp" + n.bridge[2:]}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(n.bridge); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	if err := n.EnsureBridge(); err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Fatalf("EnsureBridge over a veth: %v", err)
	}
	if err := n.Remove(); err == nil {
		t.Fatal("Remove deleted a link that is not a bridge")
	}
}

func isMountPoint(t *testing.T, path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// TestSetupTask: two tasks get namespaces with eth0, lo and a default
// route, reach each other over the bridge and reach the gateway; teardown
// leaves no veth, mount, file or lease and can be repeated; setting a task
// up over leftovers of an earlier setup works and keeps its address.
func TestSetupTask(t *testing.T) {
	n := newHostNetwork(t, "task-a", "task-b")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	a, err := n.SetupTask("task-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.SetupTask("task-b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr == b.Addr || !n.subnet.Contains(a.Addr) || a.Gateway != n.gateway || a.NetNSPath != n.NetNSPath("task-a") ||
		a.Prefix != netip.PrefixFrom(a.Addr, n.subnet.Bits()) {
		t.Fatalf("endpoints %+v %+v", a, b)
	}
	for _, ep := range []*Endpoint{a, b} {
		if !isMountPoint(t, ep.NetNSPath) {
			t.Fatalf("%s is not a mount point", ep.NetNSPath)
		}
		host, err := netlink.LinkByName(ep.HostVeth)
		if err != nil || host.Attrs().MasterIndex == 0 {
			t.Fatalf("host veth %s: %v", ep.HostVeth, err)
		}
		nsh, err := netns.GetFromPath(ep.NetNSPath)
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(nsh)
		if err != nil {
			t.Fatal(err)
		}
		eth0, err := h.LinkByName("eth0")
		if err != nil || eth0.Attrs().Flags&net.FlagUp == 0 {
			t.Fatalf("eth0 in %s: %v", ep.NetNSPath, err)
		}
		lo, err := h.LinkByName("lo")
		if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
			t.Fatalf("lo in %s: %v", ep.NetNSPath, err)
		}
		routes, err := h.RouteList(eth0, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var gw string
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				gw = r.Gw.String()
			}
		}
		if gw != n.gateway.String() {
			t.Fatalf("default route in %s via %q: %v", ep.NetNSPath, gw, routes)
		}
		h.Close()
		nsh.Close()
	}

	// Container to container over the bridge, both ways.
	listenTCPIn(t, a.NetNSPath, a.Addr.String()+":7000")
	listenTCPIn(t, b.NetNSPath, b.Addr.String()+":7000")
	if err := inNetNS(t, b.NetNSPath, func() error { return talkTCP(a.Addr.String() + ":7000") }); err != nil {
		t.Fatalf("b -> a: %v", err)
	}
	if err := inNetNS(t, a.NetNSPath, func() error { return talkTCP(b.Addr.String() + ":7000") }); err != nil {
		t.Fatalf("a -> b: %v", err)
	}
	// The host reaches a task through the bridge.
	if err := talkTCP(a.Addr.String() + ":7000"); err != nil {
		t.Fatalf("host -> a: %v", err)
	}

	// Setting up again over existing state: same address, fresh namespace.
	a2, err := n.SetupTask("task-a")
	if err != nil {
		t.Fatal(err)
	}
	if a2.Addr != a.Addr {
		t.Fatalf("re-setup changed the address: %v -> %v", a.Addr, a2.Addr)
	}

	for _, ep := range []*Endpoint{a2, b} {
		id := filepath.Base(ep.NetNSPath)
		for range 2 {
			if err := n.TeardownTask(id); err != nil {
				t.Fatal(err)
			}
		}
		if !linkGone(ep.HostVeth) {
			t.Errorf("%s: veth %s left", id, ep.HostVeth)
		}
		if isMountPoint(t, ep.NetNSPath) {
			t.Errorf("%s: %s still mounted", id, ep.NetNSPath)
		}
		if _, err := os.Stat(ep.NetNSPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s left: %v", id, ep.NetNSPath, err)
		}
	}
	if leases, err := n.Leases(); err != nil || len(leases) != 0 {
		t.Errorf("leases after teardown: %v, %v", leases, err)
	}
}

// TestTeardownHalfMade: teardown of a task whose namespace file exists but
// was never mounted, or that has only a lease, succeeds and cleans up.
func TestTeardownHalfMade(t *testing.T) {
	n := newHostNetwork(t, "half")
	if _, err := n.Allocate("half"); err != nil {
		t.Fatal(err)
	}
	p := n.NetNSPath("half")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := n.TeardownTask("half"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s left: %v", p, err)
	}
	if _, err := n.SetupTask("half"); err == nil {
		t.Fatal("SetupTask without a bridge succeeded")
	}
}

// TestPortMapping: a TCP and a UDP echo server in a task, published on
// 127.0.0.1, answer the host on 127.0.0.1 (output DNAT + route_localnet +
// masquerade); a mapping on the gateway address answers another task
// (prerouting DNAT + hairpin masquerade); after RemovePorts the task has no
// rules and the port is closed.
func TestPortMapping(t *testing.T) {
	n := newHostNetwork(t, "web", "client")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	web, err := n.SetupTask("web")
	if err != nil {
		t.Fatal(err)
	}
	client, err := n.SetupTask("client")
	if err != nil {
		t.Fatal(err)
	}
	listenTCPIn(t, web.NetNSPath, web.Addr.String()+":8080")
	listenUDPIn(t, web.NetNSPath, web.Addr.String()+":8053")

	loopback := netip.MustParseAddr("127.0.0.1")
	tport, uport, hport := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
	ports := []PortMapping{
		{HostIP: loopback, HostPort: tport, ContainerPort: 8080},
		{HostIP: loopback, HostPort: uport, ContainerPort: 8053, Proto: UDP},
		{HostIP: n.gateway, HostPort: hport, ContainerPort: 8080, Proto: TCP},
	}
	if _, err := n.AddPorts("web", ports); err != nil {
		t.Fatal(err)
	}
	rules, err := n.portRules("web")
	if err != nil || len(rules) != 2*len(ports) {
		t.Fatalf("rules of web: %v, %v", rules, err)
	}
	want := "prerouting: berth task=web tcp 127.0.0.1:" + fmt.Sprint(tport) + " -> " + web.Addr.String() + ":8080"
	if rules[0] != want {
		t.Fatalf("first rule %q, want %q", rules[0], want)
	}
	host := func(p uint16) string { return netip.AddrPortFrom(loopback, p).String() }
	if err := talkTCP(host(tport)); err != nil {
		t.Fatalf("host -> 127.0.0.1:%d (tcp): %v", tport, err)
	}
	if err := talkUDP(host(uport)); err != nil {
		t.Fatalf("host -> 127.0.0.1:%d (udp): %v", uport, err)
	}
	gw := netip.AddrPortFrom(n.gateway, hport).String()
	if err := inNetNS(t, client.NetNSPath, func() error { return talkTCP(gw) }); err != nil {
		t.Fatalf("client task -> %s (hairpin): %v", gw, err)
	}
	if err := inNetNS(t, web.NetNSPath, func() error { return talkTCP(gw) }); err != nil {
		t.Fatalf("web task -> its own published port %s (hairpin): %v", gw, err)
	}

	// Every local address (fib daddr type local), from the host and from
	// another task; the port is open for well under a second.
	wport := freePort(t, "tcp")
	if _, err := n.AddPorts("web", []PortMapping{{HostPort: wport, ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}
	wild := netip.AddrPortFrom(n.gateway, wport).String()
	if err := talkTCP(wild); err != nil {
		t.Fatalf("host -> %s (any-address mapping): %v", wild, err)
	}
	if err := inNetNS(t, client.NetNSPath, func() error { return talkTCP(wild) }); err != nil {
		t.Fatalf("client task -> %s (any-address mapping): %v", wild, err)
	}

	// Conflicts are refused before anything changes.
	conflicts := [][]PortMapping{
		{{HostIP: loopback, HostPort: tport, ContainerPort: 1}},                  // same address and port
		{{HostPort: tport, ContainerPort: 1}},                                    // every address covers 127.0.0.1
		{{HostIP: loopback, HostPort: wport, ContainerPort: 1}},                  // covered by an every-address mapping
		{{HostIP: loopback, HostPort: uport, ContainerPort: 1, Proto: UDP}},      // udp too
		{{HostPort: 1234, ContainerPort: 1}, {HostPort: 1234, ContainerPort: 2}}, // within one call
	}
	for _, ports := range conflicts {
		var ce *ConflictError
		if _, err := n.AddPorts("client", ports); !errors.As(err, &ce) {
			t.Fatalf("AddPorts(%v) = %v, want a ConflictError", ports, err)
		}
	}
	if rules, _ := n.portRules("client"); len(rules) != 0 {
		t.Fatalf("refused AddPorts left rules: %v", rules)
	}
	// The same port number over the other protocol is no conflict.
	if _, err := n.AddPorts("client", []PortMapping{{HostIP: loopback, HostPort: tport, ContainerPort: 1, Proto: UDP}}); err != nil {
		t.Fatal(err)
	}
	if err := n.RemovePorts("client"); err != nil {
		t.Fatal(err)
	}

	if _, err := n.AddPorts("web", []PortMapping{{HostPort: 1, ContainerPort: 2, Proto: "sctp"}}); err == nil {
		t.Fatal("AddPorts accepted sctp")
	}
	if _, err := n.AddPorts("nolease", ports); err == nil {
		t.Fatal("AddPorts for a task without a lease succeeded")
	}

	for range 2 {
		if err := n.RemovePorts("web"); err != nil {
			t.Fatal(err)
		}
	}
	if rules, err := n.portRules("web"); err != nil || len(rules) != 0 {
		t.Fatalf("rules of web after RemovePorts: %v, %v", rules, err)
	}
	// The port is free again for another task.
	if _, err := n.AddPorts("client", ports[:1]); err != nil {
		t.Fatalf("port not freed by RemovePorts: %v", err)
	}
	if err := talkTCP(host(tport)); err == nil {
		t.Fatal("published port still answers after RemovePorts")
	}
	// The bridge's masquerade rules are untouched.
	c, _ := nftables.New()
	tbl := n.nftTable()
	_, _, post := n.nftChains(tbl)
	if r, err := c.GetRules(tbl, post); err != nil || len(r) != 3 {
		t.Fatalf("postrouting rules after RemovePorts: %d, %v", len(r), err)
	}
}

func TestOverlaps(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tt := range []struct {
		pa, a, pb, b string
		want         bool
	}{
		{"tcp", "127.0.0.1:80", "tcp", "127.0.0.1:80", true},
		{"tcp", "127.0.0.1:80", "udp", "127.0.0.1:80", false},
		{"tcp", "127.0.0.1:80", "tcp", "127.0.0.1:81", false},
		{"tcp", "127.0.0.1:80", "tcp", "127.0.0.2:80", false},
		{"tcp", "0.0.0.0:80", "tcp", "127.0.0.2:80", true},
		{"udp", "10.0.0.1:53", "udp", "0.0.0.0:53", true},
	} {
		if got := overlaps(Proto(tt.pa), ap(tt.a), Proto(tt.pb), ap(tt.b)); got != tt.want {
			t.Errorf("overlaps(%s %s, %s %s) = %v", tt.pa, tt.a, tt.pb, tt.b, got)
		}
	}
	p := PortMapping{HostPort: 8080, ContainerPort: 80}
	if proto, a, ok := parseHostSide(p.hostSide()); !ok || proto != "tcp" || a != ap("0.0.0.0:8080") {
		t.Errorf("parseHostSide(%q) = %s %s %v", p.hostSide(), proto, a, ok)
	}
}

// TestForwardBlockers: a forward chain with policy drop is reported. The
// chain is made in a network namespace of the test's own, never on the host,
// where it would drop everyone's forwarded traffic.
func TestForwardBlockers(t *testing.T) {
	testrig.RequireRoot(t)
	n := newTestNetwork(t, "")
	path := filepath.Join(t.TempDir(), "ns")
	if err := createNetNS(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeNetNS(path); err != nil {
			t.Error(err)
		}
	})
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(nsh)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := n.forwardBlockers(c); err != nil || len(got) != 0 {
		t.Fatalf("fresh namespace: %v, %v", got, err)
	}
	drop := nftables.ChainPolicyDrop
	accept := nftables.ChainPolicyAccept
	for _, tb := range []struct {
		name   string
		family nftables.TableFamily
		policy *nftables.ChainPolicy
	}{{"filter", nftables.TableFamilyIPv4, &drop}, {"fw", nftables.TableFamilyINet, &drop}, {"ok", nftables.TableFamilyIPv4, &accept}, {n.table, nftables.TableFamilyIPv4, &drop}} {
		tbl := c.AddTable(&nftables.Table{Name: tb.name, Family: tb.family})
		c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tbl, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: tb.policy})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := n.forwardBlockers(c)
	if err != nil || fmt.Sprint(got) != "[inet fw FORWARD ip filter FORWARD]" {
		t.Fatalf("forwardBlockers = %q, %v", got, err)
	}
}

// linkGone waits until no link is named name. A released task's veth
// goes with its network namespace, which the kernel destroys in the
// background (releasePlumbing): moments later, or seconds on a loaded
// machine.
func linkGone(name string) bool {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := netlink.LinkByName(name); isNotFound(err) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
