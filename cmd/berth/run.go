//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/image"
	"github.com/berth-dev/berth/internal/netrelease"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

func (g *globalOptions) runtime() (*runtime.Runtime, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return runtime.New(runtime.Config{Root: g.root, RunRoot: g.runRoot, Logger: g.logger, Exe: runtime.HelperExe(exe), StopHook: netrelease.Run})
}

// runFlags are `berth run`'s flags as typed on the command line.
type runFlags struct {
	rm, detach, readOnly, init, interactive, tty, privileged bool
	name, user, workdir, hostname, entrypoint, stopSignal    string
	memory, memoryReservation, cpus, platform                string
	cpuShares                                                uint64
	pidsLimit                                                int64
	stopTimeout                                              int
	env, envFiles, ulimits, volumes, tmpfs, capAdd, capDrop  []string
	securityOpts, labels, publish, logOpts                   []string
	dns, dnsSearch, dnsOptions, addHosts                     []string
	network                                                  string
	entrypointSet, publishAll                                bool
}

func newRunCommand(g *globalOptions) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in a new one-container task",
		Args:  minArgs(1, "run needs an image"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.entrypointSet = cmd.Flags().Changed("entrypoint")
			return g.run(cmd, f, args[0], args[1:])
		},
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.BoolVar(&f.rm, "rm", false, "remove the task when it exits")
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the task ID")
	fl.StringVar(&f.name, "name", "", "name the task")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable (KEY=VALUE, or KEY to pass the caller's)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 512m)")
	fl.StringVar(&f.memoryReservation, "memory-reservation", "", "memory soft limit")
	fl.StringVar(&f.cpus, "cpus", "", "CPU quota in CPUs (e.g. 0.5)")
	fl.Uint64Var(&f.cpuShares, "cpu-shares", 0, "relative CPU weight")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "most processes the container may have")
	fl.StringArrayVar(&f.ulimits, "ulimit", nil, "resource limit (e.g. nofile=1024:2048)")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount SRC:DST[:ro] or named volume NAME:DST[:ro]")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs at DST[:OPTIONS]")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.StringVarP(&f.user, "user", "u", "", "run as USER[:GROUP] (names from the image's /etc/passwd)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory in the container")
	fl.StringVar(&f.hostname, "hostname", "", "container host name")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's entrypoint")
	fl.BoolVar(&f.init, "init", false, "run an init as PID 1 that reaps zombies and forwards signals")
	fl.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops the container (default: the image's, else SIGTERM)")
	fl.IntVar(&f.stopTimeout, "stop-timeout", 10, "seconds to wait after the stop signal before SIGKILL")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a capability")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a capability")
	fl.BoolVar(&f.privileged, "privileged", false, "give the container every capability and device, no seccomp")
	fl.StringArrayVar(&f.securityOpts, "security-opt", nil, "no-new-privileges, seccomp=unconfined or seccomp=FILE")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "set a label KEY=VALUE")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "pass stdin to the container")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal")
	fl.StringVar(&f.platform, "platform", "", "platform to pull if the image is absent")
	fl.StringArrayVar(&f.logOpts, "log-opt", nil, "log rotation: max-size=SIZE (default 10m), max-file=N (default 3)")
	fl.StringVar(&f.network, "network", netBridge, "bridge (berth0, with -p), host (the host's network), none (loopback only) or container:NAME (join that task's network)")
	fl.StringVar(&f.network, "net", netBridge, "same as --network")
	_ = fl.MarkHidden("net")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish ports: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]; ports may be ranges (8000-8010); no HOST_PORT takes a free one")
	fl.BoolVarP(&f.publishAll, "publish-all", "P", false, "publish every port the image exposes on a free host port")
	fl.StringArrayVar(&f.dns, "dns", nil, "nameserver for the container's /etc/resolv.conf (replaces the host's)")
	fl.StringArrayVar(&f.dnsSearch, "dns-search", nil, "search domain for /etc/resolv.conf (\".\" for none)")
	fl.StringArrayVar(&f.dnsOptions, "dns-option", nil, "option line for /etc/resolv.conf (e.g. ndots:2)")
	fl.StringArrayVar(&f.addHosts, "add-host", nil, "add HOST:IP to /etc/hosts (IP may be host-gateway)")
	return cmd
}

