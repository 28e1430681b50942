//go:build !linux

package image

import "errors"

func usedPercent(string) (float64, error) { return 0, errors.ErrUnsupported }
