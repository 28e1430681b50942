//go:build linux

// Command berth-shim is berth's per-task helper: the monitor that is the
// parent of a task's containers (`berth-shim --root R --run-root RR monitor
// ID`, started by berth itself), the libcontainer init it re-executes for
// each container, and the --init PID 1 inside containers. Operators never
// run it; it is installed next to berth, which falls back to playing these
// parts itself when it is missing. It is a separate binary only to be
// small: no CLI, registry or AWS code, so it starts faster and a monitor
// that lives as long as its task holds less memory.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/berth-dev/berth/internal/netrelease"
	"github.com/berth-dev/berth/runtime"
)

// The container-init and --init roles never reach main: package runtime's
// init function takes them over.

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var root, runRoot string
	for len(args) >= 2 && strings.HasPrefix(args[0], "--") {
		switch args[0] {
		case "--root":
			root = args[1]
		case "--run-root":
			runRoot = args[1]
		default:
			return usage(fmt.Sprintf("unknown flag %s", args[0]))
		}
		args = args[2:]
	}
	if len(args) != 2 || args[0] != runtime.MonitorArg {
		return usage("want --root DIR --run-root DIR " + runtime.MonitorArg + " TASK-ID")
	}
	if !strings.HasPrefix(root, "/") || !strings.HasPrefix(runRoot, "/") {
		return usage("--root and --run-root must be absolute paths")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// A bridged task's network is released in-process when it stops.
	rt, err := runtime.New(runtime.Config{Root: root, RunRoot: runRoot, Logger: log, StopHook: netrelease.Run})
	if err == nil {
		err = rt.RunMonitor(args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim: %v\n", err)
		return 125
	}
	return 0
}

func usage(msg string) int {
	fmt.Fprintf(os.Stderr, "berth-shim: %s (internal helper started by berth; not for direct use)\n", msg)
	return 125
}
