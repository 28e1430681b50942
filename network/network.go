// Package network gives berth tasks their network: a Linux bridge with a
// gateway address, one named network namespace per task joined to the bridge
// by a veth pair, persistent IPv4 address leases (IPAM), IPv6 ones too when
// the network has an IPv6 subnet (dual stack), and published ports through
// berth's own nf_tables tables, on fixed or dynamically picked host ports.
//
// Everything is done over netlink (vishvananda/netlink for links, addresses
// and routes; google/nftables for NAT rules): no ip or iptables binaries, no
// userland proxy, no CNI plugins.
//
// State: leases live in Config.StateDir as one file per task (through
// internal/store, locked so that several berth processes can allocate at
// once), each holding the task's address and published ports; network
// namespaces are bind-mounted at RunRoot/netns/<task-id>. Nothing is kept
// in memory between calls, so any process holding the same Config sees and
// can undo what another made, and Reconcile can rebuild the host's side
// (bridge, rules) from the leases after a reboot or a firewall reload.
package network

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

// Defaults for Config's zero fields.
const (
	// DefaultBridge is the bridge berth creates for bridge-mode tasks.
	DefaultBridge = "berth0"
	// DefaultTable is the name of berth's nf_tables table (family ip, and
	// family ip6 on a dual-stack network).
	DefaultTable = "berth"
	// DefaultRunRoot is where berth keeps runtime state (gone at reboot).
	DefaultRunRoot = "/run/berth"
)

// DefaultSubnet is the bridge's IPv4 subnet when Config.Subnet is not set.
// 10.209.0.0/16 was chosen because it is rarely used by anything else:
// Docker takes 172.17.0.0/16 and then 172.18+ and 192.168.x, podman
// 10.88.0.0/16, Kubernetes distributions 10.42–10.44, 10.96 and 10.244,
// libvirt 192.168.122.0/24, and home and office networks favour 10.0.x,
// 10.1.x, 10.10.x and 192.168.x. Hosts where it clashes set Config.Subnet.
var DefaultSubnet = netip.MustParsePrefix("10.209.0.0/16")

// Config describes one bridge network. Zero fields take the defaults above.
type Config struct {
	// BridgeName is the Linux bridge's name (at most 15 bytes).
	BridgeName string
	// Subnet is the IPv4 subnet of the bridge. The gateway (the bridge's own
	// address) is its first host address; tasks get the others.
	Subnet netip.Prefix
	// Subnet6, when set, makes the network dual-stack: an IPv6 prefix of
	// /64 to /120 (a ULA such as fd12:3456:789a:1::/64, or a global one
	// routed to this host). The bridge gets its first host address as the
	// IPv6 gateway, every task an address of it besides its IPv4 one, and
	// berth's nf_tables table is made in family ip6 too, with the same
	// chains as in family ip: DNAT of published ports, masquerade of
	// tasks' traffic leaving the host, hairpin masquerade.
	//
	// EnsureBridge then sets net.ipv6.conf.all.forwarding=1. A host that
	// takes its own IPv6 address and default route by SLAAC (router
	// advertisements) stops accepting them once it forwards, unless its
	// uplink has accept_ra=2 (sysctl net.ipv6.conf.UPLINK.accept_ra=2), as
	// Docker documents for its IPv6 networks; berth does not change
	// accept_ra.
	//
	// Published ports are not reachable on [::1]: the kernel cannot DNAT
	// IPv6 loopback traffic to another host (IPv6 has no route_localnet),
	// and Docker serves [::1] with a userland proxy, which berth does not
	// have. Mappings that name ::1 are refused; mappings on every address
	// leave ::1 to the host's own sockets.
	//
	// Unset, the network is IPv4 only: no ip6 table, no IPv6 sysctls.
	Subnet6 netip.Prefix
	// StateDir holds the leases (a directory, created if missing); normally
	// <state root>/network/<bridge>. Required.
	StateDir string
	// RunRoot is berth's runtime directory; network namespaces are
	// bind-mounted at RunRoot/netns/<task-id>.
	RunRoot string
	// Table is the nf_tables table (family ip, and family ip6 with the
	// same name when Subnet6 is set) holding the NAT rules of this
	// network. Tests use unique names; berth uses DefaultTable.
	Table string
	// PortRange is where mappings with HostPort 0 get their host port;
	// DefaultPortRange if zero.
	PortRange PortRange
}

// Network is one configured bridge network. Its methods are safe for
// concurrent use by several goroutines and processes.
type Network struct {
	bridge  string
	subnet  netip.Prefix
	gateway netip.Addr
	// subnet6 and gateway6 are invalid on an IPv4-only network.
	subnet6  netip.Prefix
	gateway6 netip.Addr
	runRoot  string
	table    string
	st       *store.Store

	portRange PortRange
	now       func() time.Time // the clock of lease and netns ages; tests move it
}

// Endpoint is a task's place on the network, as SetupTask made it.
type Endpoint struct {
	// NetNSPath is the bind-mounted network namespace, for libcontainer.
	NetNSPath string
	// Addr is the task's address (on eth0 inside the namespace).
	Addr netip.Addr
	// Prefix is Addr with the subnet's prefix length.
	Prefix netip.Prefix
	// Gateway is the bridge's address, the task's default route.
	Gateway netip.Addr
	// Addr6, Prefix6 and Gateway6 are the same for IPv6 on a dual-stack
	// network (Config.Subnet6); invalid otherwise.
	Addr6    netip.Addr
	Prefix6  netip.Prefix
	Gateway6 netip.Addr
	// HostVeth is the name of the host end of the veth pair.
	HostVeth string
}

// Proto is a transport protocol of a port mapping.
type Proto string

