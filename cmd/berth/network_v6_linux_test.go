//go:build linux

package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testrig"
)

// TestNetworkV6: a dual-stack bridge through the berth binary, on the
// env's own bridge with a random ULA /64 (BERTH_BRIDGE_SUBNET6). Traffic
// goes only to 127.0.0.1 and to addresses on the env's bridge.
//
//   - a task's eth0 has an IPv6 address of the subnet and a default route
//     via the IPv6 gateway, and its /etc/hosts lists that address;
//   - a port published without a host address answers over IPv6 through
//     the bridge's IPv6 gateway address, from the host and from another
//     task (hairpin), and over IPv4 on 127.0.0.1, and is one mapping in
//     port and ps;
//   - inspect and network inspect show the IPv6 address, gateway and
//     subnet;
//   - -p [::1]:... is refused, naming why;
//   - after rm the port no longer answers and no task's rule is left in
//     the ip6 table (the env's cleanup checks the rest).
func TestNetworkV6(t *testing.T) {
	fx := newRunFixture(t)
	e := newRunEnv(t, fx)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[0] = 0xfd
	var a16 [16]byte
	copy(a16[:], b[:])
	subnet6 := netip.PrefixFrom(netip.AddrFrom16(a16), 64)
	gw6 := subnet6.Addr().Next()
	e.env = append(e.env, "BERTH_BRIDGE_SUBNET6="+subnet6.String())

	out := e.ok("run", "--rm", bbImage, "sh", "-c", "ip -6 addr show dev eth0; ip -6 route; echo; cat /etc/hosts")
	m := regexp.MustCompile(`inet6 ([0-9a-f:]+)/64 scope global`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no global IPv6 address on eth0:\n%s", out)
	}
	addr6, err := netip.ParseAddr(m[1])
	if err != nil || !subnet6.Contains(addr6) || addr6 == gw6 {
		t.Fatalf("eth0's IPv6 address %s is not a task address of %s (%v)", m[1], subnet6, err)
	}
	for _, want := range []string{"default via " + gw6.String(), "\n" + addr6.String() + "\t"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "tentative") {
		t.Errorf("a tentative address in the task:\n%s", out)
	}

	port := freePort(t)
	srv := e.start("--name", "web6", "-p", fmt.Sprintf("%d:8080", port), appImage, "serve")
	e.waitLog(srv, "listening on")
	url6 := fmt.Sprintf("http://[%s]:%d/hello", gw6, port)
	for _, url := range []string{url6, fmt.Sprintf("http://127.0.0.1:%d/hello", port)} {
		if body := httpGet(t, url); !strings.Contains(body, "hello from") {
			t.Errorf("GET %s: %q", url, body)
		}
	}
	out = e.ok("run", "--rm", bbImage, "wget", "-qO-", url6)
	if !strings.Contains(out, "hello from") {
		t.Errorf("another task -> %s (hairpin): %q", url6, out)
	}
	if got, want := e.ok("port", "web6"), fmt.Sprintf("8080/tcp -> 0.0.0.0:%d\n", port); got != want {
		t.Errorf("port web6: %q, want %q (one mapping for both families)", got, want)
	}

	var ins []struct {
		Network struct{ IPAddress, IPv6Address, IPv6Gateway string }
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "web6")), &ins); err != nil || len(ins) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	srv6, err := netip.ParsePrefix(ins[0].Network.IPv6Address)
	if err != nil || !subnet6.Contains(srv6.Addr()) || srv6.Bits() != 64 || ins[0].Network.IPv6Gateway != gw6.String() {
		t.Fatalf("inspect network: %+v (%v)", ins[0].Network, err)
	}
	if hosts := e.ok("exec", "web6", "cat", "/etc/hosts"); !strings.Contains(hosts, srv6.Addr().String()+"\t") {
		t.Errorf("/etc/hosts of web6 lacks %s:\n%s", srv6.Addr(), hosts)
	}
	var ni []struct {
		Subnet6, Gateway6 string
		Tasks             []struct{ Name, Address6 string }
	}
	if err := json.Unmarshal([]byte(e.ok("network", "inspect")), &ni); err != nil || len(ni) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	if ni[0].Subnet6 != subnet6.String() || ni[0].Gateway6 != gw6.String() || len(ni[0].Tasks) != 1 || ni[0].Tasks[0].Address6 != srv6.String() {
		t.Errorf("network inspect: %+v", ni[0])
	}

	r := e.code(125, "run", "-d", "-p", fmt.Sprintf("[::1]:%d:8080", freePort(t)), bbImage, "sleep", "5")
	if !strings.Contains(r.err, "[::1]") || !strings.Contains(r.err, "route_localnet") {
		t.Errorf("-p [::1]:...:\n%s", r)
	}

	e.ok("rm", "-f", "web6")
	if _, err := freshHTTP.Get(url6); err == nil {
		t.Error("the IPv6 port still answers after rm")
	}
	nft := testrig.RequireBinary(t, "nft", "nftables")
	out6, err := exec.Command(nft, "list", "table", "ip6", e.table).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table ip6 %s: %v\n%s", e.table, err, out6)
	}
	if strings.Contains(string(out6), "berth task=") {
		t.Errorf("task rules left in table ip6 %s:\n%s", e.table, out6)
	}
}
