package spec

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Errors that Generate and the parsers wrap, so callers can pick docker's exit
// codes: ErrCommandNotFound is 127, ErrNotExecutable 126, anything else 125.
var (
	// ErrInvalid marks a malformed or contradictory option.
	ErrInvalid = errors.New("invalid option")
	// ErrNoCommand means neither the image nor the options name a command.
	ErrNoCommand = errors.New("no command specified")
	// ErrCommandNotFound means the command is not in the rootfs.
	ErrCommandNotFound = errors.New("command not found")
	// ErrNotExecutable means the command exists but cannot be executed.
	ErrNotExecutable = errors.New("command not executable")
)

// Annotations that Generate sets in the spec besides the labels.
const (
	// AnnotationStopSignal holds the signal that stops the container
	// gracefully, as a name such as "SIGTERM" (read it with StopSignal).
	AnnotationStopSignal = "berth.stop-signal"
)

// InitPathInContainer is where Options.InitPath is bind-mounted, read-only,
// when Options.Init is set; the process runs as
// [InitPathInContainer, "--", command...].
const InitPathInContainer = "/sbin/berth-init"

// DefaultPathEnv is the PATH a container gets when its image sets none.
const DefaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Limits docker applies.
const (
	// MinMemory is the smallest memory limit or reservation (6 MiB).
	MinMemory = 6 << 20
	// CPUPeriod is the CFS period (µs) over which --cpus sets the quota.
	CPUPeriod = 100000
	// ShmSize is the size of /dev/shm.
	ShmSize      = 64 << 20
	minCPUShares = 2
	maxCPUShares = 262144
)

// ImageConfig is what the runtime needs of an image's config, as plain values
// (the service layer copies it from the OCI image config).
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	// Env holds KEY=VALUE entries.
	Env        []string
	User       string
	WorkingDir string
	// StopSignal is a name or number ("SIGQUIT", "3"); empty means SIGTERM.
	StopSignal string
	Labels     map[string]string
	// ExposedPorts ("80/tcp") are kept for the networking code; Generate
	// does not use them.
	ExposedPorts []string
}

