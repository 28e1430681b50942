//go:build linux

package spec

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// dockerProfile is Docker's default seccomp profile for a container with
// the given capabilities.
func dockerProfile(t *testing.T, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}, Linux: &specs.Linux{}}
	p, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func allCaps() []string {
	var caps []string
	for _, c := range capability.ListKnown() {
		caps = append(caps, capName(c))
	}
	return caps
}

// verdicts is what a profile does with calls to one syscall: the actions
// (with errno) of the rules that match a call, or the default action when
// none does. It follows runc's reading of a profile: a rule matches when all
// of its comparisons hold; rules naming a syscall are alternatives. With
// bits32 only the low 32 bits of values, data and masks count, as
// libseccomp compares them on a 32-bit architecture.
type verdicts []specs.LinuxSyscall

func rulesFor(p *specs.LinuxSeccomp, name string) verdicts {
	var v verdicts
	for _, sc := range p.Syscalls {
		if slices.Contains(sc.Names, name) {
			v = append(v, sc)
		}
	}
	return v
}

func (rules verdicts) of(args [6]uint64, bits32 bool) []string {
	low := func(v uint64) uint64 {
		if bits32 {
			return v & 0xffffffff
		}
		return v
	}
	var out []string
	for _, sc := range rules {
		match := true
		for _, a := range sc.Args {
			x, v, v2 := low(args[a.Index]), low(a.Value), low(a.ValueTwo)
			var ok bool
			switch a.Op {
			case specs.OpEqualTo:
				ok = x == v
			case specs.OpNotEqual:
				ok = x != v
			case specs.OpLessThan:
				ok = x < v
			case specs.OpLessEqual:
				ok = x <= v
			case specs.OpGreaterThan:
				ok = x > v
			case specs.OpGreaterEqual:
				ok = x >= v
			case specs.OpMaskedEqual:
				ok = x&v == v2
			}
			match = match && ok
		}
		if match {
			verdict := string(sc.Action)
			if sc.ErrnoRet != nil {
				verdict += "/" + strconv.FormatUint(uint64(*sc.ErrnoRet), 10)
			}
			if !slices.Contains(out, verdict) {
				out = append(out, verdict)
			}
		}
	}
	if out == nil {
		return []string{"default"}
	}
	slices.Sort(out)
	return out
}

