package spec

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SeccompUnconfined is the --security-opt seccomp= value that turns seccomp
// off.
const SeccompUnconfined = "unconfined"

// setSeccomp applies docker's default profile, none, or a profile file. It
// runs after the capabilities are set: the default profile allows the
// syscalls that the container's capabilities make useful (mount with
// CAP_SYS_ADMIN, and so on).
func (g *generator) setSeccomp(s *specs.Spec) error {
	switch {
	case g.o.Privileged || g.o.Seccomp == SeccompUnconfined:
		return nil
	case g.o.Seccomp == "":
		if g.o.NoSeccomp {
			return nil // docker runs without its default profile then, too
		}
		p, err := g.h.seccompDefault(s)
		if err != nil {
			return fmt.Errorf("docker's default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = p
		return nil
	}
	file := g.o.Seccomp
	if g.o.NoSeccomp {
		return invalidf("--security-opt seccomp=%s: this berth was built without seccomp support", file)
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return invalidf("--security-opt seccomp=%s: %w", file, err)
	}
	p, err := g.h.seccompLoad(string(body), s)
	if err != nil {
		return invalidf("--security-opt seccomp=%s: not a valid seccomp profile: %w", file, err)
	}
	s.Linux.Seccomp = p
	return nil
}
