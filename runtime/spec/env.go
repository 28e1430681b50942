package spec

import (
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// envList is an environment in which a later value of a key replaces the
// earlier one in place, as docker merges environments.
type envList struct {
	entries []string
	index   map[string]int
}

func (e *envList) set(kv string) {
	if e.index == nil {
		e.index = map[string]int{}
	}
	key, _, _ := strings.Cut(kv, "=")
	if i, ok := e.index[key]; ok {
		e.entries[i] = kv
		return
	}
	e.index[key] = len(e.entries)
	e.entries = append(e.entries, kv)
}

func (e *envList) unset(key string) {
	i, ok := e.index[key]
	if !ok {
		return
	}
	e.entries = append(e.entries[:i], e.entries[i+1:]...)
	delete(e.index, key)
	for k, j := range e.index {
		if j > i {
			e.index[k] = j - 1
		}
	}
}

func (e *envList) has(key string) bool {
	_, ok := e.index[key]
	return ok
}

func (g *generator) setEnv(s *specs.Spec) error {
	lookup := g.o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var env envList
	env.set("PATH=" + DefaultPathEnv)
	env.set("HOSTNAME=" + g.hostname)
	if g.o.TTY {
		env.set("TERM=xterm")
	}
	for _, kv := range g.img.Env {
		if err := applyEnv(&env, kv, "the image's ENV", nil); err != nil {
			return err
		}
	}
	for _, f := range g.o.EnvFiles {
		lines, err := readEnvFile(f, lookup)
		if err != nil {
			return err
		}
		for _, kv := range lines {
			env.set(kv)
		}
	}
	for _, kv := range g.o.Env {
		if err := applyEnv(&env, kv, "--env", lookup); err != nil {
			return err
		}
	}
	if !env.has("HOME") {
		env.set("HOME=" + g.user.home)
	}
	g.env = env.entries
	s.Process.Env = env.entries
	return nil
}

// applyEnv sets KEY=VALUE, or for a bare KEY the caller's value; a bare KEY
// the caller lacks removes KEY, as docker does.
func applyEnv(env *envList, kv, from string, lookup func(string) (string, bool)) error {
	key, _, hasValue := strings.Cut(kv, "=")
	switch {
	case key == "":
		return invalidf("%s %q: no variable name", from, kv)
	case strings.ContainsRune(kv, 0):
		return invalidf("%s %q: contains a NUL byte", from, kv)
	case hasValue:
		env.set(kv)
	case lookup != nil:
		if v, ok := lookup(key); ok {
			env.set(key + "=" + v)
			return nil
		}
		fallthrough
	default:
		env.unset(key)
	}
	return nil
}
