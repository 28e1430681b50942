//go:build linux

package network

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
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
// and on a dual-stack network (Config.Subnet6) the table of the same name
// in family ip6, with the same chains:
//
//	table ip6 berth {
//	  chain prerouting  { type nat hook prerouting  priority dstnat; }
//	  chain output      { type nat hook output      priority dstnat; }
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	    ip6 saddr SUBNET6 oifname != BRIDGE masquerade
//	    oifname BRIDGE ip6 saddr SUBNET6 ct status dnat masquerade
//	  }
//	}
//
// IPv6 has no route_localnet: the kernel never sends a packet from ::1 out
// of another interface, so [::1]:PORT cannot be DNAT'd to a task (Docker
// serves it with its userland proxy; berth has none). The ip6 table has no
// loopback rule, mappings naming ::1 are refused, and the ip6 rules of a
// mapping on every address match `ip6 daddr != ::1`, leaving ::1 to the
// host's own sockets.
//
// A mapping with an IPv4 host address has DNAT rules in family ip, one
// with an IPv6 host address in family ip6 (to the task's IPv6 address),
// and one on every address in both when the task has an IPv6 address.
//
// Every rule carries an nft comment (rule userdata, shown by `nft list`):
// "berth bridge=NAME" on a bridge's postrouting rules, "berth task=ID
// PROTO HOSTIP:PORT -> ADDR:PORT" on a task's DNAT rules (ADDR the task's
// IPv4 or, in brackets, IPv6 address), so that each bridge or task finds
// and removes exactly its own rules, even in a shared table. Every change
// is one nf_tables transaction (one Flush), across both families.

const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"

	portLock = "portmap"
)

func (n *Network) nftTable() *nftables.Table {
	return &nftables.Table{Name: n.table, Family: nftables.TableFamilyIPv4}
}

func (n *Network) nftTable6() *nftables.Table {
	return &nftables.Table{Name: n.table, Family: nftables.TableFamilyIPv6}
}

// natTable is the network's table of one family, with its chains.
type natTable struct {
	t              *nftables.Table
	pre, out, post *nftables.Chain
}

func (n *Network) natTable(family nftables.TableFamily) natTable {
	t := &nftables.Table{Name: n.table, Family: family}
	pre, out, post := n.nftChains(t)
	return natTable{t, pre, out, post}
}

// families are the families of the network's tables: ip, and ip6 on a
// dual-stack network.
func (n *Network) families() []nftables.TableFamily {
	if n.subnet6.IsValid() {
		return []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}
	}
	return []nftables.TableFamily{nftables.TableFamilyIPv4}
}

// allFamilies are the families a table of the network may exist in:
// reading and removing look at ip6 also on an IPv4-only network, so that
// what a dual-stack configuration made does not outlive it.
var allFamilies = []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}

func (n *Network) nftChains(t *nftables.Table) (pre, out, post *nftables.Chain) {
	mk := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeNAT, Hooknum: hook, Priority: prio}
	}
	return mk(chainPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		mk(chainOutput, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
		mk(chainPostrouting, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
}

// addNATTable queues the creation of the family's table and its chains;
// both are no-ops if they exist, but see newConn: only queue it when a
// table or chain is missing.
func (n *Network) addNATTable(c *nftables.Conn, family nftables.TableFamily) natTable {
	nt := n.natTable(family)
	c.AddTable(nt.t)
	c.AddChain(nt.pre)
	c.AddChain(nt.out)
	c.AddChain(nt.post)
	return nt
}

// newConn opens one nf_tables netlink socket for all the reads and
// transactions of a call; the caller closes it with CloseLasting.
//
// The library's default, a socket per request, costs time: closing an
// nf_tables socket waits until the kernel has freed what earlier
// transactions deleted or replaced, which takes an RCU grace period (5 to
// 15 ms on the test machine). A transaction that only adds rules leaves
// nothing to free; one that deletes rules, or that names an existing chain
// again (AddChain of a chain that is there is an update in the kernel, even
// when nothing changes), does. So calls check what exists before queueing
// tables and chains, and close their one socket last, after whatever else
// they do, by which time the grace period has mostly passed.
func newConn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("network: nftables: %w", err)
	}
	return c, nil
}

