// Package runtime turns OCI bundles into running containers with runc's
// libcontainer: spec generation, container lifecycle, the per-task monitor,
// logs, stats and exec. It knows nothing of registries or services: it takes
// rootfs layer paths and an image config as plain values.
//
// Only this package imports libcontainer and the cgroup libraries, so their
// API churn stays behind one boundary.
//
// Importing this package makes the binary able to serve as libcontainer's
// container init: when a process starts as `<binary> init` (libcontainer
// re-executes the running binary that way), the package's init function hands
// control to libcontainer before main runs.
package runtime

// InitArg is the first argument with which libcontainer re-executes the
// binary as a container's init process.
const InitArg = "init"
