//go:build linux

package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/store"
)

// Config locates a Runtime's state.
type Config struct {
	// Root is the state root (tasks/ lives under it); RunRoot the runtime
	// state that a reboot clears (libcontainer's state, sockets).
	Root, RunRoot string
	// Exe is the binary the monitor runs as (berth-shim or berth, see
	// HelperExe); "" means this process's.
	Exe    string
	Logger *slog.Logger
	// StopHook, when set, is offered each OnStop command first; when it
	// reports handled, the command is not started (the monitor releases a
	// task's network in-process this way instead of starting berth).
	StopHook func(argv []string) (handled bool, err error)
}

// Runtime runs tasks through libcontainer, each under a monitor process.
type Runtime struct {
	cfg    Config
	st     *store.Store
	lcRoot string
	log    *slog.Logger

	// early holds the monitors Create started ahead of Start, by task ID.
	mu    sync.Mutex
	early map[string]*monitorProc
}

// cgroupParent holds every berth container's cgroup. It is absolute (from
// the hierarchy's root, as docker's "/docker"): a relative parent would be
// resolved against the cgroup of whichever process runs berth, so containers
// would land in the caller's session or service cgroup, and an rm from
// another cgroup would miss the parent.
const cgroupParent = "/berth"

// New opens the runtime under cfg's directories.
func New(cfg Config) (*Runtime, error) {
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	st, err := store.Open(cfg.Root)
	if err != nil {
		return nil, err
	}
	lcRoot := filepath.Join(cfg.RunRoot, "libcontainer")
	if err := os.MkdirAll(lcRoot, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Root, "tasks"), 0o700); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{cfg: cfg, st: st, lcRoot: lcRoot, log: log, early: map[string]*monitorProc{}}, nil
}

func taskKey(id string) string              { return "tasks/" + id + "/task.json" }
func (r *Runtime) taskDir(id string) string { return filepath.Join(r.cfg.Root, "tasks", id) }

// TaskDir is the task's directory under the state root: the layer above
// may keep per-task files there (its DNS files); they go with the task.
func (r *Runtime) TaskDir(id string) string { return r.taskDir(id) }
func (r *Runtime) ctrDir(id, ctr string) string {
	return filepath.Join(r.taskDir(id), ctr)
}
func (r *Runtime) runDir(id string) string { return filepath.Join(r.cfg.RunRoot, "tasks", id) }

// LogPath is a container's current json-file log.
func (r *Runtime) LogPath(id, ctr string) string {
	return filepath.Join(r.ctrDir(id, ctr), "container.log")
}

func lcID(id, ctr string) string { return id[:12] + "-" + ctr }

// ContainerConfig describes one container of a task to create.
type ContainerConfig struct {
	Name           string
	Image, ImageID string
	// Layers are the image's snapshot dirs, lowest first.
	Layers   []string
	ReadOnly bool
	Stdin    bool
	TTY      bool
	// Log rotation; 0 means the defaults (10 MiB x 3).
	LogMaxSize  int64
	LogMaxFiles int
	// StopTimeout: see Container.StopTimeout.
	StopTimeout time.Duration
	// Spec builds the OCI spec once the rootfs is mounted at rootfs (user
	// names resolve through its /etc/passwd).
	Spec func(rootfs string) (*specs.Spec, error)
}

// TaskConfig describes a task to create.
type TaskConfig struct {
	ID         string // "" = a fresh one
	Name       string // "" = derived from the ID
	Labels     map[string]string
	AutoRemove bool
	Containers []ContainerConfig
	// OnStop: see Task.OnStop.
	OnStop [][]string
	// Ports: see Task.Ports.
	Ports []string
	// Network: see Task.Network.
	Network *NetworkInfo
}