// chainSet indexes chains read with ListChains by family, table and name.
type chainSet map[string]*nftables.Chain

func listChains(c *nftables.Conn) (chainSet, error) {
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("network: list nf_tables chains: %w", err)
	}
	set := make(chainSet, len(chains))
	for _, ch := range chains {
		set[chainKey(ch)] = ch
	}
	return set, nil
}

// has reports whether the chain exists.
func (s chainSet) has(ch *nftables.Chain) bool { return s[chainKey(ch)] != nil }

// hasAsMade reports whether the chain exists as nftChains makes it: a NAT
// chain on the same hook, with the same priority.
func (s chainSet) hasAsMade(want *nftables.Chain) bool {
	ch := s[chainKey(want)]
	return ch != nil && ch.Type == want.Type &&
		ch.Hooknum != nil && *ch.Hooknum == *want.Hooknum &&
		ch.Priority != nil && *ch.Priority == *want.Priority
}

// sameExprs reports whether a rule read from the kernel has the given
// expressions, compared in the form they are sent to the kernel in.
func sameExprs(family nftables.TableFamily, have, want []expr.Any) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		a, err := expr.Marshal(byte(family), have[i])
		if err != nil {
			return false
		}
		b, err := expr.Marshal(byte(family), want[i])
		if err != nil || !bytes.Equal(a, b) {
			return false
		}
	}
	return true
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

// ensureTable makes sure the tables (ip, and ip6 on a dual-stack network)
// have their chains and this bridge's masquerade rules, exactly once and in
// order. It reads the chains (one dump) and each postrouting chain (one
// dump each) and changes nothing when all is in place, the usual case;
// otherwise it creates what is missing and replaces this bridge's rules, in
// one transaction.
func (n *Network) ensureTable() error {
	return n.withPortLock(func() error {
		c, err := newConn()
		if err != nil {
			return err
		}
		defer func() { _ = c.CloseLasting() }()
		chains, err := listChains(c)
		if err != nil {
			return err
		}
		tag := comment(n.bridgeTag())
		queued := false
		for _, f := range n.families() {
			nt := n.natTable(f)
			var own []*nftables.Rule
			if chains.has(nt.post) {
				rules, err := c.GetRules(nt.t, nt.post)
				if err != nil {
					return fmt.Errorf("network: list nf_tables chain %s %s: %w", fwFamilies[f], chainPostrouting, err)
				}
				for _, r := range rules {
					if n.isBridgeRule(ruleComment(r)) {
						own = append(own, r)
					}
				}
			}
			want := n.masqRules(f)
			complete := chains.hasAsMade(nt.pre) && chains.hasAsMade(nt.out) && chains.hasAsMade(nt.post)
			if complete && sameRules(own, want) {
				continue
			}
			if !complete {
				n.addNATTable(c, f)
			}
			for _, r := range own {
				if err := c.DelRule(r); err != nil {
					return fmt.Errorf("network: nftables: %w", err)
				}
			}
			for _, e := range want {
				c.AddRule(&nftables.Rule{Table: nt.t, Chain: nt.post, Exprs: e, UserData: tag})
			}
			queued = true
		}
		if !queued {
			return nil
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("network: nf_tables table %s, masquerade rules for %s: %w", n.table, n.bridge, err)
		}
		return nil
	})
}

// sameRules reports whether rules, read from the kernel, are want's rules
// in order.
func sameRules(rules []*nftables.Rule, want [][]expr.Any) bool {
	if len(rules) != len(want) {
		return false
	}
	for i, r := range rules {
		if !sameExprs(r.Table.Family, r.Exprs, want[i]) {
			return false
		}
	}
	return true
}

// masqRules are the bridge's postrouting rules in the family's table (see
// the comment at the top).
func (n *Network) masqRules(family nftables.TableFamily) [][]expr.Any {
	if family == nftables.TableFamilyIPv6 {
		return [][]expr.Any{
			concat(matchSaddr(n.subnet6), matchOifname(n.bridge, false), masq()),
			concat(matchOifname(n.bridge, true), matchSaddr(n.subnet6), matchCtDNAT(), masq()),
		}
	}
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	return [][]expr.Any{
		concat(matchSaddr(n.subnet), matchOifname(n.bridge, false), masq()),
		concat(matchOifname(n.bridge, true), matchSaddr(loopback), matchCtDNAT(), masq()),
		concat(matchOifname(n.bridge, true), matchSaddr(n.subnet), matchCtDNAT(), masq()),
	}
}