// Protocols a port mapping can use.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// PortMapping publishes a container port on the host.
type PortMapping struct {
	// HostIP restricts the mapping to one local address: IPv4 (for
	// example 127.0.0.1), or IPv6 on a dual-stack network, :: meaning
	// every local IPv6 address but ::1 (see Config.Subnet6). The zero
	// value (or 0.0.0.0) means every local address: IPv4, and IPv6 too
	// when the task has an IPv6 address.
	HostIP netip.Addr
	// HostPort is the host port; 0 asks AddPorts for a free one from
	// Config.PortRange (docker's -p 80, ECS's hostPort 0).
	HostPort uint16
	// HostPortEnd, when not 0, makes HostPort..HostPortEnd a range to
	// take the first free host port from (docker's -p 8000-8010:80).
	HostPortEnd   uint16
	ContainerPort uint16
	// Proto is TCP or UDP; empty means TCP.
	Proto Proto
}

// ErrUnsupported is returned on systems other than Linux.
var ErrUnsupported = errors.New("network: not supported on this operating system")

// New checks cfg, fills in defaults and opens the lease store. It changes
// nothing on the host.
func New(cfg Config) (*Network, error) {
	if cfg.BridgeName == "" {
		cfg.BridgeName = DefaultBridge
	}
	if err := checkIfName(cfg.BridgeName); err != nil {
		return nil, fmt.Errorf("network: bridge name: %w", err)
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = DefaultSubnet
	}
	subnet := cfg.Subnet.Masked()
	if !subnet.Addr().Is4() {
		return nil, fmt.Errorf("network: subnet %s: only IPv4 subnets are supported", cfg.Subnet)
	}
	if subnet.Bits() > 30 {
		return nil, fmt.Errorf("network: subnet %s is too small: need at most /30", cfg.Subnet)
	}
	var subnet6 netip.Prefix
	var gateway6 netip.Addr
	if cfg.Subnet6.IsValid() {
		var err error
		if subnet6, err = checkSubnet6(cfg.Subnet6); err != nil {
			return nil, err
		}
		gateway6 = subnet6.Addr().Next()
	}
	if cfg.RunRoot == "" {
		cfg.RunRoot = DefaultRunRoot
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.PortRange == (PortRange{}) {
		cfg.PortRange = DefaultPortRange
	}
	if err := cfg.PortRange.check(); err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		return nil, errors.New("network: Config.StateDir is required")
	}
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	runRoot, err := filepath.Abs(cfg.RunRoot)
	if err != nil {
		return nil, fmt.Errorf("network: run root: %w", err)
	}
	return &Network{
		bridge:   cfg.BridgeName,
		subnet:   subnet,
		gateway:  subnet.Addr().Next(),
		subnet6:  subnet6,
		gateway6: gateway6,
		runRoot:  runRoot,
		table:    cfg.Table,
		st:       st,

		portRange: cfg.PortRange,
		now:       time.Now,
	}, nil
}

// BridgeName returns the bridge's name.
func (n *Network) BridgeName() string { return n.bridge }

// Subnet returns the bridge's subnet.
func (n *Network) Subnet() netip.Prefix { return n.subnet }

// Gateway returns the bridge's address.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// Subnet6 returns the bridge's IPv6 subnet; invalid on an IPv4-only
// network.
func (n *Network) Subnet6() netip.Prefix { return n.subnet6 }

// Gateway6 returns the bridge's IPv6 address; invalid on an IPv4-only
// network.
func (n *Network) Gateway6() netip.Addr { return n.gateway6 }

// checkSubnet6 checks Config.Subnet6 and returns it masked: an IPv6 unicast
// prefix (not IPv4-mapped, link-local, loopback or multicast) of /64 to
// /120. Longer than /64 breaks SLAAC, which berth does not use; /120 still
// leaves 254 task addresses.
func checkSubnet6(p netip.Prefix) (netip.Prefix, error) {
	m := p.Masked()
	a := m.Addr()
	switch {
	case !a.Is6() || a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("network: IPv6 subnet %s: not an IPv6 prefix", p)
	case a.Zone() != "":
		return netip.Prefix{}, fmt.Errorf("network: IPv6 subnet %s: must not have a zone", p)
	case m.Bits() < 64 || m.Bits() > 120:
		return netip.Prefix{}, fmt.Errorf("network: IPv6 subnet %s: the prefix length must be 64 to 120", p)
	case !a.IsGlobalUnicast():
		// Link-local, loopback, multicast or unspecified: a ULA (fc00::/7)
		// or a global unicast prefix is needed.
		return netip.Prefix{}, fmt.Errorf("network: IPv6 subnet %s: not a unicast prefix (use a ULA, fd00::/8, or a global prefix)", p)
	}
	return m, nil
}

// NetNSPath returns where the task's network namespace is (or would be)
// bind-mounted.
func (n *Network) NetNSPath(taskID string) string {
	return filepath.Join(n.runRoot, "netns", taskID)
}

// checkIfName checks a Linux interface name.
func checkIfName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("%q: must be 1 to 15 bytes", name)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c == '/' || c == ':' || c >= 0x7f {
			return fmt.Errorf("%q: contains %q", name, c)
		}
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%q: not a valid name", name)
	}
	return nil
}

// checkTaskID checks that a task ID can name a lease file, a netns file and
// an nf_tables rule tag: 1 to 128 bytes of [A-Za-z0-9_.-], not starting with
// a dot or a dash.
func checkTaskID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("network: task ID %q: must be 1 to 128 bytes", id)
	}
	if id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("network: task ID %q: must not start with %q", id, id[0])
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return fmt.Errorf("network: task ID %q: contains %q", id, c)
		}
	}
	return nil
}
