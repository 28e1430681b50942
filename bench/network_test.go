//go:build linux

package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-dev/berth/network"
)

// What the benchmarks put on the host for bridge networking, each with a
// name and subnet of its own so that nothing touches a real berth0, a
// podman0 or another run's networks: berth's bridge and nf_tables table
// (through BERTH_BRIDGE, BERTH_BRIDGE_SUBNET and BERTH_NFT_TABLE), and a
// podman bridge network in podman's own --network-config-dir (netavark
// makes its bridge and iptables rules). Each remove undoes it, and is
// called only after every container on that network is gone.

// berthNet is berth's bridge network for one benchmark run.
type berthNet struct {
	bridge, table string
	subnet        netip.Prefix
	root, runRoot string // berth's --root and --run-root
}

// newBerthNet picks a bridge name, a /24 no host route overlaps and an
// nf_tables table, and sets the environment that points berth at them for
// the rest of the test (berth's monitors inherit it, and run the network
// release with it).
func newBerthNet(t *testing.T, root, runRoot string) *berthNet {
	suffix := randHex(3)
	bn := &berthNet{bridge: "bb" + suffix, table: "berth_b_" + suffix, subnet: freeSubnet(t, 215), root: root, runRoot: runRoot}
	t.Setenv("BERTH_BRIDGE", bn.bridge)
	t.Setenv("BERTH_BRIDGE_SUBNET", bn.subnet.String())
	t.Setenv("BERTH_NFT_TABLE", bn.table)
	return bn
}

func (bn *berthNet) String() string {
	return fmt.Sprintf("bridge %s, %s, nf_tables table ip %s", bn.bridge, bn.subnet, bn.table)
}

// remove deletes the bridge and the table with berth's own network code,
// then checks that both are gone.
func (bn *berthNet) remove() error {
	var errs []error
	n, err := network.New(network.Config{BridgeName: bn.bridge, Subnet: bn.subnet, Table: bn.table,
		StateDir: filepath.Join(bn.root, "network", bn.bridge), RunRoot: bn.runRoot})
	if err == nil {
		err = n.Remove()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("berth network %s: %w", bn.bridge, err))
	}
	if _, err := netlink.LinkByName(bn.bridge); err == nil {
		errs = append(errs, fmt.Errorf("bridge %s still there", bn.bridge))
	}
	if exec.Command("nft", "list", "table", "ip", bn.table).Run() == nil {
		errs = append(errs, fmt.Errorf("nf_tables table ip %s still there", bn.table))
	}
	return errors.Join(errs...)
}

