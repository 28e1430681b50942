//go:build linux

package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WindowSize is a terminal's size in character cells.
type WindowSize struct {
	Width, Height uint16
}

// ptyDrain bounds how long output is read after the process exits: the pty
// gives EOF only when the last holder of its slave side closes it, and a
// background child may keep it open.
const ptyDrain = time.Second

// execPty is the host side of the pty an exec'd process runs on: the
// master that libcontainer allocated in the container's devpts and sent
// over the console socket.
type execPty struct {
	master *os.File // non-blocking, so Close ends a pending Read
	stop   chan struct{}
	wg     sync.WaitGroup // the resize loop
	out    chan struct{}  // closed when the output copy ends
}

// consoleSocket returns a connected pair of unix sockets: child goes to
// libcontainer.Process.ConsoleSocket, parent receives the pty master.
func consoleSocket() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvPty receives the pty master on the parent end of a console socket
// and makes it non-blocking: a blocking master, once read from, could
// not be closed while a background process in the container still holds
// the slave side, and its reader would leak.
func recvPty(sock *os.File) (*os.File, error) {
	f, err := recvFD(sock)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty master: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// startPty copies the pty's output to out and in (if not nil) to the
// pty, and applies the sizes from resize (if not nil) until close.
func startPty(master *os.File, in io.Reader, out io.Writer, resize <-chan WindowSize) *execPty {
	p := &execPty{master: master, stop: make(chan struct{}), out: make(chan struct{})}
	if out == nil {
		out = io.Discard
	}
	go func() {
		// Ends with EIO once every holder of the slave side is gone.
		io.Copy(out, master)
		close(p.out)
	}()
	if in != nil {
		// Not waited for: a Read from a terminal cannot be interrupted.
		// After close the next write fails and the copy ends.
		go copyToPty(master, in)
	}
	if resize != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case ws, ok := <-resize:
					if !ok {
						return
					}
					resizePty(master, ws)
				case <-p.stop:
					return
				}
			}
		}()
	}
	return p
}

// close ends the session once the process has exited: it reads what
// output is left (for at most ptyDrain), then closes the master.
func (p *execPty) close() {
	select {
	case <-p.out:
	case <-time.After(ptyDrain):
	}
	close(p.stop)
	p.wg.Wait()
	p.master.Close() // ends a pending Read: the master is non-blocking
	<-p.out
}

// resizePty sets the pty's window size; the kernel sends SIGWINCH to the
// foreground process group when it changes.
func resizePty(master *os.File, ws WindowSize) error {
	// Not master.Fd(): it would put the file back in blocking mode.
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Height, Col: ws.Width})
	})
	return errors.Join(err, serr)
}

// copyToPty writes in to the pty until in ends, then types the terminal's
// EOF character (^D unless the process changed it), as a user ends input
// at a terminal. In canonical mode ^D ends the input only at the start of
// a line (elsewhere it hands over the partial line), so a last line
// without a newline gets a second one. A process that turned canonical
// mode off sees the ^D as a plain byte and decides itself (a shell's line
// editor exits on it).
func copyToPty(master *os.File, in io.Reader) {
	buf := make([]byte, 32<<10)
	last := byte('\n')
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := master.Write(buf[:n]); werr != nil {
				return
			}
			last = buf[n-1]
		}
		if errors.Is(err, io.EOF) {
			eof, canonical := ptyEOF(master)
			if canonical && last != '\n' {
				master.Write([]byte{eof})
			}
			master.Write([]byte{eof})
			return
		}
		if err != nil {
			return
		}
	}
}

// ptyEOF returns the pty's EOF character and whether it is in canonical
// mode (a master reports its slave's termios).
func ptyEOF(master *os.File) (byte, bool) {
	eof, canonical := byte(0x04), true
	if rc, err := master.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS); err == nil {
				if t.Cc[unix.VEOF] != 0 {
					eof = t.Cc[unix.VEOF]
				}
				canonical = t.Lflag&unix.ICANON != 0
			}
		})
	}
	return eof, canonical
}
