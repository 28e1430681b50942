//go:build linux

package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	rspec "github.com/berth-dev/berth/runtime/spec"
)

// keepExitPipe holds the attached client's exit pipe open until the
// monitor is done with the task (a dropped *os.File is closed by its
// finalizer).
//
//lint:ignore U1000 only held, never read
var keepExitPipe *os.File

// MonitorArg is the hidden command under which the CLI re-executes berth
// as a task's monitor: `berth monitor TASK-ID`, with the ready pipe as fd 3,
// the exit pipe as fd 4 and, started ahead by Create, the go pipe as fd 5.
const MonitorArg = monitorArg

// RunMonitor is the per-task monitor. It is the parent of the task's
// containers: it starts them, reports on fd 3 ("ok" or the start error),
// writes their output to the logs, waits for their exits, records exit
// codes, signals and OOM kills in the task state, then cleans up (and
// removes the task when it was created with AutoRemove). It ignores
// SIGINT/SIGHUP so a terminal going away does not take the task with it.
// A task with neither TTYs nor stdin is, once started, watched by the C
// supervisor this process execs into, which execs back into RunMonitor for
// the exits (see supervise_linux.go).
func (r *Runtime) RunMonitor(id string) error {
	signal.Ignore(unix.SIGINT, unix.SIGHUP, unix.SIGPIPE)
	// Back from the C supervisor (see supervise_linux.go): its containers
	// have exited.
	if done, ok := os.LookupEnv(supDoneEnv); ok {
		os.Unsetenv(supDoneEnv)
		return r.finishSupervised(id, done)
	}
	// Started ahead by Create: wait for the word (EOF: the task was never
	// created, or its start was called off).
	if os.Getenv(monitorGoFDEnv) == "5" {
		os.Unsetenv(monitorGoFDEnv)
		warmUp()
		g := os.NewFile(5, "go")
		b := make([]byte, len(monitorGo))
		_, err := io.ReadFull(g, b)
		g.Close()
		if err != nil || string(b) != monitorGo {
			return nil
		}
	}
	go warmCgroupLock() // see there: the inits' cgroup moves come soon
	unix.CloseOnExec(3) // the containers' inits must not hold it
	ready := os.NewFile(3, "ready")
	report := func(msg string) {
		if ready != nil {
			ready.WriteString(msg + "\n")
			ready.Close()
			ready = nil
		}
	}
	defer report("monitor failed")
	if b, ok := os.LookupEnv(monitorBuildEnv); ok && b != Build {
		msg := fmt.Sprintf("%s is build %s but berth is build %s: install both from one build", os.Args[0], Build, b)
		report(msg)
		return errors.New(msg)
	}
	os.Unsetenv(monitorBuildEnv)
	// An attached client wants the final state (it may be gone: EPIPE).
	var exitPipe *os.File
	if os.Getenv(monitorExitFDEnv) == "4" {
		unix.CloseOnExec(4)
		exitPipe = os.NewFile(4, "exit")
		os.Unsetenv(monitorExitFDEnv)
	}
	sendExit := func() {
		if exitPipe == nil {
			return
		}
		if final, err := r.Get(id); err == nil {
			json.NewEncoder(exitPipe).Encode(final)
		}
		// Not closed: the client reads EOF when this process exits, which
		// tells it the cleanup is done, or, for an AutoRemove task, when
		// finish has removed it. The package variable keeps the finalizer
		// from closing it earlier.
		keepExitPipe = exitPipe
		exitPipe = nil
	}
	defer sendExit()
	t, err := r.Get(id)
	if err != nil {
		report(err.Error())
		return err
	}
	ctx := context.Background()

	type running struct {
		c    *Container
		lc   *libcontainer.Container
		p    *libcontainer.Process
		oom  <-chan struct{}
		out  *streamWriter
		errw *streamWriter
		log  *logFile
		// -t: the pty master and the end of copying its output.
		console console.Console
		ttyDone chan struct{}
		// Supervised tasks: the read ends of the output pipes, and, only
		// if the exec into the supervisor failed, the end of copying them.
		pipeOut, pipeErr *os.File
		copyDone         chan struct{}
	}
	// A task without TTYs and stdin is handed to the C supervisor once
	// started; its containers write to pipes the supervisor reads.
	sup := supervisable(t)
	var started []*running
	var attach *attachTarget
	// pending holds record changes not written yet: a started container's
	// RUNNING state goes out with the next write (the task's RUNNING, or
	// the next container's), one atomic write and its fsyncs fewer.
	var pending []func(*Task)
	flush := func(fn func(*Task)) func(*Task) {
		p := pending
		pending = nil
		return func(t *Task) {
			for _, f := range p {
				f(t)
			}
			fn(t)
		}
	}
	fail := func(c *Container, err error) error {
		msg := err.Error()
		code := startErrorCode(msg)
		r.update(ctx, id, flush(func(t *Task) {
			t.Status = TaskStopped
			t.StopCode = StopTaskFailedToStart
			t.Reason = msg
			t.MonitorPID = 0
			if tc := t.Container(c.Name); tc != nil {
				tc.Status = ContainerStopped
				tc.Error = msg
				tc.ExitCode = &code
				tc.Finished = time.Now().UTC()
			}
		}))
		report(msg)
		for _, s := range started {
			s.lc.Signal(unix.SIGKILL)
			s.p.Wait()
		}
		sendExit()
		r.finish(id, nil)
		return err
	}
	for _, c := range t.Containers {
		lc, p, err := r.startContainer(t, c)
		if err != nil {
			return fail(c, err)
		}
		rn := &running{c: c, lc: lc, p: p}
		rn.log, err = openLogFile(r.LogPath(t.ID, c.Name), c.LogMaxSize, c.LogMaxFiles)
		if err != nil {
			return fail(c, err)
		}
		rn.out = &streamWriter{log: rn.log, stream: "stdout"}
		rn.errw = &streamWriter{log: rn.log, stream: "stderr"}
		var consoleParent, consoleChild, stdinR *os.File
		var stdinW *os.File
		switch {
		case c.TTY:
			fds, err := unix.Socketpair(unix.AF_LOCAL, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fail(c, err)
			}
			consoleParent, consoleChild = os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child")
			p.ConsoleSocket = consoleChild
		case sup:
			var outW, errW *os.File
			if rn.pipeOut, outW, err = outputPipe(); err != nil {
				return fail(c, err)
			}
			if rn.pipeErr, errW, err = outputPipe(); err != nil {
				outW.Close()
				return fail(c, err)
			}
			// Files, so libcontainer hands them to the init as they are,
			// with no copying goroutine of ours between.
			p.Stdout, p.Stderr = outW, errW
		default:
			p.Stdout, p.Stderr = rn.out, rn.errw
			if c.Stdin {
				if stdinR, stdinW, err = os.Pipe(); err != nil {
					return fail(c, err)
				}
				p.Stdin = stdinR
			}
		}
		unlock := lockCgroupParent(unix.LOCK_SH) // see cgroupLockPath
		err = lc.Start(p)
		unlock()
		if sup {
			// The init has its copies (or failed): ours would keep the
			// pipes from ever reaching EOF.
			p.Stdout.(*os.File).Close()
			p.Stderr.(*os.File).Close()
		}
		if err != nil {
			// A failed start saved no state, so no later Load finds the
			// container: destroy it now or its state dir stays behind.
			lc.Destroy()
			return fail(c, err)
		}
		r.seccompCacheAfter(r.ctrDir(t.ID, c.Name))
		switch {
		case c.TTY:
			consoleChild.Close()
			master, err := recvFD(consoleParent)
			consoleParent.Close()
			if err != nil {
				return fail(c, err)
			}
			cons, err := console.ConsoleFromFile(master)
			if err != nil {
				return fail(c, err)
			}
			rn.ttyDone = make(chan struct{})
			rn.console = cons
			go func() {
				io.Copy(rn.out, cons)
				close(rn.ttyDone)
			}()
			if attach == nil {
				attach = &attachTarget{console: cons}
			}
		case c.Stdin:
			stdinR.Close()
			if attach == nil {
				attach = &attachTarget{stdin: stdinW}
			} else {
				stdinW.Close()
			}
		}
		rn.oom, _ = lc.NotifyOOM()
		if err := lc.Exec(); err != nil {
			return fail(c, err)
		}
		pid, _ := p.Pid()
		started = append(started, rn)
		if len(pending) > 0 {
			r.update(ctx, id, flush(func(*Task) {}))
		}
		now := time.Now().UTC()
		pending = append(pending, func(t *Task) {
			if tc := t.Container(c.Name); tc != nil {
				tc.Status = ContainerRunning
				tc.Pid = pid
				tc.Started = now
			}
		})
	}
	if attach != nil {
		l, err := r.serveAttach(id, attach)
		if err != nil {
			return fail(t.Containers[0], err)
		}
		defer l.Close()
	}
	r.update(ctx, id, flush(func(t *Task) {
		t.Status = TaskRunning
		t.MonitorPID = os.Getpid()
	}))
	report("ok")

	if sup {
		// The output is copied here at first, as by a Go monitor: a
		// command that ends at once ends under it, without the two execs,
		// the second of which the exit report would wait for.
		startCopy := func(rn *running) {
			rn.copyDone = make(chan struct{})
			go func() {
				var cw sync.WaitGroup
				cw.Add(2)
				go func() { io.Copy(rn.out, rn.pipeOut); cw.Done() }()
				go func() { io.Copy(rn.errw, rn.pipeErr); cw.Done() }()
				cw.Wait()
				close(rn.copyDone)
			}()
		}
		for _, rn := range started {
			startCopy(rn)
		}
		allExited := func() bool {
			for _, rn := range started {
				pid, _ := rn.p.Pid()
				// WNOWAIT: the zombie stays for p.Wait or the
				// supervisor. With WNOHANG and no exit, Linux fills in a
				// zero siginfo.
				var si unix.Siginfo
				if unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil) != nil || si.Signo != int32(unix.SIGCHLD) {
					return false
				}
			}
			return true
		}
		for end := time.Now().Add(supGrace); !allExited() && time.Now().Before(end); {
			time.Sleep(2 * time.Millisecond)
		}
		if !allExited() {
			// Stop the copying (a read deadline in the past ends the
			// reads, and nothing read is lost); the partial lines go to
			// the supervisor with the pipes.
			for _, rn := range started {
				rn.pipeOut.SetReadDeadline(time.Unix(1, 0))
				rn.pipeErr.SetReadDeadline(time.Unix(1, 0))
			}
			ctrs := make([]supCtr, 0, len(started))
			for _, rn := range started {
				<-rn.copyDone
				pid, _ := rn.p.Pid()
				ctrs = append(ctrs, supCtr{name: rn.c.Name, pid: pid, out: rn.pipeOut, err: rn.pipeErr,
					outBuf: rn.out.buf, errBuf: rn.errw.buf,
					path: rn.log.path, maxSize: rn.log.maxSize, maxFiles: rn.log.maxFiles})
			}
			// Returns only if the exec failed; then this monitor goes on
			// copying the output itself.
			err := execSupervisor(ctrs, exitPipe)
			r.log.Warn("supervisor", "task", id, "err", err)
			for _, rn := range started {
				rn.pipeOut.SetReadDeadline(time.Time{})
				rn.pipeErr.SetReadDeadline(time.Time{})
				startCopy(rn)
			}
		}
	}

	// Each exit is recorded as it happens; the last one together with the
	// task's STOPPED.
	var mu sync.Mutex
	left := len(started)
	stopped := func(t *Task) {
		t.Status = TaskStopped
		if t.StopCode == "" {
			t.StopCode = StopEssentialContainerExited
			t.Reason = "essential container exited"
		}
		t.MonitorPID = 0
	}
	var wg sync.WaitGroup
	for _, rn := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps, err := rn.p.Wait()
			if rn.ttyDone != nil {
				// Output ends when the last holder of the pty's slave side
				// exits; background children may keep it open, so bound it.
				select {
				case <-rn.ttyDone:
				case <-time.After(time.Second):
				}
				rn.console.Close()
			}
			if rn.copyDone != nil {
				// As for a tty: background processes may hold the pipes.
				select {
				case <-rn.copyDone:
				case <-time.After(time.Second):
				}
				rn.pipeOut.Close()
				rn.pipeErr.Close()
			}
			rn.out.flush()
			rn.errw.flush()
			rn.log.Close()
			code, sig := -1, ""
			if ps != nil {
				if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
					code, sig = exitOf(ws)
				}
			} else if err != nil {
				r.log.Warn("wait", "container", rn.c.Name, "err", err)
			}
			// The OOM killer's event precedes the exit; it may still be on
			// its way to us, so wait briefly, but only when the exit was a
			// SIGKILL: nothing else can be an OOM kill.
			oom := false
			if rn.oom != nil {
				wait := time.Duration(0)
				if sig == "SIGKILL" {
					wait = 100 * time.Millisecond
				}
				select {
				case _, ok := <-rn.oom:
					oom = ok
				case <-time.After(wait):
				}
			}
			finished := time.Now().UTC()
			mu.Lock()
			defer mu.Unlock()
			left--
			last := left == 0
			method := r.st.Update
			if last && t.AutoRemove {
				// Removed right after this; the client reads it once.
				method = r.st.UpdateVolatile
			}
			r.updateStore(ctx, id, func(t *Task) {
				if tc := t.Container(rn.c.Name); tc != nil {
					tc.Status = ContainerStopped
					tc.Finished = finished
					if code >= 0 {
						tc.ExitCode = &code
					}
					tc.Signal = sig
					tc.OOMKilled = oom
				}
				if last {
					stopped(t)
				}
			}, method)
		}()
	}
	wg.Wait()
	sendExit()
	loaded := map[string]*libcontainer.Container{}
	for _, rn := range started {
		loaded[rn.c.Name] = rn.lc
	}
	return r.finish(id, loaded)
}

