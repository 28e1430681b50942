//go:build !linux

package image

import "os"

func inode(os.FileInfo) (uint64, bool) { return 0, false }

func device(*os.File) (uint64, bool) { return 0, false }
