// Package storage owns a volume server's Haystack-style needle volumes on
// local disk: the Store, its Locations (one per data directory) and their
// Volumes. A volume is <collection>_<id>.dat (or <id>.dat for the empty
// collection), a superblock followed by needle records appended 8-byte
// aligned, and <collection>_<id>.idx, 16-byte entries appended once per
// write and per delete (tombstones). The byte layout is needle's; see
// needle/doc.go. This package does the I/O, the in-memory needle map, crash
// repair, deletes, TTLs and compaction.
//
// It must not know about the network: no HTTP, gRPC or api/* types, no
// replication (volumed replicates by calling Write on every replica), and it
// depends on needle and the standard library only.
//
// # Writes
//
// One mutex per volume serializes appends. A write encodes the record into a
// reused buffer, writes it with one positional write at the current .dat end,
// then writes its index entry the same way, then updates the needle map.
// With Config.Fsync both files are fsynced before Write returns; concurrent
// writers share one fsync. A failed write cuts both files back to their
// previous ends, so it leaves nothing that could later read as a needle.
//
// # Reads
//
// A read looks the key up under the volume's read lock, takes a reference
// on the open files, releases the lock and reads the record with one pread.
// It verifies the CRC, the key, the cookie and the TTL; a damaged record is
// ErrCorrupt with a log line, never wrong bytes. Reads never wait for the
// append mutex or for disk I/O of writers.
//
// # Loading and crash repair
//
// Loading replays the .idx into the needle map. A torn .idx tail (not a
// multiple of 16 bytes) is cut; trailing entries whose records do not
// decode are dropped; then the .dat past the last indexed record is
// scanned: complete records with a good CRC are indexed, the first short or
// bad one and everything after it is cut off. An interrupted compaction is
// finished or discarded first (see volume_vacuum.go).
//
// # Needle map
//
// About 16 bytes per live needle: sorted blocks of packed {key, offset/8,
// size} entries (see needle_map.go).
//
// # Concurrency
//
// Every Store method is safe for concurrent use. Reads, writes and deletes
// of different volumes never contend; on one volume, writes and deletes are
// serialized and reads run in parallel with them and with each other.
// Compaction runs alongside both and blocks writes only for its short
// catch-up and commit. The package starts no goroutines.
package storage
