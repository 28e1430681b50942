//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testrig"
)

// fuzzCanary is an absolute directory outside every fuzz iteration's
// parent; seeds point symlinks and hard links at it so that mutations
// explore absolute escapes too. It must stay empty.
const fuzzCanary = "/tmp/berth-layer-fuzz-canary"

// FuzzApply feeds arbitrary bytes to Apply as a tar stream, in a fresh
// parent directory holding only the layer root and a sentinel file, and
// checks that no input panics or writes outside the root: afterwards the
// parent holds exactly those two, the root is still a directory, and the
// sentinel (and the absolute canary) are untouched.
func FuzzApply(f *testing.F) {
	testrig.RequireRoot(f)
	hdr := func(typ byte, name, link string) ent {
		return ent{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o755, ModTime: epoch}}
	}
	xa := fileE("x", "x", 0o644)
	xa.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "b", "SCHILY.xattr.trusted.overlay.redirect": "/x"}
	seeds := [][]ent{
		// valid
		{dirE("a/", 0o755), fileE("a/f", "hello", 0o4755), linkE("a/h", "a/f", 0o4755), symE("a/s", "f"), symE("abs", "/etc/passwd")},
		{whE(".wh.gone"), dirE("d/", 0o755), whE("d/.wh..wh..opq"), fileE("d/new", "n", 0o644), whE("d/.wh.old")},
		{hdr(tar.TypeFifo, "p", ""), hdr(tar.TypeChar, "c", ""), hdr(tar.TypeBlock, "b", ""), xa, dirE("./", 0o755)},
		{dirE("x/", 0o755), whE(".wh.x"), whE(".wh.y"), dirE("y/", 0o755), fileE("z", "z", 0o644), whE(".wh.z")},
		// hostile
		{fileE("../sentinel", "pwned", 0o644)},
		{fileE("a/../../sentinel", "pwned", 0o644)},
		{symE("a", ".."), fileE("a/sentinel", "pwned", 0o644)},
		{symE("a", "../../.."), fileE("a/f", "pwned", 0o644)},
		{symE("a", fuzzCanary), fileE("a/f", "pwned", 0o644), dirE("a/d/", 0o755), whE("a/.wh.w"), whE("a/.wh..wh..opq")},
		{symE("a", ".."), linkE("h", "a", 0o777), whE("h/.wh.sentinel")},
		{linkE("h", "../sentinel", 0o644), linkE("p", "/etc/passwd", 0o644), linkE("c", fuzzCanary+"/x", 0o644)},
		{symE("a", ".."), linkE("h", "a/sentinel", 0o644)},
		{dirE("d/", 0o755), symE("d", ".."), fileE("d/sentinel", "pwned", 0o644)},
		{whE(".wh..."), whE("a/../../.wh.sentinel"), whE(".wh.")},
	}
	for _, s := range seeds {
		f.Add(tarOf(f, s...))
	}
	f.Add(headerOnly(f, "big", 1<<40))
	f.Add(sparseTar(f, map[string]int64{"s": 4096}))
	f.Add(tarOf(f, fileE("f", "x", 0o644))[:700])
	f.Cleanup(func() { _ = os.Remove(fuzzCanary) })
	base := fuzzBase(f)

	f.Fuzz(func(t *testing.T, data []byte) {
		data = fixChecksums(data)
		if err := os.MkdirAll(fuzzCanary, 0o755); err != nil {
			t.Fatal(err)
		}
		parent, err := os.MkdirTemp(base, "it")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		root := filepath.Join(parent, "root")
		sentinel := filepath.Join(parent, "sentinel")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sentinel, []byte("sentinel"), 0o600); err != nil {
			t.Fatal(err)
		}
		before := lstat(t, sentinel)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := Apply(ctx, root, bytes.NewReader(data), Options{MaxSize: 8 << 20, MaxEntries: 256})
		if err == nil && res.DiffID != sha256Hex(data) {
			t.Errorf("DiffID %s is not the stream's %s", res.DiffID, sha256Hex(data))
		}

		des, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			if de.Name() != "root" && de.Name() != "sentinel" {
				t.Errorf("%s appeared outside the layer root", de.Name())
			}
		}
		if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
			t.Errorf("layer root is no longer a directory: %v", err)
		}
		after := lstat(t, sentinel)
		if after.Ino != before.Ino || after.Nlink != 1 || after.Mode != before.Mode || after.Uid != before.Uid ||
			after.Mtim != before.Mtim || after.Ctim != before.Ctim {
			t.Errorf("sentinel changed: %+v -> %+v", before, after)
		}
		if b, err := os.ReadFile(sentinel); err != nil || string(b) != "sentinel" {
			t.Errorf("sentinel content: %q, %v", b, err)
		}
		if xs := xattrs(t, sentinel); len(xs) != 0 {
			t.Errorf("sentinel xattrs: %v", xs)
		}
		if des, err := os.ReadDir(fuzzCanary); err != nil && !errors.Is(err, os.ErrNotExist) || len(des) > 0 {
			t.Errorf("canary %s: %v, %v", fuzzCanary, des, err)
		}
		if xs := xattrs(t, parent); len(xs) != 0 {
			t.Errorf("parent xattrs: %v", xs)
		}
	})
}

