//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunSupervisor: the monitor of a task with neither a TTY nor stdin
// becomes the C supervisor once its container runs (no Go runtime, under
// 2 MiB resident), and logs, rotation, exit codes, signals, OOM kills,
// --rm and a kill -9 of it come out as with the Go monitor.
func TestRunSupervisor(t *testing.T) {
	fx := newRunFixture(t)
	e := newRunEnv(t, fx)

	// Output, the container's fds, the supervisor itself.
	id := e.start("--name", "sv", bbImage, "sh", "-c", "echo one; echo two >&2; printf 'a<b>&\\t\\001'; exec sleep 30")
	e.waitLog("sv", "one\n")
	ti := e.inspect("sv")
	mon := ti.MonitorPID
	e.waitFor("the supervisor", 10*time.Second, func() bool { return supervisorMode(mon) == "" })
	if why := supervisorMode(mon); why != "" {
		t.Fatalf("monitor %d: %s", mon, why)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", mon)); !strings.Contains(string(b), "\x00monitor\x00"+id) {
		t.Errorf("supervisor cmdline %q", b)
	}
	// The supervisor holds its stdio, the two pipes and the exit pipe,
	// and what it opened itself: epoll, signalfd, the log; the container
	// only its stdio (the pipes' write ends and /dev/null).
	for fd, what := range procFDs(t, mon) {
		switch {
		case what == "/dev/null", strings.HasSuffix(what, "/monitor.log"), strings.HasSuffix(what, "/container.log"),
			strings.HasPrefix(what, "pipe:"), what == "anon_inode:[eventpoll]", what == "anon_inode:[signalfd]":
		default:
			t.Errorf("supervisor fd %s: %s", fd, what)
		}
	}
	cfds := procFDs(t, ti.Containers[0].Pid)
	if len(cfds) != 3 || !strings.HasPrefix(cfds["1"], "pipe:") || !strings.HasPrefix(cfds["2"], "pipe:") {
		t.Errorf("container fds: %v", cfds)
	}
	if r := e.code(0, "logs", "sv"); r.out != "one\n" || r.err != "two\n" {
		t.Errorf("logs:\n%s", r)
	}
	e.ok("stop", "-t", "1", "sv") // sleep as PID 1 ignores SIGTERM
	ti = e.inspect("sv")
	c := ti.Containers[0]
	if ti.Status != "STOPPED" || ti.exitCode() != 137 || c.Signal != "SIGKILL" || c.OOMKilled || c.Finished.Before(c.Started) {
		t.Errorf("after stop: %+v", ti)
	}
	// The partial line comes out at the end, escaped as encoding/json does.
	matches, _ := filepath.Glob(filepath.Join(e.root, "tasks", id, "*", "container.log"))
	if len(matches) != 1 {
		t.Fatalf("logs: %v", matches)
	}
	b, _ := os.ReadFile(matches[0])
	if !strings.Contains(string(b), `{"log":"a\u003cb\u003e\u0026\t\u0001","stream":"stdout","time":"`) {
		t.Errorf("log file:\n%s", b)
	}
	e.ok("rm", "sv")

	// Exit codes, attached and detached. A container that exited before
	// the monitor would hand over (the first) stays with the Go monitor;
	// the others end under the supervisor.
	for i, script := range []string{"echo hi; exit 3", "echo hi; sleep 0.3; exit 3", "sleep 0.2; echo hi; exit 3"} {
		if r := e.run("run", "--name", fmt.Sprint("att", i), bbImage, "sh", "-c", script); r.out != "hi\n" || r.code != 3 {
			ti := e.inspect(fmt.Sprint("att", i))
			b, _ := os.ReadFile(filepath.Join(e.root, "tasks", ti.ID, "monitor.log"))
			t.Errorf("attached: %s\n%+v %d\n%s\nlogs: %s", r, ti, ti.exitCode(), b, e.run("logs", ti.ID))
		}
		e.ok("rm", fmt.Sprint("att", i))
	}
	e.start("--name", "ex", bbImage, "sh", "-c", "sleep 0.5; exit 7")
	e.waitFor("ex to stop", 20*time.Second, func() bool { return e.inspect("ex").Status == "STOPPED" })
	if ti := e.inspect("ex"); ti.exitCode() != 7 || ti.Containers[0].Signal != "" || ti.StopCode != "EssentialContainerExited" {
		t.Errorf("exit 7: %+v", ti)
	}

	// Rotation: 1k files, two of them.
	e.start("--name", "rot", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", bbImage, "sh", "-c",
		"sleep 0.3; i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; printf end")
	e.waitFor("rot to stop", 20*time.Second, func() bool { return e.inspect("rot").Status == "STOPPED" })
	out := e.ok("logs", "rot")
	lines := strings.Split(out, "\n")
	if len(lines) < 5 || lines[len(lines)-1] != "end" || lines[len(lines)-2] != "line 199" {
		t.Errorf("logs after rotation:\n%s", out)
	}
	for i, l := range lines[:len(lines)-1] {
		if i > 0 && l != "line "+strconv.Itoa(200-len(lines)+1+i) {
			t.Errorf("logs after rotation, line %d %q:\n%s", i, l, out)
			break
		}
	}
	rid := e.inspect("rot").ID
	files, _ := filepath.Glob(filepath.Join(e.root, "tasks", rid, "*", "container.log*"))
	if len(files) != 2 {
		t.Errorf("log files %v, want 2", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > 1024 || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}

	// An OOM kill (tail keeps the endless "line" of /dev/zero), after the
	// handover.
	e.start("--name", "oom", "-m", "32m", bbImage, "sh", "-c", "sleep 0.5; exec tail /dev/zero")
	e.waitFor("oom to stop", 30*time.Second, func() bool { return e.inspect("oom").Status == "STOPPED" })
	if ti := e.inspect("oom"); ti.exitCode() != 137 || !ti.Containers[0].OOMKilled || ti.Containers[0].Signal != "SIGKILL" {
		t.Errorf("OOM: %+v", ti)
	}
	e.start("--name", "fits", "-m", "32m", appImage, "alloc", "8")
	e.waitFor("fits to stop", 30*time.Second, func() bool { return e.inspect("fits").Status == "STOPPED" })
	if ti := e.inspect("fits"); ti.exitCode() != 0 || ti.Containers[0].OOMKilled {
		t.Errorf("within the limit: %+v", ti)
	}

	// --rm: the supervisor's return into Go removes the task.
	rm := e.start("--rm", bbImage, "sh", "-c", "sleep 1")
	rmMon := e.inspect(rm).MonitorPID
	e.waitFor("the --rm task's supervisor", 5*time.Second, func() bool { return supervisorMode(rmMon) == "" })
	e.waitFor("the --rm task to go", 20*time.Second, func() bool {
		return !strings.Contains(e.run("ps", "-a", "-q", "--no-trunc").out, rm) && e.run("inspect", rm).code != 0
	})

	// kill -9 of the supervisor: the container runs on, rm -f cleans up.
	e.start("--name", "k9", bbImage, "sleep", "30")
	ti = e.inspect("k9")
	e.waitFor("the supervisor", 10*time.Second, func() bool { return supervisorMode(ti.MonitorPID) == "" })
	syscall.Kill(ti.MonitorPID, syscall.SIGKILL)
	e.waitFor("the supervisor to die", 10*time.Second, func() bool { return !alive(ti.MonitorPID) })
	if !alive(ti.Containers[0].Pid) || e.inspect("k9").Status != "RUNNING" {
		t.Errorf("after kill -9 of the supervisor: %+v", e.inspect("k9"))
	}
	e.ok("rm", "-f", "k9")
	e.ok("rm", "ex", "rot", "oom", "fits")
	e.wantNoTasks("rm")
}

// supervisorMode returns why pid is not a C supervisor ("" if it is): a
// single thread, no Go-named mappings, under 2 MiB resident.
func supervisorMode(pid int) string {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	s := procStatus(string(st))
	if s["Threads"] != "1" {
		return "threads: " + s["Threads"]
	}
	kb, _ := strconv.Atoi(strings.TrimSuffix(s["VmRSS"], " kB"))
	if kb == 0 || kb >= 2048 {
		return "VmRSS " + s["VmRSS"]
	}
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if strings.Contains(string(maps), "Go: ") {
		return "Go mappings"
	}
	return ""
}

// procFDs maps pid's fds to what they point to.
func procFDs(t *testing.T, pid int) map[string]string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		m[e.Name()], _ = os.Readlink(filepath.Join(dir, e.Name()))
	}
	return m
}
