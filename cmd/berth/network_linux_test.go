//go:build linux

package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/network"
)

func TestParsePublish(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	v6 := netip.MustParseAddr("::1")
	pm := func(ip netip.Addr, hp, hpEnd, cp uint16, p network.Proto) network.PortMapping {
		return network.PortMapping{HostIP: ip, HostPort: hp, HostPortEnd: hpEnd, ContainerPort: cp, Proto: p}
	}
	none := netip.Addr{}
	for _, tc := range []struct {
		in   string
		want []network.PortMapping
		err  string
	}{
		{"8080:80", []network.PortMapping{pm(none, 8080, 0, 80, network.TCP)}, ""},
		{"80", []network.PortMapping{pm(none, 0, 0, 80, network.TCP)}, ""},
		{"53/udp", []network.PortMapping{pm(none, 0, 0, 53, network.UDP)}, ""},
		{"127.0.0.1:8080:80/tcp", []network.PortMapping{pm(lo, 8080, 0, 80, network.TCP)}, ""},
		{"127.0.0.1::80", []network.PortMapping{pm(lo, 0, 0, 80, network.TCP)}, ""},
		{"[::1]:8080:80", []network.PortMapping{pm(v6, 8080, 0, 80, network.TCP)}, ""},
		{"8000-8001:9000-9001/udp", []network.PortMapping{pm(none, 8000, 0, 9000, network.UDP), pm(none, 8001, 0, 9001, network.UDP)}, ""},
		{"8000-8010:80", []network.PortMapping{pm(none, 8000, 8010, 80, network.TCP)}, ""},
		{"9000-9001", []network.PortMapping{pm(none, 0, 0, 9000, network.TCP), pm(none, 0, 0, 9001, network.TCP)}, ""},
		{"8000-8002:9000-9001", nil, "differ in length"},
		{"8080:80/sctp", nil, "tcp or udp"},
		{"0:80", nil, "1 to 65535"},
		{"8080:0", nil, "1 to 65535"},
		{"70000:80", nil, "1 to 65535"},
		{"9001-9000:80", nil, "ends before it starts"},
		{"x:8080:80", nil, "host IP"},
		{"::1:8080:80", nil, "brackets"},
		{"[127.0.0.1]:8080:80", nil, "IPv6"},
		{"1.2.3.4:5:6:7", nil, "too many"},
		{"", nil, "container port"},
		{"a:80", nil, "host port"},
	} {
		got, err := parsePublish(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("%q: error %v, want one naming the input and %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestPortStrings(t *testing.T) {
	got := portStrings([]network.PortMapping{
		{HostPort: 49153, ContainerPort: 80},
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: network.TCP},
		{HostIP: netip.MustParseAddr("::1"), HostPort: 53, ContainerPort: 53, Proto: network.UDP},
	})
	want := []string{"0.0.0.0:49153->80/tcp", "127.0.0.1:8080->80/tcp", "[::1]:53->53/udp"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("portStrings: %q, want %q", got, want)
	}
}

func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1::80/udp", "[::1]:1-2:3-4", "1-65535", "::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pms, err := parsePublish(s)
		if err != nil {
			return
		}
		if len(pms) == 0 || len(pms) > 65535 {
			t.Fatalf("%q: %d mappings", s, len(pms))
		}
		for _, pm := range pms {
			if pm.ContainerPort == 0 || (pm.HostPortEnd != 0 && pm.HostPortEnd < pm.HostPort) {
				t.Fatalf("%q: bad mapping %+v", s, pm)
			}
		}
	})
}
