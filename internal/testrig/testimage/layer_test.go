package testimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// everyKind is a layer with one entry of each kind the builder makes, and
// the entries Entries must read back.
func everyKind() (*LayerBuilder, []Entry) {
	mt := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	big := bytes.Repeat([]byte("0123456789abcdef"), MaxEntryContent/16+1)
	b := NewLayer().
		Dir("/etc/", 0o755).
		File("etc/passwd", []byte("root:x:0:0::/root:/bin/sh\n"), 0o644).
		File("etc//su", []byte("su"), 0o4755, Owner(0, 0)).
		File("etc/sg", []byte("sg"), 0o2750, Owner(12, 34)).
		Dir("etc/sticky", 0o1777, ModTime(mt)).
		File("etc/x", []byte("x"), 0o600, Xattr("user.a", "1"), Xattr("security.capability", CapNetBindService)).
		FileFrom("etc/big", int64(len(big)), func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(big)), nil
		}, 0o644).
		Symlink("etc/rel", "../etc/passwd").
		Symlink("etc/abs", "/etc/passwd").
		Hardlink("etc/hard", "/etc/passwd").
		CharDev("etc/null", 1, 3, 0o666).
		BlockDev("etc/sda", 8, 0, 0o660, Owner(0, 6)).
		Fifo("etc/fifo", 0o600).
		Whiteout("etc/deleted").
		Opaque("etc/sticky")
	reg := func(name string, content []byte, mode int64) Entry {
		e := Entry{Name: name, Type: tar.TypeReg, Mode: mode, Size: int64(len(content)), ModTime: Epoch, Digest: sha(content)}
		if len(content) <= MaxEntryContent {
			e.Content = content
		}
		return e
	}
	sg := reg("etc/sg", []byte("sg"), 0o2750)
	sg.UID, sg.GID = 12, 34
	x := reg("etc/x", []byte("x"), 0o600)
	x.Xattrs = map[string]string{"user.a": "1", "security.capability": CapNetBindService}
	wh := reg("etc/.wh.deleted", nil, 0)
	opq := reg("etc/sticky/.wh..wh..opq", nil, 0)
	want := []Entry{
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755, ModTime: Epoch},
		reg("etc/passwd", []byte("root:x:0:0::/root:/bin/sh\n"), 0o644),
		reg("etc/su", []byte("su"), 0o4755),
		sg,
		{Name: "etc/sticky/", Type: tar.TypeDir, Mode: 0o1777, ModTime: mt},
		x,
		reg("etc/big", big, 0o644),
		{Name: "etc/rel", Type: tar.TypeSymlink, Mode: 0o777, ModTime: Epoch, Linkname: "../etc/passwd"},
		{Name: "etc/abs", Type: tar.TypeSymlink, Mode: 0o777, ModTime: Epoch, Linkname: "/etc/passwd"},
		{Name: "etc/hard", Type: tar.TypeLink, Mode: 0o644, ModTime: Epoch, Linkname: "etc/passwd"},
		{Name: "etc/null", Type: tar.TypeChar, Mode: 0o666, ModTime: Epoch, Devmajor: 1, Devminor: 3},
		{Name: "etc/sda", Type: tar.TypeBlock, Mode: 0o660, GID: 6, ModTime: Epoch, Devmajor: 8},
		{Name: "etc/fifo", Type: tar.TypeFifo, Mode: 0o600, ModTime: Epoch},
		wh,
		opq,
	}
	return b, want
}

func compareEntries(t *testing.T, got, want []Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d entries, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if !g.ModTime.Equal(w.ModTime) {
			t.Errorf("entry %d %s: mtime %v, want %v", i, g.Name, g.ModTime, w.ModTime)
		}
		g.ModTime = w.ModTime
		if len(g.Content) == 0 && len(w.Content) == 0 {
			g.Content, w.Content = nil, nil
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("entry %d:\n\tgot  %+v\n\twant %+v", i, g, w)
		}
	}
}

// TestLayerEveryKind proves that each builder method writes the tar entry it
// documents (names cleaned, modes incl. setuid/setgid/sticky, owners, mtimes,
// PAX xattrs, links, devices, whiteouts) and that every valid encoding gives
// a layer whose digest, size, media type, compression and DiffID agree.
func TestLayerEveryKind(t *testing.T) {
	b, want := everyKind()
	for _, enc := range encodings() {
		c, f := Compression(enc[0]), Format(enc[1])
		t.Run(c.String()+"/"+f.String(), func(t *testing.T) {
			l := b.Layer(t, c, f)
			mt, _ := l.MediaType()
			if wantMT, _ := LayerMediaType(c, f); mt != wantMT {
				t.Errorf("media type %q, want %q", mt, wantMT)
			}
			comp := readAll(t, l.Compressed)
			if d, _ := l.Digest(); d != sha(comp) {
				t.Errorf("Digest %s, blob %s", d, sha(comp))
			}
			if s, _ := l.Size(); s != int64(len(comp)) {
				t.Errorf("Size %d, blob %d", s, len(comp))
			}
			plain := decompress(t, c, comp)
			if d, _ := l.DiffID(); d != sha(plain) {
				t.Errorf("DiffID %s, sha256(tar) %s", d, sha(plain))
			}
			compareEntries(t, Entries(t, l), want)

			again := b.Layer(t, c, f)
			d1, _ := l.Digest()
			d2, _ := again.Digest()
			if d1 != d2 {
				t.Errorf("encoding twice gave %s and %s", d1, d2)
			}
		})
	}
}

