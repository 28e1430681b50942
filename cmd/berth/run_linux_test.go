//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
	"github.com/berth-dev/berth/network"
	"github.com/berth-dev/berth/runtime"
)

// The images every run test loads (from one OCI archive, no registry).
const (
	appImage = "berth.test/app:1"
	bbImage  = "berth.test/busybox:1"
)

// runFixture is what all run tests share: the berth binary (the monitor is
// berth re-executed from os.Executable, so `run` needs the real binary, not
// this test binary) and an OCI archive holding the test images.
type runFixture struct {
	bin     string
	archive string
}

// TestRun drives real containers through the berth binary: every subtest
// has its own state root, run root and config dir, and checks that nothing
// of its tasks is left at the end (cgroups, mounts, task and libcontainer
// state). Subtests run in parallel.
func TestRun(t *testing.T) {
	fx := newRunFixture(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *runFixture)
	}{
		{"ExitCodes", testRunExitCodes},
		{"BadInput", testRunBadInput},
		{"Merge", testRunMerge},
		{"OOM", testRunOOM},
		{"Limits", testRunLimits},
		{"Filesystems", testRunFilesystems},
		{"Logs", testRunLogs},
		{"CLIKilled", testRunCLIKilled},
		{"MonitorKilled", testRunMonitorKilled},
		{"Stop", testRunStop},
		{"Exec", testRunExec},
		{"ExecTTY", testRunExecTTY},
		{"Security", testRunSecurity},
		{"Concurrent", testRunConcurrent},
		{"InitAndInput", testRunInitAndInput},
		{"ImageInUse", testRunImageInUse},
		{"Network", testRunNetwork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, fx)
		})
	}
}

// newRunFixture builds berth and the image archive for t and its subtests.
func newRunFixture(t *testing.T) *runFixture {
	testrig.RequireRoot(t)
	testrig.RequireFile(t, "/sys/fs/cgroup", "a mounted cgroup filesystem")
	binDir, err := os.MkdirTemp("", "berth-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	fx := &runFixture{}
	// The binary's folder lies apart from every state dir (FIELD-NOTES:
	// nested dirs push libcontainer onto its slow exe-copying path).
	fx.bin = filepath.Join(binDir, "berth")
	gobin := testrig.RequireBinary(t, "go", "golang-go")
	// Static, as `make build` does, so the binary can serve as --init;
	// berth-shim next to it, as installed, plays monitor, init and --init.
	for _, b := range []struct{ out, pkg string }{{fx.bin, "."}, {filepath.Join(binDir, runtime.ShimName), "../berth-shim"}} {
		build := exec.Command(gobin, "build", "-tags", "seccomp netgo osusergo", "-buildvcs=false",
			"-ldflags", "-linkmode external -extldflags -static", "-o", b.out, b.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	fx.archive = filepath.Join(t.TempDir(), "images.tar")
	testimage.WriteOCIArchive(t, fx.archive,
		testimage.LayoutEntry{Ref: appImage, Image: testimage.App(t)},
		testimage.LayoutEntry{Ref: bbImage, Image: testimage.Busybox(t)})
	return fx
}

// runEnv is one private berth installation driven through the binary.
type runEnv struct {
	t                     *testing.T
	fx                    *runFixture
	root, runRoot, config string

	// The env's own bridge network (berth's default network mode), apart
	// from a real berth0 and from other envs: name, subnet, nf_tables table.
	bridge, table string
	subnet        netip.Prefix

	mu   sync.Mutex
	seen map[string]bool // task IDs ever seen, for the leftover checks
	env  []string        // extra environment for berth
}

// envSubnets hands each runEnv of this test process its own /24 in
// 10.214.0.0/16, starting at a random one (other test processes may run).
var envSubnets = struct {
	sync.Mutex
	next int
}{next: mrand.IntN(250)}

func nextEnvSubnet() netip.Prefix {
	envSubnets.Lock()
	defer envSubnets.Unlock()
	envSubnets.next++
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 214, byte(envSubnets.next%250 + 1), 0}), 24)
}

// newRunEnv makes private dirs, loads the test images and registers the
// cleanup that removes every task and checks that nothing is left.
func newRunEnv(t *testing.T, fx *runFixture) *runEnv {
	t.Helper()
	var rnd [6]byte
	rand.Read(rnd[:])
	e := &runEnv{t: t, fx: fx, root: t.TempDir(), config: t.TempDir(),
		runRoot: "/run/berth-test-" + hex.EncodeToString(rnd[:]), seen: map[string]bool{}}
	if err := os.Mkdir(e.runRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	e.bridge, e.table, e.subnet = "bt"+hex.EncodeToString(rnd[:5]), "berth_t_"+hex.EncodeToString(rnd[:]), nextEnvSubnet()
	e.env = []string{"BERTH_BRIDGE=" + e.bridge, "BERTH_BRIDGE_SUBNET=" + e.subnet.String(), "BERTH_NFT_TABLE=" + e.table}
	t.Cleanup(func() { // after e.cleanup (cleanups run last first)
		if n, err := e.network(); err == nil {
			n.Remove()
		}
	})
	t.Cleanup(e.cleanup)
	e.ok("load", "-q", "-i", fx.archive)
	return e
}

// network opens the env's bridge network as berth does.
func (e *runEnv) network() (*network.Network, error) {
	return network.New(network.Config{BridgeName: e.bridge, Subnet: e.subnet, StateDir: filepath.Join(e.root, "network", e.bridge),
		RunRoot: e.runRoot, Table: e.table})
}

// cmd returns the berth command line for args, with this env's dirs.
func (e *runEnv) cmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--root", e.root, "--run-root", e.runRoot, "--config-dir", e.config}, args...)
	c := exec.CommandContext(ctx, e.fx.bin, full...)
	c.Env = append(append(os.Environ(), "BERTH_LOG_LEVEL=warn"), e.env...)
	c.WaitDelay = 5 * time.Second
	return c
}

// result is one finished berth command.
type result struct {
	args     []string
	code     int
	out, err string
	took     time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("berth %s: exit %d after %s\nstdout: %q\nstderr: %q", strings.Join(r.args, " "), r.code, r.took.Round(time.Millisecond), r.out, r.err)
}

// runRaw runs berth with stdin and returns how it ended; a berth that
// hangs for a minute is killed and reported as an error. Safe in any
// goroutine.
func (e *runEnv) runRaw(stdin string, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := e.cmd(ctx, args...)
	var out, errb bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = strings.NewReader(stdin), &out, &errb
	start := time.Now()
	err := c.Run()
	r := result{args: args, out: out.String(), err: errb.String(), took: time.Since(start)}
	e.noteTasks()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		return r, fmt.Errorf("berth %v: %v (ctx %v)\n%s", args, err, ctx.Err(), r)
	}
	return r, nil
}

// runIn is runRaw that fails the test when berth cannot run or hangs.
func (e *runEnv) runIn(stdin string, args ...string) result {
	e.t.Helper()
	r, err := e.runRaw(stdin, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *runEnv) run(args ...string) result {
	e.t.Helper()
	return e.runIn("", args...)
}

// ok runs berth and fails the test unless it exits 0; it returns stdout.
func (e *runEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("want exit 0:\n%s", r)
	}
	return r.out
}

// code runs berth and fails the test unless it exits with want.
func (e *runEnv) code(want int, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != want {
		e.t.Fatalf("want exit %d:\n%s", want, r)
	}
	return r
}

// start runs `berth run -d ARGS` and returns the task ID.
func (e *runEnv) start(args ...string) string {
	e.t.Helper()
	id := strings.TrimSpace(e.ok(append([]string{"run", "-d"}, args...)...))
	if len(id) != 64 {
		e.t.Fatalf("run -d printed %q, want a 64-hex task ID", id)
	}
	e.note(id)
	return id
}

