//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/testimage"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// -berth, -rounds and -tools are shared with pull_test.go.
var (
	startIters  = flag.Int("iterations", 30, "start: starts per tool per round")
	bridgeIters = flag.Int("bridge-iterations", 10, "start: starts per round of the bridged tools (berth-bridge, podman-bridge, docker)")
	memTasks    = flag.Int("mem-tasks", 5, "start: detached tasks whose monitor (conmon) memory is measured; 0 skips")
)

// startRef names the benchmark image in berth's and podman's stores.
const startRef = "localhost/berth-bench/busybox:start"

// quietTimeout bounds the wait for a tool's background processes (berth's
// monitor, podman's conmon and `container cleanup`) after each start.
const quietTimeout = 10 * time.Second

// TestStartBench is the side-by-side start benchmark described in start.sh.
func TestStartBench(t *testing.T) {
	if os.Getenv("BERTH_BENCH") != "1" {
		t.Skip("start benchmark: runs only with BERTH_BENCH=1; use `sudo sh bench/start.sh bin/berth`")
	}
	if os.Geteuid() != 0 {
		t.Fatal("start benchmark needs root (containers, cgroups, overlay mounts): sudo sh bench/start.sh")
	}
	for _, bin := range []string{"runc", "podman", "umoci"} {
		testrig.RequireBinary(t, bin, bin)
	}
	if *startIters < 1 || *rounds < 1 || *bridgeIters < 1 {
		t.Fatalf("-iterations %d, -bridge-iterations %d, -rounds %d: all must be at least 1", *startIters, *bridgeIters, *rounds)
	}
	want := func(name string) bool { return *only == "" || slices.Contains(strings.Split(*only, ","), name) }
	work := t.TempDir()
	// Cleanups run last-registered first: unmounting comes after every tool
	// has removed its containers, and before TempDir's removal.
	t.Cleanup(func() { unmountUnder(work) })
	start := time.Now()

	img := testimage.Busybox(t)
	ociArchive, dockerArchive := filepath.Join(work, "image.oci.tar"), filepath.Join(work, "image.docker.tar")
	testimage.WriteOCIArchive(t, ociArchive, testimage.LayoutEntry{Ref: startRef, Image: img})
	testimage.WriteDockerArchive(t, dockerArchive, startRef, img)
	layoutDir := filepath.Join(work, "layout")
	testimage.WriteLayout(t, layoutDir, testimage.LayoutEntry{Ref: startRef, Image: img})
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("image   %s (testimage.Busybox, %s)\n", startRef, digest.Hex[:12])

	var tools []*starter
	var bb *berthBench
	var bn *berthNet
	if *berthBin != "" {
		bin, err := filepath.Abs(*berthBin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("-berth: %v (go test runs in bench/: a relative path starts there)", err)
		}
		if nested(filepath.Dir(bin), work) {
			t.Fatalf("berth's folder %s and the state dirs under %s nest: libcontainer would take its slow path", filepath.Dir(bin), work)
		}
		if helper := runtime.HelperExe(bin); helper != bin {
			fmt.Printf("berth   %s, monitor and container init %s\n", bin, helper)
		} else {
			fmt.Printf("berth   %s, no %s next to it: berth is its own monitor and container init (slower, larger)\n", bin, runtime.ShimName)
		}
		dir := filepath.Join(work, "berth")
		if want("berth-bridge") {
			bn = newBerthNet(t, filepath.Join(dir, "root"), filepath.Join(dir, "run"))
			fmt.Printf("berth   bridge network: %s\n", bn)
		}
		bb = setupBerth(t, bin, dir, ociArchive)
		tools = append(tools, bb.starters(bn != nil)...)
	} else {
		fmt.Println("berth   skipped: no -berth binary given; ratios are not printed")
	}
	rc := setupRunc(t, filepath.Join(work, "runc"), layoutDir)
	pm := setupPodman(t, filepath.Join(work, "podman"), dockerArchive)
	tools = append(tools, rc.starter(), rc.dockerStarter(), pm.starter("podman", "none"))
	var pn *podmanNet
	if want("podman-bridge") {
		pn = newPodmanNet(t, pm.netConfigDir())
		fmt.Printf("podman  bridge %s\n", pn)
		tools = append(tools, pm.starter("podman-bridge", pn.name))
	}
	if want("docker") {
		if why := dockerEngine(); why != "" {
			fmt.Printf("docker  skipped (%s)\n", why)
		} else {
			tools = append(tools, setupDocker(t, work, dockerArchive, startRef).starter())
		}
	}
	// Networks go after every container on them: this cleanup, registered
	// after the tools' own, runs before them.
	t.Cleanup(func() {
		if bn != nil {
			bb.removeAll()
			if err := bn.remove(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if pn != nil {
			pm.removeAll()
			if err := pn.remove(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	if *only != "" {
		tools = slices.DeleteFunc(tools, func(s *starter) bool { return !want(s.name) })
		if len(tools) == 0 {
			t.Fatalf("-tools %q: no such tool (berth,berth-unconfined,berth-bridge,runc,runc-docker,podman,podman-bridge,docker; berth needs -berth)", *only)
		}
	}
	for _, s := range tools {
		if s.bridged {
			s.iters = min(*bridgeIters, *startIters)
		} else {
			s.iters = *startIters
		}
	}

	// Each tool must pass an exit code through (so that 0 means the
	// container ran) and gets two untimed warm-up starts.
	for _, s := range tools {
		if err := s.check(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for range 2 {
			if _, err := s.once(); err != nil {
				t.Fatalf("%s warm-up: %v", s.name, err)
			}
		}
		s.lingers = nil
	}
	if bb != nil {
		bb.baseline()
	}
	fmt.Printf("        set up in %.1fs\n", time.Since(start).Seconds())

	fmt.Printf("rounds  %d x %d starts per tool (bridged tools %d, spread evenly), interleaved start by start, tool order rotating; medians per round:\n",
		*rounds, *startIters, min(*bridgeIters, *startIters))
	for r := range *rounds {
		offsets := make([]int, len(tools))
		for i, s := range tools {
			offsets[i] = len(s.walls)
		}
		for it := range *startIters {
			for i := range tools {
				s := tools[(r+i)%len(tools)]
				// A tool with fewer starts per round takes its turn
				// whenever it*iters/startIters steps to the next integer.
				if s.err != nil || (it+1)*s.iters / *startIters == it*s.iters / *startIters {
					continue
				}
				d, err := s.once()
				if err != nil {
					s.err = err
					continue
				}
				s.walls = append(s.walls, d)
			}
		}
		line := fmt.Sprintf("  round %d", r+1)
		for i, s := range tools {
			if got := s.walls[offsets[i]:]; len(got) == s.iters {
				m := medianDur(got)
				s.roundMedians = append(s.roundMedians, m)
				line += fmt.Sprintf("  %s %s", s.name, ms(m))
			} else {
				line += fmt.Sprintf("  %s FAILED", s.name)
			}
		}
		fmt.Println(line)
	}

	var mems []memResult
	if *memTasks > 0 {
		if bb != nil && want("berth") {
			mems = append(mems, bb.monitorMemory(*memTasks))
		}
		if want("podman") {
			mems = append(mems, pm.conmonMemory(*memTasks))
		}
	}

	fmt.Println()
	printStartTable(os.Stdout, tools, mems)
	if bb != nil {
		bb.reportLeftovers()
	}
	fmt.Printf("\ndone in %.0fs\n", time.Since(start).Seconds())
	for _, s := range tools {
		if s.err != nil {
			t.Errorf("%s failed: %v", s.name, s.err)
		}
	}
	for _, m := range mems {
		if m.err != nil {
			t.Errorf("%s memory: %v", m.name, m.err)
		}
	}
}

// starter is one contender: a command that starts a container running
// /bin/true and removes it, timed from exec to exit.
type starter struct {
	name string
	args func(i int) []string // the i-th start (runc needs a fresh ID)
	// bridged tools start a container on a bridge network; they run
	// -bridge-iterations starts a round (iters), the others -iterations.
	bridged bool
	iters   int
	check   func() error // exit code passed through?
	// quiet, when set, names a string found in the command line of every
	// background process the tool leaves behind a start (monitor, conmon,
	// cleanup); after each start the benchmark waits until none is left,
	// so no start pays for the previous one's leftovers.
	quiet   string
	out     string // file receiving the commands' output
	n       int
	walls   []time.Duration
	lingers []time.Duration // how long background processes outlived a start
	// roundMedians holds the median of each complete round, in order.
	roundMedians []time.Duration
	err          error
}

// once runs one timed start and waits for the tool's leftovers to go.
func (s *starter) once() (time.Duration, error) {
	args := s.args(s.n)
	s.n++
	d, code, out, err := runTimed(args, s.out)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d, want 0", code)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, lastLines(out, 20))
	}
	if s.quiet != "" {
		linger, err := waitQuiet(s.quiet, quietTimeout)
		if err != nil {
			return 0, err
		}
		s.lingers = append(s.lingers, linger)
	}
	return d, nil
}

// runTimed runs args with stdout and stderr in the file out (a file, not a
// pipe: the wait ends when the command exits, not when every background
// process that inherited its output has closed it) and returns its wall
// time, exit code and output.
func runTimed(args []string, out string) (time.Duration, int, string, error) {
	f, err := os.Create(out)
	if err != nil {
		return 0, -1, "", err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	begin := time.Now()
	err = cmd.Run()
	d := time.Since(begin)
	b, _ := os.ReadFile(out)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return d, ee.ExitCode(), string(b), nil
	}
	if err != nil {
		return d, -1, string(b), err
	}
	return d, 0, string(b), nil
}

// runOut runs args untimed and returns its trimmed output, failing on a
// non-zero exit.
func runOut(args []string, out string) (string, error) {
	_, code, o, err := runTimed(args, out)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d", code)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, lastLines(o, 20))
	}
	return strings.TrimSpace(o), nil
}

// checkExit runs args and wants exit code want.
func checkExit(args []string, out string, want int) error {
	_, code, o, err := runTimed(args, out)
	if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("%s: exit code %d, want %d (the container's)\n%s", strings.Join(args, " "), code, want, lastLines(o, 20))
	}
	return nil
}

// waitQuiet waits until no other process has marker in its command line
// and returns how long that took: 0 if none was there.
func waitQuiet(marker string, timeout time.Duration) (time.Duration, error) {
	begin := time.Now()
	for first := true; ; first = false {
		pids := pidsWith(marker)
		if len(pids) == 0 {
			if first {
				return 0, nil
			}
			return time.Since(begin), nil
		}
		if time.Since(begin) > timeout {
			return 0, fmt.Errorf("processes %v (command line holding %s) still there after %v", pids, marker, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// pidsWith lists the processes, other than this one, whose command line
// contains marker.
func pidsWith(marker string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// berthBench is berth with its own state dirs and the image loaded.
type berthBench struct {
	t       *testing.T
	bin     string
	dir     string
	global  []string
	initial map[string]bool // paths under the state root before the timed starts
	// tasks counts the tasks created (and removed) so far; baseTasks, those
	// created before the timed starts.
	tasks, baseTasks int
}

func setupBerth(t *testing.T, bin, dir, archive string) *berthBench {
	b := &berthBench{t: t, bin: bin, dir: dir}
	cfg := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	b.global = []string{"--root", filepath.Join(dir, "root"), "--run-root", filepath.Join(dir, "run"), "--config-dir", cfg}
	t.Cleanup(b.removeAll)
	if _, err := runOut(b.cmd("load", "-i", archive), b.outFile()); err != nil {
		t.Fatal(err)
	}
	return b
}

// baseline records what the state root holds, and how many tasks were
// created so far, before the timed starts.
func (b *berthBench) baseline() {
	b.initial = treeSet(filepath.Join(b.dir, "root"))
	b.baseTasks = b.tasks
}

func (b *berthBench) cmd(args ...string) []string {
	return append(append([]string{b.bin}, b.global...), args...)
}

func (b *berthBench) outFile() string { return filepath.Join(b.dir, "out") }

// starters are berth and berth-unconfined, both with --network none (a
// private loopback-only namespace; bridge is berth's default), and, with
// bridge, berth-bridge (--network bridge: BERTH_BRIDGE and friends name
// the benchmark's own bridge).
func (b *berthBench) starters(bridge bool) []*starter {
	mk := func(name string, flags ...string) *starter {
		return &starter{
			name:    name,
			bridged: slices.Contains(flags, "bridge"),
			args: func(int) []string {
				b.tasks++
				return b.cmd(append(append([]string{"run", "--rm"}, flags...), startRef, "/bin/true")...)
			},
			check: func() error {
				b.tasks++
				return checkExit(b.cmd(append(append([]string{"run", "--rm"}, flags...), startRef, "sh", "-c", "exit 3")...), b.outFile(), 3)
			},
			quiet: b.dir + "/",
			out:   b.outFile(),
		}
	}
	s := []*starter{mk("berth", "--network", "none"), mk("berth-unconfined", "--network", "none", "--security-opt", "seccomp=unconfined")}
	if bridge {
		s = append(s, mk("berth-bridge", "--network", "bridge"))
	}
	return s
}

// monitorMemory starts n detached tasks and reads their monitors' memory.
func (b *berthBench) monitorMemory(n int) memResult {
	res := memResult{name: "berth monitor"}
	var ids []string
	defer func() {
		if len(ids) > 0 {
			_, _ = runOut(b.cmd(append([]string{"rm", "-f"}, ids...)...), b.outFile())
		}
	}()
	for i := range n {
		b.tasks++
		id, err := runOut(b.cmd("run", "-d", "--network", "none", "--name", fmt.Sprintf("bench-mem-%d", i), startRef, "sleep", "60"), b.outFile())
		if err != nil {
			res.err = err
			return res
		}
		ids = append(ids, lastLines(id, 1))
	}
	time.Sleep(time.Second) // let the monitors settle
	for _, id := range ids {
		js, err := runOut(b.cmd("inspect", id), b.outFile())
		if err != nil {
			res.err = err
			return res
		}
		var tasks []struct {
			Status     string `json:"status"`
			MonitorPID int    `json:"monitorPid"`
		}
		if err := json.Unmarshal([]byte(js), &tasks); err != nil || len(tasks) != 1 {
			res.err = fmt.Errorf("berth inspect %s: %d tasks, %v", id, len(tasks), err)
			return res
		}
		if tasks[0].Status != "RUNNING" || tasks[0].MonitorPID <= 0 {
			res.err = fmt.Errorf("berth inspect %s: status %s, monitor PID %d", id, tasks[0].Status, tasks[0].MonitorPID)
			return res
		}
		if err := res.add(tasks[0].MonitorPID); err != nil {
			res.err = err
			return res
		}
	}
	return res
}

// removeAll removes every task (cleanup, also after a failure).
func (b *berthBench) removeAll() {
	ids, err := runOut(b.cmd("ps", "-aq"), b.outFile())
	if err != nil || ids == "" {
		return
	}
	if _, err := runOut(b.cmd(append([]string{"rm", "-f"}, strings.Fields(ids)...)...), b.outFile()); err != nil {
		b.t.Errorf("cleanup: %v", err)
	}
}

// reportLeftovers prints what the state root holds now, with every task
// removed, that it did not hold before the timed starts: new paths by the
// directory that holds them (the topmost new ones only).
func (b *berthBench) reportLeftovers() {
	b.removeAll()
	now := treeSet(filepath.Join(b.dir, "root"))
	byDir := map[string][]string{}
	for p := range now {
		if !b.initial[p] && (b.initial[filepath.Dir(p)] || filepath.Dir(p) == ".") {
			byDir[filepath.Dir(p)] = append(byDir[filepath.Dir(p)], filepath.Base(p))
		}
	}
	n := b.tasks - b.baseTasks
	if len(byDir) == 0 {
		fmt.Printf("\nberth's state root: nothing left of the %d tasks created and removed since the warm-up\n", n)
		return
	}
	fmt.Printf("\nberth's state root: left behind by the %d tasks created and removed since the warm-up:\n", n)
	for _, dir := range slices.Sorted(maps.Keys(byDir)) {
		names := byDir[dir]
		slices.Sort(names)
		fmt.Printf("  %s/: %d new entries, e.g. %s\n", dir, len(names), names[0])
	}
}

// treeSet lists every path under root, relative to it.
func treeSet(root string) map[string]bool {
	set := map[string]bool{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			set[rel] = true
		}
		return nil
	})
	return set
}

// runcBench is a runc bundle: the image unpacked by umoci, config.json from
// `runc spec` running /bin/true without a terminal; and dockerBundle, the
// same rootfs with the config.json berth generates (runtime/spec: Docker's
// capabilities, seccomp profile, masked paths, mounts), the equivalent of
// what berth starts: runc with it is what Docker's defaults cost runc.
type runcBench struct {
	dir, root, bundle, checkBundle string
	dockerBundle                   string
	prefix                         string // container IDs
}

func setupRunc(t *testing.T, dir, layoutDir string) *runcBench {
	rb := &runcBench{dir: dir, root: filepath.Join(dir, "state"), bundle: filepath.Join(dir, "bundle"),
		checkBundle: filepath.Join(dir, "check"), prefix: fmt.Sprintf("berth-bench-%d-", os.Getpid())}
	if err := os.MkdirAll(rb.checkBundle, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rb.removeAll)
	out := filepath.Join(dir, "out")
	if _, err := runOut([]string{"umoci", "unpack", "--image", layoutDir + ":" + tagOf(startRef), rb.bundle}, out); err != nil {
		t.Fatal(err)
	}
	// umoci wrote a config.json of its own; runc spec refuses to overwrite one.
	if err := os.Remove(filepath.Join(rb.bundle, "config.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := runOut([]string{"runc", "spec", "--bundle", rb.bundle}, out); err != nil {
		t.Fatal(err)
	}
	edit := func(bundle, rootfs string, args ...string) {
		p := filepath.Join(rb.bundle, "config.json")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var s specs.Spec
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		s.Process.Args, s.Process.Terminal, s.Root.Path = args, false, rootfs
		if b, err = json.MarshalIndent(&s, "", "\t"); err == nil {
			err = os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rootfs := filepath.Join(rb.bundle, "rootfs")
	edit(rb.checkBundle, rootfs, "sh", "-c", "exit 3")
	edit(rb.bundle, "rootfs", "/bin/true")

	// Its own copy of the rootfs: runc creates missing mount points in it.
	rb.dockerBundle = filepath.Join(dir, "docker-bundle")
	if err := os.MkdirAll(rb.dockerBundle, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := runOut([]string{"cp", "-a", rootfs, filepath.Join(rb.dockerBundle, "rootfs")}, out); err != nil {
		t.Fatal(err)
	}
	ds, err := spec.Generate(spec.ImageConfig{Env: []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}},
		spec.Options{ID: strings.Repeat("d", 64), Cmd: []string{"/bin/true"}}, filepath.Join(rb.dockerBundle, "rootfs"))
	if err != nil {
		t.Fatalf("berth's spec for the runc-docker bundle: %v", err)
	}
	ds.Root = &specs.Root{Path: "rootfs"}
	b, err := json.MarshalIndent(ds, "", "\t")
	if err == nil {
		err = os.WriteFile(filepath.Join(rb.dockerBundle, "config.json"), b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

func tagOf(ref string) string { return ref[strings.LastIndex(ref, ":")+1:] }

// dockerStarter runs the bundle with berth's (Docker's default) config.
func (rb *runcBench) dockerStarter() *starter {
	st := rb.starter()
	st.name = "runc-docker"
	st.args = func(i int) []string {
		return []string{"runc", "--root", rb.root, "run", "--bundle", rb.dockerBundle, rb.prefix + "d" + strconv.Itoa(i)}
	}
	return st
}

func (rb *runcBench) starter() *starter {
	out := filepath.Join(rb.dir, "out")
	return &starter{
		name: "runc",
		args: func(i int) []string {
			return []string{"runc", "--root", rb.root, "run", "--bundle", rb.bundle, rb.prefix + strconv.Itoa(i)}
		},
		check: func() error {
			return checkExit([]string{"runc", "--root", rb.root, "run", "--bundle", rb.checkBundle, rb.prefix + "check"}, out, 3)
		},
		quiet: rb.dir + "/",
		out:   out,
	}
}

// removeAll deletes every container left in runc's state dir.
func (rb *runcBench) removeAll() {
	out := filepath.Join(rb.dir, "out")
	ids, err := runOut([]string{"runc", "--root", rb.root, "list", "-q"}, out)
	if err != nil {
		return
	}
	for _, id := range strings.Fields(ids) {
		_, _ = runOut([]string{"runc", "--root", rb.root, "delete", "-f", id}, out)
	}
}

// podmanBench is podman with its own storage, the image loaded.
type podmanBench struct {
	t      *testing.T
	dir    string
	global []string
	limits []string // --ulimit flags pinning the current limits
}

func setupPodman(t *testing.T, dir, archive string) *podmanBench {
	pb := &podmanBench{t: t, dir: dir, global: []string{"podman",
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--network-config-dir", filepath.Join(dir, "networks"), "--storage-driver", "overlay", "--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime=runc"}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// podman's default ulimits exceed the hard limits here, and root lacks
	// CAP_SYS_RESOURCE to raise them: pin them to the current ones. podman
	// (4.3 here) also lowers its own RLIMIT_NPROC to 32768 when it starts,
	// so its containers can't be given more than that.
	for _, l := range []struct {
		name string
		res  int
		max  uint64
	}{{"nofile", unix.RLIMIT_NOFILE, math.MaxUint64}, {"nproc", unix.RLIMIT_NPROC, 32768}} {
		var rl unix.Rlimit
		if err := unix.Getrlimit(l.res, &rl); err != nil {
			t.Fatal(err)
		}
		pb.limits = append(pb.limits, "--ulimit", fmt.Sprintf("%s=%s:%s", l.name, rlim(min(rl.Cur, l.max)), rlim(min(rl.Max, l.max))))
	}
	t.Cleanup(pb.removeAll)
	if _, err := runOut(pb.cmd("load", "-q", "-i", archive), pb.outFile()); err != nil {
		t.Fatal(err)
	}
	return pb
}

func rlim(v uint64) string {
	if v == math.MaxUint64 {
		return "-1"
	}
	return strconv.FormatUint(v, 10)
}

func (pb *podmanBench) cmd(args ...string) []string {
	return append(slices.Clone(pb.global), args...)
}

func (pb *podmanBench) outFile() string { return filepath.Join(pb.dir, "out") }

// netConfigDir is podman's --network-config-dir, empty but for the
// benchmark's own networks.
func (pb *podmanBench) netConfigDir() string { return filepath.Join(pb.dir, "networks") }

func (pb *podmanBench) runArgs(network string, extra ...string) []string {
	return pb.cmd(append(append([]string{"run", "--network=" + network}, pb.limits...), extra...)...)
}

// starter is podman run --rm on network: none, or a bridge network.
func (pb *podmanBench) starter(name, network string) *starter {
	return &starter{
		name:    name,
		bridged: network != "none",
		args:    func(int) []string { return pb.runArgs(network, "--rm", startRef, "/bin/true") },
		check: func() error {
			return checkExit(pb.runArgs(network, "--rm", startRef, "sh", "-c", "exit 3"), pb.outFile(), 3)
		},
		quiet: pb.dir + "/",
		out:   pb.outFile(),
	}
}

// conmonMemory starts n detached containers and reads their conmons' memory.
func (pb *podmanBench) conmonMemory(n int) memResult {
	res := memResult{name: "podman conmon"}
	var ids []string
	defer func() {
		if len(ids) > 0 {
			_, _ = runOut(pb.cmd(append([]string{"rm", "-f", "-t", "0"}, ids...)...), pb.outFile())
		}
	}()
	for range n {
		id, err := runOut(pb.runArgs("none", "-d", startRef, "sleep", "60"), pb.outFile())
		if err != nil {
			res.err = err
			return res
		}
		ids = append(ids, lastLines(id, 1))
	}
	time.Sleep(time.Second)
	for _, id := range ids {
		s, err := runOut(pb.cmd("inspect", "--format", "{{.State.ConmonPid}}", id), pb.outFile())
		if err != nil {
			res.err = err
			return res
		}
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			res.err = fmt.Errorf("podman inspect %s: conmon PID %q", id, s)
			return res
		}
		if err := res.add(pid); err != nil {
			res.err = err
			return res
		}
	}
	return res
}

// removeAll removes every container (cleanup, also after a failure).
func (pb *podmanBench) removeAll() {
	if _, err := runOut(pb.cmd("rm", "-a", "-f", "-t", "0"), pb.outFile()); err != nil {
		pb.t.Errorf("cleanup: %v", err)
	}
}

// memResult is the memory of one kind of per-container helper process.
type memResult struct {
	name     string
	rss, pss []int64 // KiB, one per process
	err      error
}

// add reads VmRSS from /proc/PID/status and Pss from smaps_rollup.
func (m *memResult) add(pid int) error {
	rss, err := procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	if err != nil {
		return err
	}
	pss, err := procKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	if err != nil {
		return err
	}
	m.rss, m.pss = append(m.rss, rss), append(m.pss, pss)
	return nil
}

// procKiB returns the "kB" value of the first line starting with key.
func procKiB(file, key string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s line", file, key)
}

// printStartTable prints median (min-max) wall time per start, ratios
// against the targets, and the helpers' memory.
func printStartTable(w io.Writer, tools []*starter, mems []memResult) {
	fmt.Fprintf(w, "%-18s %5s  %-34s %s\n", "tool", "runs", "wall per start: median (min-max)", "outlived by its processes")
	byName := map[string]*starter{}
	for _, s := range tools {
		byName[s.name] = s
		if len(s.walls) > 0 {
			lo, hi := slices.Min(s.walls), slices.Max(s.walls)
			fmt.Fprintf(w, "%-18s %5d  %-34s %s\n", s.name, len(s.walls),
				fmt.Sprintf("%s (%s-%s)", ms(medianDur(s.walls)), ms(lo), ms(hi)), lingerSummary(s.lingers))
		}
		if s.err != nil {
			fmt.Fprintf(w, "%-18s FAILED after %d good starts: %s\n", s.name, len(s.walls), firstLine(s.err.Error()))
		}
	}

	ratioLine := func(a, b, target string, ok func(float64) bool) {
		sa, sb := byName[a], byName[b]
		if sa == nil || sb == nil || len(sa.walls) == 0 || len(sb.walls) == 0 {
			return
		}
		r := float64(medianDur(sa.walls)) / float64(medianDur(sb.walls))
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := range min(len(sa.roundMedians), len(sb.roundMedians)) {
			x := float64(sa.roundMedians[i]) / float64(sb.roundMedians[i])
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
		rng := ""
		if !math.IsInf(lo, 0) {
			rng = fmt.Sprintf("[%.2f-%.2f]", lo, hi)
		}
		verdict := ""
		if target != "" {
			verdict = "  target " + target + ": "
			if ok(r) {
				verdict += "met"
			} else {
				verdict += "MISSED"
			}
		}
		fmt.Fprintf(w, "%-26s = %5.2fx %-13s%s\n", a+"/"+b, r, rng, verdict)
	}
	fmt.Fprintln(w, "\nratios of medians (in brackets: lowest and highest ratio of one round's medians)")
	ratioLine("berth", "runc-docker", "<= 1.3x", func(r float64) bool { return r <= 1.3 })
	ratioLine("berth", "runc", "", nil)
	ratioLine("podman", "berth", ">= 4x", func(r float64) bool { return r >= 4 })
	ratioLine("podman-bridge", "berth-bridge", ">= 5x", func(r float64) bool { return r >= 5 })
	ratioLine("docker", "berth-bridge", ">= 5x", func(r float64) bool { return r >= 5 })
	ratioLine("berth-unconfined", "runc", "", nil)
	ratioLine("berth-bridge", "berth", "", nil)
	ratioLine("podman-bridge", "podman", "", nil)
	ratioLine("berth", "berth-unconfined", "", nil)
	ratioLine("podman", "runc", "", nil)
	ratioLine("runc-docker", "runc", "", nil)

	if len(mems) == 0 {
		return
	}
	fmt.Fprintln(w, "\nper-task helper memory, mean (min-max) over the tasks running together")
	for _, m := range mems {
		if m.err != nil {
			fmt.Fprintf(w, "%-14s FAILED: %s\n", m.name, firstLine(m.err.Error()))
			continue
		}
		fmt.Fprintf(w, "%-14s %d tasks  RSS %s  PSS %s\n", m.name, len(m.rss), kibSpread(m.rss), kibSpread(m.pss))
	}
}

// lingerSummary says how many starts left processes behind after the
// command exited, and for how long.
func lingerSummary(ls []time.Duration) string {
	var left []time.Duration
	for _, l := range ls {
		if l > 0 {
			left = append(left, l)
		}
	}
	if len(left) == 0 {
		return fmt.Sprintf("never (%d starts)", len(ls))
	}
	return fmt.Sprintf("%d of %d starts, median %s (max %s)", len(left), len(ls), ms(medianDur(left)), ms(slices.Max(left)))
}

func kibSpread(v []int64) string {
	var sum int64
	for _, x := range v {
		sum += x
	}
	return fmt.Sprintf("%5.2f MiB (%.2f-%.2f)", float64(sum)/float64(len(v))/1024,
		float64(slices.Min(v))/1024, float64(slices.Max(v))/1024)
}

func medianDur(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	return (s[(n-1)/2] + s[n/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
