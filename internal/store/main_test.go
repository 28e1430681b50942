package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tests re-exec the test binary as a child process to contend for locks and
// to be killed mid-write. The child's role is chosen by this variable; its
// parameters come in the variables below.
const (
	helperEnv = "GO_WANT_HELPER_PROCESS"
	rootEnv   = "BERTH_STORE_TEST_ROOT"
	countEnv  = "BERTH_STORE_TEST_COUNT"
	plainEnv  = "BERTH_STORE_TEST_PLAIN"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		if err := runHelper(role); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(role string) error {
	s, err := Open(os.Getenv(rootEnv))
	if err != nil {
		return err
	}
	switch role {
	case "increment":
		n, err := strconv.Atoi(os.Getenv(countEnv))
		if err != nil {
			return err
		}
		return increment(context.Background(), s, n)
	case "hold":
		// Take the lock, say so, and hold it until stdin closes (or we are
		// killed).
		l, err := s.Lock(context.Background(), "held")
		if err != nil {
			return err
		}
		fmt.Println("locked")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return l.Unlock()
	case "crashwriter":
		if os.Getenv(plainEnv) == "1" {
			writeFile = os.WriteFile
		}
		start, err := strconv.Atoi(os.Getenv(countEnv))
		if err != nil {
			return err
		}
		return crashWriter(s, start)
	}
	return fmt.Errorf("unknown helper role %q", role)
}

// counter is the object the lock tests increment.
type counter struct {
	N int `json:"n"`
}

// increment does n locked increments of the object "counter". Inside each
// critical section it creates an O_EXCL marker file and removes it before
// leaving, so two holders at once (in any processes) make it fail.
func increment(ctx context.Context, s *Store, n int) error {
	marker := s.Path("inside")
	for range n {
		var c counter
		err := s.Update(ctx, "counter", &c, func(bool) error {
			f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("mutual exclusion broken: %w", err)
			}
			_ = f.Close()
			c.N++
			return os.Remove(marker)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// helperCmd returns a command that runs this test binary as the helper role
// on the store at root.
func helperCmd(t *testing.T, role, root string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+role, rootEnv+"="+root,
		// A -race binary sleeps a second before exiting, by default.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// readLine reads one line from r within d.
func readLine(r *bufio.Reader, d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(d):
		return "", errors.New("timed out waiting for the helper")
	}
}
