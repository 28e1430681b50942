package layer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// MaxZstdWindow is the largest zstd window Decompress accepts: 128 MiB,
// enough for `zstd --ultra -22` and `--long=27`. A frame asking for more is
// refused as corrupt rather than allowed to allocate the window.
const MaxZstdWindow = 128 << 20

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress sniffs the first bytes of r and returns the uncompressed
// stream: gzip (one or more members) and zstd (one or more frames) are
// decoded with klauspost/compress; a stream whose first 512-byte block is a
// tar header (its checksum checks) or all zeros passes through as is.
// Anything else, including an empty stream, is refused with ErrCorrupt.
//
// Read errors that come from r itself are returned as they are, so that the
// caller can tell a network failure from a bad blob; errors the decoder
// finds in the data (bad header, checksum, truncation) wrap ErrCorrupt.
// Decompress does not bound the output: Apply does (Options.MaxSize).
// Close releases the decoder (zstd runs goroutines) but not r; call it.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	src := &sourceReader{r: r}
	br := bufio.NewReaderSize(src, 64<<10)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, classify(src, "sniff", err)
	}
	switch {
	case len(head) == 0:
		return nil, fmt.Errorf("%w: empty stream", ErrCorrupt)
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, classify(src, "gzip", err)
		}
		return &decoder{r: zr, src: src, kind: "gzip", close: zr.Close}, nil
	case bytes.HasPrefix(head, zstdMagic) || isZstdSkippable(head):
		zd, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(MaxZstdWindow))
		if err != nil {
			return nil, classify(src, "zstd", err)
		}
		return &decoder{r: zd, src: src, kind: "zstd", close: func() error { zd.Close(); return nil }}, nil
	case isTarBlock(head):
		return &decoder{r: br, src: src, kind: "tar"}, nil
	default:
		return nil, fmt.Errorf("%w: not a gzip, zstd or tar stream (starts with %x)", ErrCorrupt, head[:min(len(head), 8)])
	}
}

// sourceReader remembers the first error of the compressed source, so a
// decoder's error can be traced back to it.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// classify maps a decoder error: the source's own failure is returned as
// it is, anything else is corruption of the data.
func classify(src *sourceReader, kind string, err error) error {
	if src.err != nil && !errors.Is(src.err, io.EOF) {
		return src.err
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // truncated before the decoder's first byte
	}
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, kind, err)
}

type decoder struct {
	r     io.Reader
	src   *sourceReader
	kind  string
	close func() error
	err   error
}

func (d *decoder) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			err = classify(d.src, d.kind, err)
		}
		d.err = err
	}
	return n, err
}

func (d *decoder) Close() error {
	if d.close == nil {
		return nil
	}
	c := d.close
	d.close = nil
	return c()
}

// isZstdSkippable reports a zstd skippable frame (magic 0x184D2A5?, little
// endian), which may precede the first data frame.
func isZstdSkippable(b []byte) bool {
	return len(b) >= 4 && b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18
}

// isTarBlock reports whether b starts with a tar header block whose
// checksum checks (V7, ustar, GNU and PAX all carry one), or with a zero
// block (an empty archive).
func isTarBlock(b []byte) bool {
	if len(b) < 512 {
		return false
	}
	b = b[:512]
	field := bytes.Trim(b[148:156], " \x00")
	if len(field) == 0 {
		return bytes.Count(b, []byte{0}) == 512
	}
	want, err := strconv.ParseUint(string(field), 8, 32)
	if err != nil {
		return false
	}
	var unsigned, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return int64(want) == unsigned || int64(want) == signed
}
