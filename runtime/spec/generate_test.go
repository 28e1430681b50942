//go:build linux

package spec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeHost is a host with every capability, a nofile hard limit of 4096 and
// one device, so generated specs do not depend on the machine.
func fakeHost() *host {
	var caps []string
	for _, c := range capability.ListKnown() {
		caps = append(caps, capName(c))
	}
	mode := fs.FileMode(0o666)
	return &host{
		caps: caps,
		rlimit: func(name string) (uint64, bool) {
			if name == "nofile" {
				return 4096, true
			}
			return Unlimited, true
		},
		devices: func() ([]specs.LinuxDevice, error) {
			return []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: ptr(uint32(0)), GID: ptr(uint32(0))}}, nil
		},
		numCPU:         4,
		seccompDefault: seccomp.GetDefaultProfile,
		seccompLoad:    seccomp.LoadProfile,
	}
}

// without returns h lacking the given capabilities.
func without(h *host, caps ...string) *host {
	h.caps = slices.DeleteFunc(h.caps, func(c string) bool { return slices.Contains(caps, c) })
	return h
}

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// makeRootfs lays out a small image: users, groups and a few executables.
func makeRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"app:x:1000:1000:App:/home/app:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" +
			"nohome:x:1001:1001:::/bin/sh\n",
		"etc/group": "root:x:0:\n" +
			"wheel:x:10:app\n" +
			"app:x:1000:\n" +
			"audio:x:29:other,app\n" +
			"nogroup:x:65534:\n",
	}
	for name, body := range files {
		writeFile(t, filepath.Join(root, name), body, 0o644)
	}
	for _, exe := range []string{"bin/sh", "usr/bin/app", "usr/local/bin/entry"} {
		writeFile(t, filepath.Join(root, exe), "#!/bin/sh\n", 0o755)
	}
	writeFile(t, filepath.Join(root, "usr/bin/notexec"), "data", 0o644)
	if err := os.MkdirAll(filepath.Join(root, "usr/bin/adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeFile(t *testing.T, p, body string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

var baseImage = ImageConfig{Cmd: []string{"/bin/sh"}}

func noEnv(string) (string, bool) { return "", false }

// gen generates with the fake host and a test ID.
func gen(t *testing.T, img ImageConfig, o Options, rootfs string) (*specs.Spec, error) {
	t.Helper()
	if o.ID == "" {
		o.ID = testID
	}
	if o.LookupEnv == nil {
		o.LookupEnv = noEnv
	}
	return generate(img, o, rootfs, fakeHost())
}

func mustGen(t *testing.T, img ImageConfig, o Options, rootfs string) *specs.Spec {
	t.Helper()
	s, err := gen(t, img, o, rootfs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func strp(s string) *string { return &s }

func TestCommandMerge(t *testing.T) {
	root := makeRootfs(t)
	img := ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"}}
	for _, tc := range []struct {
		name string
		img  ImageConfig
		o    Options
		want []string
		err  error
	}{
		{name: "image entrypoint and cmd", img: img, want: []string{"/bin/sh", "-c", "echo hi"}},
		{name: "cmd args replace image cmd", img: img, o: Options{Cmd: []string{"date"}}, want: []string{"/bin/sh", "-c", "date"}},
		{name: "entrypoint drops image cmd", img: img, o: Options{Entrypoint: strp("/usr/bin/app")}, want: []string{"/usr/bin/app"}},
		{name: "entrypoint with cmd args", img: img, o: Options{Entrypoint: strp("/usr/bin/app"), Cmd: []string{"-v", "x"}}, want: []string{"/usr/bin/app", "-v", "x"}},
		{name: "entrypoint kept whole", img: img, o: Options{Entrypoint: strp("app --flag")}, err: ErrCommandNotFound},
		{name: "empty entrypoint clears", img: img, o: Options{Entrypoint: strp(""), Cmd: []string{"/bin/sh"}}, want: []string{"/bin/sh"}},
		{name: "empty entrypoint no cmd", img: img, o: Options{Entrypoint: strp("")}, err: ErrNoCommand},
		{name: "cmd only image", img: ImageConfig{Cmd: []string{"app", "serve"}}, want: []string{"app", "serve"}},
		{name: "entrypoint only image", img: ImageConfig{Entrypoint: []string{"entry"}}, o: Options{Cmd: []string{"a"}}, want: []string{"entry", "a"}},
		{name: "nothing", img: ImageConfig{}, err: ErrNoCommand},
		{name: "empty command", img: ImageConfig{Cmd: []string{""}}, err: ErrNoCommand},
		{name: "init wraps", img: img, o: Options{Init: true, InitPath: "/usr/local/bin/berth"}, want: []string{InitPathInContainer, "--", "/bin/sh", "-c", "echo hi"}},
		{name: "init needs path", img: img, o: Options{Init: true}, err: ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := gen(t, tc.img, tc.o, root)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Process.Args, tc.want) {
				t.Fatalf("args = %q, want %q", s.Process.Args, tc.want)
			}
		})
	}
	if _, err := gen(t, ImageConfig{}, Options{}, root); err == nil || err.Error() != "no command specified: the image has no ENTRYPOINT or CMD and none was given" {
		t.Fatalf("no-command message: %v", err)
	}
}

func TestEnvMerge(t *testing.T) {
	root := makeRootfs(t)
	envFile := filepath.Join(t.TempDir(), "app.env")
	writeFile(t, envFile, "# settings\nFROM_FILE=file\nSHARED=file\nPASS_THROUGH\n", 0o644)
	lookup := func(k string) (string, bool) {
		switch k {
		case "PASS_THROUGH":
			return "caller", true
		case "CALLER":
			return "caller-e", true
		}
		return "", false
	}
	host := "0123456789ab"
	for _, tc := range []struct {
		name string
		img  []string
		o    Options
		want []string
		err  string
	}{
		{name: "defaults", want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + host, "HOME=/root"}},
		{name: "image PATH replaces default in place", img: []string{"PATH=/opt/bin", "LANG=C.UTF-8"},
			want: []string{"PATH=/opt/bin", "HOSTNAME=" + host, "LANG=C.UTF-8", "HOME=/root"}},
		{name: "tty", o: Options{TTY: true}, want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + host, "TERM=xterm", "HOME=/root"}},
		{name: "image HOME kept", img: []string{"HOME=/srv"}, want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + host, "HOME=/srv"}},
		{name: "user HOME", o: Options{User: "app"}, want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + host, "HOME=/home/app"}},
		{name: "image, then env file, then -e", img: []string{"SHARED=image", "A=image"},
			o:    Options{EnvFiles: []string{envFile}, Env: []string{"SHARED=flag", "B=flag"}},
			want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + host, "SHARED=flag", "A=image", "FROM_FILE=file", "PASS_THROUGH=caller", "B=flag", "HOME=/root"}},
		{name: "bare -e from caller", o: Options{Env: []string{"CALLER"}},
			want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + host, "CALLER=caller-e", "HOME=/root"}},
		{name: "bare -e unset removes", img: []string{"A=1", "DROP=me", "B=2"}, o: Options{Env: []string{"DROP"}},
			want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + host, "A=1", "B=2", "HOME=/root"}},
		{name: "-e overrides HOSTNAME", o: Options{Env: []string{"HOSTNAME=mine", "EMPTY="}},
			want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=mine", "EMPTY=", "HOME=/root"}},
		{name: "no key", o: Options{Env: []string{"=x"}}, err: `--env "=x": no variable name`},
		{name: "NUL", o: Options{Env: []string{"A=\x00"}}, err: "NUL"},
		{name: "missing env file", o: Options{EnvFiles: []string{"/nonexistent.env"}}, err: "/nonexistent.env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.LookupEnv = lookup
			s, err := gen(t, ImageConfig{Cmd: []string{"/bin/sh"}, Env: tc.img}, tc.o, root)
			if wantErr(t, err, tc.err) {
				return
			}
			if !slices.Equal(s.Process.Env, tc.want) {
				t.Fatalf("env =\n%q\nwant\n%q", s.Process.Env, tc.want)
			}
		})
	}
}

