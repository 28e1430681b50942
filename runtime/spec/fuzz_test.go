package spec

import (
	"bytes"
	"path"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The parsers take untrusted strings from command lines, task definitions and
// env files: they must never panic and must only return what they promise.

func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"512m", "1.5g", "64MiB", "1073741824", "8p", "12q", "", "1..5", ".5g", "9223372036854775807", "8192p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseMemory(s)
		if err != nil {
			return
		}
		if n < MinMemory {
			t.Fatalf("ParseMemory(%q) = %d, below the minimum", s, n)
		}
		if back, err := ParseMemory(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("ParseMemory(%q) = %d, which does not parse back: %d, %v", s, n, back, err)
		}
	})
}

func FuzzParseUlimit(f *testing.F) {
	for _, s := range []string{"nofile=1024:2048", "nproc=1", "core=-1:-1", "stack=1:unlimited", "x=1", "nofile=2:1", "nofile=:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUlimit(s)
		if err != nil {
			return
		}
		if !knownUlimit(u.Name) || u.Soft > u.Hard {
			t.Fatalf("ParseUlimit(%q) = %+v", s, u)
		}
		if err := u.validate(); err != nil {
			t.Fatalf("ParseUlimit(%q) = %+v, which does not validate: %v", s, u, err)
		}
		if back, err := ParseUlimit(u.String()); err != nil || back != u {
			t.Fatalf("ParseUlimit(%q) = %+v, which does not round-trip: %+v, %v", s, u, back, err)
		}
	})
}

func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/srv:/data", "/srv:/data:ro", "vol:/data:rw", "/data", "a:b:c:d", "/srv:/", "x:/y", ":/d", "/a/../b:/c/./d/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVolume(s)
		if err != nil {
			return
		}
		if !path.IsAbs(v.Destination) || path.Clean(v.Destination) != v.Destination || v.Destination == "/" {
			t.Fatalf("ParseVolume(%q): bad destination %q", s, v.Destination)
		}
		if v.Named != !path.IsAbs(v.Source) {
			t.Fatalf("ParseVolume(%q): Named=%v for source %q", s, v.Named, v.Source)
		}
		if v.Named && !validName(v.Source) || !v.Named && path.Clean(v.Source) != v.Source {
			t.Fatalf("ParseVolume(%q): bad source %q", s, v.Source)
		}
		if strings.ContainsAny(v.Source+v.Destination, ":\x00") {
			t.Fatalf("ParseVolume(%q) = %+v", s, v)
		}
		again := v.Source + ":" + v.Destination
		if v.ReadOnly {
			again += ":ro"
		}
		if back, err := ParseVolume(again); err != nil || back != v {
			t.Fatalf("ParseVolume(%q) = %+v, which does not round-trip: %+v, %v", s, v, back, err)
		}
	})
}

func FuzzParseEnvFile(f *testing.F) {
	for _, s := range []string{"A=1\nB=2\n", "# c\n\n  X=y z\n", "BARE\n", "\xef\xbb\xbfA=1", "A B=1", "=x", "A=\xff", "A=1\r\n"} {
		f.Add([]byte(s))
	}
	lookup := func(k string) (string, bool) { return "v-" + k, len(k)%2 == 0 }
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := parseEnvFile(bytes.NewReader(data), "fuzz.env", lookup)
		if err != nil {
			return
		}
		for _, kv := range env {
			key, _, ok := strings.Cut(kv, "=")
			if !ok || key == "" || strings.ContainsAny(key, " \t") || strings.ContainsRune(kv, 0) || !utf8.ValidString(key) {
				t.Fatalf("parseEnvFile(%q) returned %q", data, kv)
			}
		}
	})
}

func FuzzParseTmpfs(f *testing.F) {
	for _, s := range []string{"/run", "/run:size=64m,mode=1777", "/t:exec,ro,rw", "run", "/t:size=x", "/t:,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseTmpfs(s)
		if err != nil {
			return
		}
		if checkDestination(m.Destination) != nil || m.Type != "tmpfs" {
			t.Fatalf("ParseTmpfs(%q) = %+v", s, m)
		}
		groups := map[string]bool{}
		for _, o := range m.Options {
			key := tmpfsFlags[o]
			if key == "" {
				k, _, _ := strings.Cut(o, "=")
				key = "=" + k
			}
			if groups[key] {
				t.Fatalf("ParseTmpfs(%q): two options of group %q in %q", s, key, m.Options)
			}
			groups[key] = true
		}
	})
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"SIGTERM", "kill", "15", "RTMIN+2", "SIGRTMAX-30", "0", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err != nil {
			return
		}
		if sig < 1 || sig > sigRTMax {
			t.Fatalf("ParseSignal(%q) = %d", s, sig)
		}
	})
}
