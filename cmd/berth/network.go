//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/netrelease"
	"github.com/berth-dev/berth/network"
	"github.com/berth-dev/berth/runtime"
)

// Network modes of `berth run --network`, as ECS and docker name them.
const (
	netBridge    = "bridge"
	netHost      = "host"
	netNone      = "none"
	netContainer = "container:"
)

// bridgeNetwork opens berth's bridge network: berth0 on the default
// subnet, IPv4 only, unless BERTH_BRIDGE, BERTH_BRIDGE_SUBNET,
// BERTH_BRIDGE_SUBNET6 and BERTH_NFT_TABLE say otherwise (tests use them
// to stay apart from a real berth0), and berth.json's network section.
func (g *globalOptions) bridgeNetwork() (*network.Network, error) {
	hc, err := g.loadHostConfig()
	if err != nil {
		return nil, err
	}
	cfg := network.Config{
		BridgeName: envOr("BERTH_BRIDGE", network.DefaultBridge),
		RunRoot:    g.runRoot,
		Table:      os.Getenv("BERTH_NFT_TABLE"),
	}
	if hc.Network.Bridge != "" && os.Getenv("BERTH_BRIDGE") == "" {
		cfg.BridgeName = hc.Network.Bridge
	}
	subnet, from := os.Getenv("BERTH_BRIDGE_SUBNET"), "BERTH_BRIDGE_SUBNET"
	if subnet == "" {
		subnet, from = hc.Network.Subnet, "berth.json network.subnet"
	}
	if subnet != "" {
		p, err := netip.ParsePrefix(subnet)
		if err != nil {
			return nil, fmt.Errorf("invalid %s %q: %w", from, subnet, err)
		}
		cfg.Subnet = p
	}
	subnet6, from := os.Getenv("BERTH_BRIDGE_SUBNET6"), "BERTH_BRIDGE_SUBNET6"
	if subnet6 == "" {
		subnet6, from = hc.Network.Subnet6, "berth.json network.subnet6"
	}
	if subnet6 != "" {
		p, err := netip.ParsePrefix(subnet6)
		if err != nil || !p.Addr().Is6() {
			return nil, fmt.Errorf("invalid %s %q: want an IPv6 prefix such as fd12:3456:789a:1::/64", from, subnet6)
		}
		cfg.Subnet6 = p
	}
	if r := hc.Network.PortRange; r != "" {
		first, last, err := parsePortRange(r)
		if err != nil || first == last {
			return nil, fmt.Errorf("invalid berth.json network.portRange %q: want FIRST-LAST, such as 49153-60999", r)
		}
		cfg.PortRange = network.PortRange{First: first, Last: last}
	}
	cfg.StateDir = filepath.Join(g.root, "network", cfg.BridgeName)
	return network.New(cfg)
}