func (e *runEnv) note(id string) {
	e.mu.Lock()
	e.seen[id] = true
	e.mu.Unlock()
}

// noteTasks records the IDs of the tasks on disk now.
func (e *runEnv) noteTasks() {
	ents, _ := os.ReadDir(filepath.Join(e.root, "tasks"))
	for _, d := range ents {
		if len(d.Name()) == 64 {
			e.note(d.Name())
		}
	}
}

// inspectT is the part of `berth inspect` the tests read.
type inspectT struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	StopCode   string `json:"stopCode"`
	MonitorPID int    `json:"monitorPid"`
	Containers []struct {
		Status    string `json:"status"`
		Pid       int    `json:"pid"`
		ExitCode  *int   `json:"exitCode"`
		Signal    string `json:"signal"`
		OOMKilled bool   `json:"oomKilled"`
		Error     string `json:"error"`
		// StopTimeout is a time.Duration in nanoseconds.
		StopTimeout time.Duration `json:"stopTimeout"`
		Started     time.Time     `json:"started"`
		Finished    time.Time     `json:"finished"`
	} `json:"containers"`
}

func (e *runEnv) inspect(ref string) inspectT {
	e.t.Helper()
	out := e.ok("inspect", ref)
	var ts []inspectT
	if err := json.Unmarshal([]byte(out), &ts); err != nil || len(ts) != 1 || len(ts[0].Containers) != 1 {
		e.t.Fatalf("inspect %s: %v\n%s", ref, err, out)
	}
	e.note(ts[0].ID)
	return ts[0]
}

// exitCode is the recorded exit code of the task's container, -1 if none.
func (ti inspectT) exitCode() int {
	if c := ti.Containers[0].ExitCode; c != nil {
		return *c
	}
	return -1
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func (e *runEnv) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the task's log holds want.
func (e *runEnv) waitLog(ref, want string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%q in the logs of %s", want, ref), 20*time.Second, func() bool {
		return strings.Contains(e.run("logs", ref).out, want)
	})
}

// cleanup removes every task of the env and checks that nothing of any task
// it ever saw is left.
func (e *runEnv) cleanup() {
	e.noteTasks()
	if ids := strings.Fields(e.run("ps", "-a", "-q").out); len(ids) > 0 {
		if r := e.run(append([]string{"rm", "-f"}, ids...)...); r.code != 0 {
			e.t.Errorf("cleanup: %s", r)
		}
	}
	e.assertClean()
	// Last resort after a failure: no mount may keep the temp dirs busy.
	for _, m := range e.mounts() {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	os.RemoveAll(e.runRoot)
}

// assertClean checks that no task of the env left anything behind: task
// dirs, libcontainer state, run dirs, mounts, cgroups.
func (e *runEnv) assertClean() {
	e.t.Helper()
	e.noteTasks()
	for _, d := range []string{filepath.Join(e.root, "tasks"), filepath.Join(e.runRoot, "libcontainer"), filepath.Join(e.runRoot, "tasks")} {
		if ents, _ := os.ReadDir(d); len(ents) > 0 {
			var names []string
			for _, x := range ents {
				names = append(names, x.Name())
			}
			e.t.Errorf("left in %s: %v", d, names)
		}
	}
	if ms := e.mounts(); len(ms) > 0 {
		e.t.Errorf("mounts left: %v", ms)
	}
	e.assertNetworkClean()
	e.mu.Lock()
	ids := make([]string, 0, len(e.seen))
	for id := range e.seen {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	for _, id := range ids {
		if dirs := cgroupDirs(id); len(dirs) > 0 {
			e.t.Errorf("cgroup dirs left of task %s: %v", id[:12], dirs)
		}
	}
}

// assertNetworkClean checks that no task left a lease, a netns file, a
// veth on the bridge or a port rule.
func (e *runEnv) assertNetworkClean() {
	e.t.Helper()
	if ents, _ := os.ReadDir(filepath.Join(e.runRoot, "netns")); len(ents) > 0 {
		e.t.Errorf("netns files left: %d", len(ents))
	}
	if n, err := e.network(); err != nil {
		e.t.Error(err)
	} else if leases, err := n.Leases(); err != nil || len(leases) > 0 {
		e.t.Errorf("leases left: %v %v", leases, err)
	}
	// A released task's veth goes with its network namespace, which the
	// kernel destroys in the background: moments later, or seconds on a
	// loaded machine.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err := exec.Command("ip", "-o", "link", "show", "master", e.bridge).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			break
		}
		if time.Now().After(deadline) {
			e.t.Errorf("veths left on %s:\n%s", e.bridge, out)
			break
		}
	}
	if out, err := exec.Command("nft", "list", "table", "ip", e.table).CombinedOutput(); err == nil && strings.Contains(string(out), "berth task=") {
		e.t.Errorf("port rules left in table %s:\n%s", e.table, out)
	}
}

// mounts lists the mount points under the env's dirs.
func (e *runEnv) mounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(mp, e.root+"/") || strings.HasPrefix(mp, e.runRoot+"/") || mp == e.root || mp == e.runRoot {
			out = append(out, mp)
		}
	}
	slices.Sort(out)
	slices.Reverse(out) // deepest first, for unmounting
	return out
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupV2 reports a unified (v2-only) cgroup hierarchy.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupDir is where the task's main container's cgroup lies in one
// controller (v1) or the unified hierarchy (v2), by the runtime's
// convention: parent "/berth", name taskID[:12]+"-main".
func cgroupDir(id, controller string) string {
	lcid := id[:12] + "-main"
	if cgroupV2() {
		return filepath.Join("/sys/fs/cgroup/berth", lcid)
	}
	return filepath.Join("/sys/fs/cgroup", controller, "berth", lcid)
}

// procCgroups maps each v1 controller of /proc/PID/cgroup (and "" for the
// v2 line) to the process's cgroup path.
func procCgroups(pid string) map[string]string {
	b, _ := os.ReadFile("/proc/" + pid + "/cgroup")
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			m[ctl] = parts[2]
		}
	}
	return m
}

// procCgroupDir is the host directory of pid's cgroup in one controller
// (v1) or in the unified hierarchy (v2).
func procCgroupDir(pid int, controller string) string {
	m := procCgroups(strconv.Itoa(pid))
	if cgroupV2() {
		return filepath.Join("/sys/fs/cgroup", m[""])
	}
	return filepath.Join("/sys/fs/cgroup", controller, m[controller])
}

// cgroupDirs lists every cgroup dir of the task's main container: where the
// convention puts them, and where a parent relative to this process's own
// cgroups (which berth's processes inherit) would.
func cgroupDirs(id string) []string {
	lcid := id[:12] + "-main"
	var out []string
	seen := map[string]bool{}
	try := func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	own := procCgroups("self")
	try(filepath.Join("/sys/fs/cgroup/berth", lcid))
	try(filepath.Join("/sys/fs/cgroup", own[""], "berth", lcid))
	try(filepath.Join("/sys/fs/cgroup", filepath.Dir(own[""]), "berth", lcid))
	ctls, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, dir := range ctls {
		try(filepath.Join(dir, "berth", lcid))
		for _, ctl := range strings.Split(filepath.Base(dir), ",") {
			if p, ok := own[ctl]; ok {
				try(filepath.Join(dir, p, "berth", lcid))
			}
		}
		if p, ok := own["name=systemd"]; ok && filepath.Base(dir) == "systemd" {
			try(filepath.Join(dir, p, "berth", lcid))
		}
	}
	return out
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// psAll is `berth ps -a --format json`.
func (e *runEnv) psAll() []inspectT {
	e.t.Helper()
	var ts []inspectT
	out := e.ok("ps", "-a", "--format", "json")
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		e.t.Fatalf("ps --format json: %v\n%s", err, out)
	}
	return ts
}