// options turns the flags into the spec generator's options.
func (f *runFlags) options(g *globalOptions, id string) (spec.Options, error) {
	o := spec.Options{ID: id, Name: f.name, Hostname: f.hostname, Env: f.env, EnvFiles: f.envFiles,
		User: f.user, WorkDir: f.workdir, CPUShares: f.cpuShares, PidsLimit: f.pidsLimit,
		Tmpfs: f.tmpfs, ReadOnly: f.readOnly, Privileged: f.privileged, Init: f.init,
		TTY: f.tty, Stdin: f.interactive, CapAdd: f.capAdd, CapDrop: f.capDrop, StopSignal: f.stopSignal}
	if f.entrypointSet {
		e := f.entrypoint
		o.Entrypoint = &e
	}
	var err error
	if f.memory != "" {
		if o.Memory, err = spec.ParseMemory(f.memory); err != nil {
			return o, fmt.Errorf("--memory: %w", err)
		}
	}
	if f.memoryReservation != "" {
		if o.MemoryReservation, err = spec.ParseBytes(f.memoryReservation); err != nil {
			return o, fmt.Errorf("--memory-reservation: %w", err)
		}
	}
	if f.cpus != "" {
		if o.CPUs, err = spec.ParseCPUs(f.cpus); err != nil {
			return o, fmt.Errorf("--cpus: %w", err)
		}
	}
	for _, u := range f.ulimits {
		ul, err := spec.ParseUlimit(u)
		if err != nil {
			return o, fmt.Errorf("--ulimit: %w", err)
		}
		o.Ulimits = append(o.Ulimits, ul)
	}
	for _, v := range f.volumes {
		vs, err := spec.ParseVolume(v)
		if err != nil {
			return o, err
		}
		src := vs.Source
		if filepath.IsAbs(src) {
			if _, err := os.Stat(src); err != nil {
				return o, fmt.Errorf("invalid volume %q: bind source %s does not exist", v, src)
			}
		} else {
			src = filepath.Join(g.root, "volumes", src, "_data")
			if err := os.MkdirAll(src, 0o755); err != nil {
				return o, err
			}
		}
		o.Mounts = append(o.Mounts, vs.Mount(src))
	}
	for _, s := range f.securityOpts {
		switch {
		case s == "no-new-privileges" || s == "no-new-privileges=true" || s == "no-new-privileges:true":
			o.NoNewPrivileges = true
		case strings.HasPrefix(s, "seccomp=") || strings.HasPrefix(s, "seccomp:"):
			o.Seccomp = s[len("seccomp="):]
		default:
			return o, fmt.Errorf("invalid --security-opt %q: want no-new-privileges, seccomp=unconfined or seccomp=FILE", s)
		}
	}
	if len(f.labels) > 0 {
		o.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			if k == "" {
				return o, fmt.Errorf("invalid --label %q: want KEY=VALUE", l)
			}
			o.Labels[k] = v
		}
	}
	if f.init {
		exe, err := os.Executable()
		if err != nil {
			return o, err
		}
		o.InitPath = runtime.HelperExe(exe)
	}
	if !runtime.Host().Seccomp {
		o.NoSeccomp = true
	}
	return o, nil
}

// ensureImage resolves ref in the store, pulling it when absent, as docker
// run does.
func (g *globalOptions) ensureImage(cmd *cobra.Command, st *image.Store, ref, platform string) (*image.Record, error) {
	rec, err := st.Resolve(ref)
	if err == nil || !errors.Is(err, image.ErrNotFound) {
		return rec, err
	}
	fmt.Fprintf(g.stderr, "Unable to find image '%s' locally\n", ref)
	o, err := g.pullOptions("")
	if err != nil {
		return nil, err
	}
	if platform != "" {
		if o.Platform, err = image.ParsePlatform(platform); err != nil {
			return nil, err
		}
	}
	pp := newPullProgress(g.stderr, false)
	o.Progress = pp.update
	rec, err = st.Pull(cmd.Context(), ref, o)
	pp.finish(err == nil)
	return rec, err
}

