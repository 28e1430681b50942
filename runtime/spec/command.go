package spec

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// checkCommand fails early, with docker's wording, when the command is not
// in the rootfs (ErrCommandNotFound) or cannot be executed
// (ErrNotExecutable). It checks only what the rootfs alone decides: a path
// under a mount, or a PATH search that passes through one, is left to exec.
func (g *generator) checkCommand(*specs.Spec) error {
	cmd := g.args[0]
	if strings.Contains(cmd, "/") {
		p := cmd
		if !path.IsAbs(p) {
			p = path.Join(g.cwd, p)
		}
		if g.underMount(p) {
			return nil
		}
		switch err := g.executable(p); {
		case errors.Is(err, fs.ErrNotExist):
			return errorf(ErrCommandNotFound, "exec: %q: stat %s: no such file or directory", cmd, p)
		case err != nil:
			return err
		}
		return nil
	}
	var pathEnv string
	for _, kv := range g.env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	uncertain := false
	for _, dir := range strings.Split(pathEnv, ":") {
		if !path.IsAbs(dir) {
			uncertain = true // relative to the working directory: leave it to exec
			continue
		}
		p := path.Join(dir, cmd)
		if g.underMount(p) {
			uncertain = true
			continue
		}
		if g.executable(p) == nil {
			return nil
		}
	}
	if uncertain {
		return nil
	}
	return errorf(ErrCommandNotFound, "exec: %q: executable file not found in $PATH", cmd)
}

// executable checks that p (a path in the container) is an executable file.
func (g *generator) executable(p string) error {
	hp, err := securejoin.SecureJoin(g.rootfs, p)
	if err != nil {
		return err
	}
	fi, err := os.Stat(hp)
	switch {
	case err != nil:
		return err
	case fi.IsDir():
		return errorf(ErrNotExecutable, "exec: %q: is a directory", p)
	case fi.Mode()&0o111 == 0:
		return errorf(ErrNotExecutable, "exec: %q: permission denied", p)
	}
	return nil
}

// underMount reports whether p lies at or under a mount other than the rootfs.
func (g *generator) underMount(p string) bool {
	for _, d := range g.dests {
		if underOrAt(p, d) {
			return true
		}
	}
	for _, d := range []string{"/proc", "/dev", "/sys"} {
		if underOrAt(p, d) {
			return true
		}
	}
	return false
}
