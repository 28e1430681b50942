//go:build linux

package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

func emptyReport(r *ReconcileReport) bool {
	return len(r.Rebuilt) == 0 && len(r.TornDown) == 0 && r.OrphanRules == 0 && len(r.OrphanVeths) == 0 && len(r.OrphanNetNS) == 0
}

// TestReconcileRebuildsRules: after the test's table is deleted (what `nft
// flush ruleset` or a firewall reload does to it) Reconcile brings the
// table, the masquerade rules and the live task's DNAT rules back, fixed
// and dynamic ports alike, and traffic flows again; a second Reconcile
// changes nothing; flushing only the DNAT chains is repaired the same way.
func TestReconcileRebuildsRules(t *testing.T) {
	n := newHostNetwork(t, "web", "idle")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	web, err := n.SetupTask("web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.SetupTask("idle"); err != nil {
		t.Fatal(err)
	}
	listenTCPIn(t, web.NetNSPath, web.Addr.String()+":8080")
	base := freePortBlock(t, 2)
	n.portRange = PortRange{base + 1, base + 1}
	ports, err := n.AddPorts("web", []PortMapping{{HostIP: loopback, HostPort: base, ContainerPort: 8080}, {HostIP: loopback, ContainerPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	before, err := n.portRules("web")
	if err != nil || len(before) != 4 {
		t.Fatalf("rules of web: %v, %v", before, err)
	}
	talk := func() error {
		for _, p := range ports {
			if err := talkTCP(hostAddr(p.HostPort)); err != nil {
				return fmt.Errorf("host -> %d: %w", p.HostPort, err)
			}
		}
		return nil
	}
	if err := talk(); err != nil {
		t.Fatal(err)
	}
	live := func(id string) bool { return id == "web" || id == "idle" }
	if rep, err := n.Reconcile(live); err != nil || !emptyReport(rep) {
		t.Fatalf("Reconcile of a consistent network: %+v, %v", rep, err)
	}

	if err := n.deleteTable(); err != nil {
		t.Fatal(err)
	}
	if err := talkTCP(hostAddr(ports[0].HostPort)); err == nil {
		t.Fatal("published port answers without the table")
	}
	rep, err := n.Reconcile(live)
	if err != nil || !slices.Equal(rep.Rebuilt, []string{"web"}) || rep.OrphanRules != 0 || len(rep.TornDown) != 0 {
		t.Fatalf("Reconcile after the table was deleted: %+v, %v", rep, err)
	}
	if after, err := n.portRules("web"); err != nil || !slices.Equal(after, before) {
		t.Fatalf("rules after Reconcile:\n%q\nwant\n%q (%v)", after, before, err)
	}
	if err := talk(); err != nil {
		t.Fatalf("after Reconcile: %v", err)
	}
	if rep, err := n.Reconcile(live); err != nil || !emptyReport(rep) {
		t.Fatalf("second Reconcile: %+v, %v", rep, err)
	}
	if after, err := n.portRules("web"); err != nil || !slices.Equal(after, before) {
		t.Fatalf("rules after a second Reconcile: %q, %v", after, err)
	}

	// Only the DNAT chains flushed, the masquerade rules kept; and one
	// stale rule, the output chain missing one mapping.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := n.nftTable()
	pre, out, _ := n.nftChains(tbl)
	c.FlushChain(pre)
	c.FlushChain(out)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if rep, err := n.Reconcile(live); err != nil || !slices.Equal(rep.Rebuilt, []string{"web"}) {
		t.Fatalf("Reconcile after the chains were flushed: %+v, %v", rep, err)
	}
	rules, err := c.GetRules(tbl, out)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DelRule(rules[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if rep, err := n.Reconcile(live); err != nil || !slices.Equal(rep.Rebuilt, []string{"web"}) {
		t.Fatalf("Reconcile with a rule missing: %+v, %v", rep, err)
	}
	if after, err := n.portRules("web"); err != nil || !slices.Equal(after, before) {
		t.Fatalf("rules after Reconcile: %q, %v", after, err)
	}
	if err := talk(); err != nil {
		t.Fatalf("after Reconcile: %v", err)
	}
}

// TestReconcileRemoves: Reconcile removes what belongs to no running task.
// At once: DNAT rules aimed at the subnet and tagged with a task without a
// lease, and a veth on the bridge that no lease owns. After a minute (the
// test moves the clock): the network of a task that is not live (rules,
// veth, namespace, lease, recorded ports) and a namespace file without a
// lease. It keeps a live task's network and the rules of another network
// sharing the table.
func TestReconcileRemoves(t *testing.T) {
	n := newHostNetwork(t, "live", "dead", "ghost")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	live, err := n.SetupTask("live")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := n.SetupTask("dead")
	if err != nil {
		t.Fatal(err)
	}
	listenTCPIn(t, live.NetNSPath, live.Addr.String()+":8080")
	base := freePortBlock(t, 3)
	if _, err := n.AddPorts("live", []PortMapping{{HostIP: loopback, HostPort: base, ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddPorts("dead", []PortMapping{{HostIP: loopback, HostPort: base + 1, ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}

	// Leftovers of "ghost", which has no lease: DNAT rules, a veth on the
	// bridge and a network namespace; and the rules of a task of another
	// network sharing the table, aimed outside this subnet. No traffic is
	// sent to either.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	n.addPortRules(c, taskPortRules("ghost", n.gateway.Next().Next().Next(), netip.Addr{},
		[]PortMapping{{HostIP: loopback, HostPort: base + 2, ContainerPort: 80, Proto: TCP}}), nil)
	n.addPortRules(c, taskPortRules("elsewhere", netip.MustParseAddr("192.0.2.10"), netip.Addr{},
		[]PortMapping{{HostIP: netip.MustParseAddr("127.0.0.9"), HostPort: base + 2, ContainerPort: 80, Proto: TCP}}), nil)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = n.hostVethName("ghost")
	la.MasterIndex = br.Attrs().Index
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vp" + randHex(t, 11)}); err != nil {
		t.Fatal(err)
	}
	ghostNS := n.NetNSPath("ghost")
	if err := createNetNS(ghostNS); err != nil {
		t.Fatal(err)
	}
	isLive := func(id string) bool { return id == "live" }

	// Now: the young leftovers stay.
	rep, err := n.Reconcile(isLive)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OrphanRules != 2 || !slices.Equal(rep.OrphanVeths, []string{n.hostVethName("ghost")}) ||
		len(rep.TornDown) != 0 || len(rep.OrphanNetNS) != 0 || len(rep.Rebuilt) != 0 {
		t.Fatalf("first Reconcile: %+v", rep)
	}
	if rules, err := n.portRules("ghost"); err != nil || len(rules) != 0 {
		t.Fatalf("rules of ghost left: %v, %v", rules, err)
	}
	if _, err := netlink.LinkByName(n.hostVethName("ghost")); !isNotFound(err) {
		t.Fatalf("veth of ghost left: %v", err)
	}
	if !isMountPoint(t, ghostNS) {
		t.Fatal("a young namespace file without a lease was removed")
	}
	if rules, err := n.portRules("dead"); err != nil || len(rules) != 2 {
		t.Fatalf("rules of a task leased just now: %v, %v", rules, err)
	}

	// A minute later.
	n.now = func() time.Time { return time.Now().Add(2 * leaseGrace) }
	rep, err = n.Reconcile(isLive)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.TornDown, []string{"dead"}) || !slices.Equal(rep.OrphanNetNS, []string{"ghost"}) ||
		rep.OrphanRules != 0 || len(rep.OrphanVeths) != 0 || len(rep.Rebuilt) != 0 {
		t.Fatalf("second Reconcile: %+v", rep)
	}
	for _, path := range []string{dead.NetNSPath, ghostNS} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", path, err)
		}
	}
	if !linkGone(dead.HostVeth) {
		t.Errorf("veth of the dead task %s left", dead.HostVeth)
	}
	if rules, err := n.portRules("dead"); err != nil || len(rules) != 0 {
		t.Errorf("rules of the dead task left: %v, %v", rules, err)
	}
	leases, err := n.Leases()
	if _, ok := leases["dead"]; err != nil || ok || len(leases) != 1 {
		t.Errorf("leases after Reconcile: %v, %v", leases, err)
	}
	if m, err := n.PortMap(); err != nil || len(m) != 1 || len(m["live"]) != 1 {
		t.Errorf("PortMap after Reconcile: %v, %v", m, err)
	}
	if rules, err := n.portRules("elsewhere"); err != nil || len(rules) != 2 {
		t.Errorf("rules of another network's task: %v, %v", rules, err)
	}
	if err := talkTCP(hostAddr(base)); err != nil {
		t.Errorf("live task after Reconcile: %v", err)
	}
	// The dead task's port is free again.
	if _, err := n.AddPorts("live", []PortMapping{{HostIP: loopback, HostPort: base + 1, ContainerPort: 8080}}); err != nil {
		t.Error(err)
	}
	if rep, err := n.Reconcile(isLive); err != nil || !emptyReport(rep) {
		t.Errorf("third Reconcile: %+v, %v", rep, err)
	}
}
