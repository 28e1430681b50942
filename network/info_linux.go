//go:build linux

package network

import (
	"github.com/vishvananda/netlink"
)

// BridgeExists reports whether the bridge is there: false after a reboot
// or before the first bridge-mode task, when callers reconcile first.
func (n *Network) BridgeExists() bool {
	l, err := netlink.LinkByName(n.bridge)
	return err == nil && l.Type() == "bridge"
}

// TableExists reports whether the network's nf_tables tables are there
// (ip, and ip6 on a dual-stack network): false after a reboot or after a
// firewall flushed the ruleset, when callers reconcile to bring the rules
// of running tasks back.
func (n *Network) TableExists() bool {
	c, err := newConn()
	if err != nil {
		return false
	}
	defer func() { _ = c.CloseLasting() }()
	for _, f := range n.families() {
		if _, err := c.ListTableOfFamily(n.table, f); err != nil {
			return false
		}
	}
	return true
}
