//go:build linux

package runtime

import (
	"fmt"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/seccomp"
)

// Cgroup modes reported by Host.
const (
	CgroupV2     = "v2"     // unified hierarchy only
	CgroupHybrid = "hybrid" // v1 controllers plus an empty cgroup2 mount
	CgroupV1     = "v1"     // legacy hierarchies only
)

// HostInfo describes what the host and this build offer to containers.
type HostInfo struct {
	// CgroupMode is CgroupV2, CgroupHybrid or CgroupV1.
	CgroupMode string `json:"cgroupMode"`
	// Seccomp is true when seccomp support was compiled in (cgo, the
	// "seccomp" build tag and libseccomp).
	Seccomp bool `json:"seccomp"`
	// SeccompLibVersion is libseccomp's version, empty without seccomp.
	SeccompLibVersion string `json:"seccompLibVersion,omitempty"`
}

// Host inspects the running host.
func Host() HostInfo {
	h := HostInfo{CgroupMode: CgroupV1, Seccomp: seccomp.Enabled}
	switch {
	case cgroups.IsCgroup2UnifiedMode():
		h.CgroupMode = CgroupV2
	case cgroups.IsCgroup2HybridMode():
		h.CgroupMode = CgroupHybrid
	}
	if h.Seccomp {
		major, minor, micro := seccomp.Version()
		h.SeccompLibVersion = fmt.Sprintf("%d.%d.%d", major, minor, micro)
	}
	return h
}