// wantNoTasks checks that the env holds no task at all.
func (e *runEnv) wantNoTasks(after string) {
	e.t.Helper()
	if ts := e.psAll(); len(ts) != 0 {
		e.t.Errorf("after %s, ps -a lists %d tasks: %+v", after, len(ts), ts)
	}
	if out := e.ok("ps", "-a", "-q"); out != "" {
		e.t.Errorf("after %s, ps -a -q: %q", after, out)
	}
	e.assertClean()
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// ---- the subtests ----

// testRunExitCodes: attached runs stream the output and exit with the
// container's code (128+N for a signal); start failures exit 127 (not
// found) or 126 (not executable), whether the spec generator or the
// container's exec finds out, and leave nothing behind.
func testRunExitCodes(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	if r := e.code(0, "run", "--rm", appImage, "echo", "hello", "world"); r.out != "hello world\n" || r.err != "" {
		t.Errorf("attached output:\n%s", r)
	}
	e.code(3, "run", "--rm", appImage, "exit", "3")

	// Without --rm the task stays, with its exit recorded.
	e.code(42, "run", "--name", "x42", appImage, "exit", "42")
	ti := e.inspect("x42")
	if ti.Status != "STOPPED" || ti.exitCode() != 42 || ti.StopCode != "EssentialContainerExited" || ti.Containers[0].Finished.Before(ti.Containers[0].Started) {
		t.Errorf("inspect after exit 42: %+v", ti)
	}
	if out := e.ok("ps", "-a"); !strings.Contains(out, "Exited (42)") || !strings.Contains(out, "x42") {
		t.Errorf("ps -a:\n%s", out)
	}
	if out := e.ok("ps"); strings.Contains(out, "x42") {
		t.Errorf("ps lists a stopped task:\n%s", out)
	}
	e.ok("rm", "x42")

	// Killed by a signal: 128+N, and the signal recorded.
	e.start("--name", "killed", appImage, "sleep", "30")
	e.ok("kill", "killed")
	e.waitFor("killed to stop", 10*time.Second, func() bool { return e.inspect("killed").Status == "STOPPED" })
	if ti := e.inspect("killed"); ti.exitCode() != 137 || ti.Containers[0].Signal != "SIGKILL" {
		t.Errorf("after kill: exit %d signal %q, want 137 SIGKILL", ti.exitCode(), ti.Containers[0].Signal)
	}
	e.ok("rm", "killed")
	// SIGTERM handled by the app: its own code 143, no signal.
	// (alloc -hold says "holding" once its handler is in place.)
	e.start("--name", "termed", appImage, "alloc", "1", "-hold")
	e.waitLog("termed", "holding")
	e.ok("kill", "-s", "TERM", "termed")
	e.waitFor("termed to stop", 10*time.Second, func() bool { return e.inspect("termed").Status == "STOPPED" })
	if ti := e.inspect("termed"); ti.exitCode() != 143 || ti.Containers[0].Signal != "" {
		t.Errorf("after kill -s TERM: exit %d signal %q, want 143 and none", ti.exitCode(), ti.Containers[0].Signal)
	}
	e.ok("rm", "termed")

	// Found out by the spec generator, before anything runs.
	e.code(127, "run", "--entrypoint", "/nope", appImage)
	e.code(127, "run", "--rm", "--entrypoint", "nope", appImage)
	e.code(126, "run", "--entrypoint", "/etc/passwd", appImage)
	e.code(126, "run", bbImage, "/etc")
	// Found out by the container's exec (the path lies under a mount the
	// generator cannot see into).
	hostFile := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(hostFile, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.code(127, "run", "--tmpfs", "/x", "--entrypoint", "/x/nope", appImage); !strings.Contains(r.err, "/x/nope") {
		t.Errorf("exec of a missing command: %s", r)
	}
	e.code(126, "run", "-v", hostFile+":/data/script", "--entrypoint", "/data/script", appImage)
	// Failures inside the container's init, before any state is saved
	// (docker's rule: 125 unless not found or not executable).
	e.code(125, "run", "-w", "/etc/passwd", appImage, "echo")
	e.code(125, "run", "-v", hostFile+":/etc", appImage, "echo")
	e.wantNoTasks("exit codes and start failures")
}

// testRunBadInput: berth's own errors exit 125 with one line and create
// nothing.
func testRunBadInput(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	reg := registry.Start(t)
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"--memory", []string{"run", "-m", "12q", appImage}},
		{"--cpus", []string{"run", "--cpus", "many", appImage}},
		{"unknown flag", []string{"run", "--bogus", appImage}},
		{"--ulimit", []string{"run", "--ulimit", "nofile=x", appImage}},
		{"--security-opt", []string{"run", "--security-opt", "nonsense", appImage}},
		{"does not exist", []string{"run", "-v", "/nonexistent-berth-test:/data", appImage}},
		{"nosuchuser", []string{"run", "-u", "nosuchuser", appImage, "whoami"}},
		{"relative", []string{"run", "-w", "relative/dir", appImage, "whoami"}},
		{"run needs an image", []string{"run"}},
		{"not found", []string{"run", reg.Ref("team/none:1")}},
		{"not found", []string{"run", "-d", reg.Ref("team/none:1")}},
		{"no such task", []string{"stop", "ghost"}},
		{"no such task", []string{"rm", "ghost"}},
		{"no such task", []string{"logs", "ghost"}},
		{"no such task", []string{"exec", "ghost", "true"}},
	} {
		r := e.run(tc.args...)
		lines := strings.Split(strings.TrimSpace(r.err), "\n")
		last := lines[len(lines)-1]
		if r.code != 125 || !strings.HasPrefix(last, "berth: ") || !strings.Contains(strings.ToLower(last), strings.ToLower(tc.want)) {
			t.Errorf("want exit 125 and one line with %q:\n%s", tc.want, r)
		}
	}
	e.wantNoTasks("bad input")

	// Names are unique: a clash is refused and changes nothing.
	id := e.start("--name", "dup", appImage, "sleep", "30")
	if r := e.code(125, "run", "-d", "--name", "dup", appImage, "sleep", "30"); !strings.Contains(r.err, "already in use") {
		t.Errorf("name clash: %s", r)
	}
	if r := e.code(125, "run", "--name", "bad/name", appImage); !strings.Contains(r.err, "invalid name") {
		t.Errorf("bad name: %s", r)
	}
	if ts := e.psAll(); len(ts) != 1 || ts[0].ID != id {
		t.Errorf("after a name clash, ps -a: %+v", ts)
	}
	// A running task is not removed without -f.
	if r := e.code(125, "rm", "dup"); !strings.Contains(r.err, "running") {
		t.Errorf("rm of a running task: %s", r)
	}
	// IDs and unique prefixes work where names do.
	e.ok("stop", "-t", "5", id[:8])
	e.ok("rm", id)
	e.wantNoTasks("the name clash")
}