// Create prepares a task: rootfs mounts and OCI bundles for each container,
// and its record. Nothing runs until Start. On error nothing is left.
//
// Create also starts the task's monitor process ahead, so that its start
// overlaps Create's own work; it waits, having read nothing, until Start
// (of this Runtime) tells it to go, and exits when it learns it never will:
// when the task is removed, or this process exits.
func (r *Runtime) Create(ctx context.Context, tc TaskConfig) (_ *Task, err error) {
	if len(tc.Containers) == 0 {
		return nil, errors.New("a task needs at least one container")
	}
	id := tc.ID
	if id == "" {
		id = NewID()
	}
	name := tc.Name
	if name == "" {
		name = "berth-" + id[:12]
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	lock, err := r.st.Lock(ctx, "task-names")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	tasks, err := r.List()
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if t.Name == name {
			return nil, fmt.Errorf("%w: the name %q is used by task %s; remove it or pick another name", ErrExists, name, t.ID[:12])
		}
	}
	t := &Task{ID: id, Name: name, Labels: tc.Labels, Created: time.Now().UTC(), Status: TaskPending, AutoRemove: tc.AutoRemove, OnStop: tc.OnStop, Ports: tc.Ports, Network: tc.Network}
	defer func() {
		if err != nil {
			r.cleanup(t)
		}
	}()
	if err := os.MkdirAll(r.taskDir(id), 0o700); err != nil {
		return nil, err
	}
	// The monitor's start (a Go runtime and berth's package inits, some
	// milliseconds) overlaps the rest of Create: it waits for Start's word
	// before it reads anything, and exits if none comes.
	if m, lerr := r.launchMonitor(id); lerr != nil {
		r.log.Debug("monitor not started ahead", "task", id, "err", lerr)
	} else {
		defer func() {
			if err != nil { // Create's own error
				m.cancel()
				return
			}
			r.mu.Lock()
			r.early[id] = m
			r.mu.Unlock()
		}()
	}
	var wg sync.WaitGroup
	cfgErrs := make([]error, len(tc.Containers))
	defer wg.Wait() // on every return: the cleanup must not race a writer
	for i, cc := range tc.Containers {
		if err := ValidateName(cc.Name); err != nil {
			return nil, fmt.Errorf("container: %w", err)
		}
		if t.Container(cc.Name) != nil {
			return nil, fmt.Errorf("container name %q used twice in one task", cc.Name)
		}
		c := &Container{Name: cc.Name, Image: cc.Image, ImageID: cc.ImageID, Layers: cc.Layers, ReadOnly: cc.ReadOnly,
			Status: ContainerCreated, LogMaxSize: cc.LogMaxSize, LogMaxFiles: cc.LogMaxFiles, Stdin: cc.Stdin, TTY: cc.TTY, StopTimeout: cc.StopTimeout}
		if c.LogMaxSize <= 0 {
			c.LogMaxSize = DefaultLogMaxSize
		}
		if c.LogMaxFiles <= 0 {
			c.LogMaxFiles = DefaultLogMaxFiles
		}
		t.Containers = append(t.Containers, c)
		rootfs, err := r.mountRootfs(id, c)
		if err != nil {
			return nil, err
		}
		spec, err := cc.Spec(rootfs)
		if err != nil {
			return nil, err
		}
		spec.Root = &specs.Root{Path: rootfs, Readonly: cc.ReadOnly || (spec.Root != nil && spec.Root.Readonly)}
		b, err := json.MarshalIndent(spec, "", "\t")
		if err != nil {
			return nil, err
		}
		// Written while the rest of Create goes on: its fsyncs and those of
		// the task record overlap (a journaling filesystem commits them
		// together). Nothing reads it before Start.
		wg.Go(func() {
			cfgErrs[i] = store.WriteFileAtomic(filepath.Join(r.ctrDir(id, c.Name), "config.json"), b, 0o600)
		})
		// The log exists from the start, so an attached client can follow
		// it from its first byte.
		f, err := os.OpenFile(r.LogPath(id, c.Name), os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, err
		}
		f.Close()
	}
	perr := r.st.Put(taskKey(id), t)
	wg.Wait()
	if err := errors.Join(append([]error{perr}, cfgErrs...)...); err != nil {
		return nil, err
	}
	return t, nil
}

