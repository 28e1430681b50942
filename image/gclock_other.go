//go:build !linux

package image

import (
	"context"
	"errors"
)

func (s *Store) lockGC(context.Context, bool) (func(), error) { return nil, errors.ErrUnsupported }
