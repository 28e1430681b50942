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
// address and the task's published ports (ports.go). Every read-modify-write
// of the leases happens under one store lock ("ipam"), so allocations by
// concurrent goroutines and processes never hand out one address twice. A
// cursor file remembers the last address handed out; allocation continues
// after it (next fit), so a released address is not reused at once, which
// keeps stale ARP entries and conntrack state of a stopped task from hitting
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
	// Ports are the task's published mappings, host ports resolved (see
	// AddPorts). Leases written before berth recorded them have none.
	Ports []portRecord `json:"ports,omitempty"`
}

type cursor struct {
	Last netip.Addr `json:"last"`
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
// none yet. A task keeps its address until Release or Reclaim drops the
// lease; two tasks never hold the same address.
func (n *Network) Allocate(taskID string) (netip.Addr, error) {
	if err := checkTaskID(taskID); err != nil {
		return netip.Addr{}, err
	}
	var addr netip.Addr
	err := n.withIPAMLock(func() error {
		leases, err := n.readLeases()
		if err != nil {
			return err
		}
		used := make(map[netip.Addr]bool, len(leases))
		for id, a := range leases {
			if id == taskID && n.usable(a) {
				addr = a
				return nil
			}
			used[a] = true
		}
		var c cursor
		if err := n.st.Get(cursorKey, &c); err != nil && !errors.Is(err, store.ErrNotFound) {
			// A damaged cursor only costs the next-fit order.
			c = cursor{}
		}
		a, ok := n.nextFree(c.Last, used)
		if !ok {
			return fmt.Errorf("%w %s (%d leases)", ErrExhausted, n.subnet, len(leases))
		}
		// A lease whose address no longer fits the subnet keeps its
		// ports: Reconcile points their rules at the new address.
		var old lease
		_ = n.st.Get(leaseKey(taskID), &old)
		if err := n.st.Put(leaseKey(taskID), lease{TaskID: taskID, Addr: a, Ports: old.Ports}); err != nil {
			return fmt.Errorf("network: ipam: %w", err)
		}
		// The lease is what counts; a lost cursor write is harmless.
		_ = n.st.Put(cursorKey, cursor{Last: a})
		addr = a
		return nil
	})
	return addr, err
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
	var leases map[string]netip.Addr
	err := n.withIPAMLock(func() (err error) {
		leases, err = n.readLeases()
		return err
	})
	return leases, err
}

// readLeases reads all leased addresses; the caller holds the IPAM lock.
func (n *Network) readLeases() (map[string]netip.Addr, error) {
	recs, err := n.readLeaseRecords()
	if err != nil {
		return nil, err
	}
	leases := make(map[string]netip.Addr, len(recs))
	for id, l := range recs {
		leases[id] = l.Addr
	}
	return leases, nil
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
