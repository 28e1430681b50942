//go:build linux

package network

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The coexistence tests make forward chains with policy drop. On the host
// they would drop everyone's forwarded traffic (other test runs, containers
// of Docker or podman) for as long as they run, so each test moves into a
// network namespace of its own that stands in for the host: the bridge,
// berth's table, the blocking tables, the task and the outside client all
// live there, and all of it goes away with the namespace when the test ends,
// even if the test binary is killed half-way.

// privateHost locks the test's goroutine to its thread and moves the thread
// into a new network namespace, for the rest of the test. The thread is
// never unlocked, so it ends with the goroutine; cleanups run on it too.
// Subtests (t.Run) and t.Parallel would run elsewhere: don't use them.
// At the end the real host is checked for leftovers of the test.
func privateHost(t *testing.T) {
	t.Helper()
	testrig.RequireRoot(t)
	runtime.LockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer host.Close()
		c, err := nftables.New(nftables.WithNetNSFd(int(host)))
		if err != nil {
			t.Error(err)
			return
		}
		tables, err := c.ListTables()
		if err != nil {
			t.Error(err)
			return
		}
		for _, tb := range tables {
			if strings.HasPrefix(tb.Name, "berthtest_") {
				t.Errorf("table %s is on the real host", tb.Name)
			}
		}
	})
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare network namespace: %v", err)
	}
	if cur, err := netns.Get(); err != nil || cur.Equal(host) {
		t.Fatalf("still in the host's network namespace (%v)", err)
	} else {
		cur.Close()
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// coexistRig is a private host with a berth network, a task "web" running a
// TCP echo server on port 8080 published on every local address, and an
// outside client: a namespace joined to the private host by a veth pair on
// a /30 of 10.214.0.0/16, running a TCP echo server on port 7000.
type coexistRig struct {
	t      *testing.T
	n      *Network
	web    string // the task's network namespace
	client string // the client's network namespace
	target string // the published port as the client dials it
	out    string // the client's server as the task dials it
}

func newCoexistRig(t *testing.T) *coexistRig {
	t.Helper()
	privateHost(t)
	n := newHostNetwork(t, "web")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	web, err := n.SetupTask("web")
	if err != nil {
		t.Fatal(err)
	}
	listenTCPIn(t, web.NetNSPath, web.Addr.String()+":8080")
	port := freePort(t, "tcp")
	if _, err := n.AddPorts("web", []PortMapping{{HostPort: port, ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}

	client := filepath.Join(t.TempDir(), "client")
	if err := createNetNS(client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeNetNS(client); err != nil {
			t.Error(err)
		}
	})
	nsh, err := netns.GetFromPath(client)
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
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	link := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 214, b[0], b[1] &^ 3}), 30)
	hostAddr := link.Addr().Next()
	clientAddr := hostAddr.Next()
	addr := func(a netip.Addr) *netlink.Addr {
		return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(30, 32)}}
	}
	hostEnd, err := netlink.LinkByName(la.Name)
	if err == nil {
		err = netlink.AddrAdd(hostEnd, addr(hostAddr))
	}
	if err == nil {
		err = netlink.LinkSetUp(hostEnd)
	}
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, name := range []string{"lo", "cc" + id} {
		l, err := h.LinkByName(name)
		if err == nil && name != "lo" {
			err = h.AddrAdd(l, addr(clientAddr))
		}
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("%s in the client namespace: %v", name, err)
		}
	}
	if err := h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: hostAddr.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	out := netip.AddrPortFrom(clientAddr, 7000).String()
	listenTCPIn(t, client, out)
	return &coexistRig{t: t, n: n, web: web.NetNSPath, client: client,
		target: netip.AddrPortFrom(hostAddr, port).String(), out: out}
}

// reach dials the published port from the client (DNAT'd in, replies out
// of the bridge).
func (r *coexistRig) reach() error {
	return inNetNS(r.t, r.client, func() error { return talkTCP(r.target) })
}