// finish releases what a stopped task holds, keeping its record and logs
// (or removing everything for AutoRemove tasks). loaded holds the
// libcontainer containers the monitor started, by container name, so they
// need not be loaded from their state again.
func (r *Runtime) finish(id string, loaded map[string]*libcontainer.Container) error {
	t, err := r.Get(id)
	if err != nil {
		return err
	}
	if t.AutoRemove {
		purge, err := r.release(t, loaded)
		// The task is gone: an attached `run --rm` may return now. The
		// deletion of its files need not hold it up.
		if keepExitPipe != nil {
			keepExitPipe.Close()
			keepExitPipe = nil
		}
		return errors.Join(err, purge())
	}
	r.runOnStop(t)
	var errs []error
	for _, c := range t.Containers {
		lc := loaded[c.Name]
		if lc == nil {
			lc, _ = libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name))
		}
		if lc != nil {
			if err := lc.Destroy(); err != nil {
				errs = append(errs, err)
			}
		}
		rootfs := filepath.Join(r.ctrDir(t.ID, c.Name), "rootfs")
		if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, err)
		}
	}
	removeCgroupParentIfEmpty(cgroupParent)
	os.Remove(r.attachPath(id))
	os.RemoveAll(r.runDir(id))
	return errors.Join(errs...)
}