// parsePublish parses one -p value, docker's syntax:
//
//	[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|udp]
//
// with an IPv6 HOST_IP in brackets. A missing HOST_PORT asks for a free
// port from the dynamic range (ECS's hostPort 0); a HOST_PORT range with
// one CONTAINER_PORT asks for the first free port of the range; ranges on
// both sides map port by port and must be as long.
func parsePublish(s string) ([]network.PortMapping, error) {
	bad := func(why string) ([]network.PortMapping, error) {
		return nil, fmt.Errorf("invalid -p %q: %s (want [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp], ports or ranges such as 8000-8010)", s, why)
	}
	spec, proto, _ := strings.Cut(s, "/")
	var p network.Proto
	switch proto {
	case "", "tcp":
		p = network.TCP
	case "udp":
		p = network.UDP
	default:
		return bad("protocol must be tcp or udp")
	}
	var hostIP netip.Addr
	if rest, ok := strings.CutPrefix(spec, "["); ok {
		ip, after, ok := strings.Cut(rest, "]:")
		a, err := netip.ParseAddr(ip)
		if !ok || err != nil || !a.Is6() {
			return bad("a bracketed host IP must be an IPv6 address followed by ':'")
		}
		hostIP, spec = a, after
	}
	parts := strings.Split(spec, ":")
	var hostPart, ctrPart string
	switch len(parts) {
	case 1:
		ctrPart = parts[0]
	case 2:
		hostPart, ctrPart = parts[0], parts[1]
	case 3:
		if hostIP.IsValid() {
			return bad("too many ':'")
		}
		a, err := netip.ParseAddr(parts[0])
		if err != nil || a.Zone() != "" {
			return bad("host IP must be an IPv4 address, or an IPv6 address in brackets")
		}
		hostIP, hostPart, ctrPart = a.Unmap(), parts[1], parts[2]
	default:
		return bad("too many ':' (put an IPv6 host IP in brackets)")
	}
	cFirst, cLast, err := parsePortRange(ctrPart)
	if err != nil {
		return bad("container port: " + err.Error())
	}
	var out []network.PortMapping
	add := func(hp, hpEnd, cp uint16) {
		out = append(out, network.PortMapping{HostIP: hostIP, HostPort: hp, HostPortEnd: hpEnd, ContainerPort: cp, Proto: p})
	}
	if hostPart == "" {
		for cp := int(cFirst); cp <= int(cLast); cp++ {
			add(0, 0, uint16(cp))
		}
		return out, nil
	}
	hFirst, hLast, err := parsePortRange(hostPart)
	if err != nil {
		return bad("host port: " + err.Error())
	}
	switch {
	case cFirst == cLast && hFirst == hLast:
		add(hFirst, 0, cFirst)
	case cFirst == cLast:
		add(hFirst, hLast, cFirst)
	case hLast-hFirst != cLast-cFirst:
		return bad("host and container port ranges differ in length")
	default:
		for i := 0; i <= int(cLast-cFirst); i++ {
			add(hFirst+uint16(i), 0, cFirst+uint16(i))
		}
	}
	return out, nil
}

// parsePortRange parses PORT or FIRST-LAST (1 to 65535, FIRST <= LAST).
func parsePortRange(s string) (uint16, uint16, error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	first, err1 := strconv.ParseUint(a, 10, 16)
	last, err2 := strconv.ParseUint(b, 10, 16)
	switch {
	case err1 != nil || err2 != nil || first == 0 || last == 0:
		return 0, 0, fmt.Errorf("%q: ports are numbers from 1 to 65535", s)
	case first > last:
		return 0, 0, fmt.Errorf("%q: range ends before it starts", s)
	}
	return uint16(first), uint16(last), nil
}

// exposedMappings are -P's mappings: every port the image exposes
// ("80/tcp", "53/udp", "8000-8002/tcp"), each on a free host port.
func exposedMappings(exposed []string) ([]network.PortMapping, error) {
	var out []network.PortMapping
	for _, e := range slices.Sorted(slices.Values(exposed)) {
		pm, err := parsePublish(e)
		if err != nil {
			return nil, fmt.Errorf("the image's exposed port %q: %w", e, err)
		}
		out = append(out, pm...)
	}
	return out, nil
}

// portStrings renders resolved mappings as docker's ps does:
// 127.0.0.1:8080->80/tcp, 0.0.0.0:49153->53/udp.
func portStrings(ports []network.PortMapping) []string {
	var out []string
	for _, pm := range ports {
		out = append(out, hostSide(pm)+"->"+strconv.Itoa(int(pm.ContainerPort))+"/"+string(protoOf(pm)))
	}
	return out
}

func protoOf(pm network.PortMapping) network.Proto {
	if pm.Proto == "" {
		return network.TCP
	}
	return pm.Proto
}

// hostSide is HOST_IP:PORT, 0.0.0.0 for every address, IPv6 in brackets.
func hostSide(pm network.PortMapping) string {
	ip := netip.IPv4Unspecified()
	if pm.HostIP.IsValid() {
		ip = pm.HostIP
	}
	return netip.AddrPortFrom(ip, pm.HostPort).String()
}

