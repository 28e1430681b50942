//go:build linux

package network

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// selfComm is this test binary's command name, as /proc shows it.
func selfComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestHostSockets: a TCP listener and a UDP socket of this process are
// found in /proc/self/net with their addresses, and socketOwner names this
// process; a connected TCP socket does not hold its port.
func TestHostSockets(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tcpAddr := netip.MustParseAddrPort(ln.Addr().String())
	udpAddr := netip.MustParseAddrPort(pc.LocalAddr().String())
	clientAddr := netip.MustParseAddrPort(conn.LocalAddr().String())

	socks, err := hostSockets()
	if err != nil {
		t.Fatal(err)
	}
	var tcp, udp *hostSocket
	for i, s := range socks {
		switch {
		case s.proto == TCP && s.local == tcpAddr:
			tcp = &socks[i]
		case s.proto == UDP && s.local == udpAddr:
			udp = &socks[i]
		case s.proto == TCP && s.local == clientAddr:
			t.Errorf("connected socket %s listed as holding its port", clientAddr)
		}
	}
	if tcp == nil || udp == nil {
		t.Fatalf("listener %s (%v) or udp socket %s (%v) not found in %d sockets", tcpAddr, tcp, udpAddr, udp, len(socks))
	}
	for _, s := range []*hostSocket{tcp, udp} {
		pid, comm := socketOwner(s.inode)
		if pid != os.Getpid() || comm != selfComm(t) {
			t.Errorf("owner of %s %s: %d %q, want %d %q", s.proto, s.local, pid, comm, os.Getpid(), selfComm(t))
		}
	}
	if pid, comm := socketOwner(0); pid != 0 || comm != "" {
		t.Errorf("owner of inode 0: %d %q", pid, comm)
	}
}

// TestHostSocketsSources: sock_diag and /proc/net report the same sockets
// holding ports, family by family and protocol by protocol, and asking for
// one protocol gives only its sockets.
func TestHostSocketsSources(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, proto := range []Proto{TCP, UDP} {
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			// Sockets come and go on a shared host: retry a few times
			// for two listings that agree.
			var diag, proc []string
			for range 5 {
				d, err := diagSockets(family, proto)
				if err != nil {
					t.Fatal(err)
				}
				p, err := procSockets(family, proto)
				if err != nil {
					t.Fatal(err)
				}
				diag, proc = sockStrings(d), sockStrings(p)
				slices.Sort(diag)
				slices.Sort(proc)
				if slices.Equal(diag, proc) {
					break
				}
			}
			if !slices.Equal(diag, proc) {
				t.Errorf("%s family %d: sock_diag %q, /proc/net %q", proto, family, diag, proc)
			}
		}
	}
	tcpOnly, err := hostSockets(TCP)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range tcpOnly {
		if s.proto != TCP {
			t.Errorf("hostSockets(TCP) gave %s", sockStrings([]hostSocket{s}))
		}
		found = found || s.local.String() == ln.Addr().String()
	}
	if !found {
		t.Errorf("hostSockets(TCP) lacks the listener %s", ln.Addr())
	}
}
