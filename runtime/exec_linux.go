//go:build linux

package runtime

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"

	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer"
	"path/filepath"
	"strconv"
	"strings"
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
}

// Exec runs a process in a running container and returns its exit code
// (128+N when killed by signal N).
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
	p.Stdin, p.Stdout, p.Stderr = o.Stdin, o.Stdout, o.Stderr
	if err := lc.Run(p); err != nil {
		return startErrorCode(err.Error()), err
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
