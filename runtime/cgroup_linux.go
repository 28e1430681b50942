//go:build linux

package runtime

import (
	"fmt"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// removeCgroupParent removes a parent cgroup (for example "berth") that
// libcontainer created for its containers and leaves behind on Destroy. It
// goes through the cgroup manager, so it works on v1, hybrid and v2 hosts.
// A parent that still holds containers is not removed and reports an error.
func removeCgroupParent(name string) error {
	m, err := manager.New(&cgroups.Cgroup{Name: name, Resources: &cgroups.Resources{}})
	if err != nil {
		return fmt.Errorf("cgroup parent %s: %w", name, err)
	}
	if err := m.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup parent %s: %w", name, err)
	}
	return nil
}

// removeCgroupParentIfEmpty removes a parent cgroup's directories that hold
// no child cgroup any more. Unlike the manager's Destroy it never recurses
// into children, so a concurrent container's cgroup is safe; a busy parent
// stays. The paths come from the cgroup manager, so v1, hybrid and v2 hosts
// are all covered.
func removeCgroupParentIfEmpty(name string) {
	m, err := manager.New(&cgroups.Cgroup{Name: name, Resources: &cgroups.Resources{}})
	if err != nil {
		return
	}
	for _, p := range m.GetPaths() {
		_ = unix.Rmdir(p) // EBUSY/ENOTEMPTY: still in use
	}
}
