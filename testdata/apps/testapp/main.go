// Command testapp is the one static binary berth's tests run inside
// containers: an HTTP (and optional UDP echo) server plus small subcommands
// for exit codes, memory, environment, identity, files, signals and
// security settings. It uses only the standard library and is built with
// CGO_ENABLED=0, so it runs in a busybox (or empty) root filesystem.
//
// Usage: testapp [SUBCOMMAND] [ARGS...]; without a subcommand (or when the
// first argument is a flag) it runs `serve`.
//
//	serve [-listen :8080] [-udp ADDR] [-ignore-sigterm] [-unhealthy]
//	exit N                 exit with code N
//	alloc N [-hold]        allocate and touch N MiB; -hold keeps running
//	env                    print the environment, sorted
//	sleep SECONDS          sleep (fractions allowed)
//	echo ARGS...           print the arguments
//	whoami                 print uid, gid, groups, cwd and hostname as JSON
//	ignore-sigterm         print "ready", then run forever ignoring SIGTERM
//	healthcheck URL        GET URL; exit 0 on 2xx, else 1
//	cat FILE               print a file
//	write FILE CONTENT...  write CONTENT (space-joined) to FILE
//	status                 print CapEff, CapBnd, NoNewPrivs, Seccomp from /proc/self/status
//
// Signals: serve exits 0 after a clean shutdown on SIGTERM or SIGINT (with
// -ignore-sigterm it logs SIGTERM and keeps running). sleep, alloc -hold and
// ignore-sigterm exit 128+signal (143 for SIGTERM, 130 for SIGINT) when a
// signal ends them: a Go program that leaves SIGTERM unhandled exits 2 when it
// runs as PID 1, so they handle it to give one answer in and out of
// containers. Usage errors exit 2, other failures 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "exit":
		if len(args) != 1 {
			return usage(stderr, "exit N")
		}
		code, err := strconv.Atoi(args[0])
		if err != nil || code < 0 || code > 255 {
			return usage(stderr, "exit N (0-255)")
		}
		return code
	case "alloc":
		return allocCmd(args, stdout, stderr)
	case "env":
		fmt.Fprint(stdout, sortedEnv())
		return 0
	case "sleep":
		if len(args) != 1 {
			return usage(stderr, "sleep SECONDS")
		}
		d, err := parseSeconds(args[0])
		if err != nil {
			return usage(stderr, "sleep SECONDS")
		}
		sigs := notify(syscall.SIGTERM, syscall.SIGINT)
		select {
		case <-time.After(d):
			return 0
		case sig := <-sigs:
			return signalExit(stdout, sig)
		}
	case "echo":
		fmt.Fprintln(stdout, strings.Join(args, " "))
		return 0
	case "whoami":
		return writeJSON(stdout, stderr, whoami())
	case "ignore-sigterm":
		sigs := notify(syscall.SIGTERM, syscall.SIGINT)
		fmt.Fprintln(stdout, "ready")
		for sig := range sigs {
			if sig == syscall.SIGTERM {
				fmt.Fprintln(stdout, "ignoring SIGTERM")
				continue
			}
			return signalExit(stdout, sig)
		}
		return 0
	case "healthcheck":
		if len(args) != 1 {
			return usage(stderr, "healthcheck URL")
		}
		return healthcheck(args[0], stdout, stderr)
	case "cat":
		if len(args) != 1 {
			return usage(stderr, "cat FILE")
		}
		return catFile(args[0], stdout, stderr)
	case "write":
		if len(args) < 2 {
			return usage(stderr, "write FILE CONTENT...")
		}
		if err := os.WriteFile(args[0], []byte(strings.Join(args[1:], " ")), 0o644); err != nil {
			fmt.Fprintln(stderr, "testapp:", err)
			return 1
		}
		return 0
	case "status":
		return status(stdout, stderr)
	default:
		return usage(stderr, "SUBCOMMAND (serve, exit, alloc, env, sleep, echo, whoami, ignore-sigterm, healthcheck, cat, write, status)")
	}
}

func usage(stderr io.Writer, synopsis string) int {
	fmt.Fprintln(stderr, "usage: testapp", synopsis)
	return 2
}

// notify returns a channel that receives the given signals.
func notify(sigs ...os.Signal) chan os.Signal {
	c := make(chan os.Signal, 4)
	signal.Notify(c, sigs...)
	return c
}