// mountRootfs mounts the container's overlay: the image layers below a
// per-container upper dir.
func (r *Runtime) mountRootfs(id string, c *Container) (string, error) {
	dir := r.ctrDir(id, c.Name)
	upper, work, rootfs := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
	for _, d := range []string{upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(upper, 0o755); err != nil {
		return "", err
	}
	if len(c.Layers) == 0 {
		return "", errors.New("image has no layers")
	}
	lower := make([]string, len(c.Layers))
	for i, l := range c.Layers {
		lower[len(c.Layers)-1-i] = l
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work + ",index=off"
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount rootfs of %s: %w", c.Name, err)
	}
	return rootfs, nil
}

// Get finds a task by ID, unique ID prefix or name, and reconciles what it
// says with what is running (a killed monitor records no exit).
func (r *Runtime) Get(ref string) (*Task, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty name", ErrNotFound)
	}
	var t Task
	if len(ref) == 64 && isHexPrefix(ref) {
		if err := r.st.Get(taskKey(ref), &t); err == nil {
			return r.reconcile(&t), nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	tasks, err := r.List()
	if err != nil {
		return nil, err
	}
	var found *Task
	for _, c := range tasks {
		if c.Name == ref {
			return c, nil
		}
		if isHexPrefix(ref) && strings.HasPrefix(c.ID, ref) {
			if found != nil {
				return nil, fmt.Errorf("%w: %s", ErrAmbiguous, ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return found, nil
}

// List returns every task, newest first.
func (r *Runtime) List() ([]*Task, error) {
	ids, err := r.st.List("tasks")
	if err != nil {
		return nil, err
	}
	var out []*Task
	for _, id := range ids {
		var t Task
		if err := r.st.Get(taskKey(id), &t); err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalidKey) {
				continue // being created or removed
			}
			return nil, err
		}
		out = append(out, r.reconcile(&t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// reconcile marks containers whose monitor died and whose process is gone
// as stopped (exit code unknown), without writing: readers stay cheap.
func (r *Runtime) reconcile(t *Task) *Task {
	if t.Status != TaskRunning && t.Status != TaskStopping {
		return t
	}
	if t.MonitorPID != 0 && monitorAlive(t.MonitorPID, t.ID) {
		return t
	}
	alive := false
	for _, c := range t.Containers {
		if c.Status == ContainerRunning && !r.containerRunning(t.ID, c.Name) {
			c.Status = ContainerStopped
		}
		alive = alive || c.Status == ContainerRunning
	}
	if !alive {
		t.Status = TaskStopped
	}
	return t
}

func (r *Runtime) containerRunning(id, ctr string) bool {
	c, err := libcontainer.Load(r.lcRoot, lcID(id, ctr))
	if err != nil {
		return false
	}
	st, err := c.Status()
	return err == nil && (st == libcontainer.Running || st == libcontainer.Paused || st == libcontainer.Created)
}

// monitorAlive checks that pid is still the monitor of task id (and not a
// recycled pid).
func monitorAlive(pid int, id string) bool {
	// A supervised monitor (supervise_linux.go) execs itself, and while an
	// execve is under way its command line reads empty. Wait for the exec
	// to end rather than take the monitor for dead, unless it is dead (a
	// zombie, or gone).
	for i := 0; ; i++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			return false
		}
		if len(b) > 0 || i == 1000 || procDead(pid) {
			return strings.Contains(string(b), "\x00"+monitorArg+"\x00") && strings.Contains(string(b), id)
		}
		time.Sleep(time.Millisecond)
	}
}

// procDead reports whether pid is gone or a zombie. A process in execve
// may show a zombie thread group leader (when another of its threads
// called execve, as Go's may), but then still counts that thread: a dead
// process is a zombie of one thread.
func procDead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true
	}
	st := string(b)
	zombie := strings.Contains(st, "\nState:\tZ") || strings.Contains(st, "\nState:\tX")
	return zombie && strings.Contains(st, "\nThreads:\t1\n")
}

// monitorArg is the hidden command the monitor runs as.
const monitorArg = "monitor"

// Attachment follows an attached task: its output and its end.
type Attachment struct {
	r    *Runtime
	task *Task
	log  *os.File
	exit chan *Task
	wake chan struct{} // closed once the final state arrived
	gone chan struct{} // closed when the monitor has exited
}

// MonitorDone waits until the task's monitor is done with it, or timeout
// passes: for an AutoRemove task until the task is removed (no reader finds
// it any more; the deletion of its files may still be under way, under a
// name nobody reads), for another until the monitor exited, its cleanup
// done.
func (a *Attachment) MonitorDone(timeout time.Duration) bool {
	select {
	case <-a.gone:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Start runs the task's monitor, which starts the containers, and waits
// until they run (or failed to start).
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.start(ctx, id, false)
	return err
}

// StartAttached starts the task like Start and returns an Attachment that
// streams the first container's output from its first byte and reports the
// task's final state, even when the task removes itself (AutoRemove).
func (r *Runtime) StartAttached(ctx context.Context, id string) (*Attachment, error) {
	return r.start(ctx, id, true)
}

func (r *Runtime) start(ctx context.Context, id string, attach bool) (*Attachment, error) {
	t, err := r.Get(id)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	m := r.early[t.ID]
	delete(r.early, t.ID)
	r.mu.Unlock()
	if t.Status != TaskPending {
		if m != nil {
			m.cancel()
		}
		return nil, fmt.Errorf("task %s is %s, not PENDING", t.Name, t.Status)
	}
	var lf *os.File
	if attach {
		if lf, err = os.Open(r.LogPath(t.ID, t.Containers[0].Name)); err != nil {
			if m != nil {
				m.cancel()
			}
			return nil, err
		}
	}
	if m == nil {
		if m, err = r.launchMonitor(t.ID); err != nil {
			if lf != nil {
				lf.Close()
			}
			return nil, err
		}
	}
	var a *Attachment
	if attach {
		exitR := m.exitR
		a = &Attachment{r: r, task: t, log: lf, exit: make(chan *Task, 1), wake: make(chan struct{}), gone: make(chan struct{})}
		go func() {
			defer exitR.Close()
			var final Task
			if err := json.NewDecoder(exitR).Decode(&final); err == nil {
				a.exit <- &final
			}
			close(a.exit)
			close(a.wake)
			// The pipe ends when the monitor exits, its cleanup done.
			io.Copy(io.Discard, exitR)
			close(a.gone)
		}()
	} else {
		m.exitR.Close() // nobody wants the final state
	}
	if err := r.runMonitor(t, m); err != nil {
		if a != nil {
			a.log.Close()
		}
		return nil, err
	}
	return a, nil
}

// monitorProc is a monitor process waiting for the word to start its task.
type monitorProc struct {
	ready *os.File // its fd 3: "ok" or why the start failed, then EOF
	exitR *os.File // its fd 4: the final task record, then EOF at its exit
	goW   *os.File // its fd 5: "go" starts the task; EOF sends it away
}

// launchMonitor starts task id's monitor process (`berth monitor ID`, in
// its own session), which waits on its fd 5 for runMonitor's word. The
// task's directory must exist (the monitor logs to monitor.log there).
func (r *Runtime) launchMonitor(id string) (_ *monitorProc, err error) {
	var closers []*os.File // the child's ends, and ours on failure
	defer func() {
		for _, f := range closers {
			f.Close()
		}
	}()
	pipe := func() (rd, wr *os.File) {
		if err != nil {
			return nil, nil
		}
		if rd, wr, err = os.Pipe(); err == nil {
			closers = append(closers, rd, wr)
		}
		return rd, wr
	}
	readyR, readyW := pipe()
	exitR, exitW := pipe()
	goR, goW := pipe()
	if err != nil {
		return nil, err
	}
	mlog, err := os.OpenFile(filepath.Join(r.taskDir(id), "monitor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	closers = append(closers, mlog)
	cmd := exec.Command(r.cfg.Exe, "--root", r.cfg.Root, "--run-root", r.cfg.RunRoot, monitorArg, id)
	cmd.Stdout, cmd.Stderr = mlog, mlog
	cmd.ExtraFiles = []*os.File{readyW, exitW, goR} // fds 3, 4, 5
	cmd.Env = append(os.Environ(), monitorExitFDEnv+"=4", monitorGoFDEnv+"=5", monitorBuildEnv+"="+Build)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err = cmd.Start(); err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	go cmd.Wait() // the monitor outlives us; reap it if we outlive it
	closers = []*os.File{readyW, exitW, goR, mlog}
	return &monitorProc{ready: readyR, exitR: exitR, goW: goW}, nil
}

// cancel sends a monitor that was never told to go away: it exits on EOF.
func (m *monitorProc) cancel() {
	m.goW.Close()
	m.ready.Close()
	m.exitR.Close()
}

// runMonitor tells the monitor to start task t's containers and waits for
// its ready report.
func (r *Runtime) runMonitor(t *Task, m *monitorProc) error {
	defer m.ready.Close()
	if err := os.MkdirAll(r.runDir(t.ID), 0o700); err != nil {
		m.goW.Close()
		return err
	}
	_, err := m.goW.WriteString(monitorGo)
	m.goW.Close()
	if err != nil {
		return fmt.Errorf("task %s: monitor exited before the start (see %s): %w", t.Name, filepath.Join(r.taskDir(t.ID), "monitor.log"), err)
	}
	b, _ := io.ReadAll(io.LimitReader(m.ready, 64<<10))
	msg := strings.TrimSpace(string(b))
	switch {
	case msg == "ok":
		return nil
	case msg == "":
		return fmt.Errorf("task %s: monitor exited before the containers started (see %s)", t.Name, filepath.Join(r.taskDir(t.ID), "monitor.log"))
	default:
		return &StartError{Msg: msg}
	}
}

// monitorGo is the word on the monitor's fd 5 that starts the task.
const monitorGo = "go\n"

// monitorGoFDEnv names the monitor's fd that carries monitorGo.
const monitorGoFDEnv = "BERTH_MONITOR_GO_FD"

// monitorExitFDEnv tells the monitor that fd 4 wants the final state.
const monitorExitFDEnv = "BERTH_MONITOR_EXIT_FD"

// Stream copies the container's output to stdout and stderr until the task
// stops, then returns its final state.
func (a *Attachment) Stream(stdout, stderr io.Writer) (*Task, error) {
	var final *Task
	done := func() bool {
		select {
		case t, ok := <-a.exit:
			if ok {
				final = t
			}
			return true
		default:
		}
		if final != nil {
			return true
		}
		// No exit report (monitor killed): fall back to the record.
		if t, err := a.r.Get(a.task.ID); err == nil && t.Status == TaskStopped {
			final = t
			return true
		} else if err != nil && final == nil {
			return false
		}
		return false
	}
	err := followLog(a.log, a.r.LogPath(a.task.ID, a.task.Containers[0].Name), LogOptions{Follow: true, Done: done, Wake: a.wake}, stdout, stderr)
	if final == nil {
		if t, err2 := a.r.Get(a.task.ID); err2 == nil {
			final = t
		} else if err == nil {
			err = fmt.Errorf("task %s ended without a final state", a.task.Name)
		}
	}
	return final, err
}

// ExitCode is the exit code docker's attached run gives for a task: the
// first container's exit code (127/126/125 for start failures).
func (t *Task) ExitCode() int {
	c := t.Containers[0]
	if c.ExitCode != nil {
		return *c.ExitCode
	}
	return 255
}

// StartError is a container that could not start; Code follows docker:
// 127 command not found, 126 not executable, 125 anything else.
type StartError struct{ Msg string }

func (e *StartError) Error() string { return e.Msg }

// Code is the exit code docker gives this failure.
func (e *StartError) Code() int { return startErrorCode(e.Msg) }

func startErrorCode(msg string) int {
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "exec format error"):
		return 126
	}
	return 125
}

// Kill sends sig to every running container of the task.
func (r *Runtime) Kill(id string, sig syscall.Signal) error {
	t, err := r.Get(id)
	if err != nil {
		return err
	}
	sent := false
	for _, c := range t.Containers {
		if c.Status != ContainerRunning {
			continue
		}
		lc, err := libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name))
		if err != nil {
			continue
		}
		if err := lc.Signal(sig); err == nil {
			sent = true
		}
	}
	if !sent {
		return fmt.Errorf("%w: %s", ErrNotRunning, t.Name)
	}
	return nil
}

// Stop sends each container its stop signal, then SIGKILL after timeout,
// and waits until the task has stopped. A negative timeout means the
// task's own (--stop-timeout, default 10 s).
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	t, err := r.Get(id)
	if err != nil {
		return err
	}
	if timeout < 0 {
		timeout = t.stopTimeout()
	}
	if t.Status == TaskStopped || t.Status == TaskPending {
		return nil
	}
	var upd Task
	r.st.Update(ctx, taskKey(t.ID), &upd, func(exists bool) error {
		if !exists {
			return ErrNotFound
		}
		if upd.StopCode == "" {
			upd.StopCode = StopUserInitiated
			upd.Reason = "stopped by the user"
		}
		return nil
	})
	for _, c := range t.Containers {
		sig := syscall.SIGTERM
		if s, err := r.stopSignal(t.ID, c.Name); err == nil {
			sig = s
		}
		if lc, err := libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name)); err == nil {
			lc.Signal(sig)
		}
	}
	if r.waitStopped(ctx, t.ID, timeout) {
		return nil
	}
	for _, c := range t.Containers {
		if lc, err := libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name)); err == nil {
			lc.Signal(unix.SIGKILL)
		}
	}
	if !r.waitStopped(ctx, t.ID, 10*time.Second) {
		return fmt.Errorf("task %s did not stop after SIGKILL", t.Name)
	}
	return nil
}