// leaseAddr reads the address berth leased to a task:
// ROOT/network/BRIDGE/leases/ID, JSON with "addr".
func (bn *berthNet) leaseAddr(id string) (netip.Addr, error) {
	b, err := os.ReadFile(filepath.Join(bn.root, "network", bn.bridge, "leases", id))
	if err != nil {
		return netip.Addr{}, err
	}
	var l struct {
		Addr netip.Addr `json:"addr"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return netip.Addr{}, fmt.Errorf("lease of %s: %w", id, err)
	}
	return l.Addr, nil
}

// taskAddr is the task's address on the bridge: from `berth inspect`
// (network.ipAddress) when it shows one, else from the lease file. Either
// way it must lie in the benchmark's own subnet. from says which.
func (bn *berthNet) taskAddr(inspectJSON, id string) (a netip.Addr, from string, err error) {
	var tasks []struct {
		Network *struct {
			IPAddress string `json:"ipAddress"`
		} `json:"network"`
	}
	from = "berth inspect"
	if json.Unmarshal([]byte(inspectJSON), &tasks) == nil && len(tasks) == 1 && tasks[0].Network != nil {
		s := tasks[0].Network.IPAddress
		if p, err := netip.ParsePrefix(s); err == nil {
			a = p.Addr()
		} else if ip, err := netip.ParseAddr(s); err == nil {
			a = ip
		}
	}
	if !a.IsValid() {
		from = "its lease file"
		if a, err = bn.leaseAddr(id); err != nil {
			return a, from, fmt.Errorf("task %s: no address in berth inspect, and the lease: %w", id, err)
		}
	}
	if !bn.subnet.Contains(a) {
		return a, from, fmt.Errorf("task %s: address %s (from %s) outside the benchmark's subnet %s", id, a, from, bn.subnet)
	}
	return a, from, nil
}

// podmanNet is a podman bridge network written into podman's own
// --network-config-dir: netavark, podman's default network backend, with
// a bridge name and subnet of its own instead of podman0's 10.88.0.0/16
// (shared with any other podman on the host).
type podmanNet struct {
	name, bridge string
	subnet       netip.Prefix
	// netavarkBefore: netavark's iptables chains existed before the
	// benchmark, so someone else's podman may use them: leave them.
	netavarkBefore bool
	// tablesBefore lists the iptables tables (ip nat, ip filter) that
	// existed before; netavark creates those missing.
	tablesBefore map[string]bool
}

// newPodmanNet writes the network's definition into configDir, as
// `podman network create` would (podman 4.3 cannot name the bridge).
func newPodmanNet(t *testing.T, configDir string) *podmanNet {
	suffix := randHex(3)
	pn := &podmanNet{name: "berth-bench-" + suffix, bridge: "pb" + suffix, subnet: freeSubnet(t, 216), tablesBefore: map[string]bool{}}
	out, _ := exec.Command("iptables-save").Output()
	pn.netavarkBefore = strings.Contains(string(out), "NETAVARK")
	for _, tb := range []string{"nat", "filter"} {
		pn.tablesBefore[tb] = exec.Command("nft", "list", "table", "ip", tb).Run() == nil
	}
	def := map[string]any{
		"name":              pn.name,
		"id":                randHex(32),
		"driver":            "bridge",
		"network_interface": pn.bridge,
		"created":           time.Now().UTC().Format(time.RFC3339Nano),
		"subnets":           []map[string]string{{"subnet": pn.subnet.String(), "gateway": pn.subnet.Addr().Next().String()}},
		"ipv6_enabled":      false,
		"internal":          false,
		"dns_enabled":       false,
		"ipam_options":      map[string]string{"driver": "host-local"},
	}
	b, err := json.MarshalIndent(def, "", "  ")
	if err == nil {
		if err = os.MkdirAll(configDir, 0o755); err == nil {
			err = os.WriteFile(filepath.Join(configDir, pn.name+".json"), b, 0o644)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return pn
}

func (pn *podmanNet) String() string {
	return fmt.Sprintf("network %s: bridge %s, %s (netavark)", pn.name, pn.bridge, pn.subnet)
}

// remove deletes the bridge if netavark left it, and the iptables chains
// and tables netavark created if none of its chains existed before.
// Call it once every container on the network is gone.
func (pn *podmanNet) remove() error {
	var errs []error
	if l, err := netlink.LinkByName(pn.bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete podman's bridge %s: %w", pn.bridge, err))
		}
	}
	if pn.netavarkBefore {
		return errors.Join(errs...)
	}
	// With every container of every netavark network gone, netavark's
	// forward chain is empty and no port has a DNAT chain: if either has
	// something, another podman uses them now.
	out, _ := exec.Command("iptables-save").Output()
	if strings.Contains(string(out), "-A NETAVARK_FORWARD ") || strings.Contains(string(out), ":NETAVARK-DN-") {
		fmt.Println("podman  netavark's iptables chains now hold other containers' rules: left alone")
		return errors.Join(errs...)
	}
	for _, tb := range []string{"nat", "filter"} {
		if err := deleteNetavarkChains(tb); err != nil {
			errs = append(errs, err)
			continue
		}
		if pn.tablesBefore[tb] || exec.Command("nft", "list", "table", "ip", tb).Run() != nil {
			continue
		}
		// netavark created the table: delete it if nothing else is in it.
		rules, err := exec.Command("iptables", "-t", tb, "-S").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("iptables -t %s -S: %w", tb, err))
			continue
		}
		empty := true
		for _, l := range strings.Split(strings.TrimSpace(string(rules)), "\n") {
			if !strings.HasPrefix(l, "-P ") || !strings.HasSuffix(l, " ACCEPT") {
				empty = false
			}
		}
		if empty {
			if out, err := exec.Command("nft", "delete", "table", "ip", tb).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("nft delete table ip %s: %v: %s", tb, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// deleteNetavarkChains deletes, in iptables table tb, every rule that jumps
// to a NETAVARK chain and then those chains.
func deleteNetavarkChains(tb string) error {
	out, err := exec.Command("iptables", "-t", tb, "-S").Output()
	if err != nil {
		return nil // no such table
	}
	var chains []string
	ruleNo := map[string]int{} // rules seen per chain so far
	type del struct {
		chain string
		n     int
	}
	var dels []del
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "-N":
			if strings.HasPrefix(f[1], "NETAVARK") {
				chains = append(chains, f[1])
			}
		case "-A":
			ruleNo[f[1]]++
			if !strings.HasPrefix(f[1], "NETAVARK") && slices.ContainsFunc(f, func(s string) bool { return strings.HasPrefix(s, "NETAVARK") }) {
				dels = append(dels, del{f[1], ruleNo[f[1]]})
			}
		}
	}
	var errs []error
	for _, d := range slices.Backward(dels) { // last first: numbers stay valid
		if out, err := exec.Command("iptables", "-t", tb, "-D", d.chain, strconv.Itoa(d.n)).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables -t %s -D %s %d: %v: %s", tb, d.chain, d.n, err, out))
		}
	}
	for _, c := range chains {
		_ = exec.Command("iptables", "-t", tb, "-F", c).Run()
	}
	for _, c := range chains {
		if out, err := exec.Command("iptables", "-t", tb, "-X", c).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables -t %s -X %s: %v: %s", tb, c, err, out))
		}
	}
	return errors.Join(errs...)
}

// freeSubnet picks 10.SECOND.X.0/24 that no host route or address
// overlaps.
func freeSubnet(t *testing.T, second int) netip.Prefix {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := net.InterfaceAddrs()
	for range 50 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(second), byte(1 + mrand.IntN(250)), 0}), 24)
		taken := false
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			if q, ok := netipPrefix(r.Dst); ok && q.Bits() > 0 && q.Overlaps(p) { // not the default route
				taken = true
			}
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if q, ok := netipPrefix(n); ok && q.Overlaps(p) {
					taken = true
				}
			}
		}
		if !taken {
			return p
		}
	}
	t.Fatalf("no free /24 in 10.%d.0.0/16", second)
	return netip.Prefix{}
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dockerEngine returns why docker cannot be benchmarked here, or "" when
// its client reaches a running engine.
func dockerEngine() string {
	if _, err := exec.LookPath("docker"); err != nil {
		return "no docker client on PATH"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput()
	if err == nil {
		return ""
	}
	why := err.Error()
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); strings.Contains(l, "Cannot connect") || strings.HasPrefix(l, "ERROR") || strings.HasPrefix(l, "error") {
			why = l
		}
	}
	return "no engine: " + why
}

// dockerBench is docker with the benchmark's image loaded; its containers
// carry a label naming this run, by which cleanup finds them.
type dockerBench struct {
	t     *testing.T
	out   string
	ref   string
	label string
}

func setupDocker(t *testing.T, dir, archive, ref string) *dockerBench {
	db := &dockerBench{t: t, out: filepath.Join(dir, "docker.out"), ref: ref, label: fmt.Sprintf("dev.berth.bench=%d-%s", os.Getpid(), randHex(3))}
	t.Cleanup(db.removeAll)
	if _, err := runOut([]string{"docker", "load", "-q", "-i", archive}, db.out); err != nil {
		t.Fatal(err)
	}
	return db
}

func (db *dockerBench) cmd(args ...string) []string { return append([]string{"docker"}, args...) }

// removeAll removes the run's containers and the image it loaded.
func (db *dockerBench) removeAll() {
	ids, err := runOut(db.cmd("ps", "-aq", "--filter", "label="+db.label), db.out)
	if err == nil && ids != "" {
		if _, err := runOut(db.cmd(append([]string{"rm", "-f"}, strings.Fields(ids)...)...), db.out); err != nil {
			db.t.Errorf("cleanup: %v", err)
		}
	}
	_, _ = runOut(db.cmd("rmi", db.ref), db.out)
}

func (db *dockerBench) starter() *starter {
	return &starter{
		name:    "docker",
		bridged: true, // docker's default network
		args:    func(int) []string { return db.cmd("run", "--rm", "--label", db.label, db.ref, "/bin/true") },
		check: func() error {
			return checkExit(db.cmd("run", "--rm", "--label", db.label, db.ref, "sh", "-c", "exit 3"), db.out, 3)
		},
		out: db.out,
	}
}
