//go:build linux

package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func probeHost() (*host, error) {
	caps, err := currentCaps()
	if err != nil {
		return nil, err
	}
	return &host{
		caps:           caps,
		rlimit:         hostRlimit,
		devices:        hostDevices,
		maskedExtra:    thermalThrottlePaths(),
		numCPU:         runtime.NumCPU(),
		seccompDefault: seccomp.GetDefaultProfile,
		seccompLoad:    seccomp.LoadProfile,
	}, nil
}

// currentCaps lists the capabilities in berth's effective set, the most a
// container can be given (docker does the same; root here may lack some,
// e.g. CAP_SYS_RESOURCE in a VM sandbox).
func currentCaps() ([]string, error) {
	c, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("reading berth's capabilities: %w", err)
	}
	if err := c.Load(); err != nil {
		return nil, fmt.Errorf("reading berth's capabilities: %w", err)
	}
	supported, err := capability.ListSupported()
	if err != nil {
		supported = capability.ListKnown()
	}
	var caps []string
	for _, cp := range supported {
		if c.Get(capability.EFFECTIVE, cp) {
			caps = append(caps, capName(cp))
		}
	}
	return caps, nil
}

var rlimitResources = map[string]int{
	"as":         unix.RLIMIT_AS,
	"core":       unix.RLIMIT_CORE,
	"cpu":        unix.RLIMIT_CPU,
	"data":       unix.RLIMIT_DATA,
	"fsize":      unix.RLIMIT_FSIZE,
	"locks":      unix.RLIMIT_LOCKS,
	"memlock":    unix.RLIMIT_MEMLOCK,
	"msgqueue":   unix.RLIMIT_MSGQUEUE,
	"nice":       unix.RLIMIT_NICE,
	"nofile":     unix.RLIMIT_NOFILE,
	"nproc":      unix.RLIMIT_NPROC,
	"rss":        unix.RLIMIT_RSS,
	"rtprio":     unix.RLIMIT_RTPRIO,
	"rttime":     unix.RLIMIT_RTTIME,
	"sigpending": unix.RLIMIT_SIGPENDING,
	"stack":      unix.RLIMIT_STACK,
}

// hostRlimit is berth's own hard limit: without CAP_SYS_RESOURCE the
// container's init cannot raise a limit above it.
func hostRlimit(name string) (uint64, bool) {
	res, ok := rlimitResources[name]
	if !ok {
		return 0, false
	}
	var l unix.Rlimit
	if err := unix.Getrlimit(res, &l); err != nil {
		return 0, false
	}
	return l.Max, true
}

// thermalThrottlePaths are the per-CPU directories docker masks since
// GHSA-6fw5-f8r9-fgfm.
func thermalThrottlePaths() []string {
	m, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")
	sort.Slice(m, func(i, j int) bool { return cpuIndexLess(m[i], m[j]) })
	return m
}

// cpuIndexLess orders .../cpu2/... before .../cpu10/....
func cpuIndexLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// hostDevices lists the device nodes under /dev, as --privileged exposes
// them; the pseudo-filesystems the spec mounts itself are left out.
func hostDevices() ([]specs.LinuxDevice, error) {
	var devs []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Entries that vanish or can't be read while we walk are skipped;
			// /dev itself must be readable.
			if p != "/dev" && (errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist)) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			switch strings.TrimPrefix(p, "/dev/") {
			case "pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev":
				return fs.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || d.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("listing host devices: %w", err)
		}
		typ := "c"
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			typ = "b"
		}
		mode := fs.FileMode(st.Mode & 0o777)
		devs = append(devs, specs.LinuxDevice{
			Path:     p,
			Type:     typ,
			Major:    int64(unix.Major(uint64(st.Rdev))), //nolint:unconvert // Rdev's type differs by arch
			Minor:    int64(unix.Minor(uint64(st.Rdev))), //nolint:unconvert // Rdev's type differs by arch
			FileMode: &mode,
			UID:      ptr(st.Uid),
			GID:      ptr(st.Gid),
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing host devices: %w", err)
	}
	return devs, nil
}
