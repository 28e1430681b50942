//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/network"
	"github.com/berth-dev/berth/runtime"
)

// bridgeNetwork opens berth's bridge network: berth0 on the default
// subnet, unless BERTH_BRIDGE, BERTH_BRIDGE_SUBNET and BERTH_NFT_TABLE
// say otherwise (tests use them to stay apart from a real berth0).
func (g *globalOptions) bridgeNetwork() (*network.Network, error) {
	cfg := network.Config{
		BridgeName: envOr("BERTH_BRIDGE", network.DefaultBridge),
		RunRoot:    g.runRoot,
		Table:      os.Getenv("BERTH_NFT_TABLE"),
	}
	if s := os.Getenv("BERTH_BRIDGE_SUBNET"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid BERTH_BRIDGE_SUBNET %q: %w", s, err)
		}
		cfg.Subnet = p
	}
	cfg.StateDir = filepath.Join(g.root, "network", cfg.BridgeName)
	return network.New(cfg)
}

// parsePublish parses -p [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp].
func parsePublish(s string) (network.PortMapping, error) {
	bad := func(why string) (network.PortMapping, error) {
		return network.PortMapping{}, fmt.Errorf("invalid -p %q: %s (want [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp])", s, why)
	}
	spec, proto, _ := strings.Cut(s, "/")
	pm := network.PortMapping{Proto: network.TCP}
	switch proto {
	case "", "tcp":
	case "udp":
		pm.Proto = network.UDP
	default:
		return bad("protocol must be tcp or udp")
	}
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 2:
	case 3:
		ip, err := netip.ParseAddr(parts[0])
		if err != nil || !ip.Is4() {
			return bad("host IP must be an IPv4 address")
		}
		pm.HostIP = ip
		parts = parts[1:]
	default:
		return bad("dynamic ports and ranges are not supported yet")
	}
	hp, err1 := strconv.ParseUint(parts[0], 10, 16)
	cp, err2 := strconv.ParseUint(parts[1], 10, 16)
	if err1 != nil || err2 != nil || hp == 0 || cp == 0 {
		return bad("ports must be numbers from 1 to 65535")
	}
	pm.HostPort, pm.ContainerPort = uint16(hp), uint16(cp)
	return pm, nil
}

// newNetworkCommand holds the hidden `network release` that a task runs when
// it stops (runtime OnStop), so the runtime need not know about networks.
func newNetworkCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "network",
		Short:  "task networks (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "release TASK-ID",
		Short: "remove a task's veth, netns, port rules and address lease",
		Args:  exactArgs(1, "network release needs a task ID"),
		RunE: func(_ *cobra.Command, args []string) error {
			n, err := g.bridgeNetwork()
			if err != nil {
				return err
			}
			return n.TeardownTask(args[0])
		},
	})
	return cmd
}

// setupBridge gives task id its place on the bridge and publishes ports;
// it returns the netns path and the OnStop command that undoes it all.
func (g *globalOptions) setupBridge(id string, publish []string) (string, []string, error) {
	var ports []network.PortMapping
	for _, p := range publish {
		pm, err := parsePublish(p)
		if err != nil {
			return "", nil, err
		}
		ports = append(ports, pm)
	}
	n, err := g.bridgeNetwork()
	if err != nil {
		return "", nil, err
	}
	if err := n.EnsureBridge(); err != nil {
		return "", nil, err
	}
	ep, err := n.SetupTask(id)
	if err != nil {
		return "", nil, err
	}
	if len(ports) > 0 {
		if err := n.AddPorts(id, ports); err != nil {
			n.TeardownTask(id)
			return "", nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		n.TeardownTask(id)
		return "", nil, err
	}
	release := []string{exe, "--root", g.root, "--run-root", g.runRoot, "network", "release", id}
	return ep.NetNSPath, release, nil
}

// cleanupNetworks releases the bridge networks of tasks that no longer run:
// a CLI killed between setting up a task's network and recording the task,
// or a stop whose release command did not run. A network younger than a
// minute (by its lease) without a task may belong to a `run` in progress and is left.
func (g *globalOptions) cleanupNetworks(rt *runtime.Runtime) (int, error) {
	n, err := g.bridgeNetwork()
	if err != nil {
		return 0, err
	}
	leases, err := n.Leases()
	if err != nil {
		return 0, err
	}
	ids := map[string]bool{}
	for id := range leases {
		ids[id] = true
	}
	if ents, err := os.ReadDir(filepath.Join(g.runRoot, "netns")); err == nil {
		for _, e := range ents {
			ids[e.Name()] = true
		}
	}
	released := 0
	var errs []error
	for id := range ids {
		if t, err := rt.Get(id); err == nil && t.Status != runtime.TaskStopped {
			continue
		} else if err != nil {
			if age, ok := n.LeaseAge(id); ok && age < time.Minute {
				continue // perhaps a `berth run` between network setup and task creation
			}
		}
		if err := n.TeardownTask(id); err != nil {
			errs = append(errs, fmt.Errorf("release network of task %s: %w", id, err))
			continue
		}
		released++
	}
	return released, errors.Join(errs...)
}
