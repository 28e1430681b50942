package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestNewPortRange(t *testing.T) {
	n := newTestNetwork(t, "")
	if n.PortRange() != DefaultPortRange || DefaultPortRange != (PortRange{49153, 60999}) {
		t.Fatalf("default port range %s", n.PortRange())
	}
	m, err := New(Config{StateDir: t.TempDir(), PortRange: PortRange{2000, 2000}})
	if err != nil || m.PortRange() != (PortRange{2000, 2000}) {
		t.Fatalf("one-port range: %v, %v", m, err)
	}
	for _, r := range []PortRange{{0, 10}, {10, 9}, {1, 0}} {
		if _, err := New(Config{StateDir: t.TempDir(), PortRange: r}); err == nil || !strings.Contains(err.Error(), r.String()) {
			t.Errorf("New with port range %s: %v", r, err)
		}
	}
}

func TestPortMappingCheck(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		p    PortMapping
		ok   bool
		want string // normalized String(), when ok
	}{
		{PortMapping{HostPort: 80, ContainerPort: 8080}, true, "tcp 0.0.0.0:80->8080"},
		{PortMapping{HostPort: 0, ContainerPort: 80, Proto: UDP}, true, "udp 0.0.0.0:0->80"},
		{PortMapping{HostIP: lo, HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80}, true, "tcp 127.0.0.1:8000-8010->80"},
		{PortMapping{HostPort: 8000, HostPortEnd: 8000, ContainerPort: 80}, true, "tcp 0.0.0.0:8000-8000->80"},
		{PortMapping{HostIP: netip.IPv4Unspecified(), HostPort: 1, ContainerPort: 2}, true, "tcp 0.0.0.0:1->2"},
		{PortMapping{HostIP: netip.MustParseAddr("::ffff:127.0.0.1"), HostPort: 1, ContainerPort: 2}, true, "tcp 127.0.0.1:1->2"},
		{PortMapping{HostPort: 80}, false, ""},
		{PortMapping{HostPort: 80, ContainerPort: 80, Proto: "sctp"}, false, ""},
		{PortMapping{HostPort: 8010, HostPortEnd: 8000, ContainerPort: 80}, false, ""},
		{PortMapping{HostPortEnd: 8000, ContainerPort: 80}, false, ""},
		{PortMapping{HostIP: netip.IPv6Unspecified(), HostPort: 1, ContainerPort: 2}, true, "tcp [::]:1->2"},
		{PortMapping{HostIP: netip.MustParseAddr("fd00::5"), HostPort: 1, ContainerPort: 2, Proto: UDP}, true, "udp [fd00::5]:1->2"},
		// ::1 cannot be DNAT'd; a zone cannot be matched.
		{PortMapping{HostIP: netip.MustParseAddr("::1"), HostPort: 1, ContainerPort: 2}, false, ""},
		{PortMapping{HostIP: netip.MustParseAddr("fe80::1%eth0"), HostPort: 1, ContainerPort: 2}, false, ""},
	} {
		p := tt.p.normalized()
		err := p.check()
		if (err == nil) != tt.ok {
			t.Errorf("check(%v) = %v, want ok=%v", tt.p, err, tt.ok)
			continue
		}
		if tt.ok && p.String() != tt.want {
			t.Errorf("normalized(%v) = %s, want %s", tt.p, p, tt.want)
		}
	}
}

