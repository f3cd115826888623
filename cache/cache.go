package cache

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
)

// promoteMax: a disk hit on a blob up to this long reads the whole blob
// (about the cost of a range read) and keeps it in the memory tier; longer
// blobs are read by range and left on disk, so a 4 KiB read of an 8 MiB
// chunk reads 8 KiB, not 8 MiB. Get always promotes, having read it all.
const promoteMax = 128 << 10

// Cache is a two-tier chunk cache keyed by file id. Create it with New.
type Cache struct {
	mem  *memTier  // nil: no memory tier
	disk *diskTier // nil: no disk tier
	log  *slog.Logger

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	memHits, memMisses atomic.Int64
}

// Stats is a snapshot of a Cache's counters and sizes.
type Stats struct {
	// MemoryHits and MemoryMisses count lookups (ReadAt, Get) answered or
	// not by the memory tier; DiskHits and DiskMisses count the memory
	// misses the disk tier then answered or not.
	MemoryHits, MemoryMisses, DiskHits, DiskMisses int64
	// MemoryBytes is what the memory tier charges against MemoryBytes
	// (blob bytes plus per-entry overhead) for MemoryEntries blobs.
	MemoryBytes   int64
	MemoryEntries int
	// DiskBytes is what the disk tier charges against its budget (file
	// sizes rounded up to 4 KiB, plus a write in progress) for DiskEntries
	// files. DiskBudget is the effective budget: Config.DiskBytes, or less
	// after the filesystem ran out of space.
	DiskBytes   int64
	DiskEntries int
	DiskBudget  int64
	// DiskWrites counts files written, DiskWriteErrors failed writes,
	// DroppedWrites blobs not written because the queue was full or the
	// disk tier was bypassed or shrunk below the blob's size.
	DiskWrites, DiskWriteErrors, DroppedWrites int64
	// CorruptFiles counts cache files dropped because their size, header
	// or checksums were wrong; DiskReadErrors files dropped because reading
	// them failed.
	CorruptFiles, DiskReadErrors int64
	// QueuedWriteBytes is the blob bytes waiting for the disk writer.
	QueuedWriteBytes int64
	// DiskBypassed is true while write errors keep the disk tier from
	// taking new blobs.
	DiskBypassed bool
}

// New opens a cache. With a disk tier it creates cfg.Dir if needed, takes
// an exclusive lock on it (ErrLocked if another Cache holds it), rebuilds
// the index from the files there (removing temporary and malformed files,
// evicting down to the budget) and starts the background writer.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Cache{log: log}
	if cfg.MemoryBytes > 0 {
		c.mem = newMemTier(cfg.MemoryBytes)
	}
	if cfg.diskEnabled() {
		d, err := openDisk(cfg, log)
		if err != nil {
			return nil, err
		}
		c.disk = d
	}
	return c, nil
}

// Put caches data as the blob fid. The cache takes ownership of data: the
// caller must not modify it afterwards. The memory tier keeps it at once
// (unless it alone exceeds the memory budget); the disk tier gets it later
// from the background writer, or not at all if the write queue is full —
// Put never waits for disk IO. A Put after Close does nothing.
func (c *Cache) Put(fid string, data []byte) {
	if c.closed.Load() {
		return
	}
	if c.mem != nil {
		c.mem.add(fid, data)
	}
	if c.disk != nil {
		c.disk.enqueue(fid, data)
	}
}

// PutMemory caches data as the blob fid in the memory tier only (see
// Put), for blobs kept on local disk elsewhere.
func (c *Cache) PutMemory(fid string, data []byte) {
	if c.closed.Load() || c.mem == nil {
		return
	}
	c.mem.add(fid, data)
}

