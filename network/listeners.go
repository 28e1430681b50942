package network

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
)

// Host sockets that a published port would take packets from: TCP sockets
// in LISTEN state and bound UDP sockets, as the kernel's socket diagnostics
// (netlink sock_diag) report them or, failing that, /proc/net/{tcp,tcp6,
// udp,udp6} lists them. The parsers are kept apart from the reading so that
// they can be tested and fuzzed anywhere.

// tcpListen is TCP_LISTEN in the st column of /proc/net/tcp.
const tcpListen = 0x0A

// hostSocket is one socket of a /proc/net table.
type hostSocket struct {
	proto Proto
	local netip.AddrPort
	state uint8
	inode uint64
}

// holdsPort reports whether the socket receives new flows on its local
// port: a TCP socket that listens, or any bound UDP socket.
func (s hostSocket) holdsPort() bool {
	if s.local.Port() == 0 {
		return false
	}
	return s.proto == UDP || s.state == tcpListen
}

// covers reports whether the socket would lose packets to a mapping of
// (proto, ap): same protocol and port, and addresses that meet. ap's
// address is IPv4, IPv6, :: for every IPv6 address but ::1, or 0.0.0.0 for
// every IPv4 address and, when wild6 is set (the task has an IPv6
// address), every IPv6 address but ::1. A socket on :: takes everything
// (IPv4 too unless it is v6only, which the table does not show), one on
// 0.0.0.0 every IPv4 address, an IPv4-mapped one its IPv4 address. A
// socket on ::1 keeps its packets: mappings never DNAT ::1.
func (s hostSocket) covers(proto Proto, ap netip.AddrPort, wild6 bool) bool {
	if s.proto != proto || s.local.Port() != ap.Port() {
		return false
	}
	a, m := s.local.Addr().Unmap(), ap.Addr()
	takes4 := m.Is4()
	takes6 := m.Is6() || m == netip.IPv4Unspecified() && wild6
	switch {
	case a == netip.IPv6Unspecified():
		return true
	case a == netip.IPv4Unspecified():
		return takes4
	case a.Is4():
		return takes4 && (m.IsUnspecified() || m == a)
	case a == m:
		return true
	}
	return takes6 && m.IsUnspecified() && !a.IsLoopback()
}

// parseProcNet parses a /proc/net/tcp, tcp6, udp or udp6 table: a header
// line and one line per socket,
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ...
//	 0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 ...
//
// Addresses are the in-memory (network order) bytes of the address printed
// as native-endian 32-bit hex words, ports are hex in host order, st is the
// hex state and inode a decimal number. Any malformed line is an error: a
// socket the parser skipped could be one a mapping would steal from.
func parseProcNet(data []byte, proto Proto) ([]hostSocket, error) {
	var socks []hostSocket
	for i, line := range bytes.Split(data, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 || i == 0 && string(f[0]) == "sl" {
			continue
		}
		s, err := parseProcNetLine(f, proto)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", i+1, line, err)
		}
		socks = append(socks, s)
	}
	return socks, nil
}

func parseProcNetLine(f [][]byte, proto Proto) (hostSocket, error) {
	if len(f) < 10 {
		return hostSocket{}, fmt.Errorf("%d fields, want at least 10", len(f))
	}
	if sl := f[0]; len(sl) < 2 || sl[len(sl)-1] != ':' || !isDigits(sl[:len(sl)-1]) {
		return hostSocket{}, fmt.Errorf("bad slot %q", sl)
	}
	local, err := parseProcNetAddr(f[1])
	if err != nil {
		return hostSocket{}, fmt.Errorf("local address: %w", err)
	}
	remote, err := parseProcNetAddr(f[2])
	if err != nil {
		return hostSocket{}, fmt.Errorf("remote address: %w", err)
	}
	if local.Addr().Is4() != remote.Addr().Is4() {
		return hostSocket{}, fmt.Errorf("local and remote addresses of different families")
	}
	if len(f[3]) != 2 {
		return hostSocket{}, fmt.Errorf("bad state %q", f[3])
	}
	st, err := strconv.ParseUint(string(f[3]), 16, 8)
	if err != nil {
		return hostSocket{}, fmt.Errorf("bad state %q", f[3])
	}
	if !isDigits(f[9]) {
		return hostSocket{}, fmt.Errorf("bad inode %q", f[9])
	}
	inode, err := strconv.ParseUint(string(f[9]), 10, 64)
	if err != nil {
		return hostSocket{}, fmt.Errorf("bad inode %q", f[9])
	}
	return hostSocket{proto: proto, local: local, state: uint8(st), inode: inode}, nil
}

// parseProcNetAddr parses ADDR:PORT, ADDR 8 (IPv4) or 32 (IPv6) hex digits
// and PORT 4.
func parseProcNetAddr(b []byte) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 || len(b)-i-1 != 4 || i != 8 && i != 32 || !isHex(b[:i]) || !isHex(b[i+1:]) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", b)
	}
	var raw [16]byte
	for w := 0; w < i/8; w++ {
		v, _ := strconv.ParseUint(string(b[w*8:w*8+8]), 16, 32)
		binary.NativeEndian.PutUint32(raw[w*4:], uint32(v))
	}
	port, _ := strconv.ParseUint(string(b[i+1:]), 16, 16)
	var a netip.Addr
	if i == 8 {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		a = netip.AddrFrom16(raw)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// Address families as sock_diag reports them (AF_INET, AF_INET6 on Linux).
const (
	diagFamilyIPv4 = 2
	diagFamilyIPv6 = 10
)

// sizeofInetDiagMsg is the size of struct inet_diag_msg (linux/inet_diag.h),
// the start of each of sock_diag's answers.
const sizeofInetDiagMsg = 72

// parseDiagMsg parses one socket of a sock_diag dump of protocol proto:
// struct inet_diag_msg,
//
//	0  family, state, timer, retrans: one byte each
//	4  source port, destination port: big endian 16 bits each
//	8  source address, 16 bytes (IPv4: the first 4)
//	24 destination address, 16 bytes
//	40 interface, cookie (2 words)
//	52 expires, rqueue, wqueue, uid, inode: host-order 32 bits each
//
// possibly followed by attributes, which are ignored. A short message or an
// unknown family is an error, as a malformed line of /proc/net is.
func parseDiagMsg(b []byte, proto Proto) (hostSocket, error) {
	if len(b) < sizeofInetDiagMsg {
		return hostSocket{}, fmt.Errorf("sock_diag message of %d bytes, want at least %d", len(b), sizeofInetDiagMsg)
	}
	var a netip.Addr
	switch b[0] {
	case diagFamilyIPv4:
		a = netip.AddrFrom4([4]byte(b[8:12]))
	case diagFamilyIPv6:
		a = netip.AddrFrom16([16]byte(b[8:24]))
	default:
		return hostSocket{}, fmt.Errorf("sock_diag message of address family %d", b[0])
	}
	port := binary.BigEndian.Uint16(b[4:6])
	inode := binary.NativeEndian.Uint32(b[68:72])
	return hostSocket{proto: proto, local: netip.AddrPortFrom(a, port), state: b[1], inode: uint64(inode)}, nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return len(b) > 0
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
