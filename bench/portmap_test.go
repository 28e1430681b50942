//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testrig"
	"github.com/berth-dev/berth/internal/testrig/testimage"
)

// -berth, -rounds and -tools are shared with pull_test.go.
var (
	wrkDuration = flag.Duration("duration", 5*time.Second, "portmap: length of one wrk run")
	wrkConns    = flag.Int("connections", 8, "portmap: connections wrk keeps open")
	wrkThreads  = flag.Int("threads", 1, "portmap: wrk threads")
	workloadsF  = flag.String("workloads", "keepalive,close", "portmap: comma-separated workloads (keepalive, close)")
)

// portmapRef names the benchmark image in each tool's store.
const portmapRef = "localhost/berth-bench/app:portmap"

// indexHTML is the small static file busybox httpd serves.
var indexHTML = []byte("<!DOCTYPE html>\n<title>berth portmap benchmark</title>\n<p>A small static page served by busybox httpd, " +
	strings.Repeat("padded to about half a kilobyte. ", 12) + "</p>\n")

// serverScript runs both servers in one container: busybox httpd (it
// daemonises) and the test app in front, its request log discarded so that
// logging costs nothing on either path.
const serverScript = "httpd -p 8081 -h /www && httpd -p 8082 -h /www && exec " + testimage.AppPath + " serve -listen :8080 >/dev/null 2>&1"

// workload is one HTTP server in the container and the URL wrk loads.
type workload struct {
	name  string
	about string
	port  uint16 // container port
	// directPort, when set, is the container port the direct target
	// loads instead of port: the same server on a second port. With one
	// port for both targets, a connection of one target meets the
	// container's TIME_WAIT socket of the other's (masquerade keeps the
	// client's source port) with a different TCP timestamp offset, and
	// the SYN is refused (PAWS) and retried: a cost of the bench, not of
	// either path, that showed as published/direct 0.7 for berth and
	// podman alike.
	directPort uint16
	path       string
	want       string // in the body of a good answer
	// close: the server closes every connection after one answer, so each
	// request is a new connection (and a TIME_WAIT socket on the host).
	close bool
}

var allWorkloads = []workload{
	{name: "keepalive", about: "testapp serve (Go net/http), GET /hello; wrk's connections carry every request", port: 8080, path: "/hello", want: "hello from"},
	{name: "close", about: "busybox httpd, GET /index.html (a static file); one connection per request", port: 8081, directPort: 8082, path: "/index.html", want: "portmap benchmark", close: true},
}

// Targets: through the published port on 127.0.0.1, or straight to the
// container's address on its bridge.
const (
	published = "published"
	direct    = "direct"
)