func (g *globalOptions) run(cmd *cobra.Command, f *runFlags, ref string, args []string) error {
	if f.stopTimeout < 0 {
		return fmt.Errorf("invalid --stop-timeout %d: must not be negative", f.stopTimeout)
	}
	if f.detach && f.interactive {
		return errors.New("-i needs an attached run: drop -d")
	}
	st, err := g.imageStore()
	if err != nil {
		return err
	}
	rt, err := g.runtime()
	if err != nil {
		return err
	}
	id := runtime.NewID()
	o, err := f.options(g, id)
	if err != nil {
		return err
	}
	o.Cmd = args
	rec, err := g.ensureImage(cmd, st, ref, f.platform)
	if err != nil {
		return err
	}
	layers, err := st.LayerDirs(rec)
	if err != nil {
		return err
	}
	cf, err := st.Config(rec)
	if err != nil {
		return err
	}
	ic := spec.ImageConfig{Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env, User: cf.Config.User,
		WorkingDir: cf.Config.WorkingDir, StopSignal: cf.Config.StopSignal, Labels: cf.Config.Labels}
	for p := range cf.Config.ExposedPorts {
		ic.ExposedPorts = append(ic.ExposedPorts, p)
	}
	// For the least-recently-used image GC; a minute's precision is
	// plenty, and skipping the write spares back-to-back starts its fsyncs.
	if time.Since(rec.LastUsed) > time.Minute {
		_ = st.Touch(cmd.Context(), rec.Name)
	}
	logMaxSize, logMaxFiles, err := parseLogOpts(f.logOpts)
	if err != nil {
		return err
	}
	tn, err := g.setupNetwork(rt, id, f, ic.ExposedPorts)
	if err != nil {
		return err
	}
	o.NetNSPath, o.HostNetwork = tn.info.NetNSPath, tn.host
	if tn.host && o.Hostname == "" {
		if o.Hostname, err = os.Hostname(); err != nil {
			return err
		}
	}
	hostname := o.Hostname
	if hostname == "" {
		hostname = id[:12]
	}
	onStop := tn.onStop
	t, err := rt.Create(cmd.Context(), runtime.TaskConfig{
		ID: id, Name: f.name, Labels: o.Labels, AutoRemove: f.rm, OnStop: onStop, Ports: portStrings(tn.ports), Network: tn.info,
		Containers: []runtime.ContainerConfig{{
			Name: "main", Image: image.FamiliarName(rec.Name), ImageID: rec.ID.String(), Layers: layers, ReadOnly: f.readOnly,
			Stdin: f.interactive, TTY: f.tty, StopTimeout: time.Duration(f.stopTimeout) * time.Second,
			LogMaxSize: logMaxSize, LogMaxFiles: logMaxFiles,
			Spec: func(rootfs string) (*specs.Spec, error) {
				mounts, warnings, err := tn.dnsMounts(rt, id, hostname, f.name)
				if err != nil {
					return nil, err
				}
				for _, w := range warnings {
					g.logger.Warn(w)
				}
				o.ExtraMounts = append(o.ExtraMounts, mounts...)
				return spec.Generate(ic, o, rootfs)
			},
		}},
	})
	if err != nil {
		for _, argv := range onStop { // Create changed nothing; undo the network
			if handled, _ := netrelease.Run(argv); !handled {
				exec.Command(argv[0], argv[1:]...).Run()
			}
		}
		return withSpecCode(err)
	}
	if f.detach {
		if err := rt.Start(cmd.Context(), t.ID); err != nil {
			return startFailure(rt, t, err)
		}
		fmt.Fprintln(g.stdout, t.ID)
		return nil
	}
	// Attached: stream output, forward signals, exit with the container's code.
	att, err := rt.StartAttached(cmd.Context(), t.ID)
	if err != nil {
		return startFailure(rt, t, err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			rt.Kill(t.ID, s.(syscall.Signal))
		}
	}()
	if f.interactive || f.tty {
		restore, err := g.attachInput(cmd, rt, t.ID, f.interactive, f.tty)
		switch {
		case errors.Is(err, runtime.ErrEnded):
			// Done before we could attach: its output and exit code
			// still come through the stream below.
		case err != nil:
			rt.Kill(t.ID, syscall.SIGKILL)
			return err
		default:
			defer restore()
		}
	}
	final, err := att.Stream(g.stdout, g.stderr)
	if err != nil {
		return err
	}
	if f.rm {
		// The monitor removes an AutoRemove task itself; wait for it, and
		// remove here only if it did not get there.
		if !att.MonitorDone(10 * time.Second) {
			if err := rt.Remove(context.WithoutCancel(cmd.Context()), t.ID, true); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				g.logger.Warn("remove task", "task", t.Name, "err", err)
			}
		}
	}
	if code := final.ExitCode(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// withSpecCode maps spec errors to docker's exit codes.
func withSpecCode(err error) error {
	switch {
	case errors.Is(err, spec.ErrCommandNotFound):
		return &exitError{code: 127, err: err}
	case errors.Is(err, spec.ErrNotExecutable):
		return &exitError{code: 126, err: err}
	}
	return err
}

// startFailure reports a task that failed to start, with docker's code, and
// removes what it left (a failed start changes nothing).
func startFailure(rt *runtime.Runtime, t *runtime.Task, err error) error {
	rt.Remove(context.Background(), t.ID, true)
	var se *runtime.StartError
	if errors.As(err, &se) {
		return &exitError{code: se.Code(), err: err}
	}
	return err
}

func newPsCommand(g *globalOptions) *cobra.Command {
	var all, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "ps [-a] [-q] [--format json]",
		Short: "List tasks (running ones; -a for all)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			tasks, err := rt.List()
			if err != nil {
				return err
			}
			var shown []*runtime.Task
			for _, t := range tasks {
				if all || t.Status == runtime.TaskRunning || t.Status == runtime.TaskStopping {
					shown = append(shown, t)
				}
			}
			switch {
			case quiet:
				for _, t := range shown {
					fmt.Fprintln(g.stdout, t.ID[:12])
				}
				return nil
			case format == "json":
				if shown == nil {
					shown = []*runtime.Task{}
				}
				return writeJSON(g.stdout, shown)
			case format != "" && format != "table":
				return fmt.Errorf("invalid --format %q: want table or json", format)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "TASK ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
			for _, t := range shown {
				c := t.Containers[0]
				fmt.Fprintf(tw, "%s\t%s\t%q\t%s\t%s\t%s\t%s\n", t.ID[:12], c.Image, rt.Command(t.ID, c.Name), ago(t.Created), c.ExitStatus(), strings.Join(t.Ports, ", "), t.Name)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show stopped tasks too")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only task IDs")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newLogsCommand(g *globalOptions) *cobra.Command {
	var o runtime.LogOptions
	var since string
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] [--since T] [--timestamps] TASK",
		Short: "Print a task's output",
		Args:  exactArgs(1, "logs needs one task"),
		RunE: func(_ *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			o.Tail = -1
			if tail != "" && tail != "all" {
				if _, err := fmt.Sscanf(tail, "%d", &o.Tail); err != nil || o.Tail < 0 {
					return fmt.Errorf("invalid --tail %q: want a number or all", tail)
				}
			}
			if since != "" {
				if d, err := time.ParseDuration(since); err == nil {
					o.Since = time.Now().Add(-d)
				} else if o.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
					return fmt.Errorf("invalid --since %q: want a duration (10m) or an RFC 3339 time", since)
				}
			}
			return rt.Logs(args[0], "", o, g.stdout, g.stderr)
		},
	}
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "follow new output")
	cmd.Flags().BoolVarP(&o.Timestamps, "timestamps", "t", false, "show timestamps")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "lines from the end")
	cmd.Flags().StringVar(&since, "since", "", "only lines since a duration ago (10m) or an RFC 3339 time")
	return cmd
}

