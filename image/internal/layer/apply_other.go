//go:build !linux

package layer

import (
	"context"
	"errors"
	"io"
)

// Apply needs Linux (overlayfs whiteouts, device nodes, xattrs).
func Apply(_ context.Context, _ string, _ io.Reader, _ Options) (Result, error) {
	return Result{}, errors.ErrUnsupported
}
