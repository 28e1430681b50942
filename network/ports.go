package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/berth-dev/berth/internal/store"
)

// Published ports, the part that needs no kernel: mappings, their record in
// the task's lease, conflicts and host port allocation. The nf_tables rules
// are in portmap_linux.go, the host sockets in listeners*.go.
//
// A task's lease records its published mappings with their host ports
// resolved, written before the rules are added and cleared before they are
// removed, so that Reconcile can rebuild the rules from state (after a
// firewall reload, say) and Ports can answer without reading the table.

// DefaultPortRange is where dynamic host ports come from when
// Config.PortRange is not set: Docker's fallback range, which stays clear of
// the well-known and registered ports.
var DefaultPortRange = PortRange{First: 49153, Last: 60999}

// PortRange is an inclusive range of host ports.
type PortRange struct {
	First, Last uint16
}

// String returns "FIRST-LAST".
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

func (r PortRange) check() error {
	if r.First == 0 || r.First > r.Last {
		return fmt.Errorf("network: port range %s: want 1 <= First <= Last", r)
	}
	return nil
}

// PortRange returns the range dynamic host ports are taken from.
func (n *Network) PortRange() PortRange { return n.portRange }

// ErrPortsExhausted is returned (wrapped, naming the range) by AddPorts when
// a mapping asks for a host port from a range and every port in it is
// published by a task or in use on the host.
var ErrPortsExhausted = errors.New("network: no free host port")

// ConflictError reports a mapping whose host port is taken: published by a
// berth task (Holder is its ID) or in use by a host process (Holder is
// empty; PID and Command name the process when berth can find it).
type ConflictError struct {
	Mapping PortMapping
	// Holder is the ID of the task that publishes the port, or "" when a
	// host socket holds it.
	Holder string
	// PID and Command (its /proc/PID/comm) identify the process holding
	// the host socket; 0 and "" when no process berth can see holds it.
	PID     int
	Command string
}

func (e *ConflictError) Error() string {
	port := e.Mapping.hostPortString()
	switch {
	case e.Holder != "":
		return fmt.Sprintf("network: port %s is already published by task %s", port, e.Holder)
	case e.PID != 0:
		return fmt.Sprintf("network: port %s is in use on the host by %q (pid %d)", port, e.Command, e.PID)
	}
	return fmt.Sprintf("network: port %s is in use on the host by a process berth cannot see", port)
}

// normalized returns p with the defaults spelled out: Proto TCP for "",
// an IPv4-mapped HostIP unmapped, and 0.0.0.0 as the zero address (every
// address of both families; :: stays, meaning every IPv6 address).
func (p PortMapping) normalized() PortMapping {
	if p.Proto == "" {
		p.Proto = TCP
	}
	if p.HostIP.Is4In6() {
		p.HostIP = p.HostIP.Unmap()
	}
	if p.HostIP.Is4() && p.HostIP.IsUnspecified() {
		p.HostIP = netip.Addr{}
	}
	return p
}

// check validates a normalized mapping.
func (p PortMapping) check() error {
	if p.Proto != TCP && p.Proto != UDP {
		return fmt.Errorf("network: port mapping %s: unknown protocol %q", p, p.Proto)
	}
	if p.ContainerPort == 0 {
		return fmt.Errorf("network: port mapping %s: container port must not be 0", p)
	}
	if p.HostPortEnd != 0 && (p.HostPort == 0 || p.HostPort > p.HostPortEnd) {
		return fmt.Errorf("network: port mapping %s: host port range must be FIRST-LAST with 1 <= FIRST <= LAST", p)
	}
	switch h := p.HostIP; {
	case h.Zone() != "":
		return fmt.Errorf("network: port mapping %s: a host address must not have a zone", p)
	case h.Is6() && h.IsLoopback():
		return fmt.Errorf("network: port mapping %s: published ports cannot be reached on [::1]: "+
			"the kernel cannot DNAT IPv6 loopback traffic (IPv6 has no route_localnet) and berth has no userland proxy; "+
			"publish on 127.0.0.1 or on another address", p)
	}
	return nil
}

// hostRange is the range a mapping's host port is picked from and whether
// it is one: the dynamic range for HostPort 0, HostPort..HostPortEnd for a
// host range.
func (p PortMapping) hostRange(dynamic PortRange) (PortRange, bool) {
	switch {
	case p.HostPort == 0:
		return dynamic, true
	case p.HostPortEnd != 0:
		return PortRange{p.HostPort, p.HostPortEnd}, true
	}
	return PortRange{}, false
}

// String describes the mapping as "PROTO HOSTIP:PORT->CONTAINERPORT",
// HOSTIP 0.0.0.0 for every address and PORT FIRST-LAST for a host range.
func (p PortMapping) String() string {
	host := p.hostAddrPort().String()
	if p.HostPortEnd != 0 {
		host += fmt.Sprintf("-%d", p.HostPortEnd)
	}
	return fmt.Sprintf("%s %s->%d", p.proto(), host, p.ContainerPort)
}