// stopSignal reads the container's stop signal from its bundle.
func (r *Runtime) stopSignal(id, ctr string) (syscall.Signal, error) {
	s, err := r.readSpec(id, ctr)
	if err != nil {
		return 0, err
	}
	v := s.Annotations[StopSignalAnnotation]
	if v == "" {
		return syscall.SIGTERM, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(v)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("bad stop signal %q", v)
}

// StopSignalAnnotation in a container's spec names its stop signal.
const StopSignalAnnotation = "berth.stop-signal"

// waitStopped polls until the task is stopped (and recorded, when its
// monitor lives) or timeout passes.
func (r *Runtime) waitStopped(ctx context.Context, id string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		t, err := r.Get(id)
		if err != nil || t.Status == TaskStopped {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Wait blocks until the task has stopped and returns its final record.
func (r *Runtime) Wait(ctx context.Context, id string) (*Task, error) {
	for {
		t, err := r.Get(id)
		if err != nil {
			return nil, err
		}
		if t.Status == TaskStopped {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Remove deletes a stopped task and everything it holds. With force a
// running task is killed first.
func (r *Runtime) Remove(ctx context.Context, id string, force bool) error {
	t, err := r.Get(id)
	if err != nil {
		return err
	}
	if t.Status == TaskRunning || t.Status == TaskStopping {
		if !force {
			return fmt.Errorf("%w: %s; stop it first or use -f", ErrRunning, t.Name)
		}
		r.Kill(t.ID, unix.SIGKILL)
		r.waitStopped(ctx, t.ID, 10*time.Second)
	}
	// Let a live monitor finish its own cleanup first.
	for i := 0; i < 250 && t.MonitorPID != 0 && monitorAlive(t.MonitorPID, t.ID); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return r.cleanup(t)
}

// cleanup removes every trace of a task: libcontainer state and cgroups,
// rootfs mounts, the task and run dirs. Idempotent; tolerant of a task
// that was only half created.
func (r *Runtime) cleanup(t *Task) error {
	purge, err := r.release(t, nil)
	return errors.Join(err, purge())
}

// release is cleanup up to the point where the task is gone for everyone:
// its on-stop commands run, its containers (state and cgroups), rootfs
// mounts and runtime files removed, and its directory moved out of tasks/
// in one step (a rename, as containerd's atomicDelete does). The purge it
// returns does the rest, which takes time and changes nothing anyone can
// observe: it deletes the moved directory and the shared cgroup parent
// once no task uses it, and lets go of the unmounted overlays. Unmounting
// the last reference to an overlay tears it down, and overlayfs then syncs
// its upper filesystem, the whole filesystem of the state root, which takes
// from a millisecond to hundreds on a busy host; holding each rootfs open
// while it is detached makes the unmount itself instant and leaves that to
// purge.
func (r *Runtime) release(t *Task, loaded map[string]*libcontainer.Container) (purge func() error, err error) {
	r.mu.Lock()
	if m := r.early[t.ID]; m != nil {
		delete(r.early, t.ID)
		m.cancel()
	}
	r.mu.Unlock()
	var errs []error
	var held []int
	r.runOnStop(t)
	for _, c := range t.Containers {
		lc := loaded[c.Name]
		if lc == nil {
			lc, _ = libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name))
		}
		if lc != nil {
			if err := lc.Destroy(); err != nil {
				errs = append(errs, fmt.Errorf("destroy %s: %w", c.Name, err))
			}
		}
		rootfs := filepath.Join(r.ctrDir(t.ID, c.Name), "rootfs")
		if fd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			held = append(held, fd)
		}
		if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", rootfs, err))
		}
	}
	// The store's lock files for this task's record.
	os.RemoveAll(filepath.Join(r.cfg.Root, ".locks", "tasks.d", t.ID+".d"))
	os.Remove(r.attachPath(t.ID))
	if err := os.RemoveAll(r.runDir(t.ID)); err != nil {
		errs = append(errs, err)
	}
	os.Mkdir(filepath.Dir(r.removingDir(t.ID)), 0o700)
	if err := os.Rename(r.taskDir(t.ID), r.removingDir(t.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Not renamed: remove it in place.
		if err := os.RemoveAll(r.taskDir(t.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	purge = func() error {
		for _, fd := range held {
			unix.Close(fd)
		}
		removeCgroupParentIfEmpty(cgroupParent)
		if err := os.RemoveAll(r.removingDir(t.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return purge, errors.Join(errs...)
}

// removingDir is where release moves a task's directory: outside tasks/,
// in <root>/.removing (the store and its readers skip dot-names). Cleanup
// deletes what a monitor killed before its purge left there.
func (r *Runtime) removingDir(id string) string {
	return filepath.Join(r.cfg.Root, removingDirName, id)
}

const removingDirName = ".removing"

// Logs prints a container's logs (the first container when ctr is "").
func (r *Runtime) Logs(id, ctr string, o LogOptions, stdout, stderr io.Writer) error {
	t, err := r.Get(id)
	if err != nil {
		return err
	}
	c := t.Containers[0]
	if ctr != "" {
		if c = t.Container(ctr); c == nil {
			return fmt.Errorf("%w: container %s in task %s", ErrNotFound, ctr, t.Name)
		}
	}
	if o.Follow && o.Done == nil {
		o.Done = func() bool {
			cur, err := r.Get(t.ID)
			return err != nil || cur.Status == TaskStopped
		}
	}
	return readLogs(r.LogPath(t.ID, c.Name), c.LogMaxFiles, o, stdout, stderr)
}

// TaskInspect is a task's record with each container's OCI spec (mounts,
// limits, process) for `berth inspect`.
type TaskInspect struct {
	*Task
	Specs map[string]*specs.Spec `json:"specs"`
}

func (r *Runtime) readSpec(id, ctr string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(r.ctrDir(id, ctr), "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Inspect returns a task's record and its containers' specs.
func (r *Runtime) Inspect(ref string) (*TaskInspect, error) {
	t, err := r.Get(ref)
	if err != nil {
		return nil, err
	}
	ti := &TaskInspect{Task: t, Specs: map[string]*specs.Spec{}}
	for _, c := range t.Containers {
		if s, err := r.readSpec(t.ID, c.Name); err == nil {
			ti.Specs[c.Name] = s
		}
	}
	return ti, nil
}

// Command is a container's command line, for listings.
func (r *Runtime) Command(id, ctr string) string {
	s, err := r.readSpec(id, ctr)
	if err != nil || s.Process == nil {
		return ""
	}
	cmd := strings.Join(s.Process.Args, " ")
	if len(cmd) > 30 {
		cmd = cmd[:29] + "…"
	}
	return cmd
}

// runOnStop runs the task's OnStop commands, logging failures: a release
// that fails must not keep the rest of the cleanup from happening.
func (r *Runtime) runOnStop(t *Task) {
	for _, argv := range t.OnStop {
		if len(argv) == 0 {
			continue
		}
		if r.cfg.StopHook != nil {
			if handled, err := r.cfg.StopHook(argv); handled {
				if err != nil {
					r.log.Warn("on-stop command failed", "task", t.ID, "cmd", argv, "err", err)
				}
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		cancel()
		if err != nil {
			r.log.Warn("on-stop command failed", "task", t.ID, "cmd", argv, "err", err, "output", string(out))
		}
	}
}
