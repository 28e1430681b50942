package runtime

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Log defaults, as docker's json-file driver with max-size/max-file set.
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 3
	maxLogLine         = 16 << 10 // docker splits longer lines
)

// logEntry is one docker json-file line.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// logFile writes json-file lines to path, rotating to path.1 … path.N-1
// when a file would pass maxSize. Safe for concurrent streams.
type logFile struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
}

func openLogFile(path string, maxSize int64, maxFiles int) (*logFile, error) {
	if maxSize <= 0 {
		maxSize = DefaultLogMaxSize
	}
	if maxFiles <= 0 {
		maxFiles = DefaultLogMaxFiles
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &logFile{path: path, maxSize: maxSize, maxFiles: maxFiles, f: f, size: fi.Size()}, nil
}

func (l *logFile) write(stream string, line []byte, t time.Time) error {
	b, err := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: t.UTC()})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size > 0 && l.size+int64(len(b)) > l.maxSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	return err
}

func (l *logFile) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	for i := l.maxFiles - 1; i >= 1; i-- {
		src := l.path
		if i > 1 {
			src = fmt.Sprintf("%s.%d", l.path, i-1)
		}
		if err := os.Rename(src, fmt.Sprintf("%s.%d", l.path, i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if l.maxFiles == 1 {
		os.Remove(l.path)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	l.f, l.size = f, 0
	return nil
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// streamWriter cuts one stream into lines for the log.
type streamWriter struct {
	log    *logFile
	stream string
	buf    []byte
	mu     sync.Mutex
	// now is time.Now unless a test compares with the C supervisor's
	// writer, which must be given the same clock.
	now func() time.Time
}

func (w *streamWriter) clock() time.Time {
	if w.now != nil {
		return w.now()
	}
	return time.Now()
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	now := w.clock()
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLogLine {
				if err := w.log.write(w.stream, w.buf[:maxLogLine], now); err != nil {
					return 0, err
				}
				w.buf = w.buf[maxLogLine:]
				continue
			}
			break
		}
		if err := w.log.write(w.stream, w.buf[:i+1], now); err != nil {
			return 0, err
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// flush writes a last partial line.
func (w *streamWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.log.write(w.stream, w.buf, w.clock())
		w.buf = nil
	}
}

// LogOptions select what ReadLogs prints.
type LogOptions struct {
	Tail       int // lines from the end; < 0 means all
	Since      time.Time
	Timestamps bool
	// Follow keeps reading until Done returns true and the file has no
	// more data.
	Follow bool
	Done   func() bool
	// Wake, if set, cuts the wait between polls short (the writer
	// finished).
	Wake <-chan struct{}
}

// readLogs prints a container's log files (oldest first) to stdout and
// stderr, as `docker logs` does.
func readLogs(path string, maxFiles int, o LogOptions, stdout, stderr io.Writer) error {
	var entries []logEntry
	for i := maxFiles - 1; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		es, _, err := scanLog(f, o.Since)
		f.Close()
		if err != nil {
			return err
		}
		entries = append(entries, es...)
	}
	if o.Tail >= 0 && len(entries) > o.Tail {
		entries = entries[len(entries)-o.Tail:]
	}
	for _, e := range entries {
		printEntry(e, o.Timestamps, stdout, stderr)
	}
	if !o.Follow {
		return nil
	}
	// Follow the current file from its end; reopen it after a rotation.
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return err
	}
	return followLog(f, path, o, stdout, stderr)
}

// followLog prints entries from f's current offset on, following the file
// at path across rotations, until o.Done says the writer has finished and
// nothing is left to read. It closes f.
func followLog(f *os.File, path string, o LogOptions, stdout, stderr io.Writer) error {
	defer func() { f.Close() }()
	r := bufio.NewReader(f)
	var partial []byte
	for {
		line, err := r.ReadBytes('\n')
		partial = append(partial, line...)
		if err == nil {
			var e logEntry
			if json.Unmarshal(partial, &e) == nil && (o.Since.IsZero() || !e.Time.Before(o.Since)) {
				printEntry(e, o.Timestamps, stdout, stderr)
			}
			partial = nil
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		// At EOF: rotated away? Stopped?
		if fi, err1 := os.Stat(path); err1 == nil {
			if cur, err2 := f.Stat(); err2 == nil && !os.SameFile(fi, cur) {
				// Drain the rotated file, then move to the new one.
				if rest, _ := io.ReadAll(r); len(rest) > 0 {
					printLines(append(partial, rest...), o, stdout, stderr)
				}
				partial = nil
				f.Close()
				if f, err = os.Open(path); err != nil {
					return err
				}
				r = bufio.NewReader(f)
				continue
			}
		}
		if o.Done != nil && o.Done() {
			// One last read for what arrived before the stop.
			if line, _ := r.ReadBytes('\n'); len(line) > 0 {
				partial = append(partial, line...)
				continue
			}
			return nil
		}
		select {
		case <-o.Wake:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func scanLog(r io.Reader, since time.Time) ([]logEntry, int64, error) {
	var out []logEntry
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	for {
		line, err := br.ReadBytes('\n')
		n += int64(len(line))
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var e logEntry
			if json.Unmarshal(line, &e) == nil && (since.IsZero() || !e.Time.Before(since)) {
				out = append(out, e)
			}
		}
		if errors.Is(err, io.EOF) {
			return out, n, nil
		}
		if err != nil {
			return out, n, err
		}
	}
}

func printEntry(e logEntry, ts bool, stdout, stderr io.Writer) {
	w := stdout
	if e.Stream == "stderr" {
		w = stderr
	}
	if ts {
		fmt.Fprint(w, e.Time.Format(time.RFC3339Nano)+" ")
	}
	io.WriteString(w, e.Log)
}

func printLines(b []byte, o LogOptions, stdout, stderr io.Writer) {
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		var e logEntry
		if len(line) > 0 && json.Unmarshal(line, &e) == nil {
			printEntry(e, o.Timestamps, stdout, stderr)
		}
	}
}
