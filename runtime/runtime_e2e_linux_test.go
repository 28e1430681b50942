//go:build linux

package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/runtime/spec"
)

// buildBerth builds the berth binary (the monitor is berth re-executed)
// into a directory apart from every state dir, removed after the test.
func buildBerth(t *testing.T) string {
	t.Helper()
	gobin := testrig.RequireBinary(t, "go", "golang-go")
	dir, err := os.MkdirTemp("", "berth-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := filepath.Join(dir, "berth")
	cmd := exec.Command(gobin, "build", "-tags", "seccomp", "-buildvcs=false", "-o", exe, "../cmd/berth")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build berth: %v\n%s", err, out)
	}
	return exe
}

// newRootRuntime makes a Runtime with the built berth as its monitor and
// init, a state root and a run root of its own, and a busybox layer.
func newRootRuntime(t *testing.T) (*Runtime, string) {
	t.Helper()
	testrig.RequireRoot(t)
	exe := buildBerth(t)
	layer := busyboxRootfs(t)
	runRoot, err := os.MkdirTemp("/run", "berth-test-rt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runRoot) })
	r, err := New(Config{Root: t.TempDir(), RunRoot: runRoot, Exe: exe})
	if err != nil {
		t.Fatal(err)
	}
	return r, layer
}

// TestRootLogRotation runs a real container that prints numbered lines
// into a log limited to 3 files of 4 KiB: the files never pass the limit,
// no fourth file appears, the attached stream follows the log across every
// rotation without losing or repeating a line, and Logs reads the kept
// files in order. Remove leaves nothing behind.
func TestRootLogRotation(t *testing.T) {
	r, layer := newRootRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const lines, maxSize, maxFiles = 300, 4096, 3
	// About 60 lines a file: the writer rotates every ~0.3 s, slow enough
	// for a follower polling every 50 ms.
	script := fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "line $i"; busybox usleep 3000; i=$((i+1)); done; echo done >&2`, lines)
	task, err := r.Create(ctx, TaskConfig{Containers: []ContainerConfig{{
		Name: "main", Image: "busybox", Layers: []string{layer},
		LogMaxSize: maxSize, LogMaxFiles: maxFiles,
		Spec: func(rootfs string) (*specs.Spec, error) {
			return spec.Generate(spec.ImageConfig{Cmd: []string{"sh", "-c", script}, Env: []string{"PATH=/bin"}},
				spec.Options{Hostname: "rotation"}, rootfs)
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	removeOnCleanup(t, r, task.ID)
	final, stdout, stderr := runAttached(ctx, t, r, task.ID)
	if final.Status != TaskStopped || final.ExitCode() != 0 {
		t.Fatalf("final state: %+v", final.Containers[0])
	}
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if stdout.String() != want.String() || stderr.String() != "done\n" {
		t.Errorf("attached stream across rotations: %d bytes of stdout (want %d), stderr %q\nstdout tail: %q",
			stdout.Len(), want.Len(), stderr.String(), tail(stdout.String(), 200))
	}

	// The files: current, .1 and .2, each within the limit; no .3.
	logPath := r.LogPath(task.ID, "main")
	var kept []string // the kept lines, oldest first
	for i := maxFiles - 1; i >= 0; i-- {
		p := logPath
		if i > 0 {
			p = fmt.Sprintf("%s.%d", logPath, i)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("log file %d: %v", i, err)
		}
		if fi.Size() > maxSize || fi.Size() == 0 {
			t.Errorf("%s: %d bytes, want 1..%d", filepath.Base(p), fi.Size(), maxSize)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e struct {
				Log, Stream string
				Time        time.Time
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Time.IsZero() || (e.Stream != "stdout" && e.Stream != "stderr") {
				t.Errorf("%s: bad json-file line %q: %v", filepath.Base(p), sc.Text(), err)
			}
			if e.Stream == "stdout" {
				kept = append(kept, strings.TrimSuffix(e.Log, "\n"))
			}
		}
		f.Close()
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", logPath, maxFiles)); err == nil {
		t.Errorf("a log file beyond %d files exists", maxFiles)
	}
	// The kept lines are the newest ones, consecutive up to the last.
	if len(kept) < 2*maxSize/64 || len(kept) >= lines {
		t.Fatalf("kept %d lines of %d", len(kept), lines)
	}
	t.Logf("%d lines written, the newest %d kept in %d files", lines, len(kept), maxFiles)
	first := lines - len(kept) + 1
	for i, l := range kept {
		if want := fmt.Sprintf("line %d", first+i); l != want {
			t.Fatalf("kept line %d is %q, want %q", i, l, want)
		}
	}

	// Logs reads the kept files oldest first; --tail counts across them.
	var out, errb bytes.Buffer
	if err := r.Logs(task.ID, "", LogOptions{Tail: -1}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(kept, "\n") || errb.String() != "done\n" {
		t.Errorf("Logs: %d lines (want %d), stderr %q", len(got), len(kept), errb.String())
	}
	out.Reset()
	errb.Reset()
	if err := r.Logs(task.ID, "", LogOptions{Tail: 3}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("line %d\nline %d\n", lines-1, lines); out.String() != want || errb.String() != "done\n" {
		t.Errorf("Logs tail 3: stdout %q stderr %q, want %q and done", out.String(), errb.String(), want)
	}
}

// assertTaskGone checks that nothing of a removed task is left: its record
// and dirs, libcontainer state, mounts, cgroups.
// runAttached starts task id attached and returns its final state and
// everything it wrote.
func runAttached(ctx context.Context, t *testing.T, r *Runtime, id string) (final *Task, stdout, stderr *bytes.Buffer) {
	t.Helper()
	att, err := r.StartAttached(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr = &bytes.Buffer{}, &bytes.Buffer{}
	final, err = att.Stream(stdout, stderr)
	if err != nil {
		t.Fatal(err)
	}
	return final, stdout, stderr
}

// removeOnCleanup removes task id (forced) when the test ends and checks
// that nothing of it is left.
func removeOnCleanup(t *testing.T, r *Runtime, id string) {
	t.Helper()
	t.Cleanup(func() {
		if err := r.Remove(context.Background(), id, true); err != nil {
			t.Errorf("remove: %v", err)
		}
		assertTaskGone(t, r, id)
	})
}

func assertTaskGone(t *testing.T, r *Runtime, id string) {
	t.Helper()
	if _, err := r.Get(id); err == nil {
		t.Errorf("task %s still listed", id[:12])
	}
	for _, d := range []string{r.taskDir(id), r.runDir(id), filepath.Join(r.lcRoot, lcID(id, "main"))} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("left: %s", d)
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], r.taskDir(id)) {
			t.Errorf("mount left: %s", f[4])
		}
	}
	for _, p := range []string{"/sys/fs/cgroup/berth/", "/sys/fs/cgroup/*/berth/"} {
		if m, _ := filepath.Glob(p + lcID(id, "main")); len(m) > 0 {
			t.Errorf("cgroups left: %v", m)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