// newNetworkCommand: `network ls`, `network inspect`, and the hidden
// `network release` that a task runs when it stops (runtime OnStop), so
// the runtime need not know about networks.
func newNetworkCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Show berth's networks (bridge, host, none)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var relBridge, relTable string
	release := &cobra.Command{
		Use:    "release [--bridge NAME --table NAME] TASK-ID",
		Short:  "remove a task's veth, netns, port rules and address lease",
		Hidden: true,
		Args:   exactArgs(1, "network release needs a task ID"),
		RunE: func(_ *cobra.Command, args []string) error {
			// The bridge and table the task was set up on (netrelease.Argv);
			// without them (tasks recorded by older builds) the configured ones.
			if relBridge != "" || relTable != "" {
				if relBridge == "" || relTable == "" {
					return errors.New("network release: --bridge and --table go together")
				}
				_, err := netrelease.Run(netrelease.Argv("berth", g.root, g.runRoot, relBridge, relTable, args[0]))
				return err
			}
			n, err := g.bridgeNetwork()
			if err != nil {
				return err
			}
			return n.TeardownTask(args[0])
		},
	}
	release.Flags().StringVar(&relBridge, "bridge", "", "the task's bridge")
	release.Flags().StringVar(&relTable, "table", "", "the bridge's nf_tables table")
	cmd.AddCommand(release)
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the networks a task can use",
		Args:    cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			n, err := g.bridgeNetwork()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDRIVER\tINTERFACE\tSUBNET")
			fmt.Fprintf(tw, "bridge\tbridge\t%s\t%s\n", n.BridgeName(), n.Subnet())
			fmt.Fprintln(tw, "host\thost\t-\t-")
			fmt.Fprintln(tw, "none\tnull\t-\t-")
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "inspect [bridge]",
		Short: "Show the bridge network as JSON: subnet, gateway, leases and port map",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] != netBridge {
				return fmt.Errorf("network inspect: %q has nothing to show; only the bridge network has state", args[0])
			}
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			n, err := g.bridgeNetwork()
			if err != nil {
				return err
			}
			ni, err := inspectBridge(rt, n)
			if err != nil {
				return err
			}
			return writeJSON(g.stdout, []*networkInspect{ni})
		},
	})
	return cmd
}

// networkInspect is `berth network inspect`'s JSON.
type networkInspect struct {
	Name       string `json:"name"`
	Driver     string `json:"driver"`
	Interface  string `json:"interface"`
	Subnet     string `json:"subnet"`
	Gateway    string `json:"gateway"`
	Subnet6    string `json:"subnet6,omitempty"`
	Gateway6   string `json:"gateway6,omitempty"`
	NFTable    string `json:"nftTable"`
	BridgeUp   bool   `json:"bridgeUp"`
	PortRange  string `json:"portRange"`
	Forwarding struct {
		// Blockers are other tools' forward chains with policy drop, as
		// "family table chain", with " (opened in CHAIN)" where berth put
		// its accept rules for the bridge (the chain or DOCKER-USER).
		Blockers []string `json:"blockers"`
	} `json:"forwarding"`
	Tasks []networkTask `json:"tasks"`
}

type networkTask struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Status  string `json:"status"`
	Address string `json:"address"`
	// Address6 is the task's IPv6 address on a dual-stack bridge.
	Address6 string   `json:"address6,omitempty"`
	Ports    []string `json:"ports"`
}

