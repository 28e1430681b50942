package spec

import (
	"cmp"
	"fmt"
	"math/bits"
	"os"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SeccompUnconfined is the --security-opt seccomp= value that turns seccomp
// off.
const SeccompUnconfined = "unconfined"

// setSeccomp applies docker's default profile, none, or a profile file. It
// runs after the capabilities are set: the default profile allows the
// syscalls that the container's capabilities make useful (mount with
// CAP_SYS_ADMIN, and so on).
func (g *generator) setSeccomp(s *specs.Spec) error {
	switch {
	case g.o.Privileged || g.o.Seccomp == SeccompUnconfined:
		return nil
	case g.o.Seccomp == "":
		if g.o.NoSeccomp {
			return nil // docker runs without its default profile then, too
		}
		p, err := g.h.seccompDefault(s)
		if err != nil {
			return fmt.Errorf("docker's default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = p
		return nil
	}
	file := g.o.Seccomp
	if g.o.NoSeccomp {
		return invalidf("--security-opt seccomp=%s: this berth was built without seccomp support", file)
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return invalidf("--security-opt seccomp=%s: %w", file, err)
	}
	p, err := g.h.seccompLoad(string(body), s)
	if err != nil {
		return invalidf("--security-opt seccomp=%s: not a valid seccomp profile: %w", file, err)
	}
	s.Linux.Seccomp = p
	return nil
}

// CompactSeccomp returns a profile with the same effect as p that libseccomp
// compiles faster. Starting a container, libcontainer's init turns the
// profile into BPF with libseccomp, for every architecture the profile names
// (x86-64, x86 and x32 on amd64), and libseccomp's code generation grows
// faster than linearly with the argument comparisons a filter holds.
// Docker's default profile allows socket for about thirty address families,
// one equality rule each (alternative rules: runc cannot AND two comparisons
// of one argument, so a bounded range cannot be one rule), and personality
// for five personas; those few rules take over half of the compile time.
// Compacted, Docker's profile compiles in about 25 ms instead of 40 here.
//
// For each syscall whose every rule allows (or denies) it when one argument
// equals one of a set of values (OpEqualTo, or OpLessThan with a small bound,
// which is a set of values too), CompactSeccomp replaces the rules by the
// fewest masked comparisons (OpMaskedEqual: arg & mask == value) whose union
// is exactly that set: the set's Quine-McCluskey prime implicants, and a
// minimum cover of the set by them. Each masked rule stands for members of
// the set merged pairwise, two that differ in one bit at each step, so it
// matches members only. The values must fit in 32 bits (else the syscall is
// left as it is): then no merge frees a high bit, every mask keeps the high
// 32 bits, and on a 32-bit architecture, where libseccomp compares the low
// 32 bits only, a masked rule matches the same low halves as the rules it
// replaces. Docker's socket rules go from 30 to 12, personality's from 5
// to 2.
//
// Nothing else changes: the same syscall names, actions, errno values,
// architectures, flags and default action, in the same order (the merged
// rules take the place of the first rule they replace). Rules with other
// operators, several comparisons, or values that differ in action or errno
// are left alone. p itself is not modified; the result shares unchanged
// rules with it.
func CompactSeccomp(p *specs.LinuxSeccomp) *specs.LinuxSeccomp {
	if p == nil {
		return nil
	}
	// The rules naming each syscall, in profile order.
	n := 0
	for _, sc := range p.Syscalls {
		n += len(sc.Names)
	}
	rules := make(map[string][]int, n)
	names := make([]string, 0, n)
	for i, sc := range p.Syscalls {
		for _, n := range sc.Names {
			if _, ok := rules[n]; !ok {
				names = append(names, n)
			}
			rules[n] = append(rules[n], i)
		}
	}
	// merged[i] holds the rules that replace, at rule i, the syscalls
	// dropped from it.
	merged := map[int][]specs.LinuxSyscall{}
	dropped := map[int]map[string]bool{}
	for _, n := range names {
		idx := rules[n]
		vals, ok := valueSet(p.Syscalls, idx)
		if !ok {
			continue
		}
		cover := maskedCover(vals)
		if len(cover) >= len(idx) {
			continue
		}
		first := p.Syscalls[idx[0]]
		arg := first.Args[0]
		for _, c := range cover {
			a := specs.LinuxSeccompArg{Index: arg.Index, Value: c.value, Op: specs.OpEqualTo}
			if c.mask != ^uint64(0) {
				a = specs.LinuxSeccompArg{Index: arg.Index, Value: c.mask, ValueTwo: c.value, Op: specs.OpMaskedEqual}
			}
			merged[idx[0]] = append(merged[idx[0]], specs.LinuxSyscall{
				Names: []string{n}, Action: first.Action, ErrnoRet: first.ErrnoRet,
				Args: []specs.LinuxSeccompArg{a},
			})
		}
		for _, i := range idx {
			if dropped[i] == nil {
				dropped[i] = map[string]bool{}
			}
			dropped[i][n] = true
		}
	}
	if len(dropped) == 0 {
		return p
	}
	out := *p
	out.Syscalls = make([]specs.LinuxSyscall, 0, len(p.Syscalls))
	for i, sc := range p.Syscalls {
		if d := dropped[i]; d != nil {
			keep := slices.DeleteFunc(slices.Clone(sc.Names), func(n string) bool { return d[n] })
			if len(keep) > 0 {
				sc.Names = keep
				out.Syscalls = append(out.Syscalls, sc)
			}
		} else {
			out.Syscalls = append(out.Syscalls, sc)
		}
		out.Syscalls = append(out.Syscalls, merged[i]...)
	}
	return &out
}

// maxLessThan bounds the OpLessThan rules CompactSeccomp expands into sets
// of values; maxCompactValues bounds the sets it compacts.
const (
	maxLessThan      = 64
	maxCompactValues = 256
)

// valueSet returns the values of argument A for which the rules at idx
// match, when each of them has a single comparison, OpEqualTo or a small
// OpLessThan, of the same argument A, and they share one action and errno;
// ok is false otherwise. The values are sorted and fit in 32 bits.
func valueSet(all []specs.LinuxSyscall, idx []int) (vals []uint64, ok bool) {
	if len(idx) < 2 {
		return nil, false
	}
	first := all[idx[0]]
	if len(first.Args) != 1 {
		return nil, false
	}
	seen := map[uint64]bool{}
	add := func(v uint64) { seen[v] = true }
	for _, i := range idx {
		sc := all[i]
		if len(sc.Args) != 1 || sc.Action != first.Action || !sameErrno(sc.ErrnoRet, first.ErrnoRet) {
			return nil, false
		}
		a := sc.Args[0]
		if a.Index != first.Args[0].Index || a.ValueTwo != 0 {
			return nil, false
		}
		switch a.Op {
		case specs.OpEqualTo:
			if a.Value > 1<<32-1 {
				return nil, false
			}
			add(a.Value)
		case specs.OpLessThan:
			if a.Value > maxLessThan {
				return nil, false
			}
			for v := range a.Value {
				add(v)
			}
		default:
			return nil, false
		}
		if len(seen) > maxCompactValues {
			return nil, false
		}
	}
	for v := range seen {
		vals = append(vals, v)
	}
	slices.Sort(vals)
	return vals, len(vals) > 0
}

func sameErrno(a, b *uint) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// cube is a set of values: those x with x&mask == value (value&^mask == 0).
type cube struct{ mask, value uint64 }

func (c cube) has(x uint64) bool { return x&c.mask == c.value }

// maskedCover returns the fewest cubes whose union is exactly vals (sorted,
// distinct): vals' prime implicants by Quine-McCluskey, then a minimum
// cover of vals by them (exhaustive for sets this small; greedy if the
// search grows too large). The cubes are in order of their value.
func maskedCover(vals []uint64) []cube {
	// Every cube built here is the union of two cubes of the level below
	// that differ in one bit, so it holds members of vals only.
	var primes []cube
	level := make([]cube, len(vals))
	for i, v := range vals {
		level[i] = cube{^uint64(0), v}
	}
	for len(level) > 0 {
		used := make([]bool, len(level))
		seen := map[cube]bool{}
		var next []cube
		for i, a := range level {
			for j := i + 1; j < len(level); j++ {
				b := level[j]
				d := a.value ^ b.value
				if a.mask != b.mask || d == 0 || d&(d-1) != 0 {
					continue
				}
				used[i], used[j] = true, true
				c := cube{a.mask &^ d, a.value &^ d}
				if !seen[c] {
					seen[c] = true
					next = append(next, c)
				}
			}
		}
		for i, c := range level {
			if !used[i] {
				primes = append(primes, c)
			}
		}
		level = next
	}
	// Larger cubes first, so that both searches try them first.
	slices.SortFunc(primes, func(a, b cube) int {
		if na, nb := bits.OnesCount64(a.mask), bits.OnesCount64(b.mask); na != nb {
			return na - nb
		}
		return cmpCube(a, b)
	})
	cover := exactCover(vals, primes)
	if cover == nil {
		cover = greedyCover(vals, primes)
	}
	slices.SortFunc(cover, cmpCube)
	return cover
}

func cmpCube(a, b cube) int {
	if a.value != b.value {
		return cmp.Compare(a.value, b.value)
	}
	return cmp.Compare(a.mask, b.mask)
}

// valBits is a set of indices into a value list of at most
// maxCompactValues values.
type valBits [maxCompactValues / 64]uint64

func (b *valBits) set(i int) { b[i/64] |= 1 << (i % 64) }
func (b *valBits) union(o valBits) {
	b[0], b[1], b[2], b[3] = b[0]|o[0], b[1]|o[1], b[2]|o[2], b[3]|o[3]
}
func (b valBits) minus(o valBits) valBits {
	return valBits{b[0] &^ o[0], b[1] &^ o[1], b[2] &^ o[2], b[3] &^ o[3]}
}
func (b valBits) count() int {
	return bits.OnesCount64(b[0]) + bits.OnesCount64(b[1]) + bits.OnesCount64(b[2]) + bits.OnesCount64(b[3])
}

func (b valBits) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }

// exactCover finds a smallest set of primes covering vals by iterative
// deepening: some prime holding the value held by the fewest primes must be
// in the cover; a branch stops once even the largest primes could not cover
// what is left within the limit. It gives up (nil) after a fixed amount of
// search.
func exactCover(vals []uint64, primes []cube) []cube {
	var all valBits
	holds := make([]valBits, len(primes))
	heldBy := make([][]int, len(vals)) // primes holding each value
	largest := 1
	for j, p := range primes {
		for i, v := range vals {
			if p.has(v) {
				holds[j].set(i)
				heldBy[i] = append(heldBy[i], j)
			}
		}
		largest = max(largest, holds[j].count())
	}
	for i := range vals {
		all.set(i)
	}
	budget := 20000
	var chosen []int
	var search func(left valBits, limit int) bool
	search = func(left valBits, limit int) bool {
		n := left.count()
		if n == 0 {
			return true
		}
		if len(chosen)+(n+largest-1)/largest > limit || budget <= 0 {
			return false
		}
		budget--
		pick := -1
		for i := range vals {
			if left.has(i) && (pick < 0 || len(heldBy[i]) < len(heldBy[pick])) {
				pick = i
			}
		}
		for _, j := range heldBy[pick] {
			chosen = append(chosen, j)
			if search(left.minus(holds[j]), limit) {
				return true
			}
			chosen = chosen[:len(chosen)-1]
		}
		return false
	}
	for limit := 1; limit <= len(vals) && budget > 0; limit++ {
		if search(all, limit) {
			cover := make([]cube, len(chosen))
			for i, j := range chosen {
				cover[i] = primes[j]
			}
			return cover
		}
	}
	return nil
}

// greedyCover covers vals by taking, each time, the prime that covers the
// most values not yet covered.
func greedyCover(vals []uint64, primes []cube) []cube {
	var cover []cube
	var covered valBits
	for covered.count() < len(vals) {
		best, bestN := cube{}, 0
		var bestHolds valBits
		for _, p := range primes {
			var h valBits
			for i, v := range vals {
				if p.has(v) {
					h.set(i)
				}
			}
			if n := h.minus(covered).count(); n > bestN {
				best, bestN, bestHolds = p, n, h
			}
		}
		cover = append(cover, best)
		covered.union(bestHolds)
	}
	return cover
}
