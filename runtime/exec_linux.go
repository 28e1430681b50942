//go:build linux

package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Container string // "" = the task's first container
	Args      []string
	Env       []string // added to the container's environment
	User      string   // "" = the container's user; else uid[:gid] or name[:group]
	WorkDir   string   // "" = the container's
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer

	// TTY runs the process on a new pty of the container's devpts, its
	// controlling terminal and its stdin, stdout and stderr (docker exec
	// -t). Stdout gets everything it prints: a terminal has one output
	// stream, so Stderr is not used. Stdin, if set, is typed into the
	// pty, which echoes it; when Stdin ends, the terminal's EOF character
	// (^D) is typed, which ends the input of a process that reads lines.
	// Exec returns once the process has exited and its output is copied
	// (at most a second more while a background child holds the pty); it
	// does not wait for Stdin: a copy blocked reading a terminal ends at
	// its next read.
	TTY bool
	// Size is the pty's size when the process starts; a zero field leaves
	// it 0x0, as docker does without a terminal.
	Size WindowSize
	// Resize, with TTY, carries later sizes (the client's SIGWINCH);
	// Exec reads it until the process exits.
	Resize <-chan WindowSize
}

// Exec runs a process in a running container, in its namespaces and
// cgroup, and returns its exit code (128+N when killed by signal N).
func (r *Runtime) Exec(ref string, o ExecOptions) (int, error) {
	t, err := r.Get(ref)
	if err != nil {
		return 0, err
	}
	c := t.Containers[0]
	if o.Container != "" {
		if c = t.Container(o.Container); c == nil {
			return 0, fmt.Errorf("%w: container %s in task %s", ErrNotFound, o.Container, t.Name)
		}
	}
	if c.Status != ContainerRunning {
		return 0, fmt.Errorf("%w: %s", ErrNotRunning, t.Name)
	}
	if len(o.Args) == 0 {
		return 0, errors.New("exec needs a command")
	}
	s, err := r.readSpec(t.ID, c.Name)
	if err != nil {
		return 0, err
	}
	lc, err := libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name))
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrNotRunning, t.Name, err)
	}
	p, err := newProcess(s.Process)
	if err != nil {
		return 0, err
	}
	p.Args = o.Args
	p.Env = mergeEnv(s.Process.Env, o.Env)
	if o.WorkDir != "" {
		p.Cwd = o.WorkDir
	}
	if o.User != "" {
		uid, gid, groups, err := resolveUser(s.Root.Path, o.User)
		if err != nil {
			return 0, err
		}
		p.UID, p.GID, p.AdditionalGroups = uid, gid, groups
	}
	p.Init = false
	var consoleParent *os.File
	if o.TTY {
		// libcontainer allocates the pty inside the container and sends
		// us the master; the process gets the slave as fds 0-2.
		var consoleChild *os.File
		if consoleParent, consoleChild, err = consoleSocket(); err != nil {
			return 0, err
		}
		defer consoleParent.Close()
		defer consoleChild.Close()
		p.ConsoleSocket = consoleChild
		p.ConsoleWidth, p.ConsoleHeight = o.Size.Width, o.Size.Height
	} else {
		p.Stdin, p.Stdout, p.Stderr = o.Stdin, o.Stdout, o.Stderr
	}
	if err := lc.Run(p); err != nil {
		return startErrorCode(err.Error()), err
	}
	if o.TTY {
		p.ConsoleSocket.Close() // so a missing master reads as EOF, not a hang
		master, err := recvPty(consoleParent)
		if err != nil {
			p.Signal(unix.SIGKILL)
			p.Wait()
			return 0, err
		}
		pty := startPty(master, o.Stdin, o.Stdout, o.Resize)
		defer pty.close()
	}
	ps, err := p.Wait()
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return 128 + int(ws.Signal()), nil
			}
			return ws.ExitStatus(), nil
		}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func mergeEnv(base, add []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, b := range out {
			if bk, _, _ := strings.Cut(b, "="); bk == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// resolveUser resolves uid[:gid] or name[:group] through the container's
// own /etc/passwd and /etc/group.
func resolveUser(rootfs, spec string) (int, int, []int, error) {
	name, group, _ := strings.Cut(spec, ":")
	passwd, _ := user.ParsePasswdFileFilter(filepath.Join(rootfs, "etc/passwd"), nil)
	groups, _ := user.ParseGroupFileFilter(filepath.Join(rootfs, "etc/group"), nil)
	uid, gid := -1, 0
	var uname string
	if n, err := strconv.Atoi(name); err == nil {
		uid = n
		for _, u := range passwd {
			if u.Uid == n {
				gid, uname = u.Gid, u.Name
			}
		}
	} else {
		for _, u := range passwd {
			if u.Name == name {
				uid, gid, uname = u.Uid, u.Gid, u.Name
			}
		}
		if uid < 0 {
			return 0, 0, nil, fmt.Errorf("unable to find user %s: no matching entries in the container's /etc/passwd", name)
		}
	}
	if group != "" {
		if n, err := strconv.Atoi(group); err == nil {
			gid = n
		} else {
			found := false
			for _, g := range groups {
				if g.Name == group {
					gid, found = g.Gid, true
				}
			}
			if !found {
				return 0, 0, nil, fmt.Errorf("unable to find group %s: no matching entries in the container's /etc/group", group)
			}
		}
	}
	var extra []int
	for _, g := range groups {
		for _, m := range g.List {
			if uname != "" && m == uname && g.Gid != gid {
				extra = append(extra, g.Gid)
			}
		}
	}
	return uid, gid, extra, nil
}
