//go:build linux && cgo && seccomp

package runtime

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/profiles/seccomp"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"

	"github.com/berth-dev/berth/internal/testrig"
	rspec "github.com/berth-dev/berth/runtime/spec"
)

// The child role: TestSeccompCacheChild does the work only when this
// variable names a container dir; it never starts a process itself, and
// the parent refuses to start children when it is set, so a child cannot
// re-execute the test binary.
const sccChildEnv = "BERTH_SCC_CHILD"

// sccResult is what a child reports.
type sccResult struct {
	Stats          seccompCacheStats
	Served, Real   []byte
	InitNS         int64
	SeccompStatus  string
	InitSeccompErr string
}

// sccProfile is Docker's default profile, compacted as the runtime does;
// variant "minus" drops one syscall from it.
func sccProfile(t testing.TB, variant string) *specs.LinuxSeccomp {
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: rspec.DefaultCapabilities()}}, Linux: &specs.Linux{}}
	p, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	p = rspec.CompactSeccomp(p)
	if variant == "minus" {
		for i := range p.Syscalls {
			if len(p.Syscalls[i].Names) > 1 && len(p.Syscalls[i].Args) == 0 {
				p.Syscalls[i].Names = p.Syscalls[i].Names[1:]
				return p
			}
		}
		t.Fatal("no rule to drop a syscall from")
	}
	return p
}

// TestSeccompCacheChild is the child process's role (see sccChildEnv): in
// the dir's rootfs as a container init is, it arms the cache, runs
// libcontainer's own InitSeccomp (which loads the filter into this
// process) and writes a sccResult to $BERTH_SCC_OUT.
func TestSeccompCacheChild(t *testing.T) {
	dir := os.Getenv(sccChildEnv)
	if dir == "" {
		t.Skip("child role only")
	}
	cfg, err := specconv.SetupSeccomp(sccProfile(t, os.Getenv("BERTH_SCC_PROFILE")))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(os.Getenv("BERTH_SCC_OUT"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// libcontainer's init runs on its main thread; here, the filter goes on
	// this goroutine's thread (seccomp(2) without TSYNC), so stay on it.
	runtime.LockOSThread()
	if err := os.Chdir(filepath.Join(dir, "rootfs")); err != nil {
		t.Fatal(err)
	}
	seccompCacheTap(os.Getenv("BERTH_SCC_TAP") == "1")
	var res sccResult
	start := time.Now()
	seccompCacheArm() // reads _LIBCONTAINER_INITTYPE, set by the parent
	if _, err := lcseccomp.InitSeccomp(cfg); err != nil {
		res.InitSeccompErr = err.Error()
	}
	res.InitNS = int64(time.Since(start))
	res.Stats = getSeccompCacheStats()
	res.Served, res.Real = seccompCacheTapped()
	st, _ := os.ReadFile("/proc/thread-self/status")
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "Seccomp:") {
			res.SeccompStatus = l
		}
	}
	if err := json.NewEncoder(out).Encode(&res); err != nil {
		t.Fatal(err)
	}
}

type sccChild struct {
	profile  string
	tap      bool
	initType string // _LIBCONTAINER_INITTYPE; "standard" if empty
}

func runSccChild(t testing.TB, dir string, c sccChild) sccResult {
	t.Helper()
	if os.Getenv(sccChildEnv) != "" {
		t.Fatal("a seccomp cache child must not start children")
	}
	out := filepath.Join(t.TempDir(), "result.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSeccompCacheChild$", "-test.count=1")
	if c.initType == "" {
		c.initType = "standard"
	}
	tap := "0"
	if c.tap {
		tap = "1"
	}
	cmd.Env = append(os.Environ(), sccChildEnv+"="+dir, "BERTH_SCC_OUT="+out, "BERTH_SCC_PROFILE="+c.profile,
		"BERTH_SCC_TAP="+tap, "_LIBCONTAINER_INITTYPE="+c.initType)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res sccResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("child result %q: %v", b, err)
	}
	if res.InitSeccompErr != "" {
		t.Fatalf("InitSeccomp in the child: %s", res.InitSeccompErr)
	}
	if res.SeccompStatus != "Seccomp:\t2" {
		t.Fatalf("child after InitSeccomp: %q, want filter mode", res.SeccompStatus)
	}
	return res
}