// testRunMerge: docker's merge of the image config with -e, --env-file, -u,
// -w, --entrypoint and the command, observed inside the container.
func testRunMerge(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nB=from-file\nC=from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.ok("run", "--rm", "-e", "A=1", "-e", "C=flag", "--env-file", envFile, "--hostname", "merge-host", appImage, "env")
	env := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range []string{"A=1", "B=from-file", "C=flag", testimage.DefaultPath, "HOME=/root", "HOSTNAME=merge-host"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, out)
		}
	}
	if out := e.ok("run", "--rm", "-u", "app", appImage, "env"); !strings.Contains(out, "HOME=/home/app\n") {
		t.Errorf("-u app: HOME is not the user's:\n%s", out)
	}

	type identity struct {
		UID, GID int
		Groups   []int
		Cwd      string
		Hostname string
	}
	who := func(args ...string) identity {
		t.Helper()
		out := e.ok(append(append([]string{"run", "--rm"}, args...), appImage, "whoami")...)
		var id identity
		if err := json.Unmarshal([]byte(out), &id); err != nil {
			t.Fatalf("whoami %v: %v\n%s", args, err, out)
		}
		return id
	}
	if id := who(); id.UID != 0 || id.GID != 0 || id.Cwd != testimage.AppWorkDir || len(id.Hostname) != 12 {
		t.Errorf("defaults: %+v, want root in %s with a 12-hex hostname", id, testimage.AppWorkDir)
	}
	if id := who("-u", "app", "-w", "/tmp"); id.UID != 1000 || id.GID != 1000 || id.Cwd != "/tmp" {
		t.Errorf("-u app -w /tmp: %+v", id)
	}
	if id := who("-u", "1234:5678", "-w", "/new/dir"); id.UID != 1234 || id.GID != 5678 || id.Cwd != "/new/dir" {
		t.Errorf("-u 1234:5678 -w /new/dir (created): %+v", id)
	}
	if id := who("-u", "app:root"); id.UID != 1000 || id.GID != 0 {
		t.Errorf("-u app:root: %+v", id)
	}

	// The app image: Entrypoint testapp, Cmd serve. A command replaces Cmd;
	// --entrypoint replaces the entrypoint and drops the image's Cmd.
	if out := e.ok("run", "--rm", appImage, "echo", "cmd", "replaced"); out != "cmd replaced\n" {
		t.Errorf("command after the entrypoint: %q", out)
	}
	if out := e.ok("run", "--rm", "--entrypoint", "/bin/echo", appImage); out != "\n" {
		t.Errorf("--entrypoint without a command kept the image's Cmd: %q", out)
	}
	if out := e.ok("run", "--rm", "--entrypoint", "echo", appImage, "a", "b"); out != "a b\n" {
		t.Errorf("--entrypoint echo a b: %q", out)
	}
	// busybox: no entrypoint, Cmd sh.
	if out := e.ok("run", "--rm", bbImage, "sh", "-c", "echo $0 in $(pwd)"); out != "sh in /\n" {
		t.Errorf("busybox sh: %q", out)
	}
	e.wantNoTasks("merge runs")
}

// testRunOOM: a container that outgrows its 32 MiB is OOM-killed: exit 137,
// "OOMKilled" in ps, oomKilled in inspect.
func testRunOOM(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	e.code(137, "run", "--name", "oom", "-m", "32m", appImage, "alloc", "64")
	if out := e.ok("ps", "-a"); !strings.Contains(out, "Exited (137) OOMKilled") {
		t.Errorf("ps -a:\n%s", out)
	}
	ti := e.inspect("oom")
	if !ti.Containers[0].OOMKilled || ti.exitCode() != 137 || ti.Status != "STOPPED" {
		t.Errorf("inspect: %+v", ti)
	}
	// Within the limit nothing is killed.
	e.code(0, "run", "--name", "fits", "-m", "32m", appImage, "alloc", "8")
	if ti := e.inspect("fits"); ti.Containers[0].OOMKilled || ti.exitCode() != 0 {
		t.Errorf("inspect of a task within its limit: %+v", ti)
	}
	e.ok("rm", "oom", "fits")
	e.wantNoTasks("rm")
}

// testRunLimits: CPU quota and shares, memory and pids limits land in the
// container's cgroup, and the pids limit stops a fork loop.
func testRunLimits(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	id := e.start("--name", "lim", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "8", "-m", "48m", bbImage, "sleep", "60")
	pid := e.inspect("lim").Containers[0].Pid
	// The container's own cgroups, as /proc/PID/cgroup names them, lie
	// where the runtime's convention says.
	files := []struct{ ctl, file, want string }{
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.shares", "512"},
		{"pids", "pids.max", "8"},
		{"memory", "memory.limit_in_bytes", strconv.Itoa(48 << 20)},
	}
	if cgroupV2() {
		files = []struct{ ctl, file, want string }{
			{"", "cpu.max", "50000 100000"},
			{"", "pids.max", "8"},
			{"", "memory.max", strconv.Itoa(48 << 20)},
		}
	}
	for _, f := range files {
		dir := procCgroupDir(pid, f.ctl)
		if want := cgroupDir(id, f.ctl); dir != want {
			t.Errorf("the container's %s cgroup is %s, want %s", f.ctl, dir, want)
		}
		if got := readTrim(t, filepath.Join(dir, f.file)); got != f.want {
			t.Errorf("%s = %q, want %q", filepath.Join(dir, f.file), got, f.want)
		}
	}
	// inspect shows the limits from the container's spec.
	var insp []struct {
		Specs map[string]struct {
			Linux struct {
				Resources struct {
					CPU struct {
						Quota  int64  `json:"quota"`
						Period uint64 `json:"period"`
					} `json:"cpu"`
					Memory struct {
						Limit int64 `json:"limit"`
					} `json:"memory"`
					Pids struct {
						Limit int64 `json:"limit"`
					} `json:"pids"`
				} `json:"resources"`
			} `json:"linux"`
		} `json:"specs"`
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "lim")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	if res := insp[0].Specs["main"].Linux.Resources; res.CPU.Quota != 50000 || res.CPU.Period != 100000 || res.Memory.Limit != 48<<20 || res.Pids.Limit != 8 {
		t.Errorf("inspect's limits: %+v", res)
	}
	e.ok("rm", "-f", "lim")
	if dirs := cgroupDirs(id); len(dirs) > 0 {
		t.Errorf("cgroup dirs left after rm -f: %v", dirs)
	}

	// 8 pids: sh and at most 7 sleeps; the fork that passes the limit fails.
	r := e.run("run", "--rm", "--pids-limit", "8", bbImage, "sh", "-c",
		"for i in $(seq 1 20); do sleep 10 & echo started $i; done; echo all started")
	started := strings.Count(r.out, "started ")
	if r.code == 0 || strings.Contains(r.out, "all started") || started >= 8 || !strings.Contains(r.err, "fork") {
		t.Errorf("fork loop under --pids-limit 8 (started %d):\n%s", started, r)
	}
	e.wantNoTasks("limits")
}

