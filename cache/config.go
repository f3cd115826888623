package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Sentinel errors.
var (
	// ErrInvalidConfig is wrapped by Config.Validate's errors.
	ErrInvalidConfig = errors.New("cache: invalid config")
	// ErrLocked means another Cache (in this or another process) holds the
	// disk tier's directory.
	ErrLocked = errors.New("cache: directory in use by another cache")
)

// Config configures a Cache. Start from DefaultConfig.
type Config struct {
	// MemoryBytes is the memory tier's budget in bytes, counting each
	// entry's bytes plus a small fixed overhead. 0 disables the memory
	// tier. Default 64 MiB.
	MemoryBytes int64
	// Dir holds the disk tier; "" keeps only the memory tier. It is
	// created if missing. The cache owns the files it creates there
	// (LOCK, tmp/ and the fan-out directories 00..ff) and leaves any
	// other file alone.
	Dir string
	// DiskBytes is the disk tier's budget in bytes (the mount's
	// -cacheCapacityMB), counting file sizes rounded up to 4 KiB. <= 0
	// disables the disk tier. Default 1 GiB.
	DiskBytes int64
	// WriteQueueBytes bounds the blob bytes waiting for the background
	// disk writer; a Put that would exceed it is not written to disk.
	// Worst-case memory of a Cache is MemoryBytes + WriteQueueBytes plus
	// the disk index (about 150 bytes per disk file). Default 32 MiB.
	WriteQueueBytes int64
	// Logger receives disk-tier warnings (write errors, corrupt files,
	// budget changes). nil means slog.Default().
	Logger *slog.Logger

	// Test hooks (nil means the real thing).
	writeHook func(f *os.File, p []byte) (int, error) // every disk-tier write
	now       func() time.Time
}

// DefaultConfig returns the defaults: a 64 MiB memory tier and, once Dir is
// set, a 1 GiB disk tier.
func DefaultConfig() Config {
	return Config{
		MemoryBytes:     64 << 20,
		DiskBytes:       1 << 30,
		WriteQueueBytes: 32 << 20,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.MemoryBytes < 0:
		return fmt.Errorf("%w: MemoryBytes %d < 0", ErrInvalidConfig, c.MemoryBytes)
	case c.diskEnabled() && c.WriteQueueBytes <= 0:
		return fmt.Errorf("%w: WriteQueueBytes %d must be > 0 with a disk tier", ErrInvalidConfig, c.WriteQueueBytes)
	}
	return nil
}

func (c Config) diskEnabled() bool { return c.Dir != "" && c.DiskBytes > 0 }
