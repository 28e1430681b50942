package layer

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func plainTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := strings.Repeat("layer data ", 10000)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t *testing.T, members ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, m := range members {
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// skippable is a zstd skippable frame, which may lead a zstd stream.
func skippable(payload string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0x184D2A53)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

func TestDecompress(t *testing.T) {
	plain := plainTar(t)
	half := plain[:len(plain)/2]
	netErr := errors.New("connection reset by peer")
	corruptZstd := zst(t, plain)
	corruptZstd[len(corruptZstd)/2] ^= 0xff
	corruptGzip := gz(t, plain)
	corruptGzip[len(corruptGzip)-5] ^= 0xff // in the CRC-32 trailer

	for _, tc := range []struct {
		name    string
		in      io.Reader
		want    []byte
		openErr error // error from Decompress itself
		readErr error // error while reading
	}{
		{name: "plain", in: bytes.NewReader(plain), want: plain},
		{name: "empty-tar", in: bytes.NewReader(make([]byte, 1024)), want: make([]byte, 1024)},
		{name: "gzip", in: bytes.NewReader(gz(t, plain)), want: plain},
		{name: "gzip-multi-member", in: bytes.NewReader(gz(t, half, plain[len(plain)/2:])), want: plain},
		{name: "zstd", in: bytes.NewReader(zst(t, plain)), want: plain},
		{name: "zstd-skippable-frame", in: bytes.NewReader(append(skippable("meta"), zst(t, plain)...)), want: plain},
		{name: "garbage", in: strings.NewReader(strings.Repeat("not a layer ", 100)), openErr: ErrCorrupt},
		{name: "short-garbage", in: strings.NewReader("hello"), openErr: ErrCorrupt},
		{name: "empty", in: strings.NewReader(""), openErr: ErrCorrupt},
		{name: "gzip-bad-header", in: bytes.NewReader([]byte{0x1f, 0x8b, 99, 0, 0, 0, 0, 0, 0, 0, 0}), openErr: ErrCorrupt},
		{name: "gzip-truncated", in: bytes.NewReader(gz(t, plain)[:100]), readErr: ErrCorrupt},
		{name: "gzip-bad-crc", in: bytes.NewReader(corruptGzip), readErr: ErrCorrupt},
		{name: "gzip-trailing-garbage", in: bytes.NewReader(append(gz(t, plain), "junk after the member"...)), readErr: ErrCorrupt},
		{name: "zstd-corrupt", in: bytes.NewReader(corruptZstd), readErr: ErrCorrupt},
		{name: "zstd-truncated", in: bytes.NewReader(zst(t, plain)[:50]), readErr: ErrCorrupt},
		{name: "gzip-network-error", in: &failingReader{r: bytes.NewReader(gz(t, plain)[:200]), err: netErr}, readErr: netErr},
		{name: "plain-network-error", in: &failingReader{r: bytes.NewReader(plain[:2000]), err: netErr}, readErr: netErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := Decompress(tc.in)
			if tc.openErr != nil {
				if !errors.Is(err, tc.openErr) {
					t.Fatalf("Decompress: %v, want %v", err, tc.openErr)
				}
				return
			}
			var got []byte
			if err == nil { // a source error may come before the sniff is done
				defer rc.Close()
				got, err = io.ReadAll(rc)
			}
			if tc.readErr != nil {
				if !errors.Is(err, tc.readErr) {
					t.Fatalf("read: %v, want %v", err, tc.readErr)
				}
				if tc.readErr == netErr && errors.Is(err, ErrCorrupt) {
					t.Errorf("a source error must not read as corrupt data: %v", err)
				}
				t.Logf("read error: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Decompress/read: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got %d bytes, want %d", len(got), len(tc.want))
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestIsTarBlock(t *testing.T) {
	plain := plainTar(t)
	if !isTarBlock(plain) {
		t.Error("ustar header not recognised")
	}
	bad := bytes.Clone(plain)
	bad[0] ^= 1
	if isTarBlock(bad) {
		t.Error("header with a wrong checksum recognised")
	}
	if isTarBlock(plain[:100]) {
		t.Error("short block recognised")
	}
}
