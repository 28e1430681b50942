//go:build linux

package runtime

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/spec"
)

// TestSupervisorLogWriter feeds the same chunks through logs.go's
// streamWriter and the C supervisor's writer and compares the files they
// leave byte for byte, rotated ones included: line cutting (16 KiB lines,
// final partial lines), encoding/json's escaping (HTML characters, U+2028
// and U+2029, control characters, invalid UTF-8) and the timestamps.
func TestSupervisorLogWriter(t *testing.T) {
	edge := [][]byte{
		[]byte("plain\n"), []byte("<a href='x'>&amp;</a>\n"), []byte("\u2028\u2029 line seps\n"),
		[]byte("tab\there\r\nbs\\ quote\" \b\f\x00\x01\x1f\x7f\n"), []byte("\xff\xfe invalid \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80\n"),
		[]byte("trunc \xe2\x82"), []byte("\xf0\x9f\x98\x80 emoji \xef\xbf\xbd real fffd\n"), []byte("\xe2\x80\xa8"),
		bytes.Repeat([]byte("x"), maxLogLine-1), bytes.Repeat([]byte("y"), maxLogLine), bytes.Repeat([]byte("z"), maxLogLine+1),
		[]byte("\n\n\n"), []byte("no newline at the end"), {}, bytes.Repeat([]byte("é"), 9000),
	}
	// A handful of fixed clocks: whole seconds (no fraction), trailing
	// zeros, every digit.
	times := []time.Time{
		time.Date(2026, 11, 26, 4, 5, 6, 0, time.UTC), time.Date(1999, 1, 2, 3, 4, 5, 120000000, time.UTC),
		time.Date(2030, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Unix(1700000000, 1).In(time.FixedZone("X", 3600)),
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab\n<>&\"\\\x00\x1f\x7f\xe2\x80\xa8\xa9\xc3\xa9\xff\xf0\x9f\x98\x80 ")
	for round := 0; round < 300; round++ {
		var chunks [][]byte
		var streams []int
		n := 1 + rnd.IntN(12)
		for i := 0; i < n; i++ {
			var c []byte
			switch k := rnd.IntN(4); {
			case k == 0:
				c = edge[rnd.IntN(len(edge))]
			case k == 1:
				// Random bytes, any value.
				c = make([]byte, rnd.IntN(3000))
				for j := range c {
					c[j] = byte(rnd.UintN(256))
				}
			default:
				// Bytes JSON and UTF-8 care about, sometimes long.
				size := rnd.IntN(200)
				if rnd.IntN(5) == 0 {
					size = rnd.IntN(supReadChunk + 1)
				}
				c = make([]byte, size)
				for j := range c {
					c[j] = alphabet[rnd.IntN(len(alphabet))]
				}
			}
			chunks = append(chunks, c)
			streams = append(streams, rnd.IntN(2))
		}
		maxSize := int64(1024 + rnd.IntN(100000))
		maxFiles := 1 + rnd.IntN(4)
		tm := times[rnd.IntN(len(times))]
		dir := t.TempDir()
		goPath, cPath := filepath.Join(dir, "go.log"), filepath.Join(dir, "c.log")
		// Both start from the same non-empty file sometimes: the size
		// found at open counts toward the first rotation.
		if rnd.IntN(3) == 0 {
			pre := bytes.Repeat([]byte("{}\n"), rnd.IntN(400))
			os.WriteFile(goPath, pre, 0o640)
			os.WriteFile(cPath, pre, 0o640)
		}
		lf, err := openLogFile(goPath, maxSize, maxFiles)
		if err != nil {
			t.Fatal(err)
		}
		now := func() time.Time { return tm }
		ws := []*streamWriter{{log: lf, stream: "stdout", now: now}, {log: lf, stream: "stderr", now: now}}
		for i, c := range chunks {
			ws[streams[i]].Write(c)
		}
		ws[0].flush()
		ws[1].flush()
		lf.Close()
		if err := supTestWriteLog(cPath, maxSize, maxFiles, chunks, streams, tm); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < maxFiles+1; i++ {
			suffix := ""
			if i > 0 {
				suffix = "." + strconv.Itoa(i)
			}
			g, gerr := os.ReadFile(goPath + suffix)
			c, cerr := os.ReadFile(cPath + suffix)
			if (gerr == nil) != (cerr == nil) || !bytes.Equal(g, c) {
				t.Fatalf("round %d (max size %d, %d files), file%s differs (go err %v, c err %v):\ngo: %s\nc:  %s\nchunks %q",
					round, maxSize, maxFiles, suffix, gerr, cerr, firstDiff(g, c), firstDiff(c, g), chunks)
			}
			if gerr == nil {
				gi, _ := os.Stat(goPath + suffix)
				ci, _ := os.Stat(cPath + suffix)
				if gi.Mode() != ci.Mode() {
					t.Fatalf("file%s mode go %v, c %v", suffix, gi.Mode(), ci.Mode())
				}
			}
		}
	}
}

// firstDiff is a's part around where it first differs from b.
func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo, hi := max(0, i-80), min(len(a), i+80)
	return fmt.Sprintf("@%d %q", i, a[lo:hi])
}

