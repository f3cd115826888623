package storage

import (
	"os"
	"syscall"
)

// fallocKeepSize is FALLOC_FL_KEEP_SIZE: reserve blocks without changing
// the file size, so the .dat end stays the end of the last record.
const fallocKeepSize = 0x1

// preallocateFile reserves size bytes of disk for f.
func preallocateFile(f *os.File, size int64) error {
	return syscall.Fallocate(int(f.Fd()), fallocKeepSize, 0, size)
}
