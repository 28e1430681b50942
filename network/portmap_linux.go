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

// l4proto is the IP protocol number of a normalized mapping's protocol.
func l4proto(p Proto) byte {
	if p == UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// ruleTag is the comment of a task's DNAT rule for a resolved mapping:
// "berth task=ID PROTO HOSTIP:PORT -> ADDR:PORT".
func ruleTag(taskID string, p PortMapping, addr netip.Addr) string {
	return taskTag(taskID) + p.hostSide() + " -> " + netip.AddrPortFrom(addr, p.ContainerPort).String()
}

// parseRuleTag reads what ruleTag wrote.
func parseRuleTag(c string) (taskID string, proto Proto, host, target netip.AddrPort, ok bool) {
	rest, ok := strings.CutPrefix(c, "berth task=")
	if !ok {
		return "", "", netip.AddrPort{}, netip.AddrPort{}, false
	}
	taskID, rest, _ = strings.Cut(rest, " ")
	side, to, _ := strings.Cut(rest, " -> ")
	proto, host, ok = parseHostSide(side)
	if !ok {
		return "", "", netip.AddrPort{}, netip.AddrPort{}, false
	}
	target, err := netip.ParseAddrPort(to)
	return taskID, proto, host, target, err == nil
}

// addPortRules queues a task's DNAT rules for resolved mappings, one in
// prerouting and one in output per mapping.
func addPortRules(c *nftables.Conn, t *nftables.Table, pre, out *nftables.Chain, taskID string, addr netip.Addr, ports []PortMapping) {
	for _, p := range ports {
		var match []expr.Any
		if p.HostIP.IsValid() {
			match = matchDaddr(p.HostIP)
		} else {
			match = matchLocalDaddr()
		}
		e := concat(match, matchL4(l4proto(p.Proto), p.HostPort), dnat(addr, p.ContainerPort))
		tag := comment(ruleTag(taskID, p, addr))
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: e, UserData: tag})
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: e, UserData: tag})
	}
}

// dnatRules returns the rules of the prerouting and output chains, none if
// the table or a chain is missing.
func (n *Network) dnatRules(c *nftables.Conn) (pre, out []*nftables.Rule, err error) {
	if _, err := c.ListTableOfFamily(n.table, nftables.TableFamilyIPv4); err != nil {
		return nil, nil, nil // gone (the library reports absence only as an error)
	}
	t := n.nftTable()
	preCh, outCh, _ := n.nftChains(t)
	for _, x := range []struct {
		ch    *nftables.Chain
		rules *[]*nftables.Rule
	}{{preCh, &pre}, {outCh, &out}} {
		rules, err := c.GetRules(t, x.ch)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, nil, fmt.Errorf("network: list nf_tables chain %s: %w", x.ch.Name, err)
		}
		*x.rules = rules
	}
	return pre, out, nil
}

// publishedPorts returns the host sides that tasks publish: those of the
// DNAT rules in the table (of every network sharing it) and those the
// leases record (which a flushed table may have lost). The caller holds
// the port lock.
func (n *Network) publishedPorts(c *nftables.Conn) ([]heldPort, error) {
	var held []heldPort
	pre, _, err := n.dnatRules(c)
	if err != nil {
		return nil, err
	}
	for _, r := range pre {
		if task, proto, ap, _, ok := parseRuleTag(ruleComment(r)); ok {
			held = append(held, heldPort{proto, ap, task})
		}
	}
	err = n.withIPAMLock(func() error {
		leases, err := n.readLeaseRecords()
		if err != nil {
			return err
		}
		for id, l := range leases {
			for _, p := range fromRecords(l.Ports) {
				held = append(held, heldPort{p.Proto, p.hostAddrPort(), id})
			}
		}
		return nil
	})
	return held, err
}

const portCursorKey = "portcursor"

// portCursor remembers the dynamic host port handed out last.
type portCursor struct {
	Last uint16 `json:"last"`
}

