package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// Lines as the kernel writes them (captured on x86-64, so the addresses
// read as little-endian words).
const (
	procTCPHeader  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"
	procTCP6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	procUDPHeader  = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n"

	procTCPListen = "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1598 1 000000002e434489 100 0 0 10 0                      \n"
	procTCPLoop   = "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 000000007584a5f9 100 0 0 10 0                      \n"
	procTCPWait   = "   2: 0100007F:8006 0100007F:4738 06 00000000:00000000 03:00000AD8 00000000     0        0 0 3 000000007584a5f9                                      \n"
	procTCPEstab  = "   3: 0F02000A:0016 0202000A:C350 01 00000000:00000000 02:0009B2A6 00000000     0        0 31337 2 00000000d1b4ba5b 20 4 29 10 -1                    \n"
	procTCP6Any   = "   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 27181 1 00000000c0f2a1d4 100 0 0 10 0\n"
	procTCP6Loop  = "   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 27182 1 00000000c0f2a1d5 100 0 0 10 0\n"
	procTCP6Map   = "   2: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 27183 1 00000000c0f2a1d6 100 0 0 10 0\n"
	procUDPDNS    = "  793: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 17205 2 000000009bd3e4e1 0         \n"
	procUDPConn   = " 1234: 0F02000A:E1D4 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 88123 2 000000009bd3e4e2 0         \n"
)

func sockStrings(socks []hostSocket) []string {
	var out []string
	for _, s := range socks {
		out = append(out, fmt.Sprintf("%s %s st=%02X inode=%d", s.proto, s.local, s.state, s.inode))
	}
	return out
}

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

func TestParseProcNet(t *testing.T) {
	if !littleEndian() {
		t.Skip("the sample lines are from a little-endian machine")
	}
	ap := netip.MustParseAddrPort
	tests := []struct {
		name  string
		proto Proto
		data  string
		want  []hostSocket
		err   string
	}{
		{name: "empty", proto: TCP, data: ""},
		{name: "header only", proto: TCP, data: procTCPHeader},
		{name: "tcp", proto: TCP, data: procTCPHeader + procTCPListen + procTCPLoop + procTCPWait + procTCPEstab, want: []hostSocket{
			{TCP, ap("0.0.0.0:2024"), tcpListen, 1598},
			{TCP, ap("127.0.0.1:8080"), tcpListen, 4242},
			{TCP, ap("127.0.0.1:32774"), 6, 0},
			{TCP, ap("10.0.2.15:22"), 1, 31337},
		}},
		{name: "tcp6", proto: TCP, data: procTCP6Header + procTCP6Any + procTCP6Loop + procTCP6Map, want: []hostSocket{
			{TCP, ap("[::]:80"), tcpListen, 27181},
			{TCP, ap("[::1]:8081"), tcpListen, 27182},
			{TCP, ap("[::ffff:127.0.0.1]:8082"), tcpListen, 27183},
		}},
		{name: "udp", proto: UDP, data: procUDPHeader + procUDPDNS + procUDPConn, want: []hostSocket{
			{UDP, ap("127.0.0.53:53"), 7, 17205},
			{UDP, ap("10.0.2.15:57812"), 1, 88123},
		}},
		{name: "no trailing newline", proto: TCP, data: procTCPHeader + strings.TrimRight(procTCPLoop, " \n"), want: []hostSocket{
			{TCP, ap("127.0.0.1:8080"), tcpListen, 4242},
		}},
		{name: "blank lines", proto: TCP, data: procTCPHeader + "\n   \n" + procTCPLoop + "\n", want: []hostSocket{
			{TCP, ap("127.0.0.1:8080"), tcpListen, 4242},
		}},
		{name: "header later", proto: TCP, data: procTCPLoop + procTCPHeader, err: "line 2"},
		{name: "too few fields", proto: TCP, data: procTCPHeader + "   0: 0100007F:1F90 00000000:0000 0A\n", err: "4 fields"},
		{name: "bad slot", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "1:", "x:", 1), err: "slot"},
		{name: "slot without colon", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "1:", "1", 1), err: "slot"},
		{name: "short address", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "0100007F:1F90", "100007F:1F90", 1), err: "local address"},
		{name: "long port", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "0100007F:1F90", "0100007F:01F90", 1), err: "local address"},
		{name: "no port", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "0100007F:1F90", "0100007F1F90", 1), err: "local address"},
		{name: "not hex", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "0100007F:1F90", "0100007G:1F90", 1), err: "local address"},
		{name: "signed hex", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "0100007F:1F90", "+100007F:1F90", 1), err: "local address"},
		{name: "bad remote", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "00000000:0000", "00000000:", 1), err: "remote address"},
		{name: "mixed families", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, "00000000:0000", "00000000000000000000000000000000:0000", 1), err: "families"},
		{name: "bad state", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, " 0A ", " 0Z ", 1), err: "state"},
		{name: "long state", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, " 0A ", " 00A ", 1), err: "state"},
		{name: "bad inode", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, " 4242 ", " -4242 ", 1), err: "inode"},
		{name: "huge inode", proto: TCP, data: procTCPHeader + strings.Replace(procTCPLoop, " 4242 ", " 99999999999999999999999 ", 1), err: "inode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcNet([]byte(tt.data), tt.proto)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseProcNet = %v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %v\nwant %v", sockStrings(got), sockStrings(tt.want))
			}
		})
	}
}