func TestConflictErrorMessage(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		err  *ConflictError
		want string
	}{
		{&ConflictError{Mapping: PortMapping{HostIP: lo, HostPort: 8080, ContainerPort: 80}, Holder: "web-1"},
			"network: port 127.0.0.1:8080/tcp is already published by task web-1"},
		{&ConflictError{Mapping: PortMapping{HostPort: 8080, ContainerPort: 80, Proto: TCP}, PID: 4242, Command: "nginx"},
			`network: port 0.0.0.0:8080/tcp is in use on the host by "nginx" (pid 4242)`},
		{&ConflictError{Mapping: PortMapping{HostPort: 53, ContainerPort: 53, Proto: UDP}},
			"network: port 0.0.0.0:53/udp is in use on the host by a process berth cannot see"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

// TestPortAllocResolve: fixed ports are refused when a task publishes an
// overlapping host side or a host socket holds it; ranges yield their first
// free port; the dynamic range goes on after the cursor and wraps around;
// a full range is an ErrPortsExhausted error naming it.
func TestPortAllocResolve(t *testing.T) {
	ap := netip.MustParseAddrPort
	lo := netip.MustParseAddr("127.0.0.1")
	held := []heldPort{
		{TCP, ap("127.0.0.1:8080"), "web"},
		{TCP, ap("0.0.0.0:9000"), "api"},
		{UDP, ap("0.0.0.0:5353"), "dns"},
		{TCP, ap("0.0.0.0:20001"), "a"},
	}
	socks := []hostSocket{
		{proto: TCP, local: ap("127.0.0.1:7000"), state: tcpListen, inode: 1},
		{proto: TCP, local: ap("[::]:7001"), state: tcpListen, inode: 2},
		{proto: TCP, local: ap("[::1]:7002"), state: tcpListen, inode: 3},
		{proto: UDP, local: ap("0.0.0.0:7003"), state: 7, inode: 4},
		{proto: TCP, local: ap("127.0.0.1:20002"), state: tcpListen, inode: 5},
		{proto: TCP, local: ap("[::ffff:127.0.0.2]:7004"), state: tcpListen, inode: 6},
	}
	owner := func(inode uint64) (int, string) {
		if inode == 1 {
			return 4242, "nginx"
		}
		return 0, ""
	}
	dyn := PortRange{20000, 20004}
	tests := []struct {
		name   string
		cursor uint16
		ports  []PortMapping
		want   []uint16 // resolved host ports
		err    string   // substring of the error, if one is expected
	}{
		{name: "free fixed port", ports: []PortMapping{{HostIP: lo, HostPort: 8081, ContainerPort: 80}}, want: []uint16{8081}},
		{name: "same address", ports: []PortMapping{{HostIP: lo, HostPort: 8080, ContainerPort: 80}}, err: "published by task web"},
		{name: "every address covers one", ports: []PortMapping{{HostPort: 8080, ContainerPort: 80}}, err: "published by task web"},
		{name: "covered by every address", ports: []PortMapping{{HostIP: lo, HostPort: 9000, ContainerPort: 80}}, err: "published by task api"},
		{name: "other address", ports: []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.2"), HostPort: 8080, ContainerPort: 80}}, want: []uint16{8080}},
		{name: "other protocol", ports: []PortMapping{{HostPort: 5353, ContainerPort: 53}}, want: []uint16{5353}},
		{name: "udp", ports: []PortMapping{{HostIP: lo, HostPort: 5353, ContainerPort: 53, Proto: UDP}}, err: "published by task dns"},
		{name: "within one call", ports: []PortMapping{{HostPort: 1234, ContainerPort: 1}, {HostIP: lo, HostPort: 1234, ContainerPort: 2}}, err: "published by task me"},
		{name: "host listener", ports: []PortMapping{{HostPort: 7000, ContainerPort: 80}}, err: `in use on the host by "nginx" (pid 4242)`},
		{name: "host listener on :: covers IPv4", ports: []PortMapping{{HostIP: lo, HostPort: 7001, ContainerPort: 80}}, err: "by a process berth cannot see"},
		{name: "host listener on ::1 does not", ports: []PortMapping{{HostPort: 7002, ContainerPort: 80}}, want: []uint16{7002}},
		{name: "v4-mapped listener", ports: []PortMapping{{HostPort: 7004, ContainerPort: 80}}, err: "in use on the host"},
		{name: "v4-mapped listener other address", ports: []PortMapping{{HostIP: lo, HostPort: 7004, ContainerPort: 80}}, want: []uint16{7004}},
		{name: "bound udp socket", ports: []PortMapping{{HostIP: lo, HostPort: 7003, ContainerPort: 53, Proto: UDP}}, err: "in use on the host"},
		{name: "udp socket, tcp mapping", ports: []PortMapping{{HostIP: lo, HostPort: 7003, ContainerPort: 53}}, want: []uint16{7003}},
		{name: "dynamic skips published and listened", ports: []PortMapping{{ContainerPort: 80}, {ContainerPort: 81}, {ContainerPort: 82}}, want: []uint16{20000, 20003, 20004}},
		{name: "host range on another address skips only overlaps", ports: []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.3"), HostPort: 20000, HostPortEnd: 20000, ContainerPort: 80}, {HostIP: lo, HostPort: 20000, HostPortEnd: 20004, ContainerPort: 80}}, want: []uint16{20000, 20000}},
		{name: "dynamic after the cursor", cursor: 20002, ports: []PortMapping{{ContainerPort: 80}, {ContainerPort: 80}}, want: []uint16{20003, 20004}},
		{name: "dynamic wraps around", cursor: 20004, ports: []PortMapping{{ContainerPort: 80}}, want: []uint16{20000}},
		{name: "dynamic cursor outside the range", cursor: 9, ports: []PortMapping{{ContainerPort: 80}}, want: []uint16{20000}},
		{name: "dynamic exhausted", ports: []PortMapping{{ContainerPort: 80}, {ContainerPort: 80}, {ContainerPort: 80}, {ContainerPort: 80}}, err: "in range 20000-20004 for 0.0.0.0->80/tcp"},
		{name: "dynamic udp is apart", ports: []PortMapping{{ContainerPort: 80, Proto: UDP}, {ContainerPort: 80, Proto: UDP}}, want: []uint16{20000, 20001}},
		{name: "host range first free", ports: []PortMapping{{HostIP: lo, HostPort: 20001, HostPortEnd: 20004, ContainerPort: 80}}, want: []uint16{20003}},
		{name: "host range ignores the cursor", cursor: 20003, ports: []PortMapping{{HostPort: 20000, HostPortEnd: 20004, ContainerPort: 80}}, want: []uint16{20000}},
		{name: "host range exhausted", ports: []PortMapping{{HostPort: 20001, HostPortEnd: 20002, ContainerPort: 80}}, err: "in range 20001-20002"},
		{name: "one-port host range", ports: []PortMapping{{HostPort: 7002, HostPortEnd: 7002, ContainerPort: 80}}, want: []uint16{7002}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newPortAlloc(held, socks, dyn, tt.cursor, owner)
			var req []PortMapping
			for _, p := range tt.ports {
				req = append(req, p.normalized())
			}
			got, err := a.resolve("me", req)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("resolve = %v, %v; want an error with %q", got, err, tt.err)
				}
				var ce *ConflictError
				if errors.As(err, &ce) == errors.Is(err, ErrPortsExhausted) {
					t.Fatalf("error %v: want exactly one of ConflictError and ErrPortsExhausted", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ports []uint16
			for i, p := range got {
				ports = append(ports, p.HostPort)
				if p.HostPortEnd != 0 || p.Proto == "" || p.ContainerPort != tt.ports[i].ContainerPort {
					t.Errorf("resolved %v from %v", p, tt.ports[i])
				}
			}
			if fmt.Sprint(ports) != fmt.Sprint(tt.want) {
				t.Fatalf("host ports %v, want %v", ports, tt.want)
			}
		})
	}
	a := newPortAlloc(nil, nil, dyn, 0, nil)
	if _, err := a.resolve("me", []PortMapping{{ContainerPort: 80, Proto: TCP}}); err != nil || a.cursor != 20000 {
		t.Fatalf("cursor after a dynamic pick: %d, %v", a.cursor, err)
	}
	if _, err := a.resolve("me", []PortMapping{{HostPort: 20003, HostPortEnd: 20004, ContainerPort: 80, Proto: TCP}}); err != nil || a.cursor != 20000 {
		t.Fatalf("a host range moved the cursor: %d, %v", a.cursor, err)
	}
}

// TestLeasePorts: ports recorded in a lease come back from Ports and
// PortMap, normalized; clearing them rewrites nothing for a task that has
// none; a lease written before berth recorded ports still reads, and
// allocating keeps a lease's ports.
func TestLeasePorts(t *testing.T) {
	n := newTestNetwork(t, "10.8.0.0/24")
	for _, id := range []string{"a", "b"} {
		if _, err := n.Allocate(id); err != nil {
			t.Fatal(err)
		}
	}
	// A lease as berth wrote them before ports were recorded.
	old := []byte(`{"taskID":"old","addr":"10.8.0.9"}` + "\n")
	if err := os.WriteFile(n.st.Path(leaseKey("old")), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := n.Ports("old"); err != nil || p != nil {
		t.Fatalf("Ports of an old lease: %v, %v", p, err)
	}
	if l, err := n.Leases(); err != nil || l["old"] != netip.MustParseAddr("10.8.0.9") {
		t.Fatalf("Leases with an old lease: %v, %v", l, err)
	}
	if a, err := n.Allocate("old"); err != nil || a.String() != "10.8.0.9" {
		t.Fatalf("Allocate for an old lease: %v, %v", a, err)
	}

	lo := netip.MustParseAddr("127.0.0.1")
	ports := []PortMapping{
		{HostIP: lo, HostPort: 8080, ContainerPort: 80, Proto: TCP},
		{HostPort: 5353, ContainerPort: 53, Proto: UDP},
	}
	if _, _, err := n.setPorts("a", true, func(old []portRecord) []portRecord { return append(old, toRecords(ports)...) }); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(n.st.Path(leaseKey("a")))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk struct {
		Ports []map[string]any `json:"ports"`
	}
	if err := json.Unmarshal(raw, &onDisk); err != nil || len(onDisk.Ports) != 2 || onDisk.Ports[0]["hostIP"] != "127.0.0.1" || onDisk.Ports[1]["hostIP"] != nil {
		t.Fatalf("lease file %s", raw)
	}
	got, err := n.Ports("a")
	if err != nil || fmt.Sprint(got) != fmt.Sprint(ports) {
		t.Fatalf("Ports(a) = %v, %v; want %v", got, err, ports)
	}
	m, err := n.PortMap()
	if err != nil || len(m) != 1 || fmt.Sprint(m["a"]) != fmt.Sprint(ports) {
		t.Fatalf("PortMap = %v, %v", m, err)
	}
	if p, err := n.Ports("nolease"); err != nil || p != nil {
		t.Fatalf("Ports of a task without a lease: %v, %v", p, err)
	}
	if _, err := n.Ports("bad/id"); err == nil {
		t.Fatal("Ports accepted a bad task ID")
	}
	if _, _, err := n.setPorts("nolease", true, func([]portRecord) []portRecord { return nil }); err == nil {
		t.Fatal("recording ports of a task without a lease succeeded")
	}
	if _, _, err := n.setPorts("nolease", false, func([]portRecord) []portRecord { return toRecords(ports) }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.st.Path(leaseKey("nolease"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("clearing ports made a lease: %v", err)
	}
	// Clearing the ports of a task that has none leaves its lease alone.
	fi, _ := os.Stat(n.st.Path(leaseKey("b")))
	if _, old, err := n.setPorts("b", false, func([]portRecord) []portRecord { return nil }); err != nil || old != nil {
		t.Fatal(old, err)
	}
	if fi2, _ := os.Stat(n.st.Path(leaseKey("b"))); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("clearing no ports rewrote the lease")
	}
	_, old2, err := n.setPorts("a", false, func([]portRecord) []portRecord { return nil })
	if err != nil || len(old2) != 2 {
		t.Fatal(old2, err)
	}
	if p, _ := n.Ports("a"); p != nil {
		t.Fatalf("ports after clearing: %v", p)
	}
	if err := n.restorePorts("a", old2); err != nil {
		t.Fatal(err)
	}
	if p, _ := n.Ports("a"); len(p) != 2 {
		t.Fatalf("ports after restoring: %v", p)
	}
	// Restoring after the lease was released does not bring it back.
	if err := n.Release("a"); err != nil {
		t.Fatal(err)
	}
	if err := n.restorePorts("a", old2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.st.Path(leaseKey("a"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("restoring ports revived a released lease: %v", err)
	}
	if m, err := n.PortMap(); err != nil || len(m) != 0 {
		t.Fatalf("PortMap after release: %v, %v", m, err)
	}
}
