package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test: a child process writes ever newer versions of one large
// object with Put while the parent SIGKILLs it at random moments, and after
// every kill the object must be absent (nothing written yet) or a complete,
// valid version no older than the last one seen.

const (
	crashKey  = "obj/data.json"
	crashSize = 4 << 20 // bytes of filler per version
)

// crashObj is one version of the object: the filler is a pattern derived
// from the version and Sum is its SHA-256, so any truncated, mixed or stale
// file shows. Objects are compared as bytes with encodeCrashObj's output,
// which TestCrashEncoding proves is what Put writes.
type crashObj struct {
	Version int    `json:"version"`
	Sum     string `json:"sum"`
	Filler  string `json:"filler"`
}

func makeCrashObj(v, size int) crashObj {
	unit := fmt.Sprintf("(%010d)", v)
	filler := strings.Repeat(unit, size/len(unit))
	sum := sha256.Sum256([]byte(filler))
	return crashObj{Version: v, Sum: hex.EncodeToString(sum[:]), Filler: filler}
}

// encodeCrashObj returns the bytes Put(makeCrashObj(v, size)) writes,
// reusing buf. It builds them without encoding/json and without allocating:
// encoding and decoding multi-MiB JSON takes tens of ms (hundreds under
// -race), which would dwarf the write and leave the plain-write strategy too
// few moments in which to be killed.
func encodeCrashObj(buf []byte, v, size int) []byte {
	unit := fmt.Sprintf("(%010d)", v)
	n := size / len(unit) * len(unit)
	b := append(buf[:0], crashPrefix...)
	b = strconv.AppendInt(b, int64(v), 10)
	b = append(b, `,"sum":"`...)
	sumAt := len(b)
	b = append(b, make([]byte, hex.EncodedLen(sha256.Size))...)
	b = append(b, `","filler":"`...)
	fillAt := len(b)
	b = slices.Grow(b, n+3)[:fillAt+n]
	filler := b[fillAt:]
	// Neither the hex sum nor the filler needs escaping.
	for i := copy(filler, unit); i < n; i *= 2 {
		copy(filler[i:], filler[:i])
	}
	sum := sha256.Sum256(filler)
	hex.Encode(b[sumAt:], sum[:])
	return append(b, "\"}\n"...)
}

var crashPrefix = []byte(`{"version":`)

// checkCrashFile checks that data is exactly some version's encoding and
// returns that version.
func checkCrashFile(data []byte) (int, error) {
	rest, ok := bytes.CutPrefix(data, crashPrefix)
	if !ok {
		return 0, fmt.Errorf("%d-byte file does not start with %s", len(data), crashPrefix)
	}
	digits, _, ok := bytes.Cut(rest, []byte(","))
	v, err := strconv.Atoi(string(digits))
	if !ok || err != nil || v <= 0 {
		return 0, fmt.Errorf("%d-byte file has no valid version", len(data))
	}
	want := encodeCrashObj(nil, v, crashSize)
	if !bytes.Equal(data, want) {
		i := 0
		for i < len(data) && i < len(want) && data[i] == want[i] {
			i++
		}
		return 0, fmt.Errorf("version %d is torn: %d bytes, want %d, first difference at byte %d", v, len(data), len(want), i)
	}
	return v, nil
}

// crashWriter is the child: it stores versions after start, through Put's
// own write path, until it is killed.
func crashWriter(s *Store, start int) error {
	fmt.Println("start")
	var buf []byte
	for v := start + 1; ; v++ {
		buf = encodeCrashObj(buf, v, crashSize)
		if err := s.putRaw(crashKey, buf); err != nil {
			return err
		}
	}
}

// TestCrashEncoding proves that encodeCrashObj writes what Put writes and
// that Get reads it back, so the byte comparison in the crash test checks
// real store objects.
func TestCrashEncoding(t *testing.T) {
	s := newStore(t)
	for _, v := range []int{1, 42, 1234567} {
		if err := s.Put(crashKey, makeCrashObj(v, 1000)); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(s.Path(crashKey))
		if err != nil {
			t.Fatal(err)
		}
		if want := encodeCrashObj(nil, v, 1000); !bytes.Equal(data, want) {
			t.Fatalf("Put wrote\n%s\nencodeCrashObj gives\n%s", data, want)
		}
		var o crashObj
		if err := s.Get(crashKey, &o); err != nil {
			t.Fatal(err)
		}
		if o != makeCrashObj(v, 1000) {
			t.Fatalf("Get = %+v", o)
		}
	}
	good := encodeCrashObj(nil, 7, crashSize)
	if v, err := checkCrashFile(good); v != 7 || err != nil {
		t.Fatalf("checkCrashFile(good) = %d, %v", v, err)
	}
	bad := map[string][]byte{
		"empty":       nil,
		"truncated":   good[:len(good)/2],
		"no newline":  good[:len(good)-1],
		"extra":       append(slices.Clip(good), 'x'),
		"mixed":       append(slices.Clip(encodeCrashObj(nil, 8, crashSize)[:100]), good[100:]...),
		"flipped":     append(append(slices.Clip(good[:5000]), '!'), good[5001:]...),
		"wrong count": encodeCrashObj(nil, 7, crashSize-100),
	}
	for name, data := range bad {
		if _, err := checkCrashFile(data); err == nil {
			t.Errorf("checkCrashFile accepted a %s file", name)
		}
	}
}

