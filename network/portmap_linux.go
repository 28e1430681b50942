//go:build linux

package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// berth's nf_tables table (family ip):
//
//	table ip berth {
//	  chain prerouting  { type nat hook prerouting  priority dstnat; }  # DNAT of published ports
//	  chain output      { type nat hook output      priority dstnat; }  # the same for locally made connections
//	  chain postrouting { type nat hook postrouting priority srcnat;     # per bridge:
//	    ip saddr SUBNET oifname != BRIDGE masquerade                     #   tasks reaching out
//	    oifname BRIDGE ip saddr 127.0.0.0/8 ct status dnat masquerade    #   127.0.0.1:PORT -> task
//	    oifname BRIDGE ip saddr SUBNET ct status dnat masquerade         #   hairpin: task -> published port
//	  }
//	}
//
// Every rule carries an nft comment (rule userdata, shown by `nft list`):
// "berth bridge=NAME" on a bridge's postrouting rules, "berth task=ID
// PROTO HOSTIP:PORT -> ADDR:PORT" on a task's DNAT rules, so that each bridge
// or task finds and removes exactly its own rules, even in a shared table.
// Every change is one nf_tables transaction (one Flush).

const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"

	portLock = "portmap"
)

func (n *Network) nftTable() *nftables.Table {
	return &nftables.Table{Name: n.table, Family: nftables.TableFamilyIPv4}
}

func (n *Network) nftChains(t *nftables.Table) (pre, out, post *nftables.Chain) {
	mk := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeNAT, Hooknum: hook, Priority: prio}
	}
	return mk(chainPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		mk(chainOutput, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
		mk(chainPostrouting, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
}

// addTableAndChains queues the creation of the table and its chains; both
// are no-ops if they exist.
func (n *Network) addTableAndChains(c *nftables.Conn) (t *nftables.Table, pre, out, post *nftables.Chain) {
	t = c.AddTable(n.nftTable())
	pre, out, post = n.nftChains(t)
	c.AddChain(pre)
	c.AddChain(out)
	c.AddChain(post)
	return t, pre, out, post
}

func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

func ruleComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func (n *Network) bridgeTag() string          { return "berth bridge=" + n.bridge }
func taskTag(taskID string) string            { return "berth task=" + taskID + " " }
func isTaskRule(c, taskID string) bool        { return strings.HasPrefix(c, taskTag(taskID)) }
func (n *Network) isBridgeRule(c string) bool { return c == n.bridgeTag() }

// withPortLock serialises read-modify-write changes of the table between
// berth processes sharing this network's state dir.
func (n *Network) withPortLock(fn func() error) (err error) {
	l, err := n.st.Lock(context.Background(), portLock)
	if err != nil {
		return fmt.Errorf("network: portmap: %w", err)
	}
	defer func() {
		if uerr := l.Unlock(); err == nil && uerr != nil {
			err = fmt.Errorf("network: portmap: %w", uerr)
		}
	}()
	return fn()
}

// ensureTable creates the table and chains and (re)installs this bridge's
// masquerade rules, in one transaction.
func (n *Network) ensureTable() error {
	return n.withPortLock(func() error {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("network: nftables: %w", err)
		}
		t, _, _, post := n.addTableAndChains(c)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("network: create nf_tables table %s: %w", n.table, err)
		}
		old, err := c.GetRules(t, post)
		if err != nil {
			return fmt.Errorf("network: list nf_tables chain %s: %w", chainPostrouting, err)
		}
		for _, r := range old {
			if n.isBridgeRule(ruleComment(r)) {
				if err := c.DelRule(r); err != nil {
					return fmt.Errorf("network: nftables: %w", err)
				}
			}
		}
		tag := comment(n.bridgeTag())
		loopback := netip.MustParsePrefix("127.0.0.0/8")
		rules := [][]expr.Any{
			concat(matchSaddr(n.subnet), matchOifname(n.bridge, false), masq()),
			concat(matchOifname(n.bridge, true), matchSaddr(loopback), matchCtDNAT(), masq()),
			concat(matchOifname(n.bridge, true), matchSaddr(n.subnet), matchCtDNAT(), masq()),
		}
		for _, e := range rules {
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: e, UserData: tag})
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("network: nf_tables masquerade rules for %s: %w", n.bridge, err)
		}
		return nil
	})
}

