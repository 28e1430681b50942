package testapp_test

import (
	"bufio"
	"debug/elf"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig/testapp"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testapp.Cleanup()
	os.Exit(code)
}

// proc is a running test app whose stdout is read line by line.
type proc struct {
	cmd   *exec.Cmd
	lines chan string // stdout lines; closed at EOF
	done  chan struct{}
	err   error // Wait's result, set before done closes

	mu  sync.Mutex
	out strings.Builder // all stdout and stderr so far
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(testapp.Build(t), args...), lines: make(chan string, 100), done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.out.Write(b)
	})
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("testapp %v output:\n%s", args, p.output())
		}
	})
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitLine waits for a stdout line starting with prefix and returns the rest.
func (p *proc) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("testapp exited before printing %q", prefix)
			}
			if rest, found := strings.CutPrefix(line, prefix); found {
				return rest
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %q", prefix)
		}
	}
}

// exitCode waits for the process to end and returns its exit code (-1 when
// a signal killed it).
func (p *proc) exitCode(t *testing.T) int {
	t.Helper()
	go func() {
		for range p.lines { // drain so the reader reaches EOF
		}
	}()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("testapp did not exit")
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		t.Fatalf("wait: %v", p.err)
	}
	return ee.ExitCode()
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestBuildIsCached(t *testing.T) {
	a, b := testapp.Build(t), testapp.Build(t)
	if a != b {
		t.Fatalf("two builds in one process: %s and %s", a, b)
	}
	fi, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s is not executable: %v", a, fi.Mode())
	}
}

func TestExitCode(t *testing.T) {
	for _, code := range []int{0, 3, 255} {
		p := start(t, "exit", strconv.Itoa(code))
		if got := p.exitCode(t); got != code {
			t.Fatalf("exit %d: got exit code %d", code, got)
		}
	}
}

func TestServe(t *testing.T) {
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-udp", "127.0.0.1:0")
	udpAddr := p.waitLine(t, "udp echo on ")
	base := "http://" + p.waitLine(t, "listening on ")

	host, _ := os.Hostname()
	if code, body := get(t, base+"/hello"); code != 200 || body != "hello from "+host+"\n" {
		t.Fatalf("GET /hello: %d %q", code, body)
	}
	if code, _ := get(t, base+"/health"); code != 200 {
		t.Fatalf("GET /health: %d", code)
	}
	if line := p.waitLine(t, "GET /hello "); !strings.HasPrefix(line, "200 ") {
		t.Fatalf("request log line: %q", line)
	}

	conn, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("udp echo: %q, %v", buf[:n], err)
	}

	if code, body := get(t, base+"/exit?code=5"); code != 200 || body != "exiting with code 5\n" {
		t.Fatalf("GET /exit: %d %q", code, body)
	}
	if code := p.exitCode(t); code != 5 {
		t.Fatalf("after /exit?code=5: exit code %d", code)
	}
}

func TestServeSignals(t *testing.T) {
	t.Run("SIGTERM shuts down cleanly", func(t *testing.T) {
		p := start(t, "-listen", "127.0.0.1:0") // serve is the default
		p.waitLine(t, "listening on ")
		p.signal(t, syscall.SIGTERM)
		if code := p.exitCode(t); code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
		if !strings.Contains(p.output(), "shutdown complete") {
			t.Fatalf("no clean shutdown in output:\n%s", p.output())
		}
	})
	t.Run("-ignore-sigterm keeps serving", func(t *testing.T) {
		p := start(t, "serve", "-listen", "127.0.0.1:0", "-ignore-sigterm", "-unhealthy")
		base := "http://" + p.waitLine(t, "listening on ")
		p.signal(t, syscall.SIGTERM)
		p.waitLine(t, "ignoring SIGTERM")
		if code, _ := get(t, base+"/health"); code != http.StatusServiceUnavailable {
			t.Fatalf("GET /health with -unhealthy: %d, want 503", code)
		}
		p.signal(t, syscall.SIGINT)
		if code := p.exitCode(t); code != 0 {
			t.Fatalf("exit code after SIGINT %d, want 0", code)
		}
	})
}

func TestSignalledSubcommands(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		ready string
	}{
		{"sleep", []string{"sleep", "60"}, ""},
		{"alloc -hold", []string{"alloc", "4", "-hold"}, "holding"},
		{"ignore-sigterm", []string{"ignore-sigterm"}, "ready"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.args...)
			if tc.ready == "" {
				// sleep prints nothing: give it time to install its handler.
				time.Sleep(300 * time.Millisecond)
			} else {
				p.waitLine(t, tc.ready)
			}
			want := 143
			if tc.name == "ignore-sigterm" {
				p.signal(t, syscall.SIGTERM)
				p.waitLine(t, "ignoring SIGTERM")
				p.signal(t, syscall.SIGINT)
				want = 130
			} else {
				p.signal(t, syscall.SIGTERM)
			}
			if code := p.exitCode(t); code != want {
				t.Fatalf("exit code %d, want %d", code, want)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	srv := start(t, "serve", "-listen", "127.0.0.1:0")
	base := "http://" + srv.waitLine(t, "listening on ")
	file := filepath.Join(t.TempDir(), "f")

	tests := []struct {
		name   string
		args   []string
		env    []string
		code   int
		stdout string // substring
	}{
		{"sleep", []string{"sleep", "0.05"}, nil, 0, ""},
		{"echo", []string{"echo", "a", "b"}, nil, 0, "a b\n"},
		{"env", []string{"env"}, []string{"B=2", "A=1"}, 0, "A=1\nB=2\n"},
		{"alloc", []string{"alloc", "16"}, nil, 0, "allocated 16 MiB\n"},
		{"write", []string{"write", file, "data"}, nil, 0, ""},
		{"cat", []string{"cat", file}, nil, 0, "data"},
		{"status", []string{"status"}, nil, 0, "NoNewPrivs:"},
		{"whoami", []string{"whoami"}, nil, 0, `"uid":`},
		{"healthcheck ok", []string{"healthcheck", base + "/health"}, nil, 0, "200 OK"},
		{"healthcheck 404", []string{"healthcheck", base + "/nope"}, nil, 1, "404"},
		{"usage", []string{"exit"}, nil, 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(testapp.Build(t), tc.args...)
			cmd.Env = tc.env
			out, err := cmd.Output()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(string(out), tc.stdout) {
				t.Fatalf("%v: exit %d, stdout %q; want exit %d, stdout containing %q", tc.args, code, out, tc.code, tc.stdout)
			}
		})
	}
}

func TestBuildFor(t *testing.T) {
	tests := []struct {
		arch    string
		machine elf.Machine
		class   elf.Class
	}{
		{"amd64", elf.EM_X86_64, elf.ELFCLASS64},
		{"arm64", elf.EM_AARCH64, elf.ELFCLASS64},
		{"arm/v7", elf.EM_ARM, elf.ELFCLASS32},
		{"linux/arm64/v8", elf.EM_AARCH64, elf.ELFCLASS64},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.arch, "/", "_"), func(t *testing.T) {
			path := testapp.BuildFor(t, tc.arch)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != tc.machine || f.Class != tc.class || f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
				t.Fatalf("%s: %v %v %v, want %v %v", path, f.Machine, f.Class, f.OSABI, tc.machine, tc.class)
			}
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Fatalf("%s has an ELF interpreter: not static", path)
				}
			}
		})
	}
	if testapp.BuildFor(t, "arm") != testapp.BuildFor(t, "arm/v7") {
		t.Fatal(`"arm" and "arm/v7" built twice`)
	}
}
