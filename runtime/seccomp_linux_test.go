//go:build linux && cgo && seccomp

package runtime

import (
	"encoding/binary"
	"io"
	"os"
	"testing"
	"time"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"

	rspec "github.com/berth-dev/berth/runtime/spec"
)

// TestCompactSeccompFilter compiles Docker's profile and its compacted form
// (spec.CompactSeccomp) with libseccomp, as libcontainer's init does, and
// runs both BPF programs on every syscall number of every architecture the
// profile names, for a range of first arguments: they must return the same
// action for each, and the compacted one must compile faster.
func TestCompactSeccompFilter(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: rspec.DefaultCapabilities()}}, Linux: &specs.Linux{}}
	p, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	orig, origTime := compileSeccomp(t, p)
	compact, compactTime := compileSeccomp(t, rspec.CompactSeccomp(p))
	t.Logf("libseccomp compile of Docker's profile: %v, compacted %v", origTime, compactTime)

	var a0s []uint64
	for v := range uint64(130) {
		a0s = append(a0s, v, v|1<<32, v|1<<63, v|0x80000000)
	}
	a0s = append(a0s, 0xffffffff, ^uint64(0), 0x20000, 0x20008, 0x7e020000, 0x10000000)
	type arch struct {
		audit uint32
		nrBit int32 // x32 shares x86-64's audit value and sets bit 30
	}
	var arches []arch
	for _, a := range p.Architectures {
		switch a {
		case specs.ArchX86_64:
			arches = append(arches, arch{0xc000003e, 0})
		case specs.ArchX86:
			arches = append(arches, arch{0x40000003, 0})
		case specs.ArchX32:
			arches = append(arches, arch{0xc000003e, 0x40000000})
		case specs.ArchAARCH64:
			arches = append(arches, arch{0xc00000b7, 0})
		case specs.ArchARM:
			arches = append(arches, arch{0x40000028, 0})
		}
	}
	if len(arches) == 0 {
		t.Fatalf("no architecture this test knows in %v: add its audit number here", p.Architectures)
	}
	arches = append(arches, arch{0x12345678, 0}) // one the filter does not know
	n := 0
	for _, ar := range arches {
		for nr := int32(-1); nr < 600; nr++ {
			for _, a0 := range a0s {
				in := seccompData(nr|ar.nrBit, ar.audit, a0)
				x, err1 := orig.Run(in)
				y, err2 := compact.Run(in)
				if err1 != nil || err2 != nil {
					t.Fatalf("running the filters: %v, %v", err1, err2)
				}
				if x != y {
					t.Fatalf("arch %#x syscall %d arg0 %#x: %#x from Docker's profile, %#x compacted", ar.audit, nr|ar.nrBit, a0, x, y)
				}
				n++
			}
		}
	}
	t.Logf("%d calls, same action", n)
	if compactTime > origTime {
		t.Logf("the compacted profile compiled slower (%v > %v): a loaded machine?", compactTime, origTime)
	}
}

// compileSeccomp builds p's filter with libseccomp as libcontainer's
// InitSeccomp does (its rules, architectures and binary-tree layout) and
// returns a VM running its BPF, and how long the compilation took.
func compileSeccomp(t *testing.T, p *specs.LinuxSeccomp) (*bpf.VM, time.Duration) {
	t.Helper()
	cfg, err := specconv.SetupSeccomp(p)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	act := func(a configs.Action, errno *uint) libseccomp.ScmpAction {
		switch a {
		case configs.Allow:
			return libseccomp.ActAllow
		case configs.Errno:
			ret := uint(1) // EPERM
			if errno != nil {
				ret = *errno
			}
			return libseccomp.ActErrno.SetReturnCode(int16(ret))
		}
		t.Fatalf("action %v: not in Docker's profile", a)
		return libseccomp.ActInvalid
	}
	def := act(cfg.DefaultAction, cfg.DefaultErrnoRet)
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	for _, a := range cfg.Architectures {
		sa, err := libseccomp.GetArchFromString(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.AddArch(sa); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.SetOptimize(2); err != nil {
		t.Fatal(err)
	}
	ops := map[configs.Operator]libseccomp.ScmpCompareOp{
		configs.EqualTo: libseccomp.CompareEqual, configs.NotEqualTo: libseccomp.CompareNotEqual,
		configs.LessThan: libseccomp.CompareLess, configs.LessThanOrEqualTo: libseccomp.CompareLessOrEqual,
		configs.GreaterThan: libseccomp.CompareGreater, configs.GreaterThanOrEqualTo: libseccomp.CompareGreaterEqual,
		configs.MaskEqualTo: libseccomp.CompareMaskedEqual,
	}
	for _, sc := range cfg.Syscalls {
		a := act(sc.Action, sc.ErrnoRet)
		if a == def {
			continue
		}
		nr, err := libseccomp.GetSyscallFromName(sc.Name)
		if err != nil {
			continue // newer than this libseccomp: libcontainer skips it too
		}
		var conds []libseccomp.ScmpCondition
		for _, arg := range sc.Args {
			c, err := libseccomp.MakeCondition(arg.Index, ops[arg.Op], arg.Value, arg.ValueTwo)
			if err != nil {
				t.Fatal(err)
			}
			conds = append(conds, c)
		}
		if len(conds) == 0 {
			err = f.AddRule(nr, a)
		} else {
			err = f.AddRuleConditional(nr, a, conds)
		}
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		done <- f.ExportBPF(w)
		w.Close()
	}()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var raw []bpf.RawInstruction
	for ; len(b) >= 8; b = b[8:] {
		raw = append(raw, bpf.RawInstruction{Op: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])})
	}
	prog, _ := bpf.Disassemble(raw)
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return vm, took
}

// seccompData is struct seccomp_data for a call with first argument a0,
// its 32-bit words stored big-endian: x/net/bpf's VM loads words in network
// order, the kernel's seccomp in host order, and a seccomp filter only ever
// loads aligned 32-bit words.
func seccompData(nr int32, arch uint32, a0 uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], uint32(nr))
	binary.BigEndian.PutUint32(b[4:], arch)
	lo, hi := uint32(a0), uint32(a0>>32)
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 { // big-endian host
		lo, hi = hi, lo
	}
	binary.BigEndian.PutUint32(b[16:], lo) // args[0], first word
	binary.BigEndian.PutUint32(b[20:], hi)
	return b
}
