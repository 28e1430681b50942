//go:build linux

package runtime

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// Registers the cgroup device-rule manager; without it container start
	// fails with "cgroup manager is not configured to set device rules".
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter's C constructor joins namespaces before the Go runtime starts
	// threads; it needs cgo and must be linked into every binary that serves
	// as a container init.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

func init() {
	if isBerthInit() {
		os.Exit(runBerthInit(os.Args[1:]))
	}
	if IsInit() {
		// Before libcontainer takes over: its cwd is still the rootfs on
		// the host (see seccompcache_linux.go).
		seccompCacheArm()
		// Never returns: it becomes the container's process or exits.
		libcontainer.Init()
	}
}

// IsInit reports whether this process was started as a container init.
func IsInit() bool {
	return len(os.Args) > 1 && os.Args[1] == InitArg
}
