//go:build linux

package runtime

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
)

// Stats is one sample of a container's resource use, from its cgroup (and
// its network namespace's interface counters).
type Stats struct {
	Task, Name, Container string
	Time                  time.Time
	CPUNanos              uint64 // total CPU time used
	MemoryUsage           uint64 // bytes, without page cache
	MemoryLimit           uint64 // bytes; the host's memory when unlimited
	Pids                  uint64
	BlockRead, BlockWrite uint64
	NetRx, NetTx          uint64
}

// Stats samples every running container of the task.
func (r *Runtime) Stats(ref string) ([]Stats, error) {
	t, err := r.Get(ref)
	if err != nil {
		return nil, err
	}
	var out []Stats
	for _, c := range t.Containers {
		if c.Status != ContainerRunning {
			continue
		}
		lc, err := libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name))
		if err != nil {
			continue
		}
		st, err := lc.Stats()
		if err != nil || st.CgroupStats == nil {
			continue
		}
		cs := st.CgroupStats
		s := Stats{Task: t.ID, Name: t.Name, Container: c.Name, Time: time.Now(),
			CPUNanos: cs.CpuStats.CpuUsage.TotalUsage, Pids: cs.PidsStats.Current}
		m := cs.MemoryStats
		s.MemoryUsage = m.Usage.Usage
		// docker subtracts the page cache (inactive_file on v2, total_inactive_file on v1)
		for _, k := range []string{"total_inactive_file", "inactive_file"} {
			if v, ok := m.Stats[k]; ok && v < s.MemoryUsage {
				s.MemoryUsage -= v
				break
			}
		}
		s.MemoryLimit = m.Usage.Limit
		if total := hostMemory(); total > 0 && (s.MemoryLimit == 0 || s.MemoryLimit > total) {
			s.MemoryLimit = total
		}
		for _, e := range cs.BlkioStats.IoServiceBytesRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				s.BlockRead += e.Value
			case "write":
				s.BlockWrite += e.Value
			}
		}
		if c.Pid > 0 {
			s.NetRx, s.NetTx = netDev(c.Pid)
		}
		out = append(out, s)
	}
	return out, nil
}

// netDev sums the receive and transmit bytes of a process's network
// namespace, loopback excluded.
func netDev(pid int) (rx, tx uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		var v [16]uint64
		if n, _ := fmt.Sscan(rest, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]); n == 9 {
			rx += v[0]
			tx += v[8]
		}
	}
	return rx, tx
}

func hostMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb uint64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}
