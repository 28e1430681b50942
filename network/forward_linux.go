//go:build linux

package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// Forwarding through other tools' firewalls.
//
// nf_tables runs every base chain hooked at forward, each to its own
// verdict: an accept ends only the chain it is in, a drop (or a drop
// policy) is final. When Docker has run on a host, iptables' FORWARD chain
// (table ip filter under iptables-nft) has policy drop, and so do hosts set
// up by ufw or by hand; whatever berth's own table accepts, the bridge's
// forwarded and DNAT'd traffic is dropped there. So EnsureBridge puts three
// rules at the top of the chain each such blocker expects them in:
//
//	iifname BRIDGE accept                               # from tasks (and task to task under br_netfilter)
//	oifname BRIDGE ct state established,related accept  # replies to tasks
//	oifname BRIDGE ct status dnat accept                # published ports
//
// The chain is the table's regular chain DOCKER-USER if it has one (Docker's
// layout: FORWARD jumps to DOCKER-USER first, and Docker promises never to
// flush it), otherwise the blocking base chain itself. Blockers are base
// chains of families ip, ip6 and inet hooked at forward with policy drop,
// in any table but berth's own.
//
// Every rule carries the nft comment "berth bridge=NAME forward", so that
// berth finds exactly its own rules: EnsureBridge leaves them alone where
// every target chain starts with them and no other chain holds any (read,
// not rewritten, on every start), else replaces them (one copy, back at the
// top, also after another tool inserted rules above them), and Remove
// deletes them, each in one nf_tables transaction.
//
// In tables of family ip and ip6, the only ones iptables-nft makes, the
// conntrack matches are encoded the way iptables-nft encodes `-m conntrack
// --ctstate RELATED,ESTABLISHED` and `--ctstate DNAT` (xt match conntrack,
// revision 3), so that iptables still reads the table: with native ct
// expressions in it, `iptables -S` and `iptables -L` (iptables 1.8.9)
// refuse the whole table as incompatible, which breaks anyone listing or
// saving it. In inet tables (nft's own) they are native ct expressions.
//
// Not handled:
//   - firewalld: its inet firewalld table's forward chains have policy
//     accept and reject traffic of unknown zones with rules, which is not
//     detected. The operator puts the bridge into the trusted zone:
//     firewall-cmd --permanent --zone=trusted --add-interface=berth0 and
//     firewall-cmd --reload (or without --permanent, until the next reload).
//   - Rules that drop or reject in chains with policy accept, in general.
//   - iptables-legacy, which nf_tables cannot see.
//   - A firewall reload that flushes the chain (ufw reload, iptables -F,
//     nft -f of a ruleset starting with flush ruleset) removes berth's
//     rules; the next EnsureBridge puts them back.

const (
	dockerUserChain = "DOCKER-USER"
	forwardLock     = "forward"
)

func (n *Network) forwardTag() string { return "berth bridge=" + n.bridge + " forward" }

// fwFamilies names the table families whose forward chains berth opens.
var fwFamilies = map[nftables.TableFamily]string{
	nftables.TableFamilyIPv4: "ip",
	nftables.TableFamilyIPv6: "ip6",
	nftables.TableFamilyINet: "inet",
}

// fwBlocker is a base chain blocking forwarding and the chain that holds
// (or would hold) berth's rules for it.
type fwBlocker struct {
	chain  *nftables.Chain
	target *nftables.Chain
	opened bool // berth's rules for this bridge are in target
}

func (b fwBlocker) String() string {
	s := fwFamilies[b.chain.Table.Family] + " " + b.chain.Table.Name + " " + b.chain.Name
	if b.opened {
		s += " (opened in " + b.target.Name + ")"
	}
	return s
}

// fwPlan is what berth sees of other tables' forwarding.
type fwPlan struct {
	blockers []fwBlocker
	// targets are the chains to hold berth's rules, each once.
	targets []*nftables.Chain
	// scan are the chains that may hold berth's rules: every forward base
	// chain, whatever its policy now, and every DOCKER-USER chain, of the
	// families above, in tables other than berth's own.
	scan []*nftables.Chain
}

type fwTableKey struct {
	family nftables.TableFamily
	name   string
}

func chainKey(ch *nftables.Chain) string {
	return fmt.Sprintf("%d %s %s", ch.Table.Family, ch.Table.Name, ch.Name)
}

func (n *Network) planForward(c *nftables.Conn) (*fwPlan, error) {
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("network: list nf_tables chains: %w", err)
	}
	skip := func(t *nftables.Table) bool {
		_, ok := fwFamilies[t.Family]
		own := t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6
		return !ok || own && t.Name == n.table
	}
	dockerUser := map[fwTableKey]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Hooknum == nil && ch.Name == dockerUserChain && !skip(ch.Table) {
			dockerUser[fwTableKey{ch.Table.Family, ch.Table.Name}] = ch
		}
	}
	p := &fwPlan{}
	seen := map[string]bool{}
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || skip(ch.Table) {
			continue
		}
		p.scan = append(p.scan, ch)
		if ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		target := ch
		if du := dockerUser[fwTableKey{ch.Table.Family, ch.Table.Name}]; du != nil {
			target = du
		}
		p.blockers = append(p.blockers, fwBlocker{chain: ch, target: target})
		if !seen[chainKey(target)] {
			seen[chainKey(target)] = true
			p.targets = append(p.targets, target)
		}
	}
	for _, du := range dockerUser {
		p.scan = append(p.scan, du)
	}
	return p, nil
}

// chainRules returns the rules of ch; a chain that has gone meanwhile has
// none.
func chainRules(c *nftables.Conn, ch *nftables.Chain) ([]*nftables.Rule, error) {
	rules, err := c.GetRules(ch.Table, ch)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("network: list nf_tables chain %s %s %s: %w",
			fwFamilies[ch.Table.Family], ch.Table.Name, ch.Name, err)
	}
	return rules, nil
}

// ownRules returns this bridge's forward rules among rules.
func (n *Network) ownRules(rules []*nftables.Rule) []*nftables.Rule {
	var own []*nftables.Rule
	for _, r := range rules {
		if ruleComment(r) == n.forwardTag() {
			own = append(own, r)
		}
	}
	return own
}

// openedOnTop reports whether rules, those of a chain of family, start with
// this bridge's forward rules, once each and in order, and hold no other
// copy further down. Other berth bridges' forward rules may come first:
// each bridge's EnsureBridge puts its own on top, and with two bridges
// each would otherwise move its rules above the other's on every call.
func (n *Network) openedOnTop(family nftables.TableFamily, rules []*nftables.Rule) bool {
	want := forwardRules(n.bridge, family)
	if len(n.ownRules(rules)) != len(want) {
		return false
	}
	i := 0
	for i < len(rules) && isForwardTag(ruleComment(rules[i])) && ruleComment(rules[i]) != n.forwardTag() {
		i++
	}
	if len(rules)-i < len(want) {
		return false
	}
	for j, e := range want {
		r := rules[i+j]
		if ruleComment(r) != n.forwardTag() || !sameExprs(family, r.Exprs, e) {
			return false
		}
	}
	return true
}

// isForwardTag reports whether an nft comment is forwardTag's, of any
// bridge.
func isForwardTag(c string) bool {
	return strings.HasPrefix(c, "berth bridge=") && strings.HasSuffix(c, " forward")
}

// ForwardBlockers lists the nf_tables base chains, in tables other than
// berth's own, that hook forwarding (families ip, ip6 and inet) with policy
// drop, as "family table chain", sorted. " (opened in CHAIN)" follows those
// where berth's accept rules for this bridge are: EnsureBridge puts them in
// CHAIN, DOCKER-USER or the base chain itself, and Remove deletes them (see
// the comment at the top of forward_linux.go). A blocker without it drops
// the bridge's forwarded and DNAT'd traffic whatever berth's table accepts:
// EnsureBridge has not run since the chain was made or flushed, or it
// failed. Rules that drop or reject with policy accept (firewalld's zones
// among them) and iptables-legacy, which nf_tables cannot see, are not
// detected.
func (n *Network) ForwardBlockers() ([]string, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.CloseLasting() }()
	return n.forwardBlockers(c)
}

func (n *Network) forwardBlockers(c *nftables.Conn) ([]string, error) {
	p, err := n.planForward(c)
	if err != nil {
		return nil, err
	}
	opened := map[string]bool{}
	for _, t := range p.targets {
		rules, err := chainRules(c, t)
		if err != nil {
			return nil, err
		}
		opened[chainKey(t)] = len(n.ownRules(rules)) > 0
	}
	found := make([]string, 0, len(p.blockers))
	for _, b := range p.blockers {
		b.opened = opened[chainKey(b.target)]
		found = append(found, b.String())
	}
	sort.Strings(found)
	return found, nil
}

// withForwardLock serialises changes of the forward rules between berth
// processes sharing this network's state dir.
func (n *Network) withForwardLock(fn func() error) (err error) {
	l, err := n.st.Lock(context.Background(), forwardLock)
	if err != nil {
		return fmt.Errorf("network: forward rules: %w", err)
	}
	defer func() {
		if uerr := l.Unlock(); err == nil && uerr != nil {
			err = fmt.Errorf("network: forward rules: %w", uerr)
		}
	}()
	return fn()
}

// openForwarding puts this bridge's accept rules at the top of the chain
// each forward blocker expects them in, replacing any earlier copy (there,
// or in a chain that is no longer the target), in one transaction; when
// they are in place already it only reads.
func (n *Network) openForwarding() error {
	return n.withForwardLock(func() error {
		return retryGone(func() error { return n.setForwardRules(true) })
	})
}

// closeForwarding deletes this bridge's accept rules from every chain that
// may hold them, in one transaction.
func (n *Network) closeForwarding() error {
	return n.withForwardLock(func() error {
		return retryGone(func() error { return n.setForwardRules(false) })
	})
}

// retryGone runs fn again once if it failed with ENOENT: another tool
// deleted a rule or chain between listing and the transaction.
func retryGone(fn func() error) error {
	err := fn()
	if errors.Is(err, unix.ENOENT) {
		err = fn()
	}
	return err
}

func (n *Network) setForwardRules(open bool) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	defer func() { _ = c.CloseLasting() }()
	p, err := n.planForward(c)
	if err != nil {
		return err
	}
	target := map[string]bool{}
	for _, ch := range p.targets {
		target[chainKey(ch)] = true
	}
	// In place: each target opens with this bridge's rules and no other
	// chain holds any. Then nothing is rewritten (the usual case), which
	// keeps the rules where they are and the kernel from having rules to
	// free (see newConn).
	inPlace := open
	var del []*nftables.Rule
	for _, ch := range p.scan {
		rules, err := chainRules(c, ch)
		if err != nil {
			return err
		}
		own := n.ownRules(rules)
		del = append(del, own...)
		if open && target[chainKey(ch)] {
			inPlace = inPlace && n.openedOnTop(ch.Table.Family, rules)
		} else if len(own) > 0 {
			inPlace = false
		}
	}
	if inPlace {
		return nil
	}
	queued := false
	for _, r := range del {
		if err := c.DelRule(r); err != nil {
			return fmt.Errorf("network: nftables: %w", err)
		}
		queued = true
	}
	if open {
		tag := comment(n.forwardTag())
		for _, ch := range p.targets {
			rules := forwardRules(n.bridge, ch.Table.Family)
			// Each insert goes to the top: last rule first.
			for i := len(rules) - 1; i >= 0; i-- {
				c.InsertRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: rules[i], UserData: tag})
				queued = true
			}
		}
	}
	if !queued {
		return nil
	}
	if err := c.Flush(); err != nil {
		if open {
			return fmt.Errorf("network: install forward rules of %s in %s: %w", n.bridge, chainList(p.targets), err)
		}
		return fmt.Errorf("network: remove forward rules of %s: %w", n.bridge, err)
	}
	return nil
}

func chainList(chains []*nftables.Chain) string {
	var s []string
	for _, ch := range chains {
		s = append(s, fwFamilies[ch.Table.Family]+" "+ch.Table.Name+" "+ch.Name)
	}
	return strings.Join(s, ", ")
}

// forwardRules are the three accept rules for a bridge, for a table of the
// given family (see the comment at the top).
func forwardRules(bridge string, family nftables.TableFamily) [][]expr.Any {
	accept := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	var established, dnatted []expr.Any
	if family == nftables.TableFamilyINet {
		established = matchCtState(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
		dnatted = matchCtDNAT()
	} else {
		established = xtConntrackState(xtStateEstablished | xtStateRelated)
		dnatted = xtConntrackState(xtStateDNAT)
	}
	return [][]expr.Any{
		concat(iifnameIs(bridge), accept),
		concat(matchOifname(bridge, true), established, accept),
		concat(matchOifname(bridge, true), dnatted, accept),
	}
}

// iifnameIs is `iifname NAME`, which iptables-nft reads as `-i NAME`.
func iifnameIs(name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// matchCtState is `ct state STATES` for a mask of expr.CtStateBit*.
func matchCtState(mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// State bits of xt_conntrack's state_mask (linux/netfilter/xt_conntrack.h).
const (
	xtStateEstablished = 1 << 1 // XT_CONNTRACK_STATE_BIT(IP_CT_ESTABLISHED)
	xtStateRelated     = 1 << 2 // XT_CONNTRACK_STATE_BIT(IP_CT_RELATED)
	xtStateDNAT        = 1 << 7 // XT_CONNTRACK_STATE_DNAT
)

// xtConntrackState is iptables' `-m conntrack --ctstate STATES` as
// iptables-nft writes it: xt match conntrack, revision 3.
func xtConntrackState(mask uint16) []expr.Any {
	info := &xt.ConntrackMtinfo3{}
	info.MatchFlags = uint16(xt.ConntrackState)
	info.StateMask = mask
	return []expr.Any{&expr.Match{Name: "conntrack", Rev: 3, Info: info}}
}
