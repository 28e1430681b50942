//go:build linux && !(cgo && seccomp)

package runtime

import specs "github.com/opencontainers/runtime-spec/specs-go"

// Without libseccomp linked in (see seccompcache_linux.go) there is no BPF
// export to cache: these do nothing. Other systems need no stubs: Runtime
// and the init exist on Linux only.

func seccompCacheArm() {}

func (r *Runtime) seccompCacheBefore(ctrDir string, spec *specs.Spec) {}

func (r *Runtime) seccompCacheAfter(ctrDir string) {}
