//go:build linux

package network

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Reconcile makes the host match the leases, for `berth system cleanup`
// and for the first use after a reboot or a firewall reload. It ensures
// the bridge and the tables (EnsureBridge), then, for every lease:
//
//   - a live task whose DNAT rules, ip and ip6 alike, differ from those its
//     lease records (some missing, stale or extra, or an ip6 rule of a
//     network that is no longer dual-stack) has them rebuilt: deleted and
//     re-added in one transaction, so running it again changes nothing. A
//     live task whose lease records no ports (a lease from before berth
//     recorded them) is left as it is;
//   - a task that is not live and whose lease is older than a minute is
//     torn down (TeardownTask); a younger one may be a `berth run` in
//     progress and is left alone.
//
// It also removes what no lease owns: DNAT rules tagged with a task that
// has no lease and aimed at this network's subnet or IPv6 subnet (other
// networks may share the table), host veths ("vb…") on this bridge, and network
// namespace files in RunRoot/netns older than a minute. RunRoot's netns
// directory is taken to belong to this network alone, as it does in berth,
// which has one bridge network per RunRoot.
//
// live reports whether a task is running (or being started); it must not
// call back into this Network. Reconcile goes on after a failed step and
// returns all errors, with the report of what it did.
func (n *Network) Reconcile(live func(taskID string) bool) (*ReconcileReport, error) {
	rep := &ReconcileReport{}
	if err := n.EnsureBridge(); err != nil {
		return rep, err
	}
	leases, err := n.leaseRecords()
	if err != nil {
		return rep, err
	}
	var errs []error
	alive := map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(leases)) {
		if live(id) {
			alive[id] = true
			continue
		}
		if age, ok := n.LeaseAge(id); !ok || age < leaseGrace {
			continue // gone meanwhile, or perhaps a `berth run` in progress
		}
		if err := n.TeardownTask(id); err != nil {
			errs = append(errs, fmt.Errorf("network: tear down task %s: %w", id, err))
			continue
		}
		rep.TornDown = append(rep.TornDown, id)
	}
	if err := n.withPortLock(func() error { return n.reconcileRules(alive, rep) }); err != nil {
		errs = append(errs, err)
	}
	if err := n.removeOrphans(rep); err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// reconcileRules removes orphan DNAT rules and rebuilds those of live
// tasks; the caller holds the port lock, under which every task's rules
// are added after its lease exists.
func (n *Network) reconcileRules(alive map[string]bool, rep *ReconcileReport) error {
	c, err := newConn()
	if err != nil {
		return err
	}
	defer func() { _ = c.CloseLasting() }()
	nr, err := n.dnatRules(c)
	if err != nil {
		return err
	}
	leases, err := n.leaseRecords()
	if err != nil {
		return err
	}
	type taskRules struct{ pre, out []*nftables.Rule } // of both families
	byTask := map[string]*taskRules{}
	var orphans []*nftables.Rule
	for _, x := range []struct {
		rules []*nftables.Rule
		isPre bool
	}{{nr.pre, true}, {nr.out, false}} {
		for _, r := range x.rules {
			id, _, _, target, ok := parseRuleTag(ruleComment(r))
			if !ok {
				continue
			}
			if _, leased := leases[id]; !leased {
				if n.subnet.Contains(target.Addr()) || n.subnet6.Contains(target.Addr()) {
					orphans = append(orphans, r)
				}
				continue
			}
			tr := byTask[id]
			if tr == nil {
				tr = &taskRules{}
				byTask[id] = tr
			}
			if x.isPre {
				tr.pre = append(tr.pre, r)
			} else {
				tr.out = append(tr.out, r)
			}
		}
	}
	var errs []error
	if len(orphans) > 0 {
		for _, r := range orphans {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("network: nftables: %w", err)
			}
		}
		if err := c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("network: remove rules of tasks without a lease: %w", err))
		} else {
			rep.OrphanRules = len(orphans)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(alive)) {
		l, ok := leases[id]
		if !ok || len(l.Ports) == 0 {
			continue
		}
		rules := taskPortRules(id, l.Addr, n.addr6(l), fromRecords(l.Ports))
		var want []string
		for _, r := range rules {
			want = append(want, r.key())
		}
		tr := byTask[id]
		if tr == nil {
			tr = &taskRules{}
		}
		if sameKeys(tr.pre, want) && sameKeys(tr.out, want) {
			continue
		}
		for _, r := range append(tr.pre, tr.out...) {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("network: nftables: %w", err)
			}
		}
		n.addPortRules(c, rules, nr.ready)
		if err := c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("network: rebuild port rules of task %s: %w", id, err))
			continue
		}
		for _, r := range rules {
			nr.ready[r.family] = true // made by the transaction, if it was missing
		}
		rep.Rebuilt = append(rep.Rebuilt, id)
	}
	return errors.Join(errs...)
}

// sameKeys reports whether the rules' keys (family and comment) are want,
// in any order.
func sameKeys(rules []*nftables.Rule, want []string) bool {
	if len(rules) != len(want) {
		return false
	}
	have := make([]string, len(rules))
	for i, r := range rules {
		have[i] = ruleKey(r)
	}
	sort.Strings(have)
	w := slices.Clone(want)
	sort.Strings(w)
	return slices.Equal(have, w)
}

// removeOrphans removes this bridge's host veths and RunRoot's netns files
// that no lease owns. Links and files are listed before the leases are
// read: SetupTask leases before it makes either, so one made after the
// listing is not seen, and one listed has its lease in the later read.
func (n *Network) removeOrphans(rep *ReconcileReport) error {
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		return fmt.Errorf("network: bridge %s: %w", n.bridge, err)
	}
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("network: list links: %w", err)
	}
	var veths []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "veth" && strings.HasPrefix(a.Name, "vb") && a.MasterIndex == br.Attrs().Index {
			veths = append(veths, l)
		}
	}
	nsDir := filepath.Join(n.runRoot, "netns")
	ents, err := os.ReadDir(nsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("network: %w", err)
	}
	leases, err := n.leaseRecords()
	if err != nil {
		return err
	}
	owned := make(map[string]bool, len(leases))
	for id := range leases {
		owned[n.hostVethName(id)] = true
	}
	var errs []error
	for _, l := range veths {
		name := l.Attrs().Name
		if owned[name] {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete veth %s: %w", name, err))
			continue
		}
		rep.OrphanVeths = append(rep.OrphanVeths, name)
	}
	sort.Strings(rep.OrphanVeths)
	for _, e := range ents {
		id := e.Name()
		if _, leased := leases[id]; leased || checkTaskID(id) != nil {
			continue
		}
		path := n.NetNSPath(id)
		// The age of the namespace when it is mounted (nsfs keeps the
		// time its inode was made), of the file otherwise.
		fi, err := os.Stat(path)
		if err != nil || n.now().Sub(fi.ModTime()) < leaseGrace {
			continue
		}
		if err := removeNetNS(path); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.OrphanNetNS = append(rep.OrphanNetNS, id)
	}
	return errors.Join(errs...)
}