func TestWorkDirAndHostname(t *testing.T) {
	root := makeRootfs(t)
	for _, tc := range []struct {
		name              string
		img               ImageConfig
		o                 Options
		wantCwd, wantHost string
		err               string
	}{
		{name: "defaults", img: baseImage, wantCwd: "/", wantHost: "0123456789ab"},
		{name: "image workdir", img: ImageConfig{Cmd: []string{"/bin/sh"}, WorkingDir: "/srv/app/"}, wantCwd: "/srv/app", wantHost: "0123456789ab"},
		{name: "-w wins", img: ImageConfig{Cmd: []string{"/bin/sh"}, WorkingDir: "/srv"}, o: Options{WorkDir: "/tmp"}, wantCwd: "/tmp", wantHost: "0123456789ab"},
		{name: "relative -w", img: baseImage, o: Options{WorkDir: "tmp"}, err: `--workdir "tmp" must be an absolute path`},
		{name: "relative image workdir", img: ImageConfig{Cmd: []string{"/bin/sh"}, WorkingDir: "srv"}, err: `the image's WORKDIR "srv" must be an absolute path`},
		{name: "hostname option", img: baseImage, o: Options{Hostname: "web-1.local"}, wantCwd: "/", wantHost: "web-1.local"},
		{name: "short ID", img: baseImage, o: Options{ID: "abc"}, wantCwd: "/", wantHost: "abc"},
		{name: "bad hostname", img: baseImage, o: Options{Hostname: "-web"}, err: `--hostname "-web"`},
		{name: "hostname with underscore", img: baseImage, o: Options{Hostname: "a_b"}, err: "character '_' not allowed"},
		{name: "long hostname", img: baseImage, o: Options{Hostname: strings.Repeat("a", 64)}, err: "longer than 63"},
		{name: "bad name", img: baseImage, o: Options{Name: "-x"}, err: `--name "-x"`},
		{name: "good name", img: baseImage, o: Options{Name: "web_1.a-b"}, wantCwd: "/", wantHost: "0123456789ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := gen(t, tc.img, tc.o, root)
			if wantErr(t, err, tc.err) {
				return
			}
			if s.Process.Cwd != tc.wantCwd || s.Hostname != tc.wantHost {
				t.Fatalf("cwd %q hostname %q, want %q %q", s.Process.Cwd, s.Hostname, tc.wantCwd, tc.wantHost)
			}
		})
	}
	if _, err := generate(baseImage, Options{}, root, fakeHost()); err == nil || !strings.Contains(err.Error(), "neither a hostname nor a container ID") {
		t.Fatalf("no ID, no hostname: %v", err)
	}
}

