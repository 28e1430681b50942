//go:build linux

package image

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// usedPercent is how full the filesystem holding dir is, as df counts it
// (blocks reserved for root count as unavailable).
func usedPercent(dir string) (float64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	used := st.Blocks - st.Bfree
	total := used + st.Bavail
	if total == 0 {
		return 0, nil
	}
	return 100 * float64(used) / float64(total), nil
}
