//go:build !linux

package image

import "errors"

func syncFS(string) error { return errors.ErrUnsupported }
