//go:build linux

package runtime

import (
	"fmt"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
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