// deleteTable deletes the network's tables, ip and ip6, those that exist,
// in one transaction.
func (n *Network) deleteTable() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("network: nftables: %w", err)
	}
	found := false
	for _, f := range allFamilies {
		if _, err := c.ListTableOfFamily(n.table, f); err != nil {
			continue // gone (the library reports absence only as an error)
		}
		c.DelTable(&nftables.Table{Name: n.table, Family: f})
		found = true
	}
	if !found {
		return nil
	}
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

// portRule is the DNAT rule of one mapping in one family, as it goes in
// both prerouting and output.
type portRule struct {
	family nftables.TableFamily
	exprs  []expr.Any
	tag    string
}

// key is the rule's family and comment, which identify it among a task's
// rules.
func (r portRule) key() string { return fwFamilies[r.family] + " " + r.tag }

// ruleKey is portRule.key of a rule read from the kernel.
func ruleKey(r *nftables.Rule) string { return fwFamilies[r.Table.Family] + " " + ruleComment(r) }

// taskPortRules returns a task's DNAT rules for resolved mappings (see the
// comment at the top): to addr in family ip, to addr6 in family ip6. With
// addr6 invalid (an IPv4-only network or an older lease) there are no ip6
// rules, and a mapping with an IPv6 host address has none at all, which
// AddPorts refuses to make.
func taskPortRules(taskID string, addr, addr6 netip.Addr, ports []PortMapping) []portRule {
	var rules []portRule
	add := func(family nftables.TableFamily, match []expr.Any, p PortMapping, to netip.Addr) {
		rules = append(rules, portRule{
			family: family,
			exprs:  concat(match, matchL4(l4proto(p.Proto), p.HostPort), dnat(to, p.ContainerPort)),
			tag:    ruleTag(taskID, p, to),
		})
	}
	// Every local IPv6 address but ::1, which cannot be DNAT'd.
	local6 := concat(matchLocalDaddr(), matchDaddrNot(netip.IPv6Loopback()))
	for _, p := range ports {
		switch h := p.HostIP; {
		case h.Is4():
			add(nftables.TableFamilyIPv4, matchDaddr(h), p, addr)
		case h.Is6() && !addr6.IsValid():
		case h == netip.IPv6Unspecified():
			add(nftables.TableFamilyIPv6, local6, p, addr6)
		case h.Is6():
			add(nftables.TableFamilyIPv6, matchDaddr(h), p, addr6)
		default: // every address
			add(nftables.TableFamilyIPv4, matchLocalDaddr(), p, addr)
			if addr6.IsValid() {
				add(nftables.TableFamilyIPv6, local6, p, addr6)
			}
		}
	}
	return rules
}

// addPortRules queues DNAT rules, each in prerouting and in output of its
// family's table, and the creation of the tables and chains they need,
// unless ready says the family's table has them (see natRules).
func (n *Network) addPortRules(c *nftables.Conn, rules []portRule, ready map[nftables.TableFamily]bool) {
	tables := map[nftables.TableFamily]natTable{}
	for _, r := range rules {
		nt, ok := tables[r.family]
		if !ok {
			if ready[r.family] {
				nt = n.natTable(r.family)
			} else {
				nt = n.addNATTable(c, r.family)
			}
			tables[r.family] = nt
		}
		tag := comment(r.tag)
		c.AddRule(&nftables.Rule{Table: nt.t, Chain: nt.pre, Exprs: r.exprs, UserData: tag})
		c.AddRule(&nftables.Rule{Table: nt.t, Chain: nt.out, Exprs: r.exprs, UserData: tag})
	}
}

// natRules are the rules of the prerouting and output chains of the
// network's tables (ip and ip6), as dnatRules read them.
type natRules struct {
	pre, out []*nftables.Rule
	// ready holds the families whose table has both chains as
	// nftChains makes them, so that rules can go in without queueing the
	// table and chains again (see newConn).
	ready map[nftables.TableFamily]bool
}

