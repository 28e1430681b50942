package spec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ParseMemory parses a --memory or --memory-reservation value as docker does:
// a decimal number of bytes with an optional binary unit, b, k, m, g, t or p
// (case-insensitive, optionally followed by "ib" or "b": 512m, 1.5g, 64MiB,
// 1073741824). The result is at least MinMemory (6 MiB).
func ParseMemory(s string) (int64, error) {
	n, err := ParseBytes(s)
	if err != nil {
		return 0, err
	}
	if n < MinMemory {
		return 0, invalidf("memory size %q is below the minimum of 6MiB", s)
	}
	return n, nil
}

// ParseBytes parses a size like ParseMemory without its minimum.
func ParseBytes(s string) (int64, error) {
	bad := func(why string) error {
		return invalidf("invalid size %q: %s", s, why)
	}
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, bad("empty")
	}
	t = strings.TrimSuffix(t, "b")
	mult := int64(1)
	if strings.HasSuffix(t, "i") {
		t = t[:len(t)-1]
		if t == "" || strings.IndexByte("kmgtp", t[len(t)-1]) < 0 {
			return 0, bad("\"i\" must follow a unit: k, m, g, t or p")
		}
	}
	if t != "" {
		if i := strings.IndexByte("kmgtp", t[len(t)-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = strings.TrimSuffix(t[:len(t)-1], " ")
		}
	}
	if !isDecimal(t) {
		return 0, bad("want a number with an optional unit b, k, m, g, t or p, such as 512m or 1.5g")
	}
	r, _ := new(big.Rat).SetString(t)
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // docker truncates fractions of a byte
	if !n.IsInt64() {
		return 0, bad("too large")
	}
	return n.Int64(), nil
}

// isDecimal reports whether s is digits with an optional fraction: 1, 1.5, .5.
func isDecimal(s string) bool {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" && frac == "" || hasDot && frac == "" {
		return false
	}
	for _, c := range []byte(intPart + frac) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ParseCPUs parses a --cpus value: a positive decimal number of CPUs with at
// most nine decimal places (docker's nano-CPU precision), such as 0.5 or 2.
func ParseCPUs(s string) (float64, error) {
	t := strings.TrimSpace(s)
	if !isDecimal(t) {
		return 0, invalidf("invalid CPU count %q: want a decimal number such as 0.5 or 2", s)
	}
	r, _ := new(big.Rat).SetString(t)
	if r.Sign() <= 0 {
		return 0, invalidf("invalid CPU count %q: must be > 0", s)
	}
	if !new(big.Rat).Mul(r, big.NewRat(1e9, 1)).IsInt() {
		return 0, invalidf("invalid CPU count %q: at most 9 decimal places", s)
	}
	f, _ := r.Float64()
	if math.IsInf(f, 0) {
		return 0, invalidf("invalid CPU count %q: too large", s)
	}
	return f, nil
}

// Unlimited is the rlimit value meaning no limit (RLIM_INFINITY).
const Unlimited = ^uint64(0)

// Ulimit is one --ulimit: an rlimit by its short name ("nofile") and its soft
// and hard values (Unlimited for none).
type Ulimit struct {
	Name       string
	Soft, Hard uint64
}

// ulimitNames are the names docker accepts, plus "as" (RLIMIT_AS).
var ulimitNames = []string{
	"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
	"nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
}

func rlimitType(name string) string { return "RLIMIT_" + strings.ToUpper(name) }

// String writes u as --ulimit takes it.
func (u Ulimit) String() string {
	return u.Name + "=" + limitString(u.Soft) + ":" + limitString(u.Hard)
}

func (u Ulimit) validate() error {
	if !knownUlimit(u.Name) {
		return invalidf("--ulimit %q: unknown limit %q; known: %s", u.String(), u.Name, strings.Join(ulimitNames, ", "))
	}
	if u.Soft > u.Hard {
		return invalidf("--ulimit %s: the soft limit is above the hard limit", u)
	}
	return nil
}

func knownUlimit(name string) bool {
	for _, n := range ulimitNames {
		if n == name {
			return true
		}
	}
	return false
}

