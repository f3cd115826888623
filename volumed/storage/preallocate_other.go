//go:build !linux

package storage

import "os"

// preallocateFile is a no-op where fallocate is not available.
func preallocateFile(*os.File, int64) error { return nil }
