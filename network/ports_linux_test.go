//go:build linux

package network

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// freePortBlock returns the first of count consecutive ports that no host
// socket holds just now, in 20000-29999: below the kernel's ephemeral range,
// so no outgoing connection takes one, and apart from berth's dynamic range,
// which other packages' tests publish from.
func freePortBlock(t *testing.T, count int) uint16 {
	t.Helper()
	for range 100 {
		base := 20000 + rand.N(10000-count)
		socks, err := hostSockets()
		if err != nil {
			t.Fatal(err)
		}
		free := true
		for _, s := range socks {
			if p := int(s.local.Port()); p >= base && p < base+count {
				free = false
			}
		}
		if free {
			return uint16(base)
		}
	}
	t.Fatalf("no %d free ports in a row in 20000-29999", count)
	return 0
}

func inRange(p uint16, r PortRange) bool { return p >= r.First && p <= r.Last }

func hostAddr(p uint16) string { return netip.AddrPortFrom(loopback, p).String() }

// TestDynamicPorts: a mapping without a host port gets one from the
// network's range and traffic reaches the task through it; further ones get
// other ports; when the range is used up AddPorts fails with an error
// naming the range and adds nothing.
func TestDynamicPorts(t *testing.T) {
	n := newHostNetwork(t, "web", "client")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	web, err := n.SetupTask("web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.SetupTask("client"); err != nil {
		t.Fatal(err)
	}
	listenTCPIn(t, web.NetNSPath, web.Addr.String()+":8080")
	base := freePortBlock(t, 3)
	n.portRange = PortRange{base, base + 2}

	got1, err := n.AddPorts("web", []PortMapping{{HostIP: loopback, ContainerPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got1) != 1 || !inRange(got1[0].HostPort, n.portRange) || got1[0].HostIP != loopback ||
		got1[0].Proto != TCP || got1[0].HostPortEnd != 0 || got1[0].ContainerPort != 8080 {
		t.Fatalf("AddPorts returned %v; want one TCP mapping on 127.0.0.1 with a port in %s", got1, n.portRange)
	}
	if err := talkTCP(hostAddr(got1[0].HostPort)); err != nil {
		t.Fatalf("host -> dynamic port %d: %v", got1[0].HostPort, err)
	}
	// Every address overlaps 127.0.0.1: another port.
	got2, err := n.AddPorts("client", []PortMapping{{ContainerPort: 9}})
	if err != nil {
		t.Fatal(err)
	}
	if !inRange(got2[0].HostPort, n.portRange) || got2[0].HostPort == got1[0].HostPort || got2[0].HostIP.IsValid() {
		t.Fatalf("second dynamic mapping %v (first %v)", got2, got1)
	}
	got3, err := n.AddPorts("web", []PortMapping{{HostIP: loopback, ContainerPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	if p := got3[0].HostPort; !inRange(p, n.portRange) || p == got1[0].HostPort || p == got2[0].HostPort {
		t.Fatalf("third dynamic mapping %v (then %v, %v)", got3, got1, got2)
	}
	if err := talkTCP(hostAddr(got3[0].HostPort)); err != nil {
		t.Fatalf("host -> dynamic port %d: %v", got3[0].HostPort, err)
	}

	_, err = n.AddPorts("client", []PortMapping{{HostIP: loopback, HostPort: freePort(t, "tcp"), ContainerPort: 9}, {ContainerPort: 9}})
	if !errors.Is(err, ErrPortsExhausted) || !strings.Contains(err.Error(), n.portRange.String()) {
		t.Fatalf("AddPorts on a used-up range: %v; want ErrPortsExhausted naming %s", err, n.portRange)
	}
	t.Log(err)
	if rules, err := n.portRules("client"); err != nil || len(rules) != 2 {
		t.Fatalf("rules of client after a refused AddPorts: %v, %v", rules, err)
	}
	if p, err := n.Ports("client"); err != nil || fmt.Sprint(p) != fmt.Sprint(got2) {
		t.Fatalf("ports of client after a refused AddPorts: %v, %v", p, err)
	}
	// UDP ports are apart from TCP ones.
	if got, err := n.AddPorts("client", []PortMapping{{ContainerPort: 9, Proto: UDP}}); err != nil || !inRange(got[0].HostPort, n.portRange) {
		t.Fatalf("dynamic UDP mapping on a range used up by TCP: %v, %v", got, err)
	}
}

// TestDynamicPortsConcurrent: tasks publishing at once, each through its
// own Network on the same state dir and table (as separate berth processes
// would), get distinct ports, and all of them when there are just enough.
func TestDynamicPortsConcurrent(t *testing.T) {
	const tasks = 8
	var ids []string
	for i := range tasks {
		ids = append(ids, fmt.Sprintf("t%d", i))
	}
	n := newHostNetwork(t, ids...)
	base := freePortBlock(t, tasks)
	cfg := Config{BridgeName: n.bridge, Subnet: n.subnet, StateDir: n.st.Root(), RunRoot: n.runRoot, Table: n.table,
		PortRange: PortRange{base, base + tasks - 1}}
	var mu sync.Mutex
	got := map[uint16]string{}
	errs := make(chan error, tasks)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			m, err := New(cfg)
			if err == nil {
				_, err = m.Allocate(id)
			}
			var ports []PortMapping
			if err == nil {
				ports, err = m.AddPorts(id, []PortMapping{{HostIP: loopback, ContainerPort: 80}})
			}
			if err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := got[ports[0].HostPort]; dup {
				errs <- fmt.Errorf("%s and %s both got port %d", id, other, ports[0].HostPort)
			}
			got[ports[0].HostPort] = id
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(got) != tasks {
		t.Fatalf("%d distinct ports for %d tasks: %v", len(got), tasks, got)
	}
}

// TestHostRangePorts: a mapping with a host port range gets the first port
// of the range that is free: not published by another task, not held by a
// listener on the host; the task answers on it.
func TestHostRangePorts(t *testing.T) {
	n := newHostNetwork(t, "a", "b")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.SetupTask("a"); err != nil {
		t.Fatal(err)
	}
	b, err := n.SetupTask("b")
	if err != nil {
		t.Fatal(err)
	}
	listenTCPIn(t, b.NetNSPath, b.Addr.String()+":8080")
	base := freePortBlock(t, 3)
	if _, err := n.AddPorts("a", []PortMapping{{HostIP: loopback, HostPort: base, ContainerPort: 1}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", hostAddr(base+1))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := PortMapping{HostIP: loopback, HostPort: base, HostPortEnd: base + 2, ContainerPort: 8080}
	got, err := n.AddPorts("b", []PortMapping{want})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].HostPort != base+2 || got[0].HostPortEnd != 0 {
		t.Fatalf("host range %d-%d with %d published and %d listened on: got %v", base, base+2, base, base+1, got)
	}
	if err := talkTCP(hostAddr(base + 2)); err != nil {
		t.Fatalf("host -> %d: %v", base+2, err)
	}
	if _, err := n.AddPorts("b", []PortMapping{want}); !errors.Is(err, ErrPortsExhausted) ||
		!strings.Contains(err.Error(), fmt.Sprintf("%d-%d", base, base+2)) {
		t.Fatalf("AddPorts on a taken host range: %v", err)
	}
}

// TestHostListenerConflict: a host socket on the port (this test's own TCP
// listener on 127.0.0.1, a UDP socket, a dual-stack listener on ::) makes
// AddPorts fail with a ConflictError naming this process, and nothing is
// published or recorded.
func TestHostListenerConflict(t *testing.T) {
	n := newHostNetwork(t, "web")
	if _, err := n.Allocate("web"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln6, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	port := func(a net.Addr) uint16 { return netip.MustParseAddrPort(a.String()).Port() }
	tport, uport, dport := port(ln.Addr()), port(pc.LocalAddr()), port(ln6.Addr())

	for _, m := range []PortMapping{
		{HostIP: loopback, HostPort: tport, ContainerPort: 80},
		{HostPort: tport, ContainerPort: 80},
		{HostIP: loopback, HostPort: uport, ContainerPort: 53, Proto: UDP},
		{HostIP: loopback, HostPort: dport, ContainerPort: 80},
	} {
		free := PortMapping{HostIP: loopback, HostPort: freePort(t, "tcp"), ContainerPort: 1}
		_, err := n.AddPorts("web", []PortMapping{free, m})
		var ce *ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("AddPorts(%v) over a host socket: %v, want a ConflictError", m, err)
		}
		want := fmt.Sprintf("network: port %s is in use on the host by %q (pid %d)", m.normalized().hostPortString(), selfComm(t), os.Getpid())
		if ce.Holder != "" || ce.PID != os.Getpid() || ce.Command != selfComm(t) || err.Error() != want {
			t.Fatalf("AddPorts(%v): %+v\n%v\nwant %s", m, ce, err, want)
		}
	}
	if rules, err := n.portRules("web"); err != nil || len(rules) != 0 {
		t.Fatalf("refused AddPorts left rules: %v, %v", rules, err)
	}
	if p, err := n.Ports("web"); err != nil || len(p) != 0 {
		t.Fatalf("refused AddPorts left a record: %v, %v", p, err)
	}
	// The same port number over the other protocol is free.
	if _, err := n.AddPorts("web", []PortMapping{{HostIP: loopback, HostPort: tport, ContainerPort: 80, Proto: UDP}}); err != nil {
		t.Fatal(err)
	}
}

// TestPortsRecorded: AddPorts records the resolved mappings in the task's
// lease, Ports and PortMap return them, a failed nf_tables transaction
// leaves the record as it was, and RemovePorts and TeardownTask clear it.
func TestPortsRecorded(t *testing.T) {
	n := newHostNetwork(t, "web", "client")
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web", "client"} {
		if _, err := n.SetupTask(id); err != nil {
			t.Fatal(err)
		}
	}
	base := freePortBlock(t, 4)
	n.portRange = PortRange{base + 2, base + 3}
	want := []PortMapping{
		{HostIP: loopback, HostPort: base, ContainerPort: 80, Proto: TCP},
		{HostPort: base + 2, ContainerPort: 53, Proto: UDP},
	}
	got, err := n.AddPorts("web", []PortMapping{{HostIP: loopback, HostPort: base, ContainerPort: 80}, {ContainerPort: 53, Proto: UDP}})
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AddPorts = %v, %v; want %v", got, err, want)
	}
	if p, err := n.Ports("web"); err != nil || fmt.Sprint(p) != fmt.Sprint(want) {
		t.Fatalf("Ports(web) = %v, %v; want %v", p, err, want)
	}
	client, err := n.AddPorts("client", []PortMapping{{HostIP: loopback, HostPort: base + 1, ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := n.PortMap()
	if err != nil || len(m) != 2 || fmt.Sprint(m["web"]) != fmt.Sprint(want) || fmt.Sprint(m["client"]) != fmt.Sprint(client) {
		t.Fatalf("PortMap = %v, %v", m, err)
	}

	// Break the table: output becomes a regular chain, so AddPorts'
	// transaction (which declares it a NAT base chain) fails.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := n.nftTable()
	_, out, _ := n.nftChains(tbl)
	c.FlushChain(out)
	c.DelChain(out)
	c.AddChain(&nftables.Chain{Name: chainOutput, Table: tbl})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddPorts("web", []PortMapping{{HostIP: loopback, HostPort: base + 3, ContainerPort: 81}}); err == nil {
		t.Fatal("AddPorts succeeded on a broken table")
	}
	if p, err := n.Ports("web"); err != nil || fmt.Sprint(p) != fmt.Sprint(want) {
		t.Fatalf("Ports(web) after a failed AddPorts = %v, %v; want %v", p, err, want)
	}

	if err := n.RemovePorts("web"); err != nil {
		t.Fatal(err)
	}
	if p, err := n.Ports("web"); err != nil || p != nil {
		t.Fatalf("Ports(web) after RemovePorts = %v, %v", p, err)
	}
	if rules, err := n.portRules("web"); err != nil || len(rules) != 0 {
		t.Fatalf("rules of web after RemovePorts: %v, %v", rules, err)
	}
	if m, err := n.PortMap(); err != nil || len(m) != 1 || m["client"] == nil {
		t.Fatalf("PortMap after RemovePorts(web) = %v, %v", m, err)
	}
	if err := n.TeardownTask("client"); err != nil {
		t.Fatal(err)
	}
	if m, err := n.PortMap(); err != nil || len(m) != 0 {
		t.Fatalf("PortMap after TeardownTask(client) = %v, %v", m, err)
	}
}
