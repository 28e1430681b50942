//go:build linux

package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Moving a process into a cgroup takes the kernel's cgroup threadgroup
// lock for writing, and the first writer after a quiet spell waits out an
// RCU grace period first (5-10 ms here, measured: a second move within
// ~10 ms of the first is 50x cheaper). libcontainer moves every new
// container init into its cgroups, so each start paid that wait on its
// critical path. warmCgroupLock, run in a goroutine just before the move,
// pays it in parallel with the work that precedes the move: it moves itself into the cgroup it is
// already in (a no-op for the system; any hierarchy will do, the lock is
// global), so the init's move comes while the grace period is still
// recent. Best effort: any failure just leaves the wait where it was.
func warmCgroupLock() {
	path := ownCgroupProcs()
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	f.WriteString(strconv.Itoa(os.Getpid()))
	f.Close()
}

// ownCgroupProcs is the cgroup.procs file of this process's cgroup in one
// mounted hierarchy: pids (v1), else the unified hierarchy.
func ownCgroupProcs() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	var cands []string
	for _, l := range strings.Split(string(b), "\n") {
		p := strings.SplitN(l, ":", 3)
		if len(p) != 3 || !strings.HasPrefix(p[2], "/") {
			continue
		}
		switch {
		case p[1] == "pids":
			cands = append([]string{filepath.Join("/sys/fs/cgroup/pids", p[2])}, cands...)
		case p[1] == "":
			cands = append(cands, filepath.Join("/sys/fs/cgroup/unified", p[2]), filepath.Join("/sys/fs/cgroup", p[2]))
		}
	}
	for _, c := range cands {
		f := filepath.Join(c, "cgroup.procs")
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	return ""
}
