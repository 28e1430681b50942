//go:build !linux

package spec

import (
	"errors"
	"fmt"
	"runtime"
)

// probeHost reports that containers run on Linux only; the parsers work
// everywhere.
func probeHost() (*host, error) {
	return nil, fmt.Errorf("containers need Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
