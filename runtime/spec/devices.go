package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maskedPaths are the paths docker hides from a container (bind-mounting
// /dev/null or an empty tmpfs over them).
func maskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
}

// readonlyPaths are the paths docker makes read-only in a container.
func readonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// defaultDeviceRules are docker's device cgroup rules: deny everything, then
// allow the devices a container always gets (runc creates their nodes), and
// deny /dev/fuse explicitly. runc appends its own allowances after these.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	allow := func(major, minor int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: ptr(major), Minor: ptr(minor), Access: "rwm"}
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		allow(1, 5), // /dev/zero
		allow(1, 3), // /dev/null
		allow(1, 9), // /dev/urandom
		allow(1, 8), // /dev/random
		allow(5, 0), // /dev/tty
		allow(5, 1), // /dev/console
		{Allow: false, Type: "c", Major: ptr(int64(10)), Minor: ptr(int64(229)), Access: "rwm"}, // /dev/fuse
	}
}

func (g *generator) setDevices(s *specs.Spec) error {
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	if g.o.Privileged {
		devs, err := g.h.devices()
		if err != nil {
			return err
		}
		s.Linux.Devices = devs
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		return nil
	}
	s.Linux.Resources.Devices = defaultDeviceRules()
	s.Linux.MaskedPaths = append(maskedPaths(), g.h.maskedExtra...)
	s.Linux.ReadonlyPaths = readonlyPaths()
	return nil
}