// TestPortmapBench is the published-port throughput benchmark described in
// portmap.sh.
func TestPortmapBench(t *testing.T) {
	if os.Getenv("BERTH_BENCH") != "1" {
		t.Skip("portmap benchmark: runs only with BERTH_BENCH=1; use `sudo sh bench/portmap.sh bin/berth`")
	}
	if os.Geteuid() != 0 {
		t.Fatal("portmap benchmark needs root (containers, bridges, nf_tables): sudo sh bench/portmap.sh")
	}
	testrig.RequireBinary(t, "wrk", "wrk")
	testrig.RequireBinary(t, "nft", "nftables")
	if *rounds < 1 || *wrkDuration < time.Second || *wrkConns < 1 || *wrkThreads < 1 || *wrkThreads > *wrkConns {
		t.Fatalf("-rounds %d, -duration %v, -connections %d, -threads %d: want at least 1 round, 1s, 1 connection, and 1 to connections threads",
			*rounds, *wrkDuration, *wrkConns, *wrkThreads)
	}
	var loads []workload
	for _, w := range allWorkloads {
		if slices.Contains(strings.Split(*workloadsF, ","), w.name) {
			loads = append(loads, w)
		}
	}
	if len(loads) == 0 {
		t.Fatalf("-workloads %q: none of keepalive, close", *workloadsF)
	}
	want := func(name string) bool { return *only == "" || slices.Contains(strings.Split(*only, ","), name) }
	work := t.TempDir()
	t.Cleanup(func() { unmountUnder(work) }) // runs last
	start := time.Now()

	img := testimage.App(t, testimage.WithLayers(testimage.NewLayer().Dir("www", 0o755).File("www/index.html", indexHTML, 0o644)))
	ociArchive, dockerArchive := filepath.Join(work, "image.oci.tar"), filepath.Join(work, "image.docker.tar")
	testimage.WriteOCIArchive(t, ociArchive, testimage.LayoutEntry{Ref: portmapRef, Image: img})
	testimage.WriteDockerArchive(t, dockerArchive, portmapRef, img)
	fmt.Printf("image   %s (testimage.App plus /www/index.html, %d bytes)\n", portmapRef, len(indexHTML))
	fmt.Printf("server  one container per tool: sh -c %q\n", serverScript)

	var servers []*server
	if *berthBin != "" && want("berth") {
		bin, err := filepath.Abs(*berthBin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("-berth: %v (go test runs in bench/: a relative path starts there)", err)
		}
		if nested(filepath.Dir(bin), work) {
			t.Fatalf("berth's folder %s and the state dirs under %s nest: libcontainer would take its slow path", filepath.Dir(bin), work)
		}
		servers = append(servers, berthServer(t, bin, filepath.Join(work, "berth"), ociArchive, loads))
	} else if *berthBin == "" {
		fmt.Println("berth   skipped: no -berth binary given")
	}
	if want("podman") {
		if s, why := podmanServer(t, filepath.Join(work, "podman"), dockerArchive, loads); s != nil {
			servers = append(servers, s)
		} else {
			fmt.Printf("podman: skipped (%s)\n", why)
		}
	}
	if want("docker") {
		if why := dockerEngine(); why != "" {
			fmt.Printf("docker: skipped (%s)\n", why)
		} else if s, why := dockerServer(t, work, dockerArchive, loads); s != nil {
			servers = append(servers, s)
		} else {
			fmt.Printf("docker: skipped (%s)\n", why)
		}
	}
	if len(servers) == 0 {
		t.Fatalf("-tools %q: nothing to run (berth, podman, docker; berth needs -berth)", *only)
	}
	for _, s := range servers {
		fmt.Printf("%-7s %s; published on %s, direct %s\n", s.name, s.about, s.publishedList(loads), s.addr)
	}

	// Every URL must answer before anything is timed; then one untimed
	// second of load on each.
	for _, s := range servers {
		for _, w := range loads {
			for _, target := range []string{published, direct} {
				if err := waitHTTP(s.url(w, target), w.want, 20*time.Second); err != nil {
					t.Fatalf("%s %s %s: %v", s.name, w.name, target, err)
				}
				if _, err := runWrk(s.url(w, target), time.Second); err != nil {
					t.Fatalf("%s %s %s warm-up: %v", s.name, w.name, target, err)
				}
			}
		}
	}
	fmt.Printf("        set up in %.1fs\n", time.Since(start).Seconds())

	fmt.Printf("rounds  %d; per round, workload and tool (tool order rotating), wrk -t%d -c%d -d%v to each target, target order alternating:\n",
		*rounds, *wrkThreads, *wrkConns, *wrkDuration)
	var drained time.Duration
	for r := range *rounds {
		for _, w := range loads {
			for i := range servers {
				s := servers[(r+i)%len(servers)]
				if s.err != nil {
					continue
				}
				targets := []string{published, direct}
				if r%2 == 1 { // each tool alternates from round to round
					targets = []string{direct, published}
				}
				got := map[string]wrkResult{}
				for _, target := range targets {
					if w.close {
						d, err := drain(s.dst(w, target))
						drained += d
						if err != nil {
							s.err = err
							break
						}
					}
					res, err := runWrk(s.url(w, target), *wrkDuration)
					if err != nil {
						s.err = fmt.Errorf("%s %s: %w", w.name, target, err)
						break
					}
					got[target] = res
				}
				if s.err != nil {
					fmt.Printf("  round %d %-9s %-7s FAILED\n", r+1, w.name, s.name)
					continue
				}
				for _, target := range targets {
					s.add(w.name, target, got[target])
				}
				fmt.Printf("  round %d %-9s %-7s published %8.0f req/s  direct %8.0f req/s  published/direct %.3f%s\n", r+1, w.name, s.name,
					got[published].rps, got[direct].rps, got[published].rps/got[direct].rps, errNote(got[published], got[direct]))
			}
		}
	}
	if drained >= time.Second {
		fmt.Printf("        (waited %.0fs in all for the host's TIME_WAIT sockets and conntrack entries to drain before one-connection-per-request runs)\n", drained.Seconds())
	}

	fmt.Println()
	printPortmapTable(os.Stdout, servers, loads)
	fmt.Printf("\ndone in %.0fs\n", time.Since(start).Seconds())
	for _, s := range servers {
		if s.err != nil {
			t.Errorf("%s failed: %v", s.name, s.err)
		}
		for _, e := range s.errs {
			t.Errorf("%s: %s", s.name, e)
		}
	}
}