func TestUserResolution(t *testing.T) {
	root := makeRootfs(t)
	bare := t.TempDir() // an image without /etc/passwd or /etc/group
	writeFile(t, filepath.Join(bare, "bin/sh"), "", 0o755)
	for _, tc := range []struct {
		name, rootfs, imgUser, user string
		uid, gid                    uint32
		sgids                       []uint32
		home, err                   string
	}{
		{name: "default root", home: "/root"},
		{name: "name", user: "app", uid: 1000, gid: 1000, sgids: []uint32{10, 29}, home: "/home/app"},
		{name: "uid in passwd", user: "1000", uid: 1000, gid: 1000, sgids: []uint32{10, 29}, home: "/home/app"},
		{name: "uid not in passwd", user: "4242", uid: 4242, gid: 0, home: "/"},
		{name: "name:group", user: "app:audio", uid: 1000, gid: 29, home: "/home/app"},
		{name: "name:gid", user: "app:4242", uid: 1000, gid: 4242, home: "/home/app"},
		{name: "uid:gid", user: "4242:4343", uid: 4242, gid: 4343, home: "/"},
		{name: "uid:group", user: "4242:audio", uid: 4242, gid: 29, home: "/"},
		{name: "image USER", imgUser: "nobody", uid: 65534, gid: 65534, home: "/nonexistent"},
		{name: "-u overrides image USER", imgUser: "nobody", user: "app", uid: 1000, gid: 1000, sgids: []uint32{10, 29}, home: "/home/app"},
		{name: "empty home", user: "nohome", uid: 1001, gid: 1001, home: "/"},
		{name: "missing user", user: "ghost", err: `--user "ghost": user "ghost" not found in the image's /etc/passwd`},
		{name: "missing image user", imgUser: "ghost", err: `the image's USER "ghost": user "ghost" not found`},
		{name: "missing group", user: "app:ghosts", err: `group "ghosts" not found in the image's /etc/group`},
		{name: "empty group", user: "app:", err: "want USER, UID, USER:GROUP or UID:GID"},
		{name: "empty user", user: ":app", err: "want USER, UID"},
		{name: "two colons", user: "a:b:c", err: "want USER, UID"},
		{name: "out of range", user: "4294967296", err: "must be in range"},
		{name: "no passwd, name", rootfs: bare, user: "app", err: "the image has no /etc/passwd"},
		{name: "no group file, group name", rootfs: bare, user: "0:wheel", err: "the image has no /etc/group"},
		{name: "no passwd, numeric", rootfs: bare, user: "123:456", uid: 123, gid: 456, home: "/"},
		{name: "no passwd, root", rootfs: bare, home: "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := root
			if tc.rootfs != "" {
				rootfs = tc.rootfs
			}
			s, err := gen(t, ImageConfig{Cmd: []string{"/bin/sh"}, User: tc.imgUser}, Options{User: tc.user}, rootfs)
			if wantErr(t, err, tc.err) {
				return
			}
			u := s.Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !slices.Equal(u.AdditionalGids, tc.sgids) {
				t.Fatalf("user = %+v, want uid %d gid %d groups %v", u, tc.uid, tc.gid, tc.sgids)
			}
			if home := envValue(s, "HOME"); home != tc.home {
				t.Fatalf("HOME = %q, want %q", home, tc.home)
			}
		})
	}
}

