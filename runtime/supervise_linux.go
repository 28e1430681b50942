//go:build linux

package runtime

// A task monitor lives as long as its task, so what it holds is paid for
// every running task. Once the containers of a task with neither a TTY nor
// stdin are started, the Go monitor has nothing left to do but copy their
// output to the logs and wait for their exits; it hands that to a C
// supervisor (supervise_linux.c) by execve of its own binary: same PID, so
// the containers stay its children and monitorAlive still finds "monitor"
// and the task ID in its command line. The supervisor runs from a C
// constructor, before the Go runtime starts. When a container is done
// (exited, its output ended) it execs the binary once more, back into the
// Go monitor, which records the exit as it always did and, if other
// containers still run, execs the supervisor again for them (pipes and
// partial lines handed on), else cleans up. A task that ends within
// supGrace of its start never leaves the Go monitor.

/*
#include <stdlib.h>
#include "supervise_linux.h"

// berth_sup_test_log writes chunks (their lengths in lens, their stream,
// 0 stdout or 1 stderr, in streams) to the log at path as the supervisor
// does, all at time ns, then flushes stdout's and stderr's partial lines.
static int berth_sup_test_log(const char *path, long long max_size, int max_files, const char *data,
			      const size_t *lens, const int *streams, int n, long long ns)
{
	struct berth_sup_log l;
	struct berth_sup_stream s[2];
	if (berth_sup_log_open(&l, path, max_size, max_files) < 0)
		return -1;
	if (berth_sup_stream_init(&s[0], &l, "stdout") < 0 || berth_sup_stream_init(&s[1], &l, "stderr") < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		berth_sup_stream_write(&s[streams[i]], data, lens[i], ns);
		data += lens[i];
	}
	berth_sup_stream_flush(&s[0], ns);
	berth_sup_stream_flush(&s[1], ns);
	free(s[0].buf);
	free(s[1].buf);
	berth_sup_log_close(&l);
	return 0;
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

const (
	supervisorEnv = C.BERTH_SUP_ENV
	supDoneEnv    = C.BERTH_SUP_DONE_ENV
	supNextEnv    = C.BERTH_SUP_NEXT_ENV
	// supReadChunk is the most the supervisor reads from a pipe at once
	// (io.Copy's buffer, which the Go monitor copied through).
	supReadChunk = 32 << 10
	// supGrace is how long a monitor copies the output itself before it
	// hands over to the supervisor: a task that ends by then is not
	// worth two execs.
	supGrace = 100 * time.Millisecond
)

// supervisable reports whether t's monitor can hand over to the C
// supervisor: a TTY's output and stdin need the Go monitor's attach socket.
func supervisable(t *Task) bool {
	if len(t.Containers) == 0 || len(t.Containers) > 64 {
		return false
	}
	for _, c := range t.Containers {
		if c.TTY || c.Stdin {
			return false
		}
	}
	return true
}

// supCtr is a started container as the supervisor takes it over.
type supCtr struct {
	name     string
	pid      int
	out, err *os.File // the read ends of its stdout and stderr pipes
	// The partial lines read from them so far.
	outBuf, errBuf []byte
	path           string // its log
	maxSize        int64
	maxFiles       int
}

// outputPipe is a pipe for a container's output. Both ends are
// close-on-exec (os.Pipe): the write end reaches the container's init only
// as its stdout or stderr, and the read end, which we keep, must reach no
// container; checked, because a read end leaked into a container would
// keep its own pipe open.
func outputPipe() (r, w *os.File, err error) {
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, err
	}
	if fl, err := unix.FcntlInt(uintptr(fileFD(r)), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		r.Close()
		w.Close()
		return nil, nil, errors.New("output pipe is not close-on-exec")
	}
	return r, w, nil
}

// fileFD is f's descriptor. Unlike f.Fd it leaves f non-blocking, so that
// read deadlines still work on it.
func fileFD(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(v uintptr) { fd = int(v) })
	}
	return fd
}

// execSupervisor replaces this process with the C supervisor of ctrs. The
// pipes' read ends and, when there is one, the exit pipe (fd 4) are all
// it keeps, besides stdio (the monitor log). It returns only on failure,
// with those fds close-on-exec again.
func execSupervisor(ctrs []supCtr, exitPipe *os.File) error {
	env := monitorEnv()
	env = append(env, supervisorEnv+"="+strconv.Itoa(len(ctrs)))
	var keep []int
	for i, c := range ctrs {
		if strings.ContainsAny(c.name, " ,") {
			return fmt.Errorf("container name %q", c.name)
		}
		out, errfd := fileFD(c.out), fileFD(c.err)
		keep = append(keep, out, errfd)
		// See sup_parse: none of them has exited yet (as far as we know:
		// the supervisor reaps those that did).
		env = append(env, fmt.Sprintf("%s_%d=%d %d %d %d %d 0 0 0 %s %s", supervisorEnv, i, c.pid, out, errfd, c.maxSize, c.maxFiles, c.name, c.path))
		if len(c.outBuf) > 0 || len(c.errBuf) > 0 {
			env = append(env, fmt.Sprintf("%s_BUF_%d=%x,%x", supervisorEnv, i, c.outBuf, c.errBuf))
		}
	}
	if exitPipe != nil {
		keep = append(keep, int(exitPipe.Fd()))
		env = append(env, monitorExitFDEnv+"="+strconv.Itoa(int(exitPipe.Fd())))
	}
	err := execWithFDs(env, keep)
	// The files must outlive the exec: their finalizers would close them.
	goruntime.KeepAlive(ctrs)
	goruntime.KeepAlive(exitPipe)
	return err
}

// monitorEnv is this process's environment without the variables of the
// monitor-supervisor handovers.
func monitorEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, supervisorEnv) && !strings.HasPrefix(kv, supDoneEnv+"=") && !strings.HasPrefix(kv, supNextEnv+"=") &&
			!strings.HasPrefix(kv, monitorExitFDEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// execWithFDs execs this binary with env, keeping fds 0-2 and keep open.
// It returns only on failure, with keep close-on-exec again.
func execWithFDs(env []string, keep []int) error {
	// Whatever else is open (Go opens everything close-on-exec, but a
	// library need not) stays behind.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		if err := cloexecAll(); err != nil {
			return err
		}
	}
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return err
		}
	}
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	for _, fd := range keep {
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	return fmt.Errorf("exec supervisor: %w", err)
}

// resupervise execs the supervisor again for the containers still
// running, as the last one described them (see sup_handover).
func resupervise(next string, exitPipe *os.File) error {
	n, err := strconv.Atoi(next)
	if err != nil || n <= 0 {
		return fmt.Errorf("supervisor handover %q", next)
	}
	env := monitorEnv()
	var keep []int
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, supervisorEnv+"_") {
			continue
		}
		// The containers' descriptions and partial lines pass through;
		// the pipes in the descriptions stay open.
		env = append(env, kv)
		if !strings.HasPrefix(k, supervisorEnv+"_BUF_") {
			f := strings.Fields(v)
			for _, s := range f[1:min(3, len(f))] {
				if fd, err := strconv.Atoi(s); err == nil && fd >= 0 {
					keep = append(keep, fd)
				}
			}
		}
	}
	env = append(env, supervisorEnv+"="+strconv.Itoa(n))
	if exitPipe != nil {
		keep = append(keep, int(exitPipe.Fd()))
		env = append(env, monitorExitFDEnv+"="+strconv.Itoa(int(exitPipe.Fd())))
	}
	err = execWithFDs(env, keep)
	goruntime.KeepAlive(exitPipe)
	return err
}

// cloexecAll marks every fd from 3 on close-on-exec, where close_range is
// missing (before Linux 5.11).
func cloexecAll() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= 3 {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
	return nil
}

// supEnd is one container's end as the supervisor saw it.
type supEnd struct {
	name     string
	status   int // raw wait status; -1: never reaped
	finished time.Time
}

func parseSupDone(v string) ([]supEnd, error) {
	var out []supEnd
	for _, s := range strings.Split(v, ",") {
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, fmt.Errorf("supervisor result %q", v)
		}
		st, err1 := strconv.Atoi(f[1])
		ns, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("supervisor result %q: %w", v, err)
		}
		e := supEnd{name: f[0], status: st, finished: time.Unix(0, ns).UTC()}
		if ns == 0 {
			e.finished = time.Now().UTC()
		}
		out = append(out, e)
	}
	return out, nil
}

// oomKilled reports whether the memory cgroup of the (exited, not yet
// destroyed) container counted an OOM kill: libcontainer's NotifyOOM does
// not survive the execs, the counter does.
func oomKilled(lc *libcontainer.Container) bool {
	st, err := lc.State()
	if err != nil {
		return false
	}
	file, dir := "memory.oom_control", st.CgroupPaths["memory"]
	if cgroups.IsCgroup2UnifiedMode() {
		file, dir = "memory.events", st.CgroupPaths[""]
	}
	if dir == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if n, ok := strings.CutPrefix(l, "oom_kill "); ok {
			v, _ := strconv.ParseUint(strings.TrimSpace(n), 10, 64)
			return v > 0
		}
	}
	return false
}

// finishSupervised is the Go monitor again after the supervisor: it
// records each container's exit (the last with the task's STOPPED), as
// RunMonitor's wait goroutines do, sends the final state to an attached
// client and cleans up.
func (r *Runtime) finishSupervised(id, done string) error {
	var exitPipe *os.File
	if os.Getenv(monitorExitFDEnv) == "4" {
		exitPipe = os.NewFile(4, "exit")
		os.Unsetenv(monitorExitFDEnv)
	}
	next, more := os.LookupEnv(supNextEnv)
	ends, err := parseSupDone(done)
	if err != nil {
		r.log.Error("supervisor", "task", id, "err", err)
		return err
	}
	t, err := r.Get(id)
	if err != nil {
		return err
	}
	ctx := context.Background()
	loaded := map[string]*libcontainer.Container{}
	for i, e := range ends {
		lc, err := libcontainer.Load(r.lcRoot, lcID(id, e.name))
		if err == nil {
			loaded[e.name] = lc
		}
		code, sig := -1, ""
		if e.status >= 0 {
			code, sig = exitOf(syscall.WaitStatus(e.status))
		}
		oom := lc != nil && oomKilled(lc)
		last := i == len(ends)-1 && !more
		method := r.st.Update
		if last && t.AutoRemove {
			method = r.st.UpdateVolatile
		}
		r.updateStore(ctx, id, func(t *Task) {
			if tc := t.Container(e.name); tc != nil {
				tc.Status = ContainerStopped
				tc.Finished = e.finished
				if code >= 0 {
					tc.ExitCode = &code
				}
				tc.Signal = sig
				tc.OOMKilled = oom
			}
			if last {
				t.Status = TaskStopped
				if t.StopCode == "" {
					t.StopCode = StopEssentialContainerExited
					t.Reason = "essential container exited"
				}
				t.MonitorPID = 0
			}
		}, method)
	}
	if more {
		// Others run on: supervise them again. Their libcontainer
		// objects are not needed, and no Destroy may touch them.
		err := resupervise(next, exitPipe)
		r.log.Error("supervisor", "task", id, "err", err)
		return err
	}
	if exitPipe != nil {
		if final, err := r.Get(id); err == nil {
			json.NewEncoder(exitPipe).Encode(final)
		}
		// As RunMonitor's sendExit: held open until this process exits
		// (or finish removed an AutoRemove task).
		keepExitPipe = exitPipe
	}
	return r.finish(id, loaded)
}

// supTestWriteLog writes chunks to the log at path through the
// supervisor's C writer (see logs_supervise_linux_test.go); streams[i] is
// 0 for stdout, 1 for stderr. Chunks are at most supReadChunk.
func supTestWriteLog(path string, maxSize int64, maxFiles int, chunks [][]byte, streams []int, t time.Time) error {
	n := len(chunks)
	total := 0
	for _, c := range chunks {
		if len(c) > supReadChunk {
			return errors.New("chunk too large")
		}
		total += len(c)
	}
	data := (*C.char)(C.malloc(C.size_t(total + 1)))
	defer C.free(unsafe.Pointer(data))
	lens := (*C.size_t)(C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof(C.size_t(0)))))
	defer C.free(unsafe.Pointer(lens))
	strs := (*C.int)(C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof(C.int(0)))))
	defer C.free(unsafe.Pointer(strs))
	d := unsafe.Slice((*byte)(unsafe.Pointer(data)), total+1)
	l := unsafe.Slice(lens, n+1)
	s := unsafe.Slice(strs, n+1)
	off := 0
	for i, c := range chunks {
		copy(d[off:], c)
		off += len(c)
		l[i] = C.size_t(len(c))
		s[i] = C.int(streams[i])
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if C.berth_sup_test_log(cpath, C.longlong(maxSize), C.int(maxFiles), data, lens, strs, C.int(n), C.longlong(t.UnixNano())) != 0 {
		return errors.New("supervisor log writer failed")
	}
	return nil
}
