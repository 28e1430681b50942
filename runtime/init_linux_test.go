//go:build linux

package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/testrig"
)

// busyboxRootfs makes a minimal rootfs holding /bin/busybox and /bin/sh.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	testrig.RequireFile(t, "/bin/busybox", "busybox-static")
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// runOnce runs args in a fresh container through libcontainer and returns
// the exit code and combined output. It proves that this binary re-executes
// itself as the container init (package init → libcontainer.Init).
func runOnce(t *testing.T, rootfs string, args ...string) (int, string) {
	t.Helper()
	// libcontainer's state dir must not contain the test binary's folder,
	// or the exe-sealing overlay falls back to copying (FIELD-NOTES).
	stateDir, err := os.MkdirTemp("/run", "berth-test-lc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })

	spec := specconv.Example()
	spec.Root = &specs.Root{Path: rootfs, Readonly: true}
	spec.Process.Args = args
	spec.Process.Terminal = false
	spec.Hostname = "berth-init-test"
	id := fmt.Sprintf("init-test-%d", os.Getpid())
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: id,
		Spec:       spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Absolute, like the runtime's own: a relative parent would land under
	// this test's cgroup, where the leftover check below does not look.
	parent := fmt.Sprintf("/berth-test-%d", os.Getpid())
	cfg.Cgroups.Parent = parent
	t.Cleanup(func() {
		removeCgroupParentIfEmpty(parent)
	})
	c, err := libcontainer.Create(stateDir, id, cfg)
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	var out bytes.Buffer
	p := &libcontainer.Process{
		Args:   args,
		Env:    []string{"PATH=/bin"},
		Stdout: &out,
		Stderr: &out,
		Stdin:  io.NopCloser(bytes.NewReader(nil)),
		Init:   true,
	}
	if err := c.Run(p); err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	st, err := p.Wait()
	var exitErr interface{ ExitCode() int }
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("wait: %v", err)
	}
	return st.ExitCode(), out.String()
}

// TestRootInitReexec proves the libcontainer init wiring: a container
// started by this (test) binary runs its command in new namespaces, and its
// exit code comes back.
func TestRootInitReexec(t *testing.T) {
	testrig.RequireRoot(t)
	rootfs := busyboxRootfs(t)

	t.Run("run", func(t *testing.T) {
		code, out := runOnce(t, rootfs, "/bin/sh", "-c", "echo pid=$$ host=$(busybox hostname); exit 7")
		if code != 7 {
			t.Fatalf("exit code = %d, want 7 (output %q)", code, out)
		}
		// PID 1 in a new PID namespace, hostname from the spec (new UTS ns).
		if want := "pid=1 host=berth-init-test\n"; out != want {
			t.Fatalf("output = %q, want %q", out, want)
		}
	})
	// Destroy plus removeCgroupParentIfEmpty leave no cgroup directory behind.
	var leftover []string
	for _, pattern := range []string{"/sys/fs/cgroup/berth-test-%d", "/sys/fs/cgroup/*/berth-test-%d"} {
		m, err := filepath.Glob(fmt.Sprintf(pattern, os.Getpid()))
		if err != nil {
			t.Fatal(err)
		}
		leftover = append(leftover, m...)
	}
	if len(leftover) > 0 {
		t.Fatalf("cgroup directories left after destroy: %v", leftover)
	}
}
