//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
)

// containerdApply is what Apply was before it had its own writer:
// containerd's pkg/archive applier with overlay whiteout conversion and
// the validator as its filter. TestApplyMatchesContainerd holds Apply to
// the same result.
func containerdApply(dir string, layer []byte) error {
	c := &counter{ctx: context.Background(), r: bytes.NewReader(layer), h: sha256.New(), max: DefaultMaxSize}
	v := newValidator(Options{}.withDefaults(), func() int64 { return c.n })
	if _, err := archive.Apply(context.Background(), dir, c,
		archive.WithConvertWhiteout(archive.OverlayConvertWhiteout),
		archive.WithFilter(v.filter)); err != nil {
		return err
	}
	for _, name := range v.opaque {
		if n := v.lookup(name); n != nil && n.kind == kindDir && n.whitedOut {
			if err := unix.Lsetxattr(filepath.Join(dir, name), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// randomLayer is a layer of n entries over a small namespace, so that
// names repeat: directories merge or get replaced, files replace
// directories and links, whiteouts and opaque markers meet this layer's
// own entries, hard links point at files that exist or were replaced.
func randomLayer(t testing.TB, rng *rand.Rand, n int) []byte {
	dirs := []string{"a", "b", "a/c", "a/c/d", "b/e", "f"}
	leaves := []string{"x", "y", "z"}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	name := func() string {
		leaf := pick(leaves)
		if rng.IntN(12) == 0 {
			leaf = pick([]string{"a", "c", "f"}) // a file or link where a directory was or will be
		}
		if rng.IntN(4) == 0 {
			return leaf
		}
		return pick(dirs) + "/" + leaf
	}
	stamp := func() time.Time {
		switch rng.IntN(5) {
		case 0:
			return time.Unix(0, 0)
		case 1:
			return time.Unix(-1000, 0) // before the epoch: containerd makes it the epoch
		default:
			return time.Unix(rng.Int64N(2e9), rng.Int64N(1e9)).UTC()
		}
	}
	modes := []int64{0o644, 0o755, 0o600, 0o4755, 0o2755, 0o1777, 0o000, 0o6711}
	var files []string
	var es []ent
	for range n {
		h := tar.Header{Name: name(), Mode: modes[rng.IntN(len(modes))], ModTime: stamp(), Uid: rng.IntN(3) * 1000, Gid: rng.IntN(3) * 1000, Format: tar.FormatPAX}
		if rng.IntN(3) == 0 {
			h.AccessTime = stamp()
		}
		body := ""
		switch k := rng.IntN(20); {
		case k < 6:
			h.Typeflag = tar.TypeReg
			body = strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(3000))
			files = append(files, h.Name)
		case k < 10:
			h.Typeflag, h.Name = tar.TypeDir, pick(dirs)+"/"
		case k < 12:
			h.Typeflag, h.Linkname = tar.TypeSymlink, pick([]string{"x", "../y", "/etc/passwd", "a/c"})
		case k < 14 && len(files) > 0:
			h.Typeflag, h.Linkname = tar.TypeLink, files[rng.IntN(len(files))]
		case k < 16:
			dir, base := split(h.Name)
			h.Typeflag, h.Name = tar.TypeReg, join(dir, ".wh."+base)
		case k < 17:
			h.Typeflag, h.Name = tar.TypeReg, pick(dirs)+"/.wh..wh..opq"
		case k < 18:
			h.Typeflag = tar.TypeFifo
		default:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, int64(rng.IntN(10))
		}
		if (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeDir) && rng.IntN(4) == 0 {
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.k" + fmt.Sprint(rng.IntN(2)): fmt.Sprint(rng.IntN(100))}
		}
		h.Size = int64(len(body))
		es = append(es, ent{hdr: h, body: body})
	}
	return tarOf(t, es...)
}

// TestApplyMatchesContainerd applies random layers with Apply and with
// containerd's applier (same validator) and wants the same trees: type,
// mode, owner, size, link count, device, content, symlink target, xattrs
// and mtimes of every entry. Apply differs on purpose in one corner:
// a directory header's times, set at the end, go to whatever holds the
// name then, without following a symlink and skipping a name whose parent
// was replaced (containerd follows the symlink within the root, or fails);
// layers that reach that corner are left out of the comparison.
func TestApplyMatchesContainerd(t *testing.T) {
	testrig.RequireRoot(t)
	base := fastTempDir(t)
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	compared := 0
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		layer := randomLayer(t, rng, 5+rng.IntN(40))
		ours, theirs := filepath.Join(base, fmt.Sprint(seed, "-ours")), filepath.Join(base, fmt.Sprint(seed, "-containerd"))
		for _, d := range []string{ours, theirs} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		_, errOurs := Apply(context.Background(), ours, bytes.NewReader(layer), Options{})
		errTheirs := containerdApply(theirs, layer)
		if (errOurs != nil) != (errTheirs != nil) {
			if errOurs == nil && dirTimesCorner(t, layer) {
				continue
			}
			t.Errorf("seed %d: Apply: %v; containerd: %v\n%s", seed, errOurs, errTheirs, listing(t, layer))
			continue
		}
		if errOurs != nil {
			continue
		}
		a, b := relState(t, ours, layer), relState(t, theirs, layer)
		if d := diffStates(b, a); len(d) > 0 {
			if dirTimesCorner(t, layer) {
				continue
			}
			t.Errorf("seed %d: trees differ (containerd -> Apply):\n  %s\n%s", seed, strings.Join(d, "\n  "), listing(t, layer))
			continue
		}
		compared++
	}
	t.Logf("%d of %d random layers compared equal (the others failed alike or hit the directory-times corner)", compared, seeds)
	if compared < seeds/4 {
		t.Errorf("only %d layers compared: the generator makes too many failing layers", compared)
	}
}

// dirTimesCorner reports a layer where a directory header's name is later
// replaced by a non-directory, or a directory above it is.
func dirTimesCorner(t testing.TB, layer []byte) bool {
	tr := tar.NewReader(bytes.NewReader(layer))
	dirs := map[string]bool{}
	for {
		h, err := tr.Next()
		if err != nil {
			return false
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag == tar.TypeDir {
			dirs[name] = true
			continue
		}
		if strings.HasPrefix(filepath.Base(name), ".wh.") {
			continue
		}
		for d := range dirs {
			if d == name || strings.HasPrefix(d, name+"/") {
				return true
			}
		}
	}
}

// relState is treeState keyed by the path relative to dir, without the
// root itself, and without the mtimes that neither applier sets (they are
// the moment of writing): of directories no header names and of whiteouts.
func relState(t testing.TB, dir string, layer []byte) map[string]string {
	named := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Typeflag == tar.TypeDir {
			named[strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")] = true
		}
	}
	mtime := regexp.MustCompile(` mtime=[0-9]+`)
	out := map[string]string{}
	for p, s := range treeState(t, dir, "") {
		if p == dir {
			continue
		}
		rel := strings.TrimPrefix(p, dir+"/")
		st := lstat(t, p)
		if (st.Mode&unix.S_IFMT == unix.S_IFDIR && !named[rel]) || isWhiteout(st) {
			s = mtime.ReplaceAllString(s, "")
		}
		out[rel] = s
	}
	return out
}

func listing(t testing.TB, layer []byte) string {
	var b strings.Builder
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err != nil {
			return b.String()
		}
		fmt.Fprintf(&b, "    %c %s -> %q mode %o %d:%d mtime %v atime %v %v\n", h.Typeflag, h.Name, h.Linkname, h.Mode, h.Uid, h.Gid, h.ModTime.Unix(), h.AccessTime.Unix(), h.PAXRecords)
	}
}

// TestFallbacks runs the round-trip, hostile-layer and differential tests
// with the writer on its paths for kernels without openat2 (a walk with
// O_NOFOLLOW per component) and hosts without /proc.
func TestFallbacks(t *testing.T) {
	fallbacksOnly = true
	t.Cleanup(func() { fallbacksOnly = false })
	t.Run("roundtrip", TestApplyRoundTrip)
	t.Run("same-layer-whiteouts", TestApplySameLayerWhiteouts)
	t.Run("hostile", TestHostile)
	t.Run("containerd", TestApplyMatchesContainerd)
}

// fastTempDir is a temp dir on tmpfs when /dev/shm is one (creating files
// on this VM's ext4 is several times slower), else the test's.
func fastTempDir(t testing.TB) string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		if dir, err := os.MkdirTemp("/dev/shm", "berth-layer-test-"); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}
