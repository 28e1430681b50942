//go:build linux

package bench

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/registry"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

var (
	berthBin  = flag.String("berth", "", "berth binary to benchmark (empty: run the peers only)")
	rounds    = flag.Int("rounds", 5, "rounds; each runs every tool once, cold")
	only      = flag.String("tools", "", "comma-separated tools to run (berth,podman,skopeo+umoci); empty: all")
	layerSize = flag.Int64("layer-size", 48<<20, "uncompressed bytes of each generated layer")
	smallSize = flag.Int64("small-files-size", 60<<20, "uncompressed bytes of the small-files layer (~4 KiB a file)")
)

// stepTimeout bounds one command, so a hung tool fails the round instead of
// the whole test timing out.
const stepTimeout = 10 * time.Minute

// TestPullBench is the side-by-side pull benchmark described in pull.sh.
func TestPullBench(t *testing.T) {
	if os.Getenv("BERTH_BENCH") != "1" {
		t.Skip("pull benchmark: runs only with BERTH_BENCH=1; use `sudo sh bench/pull.sh bin/berth`")
	}
	if os.Geteuid() != 0 {
		t.Fatal("pull benchmark needs root (podman's overlay storage): sudo sh bench/pull.sh")
	}
	for _, bin := range []string{"podman", "skopeo", "umoci"} {
		testrig.RequireBinary(t, bin, bin)
	}
	work := t.TempDir()
	t.Cleanup(func() { unmountUnder(work) }) // before TempDir's removal
	empty := filepath.Join(work, "empty")    // berth's --config-dir
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	img := benchImage(t)
	want, imageBytes, stats := expectedTree(t, img)
	reg := registry.Start(t)
	ref := reg.Ref("bench/pull:latest")
	testimage.Push(t, img, ref, reg.RemoteOptions()...)
	fmt.Printf("image   %s: %s\n", ref, stats)
	fmt.Printf("        generated, read back and pushed in %.1fs\n", time.Since(start).Seconds())

	tools := peers(ref)
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
		tools = append([]*tool{berthTool(bin, ref, empty)}, tools...)
	} else {
		fmt.Println("berth   skipped: no -berth binary given; ratios are not printed")
	}

	if *only != "" {
		tools = slices.DeleteFunc(tools, func(tl *tool) bool { return !slices.Contains(strings.Split(*only, ","), tl.name) })
		if len(tools) == 0 {
			t.Fatalf("-tools %q: no such tool (berth needs -berth)", *only)
		}
	}

	var fsst syscall.Statfs_t
	if err := syscall.Statfs(work, &fsst); err != nil {
		t.Fatal(err)
	}
	need := uint64(*rounds*len(tools)) * uint64(imageBytes) * 11 / 10
	if free := fsst.Bavail * uint64(fsst.Bsize); free < need {
		t.Fatalf("%s: %.1f GB free, the rounds need about %.1f GB (fewer -rounds, or point TMPDIR elsewhere)", work, float64(free)/1e9, float64(need)/1e9)
	}

	// Every round's trees are kept until the test ends: on ext4 without a
	// journal (as here), creating files just after deleting thousands is
	// several times slower (the inode allocator skips inodes deleted in the
	// last dirty_expire seconds), which would slow down whichever tool runs
	// after a deletion.
	fmt.Printf("rounds  %d, cold stores, warm page cache, tool order rotating:\n", *rounds)
	for r := range *rounds {
		for i := range tools {
			tl := tools[(r+i)%len(tools)]
			if tl.err != nil {
				continue // failed in an earlier round: report that, don't retry
			}
			dir := filepath.Join(work, fmt.Sprintf("%s-%d", tl.file, r))
			tl.runRound(dir, want)
			unmountUnder(dir)
			if tl.err != nil {
				fmt.Printf("  round %d %-13s FAILED\n", r+1, tl.name)
			} else {
				fmt.Printf("  round %d %-13s %s\n", r+1, tl.name, tl.samples[len(tl.samples)-1])
			}
		}
	}

	fmt.Println()
	printTable(os.Stdout, tools)
	fmt.Printf("\ndone in %.0fs; removing the unpacked trees follows\n", time.Since(start).Seconds())
	for _, tl := range tools {
		if tl.err != nil {
			t.Errorf("%s failed: %v", tl.name, tl.err)
		}
	}
}

