//go:build linux

package runtime

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/runtime/spec"
)

// TestRootExecTTY runs processes with ExecOptions.TTY in a real container:
// they run on a pty of the container's devpts as their controlling
// terminal, with the initial size and later resizes applied, input typed
// in and ended with ^D, output merged on Stdout, exit codes passed
// through; Exec returns soon even when a background child keeps the pty
// open; and after all of it the test process holds no more fds, children
// or goroutines than before.
func TestRootExecTTY(t *testing.T) {
	r, layer := newRootRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	task, err := r.Create(ctx, TaskConfig{Containers: []ContainerConfig{{
		Name: "main", Image: "busybox", Layers: []string{layer},
		Spec: func(rootfs string) (*specs.Spec, error) {
			return spec.Generate(spec.ImageConfig{Cmd: []string{"busybox", "sleep", "300"}, Env: []string{"PATH=/bin"}},
				spec.Options{Hostname: "exectty"}, rootfs)
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Remove(context.Background(), task.ID, true); err != nil {
			t.Errorf("remove: %v", err)
		}
		assertTaskGone(t, r, task.ID)
	})
	if err := r.Start(ctx, task.ID); err != nil {
		t.Fatal(err)
	}

	run := func(o ExecOptions) (int, string) {
		t.Helper()
		var out testrig.SyncBuffer
		if o.Stdout == nil {
			o.Stdout = &out
		}
		o.TTY = true
		code, err := r.Exec(task.ID, o)
		if err != nil {
			t.Fatalf("exec %q: %v (code %d)", o.Args, err, code)
		}
		return code, out.String()
	}
	// The first exec sets up what the process keeps (the netpoller's fds);
	// the baseline is taken after it.
	run(ExecOptions{Args: []string{"busybox", "true"}})
	fds, children, goroutines := openFDs(t), childPIDs(t), goruntime.NumGoroutine()

	t.Run("terminal", func(t *testing.T) {
		code, out := run(ExecOptions{Size: WindowSize{Width: 100, Height: 30}, Args: []string{"sh", "-c",
			"busybox tty; test -t 0 && test -t 1 && test -t 2 && echo ok; busybox stty size; echo to-stderr >&2; exit 7"}})
		if code != 7 || !regexp.MustCompile(`^/dev/pts/\d+\r\nok\r\n30 100\r\nto-stderr\r\n$`).MatchString(out) {
			t.Fatalf("exit %d, output %q; want 7 and the tty, ok, 30 100, to-stderr (CRLF: the pty's ONLCR)", code, out)
		}
		// It is the controlling terminal: /dev/tty opens.
		if code, out := run(ExecOptions{Args: []string{"sh", "-c", "echo via-tty >/dev/tty"}}); code != 0 || out != "via-tty\r\n" {
			t.Fatalf("/dev/tty: exit %d, output %q", code, out)
		}
		// A signal's exit code is 128+N, as without a terminal.
		if code, _ := run(ExecOptions{Args: []string{"sh", "-c", "kill -9 $$"}}); code != 137 {
			t.Fatalf("killed: exit %d, want 137", code)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		// The terminal echoes the input, then wc counts it; the ^D typed
		// at the end of the input ends wc's.
		code, out := run(ExecOptions{Stdin: strings.NewReader("one\ntwo\n"), Args: []string{"busybox", "wc", "-l"}})
		if code != 0 || out != "one\r\ntwo\r\n2\r\n" {
			t.Fatalf("exit %d, output %q; want the echo and 2", code, out)
		}
		// A last line without a newline needs two ^D (the first hands
		// the partial line over).
		code, out = run(ExecOptions{Stdin: strings.NewReader("abc"), Args: []string{"busybox", "wc", "-c"}})
		if code != 0 || out != "abc3\r\n" {
			t.Fatalf("partial line: exit %d, output %q; want the echo and 3", code, out)
		}
	})
	t.Run("resize", func(t *testing.T) {
		resize := make(chan WindowSize)
		var out testrig.SyncBuffer
		done := make(chan int)
		go func() {
			code, _ := run(ExecOptions{Stdout: &out, Size: WindowSize{Width: 80, Height: 24}, Resize: resize, Args: []string{"sh", "-c",
				"trap 'busybox stty size; exit 3' WINCH; busybox stty size; while :; do busybox sleep 0.05; done"}})
			done <- code
		}()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), "24 80\r\n") {
			if time.Now().After(deadline) {
				t.Fatalf("no initial size; output %q", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		resize <- WindowSize{Width: 123, Height: 45}
		select {
		case code := <-done:
			if code != 3 || out.String() != "24 80\r\n45 123\r\n" {
				t.Fatalf("exit %d, output %q; want 3 after 24 80 and 45 123", code, out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("SIGWINCH never came; output %q", out.String())
		}
	})
	t.Run("background-child", func(t *testing.T) {
		// The child ignores the SIGHUP the kernel sends when the shell
		// (the session leader) exits, and keeps the pty's slave open:
		// Exec stops reading ptyDrain after the shell's exit instead of
		// waiting for the child.
		start := time.Now()
		code, out := run(ExecOptions{Args: []string{"sh", "-c", "trap '' HUP; busybox sleep 31 & echo started"}})
		if took := time.Since(start); code != 0 || out != "started\r\n" || took < ptyDrain {
			t.Fatalf("exit %d, output %q after %s; want 0 and started, not before %s", code, out, took, ptyDrain)
		}
		// Exec returned while the child still runs: it did not wait for it.
		if code, err := r.Exec(task.ID, ExecOptions{Args: []string{"sh", "-c", "p=$(busybox ps -o pid,args | busybox awk '/[s]leep 31/ {print $1}'); [ -n \"$p\" ] && busybox kill $p"}, Stdout: io.Discard, Stderr: io.Discard}); code != 0 || err != nil {
			t.Fatalf("the background child is gone when Exec returns (exit %d, %v); Exec waited for it", code, err)
		}
	})
	t.Run("not-found", func(t *testing.T) {
		code, err := r.Exec(task.ID, ExecOptions{TTY: true, Args: []string{"nope"}})
		if code != 127 || err == nil {
			t.Fatalf("exec nope: code %d, err %v; want 127 and an error", code, err)
		}
	})

	// Nothing of the sessions is left in this process.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nf, nc, ng := openFDs(t), childPIDs(t), goruntime.NumGoroutine()
		ptys := slices.ContainsFunc(nf, func(fd string) bool { return strings.HasSuffix(fd, "/dev/pts/ptmx") })
		if !ptys && len(nf) <= len(fds) && slices.Equal(nc, children) && ng <= goroutines {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after exec: fds %v (before %v), children %v (before %v), goroutines %d (before %d)",
				nf, fds, nc, children, ng, goroutines)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openFDs lists this process's open fds with what they point to.
func openFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		out = append(out, e.Name()+"->"+l)
	}
	return out
}

// childPIDs lists this process's children (of all its threads), sorted.
func childPIDs(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range tasks {
		b, _ := os.ReadFile(p)
		out = append(out, strings.Fields(string(b))...)
	}
	slices.Sort(out)
	return out
}
