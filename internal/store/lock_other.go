//go:build !unix || aix

package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

var errNoFlock = fmt.Errorf("file locking: %w", errors.ErrUnsupported)

func tryLock(*os.File) (bool, error) { return false, errNoFlock }

func unlock(*os.File) error { return errNoFlock }

func deviceOf(fs.FileInfo) (uint64, bool) { return 0, false }
