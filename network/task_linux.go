//go:build linux

package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var errNoDevice = unix.ENODEV

// hostVethName is the host end of a task's veth pair: derived from the
// bridge and task ID, so teardown finds it without any saved state. 11 hex
// digits of a SHA-256 make a collision between two live tasks improbable
// (about 1 in 10^10 for a thousand tasks).
func (n *Network) hostVethName(taskID string) string {
	sum := sha256.Sum256([]byte(n.bridge + "\x00" + taskID))
	return "vb" + hex.EncodeToString(sum[:])[:11]
}

// SetupTask gives a task its network: a new network namespace bind-mounted
// at NetNSPath(taskID), a veth pair whose host end joins the bridge and whose
// other end is eth0 in the namespace with the task's leased address, a
// default route via the gateway, and lo up. On a dual-stack network eth0
// also has the task's IPv6 address, usable at once (no duplicate address
// detection), and an IPv6 default route via the IPv6 gateway; the
// namespace's interfaces have IPv6 enabled and ignore router
// advertisements, which another task on the bridge could send. The bridge
// must exist (EnsureBridge). Leftovers of an earlier setup for the same task
// (a crash half-way) are removed first. On failure, what was made is removed
// again but the lease is kept, so a retry gets the same addresses.
func (n *Network) SetupTask(taskID string) (_ *Endpoint, err error) {
	if err := checkTaskID(taskID); err != nil {
		return nil, err
	}
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		return nil, fmt.Errorf("network: bridge %s (EnsureBridge first?): %w", n.bridge, err)
	}
	l, err := n.allocate(taskID)
	if err != nil {
		return nil, err
	}
	addr, addr6 := l.Addr, n.addr6(l)
	if err := n.teardownPlumbing(taskID); err != nil {
		return nil, fmt.Errorf("network: clear leftovers of task %s: %w", taskID, err)
	}
	defer func() {
		if err != nil {
			_ = n.teardownPlumbing(taskID)
		}
	}()

	nsPath := n.NetNSPath(taskID)
	var sysctls []sysctl
	if addr6.IsValid() {
		// Defaults, before eth0 arrives: it takes them when made.
		sysctls = []sysctl{
			{"net/ipv6/conf/all/disable_ipv6", "0"},
			{"net/ipv6/conf/default/disable_ipv6", "0"},
			{"net/ipv6/conf/default/accept_dad", "0"},
			{"net/ipv6/conf/default/accept_ra", "0"},
			{"net/ipv6/conf/lo/disable_ipv6", "0"},
		}
	}
	if err := createNetNS(nsPath, sysctls...); err != nil {
		return nil, err
	}
	nsh, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("network: open %s: %w", nsPath, err)
	}
	defer nsh.Close()

	hostName := n.hostVethName(taskID)
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	la.MasterIndex = br.Attrs().Index
	la.MTU = br.Attrs().MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(nsh))}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("network: create veth %s: %w", hostName, err)
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, fmt.Errorf("network: veth %s: %w", hostName, err)
	}
	// Hairpin: a task reaching its own published port. Where br_netfilter
	// is loaded (bridge-nf-call-iptables=1, as on the test machine) the DNAT
	// happens while the frame is being bridged, and the bridge must send it
	// back out of the port it came in on.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return nil, fmt.Errorf("network: hairpin mode on %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("network: bring up %s: %w", hostName, err)
	}

	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, fmt.Errorf("network: netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return nil, fmt.Errorf("network: bring up lo in %s: %w", nsPath, err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return nil, fmt.Errorf("network: eth0 in %s: %w", nsPath, err)
	}
	mask := net.CIDRMask(n.subnet.Bits(), 32)
	if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: mask}}); err != nil {
		return nil, fmt.Errorf("network: address %s on eth0: %w", addr, err)
	}
	if addr6.IsValid() {
		a6 := &netlink.Addr{
			IPNet: &net.IPNet{IP: addr6.AsSlice(), Mask: net.CIDRMask(n.subnet6.Bits(), 128)},
			Flags: unix.IFA_F_NODAD,
		}
		if err := h.AddrAdd(eth0, a6); err != nil {
			return nil, fmt.Errorf("network: address %s on eth0: %w", addr6, err)
		}
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return nil, fmt.Errorf("network: bring up eth0 in %s: %w", nsPath, err)
	}
	def := &netlink.Route{
		LinkIndex: eth0.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        n.gateway.AsSlice(),
	}
	if err := h.RouteAdd(def); err != nil {
		return nil, fmt.Errorf("network: default route via %s: %w", n.gateway, err)
	}
	ep := &Endpoint{
		NetNSPath: nsPath,
		Addr:      addr,
		Prefix:    netip.PrefixFrom(addr, n.subnet.Bits()),
		Gateway:   n.gateway,
		HostVeth:  hostName,
	}
	if addr6.IsValid() {
		// After eth0 is up: the kernel refuses IPv6 routes via a link
		// that is down.
		def6 := &netlink.Route{
			LinkIndex: eth0.Attrs().Index,
			Dst:       &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
			Gw:        n.gateway6.AsSlice(),
		}
		if err := h.RouteAdd(def6); err != nil {
			return nil, fmt.Errorf("network: IPv6 default route via %s: %w", n.gateway6, err)
		}
		ep.Addr6, ep.Prefix6, ep.Gateway6 = addr6, netip.PrefixFrom(addr6, n.subnet6.Bits()), n.gateway6
	}
	return ep, nil
}

// TeardownTask undoes SetupTask and AddPorts: it deletes the task's port
// mappings (rules and record) and veth pair, unmounts and removes its
// network namespace file and releases its lease. It is idempotent and copes with half-made state;
// it tries every step and returns all errors.
func (n *Network) TeardownTask(taskID string) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	var errs []error
	// The rules go first and their socket is closed last: closing it waits
	// until the kernel has freed the deleted rules (see newConn), and that
	// wait then overlaps the veth's deletion, which waits out grace periods
	// of its own.
	c, err := newConn()
	if err == nil {
		defer func() { _ = c.CloseLasting() }()
		err = n.removePorts(c, taskID)
	}
	if err != nil {
		errs = append(errs, err)
	}
	if err := n.releasePlumbing(taskID); err != nil {
		errs = append(errs, err)
	}
	if err := n.Release(taskID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// releasePlumbing lets the task's network namespace go, and with it the
// veth pair. Unmounting the namespace's file drops its last reference
// once the task's processes are gone; the kernel then destroys it on its
// netns cleanup workqueue, which deletes eth0 and thereby the host end.
// An explicit delete of the veth would make the caller wait out the RCU
// grace periods of the unregistration (15-20 ms, the largest part of a
// bridged task's teardown); here the kernel waits them out in the
// background, moments later. The address is not handed out again
// meanwhile: leases are allocated from a moving cursor. Without a
// mounted namespace file (a crash half-way), the veth is deleted as
// teardownPlumbing does. A process still inside the namespace (a task
// that joined it with container:) keeps it, and the pair, until it exits;
// Reconcile deletes host ends that have no lease.
func (n *Network) releasePlumbing(taskID string) error {
	nsPath := n.NetNSPath(taskID)
	var st unix.Statfs_t
	if err := unix.Statfs(nsPath, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		return n.teardownPlumbing(taskID)
	}
	return removeNetNS(nsPath)
}

// teardownPlumbing removes the task's veth pair and network namespace.
func (n *Network) teardownPlumbing(taskID string) error {
	var errs []error
	name := n.hostVethName(taskID)
	if l, err := netlink.LinkByName(name); err == nil {
		// Deleting one end of a veth pair deletes the other.
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete veth %s: %w", name, err))
		}
	} else if !isNotFound(err) {
		errs = append(errs, fmt.Errorf("network: veth %s: %w", name, err))
	}
	if err := removeNetNS(n.NetNSPath(taskID)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sysctl is a setting under /proc/sys: key is its path there.
type sysctl struct{ key, value string }

// createNetNS creates a new network namespace, writes the given sysctls in
// it and bind-mounts it at path.
//
// The namespace is made by a goroutine that locks itself to its OS thread,
// unshares the thread's network namespace and never unlocks: when it
// returns, the Go runtime ends the thread (never the main thread: see
// below), so no goroutine can ever run in
// the switched namespace (netns.NewNamed would switch the caller's thread
// and mount under /run/netns, which iproute2 re-mounts; FIELD-NOTES).
// /proc/sys/net shows the namespace of the thread that opens it, so the
// sysctls are written on that thread too.
func createNetNS(path string, sysctls ...sysctl) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("network: netns dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("network: netns file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	var unshareOnThread func()
	unshareOnThread = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread: Go never ends it, so it would stay in the
			// namespace for the life of the process, and keep the
			// namespace (and its veth) alive after the task's release.
			// Hold it while another thread does the work: a locked thread
			// runs nothing else, so the new goroutine gets another one.
			defer runtime.UnlockOSThread()
			done := make(chan struct{})
			go func() {
				defer close(done)
				unshareOnThread()
			}()
			<-done
			return
		}
		// No UnlockOSThread: the thread dies with this goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("network: unshare network namespace: %w", err)
			return
		}
		for _, s := range sysctls {
			if err := writeSysctl(filepath.Join("/proc/sys", s.key), s.value); err != nil {
				errc <- fmt.Errorf("%w (in the new namespace)", err)
				return
			}
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("network: bind-mount network namespace at %s: %w", path, err)
			return
		}
		errc <- nil
	}
	go unshareOnThread()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// removeNetNS unmounts and removes a network namespace file; a missing or
// unmounted file is fine.
func removeNetNS(path string) error {
	for {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if err == nil {
			continue // stacked mounts: unmount until none is left
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		return fmt.Errorf("network: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: remove %s: %w", path, err)
	}
	return nil
}