func TestUserFilesResolvedInsideRootfs(t *testing.T) {
	root := makeRootfs(t)
	// An absolute symlink must resolve inside the rootfs, never on the host.
	writeFile(t, filepath.Join(root, "real/passwd"), "svc:x:777:777::/svc:/bin/sh\n", 0o644)
	if err := os.Remove(filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/../../../../real/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	s := mustGen(t, baseImage, Options{User: "svc"}, root)
	if s.Process.User.UID != 777 {
		t.Fatalf("user = %+v", s.Process.User)
	}
}

func envValue(s *specs.Spec, key string) string {
	for _, kv := range s.Process.Env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestCapabilities(t *testing.T) {
	root := makeRootfs(t)
	def := DefaultCapabilities()
	all := fakeHost().caps
	minus := func(list []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(c string) bool { return slices.Contains(drop, c) })
	}
	for _, tc := range []struct {
		name string
		h    *host
		o    Options
		want []string
		err  string
	}{
		{name: "docker defaults", want: def},
		{name: "add", o: Options{CapAdd: []string{"net_admin", "CAP_SYS_PTRACE"}}, want: append(slices.Clone(def), "CAP_NET_ADMIN", "CAP_SYS_PTRACE")},
		{name: "add a default is no duplicate", o: Options{CapAdd: []string{"CHOWN"}}, want: def},
		{name: "drop", o: Options{CapDrop: []string{"chown", "NET_RAW"}}, want: minus(def, "CAP_CHOWN", "CAP_NET_RAW")},
		{name: "drop wins over add of a default", o: Options{CapAdd: []string{"KILL"}, CapDrop: []string{"KILL"}}, want: append(minus(def, "CAP_KILL"), "CAP_KILL")},
		{name: "drop ALL keeps adds", o: Options{CapDrop: []string{"ALL"}, CapAdd: []string{"NET_BIND_SERVICE"}}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop ALL", o: Options{CapDrop: []string{"all"}}, want: nil},
		{name: "add ALL less drops", o: Options{CapAdd: []string{"ALL"}, CapDrop: []string{"SYS_ADMIN"}}, want: minus(all, "CAP_SYS_ADMIN")},
		{name: "privileged ignores drops", o: Options{Privileged: true, CapDrop: []string{"ALL"}}, want: all},
		{name: "privileged gets only what berth holds", h: without(fakeHost(), "CAP_SYS_RESOURCE"), o: Options{Privileged: true}, want: minus(all, "CAP_SYS_RESOURCE")},
		{name: "add ALL gets only what berth holds", h: without(fakeHost(), "CAP_SYS_RESOURCE"), o: Options{CapAdd: []string{"ALL"}}, want: minus(all, "CAP_SYS_RESOURCE")},
		{name: "defaults berth lacks are left out", h: without(fakeHost(), "CAP_MKNOD"), want: minus(def, "CAP_MKNOD")},
		{name: "add what berth lacks", h: without(fakeHost(), "CAP_SYS_RESOURCE"), o: Options{CapAdd: []string{"SYS_RESOURCE"}},
			err: "--cap-add CAP_SYS_RESOURCE: berth itself does not hold this capability"},
		{name: "unknown add", o: Options{CapAdd: []string{"FLY"}}, err: `--cap-add: unknown capability "FLY"`},
		{name: "unknown drop", o: Options{CapDrop: []string{"FLY"}}, err: `--cap-drop: unknown capability "FLY"`},
		{name: "non-root user gets the same sets", o: Options{User: "app"}, want: def},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			if h == nil {
				h = fakeHost()
			}
			tc.o.ID, tc.o.LookupEnv = testID, noEnv
			s, err := generate(baseImage, tc.o, root, h)
			if wantErr(t, err, tc.err) {
				return
			}
			c := s.Process.Capabilities
			for set, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s = %q, want %q", set, got, tc.want)
				}
			}
			if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
				t.Errorf("inheritable %q ambient %q, want none", c.Inheritable, c.Ambient)
			}
		})
	}
}

// allowed reports whether the seccomp profile allows a syscall outright.
func allowed(p *specs.LinuxSeccomp, name string) bool {
	for _, sc := range p.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 && slices.Contains(sc.Names, name) {
			return true
		}
	}
	return false
}

