// Package netrelease is the command a bridged task records to release its
// network when it stops (runtime's OnStop): the argv berth writes, and its
// parsing, shared by berth's hidden `network release` and by the monitor,
// which runs it in-process rather than starting berth again.
package netrelease

import (
	"path/filepath"

	"github.com/berth-dev/berth/network"
)

// Argv is the OnStop command that releases task id's network on bridge,
// whose rules live in nf_tables table: `EXE --root ROOT --run-root RUNROOT
// network release --bridge BRIDGE --table TABLE ID`.
func Argv(exe, root, runRoot, bridge, table, id string) []string {
	return []string{exe, "--root", root, "--run-root", runRoot, "network", "release", "--bridge", bridge, "--table", table, id}
}

// Parse recognises an argv made by Argv (any exe) and returns the network
// configuration a release needs and the task ID; ok is false for anything
// else, which is then run as a command.
func Parse(argv []string) (cfg network.Config, id string, ok bool) {
	if len(argv) != 12 || argv[1] != "--root" || argv[3] != "--run-root" || argv[5] != "network" ||
		argv[6] != "release" || argv[7] != "--bridge" || argv[9] != "--table" {
		return cfg, "", false
	}
	root, runRoot := argv[2], argv[4]
	if !filepath.IsAbs(root) || !filepath.IsAbs(runRoot) || argv[8] == "" || argv[10] == "" || argv[11] == "" {
		return cfg, "", false
	}
	return Config(root, runRoot, argv[8], argv[10]), argv[11], true
}

// Config is what releasing a task's network needs of its Network: where
// the bridge's leases are and which nf_tables table holds its rules (the
// subnet and port range do not matter to a release).
func Config(root, runRoot, bridge, table string) network.Config {
	return network.Config{
		BridgeName: bridge,
		RunRoot:    runRoot,
		Table:      table,
		StateDir:   filepath.Join(root, "network", bridge),
	}
}

// Run releases the network of the task named by an argv made by Argv, in
// this process. handled is false when argv is not such a command.
func Run(argv []string) (handled bool, err error) {
	cfg, id, ok := Parse(argv)
	if !ok {
		return false, nil
	}
	n, err := network.New(cfg)
	if err != nil {
		return true, err
	}
	return true, n.TeardownTask(id)
}