// update changes the task record under its lock.
func (r *Runtime) update(ctx context.Context, id string, fn func(*Task)) {
	r.updateStore(ctx, id, fn, r.st.Update)
}

// updateStore is update through the given store method (Update, or
// UpdateVolatile for the last record of an auto-removed task).
func (r *Runtime) updateStore(ctx context.Context, id string, fn func(*Task), method func(context.Context, string, any, func(bool) error) error) {
	var t Task
	err := method(ctx, taskKey(id), &t, func(exists bool) error {
		if !exists {
			return ErrNotFound
		}
		fn(&t)
		return nil
	})
	if err != nil {
		r.log.Error("update task state", "task", id, "err", err)
	}
}

// startContainer creates the libcontainer container from the bundle and
// the process to run in it (not yet started).
func (r *Runtime) startContainer(t *Task, c *Container) (*libcontainer.Container, *libcontainer.Process, error) {
	b, err := os.ReadFile(filepath.Join(r.ctrDir(t.ID, c.Name), "config.json"))
	if err != nil {
		return nil, nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, nil, fmt.Errorf("bundle of %s: %w", c.Name, err)
	}
	if spec.Linux != nil && spec.Linux.Seccomp != nil {
		// The same filter, in fewer rules: libcontainer's init compiles
		// it on every start (see spec.CompactSeccomp).
		spec.Linux.Seccomp = rspec.CompactSeccomp(spec.Linux.Seccomp)
	}
	r.seccompCacheBefore(r.ctrDir(t.ID, c.Name), &spec)
	lcid := lcID(t.ID, c.Name)
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: lcid, Spec: &spec, NoNewKeyring: true})
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	cfg.Cgroups.Path = ""
	cfg.Cgroups.Name = lcid
	cfg.Cgroups.Parent = cgroupParent
	// A leftover from a crashed attempt with the same ID would block us.
	if old, err := libcontainer.Load(r.lcRoot, lcid); err == nil {
		old.Destroy()
	}
	lc, err := libcontainer.Create(r.lcRoot, lcid, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("create container %s: %w", c.Name, err)
	}
	p, err := newProcess(spec.Process)
	if err != nil {
		lc.Destroy()
		return nil, nil, err
	}
	p.Init = true
	return lc, p, nil
}