// benchImage is testimage.Random's 5-layer image (random blobs, text, small
// files, links, random blobs) with the small-files layer taken from a bigger
// Random image, so that it holds ~15,000 files while the whole image stays
// near 200 MB compressed.
func benchImage(t *testing.T) v1.Image {
	base := testimage.Random(t, 5, *layerSize)
	small := testimage.Random(t, testimage.RandomSmallFiles+1, *smallSize)
	layers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	smallLayers, err := small.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layers[testimage.RandomSmallFiles] = smallLayers[testimage.RandomSmallFiles]

	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	history := cf.History
	cf.RootFS.DiffIDs, cf.History = nil, nil
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, History: history[i]}
	}
	if img, err = mutate.Append(img, adds...); err != nil {
		t.Fatal(err)
	}
	return img
}

// expectedTree reads the image's layers back (checking their DiffIDs) and
// returns every entry under data/layerN/ by cleaned path, hard links
// resolved to the entry they link to; the image's compressed plus file
// bytes; and a one-line summary of the image.
func expectedTree(t *testing.T, img v1.Image) (map[string]testimage.Entry, int64, string) {
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]testimage.Entry{}
	var compressed, uncompressed int64
	count := map[byte]int{}
	for _, l := range layers {
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		compressed += size
		for _, e := range testimage.Entries(t, l) {
			name := path.Clean(e.Name)
			count[e.Type]++
			uncompressed += e.Size
			if !strings.HasPrefix(name, "data/layer") {
				continue
			}
			if e.Type == tar.TypeLink {
				target, ok := want[path.Clean(e.Linkname)]
				if !ok {
					t.Fatalf("%s: hard link to %s, which comes later or not at all", name, e.Linkname)
				}
				target.Type = tar.TypeLink // both names must share an inode
				want[path.Clean(e.Linkname)] = target
				e = target
			}
			want[name] = e
		}
	}
	total := 0
	for _, n := range count {
		total += n
	}
	return want, compressed + uncompressed, fmt.Sprintf("%d layers, %.1f MB compressed, %.1f MB of file data; %d entries: %d files, %d hard links, %d symlinks, %d dirs",
		len(layers), mb(compressed), mb(uncompressed), total,
		count[tar.TypeReg], count[tar.TypeLink], count[tar.TypeSymlink], count[tar.TypeDir])
}

// tool is one contender: steps run in order, each timed; the tool's figure
// is their sum.
type tool struct {
	name, file string // display name, directory name
	steps      []step
	samples    []sample // one per successful round
	err        error    // first failure
}

type step struct {
	name string
	args func(dir string) []string
}

type sample struct {
	wall, cpu time.Duration
	sys       time.Duration // the kernel's part of cpu
	steps     []sample      // per step, when the tool has several
}

func (s sample) String() string {
	str := fmt.Sprintf("wall %6.2fs  cpu %6.2fs (sys %5.2fs)", s.wall.Seconds(), s.cpu.Seconds(), s.sys.Seconds())
	for _, p := range s.steps {
		str += fmt.Sprintf("  [%.2fs/%.2fs]", p.wall.Seconds(), p.cpu.Seconds())
	}
	return str
}

func berthTool(bin, ref, emptyDir string) *tool {
	return &tool{name: "berth", file: "berth", steps: []step{{"berth pull", func(dir string) []string {
		return []string{bin, "pull", "-q", "--root", filepath.Join(dir, "root"),
			"--run-root", filepath.Join(dir, "run"), "--config-dir", emptyDir, ref}
	}}}}
}