// probes are argument values around everything p compares with: small
// values, the profile's own values and their neighbours, and the same with
// each high bit set, and with all of them.
func probes(p *specs.LinuxSeccomp) []uint64 {
	set := map[uint64]bool{0xffffffff: true, 0xfffffffe: true, ^uint64(0): true, 1 << 31: true}
	for v := range uint64(300) {
		set[v] = true
	}
	for _, sc := range p.Syscalls {
		for _, a := range sc.Args {
			for _, v := range []uint64{a.Value, a.ValueTwo, a.Value &^ a.ValueTwo} {
				set[v], set[v+1], set[v-1] = true, true, true
			}
		}
	}
	var out []uint64
	for v := range set {
		out = append(out, v, v|0xffffffff00000000)
		for b := 32; b < 64; b++ {
			out = append(out, v|1<<b)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sameEffect fails t unless a and b agree on every syscall either names,
// for every probe value of every argument, in 64- and 32-bit readings.
func sameEffect(t *testing.T, a, b *specs.LinuxSeccomp) {
	t.Helper()
	if a.DefaultAction != b.DefaultAction || !reflect.DeepEqual(a.DefaultErrnoRet, b.DefaultErrnoRet) ||
		!slices.Equal(a.Architectures, b.Architectures) || !slices.Equal(a.Flags, b.Flags) {
		t.Fatalf("default action, errno, architectures or flags differ")
	}
	names := map[string]bool{}
	for _, p := range []*specs.LinuxSeccomp{a, b} {
		for _, sc := range p.Syscalls {
			for _, n := range sc.Names {
				names[n] = true
			}
		}
	}
	vals := probes(a)
	for n := range names {
		ra, rb := rulesFor(a, n), rulesFor(b, n)
		// The argument indexes either compares; a syscall compared on none
		// needs one probe.
		idxs := map[uint]bool{}
		for _, sc := range append(slices.Clone(ra), rb...) {
			for _, arg := range sc.Args {
				idxs[arg.Index] = true
			}
		}
		try := func(args [6]uint64, what string) {
			for _, bits32 := range []bool{false, true} {
				va, vb := ra.of(args, bits32), rb.of(args, bits32)
				if !slices.Equal(va, vb) {
					t.Fatalf("%s(%s, 32-bit %v): %v before, %v after", n, what, bits32, va, vb)
				}
			}
		}
		try([6]uint64{}, "no arguments")
		for idx := range idxs {
			for _, v := range vals {
				var args [6]uint64
				args[idx] = v
				try(args, fmt.Sprintf("arg%d=%#x", idx, v))
			}
		}
	}
}

func ruleCount(p *specs.LinuxSeccomp, name string) int {
	n := 0
	for _, sc := range p.Syscalls {
		if slices.Contains(sc.Names, name) {
			n++
		}
	}
	return n
}

func TestCompactSeccompDockerProfile(t *testing.T) {
	for _, tc := range []struct {
		name                string
		caps                []string
		socket, personality int // rules after compaction
		socketWas, persWas  int // before
	}{
		{name: "docker default caps", caps: DefaultCapabilities(), socket: 12, personality: 2, socketWas: 30, persWas: 5},
		{name: "all caps", caps: allCaps(), socket: 12, personality: 2, socketWas: 30, persWas: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dockerProfile(t, tc.caps)
			before := dockerProfile(t, tc.caps) // an untouched copy
			c := CompactSeccomp(p)
			if !reflect.DeepEqual(p, before) {
				t.Fatal("CompactSeccomp modified its argument")
			}
			if got := ruleCount(p, "socket"); got != tc.socketWas {
				t.Fatalf("Docker's profile has %d socket rules, the test expects %d: update it", got, tc.socketWas)
			}
			if got := ruleCount(p, "personality"); got != tc.persWas {
				t.Fatalf("Docker's profile has %d personality rules, the test expects %d: update it", got, tc.persWas)
			}
			if got := ruleCount(c, "socket"); got != tc.socket {
				t.Errorf("socket: %d rules after compaction, want %d", got, tc.socket)
			}
			if got := ruleCount(c, "personality"); got != tc.personality {
				t.Errorf("personality: %d rules after compaction, want %d", got, tc.personality)
			}
			sameEffect(t, p, c)
			// Every rule that was not merged is still there, in order.
			var kept []specs.LinuxSyscall
			for _, sc := range c.Syscalls {
				if !slices.Contains(sc.Names, "socket") && !slices.Contains(sc.Names, "personality") {
					kept = append(kept, sc)
				}
			}
			var want []specs.LinuxSyscall
			for _, sc := range p.Syscalls {
				if !slices.Contains(sc.Names, "socket") && !slices.Contains(sc.Names, "personality") {
					want = append(want, sc)
				}
			}
			if !reflect.DeepEqual(kept, want) {
				t.Error("rules other than socket's and personality's changed")
			}
		})
	}
}

func TestCompactSeccompLeavesAlone(t *testing.T) {
	errno := func(v uint) *uint { return &v }
	eq := func(idx uint, v uint64) []specs.LinuxSeccompArg {
		return []specs.LinuxSeccompArg{{Index: idx, Value: v, Op: specs.OpEqualTo}}
	}
	rule := func(name string, act specs.LinuxSeccompAction, args []specs.LinuxSeccompArg) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: []string{name}, Action: act, Args: args}
	}
	allow, deny := specs.ActAllow, specs.ActErrno
	for _, tc := range []struct {
		name  string
		rules []specs.LinuxSyscall
	}{
		{"one rule", []specs.LinuxSyscall{rule("a", allow, eq(0, 1))}},
		{"no arguments", []specs.LinuxSyscall{rule("a", allow, nil), rule("a", allow, nil), rule("a", allow, nil)}},
		{"mixed actions", []specs.LinuxSyscall{rule("a", allow, eq(0, 0)), rule("a", allow, eq(0, 1)), rule("a", deny, eq(0, 2))}},
		{"mixed errno", []specs.LinuxSyscall{
			{Names: []string{"a"}, Action: deny, ErrnoRet: errno(1), Args: eq(0, 0)},
			{Names: []string{"a"}, Action: deny, ErrnoRet: errno(1), Args: eq(0, 1)},
			{Names: []string{"a"}, Action: deny, ErrnoRet: errno(38), Args: eq(0, 2)},
		}},
		{"different arguments", []specs.LinuxSyscall{rule("a", allow, eq(0, 0)), rule("a", allow, eq(0, 1)), rule("a", allow, eq(1, 2))}},
		{"two comparisons", []specs.LinuxSyscall{rule("a", allow, eq(0, 0)), rule("a", allow, eq(0, 1)),
			rule("a", allow, append(eq(0, 2), eq(1, 2)...))}},
		{"other operator", []specs.LinuxSyscall{rule("a", allow, eq(0, 0)), rule("a", allow, eq(0, 1)),
			rule("a", allow, []specs.LinuxSeccompArg{{Index: 0, Value: 4, Op: specs.OpGreaterEqual}})}},
		{"large bound", []specs.LinuxSyscall{rule("a", allow, eq(0, 100)), rule("a", allow, eq(0, 101)),
			rule("a", allow, []specs.LinuxSeccompArg{{Index: 0, Value: 1000, Op: specs.OpLessThan}})}},
		{"value over 32 bits", []specs.LinuxSyscall{rule("a", allow, eq(0, 0)), rule("a", allow, eq(0, 1)), rule("a", allow, eq(0, 1<<32))}},
		{"nothing to gain", []specs.LinuxSyscall{rule("a", allow, eq(0, 1)), rule("a", allow, eq(0, 2))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: tc.rules}
			if c := CompactSeccomp(p); !reflect.DeepEqual(c, p) {
				t.Errorf("changed:\n%+v\nto\n%+v", p.Syscalls, c.Syscalls)
			}
		})
	}
	if CompactSeccomp(nil) != nil {
		t.Error("CompactSeccomp(nil) is not nil")
	}
}