type crashResult struct {
	root      string
	rounds    int   // kills done
	advanced  int   // rounds after which a newer version was found
	lastSeen  int   // newest version seen
	violation error // first broken guarantee, nil if none
}

// crashMaxDelay bounds the random time between the writer's start and its
// SIGKILL. It spans several write cycles, so kills land anywhere in them.
const crashMaxDelay = 80 * time.Millisecond

// runCrash runs up to rounds start-and-kill rounds of the writer, with the
// plain truncate-and-write strategy if plain is set, and reports what it saw.
// It stops at the first violation.
func runCrash(t *testing.T, plain bool, rounds int) crashResult {
	t.Helper()
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	flag := "0"
	if plain {
		flag = "1"
	}
	r := crashResult{root: root}
	for r.rounds < rounds {
		cmd := helperCmd(t, "crashwriter", root, plainEnv+"="+flag, countEnv+"="+strconv.Itoa(r.lastSeen))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := readLine(bufio.NewReader(stdout), 30*time.Second)
		if err != nil || line != "start\n" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("writer did not start: %q, %v\n%s", line, err, stderr.String())
		}
		time.Sleep(rand.N(crashMaxDelay))
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("writer exited by itself: %v\n%s", werr, stderr.String())
		}
		r.rounds++

		data, err := os.ReadFile(s.Path(crashKey))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if r.lastSeen != 0 {
				r.violation = fmt.Errorf("round %d: object gone after version %d was seen", r.rounds, r.lastSeen)
			}
		case err != nil:
			t.Fatal(err)
		default:
			v, err := checkCrashFile(data)
			switch {
			case err != nil:
				r.violation = fmt.Errorf("round %d: %w", r.rounds, err)
			case v < r.lastSeen:
				r.violation = fmt.Errorf("round %d: version went back from %d to %d", r.rounds, r.lastSeen, v)
			case v > r.lastSeen:
				r.advanced++
				r.lastSeen = v
			}
		}
		if r.violation != nil {
			return r
		}
		// Whatever temporary file the kill left is invisible.
		names, err := s.List("obj")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"data.json"}; r.lastSeen > 0 && !slices.Equal(names, want) {
			t.Fatalf("round %d: List(obj) = %q, want %q", r.rounds, names, want)
		}
	}
	return r
}

// TestCrashAtomicWrite is the acceptance test for atomic writes: however a
// writer is killed, the object is a complete version.
func TestCrashAtomicWrite(t *testing.T) {
	const rounds = 40
	start := time.Now()
	r := runCrash(t, false, rounds)
	if r.violation != nil {
		t.Fatalf("atomic write broken: %v", r.violation)
	}
	t.Logf("%d kills in %v, %d of them after a newer version landed, last version %d",
		r.rounds, time.Since(start).Round(time.Millisecond), r.advanced, r.lastSeen)
	if r.lastSeen == 0 {
		t.Fatal("the writer never completed a write: the test proved nothing")
	}

	// The kills may have left temporary files behind (List did not show
	// them); the sweep removes them once they are old enough.
	s, err := Open(r.root)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cleanTemp(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(r.root, "obj"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "data.json" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("after the sweep obj/ holds %q, want only data.json", names)
	}
}

// TestCrashPlainWriteIsCaught runs the same harness against a plain
// truncate-and-write (os.WriteFile) and requires it to catch a torn file, so
// TestCrashAtomicWrite is known to be able to fail.
func TestCrashPlainWriteIsCaught(t *testing.T) {
	const rounds = 200
	start := time.Now()
	r := runCrash(t, true, rounds)
	if r.violation == nil {
		t.Fatalf("%d kills of a plain writer and no torn file seen: the crash harness is blind", r.rounds)
	}
	t.Logf("caught after %d kills in %v: %v", r.rounds, time.Since(start).Round(time.Millisecond), r.violation)
}
