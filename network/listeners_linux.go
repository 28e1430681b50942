//go:build linux

package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// hostSockets returns the sockets of the calling thread's network namespace
// (the one berth's nf_tables rules act in) that hold a port: TCP listeners
// and bound UDP sockets, IPv4 and IPv6. A table that does not exist (IPv6
// disabled) has none.
//
// It reads /proc/thread-self/net, not /proc/self/net: /proc/self is the
// main thread, which a goroutine that locked it and switched namespaces
// (as createNetNS does) may have left in a task's namespace for good, as
// the Go runtime cannot end the main thread. Unlocked threads, which this
// runs on, are all in the process's own namespace.
func hostSockets() ([]hostSocket, error) {
	var held []hostSocket
	for _, t := range []struct {
		file  string
		proto Proto
	}{{"tcp", TCP}, {"tcp6", TCP}, {"udp", UDP}, {"udp6", UDP}} {
		path := filepath.Join(procRoot, "thread-self", "net", t.file)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("network: host sockets: %w", err)
		}
		socks, err := parseProcNet(data, t.proto)
		if err != nil {
			return nil, fmt.Errorf("network: host sockets: %s: %w", path, err)
		}
		for _, s := range socks {
			if s.holdsPort() {
				held = append(held, s)
			}
		}
	}
	return held, nil
}

// socketOwner finds a process that has the socket with the given inode
// open, by the "socket:[INODE]" links in /proc/PID/fd, and returns its PID
// and command name (/proc/PID/comm). It returns 0 and "" when none is found:
// the socket may belong to a process in another PID namespace, or have been
// closed since.
func socketOwner(inode uint64) (pid int, comm string) {
	if inode == 0 {
		return 0, ""
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, ""
	}
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p <= 0 {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && l == want {
				b, _ := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
				return p, strings.TrimSuffix(string(b), "\n")
			}
		}
	}
	return 0, ""
}
