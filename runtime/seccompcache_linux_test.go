//go:build linux && cgo && seccomp

package runtime

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
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
	Reads          []string // the "reads" role's observations
	Exported       []byte   // the "reads" role's export
	Exported2      []byte   // its second export (variant "post")
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

// sccVariant changes a profile, once converted for libcontainer, as
// BERTH_SCC_VARIANT says: "drop:I" drops syscall rule I, "errno:I" makes
// rule I return an errno of its own, "add" adds a rule at the end, "arch-"
// drops the last architecture, "attr" sets the log flag (one more
// attribute), "default" changes the default action's errno.
func sccVariant(t testing.TB, cfg *configs.Seccomp, v string) {
	op, arg, _ := strings.Cut(v, ":")
	i, _ := strconv.Atoi(arg)
	switch op {
	case "":
	case "drop":
		cfg.Syscalls = slices.Delete(cfg.Syscalls, i, i+1)
	case "errno":
		e := uint(99)
		cfg.Syscalls[i].Action, cfg.Syscalls[i].ErrnoRet = configs.Errno, &e
	case "add":
		for _, name := range []string{"kexec_load", "reboot", "init_module", "acct", "swapon"} {
			if !slices.ContainsFunc(cfg.Syscalls, func(c *configs.Syscall) bool { return c.Name == name }) {
				e := uint(38)
				cfg.Syscalls = append(cfg.Syscalls, &configs.Syscall{Name: name, Action: configs.Errno, ErrnoRet: &e})
				return
			}
		}
		t.Fatal("no syscall to add")
	case "arch-":
		cfg.Architectures = cfg.Architectures[:len(cfg.Architectures)-1]
	case "attr":
		cfg.Flags = append(cfg.Flags, specs.LinuxSeccompFlagLog)
	case "default":
		e := uint(38)
		cfg.DefaultErrnoRet = &e
	default:
		t.Fatalf("unknown variant %q", v)
	}
}

// sccConfig is the child's libcontainer seccomp config.
func sccConfig(t testing.TB, profile, variant string) *configs.Seccomp {
	cfg, err := specconv.SetupSeccomp(sccProfile(t, profile))
	if err != nil {
		t.Fatal(err)
	}
	sccVariant(t, cfg, variant)
	return cfg
}