// deleteTable deletes the network's table if it exists.
func (n *Network) deleteTable() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("network: nftables: %w", err)
	}
	if _, err := c.ListTableOfFamily(n.table, nftables.TableFamilyIPv4); err != nil {
		return nil // gone (the library reports absence only as an error)
	}
	c.DelTable(n.nftTable())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network: delete nf_tables table %s: %w", n.table, err)
	}
	return nil
}

func (p PortMapping) proto() (Proto, byte, error) {
	switch p.Proto {
	case "", TCP:
		return TCP, unix.IPPROTO_TCP, nil
	case UDP:
		return UDP, unix.IPPROTO_UDP, nil
	}
	return "", 0, fmt.Errorf("network: port mapping: unknown protocol %q", p.Proto)
}

func (p PortMapping) String() string {
	return fmt.Sprintf("%s->%d", p.hostSide(), p.ContainerPort)
}

// hostSide is "PROTO HOSTIP:PORT", HOSTIP 0.0.0.0 meaning every local
// address. Rule comments carry it, so conflicts can be found from the table.
func (p PortMapping) hostSide() string {
	proto, _, _ := p.proto()
	host := netip.IPv4Unspecified()
	if p.HostIP.IsValid() {
		host = p.HostIP
	}
	return fmt.Sprintf("%s %s", proto, netip.AddrPortFrom(host, p.HostPort))
}

// parseHostSide reads what hostSide wrote.
func parseHostSide(s string) (proto string, ap netip.AddrPort, ok bool) {
	proto, rest, ok := strings.Cut(s, " ")
	if !ok {
		return "", netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(rest)
	return proto, ap, err == nil
}

// overlaps reports whether two host sides can receive the same packets:
// same protocol and port, and the same address or either on every address.
func overlaps(protoA string, a netip.AddrPort, protoB string, b netip.AddrPort) bool {
	if protoA != protoB || a.Port() != b.Port() {
		return false
	}
	return a.Addr() == b.Addr() || a.Addr().IsUnspecified() || b.Addr().IsUnspecified()
}

// ConflictError reports a host port that another mapping already holds.
type ConflictError struct {
	Mapping PortMapping
	Holder  string // task ID of the mapping that holds the port
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("network: port %s is already published by task %s", e.Mapping.hostSide(), e.Holder)
}

// checkConflicts refuses mappings whose host side overlaps one another or
// a mapping already in the table (of any task, including this one).
func (n *Network) checkConflicts(c *nftables.Conn, taskID string, ports []PortMapping) error {
	type held struct {
		proto string
		ap    netip.AddrPort
		task  string
	}
	var all []held
	if _, err := c.ListTableOfFamily(n.table, nftables.TableFamilyIPv4); err == nil {
		t := n.nftTable()
		pre, _, _ := n.nftChains(t)
		rules, err := c.GetRules(t, pre)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("network: list nf_tables chain %s: %w", pre.Name, err)
		}
		for _, r := range rules {
			rest, ok := strings.CutPrefix(ruleComment(r), "berth task=")
			if !ok {
				continue
			}
			task, side, _ := strings.Cut(rest, " ")
			side, _, _ = strings.Cut(side, " -> ")
			if proto, ap, ok := parseHostSide(side); ok {
				all = append(all, held{proto, ap, task})
			}
		}
	}
	for _, p := range ports {
		proto, ap, _ := parseHostSide(p.hostSide())
		for _, h := range all {
			if overlaps(proto, ap, h.proto, h.ap) {
				return &ConflictError{Mapping: p, Holder: h.task}
			}
		}
		all = append(all, held{proto, ap, taskID})
	}
	return nil
}

func (p PortMapping) check() error {
	if _, _, err := p.proto(); err != nil {
		return err
	}
	if p.HostPort == 0 || p.ContainerPort == 0 {
		return fmt.Errorf("network: port mapping %s: ports must not be 0", p)
	}
	if p.HostIP.IsValid() && !p.HostIP.Is4() {
		return fmt.Errorf("network: port mapping %s: only IPv4 host addresses are supported", p)
	}
	return nil
}

