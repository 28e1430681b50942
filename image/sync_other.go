//go:build !linux

package image

import (
	"errors"
	"os"
)

func syncFD(*os.File) error { return errors.ErrUnsupported }