// sccDir makes a container dir as the runtime does: root's, 0700, with a
// config.json and a rootfs dir.
func sccDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sccFile splits a cache file into key and program (after checking it).
func sccFile(t *testing.T, b []byte) (key, prog []byte) {
	t.Helper()
	if len(b) < 32 || string(b[:8]) != "BRTHSCC1" {
		t.Fatalf("cache file of %d bytes: bad header", len(b))
	}
	kl, pl := binary.NativeEndian.Uint32(b[12:]), binary.NativeEndian.Uint32(b[16:])
	if int(24+kl+pl+8) != len(b) {
		t.Fatalf("cache file: lengths %d+%d do not add up to %d", kl, pl, len(b))
	}
	return b[24 : 24+kl], b[24+kl : 24+kl+pl]
}

// sccResum recomputes a cache file's checksum after an edit.
func sccResum(b []byte) {
	h := uint64(14695981039346656037)
	for _, c := range b[:len(b)-8] {
		h ^= uint64(c)
		h *= 1099511628211
	}
	binary.NativeEndian.PutUint64(b[len(b)-8:], h)
}

func sccVM(t *testing.T, prog []byte) *bpf.VM {
	t.Helper()
	var raw []bpf.RawInstruction
	for b := prog; len(b) >= 8; b = b[8:] {
		raw = append(raw, bpf.RawInstruction{Op: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])})
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// TestSeccompCacheInit runs libcontainer's InitSeccomp on Docker's profile
// in child processes armed as a container init is: the first misses and
// writes the cache file; the second hits and hands out exactly what the
// real export produces; a changed profile misses; a file that is corrupt,
// not root's, writable by others or a symlink, or a dir that does not
// qualify, is never used.
func TestSeccompCacheInit(t *testing.T) {
	testrig.RequireRoot(t)
	dir := sccDir(t)
	cache := filepath.Join(dir, "seccomp.cache")

	first := runSccChild(t, dir, sccChild{profile: "default", tap: true})
	if s := first.Stats; !s.Armed || s.Hits != 0 || s.Misses != 1 || s.Writes != 1 || s.Calls < 100 {
		t.Fatalf("first start: %+v, want armed, a miss and a write (and the wrappers called)", s)
	}
	if len(first.Real) == 0 || len(first.Real)%8 != 0 || !bytes.Equal(first.Served, first.Real) {
		t.Fatalf("first start served %d bytes, real export %d bytes: not equal", len(first.Served), len(first.Real))
	}
	good, err := os.ReadFile(cache)
	if err != nil {
		t.Fatalf("no cache file after a miss: %v", err)
	}
	if fi, _ := os.Lstat(cache); fi.Mode() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", fi.Mode())
	}
	goodKey, goodProg := sccFile(t, good)
	if !bytes.Equal(goodProg, first.Real) {
		t.Fatal("cache file's program differs from the real export")
	}

	second := runSccChild(t, dir, sccChild{profile: "default", tap: true})
	if s := second.Stats; s.Hits != 1 || s.Misses != 0 || s.Writes != 0 {
		t.Fatalf("second start: %+v, want one hit", s)
	}
	if !bytes.Equal(second.Served, second.Real) || !bytes.Equal(second.Served, first.Real) {
		t.Fatalf("second start served %d bytes, its real export %d, the first's %d: not all equal",
			len(second.Served), len(second.Real), len(first.Real))
	}
	if b, _ := os.ReadFile(cache); !bytes.Equal(b, good) {
		t.Error("a hit rewrote the cache file")
	}
	// Both programs, run: the same action for every call tried.
	real, cached := sccVM(t, first.Real), sccVM(t, second.Served)
	n := 0
	for _, arch := range []uint32{0xc000003e, 0x40000003, 0x12345678} {
		for nr := int32(-1); nr < 470; nr++ {
			for _, a0 := range []uint64{0, 1, 0x20000, 0x7e020000, 1 << 32, ^uint64(0)} {
				in := seccompData(nr, arch, a0)
				x, err1 := real.Run(in)
				y, err2 := cached.Run(in)
				if err1 != nil || err2 != nil || x != y {
					t.Fatalf("arch %#x nr %d a0 %#x: real %#x (%v), cached %#x (%v)", arch, nr, a0, x, err1, y, err2)
				}
				n++
			}
		}
	}
	t.Logf("%d calls run on both programs: same actions", n)

	// A profile with one syscall fewer: a different call sequence, a miss.
	minus := runSccChild(t, dir, sccChild{profile: "minus", tap: true})
	if s := minus.Stats; s.Hits != 0 || s.Misses != 1 || s.Writes != 1 {
		t.Fatalf("changed profile: %+v, want a miss", s)
	}
	if !bytes.Equal(minus.Served, minus.Real) || bytes.Equal(minus.Real, first.Real) {
		t.Fatal("changed profile: served program is not its own real export, or equals the old one")
	}
	if b, _ := os.ReadFile(cache); bytes.Equal(b, good) {
		t.Error("a miss did not rewrite the cache file")
	}

	// Files that must be ignored; each case starts from the good file.
	type fileCase struct {
		name  string
		setup func(t *testing.T)
		armed bool
	}
	write := func(t *testing.T, b []byte, mode os.FileMode) {
		os.Remove(cache)
		if err := os.WriteFile(cache, b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(cache, mode)
	}
	edit := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	cases := []fileCase{
		{"flipped program byte", func(t *testing.T) {
			write(t, edit(func(b []byte) { b[24+len(goodKey)+5] ^= 1 }), 0o600)
		}, true},
		{"key changed, checksum redone", func(t *testing.T) {
			write(t, edit(func(b []byte) { b[24+len(goodKey)-4] ^= 1; sccResum(b) }), 0o600)
		}, true},
		{"truncated", func(t *testing.T) { write(t, good[:len(good)-9], 0o600) }, true},
		{"not root's", func(t *testing.T) {
			write(t, good, 0o600)
			if err := os.Chown(cache, 1000, 1000); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"group-writable", func(t *testing.T) { write(t, good, 0o620) }, true},
		{"world-writable", func(t *testing.T) { write(t, good, 0o606) }, true},
		{"symlink", func(t *testing.T) {
			os.Remove(cache)
			target := filepath.Join(t.TempDir(), "c")
			if err := os.WriteFile(target, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, cache); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"dir writable by others", func(t *testing.T) {
			write(t, good, 0o600)
			os.Chmod(dir, 0o777)
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
		}, false},
		{"no config.json", func(t *testing.T) {
			write(t, good, 0o600)
			os.Rename(filepath.Join(dir, "config.json"), filepath.Join(dir, "config.json.x"))
			t.Cleanup(func() { os.Rename(filepath.Join(dir, "config.json.x"), filepath.Join(dir, "config.json")) })
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.setup(t)
			res := runSccChild(t, dir, sccChild{profile: "default", tap: true})
			s := res.Stats
			if s.Hits != 0 || s.Armed != c.armed || (c.armed && s.Misses != 1) {
				t.Fatalf("%+v: want armed=%v and no hit", s, c.armed)
			}
			if c.armed && (!bytes.Equal(res.Served, res.Real) || !bytes.Equal(res.Real, first.Real)) {
				t.Fatal("served program is not the real export")
			}
		})
	}
	// A setns init (exec into a running container) never arms, even with a
	// good file in its cwd's parent.
	write(t, good, 0o600)
	if s := runSccChild(t, dir, sccChild{profile: "default", initType: "setns"}).Stats; s.Armed || s.Hits != 0 {
		t.Fatalf("setns init: %+v, want not armed", s)
	}
}

// BenchmarkSeccompCacheInit times libcontainer's InitSeccomp on Docker's
// profile inside a child process (one InitSeccomp each): unarmed, armed
// with a miss (which also writes the file), and armed with a hit. The
// metric is the time InitSeccomp took in the child.
func BenchmarkSeccompCacheInit(b *testing.B) {
	testrig.RequireRoot(b)
	for _, mode := range []string{"unarmed", "miss", "hit"} {
		b.Run(mode, func(b *testing.B) {
			dir := sccDir(b)
			if mode == "hit" {
				runSccChild(b, dir, sccChild{profile: "default"})
			}
			var total time.Duration
			for b.Loop() {
				c := sccChild{profile: "default"}
				switch mode {
				case "unarmed":
					c.initType = "setns"
				case "miss":
					os.Remove(filepath.Join(dir, "seccomp.cache"))
				}
				res := runSccChild(b, dir, c)
				if wantHit := mode == "hit"; (res.Stats.Hits == 1) != wantHit {
					b.Fatalf("%s: %+v", mode, res.Stats)
				}
				total += time.Duration(res.InitNS)
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "init-ns/op")
		})
	}
}

// TestSeccompCacheWrapsAllMutators lists every libseccomp function
// libseccomp-golang calls (C.seccomp_* in its Go files, seccomp_*() in its
// C compat wrappers) and fails if one is neither wrapped (an --wrap in
// seccompcache_linux.go's LDFLAGS, with its __wrap_ in this binary) nor on
// the read-only list: a dependency upgrade must not add an unrecorded
// mutator. It also checks the wrappers are really called.
func TestSeccompCacheWrapsAllMutators(t *testing.T) {
	gobin := testrig.RequireBinary(t, "go", "golang-go")
	out, err := exec.Command(gobin, "list", "-m", "-json", "github.com/seccomp/libseccomp-golang").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go list: %q: %v", out, err)
	}
	used := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(mod.Dir, "*.go"))
	cfiles, _ := filepath.Glob(filepath.Join(mod.Dir, "*.c"))
	goCall, cCall := regexp.MustCompile(`\bC\.(seccomp_\w+)`), regexp.MustCompile(`\b(seccomp_\w+)\s*\(`)
	for _, f := range append(files, cfiles...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		re := goCall
		if strings.HasSuffix(f, ".c") {
			re = cCall
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			used[string(m[1])] = true
		}
	}
	if len(used) < 15 || !used["seccomp_rule_add_array"] || !used["seccomp_export_bpf"] {
		t.Fatalf("found only %d libseccomp functions in %s: the parse is broken", len(used), mod.Dir)
	}
	src, err := os.ReadFile("seccompcache_linux.go")
	if err != nil {
		t.Fatal(err)
	}
	wrapped := map[string]bool{}
	for _, m := range regexp.MustCompile(`-Wl,--wrap=(\w+)`).FindAllSubmatch(src, -1) {
		wrapped[string(m[1])] = true
	}
	for _, must := range []string{"seccomp_init", "seccomp_reset", "seccomp_release", "seccomp_arch_add", "seccomp_arch_remove",
		"seccomp_attr_set", "seccomp_rule_add_array", "seccomp_rule_add_exact_array", "seccomp_syscall_priority",
		"seccomp_merge", "seccomp_api_set", "seccomp_export_bpf", "seccomp_export_bpf_mem"} {
		if !wrapped[must] {
			t.Errorf("%s is not wrapped", must)
		}
	}
	for f := range used {
		if wrapped[f] && slices.Contains(seccompCacheReadOnly, f) {
			t.Errorf("%s is both wrapped and listed read-only", f)
		}
		if !wrapped[f] && !slices.Contains(seccompCacheReadOnly, f) {
			t.Errorf("libseccomp-golang %s calls %s: neither wrapped nor listed read-only in seccompcache_linux.go", mod.Version, f)
		}
	}
	// The wrappers are in berth (test binaries have no symbol table), and
	// are what libseccomp-golang calls (counted in this test binary).
	exe := buildBerth(t)
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF {
			have[s.Name] = true
		}
	}
	for f := range wrapped {
		if !have["__wrap_"+f] {
			t.Errorf("no __wrap_%s in %s", f, exe)
		}
	}
	before := getSeccompCacheStats().Calls
	f, err := libseccomp.NewFilter(libseccomp.ActAllow) // seccomp_init, seccomp_attr_set (tsync)
	if err != nil {
		t.Fatal(err)
	}
	f.Release() // seccomp_release
	if got := getSeccompCacheStats().Calls - before; got != 3 {
		t.Errorf("NewFilter+Release went through %d wrappers, want 3", got)
	}
}

