//go:build linux

package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// hostSockets returns the sockets of the calling thread's network namespace
// (the one berth's nf_tables rules act in) that hold a port of one of
// protos, every protocol when none is given: TCP listeners and bound UDP
// sockets, IPv4 and IPv6. A family the kernel lacks (IPv6 disabled) has
// none.
//
// They come from the kernel's socket diagnostics (netlink sock_diag, what
// ss reads), asking for listening TCP sockets only, so that the kernel
// walks its table of listeners and nothing else. /proc/net/tcp and tcp6
// list every TCP socket instead, and reading each makes the kernel walk
// its whole table of connections, which is sized by the machine's memory,
// empty or not: 17 ms for the two on the 24 GiB test machine, most of
// AddPorts' time. /proc/net is read only where sock_diag fails (a kernel
// without inet_diag).
func hostSockets(protos ...Proto) ([]hostSocket, error) {
	if len(protos) == 0 {
		protos = []Proto{TCP, UDP}
	}
	var held []hostSocket
	for _, proto := range protos {
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			socks, err := diagSockets(family, proto)
			if err != nil {
				if socks, err = procSockets(family, proto); err != nil {
					return nil, err
				}
			}
			held = append(held, socks...)
		}
	}
	return held, nil
}

// diagSockets asks sock_diag for the sockets of one family and protocol
// that hold a port. Any failure is an error, an interrupted dump (the table
// changed meanwhile) too, and hostSockets then reads /proc/net instead. The
// netlink socket is made on the calling thread, so it sees the same
// namespace as /proc/thread-self does (see procSockets).
func diagSockets(family uint8, proto Proto) ([]hostSocket, error) {
	// struct inet_diag_req_v2: family, protocol, ext, pad, states (a mask
	// of TCP states) and a socket ID of zeros, which matches every socket.
	data := make([]byte, 56)
	data[0], data[1] = family, l4proto(proto)
	states := uint32(1) << tcpListen
	if proto == UDP {
		states = ^uint32(0) // bound UDP sockets are CLOSE, connected ones ESTABLISHED
	}
	binary.NativeEndian.PutUint32(data[4:], states)
	req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP)
	req.AddRawData(data)
	var socks []hostSocket
	var perr error
	err := req.ExecuteIter(unix.NETLINK_INET_DIAG, nl.SOCK_DIAG_BY_FAMILY, func(msg []byte) bool {
		s, err := parseDiagMsg(msg, proto)
		if err != nil {
			perr = err
			return false
		}
		if s.holdsPort() {
			socks = append(socks, s)
		}
		return true
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("network: host sockets: sock_diag: %w", err)
	}
	return socks, nil
}

// procSockets reads the sockets of one family and protocol that hold a
// port from /proc/net/{tcp,tcp6,udp,udp6}; a missing table has none.
//
// It reads /proc/thread-self/net, not /proc/self/net: /proc/self is the
// main thread, which a goroutine that locked it and switched namespaces
// (as createNetNS does) may have left in a task's namespace for good, as
// the Go runtime cannot end the main thread. Unlocked threads, which this
// runs on, are all in the process's own namespace.
func procSockets(family uint8, proto Proto) ([]hostSocket, error) {
	file := string(proto)
	if family == unix.AF_INET6 {
		file += "6"
	}
	path := filepath.Join(procRoot, "thread-self", "net", file)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network: host sockets: %w", err)
	}
	socks, err := parseProcNet(data, proto)
	if err != nil {
		return nil, fmt.Errorf("network: host sockets: %s: %w", path, err)
	}
	var held []hostSocket
	for _, s := range socks {
		if s.holdsPort() {
			held = append(held, s)
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