func inspectBridge(rt *runtime.Runtime, n *network.Network) (*networkInspect, error) {
	ni := &networkInspect{Name: netBridge, Driver: "bridge", Interface: n.BridgeName(), Subnet: n.Subnet().String(),
		Gateway: n.Gateway().String(), NFTable: n.Table(), BridgeUp: n.BridgeExists()}
	if n.Subnet6().IsValid() {
		ni.Subnet6, ni.Gateway6 = n.Subnet6().String(), n.Gateway6().String()
	}
	r := n.PortRange()
	ni.PortRange = fmt.Sprintf("%d-%d", r.First, r.Last)
	blockers, err := n.ForwardBlockers()
	if err != nil {
		return nil, err
	}
	ni.Forwarding.Blockers = append([]string{}, blockers...)
	leases, err := n.Leases()
	if err != nil {
		return nil, err
	}
	leases6, err := n.Leases6()
	if err != nil {
		return nil, err
	}
	ports, err := n.PortMap()
	if err != nil {
		return nil, err
	}
	ni.Tasks = []networkTask{}
	for id, addr := range leases {
		nt := networkTask{ID: id, Status: "no task", Address: netip.PrefixFrom(addr, n.Subnet().Bits()).String(), Ports: portStrings(ports[id])}
		if nt.Ports == nil {
			nt.Ports = []string{}
		}
		if a6, ok := leases6[id]; ok {
			nt.Address6 = netip.PrefixFrom(a6, n.Subnet6().Bits()).String()
		}
		if t, err := rt.Get(id); err == nil {
			nt.Name, nt.Status = t.Name, t.Status
		}
		ni.Tasks = append(ni.Tasks, nt)
	}
	sort.Slice(ni.Tasks, func(i, j int) bool { return ni.Tasks[i].Address < ni.Tasks[j].Address })
	return ni, nil
}

// newPortCommand is docker's `port`: a task's published ports.
func newPortCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "port TASK [CONTAINER_PORT[/PROTO]]",
		Short: "List a task's published ports, or the host side of one",
		Args:  rangeArgs(1, 2, "port needs a task and at most one container port"),
		RunE: func(_ *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			t, err := rt.Get(args[0])
			if err != nil {
				return err
			}
			var ports []network.PortMapping
			if t.Network != nil && t.Network.Mode == netBridge && t.Status != runtime.TaskStopped {
				n, err := g.bridgeNetwork()
				if err != nil {
					return err
				}
				if ports, err = n.Ports(t.ID); err != nil {
					return err
				}
			}
			sort.SliceStable(ports, func(i, j int) bool { return ports[i].ContainerPort < ports[j].ContainerPort })
			if len(args) == 1 {
				for _, pm := range ports {
					fmt.Fprintf(g.stdout, "%d/%s -> %s\n", pm.ContainerPort, protoOf(pm), hostSide(pm))
				}
				return nil
			}
			want, proto, _ := strings.Cut(args[1], "/")
			if proto == "" {
				proto = string(network.TCP)
			}
			cp, err := strconv.ParseUint(want, 10, 16)
			if err != nil || cp == 0 || (proto != "tcp" && proto != "udp") {
				return fmt.Errorf("invalid port %q: want CONTAINER_PORT[/tcp|udp]", args[1])
			}
			found := false
			for _, pm := range ports {
				if pm.ContainerPort == uint16(cp) && string(protoOf(pm)) == proto {
					fmt.Fprintln(g.stdout, hostSide(pm))
					found = true
				}
			}
			if !found {
				return fmt.Errorf("no public port '%d/%s' published for %s", cp, proto, t.Name)
			}
			return nil
		},
	}
}

// taskNetwork is what `run` set up for a task's network.
type taskNetwork struct {
	info   *runtime.NetworkInfo
	ports  []network.PortMapping // resolved host ports
	onStop [][]string
	// host: the containers stay in the host's network namespace.
	host bool
	// dns describes the files to write into the task dir; nil when the
	// task uses another task's (container: mode).
	dns *network.DNSConfig
	// sharedDNS is the other task's DNS dir in container: mode.
	sharedDNS string
}