// TestLayerMisuse proves that mistakes fail the test instead of producing a
// silently different layer.
func TestLayerMisuse(t *testing.T) {
	for name, b := range map[string]*LayerBuilder{
		"dotdot":           NewLayer().File("../x", nil, 0o644),
		"dotdot inside":    NewLayer().File("a/../../x", nil, 0o644),
		"root":             NewLayer().Dir("/", 0o755),
		"hardlink outside": NewLayer().Hardlink("x", "../etc/passwd"),
		"mode bits":        NewLayer().File("x", nil, 0o100644),
		"after truncated":  NewLayer().Truncated(tar.Header{Name: "x", Size: 10, Typeflag: tar.TypeReg}, nil).Dir("y", 0o755),
		"truncated excess": NewLayer().Truncated(tar.Header{Name: "x", Size: 1, Typeflag: tar.TypeReg}, []byte("xy")),
		"short stream": NewLayer().FileFrom("x", 5, func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("abc")), nil
		}, 0o644),
		"missing host file": NewLayer().HostFile("x", "/nonexistent/file", 0o644),
	} {
		t.Run(name, func(t *testing.T) {
			msg := expectFatal(t, func(tb testing.TB) { b.Layer(tb, Gzip, OCI) })
			t.Log(msg)
		})
	}
	t.Run("zstd docker", func(t *testing.T) {
		msg := expectFatal(t, func(tb testing.TB) { NewLayer().Layer(tb, Zstd, Docker) })
		if !strings.Contains(msg, "zstd") {
			t.Errorf("message %q does not explain", msg)
		}
	})
}

// TestHostileLayer proves the raw entries reach the tar stream exactly as
// given, for the images issue's hostile-layer tests: escaping names,
// absolute names, symlink-out-then-write, hard links out of the rootfs, a
// huge size and a truncated stream.
func TestHostileLayer(t *testing.T) {
	b := NewLayer().
		Raw(tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("up")).
		Raw(tar.Header{Name: "/abs/file", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("abs")).
		Raw(tar.Header{Name: "a/../../b", Typeflag: tar.TypeReg, Mode: 0o644}, nil).
		Symlink("out", "/etc").
		File("out/passwd", []byte("pwned\n"), 0o644).
		Symlink("up", "../../../../").
		File("up/tmp/x", []byte("x"), 0o644).
		Raw(tar.Header{Name: "pw", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}, nil).
		Raw(tar.Header{Name: "pw2", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"}, nil).
		Raw(tar.Header{Name: "dev/kmsg", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 11, Mode: 0o666}, nil).
		Truncated(tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}, []byte("only this"))

	for _, c := range allCompressions {
		t.Run(c.String(), func(t *testing.T) {
			l := b.Layer(t, c, OCI)
			plain := decompress(t, c, readAll(t, l.Compressed))
			if d, _ := l.DiffID(); d != sha(plain) {
				t.Errorf("DiffID %s, sha256(tar) %s", d, sha(plain))
			}
			tr := tar.NewReader(bytes.NewReader(plain))
			var names []string
			var last *tar.Header
			for last == nil || last.Name != "huge" {
				h, err := tr.Next()
				if err != nil {
					t.Fatalf("headers after %q: %v", names, err)
				}
				names = append(names, h.Name+"|"+h.Linkname)
				last = h
			}
			want := []string{"../escape|", "/abs/file|", "a/../../b|", "out|/etc", "out/passwd|",
				"up|../../../../", "up/tmp/x|", "pw|/etc/passwd", "pw2|../../etc/shadow", "dev/kmsg|", "huge|"}
			if !reflect.DeepEqual(names, want) {
				t.Errorf("names\n\t%q\nwant\n\t%q", names, want)
			}
			if last.Size != 1<<40 {
				t.Errorf("huge entry size %d", last.Size)
			}
			got, err := io.ReadAll(tr)
			if !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "only this" {
				t.Errorf("reading the truncated entry: %q, %v; want %q and unexpected EOF", got, err, "only this")
			}
			if !bytes.HasSuffix(plain, []byte("only this")) {
				t.Error("stream does not end right after the truncated content")
			}
			msg := expectFatal(t, func(tb testing.TB) { Entries(tb, l) })
			if !strings.Contains(msg, "unexpected EOF") {
				t.Errorf("Entries on a truncated layer failed with %q", msg)
			}
		})
	}
}
