// Package cache is the mount's chunk cache: blobs (chunks) keyed by file id,
// in a memory tier over an optional disk tier, each bounded by bytes.
// Chunks are immutable by file id, so an entry never goes stale and the
// cache never invalidates; it only evicts.
//
// It owns:
//   - the memory tier: an LRU of whole blobs (golang-lru/v2 simplelru with
//     byte accounting), bounded by Config.MemoryBytes;
//   - the disk tier in Config.Dir: one file per blob, an in-memory LRU index
//     rebuilt from the directory at New, bounded by Config.DiskBytes; the
//     directory lock (Dir/LOCK, an exclusive flock: one Cache per
//     directory); one background writer goroutine fed by a bounded queue.
//
// Disk files are crash-safe without fsync: a blob is written to Dir/tmp/
// and renamed into Dir/xx/ (xx from a hash of the fid; the file name is the
// fid in hex plus a generation number). Each file carries a header (length,
// fid checksum) and a CRC32-C per 8 KiB block (format.go spells out the
// layout). A file's size is checked when the index is rebuilt, its header
// whenever it is opened for reading (up to 128 files stay open, with their
// block tables, in an LRU of their own), and every read checks the
// checksums of the blocks it reads, so a torn, truncated or flipped file is
// removed and reported as a miss, never served. Temporary files left by a crash are removed at New.
//
// Faults: a full filesystem (ENOSPC, EDQUOT) lowers the disk tier's
// effective budget below what it uses and evicts down to it, so the cache
// shrinks to what the disk can hold, growing back to what the filesystem
// reports free (statfs, at most every 200 ms) once there is room again, or
// slowly where statfs cannot tell (a failed call, EDQUOT); other write
// errors bypass the disk tier for a backoff. Neither is reported to
// callers: a cache fault is at worst a miss.
//
// It must not: import anything but the standard library and golang-lru;
// block a caller on disk writes (Put only queues them, and drops them when
// the queue is full); return bytes it has not verified; touch files in Dir
// that it did not create.
//
// Concurrency: every method of Cache is safe for concurrent use. The
// memory tier and the disk tier each have one mutex, held only for map
// and list updates (index, open files); disk reads happen outside any lock, with pread on the
// caller's goroutine. Blob slices are shared, never copied on Put: callers
// hand over ownership on Put and must treat what Get returns as read-only.
// Close stops the writer goroutine (after it drains the queue) before it
// returns.
package cache