// signalExit reports a terminating signal and returns 128+signal number.
func signalExit(stdout io.Writer, sig os.Signal) int {
	fmt.Fprintf(stdout, "got %s, exiting\n", signalName(sig))
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}

// parseSeconds parses a non-negative number of seconds such as "2" or "0.25".
func parseSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0, fmt.Errorf("invalid seconds %q", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func sortedEnv() string {
	env := os.Environ()
	slices.Sort(env)
	var b strings.Builder
	for _, kv := range env {
		b.WriteString(kv)
		b.WriteByte('\n')
	}
	return b.String()
}

// allocate returns mib MiB of memory with every page written, so it counts
// against the memory limit. It allocates 1 MiB chunks so that large totals
// need no contiguous address range (32-bit arm).
func allocate(mib int) [][]byte {
	const chunk = 1 << 20
	mem := make([][]byte, 0, mib)
	for range mib {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		mem = append(mem, b)
	}
	return mem
}

func parseMiB(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("invalid MiB %q", s)
	}
	return n, nil
}

func allocCmd(args []string, stdout, stderr io.Writer) int {
	var hold bool
	mib := -1
	for _, a := range args {
		switch {
		case a == "-hold" || a == "--hold":
			hold = true
		case mib < 0:
			n, err := parseMiB(a)
			if err != nil {
				return usage(stderr, "alloc N [-hold]")
			}
			mib = n
		default:
			return usage(stderr, "alloc N [-hold]")
		}
	}
	if mib < 0 {
		return usage(stderr, "alloc N [-hold]")
	}
	sigs := notify(syscall.SIGTERM, syscall.SIGINT)
	mem := allocate(mib)
	fmt.Fprintf(stdout, "allocated %d MiB\n", mib)
	if !hold {
		return 0
	}
	fmt.Fprintln(stdout, "holding")
	sig := <-sigs
	fmt.Fprintf(stdout, "releasing %d MiB\n", len(mem))
	return signalExit(stdout, sig)
}

type identity struct {
	UID      int    `json:"uid"`
	GID      int    `json:"gid"`
	Groups   []int  `json:"groups"`
	Cwd      string `json:"cwd"`
	Hostname string `json:"hostname"`
}

func whoami() identity {
	id := identity{UID: os.Getuid(), GID: os.Getgid(), Groups: []int{}}
	if groups, err := os.Getgroups(); err == nil && groups != nil {
		id.Groups = groups
	}
	id.Cwd, _ = os.Getwd()
	id.Hostname, _ = os.Hostname()
	return id
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	if err := json.NewEncoder(stdout).Encode(v); err != nil {
		fmt.Fprintln(stderr, "testapp:", err)
		return 1
	}
	return 0
}

func healthcheck(url string, stdout, stderr io.Writer) int {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "testapp: healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	fmt.Fprintln(stdout, resp.Status)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 1
	}
	return 0
}

func catFile(name string, stdout, stderr io.Writer) int {
	f, err := os.Open(name)
	if err != nil {
		fmt.Fprintln(stderr, "testapp:", err)
		return 1
	}
	defer f.Close()
	if _, err := io.Copy(stdout, f); err != nil {
		fmt.Fprintln(stderr, "testapp:", err)
		return 1
	}
	return 0
}

// status prints the security-relevant lines of /proc/self/status.
func status(stdout, stderr io.Writer) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Fprintln(stderr, "testapp:", err)
		return 1
	}
	for line := range strings.Lines(string(data)) {
		key, _, _ := strings.Cut(line, ":")
		switch key {
		case "CapEff", "CapBnd", "NoNewPrivs", "Seccomp":
			fmt.Fprint(stdout, line)
		}
	}
	return 0
}