// testRunFilesystems: --read-only with --tmpfs, bind volumes (ro honoured,
// writes reach the host) and named volumes (data outlives the task).
func testRunFilesystems(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	e.ok("run", "--rm", appImage, "write", "/x", "y")
	if r := e.code(1, "run", "--rm", "--read-only", appImage, "write", "/x", "y"); !strings.Contains(r.err, "read-only file system") {
		t.Errorf("write to a read-only rootfs: %s", r)
	}
	e.ok("run", "--rm", "--read-only", "--tmpfs", "/tmp", appImage, "write", "/tmp/x", "y")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("run", "--rm", "-v", dir+":/data:ro", appImage, "cat", "/data/hello.txt"); out != "from the host" {
		t.Errorf("bind volume: %q", out)
	}
	if r := e.code(1, "run", "--rm", "-v", dir+":/data:ro", appImage, "write", "/data/new", "x"); !strings.Contains(r.err, "read-only file system") {
		t.Errorf("write to a :ro volume: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Error("a write to a :ro volume reached the host")
	}
	e.ok("run", "--rm", "--read-only", "-v", dir+":/data", appImage, "write", "/data/new", "from the container")
	if b, err := os.ReadFile(filepath.Join(dir, "new")); err != nil || string(b) != "from the container" {
		t.Errorf("write through a bind volume: %q, %v", b, err)
	}

	e.ok("run", "--rm", "-v", "vol1:/data", appImage, "write", "/data/f", "persisted")
	if out := e.ok("run", "--rm", "-v", "vol1:/data:ro", appImage, "cat", "/data/f"); out != "persisted" {
		t.Errorf("named volume in a second task: %q", out)
	}
	if r := e.run("run", "--rm", "-v", "vol2:/data", appImage, "cat", "/data/f"); r.code != 1 {
		t.Errorf("another named volume is not empty:\n%s", r)
	}
	e.wantNoTasks("filesystem runs")
}

// testRunLogs: logs keeps stdout and stderr apart, --timestamps, --tail,
// --since, and -f follows until the task stops.
func testRunLogs(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	e.start("--name", "lg", bbImage, "sh", "-c", "echo one; echo two >&2; sleep 1; echo three; sleep 1; echo four")
	r := e.code(0, "logs", "-f", "--timestamps", "lg")
	var lines []string
	stamps := map[string]time.Time{}
	for _, l := range strings.Split(strings.TrimSuffix(r.out, "\n"), "\n") {
		ts, msg, ok := strings.Cut(l, " ")
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if !ok || err != nil {
			t.Errorf("logs --timestamps line %q: %v", l, err)
		}
		lines = append(lines, msg)
		stamps[msg] = tm
	}
	if !slices.Equal(lines, []string{"one", "three", "four"}) || !strings.HasSuffix(r.err, " two\n") {
		t.Errorf("logs -f --timestamps:\n%s", r)
	}
	if ti := e.inspect("lg"); ti.Status != "STOPPED" || ti.exitCode() != 0 {
		t.Errorf("logs -f returned before the task stopped: %+v", ti)
	}
	if d := stamps["four"].Sub(stamps["one"]); d < 1500*time.Millisecond || d > 5*time.Second {
		t.Errorf("timestamps one..four %s apart, want about 2s", d)
	}
	if r := e.code(0, "logs", "lg"); r.out != "one\nthree\nfour\n" || r.err != "two\n" {
		t.Errorf("logs:\n%s", r)
	}
	if r := e.code(0, "logs", "--tail", "2", "lg"); r.out != "three\nfour\n" || r.err != "" {
		t.Errorf("logs --tail 2:\n%s", r)
	}
	if r := e.code(0, "logs", "--since", stamps["three"].Format(time.RFC3339Nano), "lg"); r.out != "three\nfour\n" || r.err != "" {
		t.Errorf("logs --since (three):\n%s", r)
	}
	if r := e.code(0, "logs", "--since", "1h", "lg"); r.out != "one\nthree\nfour\n" {
		t.Errorf("logs --since 1h:\n%s", r)
	}
	e.code(125, "logs", "--tail", "x", "lg")
	e.ok("rm", "lg")

	// -f joins a running task midway and ends when it is stopped.
	e.start("--name", "srv", appImage, "serve")
	e.waitLog("srv", "listening on")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	follow := e.cmd(ctx, "logs", "-f", "--tail", "1", "srv")
	var out bytes.Buffer
	follow.Stdout = &out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("logs -f of a running task ended: %v\n%s", err, out.String())
	default:
	}
	e.ok("stop", "srv")
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "shutdown complete") {
			t.Errorf("logs -f: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("logs -f did not end when the task stopped")
	}
	e.ok("rm", "srv")
	e.wantNoTasks("logs")
}

// testRunCLIKilled: the task outlives a kill -9 of the attached CLI, and
// its monitor still records the exit.
func testRunCLIKilled(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// busybox sh as PID 1 with a TERM trap, printing a tick every 0.2 s.
	c := e.cmd(ctx, "run", "--name", "surv", bbImage, "sh", "-c",
		`trap 'echo bye; exit 143' TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done`)
	out := &testrig.SyncBuffer{}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// The attached CLI streams the output live.
	e.waitFor("the attached CLI to print tick 2", 20*time.Second, func() bool { return strings.Contains(out.String(), "tick 2\n") })
	if err := c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	seen := strings.Count(out.String(), "tick ")
	// The task runs on, and its monitor keeps logging.
	e.waitLog("surv", fmt.Sprintf("tick %d\n", seen+3))
	ti := e.inspect("surv")
	if ti.Status != "RUNNING" || !alive(ti.MonitorPID) || !alive(ti.Containers[0].Pid) {
		t.Fatalf("after kill -9 of the CLI: %+v (monitor alive %v, container alive %v)", ti, alive(ti.MonitorPID), alive(ti.Containers[0].Pid))
	}
	// The monitor is berth-shim, installed next to berth, not berth itself.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ti.MonitorPID)); err != nil || filepath.Base(exe) != runtime.ShimName {
		t.Errorf("monitor %d runs %q (%v), want %s", ti.MonitorPID, exe, err, runtime.ShimName)
	}
	time.Sleep(200 * time.Millisecond)
	if out := e.ok("ps"); !strings.Contains(out, "surv") || !strings.Contains(out, "Up ") {
		t.Errorf("ps after kill -9 of the CLI:\n%s", out)
	}
	e.ok("stop", "surv")
	ti = e.inspect("surv")
	if ti.Status != "STOPPED" || ti.exitCode() != 143 || ti.StopCode != "UserInitiated" {
		t.Errorf("after stop: %+v, want exit 143 recorded", ti)
	}
	if out := e.ok("logs", "--tail", "1", "surv"); out != "bye\n" {
		t.Errorf("last log line %q, want bye", out)
	}
	if alive(ti.MonitorPID) {
		t.Errorf("monitor %d still alive", ti.MonitorPID)
	}
	e.ok("rm", "surv")
	e.wantNoTasks("rm")
}

