package mount

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/kelpfs/kelp/cache"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// Config configures a mount session.
type Config struct {
	// Filer is the filer's address: "host:port" of its HTTP API (gRPC on
	// port+10000, as SeaweedFS does) or "host:httpPort.grpcPort".
	Filer string
	// FilerConn, if set, carries the filer's gRPC calls instead of a
	// connection dialed to Filer: a filer in the same process hands out
	// an in-process one (filerd.Server.Local). Filer must still name it.
	FilerConn grpc.ClientConnInterface
	// LocalVolumes maps the addresses of volume servers running in the
	// same process to their in-process writes (volumed's LocalBlobs):
	// chunks uploaded to them skip HTTP.
	LocalVolumes map[string]client.LocalBlobs
	// FilerPath is the directory of the filer mounted as the root;
	// default "/".
	FilerPath string
	// ChunkSizeMB is the size of the chunks files are cut into. Default 4.
	ChunkSizeMB int
	// CacheDir holds the disk tier of the chunk cache; "" keeps only the
	// memory tier.
	CacheDir string
	// CacheCapacityMB is the disk tier's budget. Default 1024.
	CacheCapacityMB int64
	// CacheMemoryMB is the memory tier's budget. Default 128.
	CacheMemoryMB int64
	// ImageCapacityMB bounds the local images of written files kept in
	// CacheDir for FUSE passthrough (the kernel reads an image directly
	// when a file is opened read-only and its image is current); 0
	// keeps none. Used only where the kernel offers passthrough and the
	// mount runs as root. Default 2048.
	ImageCapacityMB int64
	// InlineImages is how many files being written at once keep their
	// image current as they are written (a core copies beside each
	// writer); images of files written beyond that are filled after
	// their writers close. 0 means half the CPUs, at least 1; -1 none.
	InlineImages int
	// WriteBufferMB caps the memory all open files' unflushed data may
	// take. A writer over it starts uploads and waits; meanwhile chunks
	// still waiting for an upload slot move to CacheDir (up to
	// CacheCapacityMB, on top of the cache's own files) and give their
	// memory back, as do chunks whose upload failed until the next flush
	// retries them. Without a CacheDir the writer just waits. Default 256.
	WriteBufferMB int64
	// ConcurrentWriters bounds chunk uploads in flight. Default 16.
	ConcurrentWriters int
	// ConcurrentReaders bounds chunk fetches in flight (prefetches
	// included). Default 16.
	ConcurrentReaders int
	// ReadAheadChunks is how many chunks a sequential reader fetches
	// ahead. Default 8 (32 MiB of 4 MiB chunks, as far as the kernel
	// reads ahead by default).
	ReadAheadChunks int
	// InlineLimit: files up to this size are stored in their inode
	// instead of in a chunk. Default 4096; lowered on its own to what the
	// filer accepts.
	InlineLimit int
	// KeptContentBytes bounds the content of closed files kept so that a
	// reopen needs none from the filer (closedcache.go); past it, files
	// keep their generation alone. 0 means 16 MiB.
	KeptContentBytes int64
	// ReadOnly refuses every change with EROFS.
	ReadOnly bool
	// Umask is added to the creating process's umask for every file and
	// directory created; like it, it gives way to the parent directory's
	// default ACL, which POSIX says replaces the umask.
	Umask uint32
	// Replication, Collection and TTL are passed when chunks are assigned;
	// "" uses the filer's defaults.
	Replication, Collection, TTL string
	// EntryTimeout and AttrTimeout are how long the kernel may cache names
	// and attributes. Changes from other clients invalidate them through
	// the change log sooner; the timeouts bound staleness when the change
	// log cannot be followed. Default 10s each.
	EntryTimeout, AttrTimeout time.Duration
	// MetadataCacheTTL is how long the mount answers lookups and getattrs
	// from what it learnt, while its change-log subscription keeps that
	// current; 0 asks the filer every time.
	MetadataCacheTTL time.Duration
	// OpTimeout bounds each filer call; a filer away longer fails the
	// operation with EIO. Default 30s.
	OpTimeout time.Duration
	// ConnectTimeout bounds the first contact with the filer in New.
	// Default 10s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// DefaultConfig returns the defaults; Filer must still be set.
func DefaultConfig() Config {
	return Config{
		FilerPath:         "/",
		ChunkSizeMB:       4,
		CacheCapacityMB:   1024,
		CacheMemoryMB:     128,
		ImageCapacityMB:   2048,
		WriteBufferMB:     256,
		ConcurrentWriters: 16,
		ConcurrentReaders: 16,
		ReadAheadChunks:   8,
		InlineLimit:       4096,
		EntryTimeout:      10 * time.Second,
		AttrTimeout:       10 * time.Second,
		MetadataCacheTTL:  time.Minute,
		OpTimeout:         30 * time.Second,
		ConnectTimeout:    10 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Filer == "":
		return errors.New("mount: config: Filer is required")
	case !strings.HasPrefix(c.FilerPath, "/"):
		return fmt.Errorf("mount: config: FilerPath %q must be absolute", c.FilerPath)
	case path.Clean(c.FilerPath) != c.FilerPath:
		return fmt.Errorf("mount: config: FilerPath %q is not clean (try %q)", c.FilerPath, path.Clean(c.FilerPath))
	case c.ChunkSizeMB < 1 || c.ChunkSizeMB > 256:
		return fmt.Errorf("mount: config: ChunkSizeMB %d must be within 1..256", c.ChunkSizeMB)
	case c.CacheCapacityMB < 0 || c.CacheMemoryMB < 0 || c.ImageCapacityMB < 0:
		return errors.New("mount: config: cache capacities must not be negative")
	case c.WriteBufferMB < int64(c.ChunkSizeMB):
		return fmt.Errorf("mount: config: WriteBufferMB %d must hold at least one chunk (%d MiB)", c.WriteBufferMB, c.ChunkSizeMB)
	case c.ConcurrentWriters < 1 || c.ConcurrentReaders < 1:
		return errors.New("mount: config: ConcurrentWriters and ConcurrentReaders must be at least 1")
	case c.ReadAheadChunks < 0:
		return errors.New("mount: config: ReadAheadChunks must not be negative")
	case c.KeptContentBytes < 0:
		return errors.New("mount: config: KeptContentBytes must not be negative")
	case c.InlineLimit < 0:
		return errors.New("mount: config: InlineLimit must not be negative")
	case c.InlineImages < -1:
		return fmt.Errorf("mount: config: InlineImages %d must be -1 (none), 0 (half the CPUs) or more", c.InlineImages)
	case c.Umask&^0o7777 != 0:
		return fmt.Errorf("mount: config: Umask %#o is not a permission mask", c.Umask)
	case c.EntryTimeout < 0 || c.AttrTimeout < 0 || c.MetadataCacheTTL < 0 || c.OpTimeout <= 0 || c.ConnectTimeout <= 0:
		return errors.New("mount: config: timeouts must be positive")
	}
	if c.Replication != "" {
		if _, err := needle.ParseReplicaPlacement(c.Replication); err != nil {
			return fmt.Errorf("mount: config: replication: %w", err)
		}
	}
	if c.TTL != "" {
		if _, err := needle.ParseTTL(c.TTL); err != nil {
			return fmt.Errorf("mount: config: ttl: %w", err)
		}
	}
	return nil
}

func (c Config) chunkSize() int64 { return int64(c.ChunkSizeMB) << 20 }

// memoryOverhead is the mount's memory beyond what Config budgets: FUSE
// request buffers, the filer connection, metadata caches and the Go
// runtime (measured: ~50 MiB of FUSE buffers under a 1 MiB-block reader).
const memoryOverhead = 96 << 20

// MemoryLimit is the memory the mount is built to stay under: the write
// buffers, the chunk cache's memory tier and its disk-write queue, whole
// chunks being fetched, the free chunk buffers kept for reuse
// (slotpool.go), and a fixed overhead. `kelp mount` gives it to the
// Go runtime as its soft memory limit, so garbage is collected before the
// heap doubles past it (without, fsbench's random writes peaked at 790
// MiB RSS for 384 MiB of budgets; with, 610).
func (c Config) MemoryLimit() int64 {
	return (c.WriteBufferMB+c.CacheMemoryMB)<<20 + cache.DefaultConfig().WriteQueueBytes +
		int64(c.ConcurrentReaders+slotPoolBuffers(c))*c.chunkSize() + memoryOverhead
}