// Options are `berth run`'s container flags, already parsed into typed values
// (the Parse* functions turn command-line strings into them). The zero value
// asks for docker's defaults everywhere.
type Options struct {
	// ID is the container's ID; the hostname defaults to its first 12
	// characters. One of ID and Hostname is required.
	ID string
	// Name is the container's name (--name), validated as docker does;
	// uniqueness is the caller's business.
	Name     string
	Hostname string

	// Env holds -e values: KEY=VALUE, or a bare KEY that takes the value
	// from LookupEnv (the caller's environment) and, when that has none,
	// removes KEY from the image's environment.
	Env []string
	// EnvFiles are --env-file paths, read with ParseEnvFile's rules.
	EnvFiles []string
	// LookupEnv resolves bare KEYs in Env and EnvFiles; nil means
	// os.LookupEnv.
	LookupEnv func(key string) (string, bool)

	// Entrypoint replaces the image's entrypoint when not nil; "" clears it.
	Entrypoint *string
	// Cmd replaces the image's CMD when not empty.
	Cmd []string
	// User (-u) is name, uid, name:group or uid:gid; empty means the image's.
	User string
	// WorkDir (-w) must be absolute; empty means the image's, then "/".
	WorkDir string

	// Memory is the memory limit in bytes (0: none; at least MinMemory).
	Memory int64
	// MemoryReservation is the soft limit in bytes (0: none).
	MemoryReservation int64
	// MemorySwap is the memory plus swap limit: 0 means twice Memory when
	// Memory is set, -1 unlimited swap.
	MemorySwap int64
	// CPUs sets the CPU quota to CPUs*CPUPeriod (0: no quota).
	CPUs float64
	// CPUShares is the relative CPU weight (0: the kernel's default 1024).
	CPUShares uint64
	// PidsLimit caps the number of tasks (0 or -1: unlimited).
	PidsLimit int64
	// Ulimits set the process's rlimits; without them the container
	// inherits berth's own.
	Ulimits []Ulimit

	// Mounts are -v volumes, resolved to host paths by the caller (which
	// also checks that bind sources exist).
	Mounts []Mount
	// Tmpfs holds --tmpfs values, DST[:OPTIONS] (see ParseTmpfs).
	Tmpfs []string
	// ExtraMounts are added as they are, after the volumes: the networking
	// code's /etc/hosts, /etc/resolv.conf and /etc/hostname. A volume at the
	// same destination wins over an extra mount.
	ExtraMounts []specs.Mount
	// ReadOnly mounts the rootfs read-only (--read-only).
	ReadOnly bool

	// NetNSPath joins an existing network namespace; empty creates one.
	NetNSPath string
	// HostNetwork keeps the container in the host's network namespace
	// (--network host); NetNSPath must then be empty.
	HostNetwork bool

	// Privileged grants all of berth's capabilities and the host's devices
	// and lifts seccomp, masked and read-only paths (--privileged).
	Privileged bool
	// Init runs InitPath as PID 1 in front of the command (--init).
	Init bool
	// InitPath is the host path of the init binary, bind-mounted read-only
	// at InitPathInContainer when Init is set.
	InitPath string
	// TTY gives the process a terminal (-t); the console size is the
	// caller's to set.
	TTY bool
	// Stdin keeps stdin open (-i); it changes nothing in the spec and is
	// here for the caller's convenience.
	Stdin bool
	// NoNewPrivileges sets no_new_privs (--security-opt no-new-privileges).
	NoNewPrivileges bool
	// CapAdd and CapDrop adjust docker's default capabilities; names as
	// NormalizeCap accepts them, including "ALL".
	CapAdd, CapDrop []string
	// Seccomp is "" for docker's default profile, "unconfined", or the path
	// of a JSON profile (--security-opt seccomp=...).
	Seccomp string
	// NoSeccomp says this build cannot apply seccomp (no libseccomp): the
	// default profile is then left out, as docker does, and a profile file
	// is an error.
	NoSeccomp bool
	// NoSwapLimit says the host's memory cgroup cannot limit swap: the swap
	// limit is then left out, as docker does.
	NoSwapLimit bool

	// StopSignal overrides the image's stop signal (--stop-signal).
	StopSignal string
	// Labels are added to the image's labels (winning on equal keys) and
	// become the spec's annotations.
	Labels map[string]string
}

// Mount is a volume: a host path bind-mounted into the container.
type Mount struct {
	// Source is the absolute host path (for a named volume, the volume's
	// directory under the state root).
	Source string
	// Destination is the absolute path in the container.
	Destination string
	// ReadOnly mounts it read-only.
	ReadOnly bool
}

// CheckSources checks that each mount's source exists on the host, with
// docker's message ("volume source /nope does not exist"). Generate does not
// call it: the caller that resolves volumes does, after creating the
// directories of named volumes.
func CheckSources(ms []Mount) error {
	for _, m := range ms {
		if _, err := os.Stat(m.Source); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return invalidf("volume source %s does not exist", m.Source)
			}
			return invalidf("volume source %s: %w", m.Source, err)
		}
	}
	return nil
}

// SpecOpt changes a generated spec; Generate applies its opts last, in order.
type SpecOpt func(*specs.Spec) error

// WithCgroupsPath sets the spec's cgroups path (the runtime's choice of
// parent and name).
func WithCgroupsPath(p string) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.CgroupsPath = p
		return nil
	}
}

// WithAnnotations adds annotations, replacing those with the same keys.
func WithAnnotations(a map[string]string) SpecOpt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = make(map[string]string, len(a))
		}
		maps.Copy(s.Annotations, a)
		return nil
	}
}

