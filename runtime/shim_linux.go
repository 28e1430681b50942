//go:build linux

package runtime

import (
	"os"
	"path/filepath"
)

// ShimName is the helper binary installed next to berth that plays the
// per-task monitor and, as the monitor's /proc/self/exe, the containers'
// libcontainer init and --init PID 1. It links only this package and its
// dependencies (no registry, AWS or CLI code), so it starts in half the
// time of the full binary and a monitor holds a third of the memory.
const ShimName = "berth-shim"

// Build identifies the build of this package; the Makefile sets it (with
// -X) to the same value in berth and berth-shim. A monitor refuses to start
// a task for a CLI of another build: the CLI-monitor contract (fds, env,
// record fields) is only promised within one build.
var Build = "dev"

// monitorBuildEnv carries the launching CLI's Build to the monitor.
const monitorBuildEnv = "BERTH_MONITOR_BUILD"

// HelperExe returns the binary to run as monitor and --init for a berth
// binary at exe: berth-shim next to it when there is one (a regular,
// executable file), else exe itself, which can play both parts too.
func HelperExe(exe string) string {
	shim := filepath.Join(filepath.Dir(exe), ShimName)
	if fi, err := os.Stat(shim); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return shim
	}
	return exe
}
