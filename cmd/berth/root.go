//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/runtime"
)

// Exit codes for berth's own failures, as docker uses them.
const (
	exitOK    = 0
	exitBerth = 125 // berth itself failed: bad flag, bad input, internal error
)

// exitError carries an exit code other than exitBerth (a container's own
// exit code passed through, 126/127 for exec failures) up to main.
type exitError struct {
	code int
	err  error // nil when the code speaks for itself (nothing to print)
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// globalOptions are the flags every command shares.
type globalOptions struct {
	root      string
	runRoot   string
	logLevel  string
	logFormat string
	configDir string

	// usedImages maps image IDs to the task using them (see imageInUse).
	usedImages    map[string]string
	usedImagesErr string

	// keychains are consulted after the auth file (the ECR seam).
	keychains []authn.Keychain
	// ecr is Amazon ECR's keychain (in keychains) and transport (ecr.go).
	ecr *ecrAuth

	stdout io.Writer
	stderr io.Writer
	logger *slog.Logger
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "berth",
		Short: "Run ECS-style tasks and services on one Linux host, without a Docker daemon",
		Long: `berth pulls images from Amazon ECR or any OCI registry, runs them as tasks
through runc's libcontainer with cgroup limits, maps host ports in the
kernel with nf_tables, and keeps services running.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// No completion command until berth has flags worth completing.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.setup(); err != nil {
				return err
			}
			// Everything but version and help touches root-owned state,
			// mounts and cgroups: say so instead of a bare EACCES.
			if os.Geteuid() != 0 && cmd.Name() != "version" && cmd.Name() != "help" {
				return fmt.Errorf("berth %s needs root (it manages containers, mounts, cgroups and %s): run it with sudo", cmd.Name(), g.root)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Flag errors are berth's own errors: exit 125 with one line.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })

	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", envOr("BERTH_ROOT", "/var/lib/berth"), "state root: images, snapshots, task definitions, tasks (env BERTH_ROOT)")
	pf.StringVar(&g.runRoot, "run-root", envOr("BERTH_RUN_ROOT", "/run/berth"), "runtime state, gone at reboot: container state, API socket, netns mounts (env BERTH_RUN_ROOT)")
	pf.StringVar(&g.configDir, "config-dir", envOr("BERTH_CONFIG_DIR", "/etc/berth"), "configuration: auth.json, registries.json (env BERTH_CONFIG_DIR)")
	pf.StringVar(&g.logLevel, "log-level", envOr("BERTH_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env BERTH_LOG_LEVEL)")
	pf.StringVar(&g.logFormat, "log-format", envOr("BERTH_LOG_FORMAT", "text"), "log format: text or json (env BERTH_LOG_FORMAT)")
	g.ecr = newECRAuth(g, root)

	root.AddCommand(
		newVersionCommand(g),
		newPullCommand(g),
		newImagesCommand(g, "images"),
		newImageCommand(g),
		newTagCommand(g),
		newRmiCommand(g, "rmi"),
		newLoadCommand(g),
		newSaveCommand(g),
		newLoginCommand(g),
		newLogoutCommand(g),
		newRunCommand(g),
		newPsCommand(g),
		newLogsCommand(g),
		newStopCommand(g),
		newKillCommand(g),
		newRmCommand(g),
		newInspectCommand(g),
		newExecCommand(g),
		newStatsCommand(g),
		newSystemCommand(g),
		newNetworkCommand(g),
		newPortCommand(g),
		newMonitorCommand(g),
		newInitCommand(),
	)
	return root
}

// setup validates the global flags and builds the logger.
func (g *globalOptions) setup() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(g.logFormat) {
	case "text":
		g.logger = slog.New(slog.NewTextHandler(g.stderr, opts))
	case "json":
		g.logger = slog.New(slog.NewJSONHandler(g.stderr, opts))
	default:
		return fmt.Errorf("invalid --log-format %q: want text or json", g.logFormat)
	}
	for flag, dir := range map[string]string{"--root": g.root, "--run-root": g.runRoot, "--config-dir": g.configDir} {
		if dir == "" || !strings.HasPrefix(dir, "/") {
			return fmt.Errorf("invalid %s %q: must be an absolute path", flag, dir)
		}
	}
	return nil
}

// newInitCommand documents the hidden libcontainer entry point. The real work
// happens in package runtime's init function, before main; reaching this
// command means berth was started as "init" by hand, outside libcontainer.
func newInitCommand() *cobra.Command {
	return &cobra.Command{
		Use:    runtime.InitArg,
		Short:  "container init (internal; started by libcontainer)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("berth init is started by libcontainer inside a new container, not by hand")
		},
	}
}

// execute runs the CLI and returns the process exit code. Errors are printed
// as one line on stderr.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return executeCommand(ctx, newRootCommand(stdout, stderr), args, stderr)
}

// executeCommand runs a root command and turns its error into the exit
// code and one line on stderr.
func executeCommand(ctx context.Context, cmd *cobra.Command, args []string, stderr io.Writer) int {
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "berth: %s\n", oneLine(ee.err.Error()))
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "berth: %s\n", oneLine(err.Error()))
	return exitBerth
}

// oneLine folds a multi-line error message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")), " ")
}