func newStopCommand(g *globalOptions) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [-t SEC] TASK...",
		Short: "Stop tasks: stop signal, then SIGKILL after the timeout",
		Args:  minArgs(1, "stop needs at least one task"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			d := time.Duration(timeout) * time.Second
			if !cmd.Flags().Changed("time") {
				d = -1 // the task's --stop-timeout
			}
			return g.eachTask(args, func(a string) error { return rt.Stop(cmd.Context(), a, d) })
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before SIGKILL (default: the task's --stop-timeout, else 10)")
	return cmd
}

// eachTask applies fn to every named task, printing each name that
// succeeded as docker does, and returns every failure.
func (g *globalOptions) eachTask(names []string, fn func(string) error) error {
	var errs []error
	for _, a := range names {
		if err := fn(a); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(g.stdout, a)
	}
	return errors.Join(errs...)
}

func newKillCommand(g *globalOptions) *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [-s SIGNAL] TASK...",
		Short: "Send a signal to tasks (default SIGKILL)",
		Args:  minArgs(1, "kill needs at least one task"),
		RunE: func(_ *cobra.Command, args []string) error {
			s, err := spec.ParseSignal(sig)
			if err != nil {
				return err
			}
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			return g.eachTask(args, func(a string) error { return rt.Kill(a, s) })
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send")
	return cmd
}

func newRmCommand(g *globalOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] TASK...",
		Short: "Remove tasks (-f: kill running ones first)",
		Args:  minArgs(1, "rm needs at least one task"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			return g.eachTask(args, func(a string) error { return rt.Remove(cmd.Context(), a, force) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running task first")
	return cmd
}

func newInspectCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect TASK...",
		Short: "Show tasks' state and configuration as JSON",
		Args:  minArgs(1, "inspect needs at least one task"),
		RunE: func(_ *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			var out []*runtime.TaskInspect
			for _, a := range args {
				ti, err := rt.Inspect(a)
				if err != nil {
					return err
				}
				out = append(out, ti)
			}
			return writeJSON(g.stdout, out)
		},
	}
}

func newMonitorCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    runtime.MonitorArg + " TASK-ID",
		Short:  "per-task monitor (internal; started by berth run)",
		Hidden: true,
		Args:   exactArgs(1, "monitor needs a task ID"),
		RunE: func(_ *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			return rt.RunMonitor(args[0])
		},
	}
}