// testRunMonitorKilled: kill -9 of a task's monitor leaves the container
// running; ps, exec, stop and rm (and rm -f) still work and leave nothing.
func testRunMonitorKilled(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	for _, name := range []string{"stopped", "forced"} {
		e.start("--name", name, appImage, "sleep", "30")
		ti := e.inspect(name)
		mon, pid := ti.MonitorPID, ti.Containers[0].Pid
		if mon == 0 || !alive(mon) || !alive(pid) {
			t.Fatalf("%s: %+v", name, ti)
		}
		if err := syscall.Kill(mon, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.waitFor("the monitor to die", 10*time.Second, func() bool { return !alive(mon) })
		if !alive(pid) {
			t.Fatalf("%s: the container died with its monitor", name)
		}
		if ti := e.inspect(name); ti.Status != "RUNNING" {
			t.Errorf("%s: inspect after kill -9 of the monitor: %+v", name, ti)
		}
		if out := e.ok("ps", "-q"); !strings.Contains(out, ti.ID[:12]) {
			t.Errorf("%s: ps -q after kill -9 of the monitor: %q", name, out)
		}
		if out := e.ok("exec", name, "testapp", "echo", "still", "here"); out != "still here\n" {
			t.Errorf("%s: exec: %q", name, out)
		}
	}
	e.code(0, "stop", "-t", "5", "stopped")
	if ti := e.inspect("stopped"); ti.Status != "STOPPED" || alive(ti.Containers[0].Pid) {
		t.Errorf("after stop: %+v", ti)
	}
	if out := e.ok("ps", "-a"); !strings.Contains(out, "Exited (unknown)") {
		t.Errorf("ps -a: an exit nobody saw should be unknown:\n%s", out)
	}
	e.ok("rm", "stopped")
	e.ok("rm", "-f", "forced")
	e.wantNoTasks("rm")
}

// testRunStop: stop sends the stop signal, then SIGKILL after -t.
func testRunStop(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	e.start("--name", "stubborn", appImage, "ignore-sigterm")
	e.start("--name", "srv", appImage)
	e.start("--name", "sigint", "--stop-signal", "SIGINT", appImage, "ignore-sigterm")
	e.waitLog("stubborn", "ready")
	e.waitLog("srv", "listening on")
	e.waitLog("sigint", "ready")

	// The SIGKILL may not come before the timeout (a lower bound only:
	// upper bounds on a shared machine are noise).
	r := e.code(0, "stop", "-t", "1", "stubborn")
	if r.took < time.Second {
		t.Errorf("stop -t 1 of a SIGTERM-ignoring task took %s: SIGKILL came before the timeout", r.took)
	}
	if ti := e.inspect("stubborn"); ti.exitCode() != 137 || ti.Containers[0].Signal != "SIGKILL" || ti.Containers[0].OOMKilled {
		t.Errorf("after stop -t 1: %+v", ti)
	}
	if out := e.ok("logs", "stubborn"); !strings.Contains(out, "ignoring SIGTERM") {
		t.Errorf("the task never saw SIGTERM:\n%s", out)
	}

	// Exit 0 (not 137) shows SIGTERM sufficed.
	e.code(0, "stop", "srv")
	if ti := e.inspect("srv"); ti.exitCode() != 0 || ti.StopCode != "UserInitiated" {
		t.Errorf("after stop: %+v", ti)
	}
	if out := e.ok("logs", "srv"); !strings.Contains(out, "shutdown complete") {
		t.Errorf("no clean shutdown:\n%s", out)
	}

	// --stop-signal: SIGINT ends ignore-sigterm with 130, no SIGKILL needed.
	e.code(0, "stop", "sigint")
	if ti := e.inspect("sigint"); ti.exitCode() != 130 {
		t.Errorf("--stop-signal SIGINT: %+v", ti)
	}
	// Stopping a stopped task is fine.
	e.ok("stop", "srv")
	e.ok("rm", "stubborn", "srv", "sigint")
	e.wantNoTasks("rm")
}

// testRunExec: exec's output, exit code, -u, -e, -w and -i.
func testRunExec(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	e.start("--name", "ex", "-e", "FROM_RUN=yes", appImage, "sleep", "30")
	if out := e.ok("exec", "ex", "testapp", "echo", "hi"); out != "hi\n" {
		t.Errorf("exec echo: %q", out)
	}
	if r := e.code(7, "exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 7"); r.out != "out\n" || r.err != "err\n" {
		t.Errorf("exec exit 7:\n%s", r)
	}
	if out := e.ok("exec", "-u", "app", "ex", "id", "-u"); out != "1000\n" {
		t.Errorf("exec -u app: %q", out)
	}
	if out := e.ok("exec", "-u", "1234:5678", "ex", "sh", "-c", "echo $(id -u):$(id -g)"); out != "1234:5678\n" {
		t.Errorf("exec -u 1234:5678: %q", out)
	}
	if out := e.ok("exec", "-e", "FOO=bar", "-e", "FROM_RUN=overridden", "ex", "sh", "-c", "echo $FOO $FROM_RUN $PATH"); out != "bar overridden "+strings.TrimPrefix(testimage.DefaultPath, "PATH=")+"\n" {
		t.Errorf("exec -e: %q", out)
	}
	if out := e.ok("exec", "ex", "sh", "-c", "echo $FROM_RUN; pwd"); out != "yes\n"+testimage.AppWorkDir+"\n" {
		t.Errorf("exec inherits the container's env and cwd: %q", out)
	}
	if out := e.ok("exec", "-w", "/tmp", "ex", "pwd"); out != "/tmp\n" {
		t.Errorf("exec -w /tmp: %q", out)
	}
	if r := e.runIn("line one\nline two\n", "exec", "-i", "ex", "cat"); r.code != 0 || r.out != "line one\nline two\n" {
		t.Errorf("exec -i cat:\n%s", r)
	}
	if r := e.runIn("not passed\n", "exec", "ex", "cat"); r.code != 0 || r.out != "" {
		t.Errorf("exec without -i read stdin:\n%s", r)
	}
	e.code(127, "exec", "ex", "nope")
	e.code(126, "exec", "ex", "/etc/passwd")
	// A process killed by a signal: 128+N.
	e.code(137, "exec", "ex", "sh", "-c", "kill -9 $$")
	e.code(125, "exec", "-u", "nosuchuser", "ex", "true")
	e.ok("stop", "ex")
	if r := e.code(125, "exec", "ex", "true"); !strings.Contains(r.err, "not running") {
		t.Errorf("exec in a stopped task: %s", r)
	}
	e.ok("rm", "ex")
	e.wantNoTasks("rm")
}

// testRunSecurity: capabilities, seccomp and no_new_privs from
// /proc/self/status inside the container.
func testRunSecurity(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	host := procStatus(readTrim(t, "/proc/self/status"))
	const dockerCaps = "00000000a80425fb"
	for _, tc := range []struct {
		flags []string
		want  map[string]string
	}{
		{nil, map[string]string{"CapEff": dockerCaps, "CapBnd": dockerCaps, "Seccomp": "2", "NoNewPrivs": "0"}},
		{[]string{"--security-opt", "no-new-privileges"}, map[string]string{"CapEff": dockerCaps, "Seccomp": "2", "NoNewPrivs": "1"}},
		{[]string{"--cap-drop", "ALL"}, map[string]string{"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "Seccomp": "2"}},
		{[]string{"--cap-add", "NET_ADMIN"}, map[string]string{"CapEff": "00000000a80435fb"}},
		{[]string{"--cap-drop", "NET_RAW", "--cap-drop", "chown"}, map[string]string{"CapEff": "00000000a80405fa"}},
		{[]string{"-u", "app"}, map[string]string{"CapEff": "0000000000000000", "CapBnd": dockerCaps, "Seccomp": "2"}},
		{[]string{"--security-opt", "seccomp=unconfined"}, map[string]string{"CapEff": dockerCaps, "Seccomp": "0"}},
		{[]string{"--privileged"}, map[string]string{"CapEff": host["CapEff"], "Seccomp": "0", "NoNewPrivs": "0"}},
	} {
		out := e.ok(append(append([]string{"run", "--rm"}, tc.flags...), appImage, "status")...)
		got := procStatus(out)
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("run %v: %s = %q, want %q\n%s", tc.flags, k, got[k], v, out)
			}
		}
	}
	e.wantNoTasks("security runs")
}

// procStatus parses "Key:\tvalue" lines.
func procStatus(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// testRunConcurrent: 20 `run -d` at once all run, each in its own cgroup,
// and are all removed cleanly.
func testRunConcurrent(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			r, err := e.runRaw("", "run", "-d", "--name", fmt.Sprintf("c%02d", i), bbImage, "sleep", "60")
			switch {
			case err != nil:
				errs[i] = err
			case r.code != 0:
				errs[i] = errors.New(r.String())
			default:
				ids[i] = strings.TrimSpace(r.out)
				e.note(ids[i])
			}
		})
	}
	wg.Wait()
	t.Logf("%d concurrent run -d took %s", n, time.Since(start).Round(time.Millisecond))
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ts := e.psAll()
	if len(ts) != n {
		t.Fatalf("ps lists %d tasks, want %d", len(ts), n)
	}
	pids := map[int]bool{}
	for _, ti := range ts {
		if ti.Status != "RUNNING" || !alive(ti.Containers[0].Pid) || !alive(ti.MonitorPID) || pids[ti.Containers[0].Pid] {
			t.Errorf("task %s: %+v", ti.Name, ti)
		}
		pids[ti.Containers[0].Pid] = true
		if len(cgroupDirs(ti.ID)) == 0 {
			t.Errorf("task %s has no cgroup", ti.Name)
		}
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("c%02d", i)
	}
	r := e.code(0, append([]string{"rm", "-f"}, names...)...)
	t.Logf("rm -f of %d tasks took %s", n, r.took.Round(time.Millisecond))
	for pid := range pids {
		if alive(pid) {
			t.Errorf("container process %d alive after rm -f", pid)
		}
	}
	e.wantNoTasks("rm -f")
}

