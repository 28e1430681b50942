//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/runtime"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, errs := run(t, "version")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	host := runtime.Host()
	for _, want := range []string{"berth dev", "go:", "cgroups:  " + host.CgroupMode, "seccomp:"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}

	code, out, errs = run(t, "version", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version --format json: %v\n%s", err, out)
	}
	if v.GoVersion == "" || v.CgroupMode != host.CgroupMode || v.Platform == "" {
		t.Fatalf("incomplete version JSON: %+v", v)
	}
}

// TestErrorsExit125 checks berth's own errors: one line on stderr, exit 125,
// nothing on stdout.
func TestErrorsExit125(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"version", "--bogus"}, "unknown flag: --bogus"},
		{"bad log level", []string{"--log-level", "loud", "version"}, `invalid --log-level "loud"`},
		{"bad log format", []string{"--log-format", "xml", "version"}, `invalid --log-format "xml"`},
		{"relative root", []string{"--root", "var/lib", "version"}, `invalid --root "var/lib"`},
		{"bad version format", []string{"version", "--format", "yaml"}, `invalid --format "yaml"`},
		{"extra args", []string{"version", "x"}, `unknown command "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.args...)
			if code != exitBerth {
				t.Errorf("exit code %d, want %d", code, exitBerth)
			}
			if out != "" {
				t.Errorf("stdout not empty: %q", out)
			}
			if !strings.HasPrefix(errs, "berth: ") || !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q, want a line containing %q", errs, tc.want)
			}
			if strings.Count(errs, "\n") != 1 {
				t.Errorf("stderr is not exactly one line: %q", errs)
			}
		})
	}
}

// TestExitErrorPassesCode: a command's exitError sets the exit code; with
// a cause it prints one line, without one (a container's own exit code)
// nothing.
func TestExitErrorPassesCode(t *testing.T) {
	testrig.RequireRoot(t) // commands other than version refuse non-root users
	for _, tc := range []struct {
		err    error
		code   int
		stderr string
	}{
		{&exitError{code: 137}, 137, ""},
		{&exitError{code: 127, err: errors.New("exec: \"nope\": not found\nin $PATH")}, 127, "berth: exec: \"nope\": not found; in $PATH\n"},
		{errors.New("plain"), exitBerth, "berth: plain\n"},
	} {
		var errb bytes.Buffer
		root := newRootCommand(&bytes.Buffer{}, &errb)
		root.AddCommand(&cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return tc.err }})
		if code := executeCommand(context.Background(), root, []string{"fail"}, &errb); code != tc.code || errb.String() != tc.stderr {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", tc.err, code, errb.String(), tc.code, tc.stderr)
		}
	}
}

func TestHelpListsCommands(t *testing.T) {
	code, out, _ := run(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			if c.Hidden && strings.Contains(out, "\n  "+c.Name()+" ") {
				t.Errorf("hidden command %q listed in help", c.Name())
			}
			continue
		}
		if c.Short == "" {
			t.Errorf("command %q has no one-line description", c.Name())
		}
		if !strings.Contains(out, "\n  "+c.Name()+" ") {
			t.Errorf("help does not list %q:\n%s", c.Name(), out)
		}
	}
	for _, flag := range []string{"--root", "--run-root", "--log-level", "--log-format"} {
		if !strings.Contains(out, flag) {
			t.Errorf("help lacks global flag %s", flag)
		}
	}
}

// TestBinary builds the real binary and checks main's wiring: version runs,
// the env vars reach the flags, and "berth init" reaches libcontainer's init
// (which, started by hand, fails for want of its sync pipe).
func TestBinary(t *testing.T) {
	// A world-searchable folder, so the binary can also run as nobody.
	binDir, err := os.MkdirTemp("", "berth-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "berth")
	build := exec.Command("go", "build", "-tags", "seccomp", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("berth version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "seccomp:  compiled in") {
		t.Errorf("binary built with -tags seccomp does not report seccomp:\n%s", out)
	}

	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "BERTH_LOG_FORMAT=yaml")
	out, err = cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitBerth || !strings.Contains(string(out), `invalid --log-format "yaml"`) {
		t.Errorf("BERTH_LOG_FORMAT=yaml: err %v, output %q; want exit 125 naming the bad value", err, out)
	}

	// As an ordinary user: version works, anything else says root is needed.
	if os.Geteuid() == 0 {
		asNobody := func(args ...string) *exec.Cmd {
			c := exec.Command(bin, args...)
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			return c
		}
		if out, err := asNobody("version").CombinedOutput(); err != nil {
			t.Errorf("berth version as nobody: %v\n%s", err, out)
		}
		out, err = asNobody("ps").CombinedOutput()
		if !errors.As(err, &ee) || ee.ExitCode() != exitBerth || !strings.Contains(string(out), "needs root") {
			t.Errorf("berth ps as nobody: err %v, output %q; want exit 125 saying root is needed", err, out)
		}
	}

	out, err = exec.Command(bin, "init").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 255 || !strings.Contains(string(out), "_LIBCONTAINER_SYNCPIPE") {
		t.Errorf("berth init by hand: err %v, output %q; want libcontainer's init to run and fail (exit 255)", err, out)
	}
}
