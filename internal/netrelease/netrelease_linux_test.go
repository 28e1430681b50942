//go:build linux

package netrelease

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/network"
)

// TestRunReleases sets up a real task network (bridge, veth, netns,
// address lease, a published port) on a bridge and table of its own and
// releases it through Run, as the monitor does: the lease, the port rule,
// the netns file and (once the kernel has destroyed the namespace) the
// veth are gone. The process that made the namespace lives on, as a
// daemon would: none of its threads (the main thread in particular) may
// be left in the namespace, or the veth would stay.
func TestRunReleases(t *testing.T) {
	testrig.RequireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	sfx := hex.EncodeToString(b)
	root, runRoot := t.TempDir(), t.TempDir()
	bridge, table := "bnr"+sfx, "berth_nr_"+sfx
	cfg := Config(root, runRoot, bridge, table)
	cfg.Subnet = netip.MustParsePrefix("10.218." + strconv.Itoa(int(b[0])) + ".0/24")
	n, err := network.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Remove(); err != nil {
			t.Errorf("remove bridge: %v", err)
		}
	})
	if _, err := n.SetupTask(taskID); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddPorts(taskID, []network.PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), Proto: network.TCP, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	if pm, _ := n.PortMap(); len(pm[taskID]) != 1 {
		t.Fatalf("port map before the release: %v", pm)
	}
	handled, err := Run(Argv("/nonexistent/berth", root, runRoot, bridge, table, taskID))
	if !handled || err != nil {
		t.Fatalf("Run = %v, %v", handled, err)
	}
	if leases, err := n.Leases(); err != nil || len(leases) != 0 {
		t.Errorf("leases after the release: %v, %v", leases, err)
	}
	if pm, err := n.PortMap(); err != nil || len(pm) != 0 {
		t.Errorf("port map after the release: %v, %v", pm, err)
	}
	if _, err := os.Stat(n.NetNSPath(taskID)); !os.IsNotExist(err) {
		t.Errorf("netns file after the release: %v", err)
	}
	// The host end of the veth goes with the namespace, moments later.
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := vethsOn(t, bridge)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("veths still on %s 20 s after the release: %v", bridge, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vethsOn lists the interfaces enslaved to bridge, from sysfs.
func vethsOn(t *testing.T, bridge string) []string {
	ents, err := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
