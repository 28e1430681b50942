package network

// Table returns the name of the network's nf_tables table.
func (n *Network) Table() string { return n.table }