// server is one tool's container serving every workload.
type server struct {
	name  string
	about string
	addr  netip.Addr        // the container's address on its bridge
	ports map[uint16]uint16 // container port -> host port on 127.0.0.1
	// samples by workload and target, one per round.
	samples map[string][]wrkResult
	errs    []string // runs wrk reported errors for
	err     error
}

func newServer(name, about string, addr netip.Addr, ports map[uint16]uint16) *server {
	return &server{name: name, about: about, addr: addr, ports: ports, samples: map[string][]wrkResult{}}
}

func (s *server) dst(w workload, target string) netip.AddrPort {
	if target == published {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), s.ports[w.port])
	}
	if w.directPort != 0 {
		return netip.AddrPortFrom(s.addr, w.directPort)
	}
	return netip.AddrPortFrom(s.addr, w.port)
}

func (s *server) url(w workload, target string) string {
	return "http://" + s.dst(w, target).String() + w.path
}

func (s *server) publishedList(loads []workload) string {
	var l []string
	for _, w := range loads {
		l = append(l, fmt.Sprintf("127.0.0.1:%d->%d", s.ports[w.port], w.port))
	}
	return strings.Join(l, ", ")
}

func (s *server) add(load, target string, r wrkResult) {
	s.samples[load+" "+target] = append(s.samples[load+" "+target], r)
	if r.errors != "" {
		s.errs = append(s.errs, fmt.Sprintf("%s %s: %s", load, target, r.errors))
	}
}

// hostPorts picks a free 127.0.0.1 port for each workload's container port.
func hostPorts(t *testing.T, loads []workload) (map[uint16]uint16, []string) {
	ports := map[uint16]uint16{}
	var flags []string
	for _, w := range loads {
		p := freePort(t)
		ports[w.port] = p
		flags = append(flags, "-p", fmt.Sprintf("127.0.0.1:%d:%d", p, w.port))
	}
	return ports, flags
}

