// Package testrig holds helpers shared by berth's tests: prerequisite checks
// that fail loudly in CI and skip with a reason elsewhere.
//
// A test that needs root, a binary or a kernel feature calls one of the
// Require functions first. When the environment variable CI is "true" (or "1")
// a missing prerequisite fails the test with a message that says what to
// install; on a developer machine it skips with the same message, so `go test`
// as an ordinary user still runs everything that can run.
package testrig

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// InCI reports whether the tests run under CI, where nothing may skip.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Missing reports a missing prerequisite: fatal in CI, a skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("prerequisite missing (CI=true, so this fails instead of skipping): %s", msg)
	}
	t.Skipf("prerequisite missing: %s", msg)
}

// RequireRoot needs the test to run as uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "test needs root; run `sudo make test`")
	}
}

// RequireBinary needs an executable on PATH and returns its path. pkg names
// the Debian package that provides it, for the message.
func RequireBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not found on PATH; install it with `apt-get install %s` (or `make deps`)", name, pkg)
	}
	return p
}

// RequireFile needs a file to exist. pkg names the Debian package that
// provides it, for the message.
func RequireFile(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%s: %v; install it with `apt-get install %s` (or `make deps`)", path, err, pkg)
	}
}