// fuzzBase is where iterations make their directories: on tmpfs when
// /dev/shm is one (file creation on this VM's ext4 costs ~0.7 ms a mkdir,
// several times tmpfs's), else in the test's temp dir.
func fuzzBase(f *testing.F) string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		if dir, err := os.MkdirTemp("/dev/shm", "berth-layer-fuzz-"); err == nil {
			f.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return f.TempDir()
}

// fixChecksums walks data as a tar stream (header, body rounded up to
// 512 bytes, next header) and rewrites each header's checksum, so that the
// fuzzer's mutations of names, types, sizes and links reach Apply instead
// of dying on archive/tar's checksum check. It stops where a size field
// does not parse. Bytes that are not headers are left alone.
func fixChecksums(data []byte) []byte {
	data = bytes.Clone(data)
	for off := 0; off+512 <= len(data); {
		blk := data[off : off+512]
		if bytes.Count(blk, []byte{0}) == 512 {
			off += 512
			continue
		}
		copy(blk[148:156], "        ")
		sum := 0
		for _, c := range blk {
			sum += int(c)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
		size, err := strconv.ParseInt(strings.Trim(string(blk[124:136]), " \x00"), 8, 64)
		if err != nil || size < 0 || size > int64(len(data)) {
			break
		}
		off += 512 + int(size+511)/512*512
	}
	return data
}

// benchLayer is about 2,000 small text files in 20 directories, a few
// symlinks and hard links, and a 4 MiB file of random bytes.
func benchLayer(b *testing.B) (raw []byte, files int) {
	rng := rand.New(rand.NewPCG(1, 2))
	var es []ent
	for d := range 20 {
		dir := fmt.Sprintf("usr/share/pkg%02d/", d)
		es = append(es, dirE(dir, 0o755))
		for i := range 100 {
			body := strings.Repeat(fmt.Sprintf("line %d of file %d in %s\n", rng.IntN(1000), i, dir), 10+rng.IntN(100))
			es = append(es, fileE(fmt.Sprintf("%sfile%03d.txt", dir, i), body, 0o644))
		}
		es = append(es, symE(dir+"link", "file000.txt"), linkE(dir+"hard", dir+"file001.txt", 0o644))
	}
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	es = append(es, dirE("opt/", 0o755), fileE("opt/blob.bin", string(big), 0o644))
	return tarOf(b, es...), len(es)
}

// BenchmarkApply decompresses and applies benchLayer, on the test's temp
// dir's filesystem ("disk") and on tmpfs, which separates berth's own cost
// from the filesystem's (on this VM's ext4, GNU tar -xpf of the same layer
// takes as long as Apply: file creation dominates).
func BenchmarkApply(b *testing.B) {
	testrig.RequireRoot(b)
	raw, entries := benchLayer(b)
	var zbuf bytes.Buffer
	zw, err := zstd.NewWriter(&zbuf)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	bases := []struct{ name, dir string }{{"disk", b.TempDir()}}
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		dir, err := os.MkdirTemp("/dev/shm", "berth-layer-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
		bases = append(bases, struct{ name, dir string }{"tmpfs", dir})
	}
	for _, base := range bases {
		for _, c := range []struct {
			name string
			blob []byte
		}{{"gzip", gzipOf(b, raw)}, {"zstd", zbuf.Bytes()}, {"plain", raw}} {
			b.Run(base.name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				b.ReportMetric(float64(entries), "entries/op")
				for i := range b.N {
					dir := filepath.Join(base.dir, fmt.Sprint(i))
					if err := os.Mkdir(dir, 0o755); err != nil {
						b.Fatal(err)
					}
					rc, err := Decompress(bytes.NewReader(c.blob))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := Apply(context.Background(), dir, rc, Options{}); err != nil {
						b.Fatal(err)
					}
					_ = rc.Close()
					b.StopTimer()
					if err := os.RemoveAll(dir); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}