func TestHostSocketHoldsAndCovers(t *testing.T) {
	ap := netip.MustParseAddrPort
	if (hostSocket{proto: TCP, local: ap("0.0.0.0:80"), state: 1}).holdsPort() {
		t.Error("an established TCP socket holds its port")
	}
	if !(hostSocket{proto: TCP, local: ap("0.0.0.0:80"), state: tcpListen}).holdsPort() {
		t.Error("a TCP listener does not hold its port")
	}
	if !(hostSocket{proto: UDP, local: ap("10.0.0.1:5000"), state: 1}).holdsPort() {
		t.Error("a bound UDP socket does not hold its port")
	}
	if (hostSocket{proto: UDP, local: ap("0.0.0.0:0"), state: 7}).holdsPort() {
		t.Error("a UDP socket on port 0 holds a port")
	}
	for _, tt := range []struct {
		sock  string
		proto Proto
		m     string
		wild6 bool // mappings on every address take IPv6 too
		want  bool
	}{
		{"0.0.0.0:80", TCP, "127.0.0.1:80", false, true},
		{"[::]:80", TCP, "127.0.0.1:80", false, true},
		{"[::]:80", TCP, "0.0.0.0:80", false, true},
		{"127.0.0.1:80", TCP, "0.0.0.0:80", false, true},
		{"127.0.0.1:80", TCP, "127.0.0.1:80", false, true},
		{"127.0.0.1:80", TCP, "127.0.0.2:80", false, false},
		{"127.0.0.1:80", TCP, "127.0.0.1:81", false, false},
		{"127.0.0.1:80", UDP, "127.0.0.1:80", false, false},
		{"[::1]:80", TCP, "0.0.0.0:80", false, false},
		{"[::ffff:127.0.0.1]:80", TCP, "127.0.0.1:80", false, true},
		{"[::ffff:0.0.0.0]:80", TCP, "10.1.1.1:80", false, true},
		// IPv6 mappings, and mappings on every address of a dual-stack task.
		{"[fd00::2]:80", TCP, "0.0.0.0:80", false, false},
		{"[fd00::2]:80", TCP, "0.0.0.0:80", true, true},
		{"[::1]:80", TCP, "0.0.0.0:80", true, false},
		{"[::1]:80", TCP, "[::]:80", true, false},
		{"[fd00::2]:80", TCP, "[::]:80", false, true},
		{"[fd00::2]:80", TCP, "[fd00::2]:80", false, true},
		{"[fd00::2]:80", TCP, "[fd00::3]:80", false, false},
		{"[fd00::2]:80", TCP, "127.0.0.1:80", true, false},
		{"[::]:80", TCP, "[fd00::3]:80", false, true},
		{"[::]:80", TCP, "[::]:80", false, true},
		{"0.0.0.0:80", TCP, "[::]:80", true, false},
		{"0.0.0.0:80", TCP, "[fd00::3]:80", true, false},
		{"0.0.0.0:80", TCP, "0.0.0.0:80", true, true},
		{"10.0.0.1:80", TCP, "[::]:80", true, false},
	} {
		s := hostSocket{proto: TCP, local: ap(tt.sock), state: tcpListen}
		if got := s.covers(tt.proto, ap(tt.m), tt.wild6); got != tt.want {
			t.Errorf("socket %s covers %s %s (wild6 %v) = %v", tt.sock, tt.proto, tt.m, tt.wild6, got)
		}
	}
}

