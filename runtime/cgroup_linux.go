//go:build linux

package runtime

import (
	"os"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// removeCgroupParentIfEmpty removes a parent cgroup's directories that hold
// no child cgroup any more. Unlike the manager's Destroy it never recurses
// into children, so a concurrent container's cgroup is safe; a busy parent
// stays. The paths come from the cgroup manager, so v1, hybrid and v2 hosts
// are all covered.
func removeCgroupParentIfEmpty(name string) {
	defer lockCgroupParent(unix.LOCK_EX)()
	m, err := manager.New(&cgroups.Cgroup{Name: name, Resources: &cgroups.Resources{}})
	if err != nil {
		return
	}
	for _, p := range m.GetPaths() {
		_ = unix.Rmdir(p) // EBUSY/ENOTEMPTY: still in use
	}
}

// cgroupLockPath is flocked to keep removing the shared cgroup parent apart
// from creating containers' cgroups in it: libcontainer makes
// "<parent>/<id>" with MkdirAll, which fails (ENOENT) when another process
// removes the just-made, still empty parent between its two mkdirs.
// Starts share the lock, removing the parent takes it exclusively. It is
// the cgroup mount itself: host-wide, as the parent is, so berth processes
// with different state roots agree, and nothing is left on disk.
const cgroupLockPath = "/sys/fs/cgroup"

// lockCgroupParent flocks cgroupLockPath (unix.LOCK_SH or unix.LOCK_EX)
// and returns the unlock. Without the lock it returns a no-op: it only
// narrows a rare race.
func lockCgroupParent(how int) (unlock func()) {
	f, err := os.Open(cgroupLockPath)
	if err != nil {
		return func() {}
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return func() {}
	}
	return func() { f.Close() }
}
