//go:build linux

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
)

// testRunExecTTY: exec -t runs the command on a pty of the container, its
// controlling terminal, with one output stream and its exit code passed
// through. -i -t from a pipe types the input into the pty (which echoes
// it) and ends it with ^D. From a real terminal berth goes raw, sends the
// window size at start and on SIGWINCH, and restores the terminal at the
// end. No exec'd process is left in the container.
func testRunExecTTY(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	e.start("--name", "tt", "--network", "none", bbImage, "sleep", "300")
	// No terminal on berth's side (the test's pipes): the command has one.
	if out := e.ok("exec", "-t", "tt", "tty"); !regexp.MustCompile(`^/dev/pts/\d+\r\n$`).MatchString(out) {
		t.Errorf("exec -t tty: %q", out)
	}
	if out := e.ok("exec", "-t", "tt", "sh", "-c", "test -t 0 && test -t 1 && test -t 2 && echo ok"); out != "ok\r\n" {
		t.Errorf("exec -t test -t: %q", out)
	}
	// One stream: stderr comes on stdout; exit codes pass through.
	if r := e.code(7, "exec", "-t", "tt", "sh", "-c", "echo err >&2; exit 7"); r.out != "err\r\n" || r.err != "" {
		t.Errorf("exec -t exit 7:\n%s", r)
	}
	e.code(137, "exec", "-t", "tt", "sh", "-c", "kill -9 $$")
	// The same namespaces and cgroups as an exec without -t.
	probe := "for n in pid mnt uts ipc net cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup"
	if plain, tty := e.ok("exec", "tt", "sh", "-c", probe), e.ok("exec", "-t", "tt", "sh", "-c", probe); tty != strings.ReplaceAll(plain, "\n", "\r\n") {
		t.Errorf("exec -t runs elsewhere than exec:\n%s\nvs\n%s", tty, plain)
	}
	e.code(127, "exec", "-t", "tt", "nope")
	// -it from a pipe: the pty echoes each line, cat prints it, and the
	// ^D berth types at the end of the input ends cat.
	r := e.runIn("one\ntwo\n", "exec", "-it", "tt", "cat")
	lines := strings.Fields(strings.ReplaceAll(r.out, "\r\n", "\n"))
	slices.Sort(lines)
	if r.code != 0 || !slices.Equal(lines, []string{"one", "one", "two", "two"}) || strings.Count(r.out, "\r\n") != 4 {
		t.Errorf("exec -it cat from a pipe:\n%s", r)
	}
	// A last line without a newline still ends (two ^D).
	if r := e.runIn("abc", "exec", "-it", "tt", "wc", "-c"); r.code != 0 || !strings.HasSuffix(r.out, "3\r\n") {
		t.Errorf("exec -it wc -c of a partial line:\n%s", r)
	}

	// From a real terminal: berth's stdio is the slave of a pty the test
	// holds the master of, and its controlling terminal (for SIGWINCH).
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := master.Resize(console.WinSize{Width: 100, Height: 30}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := e.cmd(ctx, "exec", "-it", "tt", "sh", "-c",
		`stty size; read line; echo "got:$line"; trap 'stty size; exit 4' WINCH; echo ready; while :; do sleep 0.05; done`)
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out testrig.SyncBuffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, master) // EIO once berth, the last holder of the slave, exits
		close(copied)
	}()
	waitOut := func(want string) {
		t.Helper()
		e.waitFor(want+" from berth on a terminal", 20*time.Second, func() bool { return strings.Contains(out.String(), want) })
	}
	termios := func() *unix.Termios {
		t.Helper()
		tio, err := unix.IoctlGetTermios(int(master.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio
	}
	waitOut("30 100\r\n") // the size at start
	if termios().Lflag&(unix.ICANON|unix.ECHO) != 0 {
		t.Errorf("berth's terminal is not raw during exec -it")
	}
	// A key typed at berth's (raw) terminal reaches the container's pty,
	// which turns the CR into a newline.
	if _, err := master.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	waitOut("got:hello\r\n")
	waitOut("ready\r\n")
	if err := master.Resize(console.WinSize{Width: 50, Height: 20}); err != nil {
		t.Fatal(err)
	}
	waitOut("20 50\r\n") // SIGWINCH forwarded
	err = c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("exec -it on a terminal: %v, want exit 4; output %q", err, out.String())
	}
	<-copied
	if tio := termios(); tio.Lflag&unix.ICANON == 0 || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("berth left its terminal raw")
	}

	// No exec'd process is left: only the task's sleep (and this ps).
	e.waitFor("the exec'd processes to be gone", 10*time.Second, func() bool {
		return slices.Equal(strings.Fields(e.ok("exec", "tt", "ps", "-o", "comm")), []string{"COMMAND", "sleep", "ps"})
	})
	e.ok("rm", "-f", "tt")
}