// formatProcNet writes sockets the way the kernel does, for the fuzz
// target's round trip.
func formatProcNet(socks []hostSocket) string {
	var b strings.Builder
	b.WriteString(procTCPHeader)
	word := func(w []byte) string { return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(w)) }
	addr := func(a netip.AddrPort) string {
		var s string
		if a.Addr().Is4() {
			ip := a.Addr().As4()
			s = word(ip[:])
		} else {
			ip := a.Addr().As16()
			for i := 0; i < 16; i += 4 {
				s += word(ip[i : i+4])
			}
		}
		return fmt.Sprintf("%s:%04X", s, a.Port())
	}
	for i, s := range socks {
		remote := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		if !s.local.Addr().Is4() {
			remote = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		fmt.Fprintf(&b, "%4d: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n",
			i, addr(s.local), addr(remote), s.state, s.inode)
	}
	return b.String()
}

// FuzzParseProcNet: parseProcNet never panics, accepts only well-formed
// sockets, and what it accepts reads back the same after formatting.
func FuzzParseProcNet(f *testing.F) {
	for _, s := range []string{
		"", procTCPHeader, procTCPHeader + procTCPListen + procTCPLoop + procTCPWait + procTCPEstab,
		procTCP6Header + procTCP6Any + procTCP6Loop + procTCP6Map, procUDPHeader + procUDPDNS + procUDPConn,
		procTCPHeader + "   0: 0100007F:1F90 00000000:0000 0A\n", "sl\n0: 0:0 0:0 0 0 0 0 0 0 0\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		socks, err := parseProcNet(data, UDP)
		if err != nil {
			return
		}
		for _, s := range socks {
			if !s.local.IsValid() || s.proto != UDP || s.local.Addr().Zone() != "" {
				t.Fatalf("parsed %+v from %q", s, data)
			}
		}
		again, err := parseProcNet([]byte(formatProcNet(socks)), UDP)
		if err != nil || !slices.Equal(again, socks) {
			t.Fatalf("round trip of %v: %v, %v", sockStrings(socks), sockStrings(again), err)
		}
	})
}

// diagMsg builds a struct inet_diag_msg as the kernel sends it.
func diagMsg(family, state byte, local netip.AddrPort, inode uint32) []byte {
	b := make([]byte, sizeofInetDiagMsg)
	b[0], b[1] = family, state
	binary.BigEndian.PutUint16(b[4:], local.Port())
	copy(b[8:24], local.Addr().AsSlice())
	binary.NativeEndian.PutUint32(b[68:], inode)
	return b
}

// TestParseDiagMsg: sock_diag's answers read as the /proc/net lines of the
// same sockets do; short messages and unknown families are errors.
func TestParseDiagMsg(t *testing.T) {
	for _, tt := range []struct {
		msg  []byte
		want hostSocket
	}{
		{diagMsg(diagFamilyIPv4, tcpListen, netip.MustParseAddrPort("127.0.0.1:8080"), 4242),
			hostSocket{TCP, netip.MustParseAddrPort("127.0.0.1:8080"), tcpListen, 4242}},
		{diagMsg(diagFamilyIPv6, tcpListen, netip.MustParseAddrPort("[::]:80"), 27181),
			hostSocket{TCP, netip.MustParseAddrPort("[::]:80"), tcpListen, 27181}},
		{diagMsg(diagFamilyIPv6, tcpListen, netip.MustParseAddrPort("[::ffff:127.0.0.1]:8082"), 27183),
			hostSocket{TCP, netip.MustParseAddrPort("[::ffff:127.0.0.1]:8082"), tcpListen, 27183}},
		// With attributes after the message.
		{append(diagMsg(diagFamilyIPv4, 7, netip.MustParseAddrPort("127.0.0.53:53"), 17205), 8, 0, 1, 0, 0, 0, 0, 0),
			hostSocket{TCP, netip.MustParseAddrPort("127.0.0.53:53"), 7, 17205}},
	} {
		got, err := parseDiagMsg(tt.msg, TCP)
		if err != nil || got != tt.want {
			t.Errorf("parseDiagMsg = %v, %v; want %v", sockStrings([]hostSocket{got}), err, sockStrings([]hostSocket{tt.want}))
		}
	}
	for _, bad := range [][]byte{
		nil,
		diagMsg(diagFamilyIPv4, tcpListen, netip.MustParseAddrPort("127.0.0.1:1"), 1)[:sizeofInetDiagMsg-1],
		diagMsg(1, tcpListen, netip.MustParseAddrPort("127.0.0.1:1"), 1),
	} {
		if s, err := parseDiagMsg(bad, TCP); err == nil {
			t.Errorf("parseDiagMsg(%x) = %v, want an error", bad, sockStrings([]hostSocket{s}))
		}
	}
}