// reachOut dials the client from the task (out of the bridge, replies in
// as established traffic).
func (r *coexistRig) reachOut() error {
	return inNetNS(r.t, r.web, func() error { return talkTCP(r.out) })
}

func nftConn(t *testing.T) *nftables.Conn {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// addBlockerTable creates a table with a forward base chain of policy drop
// named chain, holding one rule of the test's own (an accept for an
// interface that does not exist). Cleanups registered later run first, so
// the table goes before the rest of the test's state.
func addBlockerTable(t *testing.T, family nftables.TableFamily, table, chain string) (*nftables.Table, *nftables.Chain) {
	t.Helper()
	c := nftConn(t)
	tbl := c.AddTable(&nftables.Table{Name: table, Family: family})
	drop := nftables.ChainPolicyDrop
	ch := c.AddChain(&nftables.Chain{Name: chain, Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	t.Cleanup(func() {
		c := nftConn(t)
		c.DelTable(tbl)
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			t.Errorf("delete test table %s: %v", table, err)
		}
	})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, UserData: comment("the test's own rule"),
		Exprs: concat(iifnameIs("bt-nonexistent"), []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}})})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return tbl, ch
}

// dumpRules describes the rules of a chain: handle, comment and
// expressions (counters without their values), so that two listings compare
// equal only if no rule was added, removed, changed or replaced.
func dumpRules(t *testing.T, ch *nftables.Chain) []string {
	t.Helper()
	rules, err := nftConn(t).GetRules(ch.Table, ch)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rules {
		s := fmt.Sprintf("handle %d %q", r.Handle, ruleComment(r))
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Counter: // its values change with traffic
				s += " counter"
			case *expr.Match:
				s += fmt.Sprintf(" match %s/%d %+v", e.Name, e.Rev, e.Info)
			default:
				s += fmt.Sprintf(" %T%+v", e, e)
			}
		}
		out = append(out, s)
	}
	return out
}

// berthRules splits a dump into berth's rules for the network at the top
// and the rest (where any copy further down would make comparisons fail).
func berthRules(n *Network, dump []string) (berth, rest []string) {
	tag := fmt.Sprintf("%q", n.forwardTag())
	i := 0
	for i < len(dump) && strings.Contains(dump[i], tag) {
		i++
	}
	return dump[:i], dump[i:]
}

func checkBlockers(t *testing.T, n *Network, want ...string) {
	t.Helper()
	got, err := n.ForwardBlockers()
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ForwardBlockers = %q, %v; want %q", got, err, want)
	}
}