// TestSeccompCacheChild is the child process's role (see sccChildEnv): in
// the dir's rootfs as a container init is, it arms the cache, runs
// libcontainer's own InitSeccomp (which loads the filter into this
// process), or with BERTH_SCC_MODE=reads the calls of sccReads, and
// writes a sccResult to $BERTH_SCC_OUT.
func TestSeccompCacheChild(t *testing.T) {
	dir := os.Getenv(sccChildEnv)
	if dir == "" {
		t.Skip("child role only")
	}
	var cfg *configs.Seccomp
	if os.Getenv("BERTH_SCC_MODE") != "reads" { // sccReads has variants of its own
		cfg = sccConfig(t, os.Getenv("BERTH_SCC_PROFILE"), os.Getenv("BERTH_SCC_VARIANT"))
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
	if os.Getenv("BERTH_SCC_MODE") == "reads" {
		res.Reads, res.Exported, res.Exported2, err = sccReads(os.Getenv("BERTH_SCC_VARIANT"))
	} else {
		_, err = lcseccomp.InitSeccomp(cfg)
	}
	if err != nil {
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

// sccReads builds a filter with libseccomp-golang, reading its state
// between the changes (IsArchPresent: seccomp_arch_exist; Get*:
// seccomp_attr_get), exports it, and reads again after the export, as
// libcontainer reads the flags. Each read's answer on a fresh (empty)
// context would differ from the one after the calls before it. It
// returns what it read and the program. Variant "add" adds one more rule
// at the end, after the reads; "post" adds one after the export and
// exports again (prog2).
func sccReads(variant string) (reads []string, prog, prog2 []byte, err error) {
	f, err := libseccomp.NewFilter(libseccomp.ActErrno.SetReturnCode(1))
	if err != nil {
		return nil, nil, nil, err
	}
	read := func(what string, v bool, err error) {
		reads = append(reads, fmt.Sprintf("%s=%v/%v", what, v, err))
	}
	archRead := func(what string, a libseccomp.ScmpArch) {
		v, err := f.IsArchPresent(a)
		read(what, v, err)
	}
	rule := func(name string) error {
		nr, err := libseccomp.GetSyscallFromName(name)
		if err != nil {
			return err
		}
		return f.AddRule(nr, libseccomp.ActAllow)
	}
	export := func() ([]byte, error) {
		tmp, err := os.CreateTemp("", "scc-reads")
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if err := f.ExportBPF(tmp); err != nil {
			return nil, err
		}
		return os.ReadFile(tmp.Name())
	}
	archRead("x86-before", libseccomp.ArchX86)
	if err := f.AddArch(libseccomp.ArchX86); err != nil {
		return nil, nil, nil, err
	}
	archRead("x86-added", libseccomp.ArchX86)
	archRead("arm", libseccomp.ArchARM)
	nnp, err := f.GetNoNewPrivsBit()
	read("nnp-default", nnp, err)
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, nil, nil, err
	}
	nnp, err = f.GetNoNewPrivsBit()
	read("nnp-cleared", nnp, err)
	if err := f.AddArch(libseccomp.ArchX32); err != nil {
		return nil, nil, nil, err
	}
	archRead("x32-added", libseccomp.ArchX32)
	for _, name := range []string{"getpid", "gettid", "uname", "getcwd"} {
		if err := rule(name); err != nil {
			return nil, nil, nil, err
		}
	}
	if variant == "add" {
		if err := rule("getppid"); err != nil {
			return nil, nil, nil, err
		}
	}
	if prog, err = export(); err != nil {
		return nil, nil, nil, err
	}
	archRead("x86-after-export", libseccomp.ArchX86)
	archRead("arm-after-export", libseccomp.ArchARM)
	nnp, err = f.GetNoNewPrivsBit()
	read("nnp-after-export", nnp, err)
	if variant == "post" {
		if err := rule("getppid"); err != nil {
			return nil, nil, nil, err
		}
		if prog2, err = export(); err != nil {
			return nil, nil, nil, err
		}
	}
	return reads, prog, prog2, nil
}

type sccChild struct {
	profile  string
	variant  string // see sccVariant
	mode     string // "" (InitSeccomp) or "reads" (sccReads)
	tap      bool
	initType string // _LIBCONTAINER_INITTYPE; "standard" if empty
	wantErr  bool   // InitSeccomp is to fail (and load nothing)
	wantDie  string // the child is to die, saying this
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
		"BERTH_SCC_TAP="+tap, "_LIBCONTAINER_INITTYPE="+c.initType, "BERTH_SCC_VARIANT="+c.variant, "BERTH_SCC_MODE="+c.mode)
	b, err := cmd.CombinedOutput()
	if c.wantDie != "" {
		if err == nil || !strings.Contains(string(b), c.wantDie) {
			t.Fatalf("child: %v, want it to die saying %q\n%s", err, c.wantDie, b)
		}
		return sccResult{}
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, b)
	}
	b, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res sccResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("child result %q: %v", b, err)
	}
	want := "Seccomp:\t2"
	if c.wantErr || c.mode == "reads" {
		want = "Seccomp:\t0"
	}
	if c.wantErr != (res.InitSeccompErr != "") {
		t.Fatalf("InitSeccomp in the child: error %q, want error: %v", res.InitSeccompErr, c.wantErr)
	}
	if res.SeccompStatus != want {
		t.Fatalf("child after InitSeccomp: %q, want %q", res.SeccompStatus, want)
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
	if len(b) < 32 || string(b[:8]) != "BRTHSCC1" || binary.NativeEndian.Uint32(b[8:]) != 2 {
		t.Fatalf("cache file of %d bytes: bad header", len(b))
	}
	kl, pl, sl := binary.NativeEndian.Uint32(b[12:]), binary.NativeEndian.Uint32(b[16:]), binary.NativeEndian.Uint32(b[20:])
	if int(24+kl+pl+sl+8) != len(b) || sl == 0 {
		t.Fatalf("cache file: lengths %d+%d+%d do not add up to %d", kl, pl, sl, len(b))
	}
	return b[24 : 24+kl], b[24+kl : 24+kl+pl]
}