// ReadAt copies the bytes of blob fid at offset off into p. ok is false on
// a miss, and then p's contents are unspecified. On a hit n < len(p) only
// where the blob ends (n is 0 when off is at or past its end). A memory hit
// is a map lookup and a copy; a disk hit reads and checksums only the
// blocks covering the range (small blobs are read whole and promoted to
// memory, see promoteMax).
func (c *Cache) ReadAt(fid string, p []byte, off int64) (n int, ok bool) {
	if off < 0 || c.closed.Load() {
		return 0, false
	}
	if c.mem != nil {
		if b, ok := c.mem.get(fid); ok {
			c.memHits.Add(1)
			return copyAt(p, b, off), true
		}
	}
	c.memMisses.Add(1)
	if c.disk == nil {
		return 0, false
	}
	e, ok := c.disk.lookup(fid)
	if !ok {
		c.disk.misses.Add(1)
		return 0, false
	}
	if c.mem != nil && e.length <= promoteMax {
		b, ok := c.disk.readWhole(fid, e)
		if !ok {
			c.disk.misses.Add(1)
			return 0, false
		}
		c.disk.hits.Add(1)
		c.mem.add(fid, b)
		return copyAt(p, b, off), true
	}
	n, ok = c.disk.readRange(fid, e, p, off)
	if !ok {
		c.disk.misses.Add(1)
		return 0, false
	}
	c.disk.hits.Add(1)
	return n, true
}

func copyAt(p, b []byte, off int64) int {
	if off >= int64(len(b)) {
		return 0
	}
	return copy(p, b[off:])
}

// Get returns the whole blob fid. The slice is shared: the caller must not
// modify it. A disk hit reads and checks the whole file and promotes the
// blob to the memory tier.
func (c *Cache) Get(fid string) ([]byte, bool) {
	if c.closed.Load() {
		return nil, false
	}
	if c.mem != nil {
		if b, ok := c.mem.get(fid); ok {
			c.memHits.Add(1)
			return b, true
		}
	}
	c.memMisses.Add(1)
	if c.disk == nil {
		return nil, false
	}
	e, ok := c.disk.lookup(fid)
	var b []byte
	if ok {
		b, ok = c.disk.readWhole(fid, e)
	}
	if !ok {
		c.disk.misses.Add(1)
		return nil, false
	}
	c.disk.hits.Add(1)
	if c.mem != nil {
		c.mem.add(fid, b)
	}
	return b, true
}

// Prefetch brings a blob the disk tier holds into the memory tier (read
// and checked whole), for a reader expected soon. It waits for disk IO:
// call it off the read path.
func (c *Cache) Prefetch(fid string) {
	if c.closed.Load() || c.disk == nil || c.mem == nil || c.mem.contains(fid) {
		return
	}
	c.Get(fid)
}

// Contains reports whether either tier holds fid, without reading it or
// changing its recency. A disk file found corrupt later is still a miss
// then.
func (c *Cache) Contains(fid string) bool {
	if c.closed.Load() {
		return false
	}
	return (c.mem != nil && c.mem.contains(fid)) || (c.disk != nil && c.disk.contains(fid))
}

// Stats returns the current counters and sizes.
func (c *Cache) Stats() Stats {
	s := Stats{MemoryHits: c.memHits.Load(), MemoryMisses: c.memMisses.Load()}
	if c.mem != nil {
		s.MemoryBytes, s.MemoryEntries = c.mem.stats()
	}
	if d := c.disk; d != nil {
		ds := d.stats()
		s.DiskHits, s.DiskMisses = d.hits.Load(), d.misses.Load()
		s.DiskBytes, s.DiskEntries, s.DiskBudget = ds.used, ds.entries, ds.budget
		s.DiskWrites, s.DiskWriteErrors, s.DroppedWrites = d.writes.Load(), d.writeErrors.Load(), d.dropped.Load()
		s.CorruptFiles, s.DiskReadErrors = d.corrupt.Load(), d.readErrors.Load()
		s.QueuedWriteBytes, s.DiskBypassed = ds.queued, ds.bypassed
	}
	return s
}

// Close stops the cache: later calls miss or do nothing. It first lets the
// background writer finish the writes already queued (at most
// Config.WriteQueueBytes, so a restart finds them), then releases the
// directory lock and the memory tier. Close is idempotent; every call
// returns the first call's result.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		var errs []error
		if c.disk != nil {
			errs = append(errs, c.disk.close())
		}
		if c.mem != nil {
			c.mem.purge()
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// flush waits until the disk writer has handled every blob queued so far
// (tests use it to make disk state deterministic).
func (c *Cache) flush() {
	if c.disk != nil {
		c.disk.waitIdle()
	}
}
