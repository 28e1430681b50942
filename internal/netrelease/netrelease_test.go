package netrelease

import (
	"reflect"
	"testing"

	"github.com/berth-dev/berth/network"
)

const taskID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	argv := Argv("/usr/bin/berth", "/var/lib/berth", "/run/berth", "berth0", "berth", taskID)
	cfg, id, ok := Parse(argv)
	want := network.Config{BridgeName: "berth0", RunRoot: "/run/berth", Table: "berth", StateDir: "/var/lib/berth/network/berth0"}
	if !ok || id != taskID || !reflect.DeepEqual(cfg, want) {
		t.Fatalf("Parse(Argv(...)) = %+v, %q, %v; want %+v, %q, true", cfg, id, ok, want, taskID)
	}
	bad := map[string][]string{
		"empty":            nil,
		"another command":  {"/bin/sh", "-c", "true"},
		"old form":         {"/usr/bin/berth", "--root", "/var/lib/berth", "--run-root", "/run/berth", "network", "release", taskID},
		"relative root":    Argv("berth", "var/lib/berth", "/run/berth", "berth0", "berth", taskID),
		"relative runroot": Argv("berth", "/var/lib/berth", "run/berth", "berth0", "berth", taskID),
		"no bridge":        Argv("berth", "/var/lib/berth", "/run/berth", "", "berth", taskID),
		"no table":         Argv("berth", "/var/lib/berth", "/run/berth", "berth0", "", taskID),
		"no id":            Argv("berth", "/var/lib/berth", "/run/berth", "berth0", "berth", ""),
		"extra arg":        append(Argv("berth", "/var/lib/berth", "/run/berth", "berth0", "berth", taskID), "x"),
		"swapped flags": {"berth", "--run-root", "/run/berth", "--root", "/var/lib/berth", "network", "release",
			"--bridge", "berth0", "--table", "berth", taskID},
	}
	for name, argv := range bad {
		if _, _, ok := Parse(argv); ok {
			t.Errorf("%s: Parse(%q) accepted it", name, argv)
		}
		if handled, err := Run(argv); handled || err != nil {
			t.Errorf("%s: Run(%q) = %v, %v; want not handled", name, argv, handled, err)
		}
	}
}
