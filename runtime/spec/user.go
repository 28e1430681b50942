package spec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// execUser is a user resolved in the image.
type execUser struct {
	uid, gid uint32
	sgids    []uint32
	home     string
}

// openInRootfs opens name (an absolute path in the container) with symlinks
// resolved inside rootfs, so a hostile image can't point /etc/passwd at the
// host's files. A missing file returns a nil file and no error.
func openInRootfs(rootfs, name string) (*os.File, error) {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// resolveUser resolves a user spec (name, uid, name:group, uid:gid, …) with
// the image's /etc/passwd and /etc/group, as docker does: numeric ids need no
// entry, names must have one; the user's groups in /etc/group become its
// supplementary groups unless a group is given.
func resolveUser(rootfs, spec, from string) (execUser, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if hasGroup && (name == "" || group == "" || strings.Contains(group, ":")) {
		return execUser{}, invalidf("%s %q: want USER, UID, USER:GROUP or UID:GID", from, spec)
	}
	passwd, err := openInRootfs(rootfs, "/etc/passwd")
	if err != nil {
		return execUser{}, fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	if passwd != nil {
		defer passwd.Close()
	}
	groups, err := openInRootfs(rootfs, "/etc/group")
	if err != nil {
		return execUser{}, fmt.Errorf("reading the image's /etc/group: %w", err)
	}
	if groups != nil {
		defer groups.Close()
	}
	// A nil *os.File in an io.Reader is not a nil reader: pass true nils.
	var pr, gr io.Reader
	if passwd != nil {
		pr = passwd
	}
	if groups != nil {
		gr = groups
	}
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, pr, gr)
	switch {
	case err == nil:
	case errors.Is(err, user.ErrNoPasswdEntries):
		if passwd == nil {
			return execUser{}, invalidf("%s %q: user %q not found: the image has no /etc/passwd (numeric ids work without one)", from, spec, name)
		}
		return execUser{}, invalidf("%s %q: user %q not found in the image's /etc/passwd", from, spec, name)
	case errors.Is(err, user.ErrNoGroupEntries):
		if groups == nil {
			return execUser{}, invalidf("%s %q: group %q not found: the image has no /etc/group (numeric ids work without one)", from, spec, group)
		}
		return execUser{}, invalidf("%s %q: group %q not found in the image's /etc/group", from, spec, group)
	case errors.Is(err, user.ErrRange):
		return execUser{}, invalidf("%s %q: %v", from, spec, user.ErrRange)
	default:
		return execUser{}, fmt.Errorf("%s %q: %w", from, spec, err)
	}
	eu := execUser{uid: uint32(u.Uid), gid: uint32(u.Gid), home: u.Home}
	for _, g := range u.Sgids {
		eu.sgids = append(eu.sgids, uint32(g))
	}
	if eu.home == "" {
		eu.home = "/"
	}
	return eu, nil
}

func (g *generator) setUser(s *specs.Spec) error {
	spec, from := g.img.User, "the image's USER"
	if g.o.User != "" {
		spec, from = g.o.User, "--user"
	}
	u, err := resolveUser(g.rootfs, spec, from)
	if err != nil {
		return err
	}
	g.user = u
	s.Process.User = specs.User{UID: u.uid, GID: u.gid, AdditionalGids: u.sgids}
	return nil
}