// newProcess turns the spec's process into libcontainer's.
func newProcess(sp *specs.Process) (*libcontainer.Process, error) {
	if sp == nil {
		return nil, errors.New("spec has no process")
	}
	nnp := sp.NoNewPrivileges
	p := &libcontainer.Process{
		Args:            sp.Args,
		Env:             sp.Env,
		UID:             int(sp.User.UID),
		GID:             int(sp.User.GID),
		Cwd:             sp.Cwd,
		NoNewPrivileges: &nnp,
	}
	for _, g := range sp.User.AdditionalGids {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}
	if c := sp.Capabilities; c != nil {
		p.Capabilities = &configs.Capabilities{Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable, Permitted: c.Permitted, Ambient: c.Ambient}
	}
	for _, rl := range sp.Rlimits {
		typ, ok := rlimitTypes[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		p.Rlimits = append(p.Rlimits, configs.Rlimit{Type: typ, Hard: rl.Hard, Soft: rl.Soft})
	}
	return p, nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

// warmUp does, while a monitor started ahead waits for its word, the
// one-time work of the start that does not depend on the task: the JSON
// codecs of the types the start decodes and encodes (the task record, the
// OCI spec, libcontainer's config for its init; encoding/json works out
// each struct type's fields on first use, about 2 ms for these), and the
// cgroup manager's discovery of the cgroup mounts.
func warmUp() {
	_, _ = json.Marshal(&Task{})
	_, _ = json.Marshal(&specs.Spec{})
	_, _ = json.Marshal(&configs.Config{})
	_, _ = manager.New(&cgroups.Cgroup{Name: cgroupParent, Resources: &cgroups.Resources{}})
}

// exitOf is a container's exit code in docker's terms (128+N when signal
// N killed it) and the signal's name, or -1 for a status that is neither.
func exitOf(ws syscall.WaitStatus) (code int, sig string) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), ""
	case ws.Signaled():
		return 128 + int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	return -1, ""
}