// TestRootSeccompCacheShared starts two containers with Docker's default
// profile: the first one's init misses and writes the cache, the monitor
// shares it; the second one's init finds it and does not rewrite it (a
// miss would, and the monitor would then replace the shared file). Both
// run under the filter: Seccomp mode 2, and unshare(CLONE_NEWUSER), which
// needs no capability but the profile refuses, fails.
func TestRootSeccompCacheShared(t *testing.T) {
	r, layer := newRootRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(name string) (string, string) {
		task, err := r.Create(ctx, TaskConfig{Containers: []ContainerConfig{{
			Name: "main", Image: "busybox", Layers: []string{layer},
			Spec: func(rootfs string) (*specs.Spec, error) {
				return rspec.Generate(rspec.ImageConfig{
					Cmd: []string{"sh", "-c", `grep Seccomp: /proc/self/status; busybox unshare -U true; echo "unshare=$?"`},
					Env: []string{"PATH=/bin"},
				}, rspec.Options{Hostname: name}, rootfs)
			},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Remove(context.Background(), task.ID, true) })
		att, err := r.StartAttached(ctx, task.ID)
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		final, err := att.Stream(&stdout, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		if final.Status != TaskStopped || final.ExitCode() != 0 {
			t.Fatalf("%s: final state %+v\n%s%s", name, final.Containers[0], stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), "Seccomp:\t2\n") || strings.Contains(stdout.String(), "unshare=0") {
			t.Fatalf("%s: not under the filter:\n%s%s", name, stdout.String(), stderr.String())
		}
		return r.ctrDir(task.ID, "main"), stdout.String() + stderr.String()
	}
	shared := func() (string, uint64) {
		m, _ := filepath.Glob(filepath.Join(r.cfg.RunRoot, "seccomp", "*.cache"))
		if len(m) != 1 {
			t.Fatalf("shared cache files: %v, want one", m)
		}
		var s syscall.Stat_t
		if err := syscall.Stat(m[0], &s); err != nil {
			t.Fatal(err)
		}
		return m[0], s.Ino
	}

	dir1, out1 := run("first")
	t.Logf("first: %q", out1)
	if _, err := os.Stat(filepath.Join(dir1, "seccomp.cache")); err != nil {
		t.Fatalf("the first init wrote no cache file: %v", err)
	}
	path, ino := shared()
	b1, _ := os.ReadFile(path)

	dir2, _ := run("second")
	path2, ino2 := shared()
	if path2 != path || ino2 != ino {
		t.Fatalf("the shared file was replaced after the second start: its init missed")
	}
	b2, err := os.ReadFile(filepath.Join(dir2, "seccomp.cache"))
	if err != nil || !bytes.Equal(b1, b2) {
		t.Fatalf("second container's cache file is not the shared one: %v", err)
	}
}
