//go:build linux

package network

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge creates the bridge if it is missing, gives it the gateway
// address, brings it up, enables IPv4 forwarding and route_localnet on the
// bridge (so that 127.0.0.1 can be DNAT'd to a task), and installs berth's
// nf_tables table with its base chains and masquerade rules. It is idempotent
// and repairs a partly made bridge. It reads before it writes and changes
// only what differs, so that on every start after the first it only reads:
// a few netlink round trips, no change the kernel must publish or free.
//
// On a dual-stack network (Config.Subnet6) it also enables IPv6 on the
// bridge without duplicate address detection (accept_dad=0), gives it the
// IPv6 gateway address, usable at once (IFA_F_NODAD), enables IPv6
// forwarding (net.ipv6.conf.all.forwarding=1; see Config.Subnet6 about
// accept_ra) and installs the table in family ip6 too.
func (n *Network) EnsureBridge() error {
	br, err := netlink.LinkByName(n.bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		la := netlink.NewLinkAttrs()
		la.Name = n.bridge
		// A fixed address: a bridge without one takes the lowest of its
		// ports' addresses, which changes as tasks come and go and makes
		// the tasks' neighbour entries for the gateway stale.
		la.HardwareAddr = bridgeMAC(n.bridge)
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("network: create bridge %s: %w", n.bridge, err)
		}
		if br, err = netlink.LinkByName(n.bridge); err != nil {
			return fmt.Errorf("network: bridge %s: %w", n.bridge, err)
		}
	case err != nil:
		return fmt.Errorf("network: bridge %s: %w", n.bridge, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("network: %s exists and is a %s, not a bridge", n.bridge, br.Type())
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{
		IP:   n.gateway.AsSlice(),
		Mask: net.CIDRMask(n.subnet.Bits(), 32),
	}}
	if err := ensureAddr(br, gw, netlink.FAMILY_V4); err != nil {
		return fmt.Errorf("network: address %s on %s: %w", gw.IPNet, n.bridge, err)
	}
	if n.subnet6.IsValid() {
		if err := n.ensureBridge6(br); err != nil {
			return err
		}
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return fmt.Errorf("network: bring up %s: %w", n.bridge, err)
		}
	}
	if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	if err := writeSysctl(filepath.Join("/proc/sys/net/ipv4/conf", n.bridge, "route_localnet"), "1"); err != nil {
		return err
	}
	if n.subnet6.IsValid() {
		if err := writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	if err := n.ensureTable(); err != nil {
		return err
	}
	// Accept rules in other tools' forward chains with policy drop
	// (Docker's DOCKER-USER and the like; see forward_linux.go).
	return n.openForwarding()
}

// Remove deletes the bridge and this network's nf_tables table (Config.Table)
// with all its rules, in family ip and, if it exists, ip6 (also when the
// network is no longer dual-stack), so networks must not share a table if
// one is to be removed alone. IP forwarding is left on, IPv4 and IPv6.
// Leases are kept (they belong to tasks, which Reclaim cleans up). Missing
// pieces are not an error.
func (n *Network) Remove() error {
	var errs []error
	if br, err := netlink.LinkByName(n.bridge); err == nil {
		if br.Type() != "bridge" {
			errs = append(errs, fmt.Errorf("network: %s is a %s, not a bridge: not removed", n.bridge, br.Type()))
		} else if err := netlink.LinkDel(br); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete bridge %s: %w", n.bridge, err))
		}
	} else if !isNotFound(err) {
		errs = append(errs, fmt.Errorf("network: bridge %s: %w", n.bridge, err))
	}
	if err := n.deleteTable(); err != nil {
		errs = append(errs, err)
	}
	if err := n.closeForwarding(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ensureBridge6 enables IPv6 on the bridge, without duplicate address
// detection, and gives it the IPv6 gateway address.
func (n *Network) ensureBridge6(br netlink.Link) error {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return fmt.Errorf("network: IPv6 subnet %s: IPv6 is disabled in this kernel (ipv6.disable=1 on its command line?): %w", n.subnet6, err)
	}
	conf := filepath.Join("/proc/sys/net/ipv6/conf", n.bridge)
	// disable_ipv6 first: a bridge made while default/disable_ipv6=1
	// takes no IPv6 address.
	for _, s := range []struct{ key, value string }{{"disable_ipv6", "0"}, {"accept_dad", "0"}} {
		if err := writeSysctl(filepath.Join(conf, s.key), s.value); err != nil {
			return err
		}
	}
	gw6 := &netlink.Addr{
		IPNet: &net.IPNet{IP: n.gateway6.AsSlice(), Mask: net.CIDRMask(n.subnet6.Bits(), 128)},
		// Usable at once, not after a second of duplicate address
		// detection: tasks route through it as soon as they start.
		Flags: unix.IFA_F_NODAD,
	}
	if err := ensureAddr(br, gw6, netlink.FAMILY_V6); err != nil {
		return fmt.Errorf("network: address %s on %s: %w", gw6.IPNet, n.bridge, err)
	}
	return nil
}

// ensureAddr gives link the address unless it has it already, with the same
// prefix length and usable (not tentative, not failed duplicate address
// detection): reading the link's addresses is cheaper than a change, which
// every listener of the kernel's address notifications hears about.
func ensureAddr(link netlink.Link, want *netlink.Addr, family int) error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, family) })
	if err != nil {
		// Unsure what is there: set it, as a change would.
		return netlink.AddrReplace(link, want)
	}
	for _, a := range addrs {
		if a.IPNet != nil && a.IPNet.IP.Equal(want.IPNet.IP) && a.IPNet.Mask.String() == want.IPNet.Mask.String() &&
			a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			return nil
		}
	}
	return netlink.AddrReplace(link, want)
}

// bridgeMAC derives a locally administered unicast MAC address from the
// bridge's name.
func bridgeMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("berth bridge " + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

func writeSysctl(path, value string) error {
	cur, err := os.ReadFile(path)
	if err == nil && string(cur) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("network: sysctl %s=%s: %w", path, value, err)
	}
	return nil
}

// retryDump runs a netlink dump again, a few times, while the kernel
// reports it interrupted (links or addresses came or went meanwhile, as they
// do on a busy host, and the results may be inconsistent); the last result
// stands.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var res []T
	var err error
	for range 10 {
		if res, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return res, err
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, os.ErrNotExist) || errors.Is(err, errNoDevice)
}
