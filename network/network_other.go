//go:build !linux

package network

// The network needs Linux (netlink, network namespaces, nf_tables); elsewhere
// every host-changing method returns ErrUnsupported. Config, New, the IPAM
// methods, Ports and PortMap work everywhere.

func (n *Network) EnsureBridge() error                        { return ErrUnsupported }
func (n *Network) Remove() error                              { return ErrUnsupported }
func (n *Network) SetupTask(taskID string) (*Endpoint, error) { return nil, ErrUnsupported }
func (n *Network) TeardownTask(taskID string) error           { return ErrUnsupported }
func (n *Network) AddPorts(taskID string, ports []PortMapping) ([]PortMapping, error) {
	return nil, ErrUnsupported
}
func (n *Network) RemovePorts(taskID string) error    { return ErrUnsupported }
func (n *Network) ForwardBlockers() ([]string, error) { return nil, ErrUnsupported }
func (n *Network) Reconcile(live func(taskID string) bool) (*ReconcileReport, error) {
	return nil, ErrUnsupported
}