// sccRecords splits a key into its records (the format of
// seccompcache_linux.go: a u32 id, its arguments, its result), the
// trailer (SCC_KEY_END...) last; each record is returned with its offset.
func sccRecords(t *testing.T, key []byte) (recs [][]byte, offs []int) {
	t.Helper()
	for off := 0; off < len(key); {
		id := binary.NativeEndian.Uint32(key[off:])
		var n int
		switch id {
		case 1, 2, 3, 4, 10: // init, reset, arch add/remove/exist
			n = 12
		case 5, 8, 11: // attr set, priority, attr get
			n = 16
		case 6, 7: // rule adds: action syscall count, count conditions, rc
			n = 20 + 24*int(binary.NativeEndian.Uint32(key[off+12:]))
		case 9: // the trailer
			n = 24
		default:
			t.Fatalf("key offset %d: record id %d", off, id)
		}
		if off+n > len(key) {
			t.Fatalf("key offset %d: record of %d bytes past the end %d", off, n, len(key))
		}
		recs, offs = append(recs, key[off:off+n]), append(offs, off)
		off += n
	}
	if len(recs) < 2 || binary.NativeEndian.Uint32(recs[len(recs)-1]) != 9 {
		t.Fatal("key does not end with its trailer")
	}
	return recs, offs
}

