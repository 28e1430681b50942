//go:build linux

package image

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFD flushes the whole filesystem holding the open file f (syncfs),
// cheaper than an fsync per unpacked file. It reports writeback errors
// that happened since f was opened.
func syncFD(f *os.File) error {
	return unix.Syncfs(int(f.Fd()))
}
