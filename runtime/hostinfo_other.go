//go:build !linux

package runtime

// HostInfo describes what the host and this build offer to containers.
type HostInfo struct {
	CgroupMode        string `json:"cgroupMode"`
	Seccomp           bool   `json:"seccomp"`
	SeccompLibVersion string `json:"seccompLibVersion,omitempty"`
}

// Host reports an unsupported host: berth runs containers on Linux only.
func Host() HostInfo { return HostInfo{CgroupMode: "unsupported"} }

// IsInit is always false off Linux.
func IsInit() bool { return false }