func peers(ref string) []*tool {
	podman := &tool{name: "podman", file: "podman", steps: []step{{"podman pull", func(dir string) []string {
		return []string{"podman", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "overlay", "--cgroup-manager=cgroupfs",
			"--events-backend=file", "--runtime=runc", "pull", "-q", "--tls-verify=false", ref}
	}}}}
	skopeo := &tool{name: "skopeo+umoci", file: "skopeo-umoci", steps: []step{
		{"skopeo copy", func(dir string) []string {
			return []string{"skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + ref, "oci:" + filepath.Join(dir, "layout") + ":bench"}
		}},
		{"umoci unpack", func(dir string) []string {
			return []string{"umoci", "unpack", "--image", filepath.Join(dir, "layout") + ":bench", filepath.Join(dir, "bundle")}
		}},
	}}
	return []*tool{podman, skopeo}
}

// runRound runs the tool's steps in a fresh dir and checks the tree it
// unpacked; it records a sample, or the failure in tl.err.
func (tl *tool) runRound(dir string, want map[string]testimage.Entry) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		tl.err = err
		return
	}
	var total sample
	for _, st := range tl.steps {
		syscall.Sync() // don't make this step pay for earlier writeback
		s, err := timed(st.args(dir))
		if err != nil {
			tl.err = fmt.Errorf("%s: %w", st.name, err)
			return
		}
		total.wall += s.wall
		total.cpu += s.cpu
		total.sys += s.sys
		if len(tl.steps) > 1 {
			total.steps = append(total.steps, s)
		}
	}
	if err := checkTree(dir, want); err != nil {
		tl.err = fmt.Errorf("unpacked tree under %s is wrong: %w", dir, err)
		return
	}
	tl.samples = append(tl.samples, total)
}

// timed runs args and returns its wall-clock time and CPU time (user+sys of
// the child and of every descendant it waited for).
func timed(args []string) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	s := sample{wall: time.Since(start)}
	if cmd.ProcessState != nil {
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		s.sys = time.Duration(ru.Stime.Nano())
	}
	if err != nil {
		return s, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, lastLines(out.String(), 20))
	}
	return s, nil
}

