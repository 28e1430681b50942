package network

import "time"

// leaseGrace is how old a lease (or a netns file without one) must be
// before Reconcile removes the network of a task that is not live: a
// younger one may belong to a `berth run` between setting up the network
// and creating the task.
const leaseGrace = time.Minute

// ReconcileReport says what Reconcile changed. Task IDs are sorted.
type ReconcileReport struct {
	// Rebuilt lists the live tasks whose DNAT rules were missing or stale
	// (after a reboot or a firewall reload) and were re-made from their
	// leases.
	Rebuilt []string
	// TornDown lists the tasks that are not live and were leased over a
	// minute ago, whose network (rules, veth, namespace, lease) was
	// removed.
	TornDown []string
	// OrphanRules counts the DNAT rules, aimed at this network's subnet,
	// that were removed because their task has no lease.
	OrphanRules int
	// OrphanVeths lists the host veths on this bridge that were removed
	// because no lease owns them.
	OrphanVeths []string
	// OrphanNetNS lists the network namespace files in RunRoot/netns,
	// named by task ID, that were removed because the task has no lease.
	OrphanNetNS []string
}