// attachInput connects the terminal or stdin to an attached task: raw mode
// and window size for -t, stdin copying for -i. The returned func restores
// the terminal.
func (g *globalOptions) attachInput(cmd *cobra.Command, rt *runtime.Runtime, id string, interactive, tty bool) (func(), error) {
	in, err := rt.Input(id)
	if err != nil {
		return nil, err
	}
	restore := func() { in.Close() }
	stdin := cmd.InOrStdin()
	if f, ok := stdin.(*os.File); ok && tty && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		state, err := term.MakeRaw(fd)
		if err != nil {
			in.Close()
			return nil, err
		}
		resize := func() {
			if w, h, err := term.GetSize(fd); err == nil {
				in.Resize(uint16(w), uint16(h))
			}
		}
		resize()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		go func() {
			for range winch {
				resize()
			}
		}()
		restore = func() {
			signal.Stop(winch)
			term.Restore(fd, state)
			in.Close()
		}
	}
	if interactive {
		go in.CopyStdin(stdin)
	}
	return restore, nil
}

func newStatsCommand(g *globalOptions) *cobra.Command {
	var noStream bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [--no-stream] [TASK...]",
		Short: "Show running tasks' CPU, memory, pids, block and network I/O",
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			sample := func() ([]runtime.Stats, error) {
				refs := args
				if len(refs) == 0 {
					tasks, err := rt.List()
					if err != nil {
						return nil, err
					}
					for _, t := range tasks {
						if t.Status == runtime.TaskRunning {
							refs = append(refs, t.ID)
						}
					}
				}
				var out []runtime.Stats
				for _, ref := range refs {
					s, err := rt.Stats(ref)
					if err != nil {
						return nil, err
					}
					out = append(out, s...)
				}
				return out, nil
			}
			prev := map[string]runtime.Stats{}
			first, err := sample()
			if err != nil {
				return err
			}
			for _, s := range first {
				prev[s.Task+s.Container] = s
			}
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				cur, err := sample()
				if err != nil {
					return err
				}
				if format == "json" {
					if err := writeJSON(g.stdout, cur); err != nil {
						return err
					}
				} else {
					if !noStream {
						fmt.Fprint(g.stdout, "\033[2J\033[H")
					}
					tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
					fmt.Fprintln(tw, "TASK ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS")
					for _, s := range cur {
						cpu := 0.0
						if p, ok := prev[s.Task+s.Container]; ok && s.Time.After(p.Time) && s.CPUNanos >= p.CPUNanos {
							cpu = 100 * float64(s.CPUNanos-p.CPUNanos) / float64(s.Time.Sub(p.Time).Nanoseconds())
						}
						mem := 0.0
						if s.MemoryLimit > 0 {
							mem = 100 * float64(s.MemoryUsage) / float64(s.MemoryLimit)
						}
						fmt.Fprintf(tw, "%s\t%s\t%.2f%%\t%s / %s\t%.2f%%\t%s / %s\t%s / %s\t%d\n", s.Task[:12], s.Name, cpu,
							humanSize(int64(s.MemoryUsage)), humanSize(int64(s.MemoryLimit)), mem,
							humanSize(int64(s.NetRx)), humanSize(int64(s.NetTx)), humanSize(int64(s.BlockRead)), humanSize(int64(s.BlockWrite)), s.Pids)
					}
					tw.Flush()
				}
				if noStream {
					return nil
				}
				prev = map[string]runtime.Stats{}
				for _, s := range cur {
					prev[s.Task+s.Container] = s
				}
			}
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newSystemCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "system",
		Short: "Host-wide maintenance (cleanup)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cleanup := &cobra.Command{
		Use:   "cleanup",
		Short: "Release what crashed tasks left: stale container state, mounts, cgroups, temp files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			rep, err := rt.Cleanup(cmd.Context())
			if rep != nil {
				fmt.Fprintf(g.stdout, "tasks recorded as stopped: %d\ncontainers destroyed: %d\nmounts released: %d\nhalf-created tasks removed: %d\n",
					len(rep.StoppedTasks), len(rep.Containers), len(rep.Mounts), len(rep.TaskDirs))
			}
			nrep, nerr := g.cleanupNetworks(rt)
			if nrep != nil {
				fmt.Fprintf(g.stdout, "task networks released: %d\nport rules rebuilt: %d\norphan port rules, veths, netns files removed: %d, %d, %d\n",
					len(nrep.TornDown), len(nrep.Rebuilt), nrep.OrphanRules, len(nrep.OrphanVeths), len(nrep.OrphanNetNS))
			}
			return errors.Join(err, nerr)
		},
	}
	cmd.AddCommand(cleanup)
	return cmd
}

// parseLogOpts reads --log-opt max-size=SIZE and max-file=N (docker's
// json-file options); zero values mean the runtime's defaults.
func parseLogOpts(opts []string) (int64, int, error) {
	var size int64
	var files int
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		switch {
		case !ok:
			return 0, 0, fmt.Errorf("invalid --log-opt %q: want KEY=VALUE", o)
		case k == "max-size":
			n, err := spec.ParseBytes(v)
			if err != nil || n < 1024 {
				return 0, 0, fmt.Errorf("invalid --log-opt max-size=%s: want a size of at least 1k, such as 10m", v)
			}
			size = n
		case k == "max-file":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				return 0, 0, fmt.Errorf("invalid --log-opt max-file=%s: want a number from 1 to 100", v)
			}
			files = n
		default:
			return 0, 0, fmt.Errorf("unknown --log-opt %q: berth's json-file logs take max-size and max-file", k)
		}
	}
	return size, files, nil
}