// Generate builds the OCI runtime spec for a container of img run with o.
// rootfs is the container's (merged) root filesystem: the spec's root, where
// users are resolved through /etc/passwd and /etc/group, and where the
// command is checked to exist unless it lies under a mount. opts run last.
//
// Errors wrap ErrInvalid for bad options, ErrNoCommand, ErrCommandNotFound
// or ErrNotExecutable, and name the offending flag and value.
func Generate(img ImageConfig, o Options, rootfs string, opts ...SpecOpt) (*specs.Spec, error) {
	h, err := currentHost()
	if err != nil {
		return nil, err
	}
	return generate(img, o, rootfs, h, opts...)
}

// StopSignal returns the stop signal recorded in a spec Generate made,
// SIGTERM when there is none.
func StopSignal(s *specs.Spec) syscall.Signal {
	if s != nil {
		if sig, err := ParseSignal(s.Annotations[AnnotationStopSignal]); err == nil {
			return sig
		}
	}
	return syscall.SIGTERM
}

// kindError is an error of one of the package's kinds whose message is only
// the detail: errors.Is(err, kind) holds, and %w causes still unwrap.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string        { return e.err.Error() }
func (e *kindError) Unwrap() error        { return e.err }
func (e *kindError) Is(target error) bool { return target == e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

func invalidf(format string, args ...any) error { return errorf(ErrInvalid, format, args...) }

// generator holds what the steps of generate resolve and share.
type generator struct {
	img    ImageConfig
	o      Options
	rootfs string
	h      *host

	hostname string
	args     []string // the command, before --init wraps it
	env      []string
	cwd      string
	user     execUser
	caps     []string
	dests    []string // destinations of the user's mounts, for the command check
}

func generate(img ImageConfig, o Options, rootfs string, h *host, opts ...SpecOpt) (*specs.Spec, error) {
	g := &generator{img: img, o: o, rootfs: rootfs, h: h}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs, Readonly: o.ReadOnly},
		Process: &specs.Process{},
		Linux:   &specs.Linux{},
	}
	steps := []SpecOpt{
		g.checkRootfs,
		g.setHostname,
		g.setUser,
		g.setEnv,
		g.setCommand,
		g.setCapabilities,
		g.setSeccomp,
		g.setMounts,
		g.setNamespaces,
		g.setDevices,
		g.setResources,
		g.setRlimits,
		g.setAnnotations,
		g.checkCommand,
	}
	for _, step := range append(steps, opts...) {
		if err := step(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (g *generator) checkRootfs(*specs.Spec) error {
	if g.rootfs == "" || !path.IsAbs(g.rootfs) {
		return invalidf("rootfs %q must be an absolute path", g.rootfs)
	}
	fi, err := os.Stat(g.rootfs)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if !fi.IsDir() {
		return invalidf("rootfs %s is not a directory", g.rootfs)
	}
	return nil
}

func (g *generator) setHostname(s *specs.Spec) error {
	if g.o.Name != "" && !validName(g.o.Name) {
		return invalidf("--name %q: names must start with a letter or digit and contain only [a-zA-Z0-9_.-], at least 2 characters", g.o.Name)
	}
	h := g.o.Hostname
	if h == "" {
		if g.o.ID == "" {
			return invalidf("neither a hostname nor a container ID given")
		}
		h = g.o.ID
		if len(h) > 12 {
			h = h[:12]
		}
	}
	if err := validHostname(h); err != nil {
		return invalidf("--hostname %q: %v", h, err)
	}
	g.hostname = h
	s.Hostname = h
	return nil
}

// validName is docker's container name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+.
func validName(n string) bool {
	if len(n) < 2 {
		return false
	}
	for i, c := range []byte(n) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// validHostname accepts RFC 1123 host names of at most 63 characters (the
// UTS namespace's limit is 64 bytes including the terminator).
func validHostname(h string) error {
	if len(h) > 63 {
		return errors.New("longer than 63 characters")
	}
	for _, label := range splitDots(h) {
		if label == "" {
			return errors.New("empty label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("a label starts or ends with '-'")
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func (g *generator) setCommand(s *specs.Spec) error {
	entrypoint, cmd := g.img.Entrypoint, g.img.Cmd
	if g.o.Entrypoint != nil {
		entrypoint, cmd = nil, nil
		if *g.o.Entrypoint != "" {
			entrypoint = []string{*g.o.Entrypoint}
		}
	}
	if len(g.o.Cmd) > 0 {
		cmd = g.o.Cmd
	}
	args := append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		return errorf(ErrNoCommand, "no command specified: the image has no ENTRYPOINT or CMD and none was given")
	}
	if args[0] == "" {
		return errorf(ErrNoCommand, "no command specified: the command is an empty string")
	}
	g.args = args
	if g.o.Init {
		if g.o.InitPath == "" || !path.IsAbs(g.o.InitPath) {
			return invalidf("--init needs the absolute host path of the init binary, got %q", g.o.InitPath)
		}
		args = append([]string{InitPathInContainer, "--"}, args...)
	}
	s.Process.Args = args
	s.Process.Terminal = g.o.TTY
	s.Process.NoNewPrivileges = g.o.NoNewPrivileges
	s.Process.OOMScoreAdj = new(int)

	cwd, from := g.img.WorkingDir, "the image's WORKDIR"
	if g.o.WorkDir != "" {
		cwd, from = g.o.WorkDir, "--workdir"
	}
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return invalidf("%s %q must be an absolute path", from, cwd)
	}
	g.cwd = path.Clean(cwd)
	s.Process.Cwd = g.cwd
	return nil
}

func (g *generator) setAnnotations(s *specs.Spec) error {
	a := make(map[string]string, len(g.img.Labels)+len(g.o.Labels)+1)
	for _, labels := range []map[string]string{g.img.Labels, g.o.Labels} {
		for k, v := range labels {
			if k == "" {
				return invalidf("--label with an empty key")
			}
			a[k] = v
		}
	}
	raw, from := g.img.StopSignal, "the image's STOPSIGNAL"
	if g.o.StopSignal != "" {
		raw, from = g.o.StopSignal, "--stop-signal"
	}
	sig := syscall.SIGTERM
	if raw != "" {
		var err error
		if sig, err = ParseSignal(raw); err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
	}
	a[AnnotationStopSignal] = signalName(sig)
	s.Annotations = a
	return nil
}

func (g *generator) setNamespaces(s *specs.Spec) error {
	if g.o.NetNSPath != "" && !path.IsAbs(g.o.NetNSPath) {
		return invalidf("network namespace path %q must be absolute", g.o.NetNSPath)
	}
	if g.o.HostNetwork && g.o.NetNSPath != "" {
		return invalidf("host network and a network namespace path %q are exclusive", g.o.NetNSPath)
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if !g.o.HostNetwork {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: g.o.NetNSPath})
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces,
		specs.LinuxNamespace{Type: specs.UTSNamespace},
		specs.LinuxNamespace{Type: specs.PIDNamespace},
		specs.LinuxNamespace{Type: specs.IPCNamespace},
		specs.LinuxNamespace{Type: specs.CgroupNamespace},
	)
	return nil
}

func (g *generator) setRlimits(s *specs.Spec) error {
	seen := map[string]int{}
	for _, u := range g.o.Ulimits {
		if err := u.validate(); err != nil {
			return err
		}
		if !g.h.hasCap("CAP_SYS_RESOURCE") && g.h.rlimit != nil {
			if hostHard, ok := g.h.rlimit(u.Name); ok && u.Hard > hostHard {
				return invalidf("--ulimit %s: hard limit %s is above this host's %s, and berth lacks CAP_SYS_RESOURCE to raise it",
					u, limitString(u.Hard), limitString(hostHard))
			}
		}
		r := specs.POSIXRlimit{Type: rlimitType(u.Name), Soft: u.Soft, Hard: u.Hard}
		if i, ok := seen[u.Name]; ok { // the last --ulimit of a name wins
			s.Process.Rlimits[i] = r
			continue
		}
		seen[u.Name] = len(s.Process.Rlimits)
		s.Process.Rlimits = append(s.Process.Rlimits, r)
	}
	return nil
}

func limitString(v uint64) string {
	if v == Unlimited {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}