// dnatRules reads the rules of the prerouting and output chains of the
// network's tables (ip and ip6), none for a missing table or chain: one
// dump of the chains, one of each chain that exists.
func (n *Network) dnatRules(c *nftables.Conn) (*natRules, error) {
	chains, err := listChains(c)
	if err != nil {
		return nil, err
	}
	nr := &natRules{ready: map[nftables.TableFamily]bool{}}
	for _, f := range allFamilies {
		nt := n.natTable(f)
		for _, x := range []struct {
			ch    *nftables.Chain
			rules *[]*nftables.Rule
		}{{nt.pre, &nr.pre}, {nt.out, &nr.out}} {
			if !chains.has(x.ch) {
				continue
			}
			rules, err := c.GetRules(nt.t, x.ch)
			if err != nil {
				return nil, fmt.Errorf("network: list nf_tables chain %s %s: %w", fwFamilies[f], x.ch.Name, err)
			}
			*x.rules = append(*x.rules, rules...)
		}
		// A chain of the right name but another kind (a regular chain,
		// say) is not ready: queueing the chains again makes the
		// transaction fail, as it must, rather than put DNAT rules where
		// no packet sees them.
		nr.ready[f] = chains.hasAsMade(nt.pre) && chains.hasAsMade(nt.out)
	}
	return nr, nil
}