// setupNetwork makes the task's network for `run`: the mode's namespace,
// and in bridge mode a lease, veth and published ports. What it makes is
// undone by running onStop.
func (g *globalOptions) setupNetwork(rt *runtime.Runtime, id string, f *runFlags, exposed []string) (*taskNetwork, error) {
	mode := f.network
	if mode == "" || mode == "default" {
		mode = netBridge
	}
	var ports []network.PortMapping
	for _, p := range f.publish {
		pm, err := parsePublish(p)
		if err != nil {
			return nil, err
		}
		ports = append(ports, pm...)
	}
	if f.publishAll {
		pm, err := exposedMappings(exposed)
		if err != nil {
			return nil, err
		}
		ports = append(ports, pm...)
	}
	dns, err := f.dnsConfig()
	if err != nil {
		return nil, err
	}
	tn := &taskNetwork{info: &runtime.NetworkInfo{Mode: mode}, dns: dns}
	switch {
	case mode == netBridge:
		return tn, g.setupBridge(rt, id, ports, tn)
	case mode == netHost:
		if len(f.publish) > 0 {
			g.logger.Warn("published ports are discarded in host network mode: the container uses the host's ports")
		}
		tn.host = true
		tn.dns.Mode = network.DNSHost
		return tn, nil
	case mode == netNone:
		if len(ports) > 0 {
			return nil, errors.New("conflicting options: -p/-P publish ports, but --network none has no network to publish them on")
		}
		tn.dns.Mode = network.DNSNone
		return tn, nil
	case strings.HasPrefix(mode, netContainer):
		ref := strings.TrimPrefix(mode, netContainer)
		switch {
		case ref == "":
			return nil, errors.New("invalid --network container: name the task whose network to join: container:NAME")
		case len(ports) > 0:
			return nil, errors.New("conflicting options: -p/-P and --network container: (ports belong to the task that owns the network)")
		case f.hostname != "" || len(f.dns) > 0 || len(f.dnsSearch) > 0 || len(f.dnsOptions) > 0 || len(f.addHosts) > 0:
			return nil, errors.New("conflicting options: --hostname, --dns, --dns-search, --dns-option and --add-host belong to the task that owns the network, not to a task joining it with --network container:NAME")
		}
		return tn, g.joinTaskNetwork(rt, ref, tn)
	}
	return nil, fmt.Errorf("invalid --network %q: want bridge, host, none or container:NAME", mode)
}

// joinTaskNetwork points tn at a running task's network namespace and DNS
// files (--network container:REF).
func (g *globalOptions) joinTaskNetwork(rt *runtime.Runtime, ref string, tn *taskNetwork) error {
	t, err := rt.Get(ref)
	if err != nil {
		return fmt.Errorf("--network container:%s: %w", ref, err)
	}
	if t.Status != runtime.TaskRunning {
		return fmt.Errorf("--network container:%s: task %s is %s, not running", ref, t.Name, strings.ToLower(t.Status))
	}
	tn.info.Mode = netContainer + t.ID
	tn.dns = nil
	target := t.Network
	if target == nil {
		target = &runtime.NetworkInfo{Mode: netNone}
	}
	tn.sharedDNS = target.DNSDir
	switch {
	case target.Mode == netHost:
		tn.host = true
	case target.NetNSPath != "":
		tn.info.NetNSPath = target.NetNSPath
	default: // a namespace of its own (none), held by its first container
		pid := 0
		for _, c := range t.Containers {
			if c.Status == runtime.ContainerRunning && c.Pid > 0 {
				pid = c.Pid
				break
			}
		}
		if pid == 0 {
			return fmt.Errorf("--network container:%s: task %s has no running container", ref, t.Name)
		}
		tn.info.NetNSPath = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	return nil
}

// setupBridge gives task id its place on the bridge and publishes ports.
// After a reboot (no bridge yet) or a firewall reload that flushed the
// ruleset (no table), the first use rebuilds the network's state from the
// recorded tasks first (network.Reconcile).
func (g *globalOptions) setupBridge(rt *runtime.Runtime, id string, ports []network.PortMapping, tn *taskNetwork) error {
	n, err := g.bridgeNetwork()
	if err != nil {
		return err
	}
	if !n.BridgeExists() || !n.TableExists() {
		if _, err := g.reconcileBridge(rt, n); err != nil {
			return err
		}
	} else if err := n.EnsureBridge(); err != nil {
		return err
	}
	ep, err := n.SetupTask(id)
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		if ports, err = n.AddPorts(id, ports); err != nil {
			n.TeardownTask(id)
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		n.TeardownTask(id)
		return err
	}
	tn.ports = ports
	tn.onStop = [][]string{netrelease.Argv(exe, g.root, g.runRoot, n.BridgeName(), n.Table(), id)}
	tn.info.NetNSPath = ep.NetNSPath
	tn.info.Bridge = n.BridgeName()
	tn.info.IPAddress = ep.Prefix.String()
	tn.info.Gateway = ep.Gateway.String()
	tn.dns.Mode = network.DNSBridge
	tn.dns.Addrs = []netip.Addr{ep.Addr}
	tn.dns.Gateway = ep.Gateway
	if ep.Addr6.IsValid() {
		tn.info.IPv6Address = ep.Prefix6.String()
		tn.info.IPv6Gateway = ep.Gateway6.String()
		tn.dns.Addrs = append(tn.dns.Addrs, ep.Addr6)
	}
	return nil
}

// reconcileBridge makes the bridge network match the recorded tasks:
// rules of running tasks rebuilt, leftovers of dead ones removed.
func (g *globalOptions) reconcileBridge(rt *runtime.Runtime, n *network.Network) (*network.ReconcileReport, error) {
	tasks, err := rt.List()
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, t := range tasks {
		if t.Status != runtime.TaskStopped {
			live[t.ID] = true
		}
	}
	return n.Reconcile(func(id string) bool { return live[id] })
}

// dnsMounts writes the task's DNS files (or takes the joined task's) and
// returns their bind mounts.
func (tn *taskNetwork) dnsMounts(rt *runtime.Runtime, id, hostname, name string) ([]specs.Mount, []string, error) {
	dir := tn.sharedDNS
	var warnings []string
	if tn.dns != nil {
		dir = filepath.Join(rt.TaskDir(id), "net")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, err
		}
		tn.dns.Hostname, tn.dns.Name = hostname, name
		files, err := network.WriteDNSFiles(dir, *tn.dns)
		if err != nil {
			return nil, nil, err
		}
		warnings = files.Warnings
	}
	if dir == "" {
		return nil, warnings, nil
	}
	tn.info.DNSDir = dir
	var mounts []specs.Mount
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		src := filepath.Join(dir, f)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		mounts = append(mounts, specs.Mount{Destination: "/etc/" + f, Type: "bind", Source: src, Options: []string{"rbind", "rprivate"}})
	}
	return mounts, warnings, nil
}