// hostAddrPort is the host side as an address and port, 0.0.0.0 meaning
// every local address.
func (p PortMapping) hostAddrPort() netip.AddrPort {
	host := netip.IPv4Unspecified()
	if p.HostIP.IsValid() {
		host = p.HostIP
	}
	return netip.AddrPortFrom(host, p.HostPort)
}

// proto is the mapping's protocol, "" meaning TCP.
func (p PortMapping) proto() Proto {
	if p.Proto == "" {
		return TCP
	}
	return p.Proto
}

// hostSide is "PROTO HOSTIP:PORT". Rule comments carry it, so conflicts can
// be found from the table.
func (p PortMapping) hostSide() string {
	return fmt.Sprintf("%s %s", p.proto(), p.hostAddrPort())
}

// hostPortString is "HOSTIP:PORT/PROTO", as errors show a host port.
func (p PortMapping) hostPortString() string {
	return fmt.Sprintf("%s/%s", p.hostAddrPort(), p.proto())
}

// parseHostSide reads what hostSide wrote.
func parseHostSide(s string) (proto Proto, ap netip.AddrPort, ok bool) {
	ps, rest, ok := strings.Cut(s, " ")
	if !ok {
		return "", netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(rest)
	return Proto(ps), ap, err == nil
}

// overlaps reports whether two host sides can receive the same packets:
// same protocol and port, and the same address, or either on every address
// (0.0.0.0: of both families), or one on every IPv6 address (::) and the
// other IPv6.
func overlaps(protoA Proto, a netip.AddrPort, protoB Proto, b netip.AddrPort) bool {
	if protoA != protoB || a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr(), b.Addr()
	switch {
	case x == y || x == netip.IPv4Unspecified() || y == netip.IPv4Unspecified():
		return true
	case x == netip.IPv6Unspecified():
		return y.Is6()
	case y == netip.IPv6Unspecified():
		return x.Is6()
	}
	return false
}

// portRecord is a resolved mapping as a lease records it.
type portRecord struct {
	HostIP        netip.Addr `json:"hostIP,omitzero"` // absent: every local address
	HostPort      uint16     `json:"hostPort"`
	ContainerPort uint16     `json:"containerPort"`
	Proto         Proto      `json:"proto"`
}

func toRecords(ports []PortMapping) []portRecord {
	var recs []portRecord
	for _, p := range ports {
		recs = append(recs, portRecord{HostIP: p.HostIP, HostPort: p.HostPort, ContainerPort: p.ContainerPort, Proto: p.Proto})
	}
	return recs
}

func fromRecords(recs []portRecord) []PortMapping {
	var ports []PortMapping
	for _, r := range recs {
		ports = append(ports, PortMapping{HostIP: r.HostIP, HostPort: r.HostPort, ContainerPort: r.ContainerPort, Proto: r.Proto}.normalized())
	}
	return ports
}

// Ports returns the task's published port mappings, with the host ports
// AddPorts resolved, in the order they were added. A task without a lease
// or without published ports has none.
func (n *Network) Ports(taskID string) ([]PortMapping, error) {
	if err := checkTaskID(taskID); err != nil {
		return nil, err
	}
	var l lease
	if err := n.st.Get(leaseKey(taskID), &l); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("network: lease of task %s: %w", taskID, err)
	}
	return fromRecords(l.Ports), nil
}

