//go:build linux

package runtime

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// CleanupReport lists what a cleanup pass released.
type CleanupReport struct {
	StoppedTasks []string `json:"stoppedTasks,omitempty"` // recorded as stopped: their monitor was gone
	Containers   []string `json:"containers,omitempty"`   // libcontainer state destroyed
	Mounts       []string `json:"mounts,omitempty"`       // rootfs mounts released
	TaskDirs     []string `json:"taskDirs,omitempty"`     // half-created tasks removed
}

// Cleanup brings the host back in line with the task records after crashes:
// tasks whose monitor died are recorded as stopped and their resources
// released; libcontainer containers, rootfs mounts and task dirs that no
// live task owns are removed; temp files of killed writers go. Tasks with a
// live monitor are not touched. It is idempotent.
func (r *Runtime) Cleanup(ctx context.Context) (*CleanupReport, error) {
	rep := &CleanupReport{}
	var errs []error
	owned := map[string]bool{} // libcontainer IDs of live tasks
	live := map[string]bool{}  // task IDs with a record
	tasks, err := r.List()
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		live[t.ID] = true
		monitored := t.MonitorPID != 0 && monitorAlive(t.MonitorPID, t.ID)
		if monitored || t.Status == TaskPending && time.Since(t.Created) < time.Minute {
			for _, c := range t.Containers {
				owned[lcID(t.ID, c.Name)] = true
			}
			continue
		}
		running := false
		for _, c := range t.Containers {
			if r.containerRunning(t.ID, c.Name) {
				running = true
				owned[lcID(t.ID, c.Name)] = true
			}
		}
		if running {
			continue // kill -9'd monitor, container alive: stop/rm handle it
		}
		// Stopped without a monitor to record it: persist that and release.
		var upd Task
		if err := r.st.Update(ctx, taskKey(t.ID), &upd, func(exists bool) error {
			if !exists {
				return ErrNotFound
			}
			changed := false
			for _, c := range upd.Containers {
				if c.Status != ContainerStopped {
					c.Status, changed = ContainerStopped, true
					if c.Finished.IsZero() {
						c.Finished = time.Now().UTC()
					}
				}
			}
			if upd.Status != TaskStopped {
				upd.Status, changed = TaskStopped, true
				if upd.StopCode == "" {
					upd.StopCode, upd.Reason = StopEssentialContainerExited, "the task's monitor died; exit code unknown"
				}
			}
			upd.MonitorPID = 0
			if changed {
				rep.StoppedTasks = append(rep.StoppedTasks, t.ID)
			}
			return nil
		}); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
		if upd.AutoRemove {
			if err := r.cleanup(&upd); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		for _, c := range t.Containers {
			if lc, err := libcontainer.Load(r.lcRoot, lcID(t.ID, c.Name)); err == nil {
				if err := lc.Destroy(); err == nil {
					rep.Containers = append(rep.Containers, lcID(t.ID, c.Name))
				}
			}
		}
	}
	// libcontainer state no live task owns.
	ents, _ := os.ReadDir(r.lcRoot)
	for _, e := range ents {
		if owned[e.Name()] {
			continue
		}
		lc, err := libcontainer.Load(r.lcRoot, e.Name())
		if err != nil {
			os.RemoveAll(filepath.Join(r.lcRoot, e.Name()))
			continue
		}
		if st, err := lc.Status(); err == nil && st != libcontainer.Stopped {
			lc.Signal(unix.SIGKILL)
			time.Sleep(50 * time.Millisecond)
		}
		if err := lc.Destroy(); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Containers = append(rep.Containers, e.Name())
	}
	// Rootfs mounts of tasks that are not running, and of removed ones.
	tasksDir := filepath.Join(r.cfg.Root, "tasks") + "/"
	removingDir := filepath.Join(r.cfg.Root, removingDirName) + "/"
	for _, mp := range mountPoints() {
		if strings.HasPrefix(mp, removingDir) {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err == nil {
				rep.Mounts = append(rep.Mounts, mp)
			}
			continue
		}
		rest, ok := strings.CutPrefix(mp, tasksDir)
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(rest, "/")
		if t, err := r.Get(id); err == nil && (t.Status == TaskRunning || t.Status == TaskStopping || t.Status == TaskPending) {
			continue
		}
		if err := unix.Unmount(mp, unix.MNT_DETACH); err == nil {
			rep.Mounts = append(rep.Mounts, mp)
		}
	}
	// Task dirs of removals whose purge did not run (release moved them
	// out of tasks/; a mount left in one went above).
	removing, _ := os.ReadDir(filepath.Join(r.cfg.Root, removingDirName))
	for _, d := range removing {
		if err := os.RemoveAll(r.removingDir(d.Name())); err == nil {
			rep.TaskDirs = append(rep.TaskDirs, d.Name())
		}
	}
	// Task dirs without a record: a create that crashed.
	dirs, _ := os.ReadDir(filepath.Join(r.cfg.Root, "tasks"))
	for _, d := range dirs {
		if live[d.Name()] || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		if fi, err := d.Info(); err == nil && time.Since(fi.ModTime()) < time.Minute {
			continue // perhaps being created right now
		}
		if err := os.RemoveAll(filepath.Join(r.cfg.Root, "tasks", d.Name())); err == nil {
			rep.TaskDirs = append(rep.TaskDirs, d.Name())
		}
	}
	removeCgroupParentIfEmpty(cgroupParent)
	if err := r.st.CleanTemp(); err != nil {
		errs = append(errs, err)
	}
	removeStaleTemps(filepath.Join(r.cfg.RunRoot, "seccomp"), time.Minute)
	return rep, errors.Join(errs...)
}

// removeStaleTemps removes the dot-files (temporary files of writers
// killed mid-write, such as a monitor copying a seccomp cache file) in dir
// that are older than age; younger ones may belong to a live writer.
func removeStaleTemps(dir string, age time.Duration) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// mountPoints lists this mount namespace's mount points, deepest last.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := parseOctal(s[i+1 : i+4]); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func parseOctal(s string) (byte, error) {
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, errors.New("not octal")
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), nil
}
