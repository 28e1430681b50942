package spec

import (
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// host holds the facts about the machine and berth's own process that a spec
// depends on. Generate probes them once; tests build their own.
type host struct {
	// caps are the capabilities berth holds (its effective set, "CAP_..."),
	// in kernel order: --privileged and --cap-add ALL grant these.
	caps []string
	// rlimit returns the hard limit berth runs under for an rlimit name
	// ("nofile"); nil or !ok skips the check.
	rlimit func(name string) (hard uint64, ok bool)
	// devices lists the host's devices for --privileged.
	devices func() ([]specs.LinuxDevice, error)
	// maskedExtra are host-dependent paths to mask besides docker's fixed
	// list (per-CPU thermal_throttle directories).
	maskedExtra []string
	// numCPU bounds --cpus; 0 skips the check.
	numCPU int
	// seccompDefault and seccompLoad turn docker's default profile or a
	// JSON profile into the spec's seccomp section for s's capabilities.
	seccompDefault func(s *specs.Spec) (*specs.LinuxSeccomp, error)
	seccompLoad    func(body string, s *specs.Spec) (*specs.LinuxSeccomp, error)
}

func (h *host) hasCap(c string) bool { return slices.Contains(h.caps, c) }

var currentHost = sync.OnceValues(probeHost)