// dnsConfig builds the DNS files' settings from --dns, --dns-search,
// --dns-option and --add-host.
func (f *runFlags) dnsConfig() (*network.DNSConfig, error) {
	c := &network.DNSConfig{}
	for _, s := range f.dnsSearch {
		d, err := network.ParseSearchDomain(s)
		if err != nil {
			return nil, err
		}
		c.Search = append(c.Search, d)
	}
	for _, s := range f.dnsOptions {
		o, err := network.ParseDNSOption(s)
		if err != nil {
			return nil, err
		}
		c.Options = append(c.Options, o)
	}
	for _, s := range f.dns {
		a, err := network.ParseNameserver(s)
		if err != nil {
			return nil, err
		}
		c.Nameservers = append(c.Nameservers, a)
	}
	for _, s := range f.addHosts {
		h, err := network.ParseAddHost(s)
		if err != nil {
			return nil, err
		}
		c.ExtraHosts = append(c.ExtraHosts, h)
	}
	return c, nil
}

// cleanupNetworks is system cleanup's network pass: network.Reconcile,
// unless the bridge network was never used (no bridge, no lease, no netns
// file), so that cleanup does not create a bridge nobody asked for.
func (g *globalOptions) cleanupNetworks(rt *runtime.Runtime) (*network.ReconcileReport, error) {
	n, err := g.bridgeNetwork()
	if err != nil {
		return nil, err
	}
	if !n.BridgeExists() {
		leases, err := n.Leases()
		if err != nil {
			return nil, err
		}
		netns, _ := os.ReadDir(filepath.Join(g.runRoot, "netns"))
		if len(leases) == 0 && len(netns) == 0 {
			return &network.ReconcileReport{}, nil
		}
	}
	return g.reconcileBridge(rt, n)
}