// PortMap returns the published port mappings of every task that has any,
// by task ID.
func (n *Network) PortMap() (map[string][]PortMapping, error) {
	m := map[string][]PortMapping{}
	err := n.withIPAMLock(func() error {
		leases, err := n.readLeaseRecords()
		if err != nil {
			return err
		}
		for id, l := range leases {
			if len(l.Ports) > 0 {
				m[id] = fromRecords(l.Ports)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// setPorts replaces the ports a task's lease records with update(old) and
// returns the old ones. A task without a lease is an error when must is
// set, else a no-op; the lease is not rewritten when nothing changes.
func (n *Network) setPorts(taskID string, must bool, update func(old []portRecord) []portRecord) (l lease, old []portRecord, err error) {
	err = n.withIPAMLock(func() error {
		if err := n.st.Get(leaseKey(taskID), &l); err != nil {
			if errors.Is(err, store.ErrNotFound) && !must {
				return nil
			}
			return fmt.Errorf("network: task %s has no address: %w", taskID, err)
		}
		old = l.Ports
		l.Ports = update(old)
		if len(old) == 0 && len(l.Ports) == 0 {
			return nil
		}
		if err := n.st.Put(leaseKey(taskID), l); err != nil {
			return fmt.Errorf("network: record ports of task %s: %w", taskID, err)
		}
		return nil
	})
	return l, old, err
}

// restorePorts undoes setPorts after the rules could not be changed. A
// lease released in the meantime stays released.
func (n *Network) restorePorts(taskID string, old []portRecord) error {
	_, _, err := n.setPorts(taskID, false, func([]portRecord) []portRecord { return old })
	return err
}

// heldPort is a host side that a task publishes.
type heldPort struct {
	proto Proto
	ap    netip.AddrPort // 0.0.0.0: every local address
	task  string
}

type protoPort struct {
	proto Proto
	port  uint16
}

// portAlloc resolves the host ports of new mappings against what is taken:
// ports published by tasks (the table's rules and the leases' records) and
// host sockets. It is used under the port lock, so that the ports it picks
// are published before anyone else looks.
type portAlloc struct {
	held    map[protoPort][]heldPort
	socks   map[protoPort][]hostSocket
	dynamic PortRange
	// cursor is the dynamic port handed out last: dynamic allocation goes
	// on after it (next fit), so that a port a stopped task published is
	// not handed to the next task at once, while its clients may still be
	// reconnecting.
	cursor uint16
	// owner finds the process holding a socket, by inode.
	owner func(inode uint64) (pid int, comm string)
	// wild6 says that mappings on every address take IPv6 traffic too
	// (the task has an IPv6 address), so that host sockets on IPv6
	// addresses hold their ports.
	wild6 bool
}

func newPortAlloc(held []heldPort, socks []hostSocket, dynamic PortRange, cursor uint16, owner func(uint64) (int, string)) *portAlloc {
	a := &portAlloc{
		held:    map[protoPort][]heldPort{},
		socks:   map[protoPort][]hostSocket{},
		dynamic: dynamic,
		cursor:  cursor,
		owner:   owner,
	}
	for _, h := range held {
		k := protoPort{h.proto, h.ap.Port()}
		a.held[k] = append(a.held[k], h)
	}
	for _, s := range socks {
		k := protoPort{s.proto, s.local.Port()}
		a.socks[k] = append(a.socks[k], s)
	}
	return a
}

// heldBy returns the published host side that overlaps (proto, ap), if any.
func (a *portAlloc) heldBy(proto Proto, ap netip.AddrPort) *heldPort {
	for i, h := range a.held[protoPort{proto, ap.Port()}] {
		if overlaps(proto, ap, h.proto, h.ap) {
			return &a.held[protoPort{proto, ap.Port()}][i]
		}
	}
	return nil
}

// sockAt returns a host socket that would lose packets to (proto, ap).
func (a *portAlloc) sockAt(proto Proto, ap netip.AddrPort) *hostSocket {
	for i, s := range a.socks[protoPort{proto, ap.Port()}] {
		if s.covers(proto, ap, a.wild6) {
			return &a.socks[protoPort{proto, ap.Port()}][i]
		}
	}
	return nil
}

// resolve returns the mappings (normalized and checked) with their host
// ports picked: a fixed port is refused with a *ConflictError if a task
// publishes it or a host socket holds it (mappings earlier in ports
// included); a range yields its first free port (the dynamic range: the
// first free one after the cursor).
func (a *portAlloc) resolve(taskID string, ports []PortMapping) ([]PortMapping, error) {
	out := make([]PortMapping, 0, len(ports))
	for _, p := range ports {
		rng, isRange := p.hostRange(a.dynamic)
		if !isRange {
			ap := p.hostAddrPort()
			if h := a.heldBy(p.Proto, ap); h != nil {
				return nil, &ConflictError{Mapping: p, Holder: h.task}
			}
			if s := a.sockAt(p.Proto, ap); s != nil {
				ce := &ConflictError{Mapping: p}
				if a.owner != nil {
					ce.PID, ce.Command = a.owner(s.inode)
				}
				return nil, ce
			}
		} else {
			start := rng.First
			dynamic := p.HostPort == 0
			if dynamic && a.cursor >= rng.First && a.cursor < rng.Last {
				start = a.cursor + 1
			}
			port, ok := a.firstFree(p, rng, start)
			if !ok {
				return nil, fmt.Errorf("%w in range %s for %s->%d/%s: each port is published by a berth task or in use on the host",
					ErrPortsExhausted, rng, p.hostAddrPort().Addr(), p.ContainerPort, p.Proto)
			}
			p.HostPort, p.HostPortEnd = port, 0
			if dynamic {
				a.cursor = port
			}
		}
		k := protoPort{p.Proto, p.HostPort}
		a.held[k] = append(a.held[k], heldPort{p.Proto, p.hostAddrPort(), taskID})
		out = append(out, p)
	}
	return out, nil
}

// firstFree returns the first port of rng, from start and wrapping around,
// that neither a task nor a host socket holds for p's protocol and address.
func (a *portAlloc) firstFree(p PortMapping, rng PortRange, start uint16) (uint16, bool) {
	port := start
	for {
		ap := netip.AddrPortFrom(p.hostAddrPort().Addr(), port)
		if a.heldBy(p.Proto, ap) == nil && a.sockAt(p.Proto, ap) == nil {
			return port, true
		}
		if port == rng.Last {
			port = rng.First
		} else {
			port++
		}
		if port == start {
			return 0, false
		}
	}
}