// ParseUlimit parses a --ulimit value, NAME=SOFT[:HARD], with docker's names
// (nofile, nproc, core, memlock, stack, …). A missing HARD equals SOFT; -1 or
// "unlimited" means no limit; SOFT may not exceed HARD.
func ParseUlimit(s string) (Ulimit, error) {
	name, vals, ok := strings.Cut(s, "=")
	if !ok {
		return Ulimit{}, invalidf("invalid ulimit %q: want NAME=SOFT[:HARD], such as nofile=1024:2048", s)
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if !knownUlimit(name) {
		return Ulimit{}, invalidf("invalid ulimit %q: unknown limit %q; known: %s", s, name, strings.Join(ulimitNames, ", "))
	}
	softS, hardS, hasHard := strings.Cut(vals, ":")
	soft, err := parseLimit(softS)
	if err != nil {
		return Ulimit{}, invalidf("invalid ulimit %q: soft limit: %v", s, err)
	}
	hard := soft
	if hasHard {
		if hard, err = parseLimit(hardS); err != nil {
			return Ulimit{}, invalidf("invalid ulimit %q: hard limit: %v", s, err)
		}
	}
	u := Ulimit{Name: name, Soft: soft, Hard: hard}
	if soft > hard {
		return Ulimit{}, invalidf("invalid ulimit %q: the soft limit is above the hard limit", s)
	}
	return u, nil
}

func parseLimit(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "-1" || strings.EqualFold(s, "unlimited") {
		return Unlimited, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == Unlimited {
		return 0, fmt.Errorf("%q is not a number, -1 or unlimited", s)
	}
	return v, nil
}

// VolumeSpec is a parsed -v value.
type VolumeSpec struct {
	// Source is an absolute host path for a bind mount, or a volume name.
	Source string
	// Destination is the absolute path in the container.
	Destination string
	// ReadOnly is set by the "ro" mode.
	ReadOnly bool
	// Named says Source is a named volume, which the caller resolves to a
	// directory under the state root (creating it if needed).
	Named bool
}

// Mount returns the Mount for v once the caller has resolved its source to
// hostPath (v.Source itself for a bind mount) and checked that it exists.
func (v VolumeSpec) Mount(hostPath string) Mount {
	return Mount{Source: hostPath, Destination: v.Destination, ReadOnly: v.ReadOnly}
}

// ParseVolume parses a -v value, SRC:DST[:MODE]. An absolute SRC is a bind
// mount, anything else the name of a named volume (docker's rule:
// [a-zA-Z0-9][a-zA-Z0-9_.-]+). DST must be absolute and not "/". MODE is "ro"
// or "rw". Whether a bind source exists is checked by the caller.
func ParseVolume(s string) (VolumeSpec, error) {
	bad := func(format string, args ...any) (VolumeSpec, error) {
		return VolumeSpec{}, invalidf("invalid volume %q: %s", s, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(s, ":")
	switch {
	case len(parts) == 1:
		return bad("want SRC:DST[:ro|rw]; anonymous volumes are not supported")
	case len(parts) > 3:
		return bad("too many colons: want SRC:DST[:ro|rw]")
	}
	v := VolumeSpec{Source: parts[0], Destination: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return bad("unknown mode %q: want ro or rw", parts[2])
		}
	}
	if err := checkDestination(v.Destination); err != nil {
		return bad("%v", err)
	}
	v.Destination = path.Clean(v.Destination)
	switch {
	case v.Source == "":
		return bad("empty source")
	case path.IsAbs(v.Source):
		v.Source = path.Clean(v.Source)
	case !validName(v.Source):
		return bad("source %q is neither an absolute path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)", v.Source)
	default:
		v.Named = true
	}
	if strings.ContainsRune(s, 0) {
		return bad("contains a NUL byte")
	}
	return v, nil
}

// checkDestination accepts absolute container paths other than "/".
func checkDestination(dst string) error {
	switch {
	case dst == "":
		return errors.New("empty destination")
	case !path.IsAbs(dst):
		return fmt.Errorf("destination %q is not an absolute path", dst)
	case path.Clean(dst) == "/":
		return errors.New("destination can't be /")
	case strings.ContainsRune(dst, 0):
		return errors.New("destination contains a NUL byte")
	}
	return nil
}

// ParseSignal parses a signal as docker's --stop-signal and `kill -s` take
// it: a name with or without "SIG" in any case ("SIGTERM", "term"), a number
// ("15"), or a real-time signal ("SIGRTMIN+3", "RTMAX-1").
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, invalidf("invalid signal %q", s)
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > sigRTMax {
			return 0, invalidf("invalid signal %q: numbers run from 1 to %d", s, sigRTMax)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(t)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig, ok := rtSignal(name); ok {
		return sig, nil
	}
	if alias, ok := signalAliases[name]; ok {
		name = alias
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, invalidf("invalid signal %q: unknown name", s)
}

// The real-time signals as glibc and docker number them (the first two are
// reserved by glibc).
const (
	sigRTMin = 34
	sigRTMax = 64
)

var signalAliases = map[string]string{"SIGIOT": "SIGABRT", "SIGCLD": "SIGCHLD", "SIGPOLL": "SIGIO"}

func rtSignal(name string) (syscall.Signal, bool) {
	for _, base := range []struct {
		prefix string
		n, dir int
	}{{"SIGRTMIN", sigRTMin, 1}, {"SIGRTMAX", sigRTMax, -1}} {
		rest, ok := strings.CutPrefix(name, base.prefix)
		if !ok {
			continue
		}
		off := 0
		if rest != "" {
			sign := "+"
			if base.dir < 0 {
				sign = "-"
			}
			num, ok := strings.CutPrefix(rest, sign)
			if !ok {
				return 0, false
			}
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 {
				return 0, false
			}
			off = n
		}
		if off > sigRTMax-sigRTMin {
			return 0, false
		}
		return syscall.Signal(base.n + base.dir*off), true
	}
	return 0, false
}

// signalName is the canonical name of a signal ParseSignal returned.
func signalName(sig syscall.Signal) string {
	if sig >= sigRTMin && sig <= sigRTMax {
		if sig == sigRTMin {
			return "SIGRTMIN"
		}
		return "SIGRTMIN+" + strconv.Itoa(int(sig)-sigRTMin)
	}
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return strconv.Itoa(int(sig))
}

// ParseEnvFile reads an --env-file with docker's rules: one KEY=VALUE per
// line, the value taken verbatim (no quotes or escapes); blank lines and lines
// starting with "#" are skipped; leading whitespace is dropped; a key may not
// contain whitespace; a bare KEY takes the value from the caller's
// environment and is dropped when unset there; the file must be UTF-8.
func ParseEnvFile(filename string) ([]string, error) {
	return readEnvFile(filename, os.LookupEnv)
}

func readEnvFile(filename string, lookup func(string) (string, bool)) ([]string, error) {
	f, err := os.Open(filename)
	if err != nil {
		return nil, invalidf("env file: %w", err)
	}
	defer f.Close()
	return parseEnvFile(f, filename, lookup)
}

func parseEnvFile(r io.Reader, filename string, lookup func(string) (string, bool)) ([]string, error) {
	var env []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		}
		if !utf8.Valid(b) {
			return nil, invalidf("env file %s, line %d: not valid UTF-8", filename, line)
		}
		text := strings.TrimLeftFunc(string(b), unicode.IsSpace)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, hasValue := strings.Cut(text, "=")
		if key == "" {
			return nil, invalidf("env file %s, line %d: no variable name in %q", filename, line, text)
		}
		if strings.ContainsAny(key, " \t") {
			return nil, invalidf("env file %s, line %d: variable %q contains whitespace", filename, line, key)
		}
		if strings.ContainsRune(text, 0) {
			return nil, invalidf("env file %s, line %d: contains a NUL byte", filename, line)
		}
		if hasValue {
			env = append(env, key+"="+value)
		} else if v, ok := lookup(strings.TrimSpace(key)); ok {
			env = append(env, key+"="+v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, invalidf("env file %s: %w", filename, err)
	}
	return env, nil
}