// TestRootSupervisorMultiContainer runs a task of two containers without
// TTY or stdin: its monitor turns into the C supervisor, both logs fill,
// each exit is recorded with its own code and signal, and the task stops
// when the second has exited.
func TestRootSupervisorMultiContainer(t *testing.T) {
	r, layer := newRootRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctr := func(name, script string) ContainerConfig {
		return ContainerConfig{
			Name: name, Image: "busybox", Layers: []string{layer},
			Spec: func(rootfs string) (*specs.Spec, error) {
				return spec.Generate(spec.ImageConfig{Cmd: []string{"sh", "-c", script}, Env: []string{"PATH=/bin"}},
					spec.Options{Hostname: name}, rootfs)
			},
		}
	}
	task, err := r.Create(ctx, TaskConfig{Containers: []ContainerConfig{
		ctr("first", "echo first out; echo first err >&2; sleep 0.5; exit 4"),
		// A partial line across the handovers of the first's exit.
		ctr("second", "trap 'echo tial; echo bye; exit 9' USR1; echo second out; printf 'par<'; while true; do sleep 0.1; done"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	removeOnCleanup(t, r, task.ID)
	if err := r.Start(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Get(task.ID)
	mon := got.MonitorPID
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", mon))
		if strings.Contains(string(st), "\nThreads:\t1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("monitor %d never became the supervisor:\n%s", mon, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The first exits and is recorded at once; the second runs on, under
	// a supervisor again, until told to go.
	time.Sleep(1500 * time.Millisecond)
	mid, _ := r.Get(task.ID)
	if c := mid.Container("first"); mid.Status != TaskRunning || c.Status != ContainerStopped || c.ExitCode == nil || *c.ExitCode != 4 ||
		mid.Container("second").Status != ContainerRunning || mid.MonitorPID != mon {
		t.Errorf("after the first exited: %+v\nfirst %+v", mid, c)
	}
	if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", mon)); !strings.Contains(string(st), "\nThreads:\t1\n") {
		t.Errorf("monitor after the first exit:\n%s", st)
	}
	if err := r.Kill(task.ID, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	final, err := r.Wait(ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	first, second := final.Container("first"), final.Container("second")
	if final.Status != TaskStopped || first.ExitCode == nil || *first.ExitCode != 4 || second.ExitCode == nil || *second.ExitCode != 9 ||
		first.Finished.After(second.Finished) || first.Finished.IsZero() {
		t.Errorf("final: %+v\nfirst %+v\nsecond %+v", final, first, second)
	}
	for name, want := range map[string][2]string{"first": {"first out\n", "first err\n"}, "second": {"second out\npar<tial\nbye\n", ""}} {
		var out, errb bytes.Buffer
		if err := r.Logs(task.ID, name, LogOptions{Tail: -1}, &out, &errb); err != nil || out.String() != want[0] || errb.String() != want[1] {
			t.Errorf("logs of %s: %v %q %q", name, err, out.String(), errb.String())
		}
	}
}