func TestCompactSeccompSharedRule(t *testing.T) {
	// "b" shares the first rule with "a": it keeps it, "a" alone is merged.
	p := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"x"}, Action: specs.ActAllow},
		{Names: []string{"a", "b"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 4, Op: specs.OpEqualTo}}},
		{Names: []string{"a"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 5, Op: specs.OpEqualTo}}},
		{Names: []string{"a"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 4, Op: specs.OpLessThan}}},
		{Names: []string{"y"}, Action: specs.ActAllow},
	}}
	c := CompactSeccomp(p)
	// 0..5 takes two cubes (0-3 and 4-5, or 0,1,4,5 and 0-3), in the
	// place of a's first rule.
	if len(c.Syscalls) != 5 || !slices.Equal(c.Syscalls[2].Names, []string{"a"}) || !slices.Equal(c.Syscalls[3].Names, []string{"a"}) {
		t.Fatalf("got %+v", c.Syscalls)
	}
	for i, want := range []specs.LinuxSyscall{
		{Names: []string{"x"}, Action: specs.ActAllow},
		{Names: []string{"b"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 4, Op: specs.OpEqualTo}}},
		4: {Names: []string{"y"}, Action: specs.ActAllow},
	} {
		if want.Names != nil && !reflect.DeepEqual(c.Syscalls[i], want) {
			t.Errorf("rule %d: got %+v, want %+v", i, c.Syscalls[i], want)
		}
	}
	for _, sc := range c.Syscalls[2:4] {
		if len(sc.Args) != 1 || sc.Args[0].Op != specs.OpMaskedEqual || sc.Args[0].Index != 1 {
			t.Errorf("a's merged rule %+v: want one masked comparison of argument 1", sc)
		}
	}
	sameEffect(t, p, c)
}

func TestMaskedCover(t *testing.T) {
	check := func(t *testing.T, vals []uint64) []cube {
		t.Helper()
		cover := maskedCover(vals)
		in := map[uint64]bool{}
		for _, v := range vals {
			in[v] = true
		}
		// Candidates: the members, everything near them bit by bit, and
		// small numbers.
		cands := map[uint64]bool{}
		for v := range uint64(1100) {
			cands[v] = true
		}
		for _, v := range vals {
			for b := range 64 {
				cands[v^1<<b] = true
			}
		}
		for x := range cands {
			got := slices.ContainsFunc(cover, func(c cube) bool { return c.has(x) })
			if got != in[x] {
				t.Fatalf("set %v, cover %v: %#x covered %v, member %v", vals, cover, x, got, in[x])
			}
		}
		for _, c := range cover {
			if c.value&^c.mask != 0 || c.mask>>32 != 0xffffffff {
				t.Fatalf("cube %+v: value outside its mask, or high bits free", c)
			}
		}
		return cover
	}
	for _, tc := range []struct {
		vals []uint64
		want int
	}{
		{[]uint64{5}, 1},
		{[]uint64{0, 1, 2, 3, 4, 5, 6, 7}, 1},
		{[]uint64{0, 8, 0x20000, 0x20008}, 1},
		{[]uint64{0, 8, 0x20000, 0x20008, 0xffffffff}, 2},
		{[]uint64{1, 2}, 2},
		{[]uint64{0, 1, 2, 7, 8, 9, 10, 13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44, 45}, 12},
	} {
		if got := check(t, tc.vals); len(got) != tc.want {
			t.Errorf("%v: %d cubes (%v), want %d", tc.vals, len(got), got, tc.want)
		}
	}
	// Random sets: dense small ones, sparse ones, and a few large values.
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		n := 1 + r.IntN(64)
		span := uint64(8 + r.IntN(200))
		set := map[uint64]bool{}
		for range n {
			v := r.Uint64N(span)
			if r.IntN(10) == 0 {
				v |= uint64(r.Uint32()) &^ 0xff
			}
			set[v] = true
		}
		var vals []uint64
		for v := range set {
			vals = append(vals, v)
		}
		slices.Sort(vals)
		if cover := check(t, vals); len(cover) > len(vals) {
			t.Fatalf("%v: %d cubes for %d values", vals, len(cover), len(vals))
		}
	}
}
