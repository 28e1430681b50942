package spec

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// wantErr checks err against a wanted substring ("" = no error) and that
// every parser error is an ErrInvalid.
func wantErr(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return false
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %q is not ErrInvalid", err)
	}
	return true
}

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{in: "512m", want: 512 << 20},
		{in: "512M", want: 512 << 20},
		{in: "1g", want: 1 << 30},
		{in: "1G", want: 1 << 30},
		{in: "1.5g", want: 3 << 29},
		{in: "64MiB", want: 64 << 20},
		{in: "64mb", want: 64 << 20},
		{in: "64 m", want: 64 << 20},
		{in: "1073741824", want: 1 << 30},
		{in: "1073741824b", want: 1 << 30},
		{in: "6291456", want: MinMemory},
		{in: "6144k", want: MinMemory},
		{in: " 1t ", want: 1 << 40},
		{in: "8p", want: 8 << 50},
		{in: "12q", err: `invalid size "12q"`},
		{in: "", err: `invalid size "": empty`},
		{in: "m", err: "want a number"},
		{in: "-1", err: "want a number"},
		{in: "1..5g", err: "want a number"},
		{in: "1.g", err: "want a number"},
		{in: "1e3", err: "want a number"},
		{in: "0x10m", err: "want a number"},
		{in: "512i", err: `"i" must follow a unit`},
		{in: "512kk", err: "want a number"},
		{in: "8192p", err: "too large"},
		{in: "99999999999999999999", err: "too large"},
		{in: "5m", err: `memory size "5m" is below the minimum of 6MiB`},
		{in: "0", err: "below the minimum"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMemory(tc.in)
			if wantErr(t, err, tc.err) {
				return
			}
			if got != tc.want {
				t.Fatalf("ParseMemory(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseCPUs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{in: "0.5", want: 0.5},
		{in: "2", want: 2},
		{in: ".25", want: 0.25},
		{in: "1.000000001", want: 1.000000001},
		{in: "0", err: `invalid CPU count "0": must be > 0`},
		{in: "0.0", err: "must be > 0"},
		{in: "-1", err: "want a decimal number"},
		{in: "abc", err: `invalid CPU count "abc"`},
		{in: "1/2", err: "want a decimal number"},
		{in: "1e2", err: "want a decimal number"},
		{in: "NaN", err: "want a decimal number"},
		{in: "", err: "want a decimal number"},
		{in: "0.0000000001", err: "at most 9 decimal places"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCPUs(tc.in)
			if wantErr(t, err, tc.err) {
				return
			}
			if got != tc.want {
				t.Fatalf("ParseCPUs(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseUlimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ulimit
		err  string
	}{
		{in: "nofile=1024:2048", want: Ulimit{"nofile", 1024, 2048}},
		{in: "nofile=1024", want: Ulimit{"nofile", 1024, 1024}},
		{in: "NPROC=64:128", want: Ulimit{"nproc", 64, 128}},
		{in: "core=0", want: Ulimit{"core", 0, 0}},
		{in: "memlock=-1:-1", want: Ulimit{"memlock", Unlimited, Unlimited}},
		{in: "stack=8388608:unlimited", want: Ulimit{"stack", 8388608, Unlimited}},
		{in: "rtprio=0:0", want: Ulimit{"rtprio", 0, 0}},
		{in: "as=1:2", want: Ulimit{"as", 1, 2}},
		{in: "nofile", err: "want NAME=SOFT[:HARD]"},
		{in: "bogus=1", err: `unknown limit "bogus"`},
		{in: "=1", err: `unknown limit ""`},
		{in: "nofile=2048:1024", err: "soft limit is above the hard limit"},
		{in: "nofile=-1:1024", err: "soft limit is above the hard limit"},
		{in: "nofile=abc", err: `soft limit: "abc" is not a number`},
		{in: "nofile=1:abc", err: `hard limit: "abc" is not a number`},
		{in: "nofile=-2", err: "is not a number"},
		{in: "nofile=1:2:3", err: "hard limit"},
		{in: "nofile=", err: "soft limit"},
		{in: "nofile=18446744073709551615", err: "is not a number"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseUlimit(tc.in)
			if wantErr(t, err, tc.err) {
				return
			}
			if got != tc.want {
				t.Fatalf("ParseUlimit(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if back, err := ParseUlimit(got.String()); err != nil || back != got {
				t.Fatalf("round trip of %q via %q: %+v, %v", tc.in, got.String(), back, err)
			}
		})
	}
}

func TestParseVolume(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want VolumeSpec
		err  string
	}{
		{in: "/srv/data:/data", want: VolumeSpec{Source: "/srv/data", Destination: "/data"}},
		{in: "/srv/data/:/data/:ro", want: VolumeSpec{Source: "/srv/data", Destination: "/data", ReadOnly: true}},
		{in: "/srv:/data:rw", want: VolumeSpec{Source: "/srv", Destination: "/data"}},
		{in: "pgdata:/var/lib/postgresql", want: VolumeSpec{Source: "pgdata", Destination: "/var/lib/postgresql", Named: true}},
		{in: "my_vol.1-x:/v:ro", want: VolumeSpec{Source: "my_vol.1-x", Destination: "/v", ReadOnly: true, Named: true}},
		{in: "/data", err: "anonymous volumes are not supported"},
		{in: "a:b:c:d", err: "too many colons"},
		{in: "/srv:/data:rx", err: `unknown mode "rx"`},
		{in: "/srv:/data:", err: `unknown mode ""`},
		{in: "/srv:data", err: `destination "data" is not an absolute path`},
		{in: "/srv:", err: "empty destination"},
		{in: "/srv:/", err: "destination can't be /"},
		{in: "/srv:/a/..", err: "destination can't be /"},
		{in: ":/data", err: "empty source"},
		{in: "x:/data", err: "neither an absolute path nor a volume name"},
		{in: "./rel:/data", err: "neither an absolute path nor a volume name"},
		{in: "_v:/data", err: "neither an absolute path nor a volume name"},
		{in: "/s\x00rc:/data", err: "NUL"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseVolume(tc.in)
			if wantErr(t, err, tc.err) {
				return
			}
			if got != tc.want {
				t.Fatalf("ParseVolume(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
	v, _ := ParseVolume("data:/d:ro")
	if m := v.Mount("/var/lib/berth/volumes/data"); m != (Mount{Source: "/var/lib/berth/volumes/data", Destination: "/d", ReadOnly: true}) {
		t.Fatalf("Mount = %+v", m)
	}
}

func TestCheckSources(t *testing.T) {
	dir := t.TempDir()
	if err := CheckSources([]Mount{{Source: dir, Destination: "/d"}}); err != nil {
		t.Fatal(err)
	}
	err := CheckSources([]Mount{{Source: dir, Destination: "/d"}, {Source: "/nope", Destination: "/e"}})
	wantErr(t, err, "volume source /nope does not exist")
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
		err  string
	}{
		{in: "SIGTERM", want: syscall.SIGTERM},
		{in: "TERM", want: syscall.SIGTERM},
		{in: "term", want: syscall.SIGTERM},
		{in: "sigquit", want: syscall.SIGQUIT},
		{in: "15", want: syscall.SIGTERM},
		{in: "9", want: syscall.SIGKILL},
		{in: "SIGKILL", want: syscall.SIGKILL},
		{in: "HUP", want: syscall.SIGHUP},
		{in: "SIGUSR1", want: syscall.SIGUSR1},
		{in: "IOT", want: syscall.SIGABRT},
		{in: "SIGRTMIN", want: 34},
		{in: "RTMIN+3", want: 37},
		{in: "SIGRTMAX", want: 64},
		{in: "SIGRTMAX-2", want: 62},
		{in: "64", want: 64},
		{in: "0", err: "numbers run from 1 to 64"},
		{in: "65", err: "numbers run from 1 to 64"},
		{in: "-9", err: "numbers run from 1 to 64"},
		{in: "SIGNOPE", err: `invalid signal "SIGNOPE": unknown name`},
		{in: "RTMIN-1", err: "unknown name"},
		{in: "RTMIN+31", err: "unknown name"},
		{in: "RTMAX+1", err: "unknown name"},
		{in: "", err: `invalid signal ""`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSignal(tc.in)
			if wantErr(t, err, tc.err) {
				return
			}
			if got != tc.want {
				t.Fatalf("ParseSignal(%q) = %d, want %d", tc.in, got, tc.want)
			}
			if back, err := ParseSignal(signalName(got)); err != nil || back != got {
				t.Fatalf("round trip via %q: %d, %v", signalName(got), back, err)
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	lookup := func(k string) (string, bool) {
		if k == "FROM_CALLER" {
			return "caller value", true
		}
		return "", false
	}
	for _, tc := range []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{name: "basic", in: "A=1\nB=two words\n", want: []string{"A=1", "B=two words"}},
		{name: "comments and blanks", in: "# comment\n\n   \n  # indented comment\nA=1\n", want: []string{"A=1"}},
		{name: "leading whitespace", in: "   A=1\n\tB=2", want: []string{"A=1", "B=2"}},
		{name: "value verbatim", in: `Q="quoted" 'x' # not a comment ` + "\n", want: []string{`Q="quoted" 'x' # not a comment `}},
		{name: "empty value", in: "E=\n", want: []string{"E="}},
		{name: "equals in value", in: "U=a=b=c\n", want: []string{"U=a=b=c"}},
		{name: "bare from caller", in: "FROM_CALLER\n", want: []string{"FROM_CALLER=caller value"}},
		{name: "bare unset dropped", in: "NOT_SET\nA=1\n", want: []string{"A=1"}},
		{name: "BOM", in: "\xef\xbb\xbfA=1\n", want: []string{"A=1"}},
		{name: "CRLF", in: "A=1\r\nB=2\r\n", want: []string{"A=1", "B=2"}},
		{name: "key with space", in: "MY VAR=1\n", err: `line 1: variable "MY VAR" contains whitespace`},
		{name: "key trailing space", in: "A =1\n", err: "contains whitespace"},
		{name: "no key", in: "A=1\n=value\n", err: `line 2: no variable name in "=value"`},
		{name: "invalid utf8", in: "A=\xff\n", err: "line 1: not valid UTF-8"},
		{name: "NUL", in: "A=\x00\n", err: "NUL"},
		{name: "long line", in: "A=" + strings.Repeat("x", 70000) + "\n", err: "token too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnvFile(strings.NewReader(tc.in), "test.env", lookup)
			if wantErr(t, err, tc.err) {
				return
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := ParseEnvFile("/nonexistent/file.env"); err == nil || !strings.Contains(err.Error(), "/nonexistent/file.env") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestNormalizeCap(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "NET_ADMIN", want: "CAP_NET_ADMIN"},
		{in: "cap_net_admin", want: "CAP_NET_ADMIN"},
		{in: "Net_Admin", want: "CAP_NET_ADMIN"},
		{in: "CAP_SYS_ADMIN", want: "CAP_SYS_ADMIN"},
		{in: "checkpoint_restore", want: "CAP_CHECKPOINT_RESTORE"},
		{in: "ALL", want: "ALL"},
		{in: "all", want: "ALL"},
		{in: "NET_BOGUS", err: `unknown capability "NET_BOGUS"`},
		{in: "", err: "unknown capability"},
		{in: "CAP_", err: "unknown capability"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeCap(tc.in)
			if wantErr(t, err, tc.err) {
				return
			}
			if got != tc.want {
				t.Fatalf("NormalizeCap(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	got, err := ParseCapabilities([]string{"chown", "ALL"})
	if err != nil || strings.Join(got, ",") != "CAP_CHOWN,ALL" {
		t.Fatalf("ParseCapabilities = %q, %v", got, err)
	}
	if _, err := ParseCapabilities([]string{"chown", "nope"}); err == nil {
		t.Fatal("ParseCapabilities accepted an unknown capability")
	}
}

func TestParseTmpfs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want specs.Mount
		err  string
	}{
		{in: "/run", want: specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "rprivate"}}},
		{in: "/run/:size=64m", want: specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "rprivate", "size=64m"}}},
		{in: "/t:exec,mode=1777,size=10%", want: specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "rprivate", "exec", "mode=1777", "size=10%"}}},
		{in: "/t:size=1m,size=2m,ro,rw", want: specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "rprivate", "size=2m", "rw"}}},
		{in: "/t:shared,uid=1000,gid=1000,nr_inodes=1k", want: specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "shared", "uid=1000", "gid=1000", "nr_inodes=1k"}}},
		{in: "run", err: `invalid --tmpfs "run": destination "run" is not an absolute path`},
		{in: "/", err: "destination can't be /"},
		{in: ":size=1m", err: "empty destination"},
		{in: "/t:size=big", err: `bad value in "size=big"`},
		{in: "/t:mode=999", err: `bad value in "mode=999"`},
		{in: "/t:uid=-1", err: "bad value"},
		{in: "/t:bind", err: `unknown option "bind"`},
		{in: "/t:foo=bar", err: `unknown option "foo=bar"`},
		{in: "/t:size", err: `bad value in "size"`},
		{in: "/t:size=1m,,ro", err: "empty option"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTmpfs(tc.in)
			if wantErr(t, err, tc.err) {
				return
			}
			if got.Destination != tc.want.Destination || got.Type != tc.want.Type || got.Source != tc.want.Source ||
				strings.Join(got.Options, ",") != strings.Join(tc.want.Options, ",") {
				t.Fatalf("ParseTmpfs(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestBytesString(t *testing.T) {
	for in, want := range map[int64]string{0: "0B", 1000: "1000B", 6 << 20: "6MiB", 1536 << 10: "1536KiB", 1 << 30: "1GiB"} {
		if got := bytesString(in); got != want {
			t.Errorf("bytesString(%d) = %q, want %q", in, got, want)
		}
	}
}