// TestCoexistDropPolicy: a table of another tool (inet, nft-native) with a
// forward chain of policy drop blocks a published port even though berth's
// table accepts it; EnsureBridge puts berth's three rules at the top of that
// chain (and of an ip6 one), the client reaches the task, a second call
// leaves one copy; Remove leaves both chains exactly as they were.
func TestCoexistDropPolicy(t *testing.T) {
	r := newCoexistRig(t)
	n := r.n
	if err := r.reach(); err != nil {
		t.Fatalf("client -> published port, before any blocker: %v", err)
	}
	if err := r.reachOut(); err != nil {
		t.Fatalf("task -> client, before any blocker: %v", err)
	}
	name := "berthtest_fw_" + randHex(t, 6)
	_, fw := addBlockerTable(t, nftables.TableFamilyINet, name, "forward")
	_, fw6 := addBlockerTable(t, nftables.TableFamilyIPv6, name, "forward")
	before, before6 := dumpRules(t, fw), dumpRules(t, fw6)
	if err := r.reach(); err == nil {
		t.Fatal("client reached the task through a drop policy berth had not opened")
	}
	if err := r.reachOut(); err == nil {
		t.Fatal("task reached the client through a drop policy berth had not opened")
	}
	checkBlockers(t, n, "inet "+name+" forward", "ip6 "+name+" forward")

	for range 2 {
		if err := n.EnsureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.reach(); err != nil {
		t.Fatalf("client -> published port after EnsureBridge: %v", err)
	}
	if err := r.reachOut(); err != nil {
		t.Fatalf("task -> client after EnsureBridge: %v", err)
	}
	for _, c := range []struct {
		ch     *nftables.Chain
		before []string
	}{{fw, before}, {fw6, before6}} {
		berth, rest := berthRules(n, dumpRules(t, c.ch))
		if len(berth) != 3 || !slices.Equal(rest, c.before) {
			t.Fatalf("%s %s after EnsureBridge twice: berth's rules %q, the rest %q (want 3 of berth's on top of %q)",
				fwFamilies[c.ch.Table.Family], c.ch.Name, berth, rest, c.before)
		}
	}
	// inet gets native ct expressions, ip6 iptables-nft's xt match.
	if b, _ := berthRules(n, dumpRules(t, fw)); strings.Contains(strings.Join(b, ""), "match conntrack") {
		t.Errorf("inet rules use xt matches: %q", b)
	}
	if b, _ := berthRules(n, dumpRules(t, fw6)); !strings.Contains(b[1], "match conntrack/3") {
		t.Errorf("ip6 rules without xt conntrack: %q", b)
	}
	checkBlockers(t, n, "inet "+name+" forward (opened in forward)", "ip6 "+name+" forward (opened in forward)")

	// In place: a further call rewrites nothing (the handles stay).
	opened, opened6 := dumpRules(t, fw), dumpRules(t, fw6)
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	if got, got6 := dumpRules(t, fw), dumpRules(t, fw6); !slices.Equal(got, opened) || !slices.Equal(got6, opened6) {
		t.Fatalf("EnsureBridge rewrote rules in place:\n%q\n%q\nwere\n%q\n%q", got, got6, opened, opened6)
	}
	// The tool inserts a rule above berth's: berth's go back to the top.
	c := nftConn(t)
	c.InsertRule(&nftables.Rule{Table: fw.Table, Chain: fw, UserData: comment("the tool's later rule"),
		Exprs: concat(iifnameIs("bt-nonexistent2"), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := r.reach(); err != nil {
		t.Fatalf("client -> published port with a rule above berth's: %v", err)
	}
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	berth, rest := berthRules(n, dumpRules(t, fw))
	if len(berth) != 3 || len(rest) != len(before)+1 || !strings.Contains(rest[0], "the tool's later rule") || !slices.Equal(rest[1:], before) {
		t.Fatalf("inet forward after a rule was inserted above berth's: berth's rules %q, the rest %q", berth, rest)
	}
	c = nftConn(t)
	if rules, err := c.GetRules(fw.Table, fw); err != nil {
		t.Fatal(err)
	} else if err := c.DelRule(rules[3]); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		if err := n.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if got := dumpRules(t, fw); !slices.Equal(got, before) {
		t.Fatalf("inet chain after Remove:\n%q\nwant\n%q", got, before)
	}
	if got := dumpRules(t, fw6); !slices.Equal(got, before6) {
		t.Fatalf("ip6 chain after Remove:\n%q\nwant\n%q", got, before6)
	}
	checkBlockers(t, n, "inet "+name+" forward", "ip6 "+name+" forward")
}

// TestCoexistDockerUser: Docker's layout (ip table, FORWARD with policy drop
// jumping first to the regular chain DOCKER-USER, which ends in return).
// Berth's rules go to the top of DOCKER-USER and FORWARD is left alone,
// also when berth had opened FORWARD itself before DOCKER-USER appeared
// (Docker installed after berth): the rules move. The client reaches the
// task through the xt conntrack matches; a second EnsureBridge leaves one
// copy; Remove restores both chains.
func TestCoexistDockerUser(t *testing.T) {
	r := newCoexistRig(t)
	n := r.n
	name := "berthtest_dk_" + randHex(t, 6)
	tbl, fwd := addBlockerTable(t, nftables.TableFamilyIPv4, name, "FORWARD")
	if err := r.reach(); err == nil {
		t.Fatal("client reached the task through a drop policy berth had not opened")
	}
	// No DOCKER-USER yet: berth opens FORWARD itself.
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	if berth, _ := berthRules(n, dumpRules(t, fwd)); len(berth) != 3 {
		t.Fatalf("FORWARD without DOCKER-USER: berth's rules %q", berth)
	}
	if err := r.reach(); err != nil {
		t.Fatalf("client -> published port, FORWARD opened: %v", err)
	}

	// Docker arrives.
	c := nftConn(t)
	du := c.AddChain(&nftables.Chain{Name: dockerUserChain, Table: tbl})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: du, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictReturn}}})
	c.InsertRule(&nftables.Rule{Table: tbl, Chain: fwd, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: dockerUserChain}}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var beforeFwd []string // FORWARD as Docker left it, without berth's rules
	for _, s := range dumpRules(t, fwd) {
		if !strings.Contains(s, fmt.Sprintf("%q", n.forwardTag())) {
			beforeFwd = append(beforeFwd, s)
		}
	}
	if len(beforeFwd) != 2 {
		t.Fatalf("FORWARD after Docker's changes: %q", dumpRules(t, fwd))
	}
	beforeDU := dumpRules(t, du)

	for range 2 {
		if err := n.EnsureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	if got := dumpRules(t, fwd); !slices.Equal(got, beforeFwd) {
		t.Fatalf("FORWARD after EnsureBridge with DOCKER-USER:\n%q\nwant (berth's rules gone)\n%q", got, beforeFwd)
	}
	berth, rest := berthRules(n, dumpRules(t, du))
	if len(berth) != 3 || !slices.Equal(rest, beforeDU) {
		t.Fatalf("DOCKER-USER after EnsureBridge twice: berth's rules %q, the rest %q (want 3 on top of %q)", berth, rest, beforeDU)
	}
	for i, want := range []string{"", "match conntrack/3", "match conntrack/3"} {
		if !strings.Contains(berth[i], want) || strings.Contains(berth[i], "expr.Ct") {
			t.Errorf("DOCKER-USER rule %d is not in iptables-nft's encoding: %s", i, berth[i])
		}
	}
	if err := r.reach(); err != nil {
		t.Fatalf("client -> published port through DOCKER-USER: %v", err)
	}
	if err := r.reachOut(); err != nil {
		t.Fatalf("task -> client through DOCKER-USER: %v", err)
	}
	checkBlockers(t, n, "ip "+name+" FORWARD (opened in DOCKER-USER)")

	if err := n.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := dumpRules(t, du); !slices.Equal(got, beforeDU) {
		t.Fatalf("DOCKER-USER after Remove:\n%q\nwant\n%q", got, beforeDU)
	}
	if got := dumpRules(t, fwd); !slices.Equal(got, beforeFwd) {
		t.Fatalf("FORWARD after Remove:\n%q\nwant\n%q", got, beforeFwd)
	}
	checkBlockers(t, n, "ip "+name+" FORWARD")
}

// TestCoexistIptablesNFT: the layout as Docker makes it, with iptables-nft
// itself (in the private host namespace). After EnsureBridge, iptables
// still reads the table (native ct expressions would make it refuse the
// whole table as incompatible) and shows berth's rules as iptables rules at
// the top of DOCKER-USER; the client reaches the task; after Remove,
// iptables -S prints what it printed before.
func TestCoexistIptablesNFT(t *testing.T) {
	testrig.RequireRoot(t)
	ipt := testrig.RequireBinary(t, "iptables", "iptables")
	if out, err := exec.Command(ipt, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "nf_tables") {
		testrig.Missing(t, "iptables is not iptables-nft (%s, %v); install iptables and select iptables-nft", strings.TrimSpace(string(out)), err)
	}
	r := newCoexistRig(t)
	n := r.n
	// Commands run from the test's thread, so in the private host namespace.
	iptables := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ipt, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// iptables-nft makes table ip filter: delete it first thing at cleanup.
	t.Cleanup(func() {
		c := nftConn(t)
		c.DelTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
		_ = c.Flush()
	})
	iptables("-N", "DOCKER-USER")
	iptables("-A", "DOCKER-USER", "-j", "RETURN")
	iptables("-I", "FORWARD", "-j", "DOCKER-USER")
	iptables("-P", "FORWARD", "DROP")
	before := iptables("-S")
	if err := r.reach(); err == nil {
		t.Fatal("client reached the task through iptables' FORWARD policy DROP")
	}

	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	br, tag := n.bridge, `-m comment --comment "`+n.forwardTag()+`"`
	want := strings.Join([]string{
		"-N DOCKER-USER",
		"-A DOCKER-USER -i " + br + " " + tag + " -j ACCEPT",
		"-A DOCKER-USER -o " + br + " -m conntrack --ctstate RELATED,ESTABLISHED " + tag + " -j ACCEPT",
		"-A DOCKER-USER -o " + br + " -m conntrack --ctstate DNAT " + tag + " -j ACCEPT",
		"-A DOCKER-USER -j RETURN",
	}, "\n") + "\n"
	if got := iptables("-S", "DOCKER-USER"); got != want {
		t.Fatalf("iptables -S DOCKER-USER:\n%s\nwant\n%s", got, want)
	}
	// What Docker runs at start, and a save, still work.
	iptables("-C", "DOCKER-USER", "-j", "RETURN")
	if out, err := exec.Command(ipt+"-save", "-t", "filter").CombinedOutput(); err != nil || !strings.Contains(string(out), "--ctstate DNAT") {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	if err := r.reach(); err != nil {
		t.Fatalf("client -> published port through iptables' DOCKER-USER: %v", err)
	}
	if err := r.reachOut(); err != nil {
		t.Fatalf("task -> client through iptables' DOCKER-USER: %v", err)
	}
	checkBlockers(t, n, "ip filter FORWARD (opened in DOCKER-USER)")

	if err := n.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := iptables("-S"); got != before {
		t.Fatalf("iptables -S after Remove:\n%s\nwant\n%s", got, before)
	}
}

// TestCoexistTwoBridges: two berth networks open the same blocking chain;
// each keeps one copy of its rules above the other tool's, and once both
// are in place neither EnsureBridge moves anything (each would otherwise
// push its rules above the other's on every call). Remove of one leaves
// the other's.
func TestCoexistTwoBridges(t *testing.T) {
	privateHost(t)
	a, b := newHostNetwork(t), newHostNetwork(t)
	name := "berthtest_two_" + randHex(t, 6)
	_, fw := addBlockerTable(t, nftables.TableFamilyINet, name, "forward")
	before := dumpRules(t, fw)
	for _, n := range []*Network{a, b, a, b} {
		if err := n.EnsureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	opened := dumpRules(t, fw)
	for _, n := range []*Network{a, b, b, a} {
		if err := n.EnsureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	if got := dumpRules(t, fw); !slices.Equal(got, opened) {
		t.Fatalf("EnsureBridge of two bridges moved rules in place:\n%q\nwere\n%q", got, opened)
	}
	count := func(n *Network, dump []string) int {
		c := 0
		for _, s := range dump {
			if strings.Contains(s, fmt.Sprintf("%q", n.forwardTag())) {
				c++
			}
		}
		return c
	}
	if count(a, opened) != 3 || count(b, opened) != 3 || !slices.Equal(opened[6:], before) {
		t.Fatalf("forward chain with two bridges: %q (want 3 rules of each on top of %q)", opened, before)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := dumpRules(t, fw); count(a, got) != 0 || count(b, got) != 3 || !slices.Equal(got[3:], before) {
		t.Fatalf("forward chain after Remove of one bridge: %q", got)
	}
}
