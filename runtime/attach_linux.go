//go:build linux

package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"
)

// The attach socket (RUN_ROOT/tasks/<id>/attach.sock, mode 0600) carries a
// client's input to the task's first container: frames of one type byte,
// a 4-byte big-endian length and the payload. Output is not on it: clients
// follow the container's log, which holds every byte from the first.
const (
	frameStdin    = 0 // payload: bytes for the container's stdin
	frameStdinEOF = 1 // no payload: close the container's stdin
	frameResize   = 2 // payload: width, height as uint16 big-endian
	maxFrame      = 1 << 20
)

// attachPath is short on purpose: a unix socket path must fit in 108
// bytes, and run roots can be long.
func (r *Runtime) attachPath(id string) string {
	return filepath.Join(r.cfg.RunRoot, "attach", id[:16]+".sock")
}

// attachTarget is where the monitor sends a client's input.
type attachTarget struct {
	stdin   io.WriteCloser  // -i without -t: a pipe to the process's stdin
	console console.Console // -t: the pty master
	mu      sync.Mutex
}

// serveAttach accepts clients on the task's attach socket until the
// listener is closed.
func (r *Runtime) serveAttach(id string, tgt *attachTarget) (io.Closer, error) {
	path := r.attachPath(id)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go tgt.handle(conn)
		}
	}()
	return l, nil
}

func (tgt *attachTarget) handle(conn net.Conn) {
	defer conn.Close()
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrame {
			return
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(conn, payload); err != nil {
			return
		}
		tgt.mu.Lock()
		switch hdr[0] {
		case frameStdin:
			switch {
			case tgt.console != nil:
				tgt.console.Write(payload)
			case tgt.stdin != nil:
				tgt.stdin.Write(payload)
			}
		case frameStdinEOF:
			if tgt.stdin != nil {
				tgt.stdin.Close()
				tgt.stdin = nil
			}
		case frameResize:
			if tgt.console != nil && len(payload) == 4 {
				tgt.console.Resize(console.WinSize{Width: binary.BigEndian.Uint16(payload), Height: binary.BigEndian.Uint16(payload[2:])})
			}
		}
		tgt.mu.Unlock()
	}
}

// AttachInput connects to a running task's attach socket.
type AttachInput struct {
	conn net.Conn
	mu   sync.Mutex
}

// ErrEnded says a task has no input to attach to because it has already
// ended (its monitor stops serving input when the containers exit, and an
// auto-removed task is gone altogether): a short command can get there
// before the client attaches.
var ErrEnded = errors.New("the task has ended")

// Input opens the input side of an attached task (its -i or -t container).
func (r *Runtime) Input(id string) (*AttachInput, error) {
	t, err := r.Get(id)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("attach to %s: %w", id, ErrEnded)
	}
	if err != nil {
		return nil, err
	}
	conn, err := net.Dial("unix", r.attachPath(t.ID))
	if err != nil {
		if now, gerr := r.Get(id); errors.Is(gerr, ErrNotFound) || (gerr == nil && now.Status == TaskStopped) {
			return nil, fmt.Errorf("attach to %s: %w", t.Name, ErrEnded)
		}
		return nil, fmt.Errorf("attach to %s: %w", t.Name, err)
	}
	return &AttachInput{conn: conn}, nil
}

func (a *AttachInput) send(typ byte, p []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := a.conn.Write(hdr[:]); err != nil {
		return err
	}
	_, err := a.conn.Write(p)
	return err
}

// CopyStdin sends r to the container until r ends, then closes its stdin.
func (a *AttachInput) CopyStdin(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := a.send(frameStdin, buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return a.send(frameStdinEOF, nil)
		}
		if err != nil {
			return err
		}
	}
}

// Resize sets the container's terminal size.
func (a *AttachInput) Resize(width, height uint16) error {
	var p [4]byte
	binary.BigEndian.PutUint16(p[:], width)
	binary.BigEndian.PutUint16(p[2:], height)
	return a.send(frameResize, p[:])
}

// Close disconnects; the container keeps running.
func (a *AttachInput) Close() error { return a.conn.Close() }

// recvFD receives one file descriptor sent over a unix socket (the pty
// master libcontainer sends on the console socket).
func recvFD(sock *os.File) (*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive console: bad control message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive console: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}
