//go:build linux

package image

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the whole filesystem holding dir: cheaper than an fsync
// per unpacked file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