// testRunInitAndInput: --init runs berth-init as PID 1, which reaps
// orphaned zombies and passes the exit code on; -i feeds stdin; -t gives a
// terminal; --stop-timeout is the task's default for stop.
func testRunInitAndInput(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	// PID 1 is berth-init; an orphan that exits is reaped (no zombie stays).
	out := e.ok("run", "--rm", "--init", "--entrypoint", "sh", bbImage, "-c",
		"(sleep 0.2 &) ; sleep 0.6; cat /proc/1/comm; ps -o stat,comm | grep -c '^Z' || true")
	if lines := strings.Fields(out); len(lines) != 2 || lines[0] != "berth-init" || lines[1] != "0" {
		t.Fatalf("--init: PID 1 and zombie count %q, want berth-init and 0", out)
	}
	e.code(5, "run", "--rm", "--init", "--entrypoint", "sh", bbImage, "-c", "exit 5")
	// Without --init the shell is PID 1.
	if out := e.ok("run", "--rm", "--entrypoint", "cat", bbImage, "/proc/1/comm"); strings.TrimSpace(out) != "cat" {
		t.Fatalf("PID 1 without --init: %q", out)
	}
	// -i: stdin reaches the container and its EOF ends it.
	r := e.runIn("one\ntwo\n", "run", "--rm", "-i", "--entrypoint", "sh", bbImage, "-c", "wc -l")
	if r.code != 0 || strings.TrimSpace(r.out) != "2" {
		t.Fatalf("-i: %s", r)
	}
	// -t: the process has a terminal (stdin of the CLI is not one here).
	r = e.runIn("", "run", "--rm", "-t", "--entrypoint", "sh", bbImage, "-c", "tty; exit 3")
	if r.code != 3 || !strings.Contains(r.out, "/dev/pts/") {
		t.Fatalf("-t: %s", r)
	}
	// --stop-timeout 1 makes a plain stop escalate after about a second.
	id := e.start("--stop-timeout", "1", appImage, "ignore-sigterm")
	e.waitLog(id, "ready")
	// The task records its timeout (runtime.TestStopTimeout checks that
	// Stop uses it); the stop escalates to SIGKILL, not before a second.
	if ti := e.inspect(id); ti.Containers[0].StopTimeout != time.Second {
		t.Fatalf("recorded stop timeout %v, want 1s", ti.Containers[0].StopTimeout)
	}
	if r := e.code(0, "stop", id); r.took < time.Second {
		t.Fatalf("stop escalated after %s, before the 1 s stop timeout", r.took)
	}
	if code := e.inspect(id).exitCode(); code != 137 {
		t.Fatalf("exit after stop: %d, want 137", code)
	}
	e.code(125, "run", "--stop-timeout", "-1", appImage, "exit", "0")
}

// testRunImageInUse: rmi and prune -a keep an image a task uses (running or
// stopped, as docker does); rmi -f removes the name anyway.
func testRunImageInUse(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	id := e.start(bbImage, "sleep", "30")
	if r := e.code(125, "rmi", bbImage); !strings.Contains(r.err, "image in use") || !strings.Contains(r.err, id[:12]) {
		t.Fatalf("rmi of a used image: %s", r)
	}
	if out := e.ok("image", "prune", "-a"); strings.Contains(out, "busybox") {
		t.Fatalf("prune -a removed a used image:\n%s", out)
	}
	e.ok("stop", "-t", "1", id)
	e.code(125, "rmi", bbImage) // a stopped task still holds it
	e.ok("rm", id)
	e.ok("rmi", bbImage)
	if out := e.ok("images"); strings.Contains(out, "busybox") {
		t.Fatalf("rmi left the image:\n%s", out)
	}
}

