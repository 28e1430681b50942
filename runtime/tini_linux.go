//go:build linux

package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitName is the name berth answers to as a container's PID 1 (--init):
// the spec bind-mounts the berth binary read-only at /sbin/berth-init.
const InitName = "berth-init"

// isBerthInit reports whether this process runs as the --init PID 1.
func isBerthInit() bool { return filepath.Base(os.Args[0]) == InitName }

// runBerthInit runs args as the only child of a minimal init: it forwards
// every signal it gets to the child, reaps every zombie reparented to it,
// and exits with the child's status (128+N when a signal N killed it).
func runBerthInit(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "berth-init: no command to run")
		return 125
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	child, err := os.StartProcess(path, args, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}, Env: os.Environ()})
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: %v\n", err)
		return 126
	}
	for sig := range sigs {
		switch sig {
		case unix.SIGCHLD:
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if err != nil || pid <= 0 {
					break
				}
				if pid == child.Pid {
					if ws.Signaled() {
						return 128 + int(ws.Signal())
					}
					return ws.ExitStatus()
				}
			}
		case unix.SIGURG: // the Go runtime's own preemption signal
		default:
			child.Signal(sig.(syscall.Signal))
		}
	}
	return 0
}
