package layer

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// TestReadAhead: the bytes come through in order and whole, in reads of
// any size, then the source's error; after Close the source is read where
// the read-ahead stopped.
func TestReadAhead(t *testing.T) {
	data := make([]byte, 3*aheadBuffers*aheadSize+12345)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(data) }},
		{"one-byte-reads", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }},
		{"half-reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := ReadAhead(tc.r())
			got, err := io.ReadAll(iotest.HalfReader(ra))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAll: %d bytes, %v; want %d bytes", len(got), err, len(data))
			}
			if err := ra.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("error-after-data", func(t *testing.T) {
		boom := errors.New("boom")
		ra := ReadAhead(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom)))
		got, err := io.ReadAll(ra)
		if !errors.Is(err, boom) || !bytes.Equal(got, data[:1000]) {
			t.Fatalf("got %d bytes, %v; want 1000 bytes, then boom", len(got), err)
		}
		if _, err := ra.Read(make([]byte, 1)); !errors.Is(err, boom) {
			t.Errorf("read after the error: %v, want boom again", err)
		}
		ra.Close()
	})

	t.Run("close-then-read-source", func(t *testing.T) {
		src := bytes.NewReader(data)
		ra := ReadAhead(src)
		head := make([]byte, 100)
		if _, err := io.ReadFull(ra, head); err != nil {
			t.Fatal(err)
		}
		ra.Close()
		// The goroutine is gone: whatever it did not take is still in src.
		rest, _ := io.ReadAll(src)
		taken := len(data) - len(rest)
		if taken > aheadBuffers*aheadSize || !bytes.Equal(rest, data[taken:]) {
			t.Errorf("after Close: source at %d, want at most %d ahead and intact", taken, aheadBuffers*aheadSize)
		}
		if _, err := ra.Read(head); err == nil {
			t.Errorf("read after Close: no error")
		}
	})

	t.Run("close-unblocks-on-source-close", func(t *testing.T) {
		pr, pw := io.Pipe()
		entered := make(chan struct{})
		ra := ReadAhead(&signalReader{r: pr, entered: entered})
		<-entered
		done := make(chan struct{})
		go func() { ra.Close(); close(done) }()
		select {
		case <-done:
			t.Fatal("Close returned while the goroutine was blocked reading the source")
		case <-time.After(50 * time.Millisecond):
		}
		pw.CloseWithError(errors.New("closed"))
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close still waiting after the source was closed")
		}
	})
}

// signalReader closes entered when its first Read begins.
type signalReader struct {
	r       io.Reader
	entered chan struct{}
	once    sync.Once
}

func (s *signalReader) Read(p []byte) (int, error) {
	s.once.Do(func() { close(s.entered) })
	return s.r.Read(p)
}
