package spec

import (
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AllCapabilities is the --cap-add/--cap-drop value meaning every capability.
const AllCapabilities = "ALL"

// DefaultCapabilities are the capabilities docker gives a container.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

func capName(c capability.Cap) string { return "CAP_" + strings.ToUpper(c.String()) }

// NormalizeCap turns a capability as users write it ("net_admin",
// "CAP_NET_ADMIN", "all") into its canonical form ("CAP_NET_ADMIN", "ALL"),
// or fails for a name the kernel does not know.
func NormalizeCap(s string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(s))
	if c == AllCapabilities {
		return c, nil
	}
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	for _, k := range capability.ListKnown() {
		if capName(k) == c {
			return c, nil
		}
	}
	return "", invalidf("unknown capability %q", s)
}

// ParseCapabilities normalizes a list of capabilities with NormalizeCap.
func ParseCapabilities(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, s := range list {
		c, err := NormalizeCap(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// capabilities applies docker's rules: --privileged grants all that berth
// holds; --cap-add ALL grants all but the dropped ones; --cap-drop ALL keeps
// only the added ones; otherwise the defaults less the dropped plus the
// added. A capability berth itself lacks can't be added.
func capabilities(o Options, h *host) ([]string, error) {
	if o.Privileged {
		return slices.Clone(h.caps), nil
	}
	add, err := ParseCapabilities(o.CapAdd)
	if err != nil {
		return nil, invalidf("--cap-add: %w", err)
	}
	drop, err := ParseCapabilities(o.CapDrop)
	if err != nil {
		return nil, invalidf("--cap-drop: %w", err)
	}
	for _, c := range add {
		if c != AllCapabilities && !h.hasCap(c) {
			return nil, invalidf("--cap-add %s: berth itself does not hold this capability on this host, so it cannot grant it", c)
		}
	}
	var caps []string
	switch {
	case slices.Contains(add, AllCapabilities):
		for _, c := range h.caps {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
		return caps, nil
	case slices.Contains(drop, AllCapabilities):
	default:
		// Defaults berth lacks are left out rather than failing every
		// container on a host that withholds them.
		for _, c := range DefaultCapabilities() {
			if !slices.Contains(drop, c) && h.hasCap(c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range add {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}

func (g *generator) setCapabilities(s *specs.Spec) error {
	caps, err := capabilities(g.o, g.h)
	if err != nil {
		return err
	}
	g.caps = caps
	// Docker sets the same list as bounding, effective and permitted for
	// every user (a non-root process loses effective and permitted at
	// execve anyway), and never inheritable or ambient (CVE-2022-24769).
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  slices.Clone(caps),
		Effective: slices.Clone(caps),
		Permitted: slices.Clone(caps),
	}
	return nil
}