func TestSeccomp(t *testing.T) {
	root := makeRootfs(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`, 0o644)
	malformed := filepath.Join(dir, "bad.json")
	writeFile(t, malformed, `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [`, 0o644)
	conflicting := filepath.Join(dir, "conflict.json")
	writeFile(t, conflicting, `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}`, 0o644)

	s := mustGen(t, baseImage, Options{}, root)
	p := s.Linux.Seccomp
	if p == nil || p.DefaultAction != specs.ActErrno || !allowed(p, "read") {
		t.Fatalf("default profile: %+v", p)
	}
	if allowed(p, "mount") || allowed(p, "bpf") {
		t.Fatal("the default profile allows mount or bpf without CAP_SYS_ADMIN")
	}
	// The profile adapts to the capabilities, as docker's does.
	s = mustGen(t, baseImage, Options{CapAdd: []string{"SYS_ADMIN"}}, root)
	if !allowed(s.Linux.Seccomp, "mount") {
		t.Fatal("CAP_SYS_ADMIN does not allow mount")
	}
	for name, o := range map[string]Options{
		"unconfined":            {Seccomp: SeccompUnconfined},
		"privileged":            {Privileged: true},
		"privileged with file":  {Privileged: true, Seccomp: good},
		"no seccomp in build":   {NoSeccomp: true},
		"no seccomp unconfined": {NoSeccomp: true, Seccomp: SeccompUnconfined},
	} {
		if s := mustGen(t, baseImage, o, root); s.Linux.Seccomp != nil {
			t.Errorf("%s: seccomp %+v, want none", name, s.Linux.Seccomp)
		}
	}
	s = mustGen(t, baseImage, Options{Seccomp: good}, root)
	if p := s.Linux.Seccomp; p == nil || p.DefaultAction != specs.ActAllow || len(p.Syscalls) != 1 || p.Syscalls[0].Names[0] != "mkdir" {
		t.Fatalf("profile from file: %+v", p)
	}
	for file, want := range map[string]string{
		malformed:               "--security-opt seccomp=" + malformed + ": not a valid seccomp profile",
		conflicting:             "both 'name' and 'names'",
		filepath.Join(dir, "x"): "no such file or directory",
	} {
		_, err := gen(t, baseImage, Options{Seccomp: file}, root)
		wantErr(t, err, want)
	}
	_, err := gen(t, baseImage, Options{Seccomp: good, NoSeccomp: true}, root)
	wantErr(t, err, "built without seccomp support")
}

func TestResources(t *testing.T) {
	root := makeRootfs(t)
	const m = 512 << 20
	s := mustGen(t, baseImage, Options{Memory: m, MemoryReservation: m / 2, CPUs: 0.5, CPUShares: 512, PidsLimit: 100}, root)
	r := s.Linux.Resources
	if *r.Memory.Limit != m || *r.Memory.Reservation != m/2 || *r.Memory.Swap != 2*m {
		t.Errorf("memory %+v", r.Memory)
	}
	if *r.CPU.Quota != 50000 || *r.CPU.Period != CPUPeriod || *r.CPU.Shares != 512 {
		t.Errorf("cpu %+v", r.CPU)
	}
	if *r.Pids.Limit != 100 {
		t.Errorf("pids %+v", r.Pids)
	}
	if *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom score adj %d", *s.Process.OOMScoreAdj)
	}

	s = mustGen(t, baseImage, Options{Memory: m, MemorySwap: -1, CPUs: 1.000015}, root)
	if *s.Linux.Resources.Memory.Swap != -1 || *s.Linux.Resources.CPU.Quota != 100001 {
		t.Errorf("swap %d quota %d", *s.Linux.Resources.Memory.Swap, *s.Linux.Resources.CPU.Quota)
	}
	s = mustGen(t, baseImage, Options{Memory: m, MemorySwap: m}, root)
	if *s.Linux.Resources.Memory.Swap != m {
		t.Errorf("swap = memory: %d", *s.Linux.Resources.Memory.Swap)
	}
	s = mustGen(t, baseImage, Options{Memory: m, NoSwapLimit: true}, root)
	if s.Linux.Resources.Memory.Swap != nil {
		t.Errorf("swap without swap accounting: %d", *s.Linux.Resources.Memory.Swap)
	}
	s = mustGen(t, baseImage, Options{PidsLimit: -1}, root)
	if r := s.Linux.Resources; r.Memory != nil || r.CPU != nil || r.Pids != nil {
		t.Errorf("unlimited: %+v %+v %+v", r.Memory, r.CPU, r.Pids)
	}

	for _, tc := range []struct {
		o   Options
		err string
	}{
		{Options{Memory: 1024}, "--memory 1KiB is below the minimum of 6MiB"},
		{Options{Memory: -5}, "--memory -5 must not be negative"},
		{Options{MemoryReservation: 1 << 20}, "--memory-reservation 1MiB is below the minimum"},
		{Options{Memory: m, MemoryReservation: 2 * m}, "--memory-reservation 1GiB is above --memory 512MiB"},
		{Options{MemorySwap: m}, "--memory-swap needs --memory"},
		{Options{Memory: m, MemorySwap: m / 2}, "--memory-swap 256MiB is below --memory 512MiB"},
		{Options{Memory: m, MemorySwap: -2}, "--memory-swap -2 must be -1"},
		{Options{CPUs: -1}, "--cpus -1 must be > 0"},
		{Options{CPUs: 0.001}, "--cpus 0.001 is below the minimum of 0.01"},
		{Options{CPUs: 8}, "--cpus 8 is above the 4 CPUs available"},
		{Options{CPUShares: 1}, "--cpu-shares 1 is out of the range 2-262144"},
		{Options{CPUShares: 300000}, "--cpu-shares 300000 is out of the range"},
		{Options{PidsLimit: -2}, "--pids-limit -2 must be positive"},
	} {
		_, err := gen(t, baseImage, tc.o, root)
		wantErr(t, err, tc.err)
	}
}

func TestRlimits(t *testing.T) {
	root := makeRootfs(t)
	s := mustGen(t, baseImage, Options{Ulimits: []Ulimit{{"nofile", 1024, 2048}, {"core", 0, 0}, {"nofile", 4096, 4096}}}, root)
	want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 4096}, {Type: "RLIMIT_CORE"}}
	if !slices.Equal(s.Process.Rlimits, want) {
		t.Fatalf("rlimits %+v, want %+v", s.Process.Rlimits, want)
	}
	if s := mustGen(t, baseImage, Options{}, root); s.Process.Rlimits != nil {
		t.Fatalf("default rlimits %+v, want none (inherit berth's)", s.Process.Rlimits)
	}
	// Above the host's hard limit: fine with CAP_SYS_RESOURCE, an error without.
	big := Options{ID: testID, LookupEnv: noEnv, Ulimits: []Ulimit{{"nofile", 8192, 8192}}}
	if _, err := generate(baseImage, big, root, fakeHost()); err != nil {
		t.Fatal(err)
	}
	_, err := generate(baseImage, big, root, without(fakeHost(), "CAP_SYS_RESOURCE"))
	wantErr(t, err, "--ulimit nofile=8192:8192: hard limit 8192 is above this host's 4096, and berth lacks CAP_SYS_RESOURCE")
	within := Options{ID: testID, LookupEnv: noEnv, Ulimits: []Ulimit{{"nofile", 4096, 4096}, {"nproc", 10, Unlimited}}}
	if _, err := generate(baseImage, within, root, without(fakeHost(), "CAP_SYS_RESOURCE")); err != nil {
		t.Fatal(err)
	}
	_, err = gen(t, baseImage, Options{Ulimits: []Ulimit{{"nofile", 2, 1}}}, root)
	wantErr(t, err, "the soft limit is above the hard limit")
	_, err = gen(t, baseImage, Options{Ulimits: []Ulimit{{"files", 1, 1}}}, root)
	wantErr(t, err, `unknown limit "files"`)
}

func mountAt(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func destinations(s *specs.Spec) []string {
	var d []string
	for _, m := range s.Mounts {
		d = append(d, m.Destination)
	}
	return d
}

func TestMounts(t *testing.T) {
	root := makeRootfs(t)
	s := mustGen(t, baseImage, Options{}, root)
	if got := destinations(s); !slices.Equal(got, []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"}) {
		t.Fatalf("default mounts %q", got)
	}
	if m := mountAt(s, "/dev/shm"); !slices.Contains(m.Options, "size=67108864") {
		t.Fatalf("/dev/shm %+v", m)
	}
	if s.Root.Readonly || !slices.Contains(mountAt(s, "/sys").Options, "ro") || !slices.Contains(mountAt(s, "/sys/fs/cgroup").Options, "ro") {
		t.Fatal("root, /sys or cgroup writable by default")
	}

	o := Options{
		Mounts: []Mount{
			{Source: "/srv/logs", Destination: "/data/logs"},
			{Source: "/srv/data", Destination: "/data/", ReadOnly: true},
		},
		Tmpfs: []string{"/run:size=1m", "/dev/shm:size=1g"},
		ExtraMounts: []specs.Mount{
			{Destination: "/etc/hosts", Type: "bind", Source: "/run/berth/x/hosts", Options: []string{"rbind", "ro"}},
			{Destination: "/data", Type: "bind", Source: "/ignored", Options: []string{"rbind"}},
		},
		ReadOnly: true,
	}
	s = mustGen(t, baseImage, o, root)
	// Parents before children; otherwise in the order given.
	want := []string{"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/data", "/run", "/data/logs", "/dev/shm", "/etc/hosts"}
	if got := destinations(s); !slices.Equal(got, want) {
		t.Fatalf("mounts %q\nwant %q", got, want)
	}
	if m := mountAt(s, "/data"); m.Source != "/srv/data" || !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) || m.Type != "bind" {
		t.Fatalf("/data %+v", m)
	}
	if m := mountAt(s, "/data/logs"); !slices.Equal(m.Options, []string{"rbind", "rprivate"}) {
		t.Fatalf("/data/logs %+v", m)
	}
	if m := mountAt(s, "/dev/shm"); m.Source != "tmpfs" || !slices.Contains(m.Options, "size=1g") {
		t.Fatalf("user /dev/shm %+v", m)
	}
	if !s.Root.Readonly || slices.Contains(mountAt(s, "/proc").Options, "ro") || slices.Contains(mountAt(s, "/dev/mqueue").Options, "ro") {
		t.Fatal("--read-only: root writable, or /proc or /dev/mqueue read-only")
	}

	// A /dev of the user's replaces every default mount under /dev.
	s = mustGen(t, baseImage, Options{Tmpfs: []string{"/dev"}}, root)
	if got := destinations(s); !slices.Equal(got, []string{"/proc", "/sys", "/sys/fs/cgroup", "/dev"}) {
		t.Fatalf("with a user /dev: %q", got)
	}

	// --privileged: /sys and the cgroup mount writable, even with --read-only.
	s = mustGen(t, baseImage, Options{Privileged: true, ReadOnly: true}, root)
	if slices.Contains(mountAt(s, "/sys").Options, "ro") || slices.Contains(mountAt(s, "/sys/fs/cgroup").Options, "ro") {
		t.Fatal("privileged /sys or cgroup read-only")
	}

	s = mustGen(t, baseImage, Options{Init: true, InitPath: "/usr/local/bin/berth", Mounts: []Mount{{Source: "/a", Destination: "/z"}}}, root)
	if m := s.Mounts[len(s.Mounts)-1]; m.Destination != InitPathInContainer || m.Source != "/usr/local/bin/berth" || !slices.Equal(m.Options, []string{"bind", "ro"}) {
		t.Fatalf("init mount %+v", m)
	}

	for _, tc := range []struct {
		o   Options
		err string
	}{
		{Options{Mounts: []Mount{{Source: "/a", Destination: "/d"}, {Source: "/b", Destination: "/d/"}}}, "duplicate mount point /d (-v /a:/d and -v /b:/d/)"},
		{Options{Mounts: []Mount{{Source: "/a", Destination: "/d"}}, Tmpfs: []string{"/d"}}, "duplicate mount point /d"},
		{Options{Init: true, InitPath: "/b", Mounts: []Mount{{Source: "/a", Destination: InitPathInContainer}}}, "duplicate mount point /sbin/berth-init"},
		{Options{Mounts: []Mount{{Source: "a", Destination: "/d"}}}, "the source must be an absolute host path"},
		{Options{Mounts: []Mount{{Source: "/a", Destination: "d"}}}, `destination "d" is not an absolute path`},
		{Options{Mounts: []Mount{{Source: "/a", Destination: "/"}}}, "destination can't be /"},
		{Options{Tmpfs: []string{"/t:bogus"}}, `unknown option "bogus"`},
		{Options{ExtraMounts: []specs.Mount{{Destination: "etc/hosts"}}}, "extra mount etc/hosts"},
		{Options{NetNSPath: "netns/x"}, `network namespace path "netns/x" must be absolute`},
	} {
		_, err := gen(t, baseImage, tc.o, root)
		wantErr(t, err, tc.err)
	}
}

func TestSecurityPathsAndDevices(t *testing.T) {
	root := makeRootfs(t)
	h := fakeHost()
	h.maskedExtra = []string{"/sys/devices/system/cpu/cpu0/thermal_throttle"}
	s, err := generate(baseImage, Options{ID: testID, LookupEnv: noEnv}, root, h)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.MaskedPaths, "/sys/devices/system/cpu/cpu0/thermal_throttle") ||
		!slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Fatalf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if d := s.Linux.Resources.Devices; len(d) != 8 || d[0].Allow || d[0].Access != "rwm" || !d[1].Allow {
		t.Fatalf("device rules %+v", d)
	}
	if len(s.Linux.Devices) != 0 {
		t.Fatalf("devices %+v", s.Linux.Devices)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	if !slices.Equal(ns, []specs.LinuxNamespaceType{"mount", "network", "uts", "pid", "ipc", "cgroup"}) {
		t.Fatalf("namespaces %q", ns)
	}

	s = mustGen(t, baseImage, Options{Privileged: true, NetNSPath: "/run/berth/netns/t1"}, root)
	if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil || len(s.Linux.Devices) != 1 ||
		len(s.Linux.Resources.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow {
		t.Fatalf("privileged: masked %q readonly %q devices %+v rules %+v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Linux.Devices, s.Linux.Resources.Devices)
	}
	if s.Linux.Namespaces[1] != (specs.LinuxNamespace{Type: "network", Path: "/run/berth/netns/t1"}) {
		t.Fatalf("netns %+v", s.Linux.Namespaces[1])
	}
}

func TestCommandCheck(t *testing.T) {
	root := makeRootfs(t)
	if err := os.Symlink("/usr/bin/app", filepath.Join(root, "bin/link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		o    Options
		env  []string
		err  error
		msg  string
	}{
		{name: "absolute", args: []string{"/usr/bin/app"}},
		{name: "in PATH", args: []string{"app"}},
		{name: "absolute symlink resolved in rootfs", args: []string{"/bin/link"}},
		{name: "relative to workdir", args: []string{"./app"}, o: Options{WorkDir: "/usr/bin"}},
		{name: "missing absolute", args: []string{"/nope"}, err: ErrCommandNotFound, msg: `exec: "/nope": stat /nope: no such file or directory`},
		{name: "missing in PATH", args: []string{"nope"}, err: ErrCommandNotFound, msg: `exec: "nope": executable file not found in $PATH`},
		{name: "not in image PATH", args: []string{"entry"}, env: []string{"PATH=/usr/bin"}, err: ErrCommandNotFound},
		{name: "not executable", args: []string{"/usr/bin/notexec"}, err: ErrNotExecutable, msg: `exec: "/usr/bin/notexec": permission denied`},
		{name: "directory", args: []string{"/usr/bin/adir"}, err: ErrNotExecutable, msg: "is a directory"},
		{name: "non-executable skipped in PATH", args: []string{"notexec"}, err: ErrCommandNotFound},
		{name: "under a volume", args: []string{"/opt/tool/run"}, o: Options{Mounts: []Mount{{Source: "/x", Destination: "/opt/tool"}}}},
		{name: "PATH through a volume", args: []string{"tool"}, env: []string{"PATH=/usr/bin:/opt/bin"}, o: Options{Mounts: []Mount{{Source: "/x", Destination: "/opt/bin"}}}},
		{name: "relative PATH entry", args: []string{"tool"}, env: []string{"PATH=bin:/usr/bin"}},
		{name: "under /proc", args: []string{"/proc/self/exe"}},
		{name: "init path not checked", args: []string{"/bin/sh"}, o: Options{Init: true, InitPath: "/host/berth"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gen(t, ImageConfig{Cmd: tc.args, Env: tc.env}, tc.o, root)
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestAnnotationsAndStopSignal(t *testing.T) {
	root := makeRootfs(t)
	img := ImageConfig{Cmd: []string{"/bin/sh"}, StopSignal: "SIGQUIT", Labels: map[string]string{"a": "image", "b": "image"}}
	s := mustGen(t, img, Options{Labels: map[string]string{"b": "flag", "c": "flag"}}, root)
	want := map[string]string{"a": "image", "b": "flag", "c": "flag", AnnotationStopSignal: "SIGQUIT"}
	if len(s.Annotations) != len(want) {
		t.Fatalf("annotations %v", s.Annotations)
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Fatalf("annotations %v, want %v", s.Annotations, want)
		}
	}
	if StopSignal(s) != syscall.SIGQUIT {
		t.Fatalf("StopSignal = %v", StopSignal(s))
	}
	s = mustGen(t, img, Options{StopSignal: "9"}, root)
	if s.Annotations[AnnotationStopSignal] != "SIGKILL" || StopSignal(s) != syscall.SIGKILL {
		t.Fatalf("--stop-signal 9: %q", s.Annotations[AnnotationStopSignal])
	}
	s = mustGen(t, baseImage, Options{StopSignal: "RTMIN+3"}, root)
	if s.Annotations[AnnotationStopSignal] != "SIGRTMIN+3" || StopSignal(s) != 37 {
		t.Fatalf("--stop-signal RTMIN+3: %q", s.Annotations[AnnotationStopSignal])
	}
	if s := mustGen(t, baseImage, Options{}, root); StopSignal(s) != syscall.SIGTERM || s.Annotations[AnnotationStopSignal] != "SIGTERM" {
		t.Fatalf("default stop signal %q", s.Annotations[AnnotationStopSignal])
	}
	if StopSignal(nil) != syscall.SIGTERM || StopSignal(&specs.Spec{}) != syscall.SIGTERM {
		t.Fatal("StopSignal of a spec without the annotation")
	}
	_, err := gen(t, baseImage, Options{StopSignal: "SIGNOPE"}, root)
	wantErr(t, err, `--stop-signal: invalid signal "SIGNOPE"`)
	_, err = gen(t, ImageConfig{Cmd: []string{"/bin/sh"}, StopSignal: "99"}, Options{}, root)
	wantErr(t, err, `the image's STOPSIGNAL: invalid signal "99"`)
	_, err = gen(t, baseImage, Options{Labels: map[string]string{"": "x"}}, root)
	wantErr(t, err, "--label with an empty key")
}

func TestSpecOpts(t *testing.T) {
	root := makeRootfs(t)
	s, err := generate(baseImage, Options{ID: testID, LookupEnv: noEnv}, root, fakeHost(),
		WithCgroupsPath("/berth/t1"), WithAnnotations(map[string]string{"x": "y"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.CgroupsPath != "/berth/t1" || s.Annotations["x"] != "y" {
		t.Fatalf("cgroups path %q annotations %v", s.Linux.CgroupsPath, s.Annotations)
	}
	boom := errors.New("boom")
	if _, err := generate(baseImage, Options{ID: testID, LookupEnv: noEnv}, root, fakeHost(), func(*specs.Spec) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing opt: %v", err)
	}
}

func TestRootfs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	writeFile(t, file, "", 0o644)
	for rootfs, want := range map[string]string{
		"":             `rootfs "" must be an absolute path`,
		"rel":          `rootfs "rel" must be an absolute path`,
		"/nonexistent": "no such file or directory",
		file:           "is not a directory",
	} {
		_, err := gen(t, baseImage, Options{}, rootfs)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rootfs %q: %v, want %q", rootfs, err, want)
		}
	}
}

// TestGenerateOnThisHost runs the real host probe once: whatever the machine,
// a default spec comes out and --privileged gets no more than berth holds.
func TestGenerateOnThisHost(t *testing.T) {
	root := makeRootfs(t)
	h, err := currentHost()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Generate(baseImage, Options{ID: testID, Privileged: true}, root)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, h.caps) {
		t.Fatalf("privileged caps %q, host %q", s.Process.Capabilities.Bounding, h.caps)
	}
	if len(s.Linux.Devices) == 0 {
		t.Fatal("privileged: no host devices")
	}
	if _, err := Generate(baseImage, Options{ID: testID}, root); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkNamespace(t *testing.T) {
	root := makeRootfs(t)
	netns := func(s *specs.Spec) (specs.LinuxNamespace, bool) {
		for _, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				return ns, true
			}
		}
		return specs.LinuxNamespace{}, false
	}
	if ns, ok := netns(mustGen(t, baseImage, Options{ID: testID}, root)); !ok || ns.Path != "" {
		t.Fatalf("default: want a new network namespace, got %+v %v", ns, ok)
	}
	if ns, ok := netns(mustGen(t, baseImage, Options{ID: testID, NetNSPath: "/run/berth/netns/x"}, root)); !ok || ns.Path != "/run/berth/netns/x" {
		t.Fatalf("NetNSPath: got %+v %v", ns, ok)
	}
	s := mustGen(t, baseImage, Options{ID: testID, HostNetwork: true}, root)
	if ns, ok := netns(s); ok {
		t.Fatalf("host network: want no network namespace, got %+v", ns)
	}
	if len(s.Linux.Namespaces) != 5 {
		t.Fatalf("host network: namespaces %+v", s.Linux.Namespaces)
	}
	if _, err := gen(t, baseImage, Options{ID: testID, HostNetwork: true, NetNSPath: "/x"}, root); err == nil {
		t.Fatal("host network with a netns path: want an error")
	}
	if _, err := gen(t, baseImage, Options{ID: testID, NetNSPath: "rel/x"}, root); err == nil {
		t.Fatal("relative netns path: want an error")
	}
}
