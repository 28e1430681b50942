//go:build !linux

package network

// BridgeExists reports false on systems other than Linux.
func (n *Network) BridgeExists() bool { return false }

// TableExists reports false on systems other than Linux.
func (n *Network) TableExists() bool { return false }
