//go:build linux

package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the generated specs")

// TestGolden compares whole generated config.json files with testdata, so
// any change to what berth asks of runc shows up in review. Regenerate with
// `go test ./runtime/spec -run TestGolden -update` and read the diff.
func TestGolden(t *testing.T) {
	root := makeRootfs(t)
	envFile := filepath.Join(t.TempDir(), "app.env")
	writeFile(t, envFile, "DB_HOST=db\nLOG_LEVEL=info\n", 0o644)
	image := ImageConfig{
		Entrypoint: []string{"/usr/local/bin/entry"},
		Cmd:        []string{"serve", "--port", "8080"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"},
		WorkingDir: "/srv",
		StopSignal: "SIGQUIT",
		Labels:     map[string]string{"org.opencontainers.image.title": "app"},
	}
	for _, tc := range []struct {
		name string
		img  ImageConfig
		o    Options
		opts []SpecOpt
	}{
		{name: "default", img: image, o: Options{ID: testID}},
		{name: "full", img: image, o: Options{
			ID:                testID,
			Name:              "web",
			Hostname:          "web-1",
			Env:               []string{"LOG_LEVEL=debug", "EXTRA=1"},
			EnvFiles:          []string{envFile},
			Entrypoint:        strp("/usr/bin/app"),
			Cmd:               []string{"--config", "/etc/app.yaml"},
			User:              "app",
			WorkDir:           "/data",
			Memory:            512 << 20,
			MemoryReservation: 256 << 20,
			CPUs:              1.5,
			CPUShares:         512,
			PidsLimit:         200,
			Ulimits:           []Ulimit{{"nofile", 1024, 2048}, {"core", 0, 0}},
			Mounts: []Mount{
				{Source: "/var/lib/berth/volumes/data/_data", Destination: "/data"},
				{Source: "/etc/app", Destination: "/etc/app", ReadOnly: true},
			},
			Tmpfs: []string{"/run:size=16m", "/tmp"},
			ExtraMounts: []specs.Mount{
				{Destination: "/etc/hosts", Type: "bind", Source: "/run/berth/tasks/t1/hosts", Options: []string{"rbind", "rprivate", "ro"}},
				{Destination: "/etc/resolv.conf", Type: "bind", Source: "/run/berth/tasks/t1/resolv.conf", Options: []string{"rbind", "rprivate", "ro"}},
			},
			ReadOnly:        true,
			NetNSPath:       "/run/berth/netns/t1",
			Init:            true,
			InitPath:        "/usr/local/bin/berth",
			TTY:             true,
			Stdin:           true,
			NoNewPrivileges: true,
			CapAdd:          []string{"NET_ADMIN"},
			CapDrop:         []string{"MKNOD", "NET_RAW"},
			StopSignal:      "SIGINT",
			Labels:          map[string]string{"team": "edge"},
		}, opts: []SpecOpt{WithCgroupsPath("/berth/t1/web")}},
		{name: "privileged", img: image, o: Options{ID: testID, Privileged: true, User: "1000:1000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.LookupEnv = noEnv
			h := fakeHost()
			h.maskedExtra = []string{"/sys/devices/system/cpu/cpu0/thermal_throttle"}
			s, err := generate(tc.img, tc.o, root, h, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			got := normalise(t, s, root)
			file := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from the generated spec (run with -update and review the diff):\n%s", file, got)
			}
		})
	}
}

// normalise makes a spec independent of the machine: the rootfs path becomes
// /ROOTFS and the seccomp profile (which depends on the architecture and the
// kernel's version) is reduced to its default action; TestSeccomp checks the
// rules themselves.
func normalise(t *testing.T, s *specs.Spec, root string) []byte {
	t.Helper()
	if p := s.Linux.Seccomp; p != nil {
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet}
	}
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(strings.ReplaceAll(string(b), root, "/ROOTFS")), '\n')
}