// checkTree walks dir and checks every path it finds under some
// .../data/layerN/ against want — type, permissions, size, content, symlink
// target, hard links sharing an inode — and that none of want is missing.
// Each tool keeps the unpacked layers in its own place under dir (berth's
// snapshots/<chain>/fs, podman's overlay/<id>/diff, umoci's bundle/rootfs).
func checkTree(dir string, want map[string]testimage.Entry) error {
	seen := map[string]bool{}
	inodes := map[string]uint64{} // hard-linked file's tree and first name -> inode
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		i := strings.Index(p, "/data/layer")
		if i < 0 {
			return nil
		}
		name := p[i+1:]
		e, ok := want[name]
		if !ok {
			return fmt.Errorf("unexpected %s", p)
		}
		seen[name] = true
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := checkEntry(p, fi, e); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if e.Type == tar.TypeLink {
			key, ino := p[:i]+"\x00"+e.Name, fi.Sys().(*syscall.Stat_t).Ino
			if first, ok := inodes[key]; ok && first != ino {
				return fmt.Errorf("%s: not a hard link of %s", p, e.Name)
			}
			inodes[key] = ino
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(seen) != len(want) {
		var missing []string
		for name := range want {
			if !seen[name] {
				missing = append(missing, name)
			}
		}
		slices.Sort(missing)
		return fmt.Errorf("%d of %d paths missing, first %s", len(missing), len(want), missing[0])
	}
	return nil
}

func checkEntry(p string, fi fs.FileInfo, e testimage.Entry) error {
	if e.Type != tar.TypeSymlink {
		if got, want := fi.Mode().Perm(), fs.FileMode(e.Mode).Perm(); got != want {
			return fmt.Errorf("mode %v, want %v", got, want)
		}
	}
	switch e.Type {
	case tar.TypeDir:
		if !fi.IsDir() {
			return fmt.Errorf("%v, want a directory", fi.Mode().Type())
		}
	case tar.TypeSymlink:
		if target, err := os.Readlink(p); err != nil || target != e.Linkname {
			return fmt.Errorf("symlink to %q (%v), want %q", target, err, e.Linkname)
		}
	case tar.TypeReg, tar.TypeLink:
		if !fi.Mode().IsRegular() || fi.Size() != e.Size {
			return fmt.Errorf("%v of %d bytes, want a %d-byte file", fi.Mode().Type(), fi.Size(), e.Size)
		}
		if got, err := fileDigest(p); err != nil || got != e.Digest {
			return fmt.Errorf("content %v (%v), want %v", got, err, e.Digest)
		}
	default:
		return fmt.Errorf("unexpected tar type %q in the image", e.Type)
	}
	return nil
}

func fileDigest(p string) (v1.Hash, error) {
	f, err := os.Open(p)
	if err != nil {
		return v1.Hash{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return v1.Hash{}, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}, nil
}

// printTable prints median and min-max wall and CPU time per tool (and per
// step of multi-step tools), then each tool's ratios of medians to berth's.
func printTable(w io.Writer, tools []*tool) {
	fmt.Fprintf(w, "%-16s %5s  %-24s %-24s\n", "tool", "runs", "wall median (min-max)", "cpu median (min-max)")
	var base *tool
	if tools[0].name == "berth" && len(tools[0].samples) > 0 {
		base = tools[0]
	}
	row := func(name string, n int, get func(sample) sample, samples []sample) {
		wall, cpu := spread(samples, func(s sample) time.Duration { return get(s).wall }),
			spread(samples, func(s sample) time.Duration { return get(s).cpu })
		fmt.Fprintf(w, "%-16s %5d  %-24s %-24s\n", name, n, wall, cpu)
	}
	for _, tl := range tools {
		if len(tl.samples) > 0 {
			row(tl.name, len(tl.samples), func(s sample) sample { return s }, tl.samples)
			if len(tl.steps) > 1 {
				for i, st := range tl.steps {
					row("  "+st.name, len(tl.samples), func(s sample) sample { return s.steps[i] }, tl.samples)
				}
			}
		}
		if tl.err != nil {
			fmt.Fprintf(w, "%-16s FAILED after %d good rounds: %s\n", tl.name, len(tl.samples), firstLine(tl.err.Error()))
		}
	}
	if base == nil || len(tools) < 2 {
		return
	}
	fmt.Fprintln(w)
	bw, bc := median(base.samples, wallOf), median(base.samples, cpuOf)
	fmt.Fprintln(w, "ratios of medians (in brackets: the lowest and highest ratio within one round)")
	for _, tl := range tools[1:] {
		if len(tl.samples) == 0 {
			continue
		}
		fmt.Fprintf(w, "%-20s wall = %.1fx %s  cpu = %.1fx %s\n", tl.name+"/berth",
			ratio(median(tl.samples, wallOf), bw), pairedRange(tl.samples, base.samples, wallOf),
			ratio(median(tl.samples, cpuOf), bc), pairedRange(tl.samples, base.samples, cpuOf))
	}
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// pairedRange formats "[1.9-2.7]": the extremes of a/b over the rounds both
// completed. Rounds are paired because they ran side by side, under the
// same background load.
func pairedRange(a, b []sample, get func(sample) time.Duration) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range min(len(a), len(b)) {
		r := ratio(get(a[i]), get(b[i]))
		lo, hi = math.Min(lo, r), math.Max(hi, r)
	}
	return fmt.Sprintf("[%.1f-%.1f]", lo, hi)
}

func wallOf(s sample) time.Duration { return s.wall }
func cpuOf(s sample) time.Duration  { return s.cpu }

// spread formats "7.91s (7.60-8.32)".
func spread(samples []sample, get func(sample) time.Duration) string {
	lo, hi := get(samples[0]), get(samples[0])
	for _, s := range samples {
		lo, hi = min(lo, get(s)), max(hi, get(s))
	}
	return fmt.Sprintf("%.2fs (%.2f-%.2f)", median(samples, get).Seconds(), lo.Seconds(), hi.Seconds())
}

func median(samples []sample, get func(sample) time.Duration) time.Duration {
	ds := make([]time.Duration, len(samples))
	for i, s := range samples {
		ds[i] = get(s)
	}
	slices.Sort(ds)
	n := len(ds)
	return (ds[(n-1)/2] + ds[n/2]) / 2
}

// unmountUnder lazily unmounts everything mounted at or below dir, deepest
// first (podman may leave its storage mounted).
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4]+"/", filepath.Clean(dir)+"/") {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// nested reports whether a and b are the same directory or one holds the
// other.
func nested(a, b string) bool {
	a, b = filepath.Clean(a)+"/", filepath.Clean(b)+"/"
	return strings.HasPrefix(a, b) || strings.HasPrefix(b, a)
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
