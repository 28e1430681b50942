package spec

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultMounts are docker's, with /dev/shm sized as docker's default.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.Itoa(ShmSize)}},
	}
}

// tmpfsFlags maps each mount flag valid for a tmpfs to its group: of the
// flags of one group only the last given counts.
var tmpfsFlags = map[string]string{
	"ro": "ro", "rw": "ro",
	"suid": "suid", "nosuid": "suid",
	"dev": "dev", "nodev": "dev",
	"exec": "exec", "noexec": "exec",
	"sync": "sync", "async": "sync",
	"dirsync": "dirsync",
	"mand":    "mand", "nomand": "mand",
	"atime": "atime", "noatime": "atime",
	"diratime": "diratime", "nodiratime": "diratime",
	"relatime": "relatime", "norelatime": "relatime",
	"strictatime": "strictatime", "nostrictatime": "strictatime",
	"nosymfollow": "nosymfollow",
	"private":     "propagation", "rprivate": "propagation",
	"shared": "propagation", "rshared": "propagation",
	"slave": "propagation", "rslave": "propagation",
	"unbindable": "propagation", "runbindable": "propagation",
}

// tmpfsData are the KEY=VALUE options a tmpfs takes, with their checks.
var tmpfsData = map[string]func(string) bool{
	"size":      isKernelSize,
	"nr_blocks": isKernelSize,
	"nr_inodes": isKernelSize,
	"mode": func(v string) bool {
		n, err := strconv.ParseUint(v, 8, 32)
		return err == nil && n <= 0o7777
	},
	"uid":  isUint32,
	"gid":  isUint32,
	"mpol": func(v string) bool { return v != "" },
}

// isKernelSize accepts what the kernel's memparse does for tmpfs sizes:
// digits with an optional k, m, g, t, p or e suffix, or a percentage.
func isKernelSize(v string) bool {
	if v == "" {
		return false
	}
	if strings.IndexByte("kKmMgGtTpPeE%", v[len(v)-1]) >= 0 {
		v = v[:len(v)-1]
	}
	_, err := strconv.ParseUint(v, 10, 64)
	return err == nil
}

func isUint32(v string) bool {
	_, err := strconv.ParseUint(v, 10, 32)
	return err == nil
}

// ParseTmpfs parses a --tmpfs value, DST[:OPTIONS], into a tmpfs mount.
// OPTIONS are comma-separated tmpfs mount options (size=64m, mode=1777,
// uid=, gid=, nr_inodes=, ro, exec, …); as in docker the mount is noexec,
// nosuid, nodev and rprivate unless an option says otherwise, and of
// conflicting options the last wins.
func ParseTmpfs(s string) (specs.Mount, error) {
	dst, data, _ := strings.Cut(s, ":")
	if err := checkDestination(dst); err != nil {
		return specs.Mount{}, invalidf("invalid --tmpfs %q: %v", s, err)
	}
	opts := []string{"noexec", "nosuid", "nodev", "rprivate"}
	if data != "" {
		opts = append(opts, strings.Split(data, ",")...)
	}
	merged, err := mergeTmpfsOptions(opts)
	if err != nil {
		return specs.Mount{}, invalidf("invalid --tmpfs %q: %v", s, err)
	}
	return specs.Mount{Destination: path.Clean(dst), Type: "tmpfs", Source: "tmpfs", Options: merged}, nil
}

// mergeTmpfsOptions keeps, of each group of flags and each KEY=, the last
// one given, in the order given.
func mergeTmpfsOptions(opts []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for i := len(opts) - 1; i >= 0; i-- {
		o := opts[i]
		var key string
		if group, ok := tmpfsFlags[o]; ok {
			key = "flag:" + group
		} else {
			k, v, hasValue := strings.Cut(o, "=")
			check, known := tmpfsData[k]
			switch {
			case o == "":
				return nil, fmt.Errorf("empty option")
			case !known:
				return nil, fmt.Errorf("unknown option %q", o)
			case !hasValue || !check(v):
				return nil, fmt.Errorf("bad value in %q", o)
			}
			key = "data:" + k
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, o)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// pathDepth counts a path's components, the order in which docker mounts
// user mounts (parents before their children).
func pathDepth(p string) int {
	return strings.Count(path.Clean(p), "/")
}

// underOrAt reports whether p is dir or inside it.
func underOrAt(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

func (g *generator) setMounts(s *specs.Spec) error {
	var user []specs.Mount
	from := map[string]string{} // destination -> the flag that asked for it
	add := func(m specs.Mount, what string) error {
		if prev, dup := from[m.Destination]; dup {
			return invalidf("duplicate mount point %s (%s and %s)", m.Destination, prev, what)
		}
		from[m.Destination] = what
		user = append(user, m)
		return nil
	}
	for _, m := range g.o.Mounts {
		what := "-v " + m.Source + ":" + m.Destination
		if err := checkDestination(m.Destination); err != nil {
			return invalidf("%s: %v", what, err)
		}
		if !path.IsAbs(m.Source) {
			return invalidf("%s: the source must be an absolute host path", what)
		}
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		if err := add(specs.Mount{Destination: path.Clean(m.Destination), Type: "bind", Source: path.Clean(m.Source), Options: opts}, what); err != nil {
			return err
		}
	}
	for _, t := range g.o.Tmpfs {
		m, err := ParseTmpfs(t)
		if err != nil {
			return err
		}
		if err := add(m, "--tmpfs "+t); err != nil {
			return err
		}
	}
	// The networking code's files give way to the user's volumes.
	for _, m := range g.o.ExtraMounts {
		if err := checkDestination(m.Destination); err != nil {
			return invalidf("extra mount %s: %v", m.Destination, err)
		}
		m.Destination = path.Clean(m.Destination)
		if _, taken := from[m.Destination]; taken {
			continue
		}
		if err := add(m, "mount of "+m.Source); err != nil {
			return err
		}
	}
	slices.SortStableFunc(user, func(a, b specs.Mount) int { return pathDepth(a.Destination) - pathDepth(b.Destination) })
	if g.o.Init {
		initMount := specs.Mount{Destination: InitPathInContainer, Type: "bind", Source: g.o.InitPath, Options: []string{"bind", "ro"}}
		if err := add(initMount, "--init"); err != nil {
			return err
		}
	}

	var mounts []specs.Mount
	_, userDev := from["/dev"]
	for _, m := range defaultMounts() {
		if _, replaced := from[m.Destination]; replaced || userDev && underOrAt(m.Destination, "/dev") {
			continue
		}
		if g.o.ReadOnly {
			switch m.Destination {
			case "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue":
			default:
				if !slices.Contains(m.Options, "ro") {
					m.Options = append(m.Options, "ro")
				}
			}
		}
		if g.o.Privileged && (m.Destination == "/sys" || m.Type == "cgroup") {
			m.Options = slices.DeleteFunc(m.Options, func(o string) bool { return o == "ro" })
		}
		mounts = append(mounts, m)
	}
	s.Mounts = append(mounts, user...)
	for _, m := range user {
		g.dests = append(g.dests, m.Destination)
	}
	return nil
}
