//go:build linux

package runtime

import (
	"os"
	"testing"

	"github.com/berth-dev/berth/internal/testrig"
)

// TestWarmCgroupLock: the warm-up finds this process's cgroup.procs and
// moving the process into the cgroup it is in changes nothing.
func TestWarmCgroupLock(t *testing.T) {
	testrig.RequireRoot(t)
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	path := ownCgroupProcs()
	if path == "" {
		t.Fatalf("no cgroup.procs of this process found from %q", before)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	f.Close()
	warmCgroupLock()
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("cgroups changed:\n%s\nbecame\n%s", before, after)
	}
}