// berthServer runs the server as a berth task on the benchmark's bridge.
func berthServer(t *testing.T, bin, dir, archive string, loads []workload) *server {
	bn := newBerthNet(t, filepath.Join(dir, "root"), filepath.Join(dir, "run"))
	b := setupBerth(t, bin, dir, archive)
	t.Cleanup(func() { // before setupBerth's cleanup: the network goes after its tasks
		b.removeAll()
		if err := bn.remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ports, flags := hostPorts(t, loads)
	args := append(append([]string{"run", "-d", "--name", "bench-portmap", "--network", "bridge"}, flags...),
		"--entrypoint", "/bin/sh", portmapRef, "-c", serverScript)
	out, err := runOut(b.cmd(args...), b.outFile())
	if err != nil {
		t.Fatal(err)
	}
	id := lastLines(out, 1)
	js, err := runOut(b.cmd("inspect", id), b.outFile())
	if err != nil {
		t.Fatal(err)
	}
	addr, from, err := bn.taskAddr(js, id)
	if err != nil {
		t.Fatal(err)
	}
	return newServer("berth", "berth run -d --network bridge -p 127.0.0.1:PORT:CPORT ("+bn.String()+"; address from "+from+")", addr, ports)
}

// podmanServer runs the server with podman on a netavark bridge network of
// the benchmark's own; it returns why not when podman's networking fails.
func podmanServer(t *testing.T, dir, archive string, loads []workload) (*server, string) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, "podman not found on PATH"
	}
	pm := setupPodman(t, dir, archive)
	pn := newPodmanNet(t, pm.netConfigDir())
	t.Cleanup(func() { // before setupPodman's cleanup: the network goes after its containers
		pm.removeAll()
		if err := pn.remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ports, flags := hostPorts(t, loads)
	args := append(append([]string{"-d"}, flags...), "--entrypoint", "/bin/sh", portmapRef, "-c", serverScript)
	out, err := runOut(pm.runArgs(pn.name, args...), pm.outFile())
	if err != nil {
		return nil, "podman run on its bridge network failed here: " + firstLine(err.Error())
	}
	id := lastLines(out, 1)
	ip, err := runOut(pm.cmd("inspect", "--format", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", pn.name), id), pm.outFile())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil || !pn.subnet.Contains(addr) {
		t.Fatalf("podman inspect %s: address %q, want one in %s", id, ip, pn.subnet)
	}
	return newServer("podman", "podman run -d --network NET -p 127.0.0.1:PORT:CPORT ("+pn.String()+")", addr, ports), ""
}

// dockerServer runs the server with docker on its default bridge network;
// docker's userland proxy serves 127.0.0.1:PORT.
func dockerServer(t *testing.T, work, archive string, loads []workload) (*server, string) {
	db := setupDocker(t, work, archive, portmapRef)
	ports, flags := hostPorts(t, loads)
	args := append(append([]string{"run", "-d", "--label", db.label}, flags...), "--entrypoint", "/bin/sh", portmapRef, "-c", serverScript)
	out, err := runOut(db.cmd(args...), db.out)
	if err != nil {
		return nil, "docker run failed: " + firstLine(err.Error())
	}
	id := lastLines(out, 1)
	ips, err := runOut(db.cmd("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id), db.out)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(ips)
	var addr netip.Addr
	if len(f) > 0 {
		addr, err = netip.ParseAddr(f[0])
	}
	// Only a container address on a private bridge is ever loaded.
	if len(f) != 1 || err != nil || !addr.IsPrivate() {
		t.Fatalf("docker inspect %s: addresses %q, want one private address", id, ips)
	}
	return newServer("docker", "docker run -d -p 127.0.0.1:PORT:CPORT (default bridge, userland proxy)", addr, ports), ""
}

func freePort(t *testing.T) uint16 {
	for range 20 {
		// Below the ephemeral range, so that wrk's own connections never take it.
		p := uint16(20000 + mrand.IntN(10000))
		if portFree(p) {
			return p
		}
	}
	t.Fatal("no free port on 127.0.0.1")
	return 0
}

// portFree reports whether nothing listens on 127.0.0.1:p or 0.0.0.0:p.
func portFree(p uint16) bool {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, e := range tcpEntries(f) {
			if e.local.Port() == p {
				return false
			}
		}
	}
	return true
}

// waitHTTP polls url until it answers 200 with want in the body.
func waitHTTP(url, want string, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				return nil
			}
			err = fmt.Errorf("status %d, body %q", resp.StatusCode, firstLine(string(body)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wrkResult is what one wrk run reports.
type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	requests int
	errors   string // socket errors and non-2xx answers, "" when none
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkSocket   = regexp.MustCompile(`Socket errors: (.*)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// runWrk runs wrk against url for d and parses its report.
func runWrk(url string, d time.Duration) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	args := []string{"-t" + strconv.Itoa(*wrkThreads), "-c" + strconv.Itoa(*wrkConns), "-d" + strconv.Itoa(int(d.Round(time.Second).Seconds())) + "s", "--latency", url}
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 20))
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	n := wrkRequests.FindStringSubmatch(out)
	if m == nil || n == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's report:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.requests, _ = strconv.Atoi(n[1])
	for _, l := range wrkLatency.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(l[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[l[3]]
		if l[1] == "50" {
			r.p50 = time.Duration(v * float64(unit))
		} else {
			r.p99 = time.Duration(v * float64(unit))
		}
	}
	var errs []string
	if s := wrkSocket.FindStringSubmatch(out); s != nil {
		errs = append(errs, "socket errors: "+s[1])
	}
	if s := wrkNon2xx.FindStringSubmatch(out); s != nil {
		errs = append(errs, s[1]+" non-2xx answers")
	}
	if len(errs) > 0 {
		r.errors = fmt.Sprintf("%s (of %d requests)", strings.Join(errs, ", "), r.requests)
	}
	return r, nil
}

func errNote(rs ...wrkResult) string {
	var n []string
	for _, r := range rs {
		if r.errors != "" {
			n = append(n, r.errors)
		}
	}
	if len(n) == 0 {
		return ""
	}
	return "  ERRORS: " + strings.Join(n, "; ")
}

// drain waits until the host holds few TIME_WAIT sockets towards dst and
// conntrack has room, so that a one-connection-per-request run neither
// runs out of local ports nor fills the conntrack table: the direct path
// gets no TIME_WAIT reuse (tcp_tw_reuse=2 reuses them on loopback only),
// so without the wait it would run out first, and lose.
func drain(dst netip.AddrPort) (time.Duration, error) {
	first, last := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			first, _ = strconv.Atoi(f[0])
			last, _ = strconv.Atoi(f[1])
		}
	}
	limit := (last - first + 1) / 4
	begin := time.Now()
	for {
		tw := 0
		for _, e := range tcpEntries("/proc/net/tcp") {
			if e.state == 6 && e.remote == dst { // TCP_TIME_WAIT
				tw++
			}
		}
		ct, ctMax := procInt("/proc/sys/net/netfilter/nf_conntrack_count"), procInt("/proc/sys/net/netfilter/nf_conntrack_max")
		if tw < limit && (ctMax <= 0 || ct < ctMax/2) {
			return time.Since(begin), nil
		}
		if time.Since(begin) > 3*time.Minute {
			return 0, fmt.Errorf("towards %s: %d sockets in TIME_WAIT (want < %d), conntrack %d of %d (want < half): still after 3 minutes", dst, tw, limit, ct, ctMax)
		}
		time.Sleep(time.Second)
	}
}

func procInt(p string) int {
	b, err := os.ReadFile(p)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

type tcpEntry struct {
	local, remote netip.AddrPort
	state         int
}

// tcpEntries parses /proc/net/tcp or tcp6 (addresses as the kernel prints
// them: each 32-bit word in host byte order, little-endian here).
func tcpEntries(file string) []tcpEntry {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var es []tcpEntry
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 4 {
			continue
		}
		l, err1 := procAddr(fl[1])
		r, err2 := procAddr(fl[2])
		st, err3 := strconv.ParseUint(fl[3], 16, 8)
		if err1 == nil && err2 == nil && err3 == nil {
			es = append(es, tcpEntry{local: l, remote: r, state: int(st)})
		}
	}
	return es
}

func procAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(b); i += 4 { // each word little-endian
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// printPortmapTable prints, per workload, each tool's requests per second
// and latencies on both targets, then the ratios of medians.
func printPortmapTable(w io.Writer, servers []*server, loads []workload) {
	for _, l := range loads {
		fmt.Fprintf(w, "workload %s: %s\n", l.name, l.about)
		fmt.Fprintf(w, "%-8s %-10s %5s  %-28s %-10s %s\n", "tool", "target", "runs", "req/s: median (min-max)", "p50", "p99 (medians)")
		for _, s := range servers {
			for _, target := range []string{published, direct} {
				rs := s.samples[l.name+" "+target]
				if len(rs) == 0 {
					continue
				}
				rps := pluck(rs, func(r wrkResult) float64 { return r.rps })
				fmt.Fprintf(w, "%-8s %-10s %5d  %-28s %-10s %s\n", s.name, target, len(rs),
					fmt.Sprintf("%.0f (%.0f-%.0f)", medianF(rps), slices.Min(rps), slices.Max(rps)),
					ms(time.Duration(medianF(pluck(rs, func(r wrkResult) float64 { return float64(r.p50) })))),
					ms(time.Duration(medianF(pluck(rs, func(r wrkResult) float64 { return float64(r.p99) })))))
			}
			if s.err != nil {
				fmt.Fprintf(w, "%-8s FAILED: %s\n", s.name, firstLine(s.err.Error()))
			}
		}
		fmt.Fprintln(w, "ratios: median of the per-round ratios [lowest-highest], then the ratio of the medians over all rounds")
		rps := func(s *server, target string) []float64 {
			return pluck(s.samples[l.name+" "+target], func(r wrkResult) float64 { return r.rps })
		}
		for _, s := range servers {
			r, line, ok := ratioOf(rps(s, published), rps(s, direct))
			if !ok {
				continue
			}
			verdict := ""
			if s.name == "berth" { // the target is berth's; the peers' lines compare
				verdict = "  target >= 0.95: met"
				if r < 0.95 {
					verdict = "  target >= 0.95: MISSED"
				}
			}
			fmt.Fprintf(w, "  %-24s = %s%s\n", s.name+" published/direct", line, verdict)
		}
		for _, a := range servers {
			for _, b := range servers {
				if a.name != "berth" || b == a {
					continue
				}
				for _, target := range []string{published, direct} {
					if _, line, ok := ratioOf(rps(a, target), rps(b, target)); ok {
						fmt.Fprintf(w, "  %-24s = %s\n", fmt.Sprintf("%s/%s %s", a.name, b.name, target), line)
					}
				}
			}
		}
		fmt.Fprintln(w)
	}
}

// ratioOf compares a and b, sample i of each taken in the same round:
// the median of the per-round ratios a[i]/b[i] (paired, so each ratio
// compares runs under the same background load), their extremes, and the
// ratio of the medians; ok is false when there is nothing to compare.
func ratioOf(a, b []float64) (paired float64, line string, ok bool) {
	n := min(len(a), len(b))
	if n == 0 {
		return 0, "", false
	}
	rs := make([]float64, n)
	for i := range n {
		rs[i] = a[i] / b[i]
	}
	paired = medianF(rs)
	return paired, fmt.Sprintf("%.3fx [%.3f-%.3f]  ratio of medians %.3fx", paired, slices.Min(rs), slices.Max(rs), medianF(a)/medianF(b)), true
}

func pluck(rs []wrkResult, f func(wrkResult) float64) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return v
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	return (s[(n-1)/2] + s[n/2]) / 2
}