// AddPorts publishes ports of a task: traffic to a local address (HostIP,
// or any local address) on HostPort is DNAT'd to the task's leased address
// on ContainerPort, from outside (prerouting), from the host itself
// including 127.0.0.1 (output), and from tasks on the bridge (hairpin).
// The task needs a lease (Allocate or SetupTask). All mappings are added in
// one transaction: all or none. A mapping whose host side (protocol, port
// and address, 0.0.0.0 overlapping every address) overlaps one already
// published, by any task, or another in ports is refused with a
// *ConflictError before anything changes. Host processes listening on the
// port are not detected yet.
func (n *Network) AddPorts(taskID string, ports []PortMapping) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	for _, p := range ports {
		if err := p.check(); err != nil {
			return err
		}
	}
	var l lease
	if err := n.st.Get(leaseKey(taskID), &l); err != nil {
		return fmt.Errorf("network: task %s has no address: %w", taskID, err)
	}
	return n.withPortLock(func() error {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("network: nftables: %w", err)
		}
		if err := n.checkConflicts(c, taskID, ports); err != nil {
			return err
		}
		t, pre, out, _ := n.addTableAndChains(c)
		for _, p := range ports {
			_, l4, _ := p.proto()
			var match []expr.Any
			if p.HostIP.IsValid() {
				match = matchDaddr(p.HostIP)
			} else {
				match = matchLocalDaddr()
			}
			e := concat(match, matchL4(l4, p.HostPort), dnat(l.Addr, p.ContainerPort))
			tag := comment(taskTag(taskID) + p.hostSide() + " -> " + netip.AddrPortFrom(l.Addr, p.ContainerPort).String())
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: e, UserData: tag})
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: e, UserData: tag})
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("network: publish ports of task %s: %w", taskID, err)
		}
		return nil
	})
}

// RemovePorts removes all port mappings of a task in one transaction. A
// missing table or a task without mappings is fine.
func (n *Network) RemovePorts(taskID string) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	return n.withPortLock(func() error {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("network: nftables: %w", err)
		}
		if _, err := c.ListTableOfFamily(n.table, nftables.TableFamilyIPv4); err != nil {
			return nil
		}
		t := n.nftTable()
		pre, out, _ := n.nftChains(t)
		found := false
		for _, ch := range []*nftables.Chain{pre, out} {
			rules, err := c.GetRules(t, ch)
			if err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return fmt.Errorf("network: list nf_tables chain %s: %w", ch.Name, err)
			}
			for _, r := range rules {
				if isTaskRule(ruleComment(r), taskID) {
					if err := c.DelRule(r); err != nil {
						return fmt.Errorf("network: nftables: %w", err)
					}
					found = true
				}
			}
		}
		if !found {
			return nil
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("network: remove ports of task %s: %w", taskID, err)
		}
		return nil
	})
}

// portRules returns the comments of the task's DNAT rules, prefixed by
// their chain, for tests.
func (n *Network) portRules(taskID string) ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	if _, err := c.ListTableOfFamily(n.table, nftables.TableFamilyIPv4); err != nil {
		return nil, nil
	}
	t := n.nftTable()
	pre, out, _ := n.nftChains(t)
	var got []string
	for _, ch := range []*nftables.Chain{pre, out} {
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			if s := ruleComment(r); isTaskRule(s, taskID) {
				got = append(got, ch.Name+": "+s)
			}
		}
	}
	return got, nil
}

// Expression builders. Register 1 holds the value being matched.

func concat(parts ...[]expr.Any) []expr.Any {
	var all []expr.Any
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func ipv4Payload(offset uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
}

func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	a := p.Masked().Addr().As4()
	if p.Bits() == 32 {
		return []expr.Any{ipv4Payload(offset), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]}}
	}
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		ipv4Payload(offset),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func matchSaddr(p netip.Prefix) []expr.Any { return matchPrefix(12, p) }

func matchDaddr(a netip.Addr) []expr.Any { return matchPrefix(16, netip.PrefixFrom(a, 32)) }

// matchLocalDaddr is `fib daddr type local`.
func matchLocalDaddr() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	}
}

func matchOifname(name string, equal bool) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	op := expr.CmpOpEq
	if !equal {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

// matchCtDNAT is `ct status dnat`.
func matchCtDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, 0x20 /* IPS_DST_NAT */), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// matchL4 is `meta l4proto PROTO th dport PORT`.
func matchL4(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

func dnat(a netip.Addr, port uint16) []expr.Any {
	ip := a.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: ip[:]},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }
