package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

// IPAM: one lease file per task, StateDir/leases/<task-id>, holding the
// address (and on a dual-stack network the IPv6 address) and the task's
// published ports (ports.go). Every read-modify-write of the leases happens
// under one store lock ("ipam"), so allocations by concurrent goroutines and
// processes never hand out one address twice. A cursor file remembers the
// last address of each family handed out; allocation continues after it
// (next fit), so a released address is not reused at once, which keeps
// stale neighbour entries and conntrack state of a stopped task from hitting
// the next one. Port records are changed under the port lock too, taken
// first (port lock, then IPAM lock; never the other way round).

const (
	ipamLock  = "ipam"
	leasesDir = "leases"
	cursorKey = "cursor"
)

type lease struct {
	TaskID string     `json:"taskID"`
	Addr   netip.Addr `json:"addr"`
	// Addr6 is the task's IPv6 address on a dual-stack network. Leases
	// made before the network had an IPv6 subnet have none until the next
	// Allocate gives them one.
	Addr6 netip.Addr `json:"addr6,omitzero"`
	// Ports are the task's published mappings, host ports resolved (see
	// AddPorts). Leases written before berth recorded them have none.
	Ports []portRecord `json:"ports,omitempty"`
}

type cursor struct {
	Last  netip.Addr `json:"last"`
	Last6 netip.Addr `json:"last6,omitzero"`
}

// ErrExhausted is returned by Allocate when every address of the subnet is
// leased.
var ErrExhausted = errors.New("network: no free address left in the subnet")

func leaseKey(taskID string) string { return leasesDir + "/" + taskID }

// withIPAMLock runs fn holding the IPAM lock.
func (n *Network) withIPAMLock(fn func() error) (err error) {
	l, err := n.st.Lock(context.Background(), ipamLock)
	if err != nil {
		return fmt.Errorf("network: ipam: %w", err)
	}
	defer func() {
		if uerr := l.Unlock(); err == nil && uerr != nil {
			err = fmt.Errorf("network: ipam: %w", uerr)
		}
	}()
	return fn()
}

// Allocate returns the task's address, leasing a free one if the task has
// none yet; on a dual-stack network it leases the task an IPv6 address too
// (see Leases6), also when the task's lease is older than the network's
// IPv6 subnet. A task keeps its addresses until Release or Reclaim drops
// the lease; two tasks never hold the same address.
func (n *Network) Allocate(taskID string) (netip.Addr, error) {
	l, err := n.allocate(taskID)
	return l.Addr, err
}

// allocate is Allocate returning the whole lease.
func (n *Network) allocate(taskID string) (lease, error) {
	if err := checkTaskID(taskID); err != nil {
		return lease{}, err
	}
	var got lease
	err := n.withIPAMLock(func() error {
		leases, err := n.readLeaseRecords()
		if err != nil {
			return err
		}
		l, had := leases[taskID]
		need4 := !had || !n.usable(l.Addr)
		need6 := n.subnet6.IsValid() && (!had || !n.usable6(l.Addr6))
		if !need4 && !need6 {
			got = l
			return nil
		}
		used := make(map[netip.Addr]bool, 2*len(leases))
		for id, o := range leases {
			if id != taskID {
				used[o.Addr] = true
				used[o.Addr6] = true
			}
		}
		var c cursor
		if err := n.st.Get(cursorKey, &c); err != nil && !errors.Is(err, store.ErrNotFound) {
			// A damaged cursor only costs the next-fit order.
			c = cursor{}
		}
		// A lease whose address no longer fits the subnet keeps its
		// ports: Reconcile points their rules at the new address.
		l.TaskID = taskID
		if need4 {
			a, ok := n.nextFree(c.Last, used)
			if !ok {
				return fmt.Errorf("%w %s (%d leases)", ErrExhausted, n.subnet, len(leases))
			}
			l.Addr, c.Last = a, a
		}
		if need6 {
			a, ok := n.nextFree6(c.Last6, used)
			if !ok {
				return fmt.Errorf("%w %s (%d leases)", ErrExhausted, n.subnet6, len(leases))
			}
			l.Addr6, c.Last6 = a, a
		}
		if err := n.st.Put(leaseKey(taskID), l); err != nil {
			return fmt.Errorf("network: ipam: %w", err)
		}
		// The lease is what counts; a lost cursor write is harmless.
		_ = n.st.Put(cursorKey, c)
		got = l
		return nil
	})
	return got, err
}

// Release drops the task's lease, if any.
func (n *Network) Release(taskID string) error {
	if err := checkTaskID(taskID); err != nil {
		return err
	}
	return n.withIPAMLock(func() error {
		if err := n.st.Delete(leaseKey(taskID)); err != nil {
			return fmt.Errorf("network: ipam: %w", err)
		}
		return nil
	})
}

// Reclaim drops the leases of every task for which live returns false and
// returns their IDs, sorted. live is called with the IPAM lock held, so it
// must not call back into this Network.
func (n *Network) Reclaim(live func(taskID string) bool) ([]string, error) {
	var dropped []string
	err := n.withIPAMLock(func() error {
		ids, err := n.st.List(leasesDir)
		if err != nil {
			return fmt.Errorf("network: ipam: %w", err)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if checkTaskID(id) == nil && live(id) {
				continue
			}
			if err := n.st.Delete(leaseKey(id)); err != nil {
				return fmt.Errorf("network: ipam: %w", err)
			}
			dropped = append(dropped, id)
		}
		return nil
	})
	return dropped, err
}

// Leases returns every task's leased address.
func (n *Network) Leases() (map[string]netip.Addr, error) {
	recs, err := n.leaseRecords()
	if err != nil {
		return nil, err
	}
	leases := make(map[string]netip.Addr, len(recs))
	for id, l := range recs {
		leases[id] = l.Addr
	}
	return leases, nil
}

// Leases6 returns the leased IPv6 address of every task that has one on
// this network's IPv6 subnet: none on an IPv4-only network.
func (n *Network) Leases6() (map[string]netip.Addr, error) {
	recs, err := n.leaseRecords()
	if err != nil {
		return nil, err
	}
	leases := map[string]netip.Addr{}
	for id, l := range recs {
		if a := n.addr6(l); a.IsValid() {
			leases[id] = a
		}
	}
	return leases, nil
}

// leaseRecords reads every lease under the IPAM lock.
func (n *Network) leaseRecords() (leases map[string]lease, err error) {
	err = n.withIPAMLock(func() error {
		leases, err = n.readLeaseRecords()
		return err
	})
	return leases, err
}

// readLeaseRecords reads all lease files; the caller holds the IPAM lock.
func (n *Network) readLeaseRecords() (map[string]lease, error) {
	ids, err := n.st.List(leasesDir)
	if err != nil {
		return nil, fmt.Errorf("network: ipam: %w", err)
	}
	leases := make(map[string]lease, len(ids))
	for _, id := range ids {
		if checkTaskID(id) != nil {
			continue
		}
		var l lease
		if err := n.st.Get(leaseKey(id), &l); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			// Refuse to allocate rather than risk handing out an address
			// a damaged lease may hold.
			return nil, fmt.Errorf("network: ipam: lease of task %s: %w", id, err)
		}
		leases[id] = l
	}
	return leases, nil
}

// usable reports whether a can be a task's address: inside the subnet and
// neither the network address, the gateway nor the broadcast address.
func (n *Network) usable(a netip.Addr) bool {
	return a.Is4() && n.subnet.Contains(a) && a != n.subnet.Addr() && a != n.gateway && a != n.broadcast()
}

func (n *Network) broadcast() netip.Addr {
	b := n.subnet.Addr().As4()
	hostBits := 32 - n.subnet.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= uint32(1)<<hostBits - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// nextFree returns the first usable address after last (wrapping around)
// that is not in used.
func (n *Network) nextFree(last netip.Addr, used map[netip.Addr]bool) (netip.Addr, bool) {
	first := n.gateway.Next()
	end := n.broadcast()
	start := first
	if n.usable(last) {
		start = last.Next()
		if start == end {
			start = first
		}
	}
	a := start
	for {
		if !used[a] {
			return a, true
		}
		a = a.Next()
		if a == end {
			a = first
		}
		if a == start {
			return netip.Addr{}, false
		}
	}
}

// usable6 reports whether a can be a task's IPv6 address: inside the IPv6
// subnet and neither its first address (the subnet-router anycast address)
// nor the gateway. False on an IPv4-only network.
func (n *Network) usable6(a netip.Addr) bool {
	return n.subnet6.Contains(a) && a != n.subnet6.Addr() && a != n.gateway6
}

// addr6 is the lease's IPv6 address if it is one of this network's, else
// the zero Addr: on an IPv4-only network, and for leases made before the
// network had an IPv6 subnet (or had another one).
func (n *Network) addr6(l lease) netip.Addr {
	if n.usable6(l.Addr6) {
		return l.Addr6
	}
	return netip.Addr{}
}

// lastAddr is the last address of the prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// nextFree6 returns the first usable IPv6 address after last (wrapping
// around) that is not in used. Subnets are at least 256 addresses and
// used holds one or two per lease, so the search ends within a few steps
// more than there are leases, unless a small subnet is full.
func (n *Network) nextFree6(last netip.Addr, used map[netip.Addr]bool) (netip.Addr, bool) {
	first, end := n.gateway6.Next(), lastAddr(n.subnet6)
	start := first
	if n.usable6(last) && last != end {
		start = last.Next()
	}
	a := start
	for {
		if !used[a] {
			return a, true
		}
		if a == end {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			return netip.Addr{}, false
		}
	}
}

// LeaseAge is how long ago the task's lease was written (made, or its
// ports recorded or cleared); false when it has none. Cleanup passes use it
// to leave the network of a task still being created alone.
func (n *Network) LeaseAge(taskID string) (time.Duration, bool) {
	fi, err := os.Stat(n.st.Path(leaseKey(taskID)))
	if err != nil {
		return 0, false
	}
	return n.now().Sub(fi.ModTime()), true
}