// serve runs the HTTP server (and the UDP echo server with -udp) until
// SIGTERM or SIGINT.
func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":8080", "HTTP listen address")
	udpAddr := fs.String("udp", "", "UDP echo listen address (off when empty)")
	ignoreTerm := fs.Bool("ignore-sigterm", false, "log SIGTERM and keep running")
	unhealthy := fs.Bool("unhealthy", false, "start with /health answering 503")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return usage(stderr, "serve [-listen ADDR] [-udp ADDR] [-ignore-sigterm] [-unhealthy]")
	}

	logger := log.New(stdout, "", 0)
	a := newApp(logger, func(code int) { os.Exit(code) })
	a.setHealthy(!*unhealthy)

	var udp net.PacketConn
	if *udpAddr != "" {
		var err error
		if udp, err = net.ListenPacket("udp", *udpAddr); err != nil {
			fmt.Fprintln(stderr, "testapp:", err)
			return 1
		}
		defer udp.Close()
		go echoUDP(udp, logger)
		logger.Printf("udp echo on %s", udp.LocalAddr())
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "testapp:", err)
		return 1
	}
	// Handle signals before announcing readiness, so a test that signals as
	// soon as it reads "listening on" reaches the handler.
	sigs := notify(syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Printf("listening on %s", ln.Addr())

	for {
		select {
		case err := <-served:
			fmt.Fprintln(stderr, "testapp:", err)
			return 1
		case sig := <-sigs:
			if sig == syscall.SIGTERM && *ignoreTerm {
				logger.Print("ignoring SIGTERM")
				continue
			}
			logger.Printf("got %s, shutting down", signalName(sig))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := srv.Shutdown(ctx)
			cancel()
			if err != nil {
				fmt.Fprintln(stderr, "testapp: shutdown:", err)
				return 1
			}
			logger.Print("shutdown complete")
			return 0
		}
	}
}

// echoUDP sends every datagram back to its sender until conn is closed.
func echoUDP(conn net.PacketConn, logger *log.Logger) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logger.Printf("udp: %v", err)
			}
			return
		}
		logger.Printf("udp %d bytes from %s", n, from)
		if _, err := conn.WriteTo(buf[:n], from); err != nil {
			logger.Printf("udp: %v", err)
		}
	}
}

// app holds the server's state: health and the memory /alloc keeps.
type app struct {
	logger *log.Logger
	exit   func(code int)

	mu      sync.Mutex
	healthy bool
	held    [][]byte
}

func newApp(logger *log.Logger, exit func(int)) *app {
	return &app{logger: logger, exit: exit, healthy: true}
}

func (a *app) setHealthy(h bool) {
	a.mu.Lock()
	a.healthy = h
	a.mu.Unlock()
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.hello)
	mux.HandleFunc("GET /hello", a.hello)
	mux.HandleFunc("GET /health", a.health)
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /health/set", a.setHealth)
		mux.HandleFunc(m+" /exit", a.exitHandler)
		mux.HandleFunc(m+" /alloc", a.alloc)
		mux.HandleFunc(m+" /sleep", a.sleep)
	}
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, sortedEnv())
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(whoami())
	})
	return a.logRequests(mux)
}

// statusWriter remembers the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs one line per request: method, URI, status, duration, peer.
func (a *app) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		a.logger.Printf("%s %s %d %s from %s", r.Method, r.URL.RequestURI(), sw.code,
			time.Since(start).Round(time.Microsecond), r.RemoteAddr)
	})
}

func (a *app) hello(w http.ResponseWriter, _ *http.Request) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "hello from %s\n", host)
}

func (a *app) health(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	healthy := a.healthy
	a.mu.Unlock()
	if !healthy {
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (a *app) setHealth(w http.ResponseWriter, r *http.Request) {
	state := r.FormValue("state")
	switch state {
	case "healthy", "unhealthy":
		a.setHealthy(state == "healthy")
		a.logger.Printf("health set to %s", state)
		fmt.Fprintln(w, state)
	default:
		http.Error(w, "state must be healthy or unhealthy", http.StatusBadRequest)
	}
}

// exitHandler answers, flushes the answer to the client, then exits.
func (a *app) exitHandler(w http.ResponseWriter, r *http.Request) {
	code := 0
	if s := r.FormValue("code"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 255 {
			http.Error(w, "code must be 0-255", http.StatusBadRequest)
			return
		}
		code = n
	}
	body := fmt.Sprintf("exiting with code %d\n", code)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Connection", "close")
	_, _ = io.WriteString(w, body)
	_ = http.NewResponseController(w).Flush()
	a.logger.Printf("%s %s: exiting with code %d", r.Method, r.URL.RequestURI(), code)
	a.exit(code)
}

func (a *app) alloc(w http.ResponseWriter, r *http.Request) {
	mib, err := parseMiB(r.FormValue("mib"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	mem := allocate(mib)
	a.mu.Lock()
	a.held = append(a.held, mem...)
	total := len(a.held)
	a.mu.Unlock()
	fmt.Fprintf(w, "allocated %d MiB, holding %d MiB\n", mib, total)
}

func (a *app) sleep(w http.ResponseWriter, r *http.Request) {
	d, err := parseSeconds(r.FormValue("s"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		fmt.Fprintf(w, "slept %s\n", d)
	case <-r.Context().Done():
	}
}
