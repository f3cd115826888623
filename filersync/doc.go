// Package filersync keeps a directory tree of one Kelp cluster in step with
// a tree of another, in one or both directions (`kelp filer.sync`).
//
// # One direction
//
// A replicator follows the source filer's change log (SubscribeMetadata)
// from its checkpoint and applies each event to the target filer by path:
// the source's tree under Side.Path maps onto the target's Side.Path. An
// event is applied idempotently: the target entry is made to look like the
// event's entry state (type, mode, owner, times, xattrs, symlink target,
// content), whatever it was before, so an event applied twice, or an event
// whose effect is already there, changes nothing. File ids are
// cluster-local: chunk bytes are read from the source's volume servers and
// written to the target's, concurrently and bounded, and the file's chunk
// list is committed on the target only once every chunk is stored there; a
// chunk the target already has (same offset, size and ETag, the ETag being
// a hash of the bytes) is not copied again. A new file is made on the
// target only once its chunks are stored; an attempt that fails keeps its
// copies for the event's retry, and they are deleted once the event is
// applied or superseded, so failures leak no blobs.
//
// # Bootstrap
//
// When the source's log no longer reaches back to where a direction must
// start (the beginning, a -fromTsMs, or a checkpoint older than the log's
// retention), the replicator notes the source's watermark, walks the
// source's tree applying each entry the same idempotent way, saves the
// noted position as the checkpoint once the walk is complete, and follows
// the log from there (bootstrap.go).
//
// # Signatures
//
// Every filer has a stable signature. Applying an event to the target
// sends the signatures the event already carries, and the target adds its
// own; the replicator subscribes with the target's signature as its client
// signature, so the source never sends back what came from the target.
// That is what keeps active-active from ping-ponging, and lets chains (A
// <-> B -> C) and fan-outs (A -> B, A -> C) work. A full mesh of three (A
// <-> B, B <-> C, A <-> C) delivers each change twice to the third filer,
// once directly and once through the second, and the two copies can arrive
// in either order, so a rename followed by a change may be undone by the
// late copy; the replicator does nothing to prevent it, so build a chain or
// a star instead.
//
// # Order and checkpoints
//
// Events that touch the same path, or a directory and anything below it,
// apply in log order; others apply concurrently (Config.Concurrency). The
// checkpoint is the timestamp up to which every event has been applied; it
// is kept in the target filer's KV store, keyed by the source's signature
// and path, and written every CheckpointInterval, so a restart re-applies
// at most that much (harmlessly). An event the target rejects is retried
// with back-off and logged; the checkpoint never passes it.
package filersync