// sccFirstDiff is the index of the first record that differs between two
// keys' call records (trailers left out), or the shorter one's length.
func sccFirstDiff(t *testing.T, a, b []byte) int {
	ra, _ := sccRecords(t, a)
	rb, _ := sccRecords(t, b)
	ra, rb = ra[:len(ra)-1], rb[:len(rb)-1]
	for i := range min(len(ra), len(rb)) {
		if !bytes.Equal(ra[i], rb[i]) {
			return i
		}
	}
	return min(len(ra), len(rb))
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
	if s := first.Stats; !s.Armed || s.Hits != 0 || s.Misses != 1 || s.Writes != 1 || s.Calls < 100 ||
		s.Deferred != 0 || s.Replays != 0 || s.RealRuleAdds < 100 {
		t.Fatalf("first start: %+v, want armed, a miss and a write (and the wrappers called, the rules added)", s)
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
	// The hit made no real rule add (nor any other call: nothing
	// replayed), libcontainer's reads after the export were answered from
	// the snapshot, and the program is a real export of the same calls.
	if s := second.Stats; s.Hits != 1 || s.Misses != 0 || s.Writes != 0 || s.Deferred < 100 ||
		s.RealRuleAdds != 0 || s.Replays != 0 || s.Replayed != 0 || s.Divergences != 0 || s.SnapServed == 0 {
		t.Fatalf("second start: %+v, want one hit, every call deferred", s)
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
	if s := minus.Stats; s.Hits != 0 || s.Misses != 1 || s.Writes != 1 || s.Replays != 1 || s.Divergences != 0 {
		t.Fatalf("changed profile: %+v, want a miss, after one replay", s)
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
// C compat wrappers) and fails unless each one is classified, in exactly
// one of seccompCacheRecorded (mutators and state-dependent reads, wrapped
// and keyed), seccompCacheUnserved (wrapped, made real after the deferred
// calls) and seccompCachePassThrough (not wrapped: no filter context
// involved), and the wrapped ones are exactly the --wrap list: a
// dependency upgrade must not add an unrecorded mutator or an unseen read.
// It also checks the wrappers are really called.
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
	// libcontainer's seccomp code goes through libseccomp-golang; any C
	// call of its own must be classified as well.
	if out, err := exec.Command(gobin, "list", "-m", "-f", "{{.Dir}}", "github.com/opencontainers/runc").Output(); err != nil {
		t.Fatalf("go list runc: %v", err)
	} else {
		rdir := strings.TrimSpace(string(out))
		lc, _ := filepath.Glob(filepath.Join(rdir, "libcontainer", "seccomp", "*.go"))
		pb, _ := filepath.Glob(filepath.Join(rdir, "libcontainer", "seccomp", "patchbpf", "*.go"))
		if len(lc) == 0 || len(pb) == 0 {
			t.Fatalf("no libcontainer seccomp sources in %s", rdir)
		}
		for _, f := range append(lc, pb...) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range goCall.FindAllSubmatch(b, -1) {
				used[string(m[1])] = true
			}
		}
	}
	if len(used) < 15 || !used["seccomp_rule_add_array"] || !used["seccomp_export_bpf"] || !used["seccomp_attr_get"] {
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
	class := map[string]string{}
	for name, list := range map[string][]string{
		"recorded": seccompCacheRecorded, "unserved": seccompCacheUnserved, "pass-through": seccompCachePassThrough,
	} {
		for _, f := range list {
			if class[f] != "" {
				t.Errorf("%s is classified both %s and %s", f, class[f], name)
			}
			class[f] = name
			if w := name != "pass-through"; wrapped[f] != w {
				t.Errorf("%s is %s but wrapped=%v", f, name, wrapped[f])
			}
		}
	}
	for f := range wrapped {
		if class[f] == "" {
			t.Errorf("%s is wrapped but not classified", f)
		}
	}
	for f := range used {
		if class[f] == "" {
			t.Errorf("libseccomp-golang %s calls %s: not classified (recorded, unserved or pass-through) in seccompcache_linux.go", mod.Version, f)
		}
	}
	// The reads libcontainer makes of a filter (patchbpf's flags, after
	// the export) and the state-dependent ones of libseccomp-golang must
	// be recorded, not passed through to a possibly still empty context.
	for _, f := range []string{"seccomp_attr_get", "seccomp_arch_exist", "seccomp_init", "seccomp_rule_add_array"} {
		if class[f] != "recorded" {
			t.Errorf("%s is %q, want recorded", f, class[f])
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
		final, stdout, stderr := runAttached(ctx, t, r, task.ID)
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

// sccNeeded are syscalls the child (Go runtime, test framework, its
// result file) may make after its filter is loaded: variants leave them
// alone.
var sccNeeded = strings.Fields(`read write openat open close fstat newfstatat stat lstat statx futex mmap munmap
	mprotect madvise brk exit exit_group rt_sigreturn rt_sigprocmask rt_sigaction sigaltstack sched_yield
	sched_getaffinity nanosleep clock_gettime clock_nanosleep epoll_create1 epoll_ctl epoll_wait epoll_pwait
	epoll_pwait2 eventfd2 pipe2 getpid gettid tgkill tkill kill clone clone3 fcntl lseek pread64 pwrite64
	getrandom prctl uname readlinkat ioctl getdents64 fsync fdatasync ftruncate unlinkat renameat renameat2
	mkdirat chdir fchdir getcwd dup dup3 waitid wait4 set_robust_list rseq arch_prctl mremap fadvise64
	getppid getuid geteuid getgid getegid setitimer timer_settime timer_create timer_delete restart_syscall`)

// sccPick returns the index of the first unconditional allow rule at or
// after from that the child does not need, for a variant to change.
func sccPick(t *testing.T, cfg *configs.Seccomp, from int) int {
	for i := from; i < len(cfg.Syscalls); i++ {
		c := cfg.Syscalls[i]
		if c.Action == configs.Allow && len(c.Args) == 0 && !slices.Contains(sccNeeded, c.Name) {
			return i
		}
	}
	for i := from - 1; i >= 0; i-- {
		c := cfg.Syscalls[i]
		if c.Action == configs.Allow && len(c.Args) == 0 && !slices.Contains(sccNeeded, c.Name) {
			return i
		}
	}
	t.Fatal("no rule to change")
	return 0
}

// sccCheckDiverged checks a child that was handed a cache file whose
// key first differs from its own calls at record k (0: the seccomp_init
// record): it deferred records 1..k-1, made them real once (checked, no
// divergence), missed, and handed out exactly what a real export of its
// own calls gives.
func sccCheckDiverged(t *testing.T, res sccResult, k int) {
	t.Helper()
	s := res.Stats
	want := uint64(max(k-1, 0))
	wantReplays := uint64(0)
	if k > 0 {
		wantReplays = 1
	}
	if s.Hits != 0 || s.Misses != 1 || s.Writes != 1 || s.Deferred != want || s.Replays != wantReplays ||
		s.Replayed != want || s.Divergences != 0 || s.Poisons != 0 {
		t.Fatalf("diverging at record %d: %+v, want %d deferred and replayed, a miss", k, s, want)
	}
	if len(res.Real) == 0 || !bytes.Equal(res.Served, res.Real) {
		t.Fatalf("diverging at record %d: served %d bytes, a real export %d: not equal", k, len(res.Served), len(res.Real))
	}
}

// TestSeccompCacheDeferDivergence runs inits whose calls leave the stored
// key at many points: the deferred calls are replayed, the rest made for
// real, and the program handed out, and the cache file written, are
// exactly those of an init that never had a cache file.
func TestSeccompCacheDeferDivergence(t *testing.T) {
	testrig.RequireRoot(t)
	dir := sccDir(t)
	cache := filepath.Join(dir, "seccomp.cache")
	first := runSccChild(t, dir, sccChild{profile: "default", tap: true})
	good, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	goodKey, _ := sccFile(t, good)
	recs, offs := sccRecords(t, goodKey)
	nrec := len(recs) - 1 // call records, without the trailer
	put := func(t *testing.T, b []byte) {
		t.Helper()
		os.Remove(cache)
		if err := os.WriteFile(cache, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The same profile against a key with record k changed (an argument:
	// a different call): the divergence is exactly at k.
	t.Run("key", func(t *testing.T) {
		for _, k := range []int{0, 1, 2, 3, nrec / 4, nrec / 2, 3 * nrec / 4, nrec - 2, nrec - 1} {
			b := bytes.Clone(good)
			b[24+offs[k]+4] ^= 0x5a
			sccResum(b)
			put(t, b)
			res := runSccChild(t, dir, sccChild{profile: "default", tap: true})
			sccCheckDiverged(t, res, k)
			if !bytes.Equal(res.Served, first.Real) {
				t.Fatalf("record %d: served program differs from the first real export", k)
			}
			if after, _ := os.ReadFile(cache); !bytes.Equal(after, good) {
				t.Fatalf("record %d: the cache file written differs from the one an init without a file writes", k)
			}
		}
	})

	// Profiles that differ from the stored one: each init's program and
	// cache file equal those of the same profile's init without a file.
	t.Run("profiles", func(t *testing.T) {
		cfg := sccConfig(t, "default", "")
		n := len(cfg.Syscalls)
		variants := []string{"default", "arch-", "attr", "add"}
		for _, at := range []int{0, n / 4, n / 2, 3 * n / 4, n - 1} {
			i := sccPick(t, cfg, at)
			variants = append(variants, fmt.Sprintf("drop:%d", i), fmt.Sprintf("errno:%d", i))
		}
		var ks []int
		for _, v := range variants {
			put(t, good)
			res := runSccChild(t, dir, sccChild{profile: "default", variant: v, tap: true})
			got, err := os.ReadFile(cache)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(cache)
			fresh := runSccChild(t, dir, sccChild{profile: "default", variant: v, tap: true})
			want, err := os.ReadFile(cache)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: cache file after diverging differs from a fresh init's", v)
			}
			key, _ := sccFile(t, got)
			k := sccFirstDiff(t, goodKey, key)
			sccCheckDiverged(t, res, k)
			// (The log flag changes how the program is loaded, not the
			// program: only the file tells that variant apart.)
			if !bytes.Equal(res.Served, fresh.Served) || (v != "attr" && bytes.Equal(res.Served, first.Real)) {
				t.Fatalf("%s: served program is not the fresh init's, or is the stored one", v)
			}
			vrecs, _ := sccRecords(t, key)
			adds := 0
			for _, r := range vrecs {
				if id := binary.NativeEndian.Uint32(r); id == 6 || id == 7 {
					adds++
				}
			}
			if res.Stats.RealRuleAdds != uint64(adds) {
				t.Fatalf("%s: %d real rule adds, want each of the %d once", v, res.Stats.RealRuleAdds, adds)
			}
			t.Logf("%s: diverged at record %d of %d", v, k, nrec)
			ks = append(ks, k)
		}
		if !slices.Contains(ks, 0) || !slices.Contains(ks, nrec) ||
			!slices.ContainsFunc(ks, func(k int) bool { return k > nrec/3 && k < 2*nrec/3 }) {
			t.Fatalf("divergence points %v of %d records: want the first, the middle and the end", ks, nrec)
		}
	})

	// A replayed call whose result is not the one handed out (a stored
	// result changed here; libseccomp itself is deterministic): the init
	// fails, whether the replay comes at a later call or at the export,
	// and loads no filter.
	t.Run("divergence", func(t *testing.T) {
		arch := -1
		for i, r := range recs {
			if binary.NativeEndian.Uint32(r) == 3 && binary.NativeEndian.Uint32(r[8:]) == 0 {
				arch = i
				break
			}
		}
		if arch < 0 {
			t.Fatal("no successful arch add in the key")
		}
		tampered := bytes.Clone(good)
		binary.NativeEndian.PutUint32(tampered[24+offs[arch]+8:], uint32(0xffffffef)) // -EEXIST
		sccResum(tampered)
		// The key one record longer than the calls: the replay comes at
		// the export.
		kl := len(goodKey)
		trailer := offs[len(offs)-1]
		longer := slices.Concat(tampered[:24+trailer], []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, tampered[24+trailer:])
		binary.NativeEndian.PutUint32(longer[12:], uint32(kl+12))
		sccResum(longer)
		for _, c := range []struct {
			name    string
			file    []byte
			variant string
		}{{"at a call", tampered, "add"}, {"at the export", longer, ""}} {
			put(t, c.file)
			res := runSccChild(t, dir, sccChild{profile: "default", variant: c.variant, wantErr: true})
			if s := res.Stats; s.Divergences != 1 || s.Hits != 0 || s.Misses != 0 || s.Writes != 0 || s.Replays != 1 {
				t.Fatalf("%s: %+v, want one divergence and nothing served or written", c.name, s)
			}
			if !strings.Contains(res.InitSeccompErr, "operation canceled") {
				t.Fatalf("%s: InitSeccomp error %q", c.name, res.InitSeccompErr)
			}
			if b, _ := os.ReadFile(cache); !bytes.Equal(b, c.file) {
				t.Fatalf("%s: the cache file was rewritten", c.name)
			}
			t.Logf("%s: %s", c.name, res.InitSeccompErr)
		}
	})
}

// TestSeccompCacheDeferReads builds a filter with reads of its state
// between and after the changes (sccReads), whose answers from an empty
// context would differ: on a hit every one is answered from the key or,
// after the export, the snapshot, and each answer is the one the real
// calls gave; on a divergence after them, the replay confirms them.
func TestSeccompCacheDeferReads(t *testing.T) {
	testrig.RequireRoot(t)
	dir := sccDir(t)
	want := []string{
		"x86-before=false/<nil>", "x86-added=true/<nil>", "arm=false/<nil>", "nnp-default=true/<nil>",
		"nnp-cleared=false/<nil>", "x32-added=true/<nil>",
		"x86-after-export=true/<nil>", "arm-after-export=false/<nil>", "nnp-after-export=false/<nil>",
	}
	miss := runSccChild(t, dir, sccChild{mode: "reads", tap: true})
	if s := miss.Stats; s.Misses != 1 || s.Writes != 1 || s.Deferred != 0 {
		t.Fatalf("first: %+v, want a miss", s)
	}
	if !slices.Equal(miss.Reads, want) {
		t.Fatalf("first: read %q, want %q", miss.Reads, want)
	}
	if len(miss.Exported) == 0 || !bytes.Equal(miss.Exported, miss.Real) {
		t.Fatal("first: exported program is not the real export")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "seccomp.cache"))
	key, _ := sccFile(t, b)
	recs, _ := sccRecords(t, key)
	reads := 0
	for _, r := range recs {
		if id := binary.NativeEndian.Uint32(r); id == 10 || id == 11 {
			reads++
		}
	}
	if reads != 6 {
		t.Fatalf("key has %d read records, want the 6 before the export", reads)
	}

	hit := runSccChild(t, dir, sccChild{mode: "reads", tap: true})
	if s := hit.Stats; s.Hits != 1 || s.Deferred != uint64(len(recs)-2) || s.RealRuleAdds != 0 || s.Replays != 0 || s.SnapServed != 3 {
		t.Fatalf("hit: %+v, want every call deferred, the 3 reads after the export from the snapshot", s)
	}
	if !slices.Equal(hit.Reads, want) {
		t.Fatalf("hit: read %q, want %q", hit.Reads, want)
	}
	if !bytes.Equal(hit.Exported, miss.Exported) || !bytes.Equal(hit.Served, hit.Real) {
		t.Fatal("hit: exported program is not the real export")
	}

	// A rule added after a served export: the deferred calls are made
	// real (and the served program and snapshot checked against them)
	// first, then the rest is real.
	post := runSccChild(t, dir, sccChild{mode: "reads", variant: "post"})
	if s := post.Stats; s.Hits != 1 || s.Replays != 1 || s.Replayed != uint64(len(recs)-2) || s.Divergences != 0 || s.RealRuleAdds != 5 {
		t.Fatalf("a rule after a served export: %+v", s)
	}
	if !slices.Equal(post.Reads, want) || !bytes.Equal(post.Exported, miss.Exported) ||
		len(post.Exported2) == 0 || bytes.Equal(post.Exported2, miss.Exported) {
		t.Fatalf("a rule after a served export: read %q; exports %d, %d bytes", post.Reads, len(post.Exported), len(post.Exported2))
	}

	// The same, with a stored result changed so that the replay differs
	// from what was handed out: with a program already served, the init
	// cannot be told, and dies.
	cache := filepath.Join(dir, "seccomp.cache")
	tampered := bytes.Clone(b)
	_, offs := sccRecords(t, key)
	for i, r := range recs {
		if binary.NativeEndian.Uint32(r) == 3 && binary.NativeEndian.Uint32(r[8:]) == 0 {
			binary.NativeEndian.PutUint32(tampered[24+offs[i]+8:], uint32(0xffffffef)) // -EEXIST
			break
		}
	}
	sccResum(tampered)
	if bytes.Equal(tampered, b) {
		t.Fatal("no successful arch add in the key")
	}
	os.Remove(cache)
	if err := os.WriteFile(cache, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	runSccChild(t, dir, sccChild{mode: "reads", variant: "post", wantDie: "served program diverges"})
	if err := os.WriteFile(cache, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// One more rule after the reads: they were deferred, then replayed and
	// found equal.
	more := runSccChild(t, dir, sccChild{mode: "reads", variant: "add", tap: true})
	if s := more.Stats; s.Misses != 1 || s.Replays != 1 || s.Divergences != 0 || s.Replayed != uint64(len(recs)-2) {
		t.Fatalf("diverging after the reads: %+v", s)
	}
	if !slices.Equal(more.Reads, want) {
		t.Fatalf("diverging after the reads: read %q, want %q", more.Reads, want)
	}
	if !bytes.Equal(more.Exported, more.Real) || bytes.Equal(more.Exported, miss.Exported) {
		t.Fatal("diverging after the reads: exported program is not its real export")
	}
}