// publishedPorts returns the host sides that tasks publish: those of the
// DNAT rules in the table (of every network sharing it), as read into nr,
// and those the leases record (which a flushed table may have lost). The
// caller holds the port lock.
func (n *Network) publishedPorts(nr *natRules) ([]heldPort, error) {
	var held []heldPort
	for _, r := range nr.pre {
		if task, proto, ap, _, ok := parseRuleTag(ruleComment(r)); ok {
			held = append(held, heldPort{proto, ap, task})
		}
	}
	err := n.withIPAMLock(func() error {
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
// On a dual-stack network, a mapping with an IPv6 HostIP goes to the
// task's IPv6 address, and a mapping on every address (no HostIP) to its
// IPv6 address too, for IPv6 traffic, except to ::1 (see Config.Subnet6);
// a mapping with an IPv4 HostIP stays IPv4 only. A mapping on ::1 is
// refused, as is one with an IPv6 HostIP on an IPv4-only network or for a
// task without an IPv6 address.
//
// A mapping with HostPort 0 gets a free port from Config.PortRange; one
// with HostPortEnd set gets the first free port of HostPort..HostPortEnd.
// A port is free when no task publishes an overlapping host side (same
// protocol and port, and the same address or either on every address, ::
// being every IPv6 address) and
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
	addr6 := n.addr6(l)
	for _, p := range req {
		switch {
		case !p.HostIP.Is6():
		case !n.subnet6.IsValid():
			return nil, fmt.Errorf("network: port mapping %s: an IPv6 host address needs a network with an IPv6 subnet (%s has none)", p, n.bridge)
		case !addr6.IsValid():
			return nil, fmt.Errorf("network: port mapping %s: task %s has no IPv6 address", p, taskID)
		}
	}
	if len(req) == 0 {
		return nil, nil
	}
	var resolved []PortMapping
	err := n.withPortLock(func() error {
		c, err := newConn()
		if err != nil {
			return err
		}
		defer func() { _ = c.CloseLasting() }()
		nr, err := n.dnatRules(c)
		if err != nil {
			return err
		}
		held, err := n.publishedPorts(nr)
		if err != nil {
			return err
		}
		socks, err := hostSockets(protocols(req)...)
		if err != nil {
			return err
		}
		var cur portCursor
		if err := n.st.Get(portCursorKey, &cur); err != nil {
			cur = portCursor{} // missing or damaged: only the next-fit order suffers
		}
		a := newPortAlloc(held, socks, n.portRange, cur.Last, socketOwner)
		a.wild6 = addr6.IsValid()
		if resolved, err = a.resolve(taskID, req); err != nil {
			return err
		}
		l, old, err := n.setPorts(taskID, true, func(old []portRecord) []portRecord {
			return append(old[:len(old):len(old)], toRecords(resolved)...)
		})
		if err != nil {
			return err
		}
		n.addPortRules(c, taskPortRules(taskID, l.Addr, n.addr6(l), resolved), nr.ready)
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

// protocols are the protocols of normalized mappings, each once.
func protocols(ports []PortMapping) []Proto {
	var ps []Proto
	for _, p := range ports {
		if !slices.Contains(ps, p.Proto) {
			ps = append(ps, p.Proto)
		}
	}
	return ps
}

// RemovePorts removes all port mappings of a task: it clears their record
// in the task's lease and deletes their rules in one transaction (restoring
// the record if that fails). A missing table, lease or mapping is fine.
func (n *Network) RemovePorts(taskID string) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	c, err := newConn()
	if err != nil {
		return err
	}
	defer func() { _ = c.CloseLasting() }()
	return n.removePorts(c, taskID)
}

// removePorts is RemovePorts on the caller's connection.
func (n *Network) removePorts(c *nftables.Conn, taskID string) error {
	return n.withPortLock(func() error {
		_, old, recErr := n.setPorts(taskID, false, func([]portRecord) []portRecord { return nil })
		err := n.deletePortRules(c, taskID)
		if err != nil && recErr == nil && len(old) > 0 {
			err = errors.Join(err, n.restorePorts(taskID, old))
		}
		// A damaged lease does not keep the rules; Release removes it.
		return errors.Join(recErr, err)
	})
}

// deletePortRules deletes the task's DNAT rules in one transaction.
func (n *Network) deletePortRules(c *nftables.Conn, taskID string) error {
	nr, err := n.dnatRules(c)
	if err != nil {
		return err
	}
	found := false
	for _, r := range append(nr.pre, nr.out...) {
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
// their chain ("ip6 " before it for family ip6), for tests.
func (n *Network) portRules(taskID string) ([]string, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.CloseLasting() }()
	nr, err := n.dnatRules(c)
	if err != nil {
		return nil, err
	}
	var got []string
	for _, x := range []struct {
		name  string
		rules []*nftables.Rule
	}{{chainPrerouting, nr.pre}, {chainOutput, nr.out}} {
		for _, r := range x.rules {
			if s := ruleComment(r); isTaskRule(s, taskID) {
				prefix := ""
				if r.Table.Family == nftables.TableFamilyIPv6 {
					prefix = "ip6 "
				}
				got = append(got, prefix+x.name+": "+s)
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

// Offsets of the addresses in the IPv4 and IPv6 headers.
const (
	ipv4Saddr = 12
	ipv4Daddr = 16
	ipv6Saddr = 8
	ipv6Daddr = 24
)

// matchPrefix matches the address at offset of the network header (IPv4
// or IPv6, as p is) against p.
func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	a := p.Masked().Addr().AsSlice()
	size := uint32(len(a))
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size}
	if p.Bits() == len(a)*8 {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a}}
	}
	mask := make([]byte, size)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a},
	}
}

// matchSaddr is `ip saddr P` or `ip6 saddr P`.
func matchSaddr(p netip.Prefix) []expr.Any {
	if p.Addr().Is4() {
		return matchPrefix(ipv4Saddr, p)
	}
	return matchPrefix(ipv6Saddr, p)
}

// matchDaddr is `ip daddr A` or `ip6 daddr A`.
func matchDaddr(a netip.Addr) []expr.Any {
	if a.Is4() {
		return matchPrefix(ipv4Daddr, netip.PrefixFrom(a, 32))
	}
	return matchPrefix(ipv6Daddr, netip.PrefixFrom(a, 128))
}

// matchDaddrNot is `ip6 daddr != A` for an IPv6 address.
func matchDaddrNot(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ipv6Daddr, Len: 16},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: a.AsSlice()},
	}
}

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

// dnat is `dnat to A:PORT` (IPv4) or `dnat to [A]:PORT` (IPv6).
func dnat(a netip.Addr, port uint16) []expr.Any {
	family := uint32(unix.NFPROTO_IPV4)
	if a.Is6() {
		family = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: family, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }
