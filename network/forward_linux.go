//go:build linux

package network

import (
	"fmt"
	"sort"

	"github.com/google/nftables"
)

// ForwardBlockers lists the nf_tables base chains, other than berth's own,
// that hook IPv4 forwarding (families ip and inet) with policy drop, as
// "family table chain", sorted. The usual one is iptables' FORWARD chain with policy
// DROP, which Docker sets: a drop in any base chain is final, so it drops the
// bridge's forwarded and DNAT'd traffic whatever berth's table accepts.
// Callers warn about it (or, later, open forwarding the way that tool
// expects). Rules that drop with policy accept, and iptables-legacy (which
// nf_tables cannot see), are not detected.
func (n *Network) ForwardBlockers() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("network: nftables: %w", err)
	}
	return n.forwardBlockers(c)
}

func (n *Network) forwardBlockers(c *nftables.Conn) ([]string, error) {
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("network: list nf_tables chains: %w", err)
	}
	var found []string
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		var family string
		switch ch.Table.Family {
		case nftables.TableFamilyIPv4:
			family = "ip"
		case nftables.TableFamilyINet:
			family = "inet"
		default:
			continue
		}
		if ch.Table.Family == nftables.TableFamilyIPv4 && ch.Table.Name == n.table {
			continue
		}
		found = append(found, family+" "+ch.Table.Name+" "+ch.Name)
	}
	sort.Strings(found)
	return found, nil
}