// AddPorts publishes ports of a task and returns the mappings as published,
// normalized (Proto set, HostIP zero for every address) and with their host
// ports resolved. Traffic to a local address (HostIP, or any local address)
// on the host port is DNAT'd to the task's leased address on ContainerPort,
// from outside (prerouting), from the host itself including 127.0.0.1
// (output), and from tasks on the bridge (hairpin). The task needs a lease
// (Allocate or SetupTask).
//
// A mapping with HostPort 0 gets a free port from Config.PortRange; one
// with HostPortEnd set gets the first free port of HostPort..HostPortEnd.
// A port is free when no task publishes an overlapping host side (same
// protocol and port, and the same address or either on every address) and
// no host socket holds it (a TCP listener or a bound UDP socket on an
// overlapping address, in this process's network namespace). No free port
// left is an error wrapping ErrPortsExhausted. A fixed host port that is
// not free is refused with a *ConflictError naming the task or the host
// process that holds it.
//
// Ports are picked, recorded in the task's lease and published under one
// lock shared by every berth process on this state dir, so two concurrent
// calls never pick the same port. All mappings are added in one
// transaction: all or none; if it fails, the lease's record is restored.
func (n *Network) AddPorts(taskID string, ports []PortMapping) ([]PortMapping, error) {
	if err := checkTaskID(taskID); err != nil {
		return nil, err
	}
	req := make([]PortMapping, len(ports))
	for i, p := range ports {
		req[i] = p.normalized()
		if err := req[i].check(); err != nil {
			return nil, err
		}
	}
	var l lease
	if err := n.st.Get(leaseKey(taskID), &l); err != nil {
		return nil, fmt.Errorf("network: task %s has no address: %w", taskID, err)
	}
	if len(req) == 0 {
		return nil, nil
	}
	var resolved []PortMapping
	err := n.withPortLock(func() error {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("network: nftables: %w", err)
		}
		held, err := n.publishedPorts(c)
		if err != nil {
			return err
		}
		socks, err := hostSockets()
		if err != nil {
			return err
		}
		var cur portCursor
		if err := n.st.Get(portCursorKey, &cur); err != nil {
			cur = portCursor{} // missing or damaged: only the next-fit order suffers
		}
		a := newPortAlloc(held, socks, n.portRange, cur.Last, socketOwner)
		if resolved, err = a.resolve(taskID, req); err != nil {
			return err
		}
		l, old, err := n.setPorts(taskID, true, func(old []portRecord) []portRecord {
			return append(old[:len(old):len(old)], toRecords(resolved)...)
		})
		if err != nil {
			return err
		}
		t, pre, out, _ := n.addTableAndChains(c)
		addPortRules(c, t, pre, out, taskID, l.Addr, resolved)
		if err := c.Flush(); err != nil {
			err = fmt.Errorf("network: publish ports of task %s: %w", taskID, err)
			return errors.Join(err, n.restorePorts(taskID, old))
		}
		if a.cursor != cur.Last {
			_ = n.st.Put(portCursorKey, portCursor{Last: a.cursor})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resolved, nil
}

// RemovePorts removes all port mappings of a task: it clears their record
// in the task's lease and deletes their rules in one transaction (restoring
// the record if that fails). A missing table, lease or mapping is fine.
func (n *Network) RemovePorts(taskID string) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	return n.withPortLock(func() error {
		_, old, recErr := n.setPorts(taskID, false, func([]portRecord) []portRecord { return nil })
		err := n.deletePortRules(taskID)
		if err != nil && recErr == nil && len(old) > 0 {
			err = errors.Join(err, n.restorePorts(taskID, old))
		}
		// A damaged lease does not keep the rules; Release removes it.
		return errors.Join(recErr, err)
	})
}

// deletePortRules deletes the task's DNAT rules in one transaction.
func (n *Network) deletePortRules(taskID string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("network: nftables: %w", err)
	}
	pre, out, err := n.dnatRules(c)
	if err != nil {
		return err
	}
	found := false
	for _, r := range append(pre, out...) {
		if isTaskRule(ruleComment(r), taskID) {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("network: nftables: %w", err)
			}
			found = true
		}
	}
	if !found {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("network: remove ports of task %s: %w", taskID, err)
	}
	return nil
}

// portRules returns the comments of the task's DNAT rules, prefixed by
// their chain, for tests.
func (n *Network) portRules(taskID string) ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	pre, out, err := n.dnatRules(c)
	if err != nil {
		return nil, err
	}
	var got []string
	for _, x := range []struct {
		name  string
		rules []*nftables.Rule
	}{{chainPrerouting, pre}, {chainOutput, out}} {
		for _, r := range x.rules {
			if s := ruleComment(r); isTaskRule(s, taskID) {
				got = append(got, x.name+": "+s)
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
