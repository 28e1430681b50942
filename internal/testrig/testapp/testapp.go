// Package testapp builds the static test application under
// testdata/apps/testapp (see its main.go for the subcommands) for tests and
// the test image builder.
//
// Each architecture is built once per test process, with CGO_ENABLED=0,
// GOOS=linux, -trimpath and -ldflags="-s -w", into one temporary directory
// shared by all tests of the process: the binary outlives the test that first
// asked for it, so no t.Cleanup removes it. A package with a TestMain may call
// Cleanup after m.Run to remove the directory:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testapp.Cleanup()
//		os.Exit(code)
//	}
//
// Without that, the directory (a few MB per architecture, named
// berth-testapp-*) stays in os.TempDir.
package testapp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/testrig"
)

const (
	modulePath = "github.com/berth-dev/berth"
	appDir     = "testdata/apps/testapp"
)

// build is one architecture's build, done once.
type build struct {
	once sync.Once
	path string
	err  error
}

var (
	mu     sync.Mutex
	dir    string            // per-process output directory, created lazily
	builds map[string]*build // by normalized GOARCH ("arm" means GOARM=7)
)

// Build returns the path of the test app built for the host's GOARCH.
func Build(t testing.TB) string {
	t.Helper()
	return BuildFor(t, runtime.GOARCH)
}

// BuildFor returns the path of the test app built for goarch: a GOARCH such
// as "amd64" or "arm64", or "arm" / "arm/v7" (both build GOARM=7). A
// "linux/" prefix and an "arm64/v8" variant are accepted too.
func BuildFor(t testing.TB, goarch string) string {
	t.Helper()
	arch, err := normalizeArch(goarch)
	if err != nil {
		t.Fatalf("testapp: %v", err)
	}
	gobin := testrig.RequireBinary(t, "go", "golang-go")

	mu.Lock()
	if builds == nil {
		builds = make(map[string]*build)
	}
	b := builds[arch]
	if b == nil {
		b = &build{}
		builds[arch] = b
	}
	mu.Unlock()

	b.once.Do(func() { b.path, b.err = compile(gobin, arch) })
	if b.err != nil {
		t.Fatalf("testapp: building for %s: %v", goarch, b.err)
	}
	return b.path
}

// Cleanup removes the directory holding the built binaries. Paths returned
// before are invalid afterwards; a later Build builds again.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	dir, builds = "", nil
}

func normalizeArch(goarch string) (string, error) {
	a := strings.TrimPrefix(goarch, "linux/")
	switch a {
	case "arm", "arm/v7", "armv7":
		return "arm", nil
	case "arm64/v8":
		return "arm64", nil
	case "":
		return "", errors.New("empty GOARCH")
	}
	if strings.Contains(a, "/") {
		return "", fmt.Errorf("unsupported architecture %q (want a GOARCH, or arm/v7)", goarch)
	}
	return a, nil
}

func outputDir() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "berth-testapp-")
		if err != nil {
			return "", err
		}
		dir = d
	}
	return dir, nil
}

func compile(gobin, arch string) (string, error) {
	root, err := moduleRoot(gobin)
	if err != nil {
		return "", err
	}
	out, err := outputDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(out, "testapp-linux-"+arch)
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./"+appDir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if arch == "arm" {
		cmd.Env = append(cmd.Env, "GOARM=7")
	}
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s (in %s): %w\n%s", strings.Join(cmd.Args, " "), root, err, output)
	}
	return bin, nil
}

// moduleRoot finds the berth module's root: from this source file's path
// when it is known (not under -trimpath), else from `go env GOMOD` in the
// current directory (a test's directory is its package's).
func moduleRoot(gobin string) (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		if isBerthModule(filepath.Join(root, "go.mod")) {
			return filepath.Clean(root), nil
		}
	}
	out, err := exec.Command(gobin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if !isBerthModule(gomod) {
		return "", fmt.Errorf("cannot find the %s module root (go env GOMOD says %q)", modulePath, gomod)
	}
	return filepath.Dir(gomod), nil
}

// isBerthModule reports whether the go.mod at path declares berth's module.
func isBerthModule(path string) bool {
	if path == "" || path == os.DevNull {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == modulePath
		}
	}
	return false
}