// testRunNetwork: the network modes, published ports, DNS files and the
// reconcile pass, through the binary, on the env's own bridge. Traffic goes
// only to 127.0.0.1 and to addresses on the env's bridge.
func testRunNetwork(t *testing.T, fx *runFixture) {
	e := newRunEnv(t, fx)
	e.code(125, "run", "--network", "none", "-p", "8080:8080", appImage, "exit", "0")
	e.code(125, "run", "-p", "80:8080:1", appImage, "exit", "0")
	e.code(125, "run", "-p", "8000-8002:9000-9001", appImage, "exit", "0")
	e.code(125, "run", "--network", "nowhere", appImage, "exit", "0")
	e.code(125, "run", "--add-host", "bad name:1.2.3.4", appImage, "exit", "0")
	e.code(125, "run", "--dns", "not-an-ip", appImage, "exit", "0")

	// The default is the bridge: eth0 with an address of the subnet, a
	// default route via the gateway, and the DNS files.
	out := e.ok("run", "--rm", "--hostname", "web1", "--add-host", "db.test:10.1.2.3", "--dns", "10.0.0.53", "--dns-search", "corp.test",
		bbImage, "sh", "-c", "ip -o -4 addr show eth0; ip route; echo; cat /etc/hosts; echo; cat /etc/resolv.conf; hostname; cat /etc/hostname")
	gw := e.subnet.Addr().Next()
	for _, want := range []string{"inet 10.214.", "default via " + gw.String(), "10.1.2.3\tdb.test", "nameserver 10.0.0.53", "search corp.test", "web1\nweb1\n", "127.0.0.1\tlocalhost"} {
		if !strings.Contains(out, want) {
			t.Errorf("bridge task: no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "nameserver 127.") {
		t.Errorf("a loopback nameserver in a bridge task's resolv.conf:\n%s", out)
	}

	// Fixed, dynamic, ranged and -P ports; ps, port and inspect show them.
	fixed := freePort(t)
	srv := e.start("--name", "srv", "-p", fmt.Sprintf("127.0.0.1:%d:8080", fixed), "-p", "127.0.0.1::8080", appImage, "serve", "-udp", ":9090")
	e.waitLog(srv, "listening on")
	ports := e.ok("port", "srv")
	dyn := 0
	for _, l := range strings.Split(strings.TrimSpace(ports), "\n") {
		var p int
		if _, err := fmt.Sscanf(l, "8080/tcp -> 127.0.0.1:%d", &p); err != nil {
			t.Fatalf("port srv: line %q: %v\n%s", l, err, ports)
		}
		if p != fixed {
			dyn = p
		}
	}
	if dyn < 49153 || dyn > 60999 {
		t.Fatalf("dynamic port %d outside 49153-60999:\n%s", dyn, ports)
	}
	if got := e.ok("port", "srv", "8080/tcp"); !strings.Contains(got, fmt.Sprintf("127.0.0.1:%d", fixed)) {
		t.Errorf("port srv 8080/tcp: %q", got)
	}
	e.code(125, "port", "srv", "9999")
	if out := e.ok("ps"); !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d->8080/tcp", fixed)) || !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d->8080/tcp", dyn)) {
		t.Fatalf("ps does not show the published ports:\n%s", out)
	}
	for _, p := range []int{fixed, dyn} {
		if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/hello", p)); !strings.Contains(body, "hello from") {
			t.Fatalf("published port %d answered %q", p, body)
		}
	}
	var ins []struct {
		Network struct{ Mode, IPAddress, Gateway, NetnsPath string }
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "srv")), &ins); err != nil || len(ins) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	srvAddr, err := netip.ParsePrefix(ins[0].Network.IPAddress)
	if err != nil || ins[0].Network.Mode != "bridge" || !e.subnet.Contains(srvAddr.Addr()) || ins[0].Network.Gateway != gw.String() {
		t.Fatalf("inspect network: %+v (%v)", ins[0].Network, err)
	}
	// A range maps port by port.
	r0 := freePortPair(t)
	rg := e.start("-p", fmt.Sprintf("127.0.0.1:%d-%d:8080-8081", r0, r0+1), appImage, "serve")
	e.waitLog(rg, "listening on")
	if got, want := e.ok("port", rg), fmt.Sprintf("8080/tcp -> 127.0.0.1:%d\n8081/tcp -> 127.0.0.1:%d\n", r0, r0+1); got != want {
		t.Errorf("port of a ranged task: %q, want %q", got, want)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/hello", r0)); !strings.Contains(body, "hello from") {
		t.Errorf("first port of the range answered %q", body)
	}
	e.ok("rm", "-f", rg)

	// A port held by a task, or by a host process, is refused before
	// anything starts, naming the holder.
	if r := e.code(125, "run", "-d", "-p", fmt.Sprintf("127.0.0.1:%d:80", fixed), bbImage, "sleep", "5"); !strings.Contains(r.err, srv[:12]) && !strings.Contains(r.err, srv) {
		t.Errorf("port clash with a task:\n%s", r)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := l.Addr().(*net.TCPAddr).Port
	r := e.code(125, "run", "-d", "-p", fmt.Sprintf("127.0.0.1:%d:80", held), bbImage, "sleep", "5")
	l.Close()
	if !strings.Contains(r.err, "in use on the host") || !strings.Contains(r.err, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("port held by a host process:\n%s", r)
	}

	// Container to container on the bridge, and hairpin: a task reaching
	// another's published port through the gateway address.
	anyPort := freePort(t)
	hp := e.start("--name", "hp", "-p", fmt.Sprintf("%d:8080", anyPort), appImage, "serve")
	e.waitLog(hp, "listening on")
	out = e.ok("run", "--rm", bbImage, "sh", "-c", fmt.Sprintf("wget -qO- http://%s:8080/hello && wget -qO- http://%s:%d/hello", srvAddr.Addr(), gw, anyPort))
	if strings.Count(out, "hello from") != 2 {
		t.Errorf("task to task and hairpin:\n%s", out)
	}
	e.ok("rm", "-f", "hp")

	// --network container:srv shares srv's namespace: its loopback, its
	// address and its DNS files.
	out = e.ok("run", "--rm", "--network", "container:srv", bbImage, "sh", "-c", "wget -qO- http://127.0.0.1:8080/hello; ip -o -4 addr show eth0")
	if !strings.Contains(out, "hello from") || !strings.Contains(out, srvAddr.Addr().String()+"/") {
		t.Errorf("--network container:srv:\n%s", out)
	}
	e.code(125, "run", "--rm", "--network", "container:srv", "-p", "1234:80", bbImage, "true")
	e.code(125, "run", "--rm", "--network", "container:nosuch", bbImage, "true")

	// host: the host's interfaces (the env's bridge among them) and name.
	hostName, _ := os.Hostname()
	out = e.ok("run", "--rm", "--network", "host", bbImage, "sh", "-c", "ip -o link show "+e.bridge+"; hostname")
	if !strings.Contains(out, e.bridge) || !strings.HasSuffix(out, hostName+"\n") {
		t.Errorf("--network host:\n%s", out)
	}
	// none: loopback only.
	out = e.ok("run", "--rm", "--network", "none", bbImage, "ip", "-o", "link")
	if strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "lo:") {
		t.Errorf("--network none has more than lo:\n%s", out)
	}

	// -P: the image's exposed ports (8080/tcp, 9090/udp) on free ports.
	pa := e.start("-P", appImage, "serve", "-udp", ":9090")
	e.waitLog(pa, "udp echo on")
	ports = e.ok("port", pa)
	if !strings.Contains(ports, "8080/tcp -> 0.0.0.0:") || !strings.Contains(ports, "9090/udp -> 0.0.0.0:") {
		t.Fatalf("-P ports:\n%s", ports)
	}
	udpPort := strings.TrimSpace(e.ok("port", pa, "9090/udp"))
	_, portStr, _ := strings.Cut(udpPort, ":")
	conn, err := net.Dial("udp", "127.0.0.1:"+portStr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echoed := false
	for range 20 { // UDP: retry a lost datagram
		conn.SetDeadline(time.Now().Add(250 * time.Millisecond))
		conn.Write([]byte("ping"))
		buf := make([]byte, 16)
		if n, err := conn.Read(buf); err == nil && string(buf[:n]) == "ping" {
			echoed = true
			break
		}
	}
	if !echoed {
		t.Errorf("no UDP echo through published %s", udpPort)
	}
	e.ok("rm", "-f", pa)

	// network inspect: the bridge, its leases and the port map.
	var ni []struct {
		Interface, Subnet string
		Tasks             []struct {
			ID, Name, Address string
			Ports             []string
		}
	}
	if err := json.Unmarshal([]byte(e.ok("network", "inspect")), &ni); err != nil || len(ni) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	if ni[0].Interface != e.bridge || ni[0].Subnet != e.subnet.String() || len(ni[0].Tasks) != 1 || ni[0].Tasks[0].Name != "srv" || len(ni[0].Tasks[0].Ports) != 2 {
		t.Errorf("network inspect: %+v", ni[0])
	}

	// A firewall reload flushes berth's rules: system cleanup rebuilds
	// them from state and the port answers again.
	nft := testrig.RequireBinary(t, "nft", "nftables")
	for _, ch := range []string{"prerouting", "output"} {
		if out, err := exec.Command(nft, "flush", "chain", "ip", e.table, ch).CombinedOutput(); err != nil {
			t.Fatalf("nft flush chain: %v\n%s", err, out)
		}
	}
	if _, err := freshHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/hello", fixed)); err == nil {
		t.Fatal("port answers with its rules flushed")
	}
	if out := e.ok("system", "cleanup"); !strings.Contains(out, "port rules rebuilt: 1") {
		t.Errorf("system cleanup:\n%s", out)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/hello", fixed)); !strings.Contains(body, "hello from") {
		t.Fatalf("after cleanup the port answered %q", body)
	}

	nsFile := filepath.Join(e.runRoot, "netns", srv)
	e.ok("rm", "-f", "srv")
	if _, err := os.Stat(nsFile); err == nil {
		t.Fatal("netns file left after rm")
	}
	if _, err := freshHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/hello", fixed)); err == nil {
		t.Fatal("port still answers after rm")
	}
	// system cleanup releases the network of a task that never got recorded
	// (a CLI killed between network setup and task creation): a lease, a
	// netns and a veth with no task behind them.
	n, err := e.network()
	if err != nil {
		t.Fatal(err)
	}
	orphan := strings.Repeat("ab", 32)
	if _, err := n.SetupTask(orphan); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(filepath.Join(e.root, "network", e.bridge, "leases", orphan), old, old); err != nil {
		t.Fatalf("age the orphan's lease: %v", err)
	}
	if out := e.ok("system", "cleanup"); !strings.Contains(out, "task networks released: 1") {
		t.Fatalf("system cleanup:\n%s", out)
	}
	e.assertNetworkClean()
}

// freshHTTP makes every request on a new connection: an old keep-alive
// connection, tracked by conntrack, would outlive the rules under test.
var freshHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// httpGet returns the body of a GET of url (on 127.0.0.1), failing t on error.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := freshHTTP.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// freePortPair returns a port P such that P and P+1 are both free on
// 127.0.0.1.
func freePortPair(t *testing.T) int {
	for range 50 {
		p := freePort(t)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free ports on 127.0.0.1")
	return 0
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestParseLogOpts(t *testing.T) {
	for _, tc := range []struct {
		opts  []string
		size  int64
		files int
		err   string
	}{
		{nil, 0, 0, ""},
		{[]string{"max-size=1m", "max-file=5"}, 1 << 20, 5, ""},
		{[]string{"max-size=12q"}, 0, 0, "max-size=12q"},
		{[]string{"max-size=10"}, 0, 0, "at least 1k"},
		{[]string{"max-file=0"}, 0, 0, "max-file=0"},
		{[]string{"compress=true"}, 0, 0, "unknown --log-opt"},
		{[]string{"max-size"}, 0, 0, "KEY=VALUE"},
	} {
		size, files, err := parseLogOpts(tc.opts)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.opts, err, tc.err)
			}
			continue
		}
		if err != nil || size != tc.size || files != tc.files {
			t.Errorf("%v: %d %d %v, want %d %d", tc.opts, size, files, err, tc.size, tc.files)
		}
	}
}
