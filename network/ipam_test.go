package network

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

func newTestNetwork(t *testing.T, subnet string) *Network {
	t.Helper()
	cfg := Config{StateDir: t.TempDir(), RunRoot: t.TempDir()}
	if subnet != "" {
		cfg.Subnet = netip.MustParsePrefix(subnet)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewDefaultsAndChecks(t *testing.T) {
	n := newTestNetwork(t, "")
	if n.BridgeName() != DefaultBridge || n.Subnet() != DefaultSubnet || n.Gateway() != netip.MustParseAddr("10.209.0.1") || n.table != DefaultTable {
		t.Fatalf("defaults: bridge %q subnet %s gateway %s table %q", n.BridgeName(), n.Subnet(), n.Gateway(), n.table)
	}
	bad := []Config{
		{StateDir: t.TempDir(), Subnet: netip.MustParsePrefix("fd00::/64")},
		{StateDir: t.TempDir(), Subnet: netip.MustParsePrefix("10.0.0.0/31")},
		{StateDir: t.TempDir(), BridgeName: "a-name-longer-than-15"},
		{StateDir: t.TempDir(), BridgeName: "bad/name"},
		{},
	}
	for _, cfg := range bad {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	// A subnet given with host bits is masked.
	m, err := New(Config{StateDir: t.TempDir(), Subnet: netip.MustParsePrefix("192.168.77.9/24")})
	if err != nil || m.Subnet().String() != "192.168.77.0/24" || m.Gateway().String() != "192.168.77.1" {
		t.Fatalf("masked subnet: %v %v %v", m.Subnet(), m.Gateway(), err)
	}
}

func TestCheckTaskID(t *testing.T) {
	for id, ok := range map[string]bool{
		"abc": true, "a1_b.c-d": true, "0123456789abcdef": true,
		"": false, ".hidden": false, "-x": false, "a/b": false, "a b": false, "..": false,
		string(make([]byte, 129)): false,
	} {
		if err := checkTaskID(id); (err == nil) != ok {
			t.Errorf("checkTaskID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func TestAllocate(t *testing.T) {
	tests := []struct {
		name   string
		subnet string
		steps  []string // "+id" allocate, "-id" release
		want   []string // address per "+" step, "" for ErrExhausted
	}{
		{"sequential", "10.1.2.0/24", []string{"+a", "+b", "+c"}, []string{"10.1.2.2", "10.1.2.3", "10.1.2.4"}},
		{"same task same address", "10.1.2.0/24", []string{"+a", "+b", "+a", "+b"}, []string{"10.1.2.2", "10.1.2.3", "10.1.2.2", "10.1.2.3"}},
		{"released address not reused at once", "10.1.2.0/24", []string{"+a", "+b", "-a", "+c", "+a"}, []string{"10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5"}},
		// /30: network .0, gateway .1, broadcast .3: one address.
		{"exhausted", "10.1.2.0/30", []string{"+a", "+b", "-a", "+b"}, []string{"10.1.2.2", "", "10.1.2.2"}},
		// /29: hosts .2-.6; next fit wraps around to the freed .2.
		{"wraps around", "10.1.2.0/29", []string{"+a", "+b", "+c", "+d", "+e", "-a", "+f"}, []string{"10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6", "10.1.2.2"}},
		{"skips broadcast", "10.1.2.0/29", []string{"+a", "+b", "+c", "+d", "+e", "+f"}, []string{"10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNetwork(t, tt.subnet)
			i := 0
			for _, s := range tt.steps {
				id := s[1:]
				if s[0] == '-' {
					if err := n.Release(id); err != nil {
						t.Fatal(err)
					}
					continue
				}
				a, err := n.Allocate(id)
				want := tt.want[i]
				i++
				if want == "" {
					if !errors.Is(err, ErrExhausted) {
						t.Fatalf("step %s: got %v, %v; want ErrExhausted", s, a, err)
					}
					continue
				}
				if err != nil || a.String() != want {
					t.Fatalf("step %s: got %v, %v; want %s", s, a, err, want)
				}
			}
		})
	}
}

// TestAllocatePersists: a new Network on the same state dir (another berth
// process, or berth after a restart) sees the leases.
func TestAllocatePersists(t *testing.T) {
	dir := t.TempDir()
	n1, _ := New(Config{StateDir: dir, Subnet: netip.MustParsePrefix("10.5.0.0/24")})
	a1, err := n1.Allocate("t1")
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := New(Config{StateDir: dir, Subnet: netip.MustParsePrefix("10.5.0.0/24")})
	if a, err := n2.Allocate("t1"); err != nil || a != a1 {
		t.Fatalf("after reopen t1 got %v, %v; want %v", a, err, a1)
	}
	if a, err := n2.Allocate("t2"); err != nil || a == a1 {
		t.Fatalf("t2 got %v, %v", a, err)
	}
}

func TestReleaseAndReclaim(t *testing.T) {
	n := newTestNetwork(t, "10.6.0.0/24")
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, err := n.Allocate(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Release("b"); err != nil {
		t.Fatal(err)
	}
	if err := n.Release("b"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := n.Release("never"); err != nil {
		t.Fatalf("release of unknown task: %v", err)
	}
	dropped, err := n.Reclaim(func(id string) bool { return id == "a" })
	if err != nil || fmt.Sprint(dropped) != "[c d]" {
		t.Fatalf("Reclaim dropped %v, %v; want [c d]", dropped, err)
	}
	leases, err := n.Leases()
	if err != nil || len(leases) != 1 || leases["a"].String() != "10.6.0.2" {
		t.Fatalf("leases after reclaim: %v, %v", leases, err)
	}
	if _, err := n.Allocate("bad/id"); err == nil {
		t.Fatal("Allocate accepted a task ID with a slash")
	}
}

// TestAllocateConcurrent: many goroutines, each with its own Network on the
// same state dir (as separate processes would be), allocate at once; every
// task gets a distinct address and asking again returns the same one.
func TestAllocateConcurrent(t *testing.T) {
	dir := t.TempDir()
	const workers, perWorker = 16, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]netip.Addr{}
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			n, err := New(Config{StateDir: dir, Subnet: netip.MustParsePrefix("10.7.0.0/24")})
			if err != nil {
				errs <- err
				return
			}
			for i := range perWorker {
				id := fmt.Sprintf("w%d-t%d", w, i)
				a, err := n.Allocate(id)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got[id] = a
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for id, a := range got {
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both got %s", id, other, a)
		}
		seen[a] = id
	}
	if len(seen) != workers*perWorker {
		t.Fatalf("%d addresses for %d tasks", len(seen), workers*perWorker)
	}
	n2, _ := New(Config{StateDir: dir, Subnet: netip.MustParsePrefix("10.7.0.0/24")})
	leases, err := n2.Leases()
	if err != nil || len(leases) != workers*perWorker {
		t.Fatalf("leases: %d, %v", len(leases), err)
	}
	for id, a := range got {
		if leases[id] != a {
			t.Fatalf("lease of %s is %v, allocated %v", id, leases[id], a)
		}
	}
}
