//go:build linux

package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/spec"
)

// TestHelperExe: berth-shim next to berth is the helper when it is an
// executable regular file; otherwise berth plays the part itself.
func TestHelperExe(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "berth")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := HelperExe(exe); got != exe {
		t.Errorf("no shim: HelperExe = %q, want %q", got, exe)
	}
	shim := filepath.Join(dir, ShimName)
	if err := os.WriteFile(shim, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := HelperExe(exe); got != exe {
		t.Errorf("shim not executable: HelperExe = %q, want %q", got, exe)
	}
	if err := os.Chmod(shim, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := HelperExe(exe); got != shim {
		t.Errorf("HelperExe = %q, want %q", got, shim)
	}
	os.Remove(shim)
	if err := os.Mkdir(shim, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := HelperExe(exe); got != exe {
		t.Errorf("shim is a directory: HelperExe = %q, want %q", got, exe)
	}
}

// TestRootMonitorBuildMismatch: a monitor of another build than the CLI's
// refuses to start the task, with a line that says what to do, and the
// task is left stopped and removable without leftovers.
func TestRootMonitorBuildMismatch(t *testing.T) {
	r, layer := newRootRuntime(t)
	old := Build
	Build = "not-the-monitors-build"
	t.Cleanup(func() { Build = old })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	task, err := r.Create(ctx, TaskConfig{Containers: []ContainerConfig{{
		Name: "main", Image: "busybox", Layers: []string{layer},
		Spec: func(rootfs string) (*specs.Spec, error) {
			return spec.Generate(spec.ImageConfig{Cmd: []string{"sh", "-c", "true"}, Env: []string{"PATH=/bin"}}, spec.Options{Hostname: "mismatch"}, rootfs)
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Start(ctx, task.ID)
	if err == nil || !strings.Contains(err.Error(), "is build dev but berth is build not-the-monitors-build: install both from one build") {
		t.Fatalf("start with a monitor of another build: %v", err)
	}
	if err := r.Remove(ctx, task.ID, true); err != nil {
		t.Fatal(err)
	}
	assertTaskGone(t, r, task.ID)
}

// TestInputEnded: attaching input to a task that is gone (an auto-removed
// task that ended before its client attached) says so with ErrEnded, which
// the CLI treats as "nothing to feed", not as a failure.
func TestInputEnded(t *testing.T) {
	r, err := New(Config{Root: t.TempDir(), RunRoot: t.TempDir(), Exe: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Input(NewID()); !errors.Is(err, ErrEnded) {
		t.Fatalf("Input of a removed task: %v, want ErrEnded", err)
	}
}

// TestCleanupStaleSeccompTemps: `system cleanup` removes the temporary
// file of a shared seccomp cache write that a killed monitor left, once it
// is a minute old, and keeps younger ones and the cache files themselves.
func TestCleanupStaleSeccompTemps(t *testing.T) {
	runRoot := t.TempDir()
	r, err := New(Config{Root: t.TempDir(), RunRoot: runRoot, Exe: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(runRoot, "seccomp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, fresh, cache := filepath.Join(dir, ".abc.cache.123"), filepath.Join(dir, ".abc.cache.456"), filepath.Join(dir, "abc.cache")
	for _, p := range []string{stale, fresh, cache} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(cache, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file left: %v", err)
	}
	for _, p := range []string{fresh, cache} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(p), err)
		}
	}
}
