// Package meta is the filer's POSIX namespace, kept on inode keys in a
// transactional key-value store (filerd/store), and its change log.
//
// It owns inodes (attributes, symlink targets, xattrs, chunk lists or inline
// content), directory entries, hard links, the open-unlinked references, the
// queue of chunks waiting to be deleted from the volume servers, the change
// log of every mutation, the count of named inodes (inodes.go), the rules of
// manifest chunks and their folding (manifest.go; the blobs themselves are
// read and written by the caller, through ManifestReader), and a small side
// key-value space. It must not know
// about gRPC, api/* or syscall errno values: it returns the sentinels of
// errors.go, which the mount and the gRPC layer each translate with one table.
//
// # Key layout
//
//	"i" ino(8)                -> attributes (codec.go)
//	"d" parent(8) name        -> child ino(8) + type(1)
//	"p" ino(8) parent(8) name -> back reference, kept only while nlink > 1
//	"x" ino(8) name           -> xattr value
//	"c" ino(8)                -> file data: chunk list or inline bytes
//	"o" ino(8)                -> open-unlinked marker (nlink 0, still open)
//	"g" ts(8) seq(4)          -> chunks waiting for deletion (GC queue)
//	"l" ts(8)                 -> change-log event
//	"k" key                   -> side key-value records
//	"m" name                  -> meta counters (inode allocator, inode count stripes)
//	"f" fid                   -> intent of a fold into manifest blob fid (manifest.go)
//
// All integers are big-endian so keys sort numerically.
//
// # Transactions and the change log
//
// Every mutation is one store.Update that also appends exactly one Event
// under its timestamp, so a crash or a store error never leaves half of an
// operation or an event without its change (or the reverse). Timestamps
// strictly increase and are assigned inside each transaction attempt; the
// namespace tracks the timestamps of attempts still in flight, and
// Watermark reports the largest timestamp below which every event is final,
// so a reader that stops at the watermark never misses an event that
// commits later with a smaller timestamp. The watermark never passes the
// newest committed event, and timestamps after a reopen start above the
// newest logged one, so a checkpoint taken from it stays valid across
// restarts whatever the wall clock does.
//
// Namespace changes log events (create, mkdir, symlink, link, unlink,
// rmdir, rename, setattr, xattr changes, chunk commits). Bookkeeping does
// not: side KV records, the GC queue, open handles and the freeing of an
// open-unlinked inode at its last Release, changes to an inode that has
// no name left (nlink 0, still open), and folds of chunks into manifest
// chunks (which change no byte; manifest.go). Every event names the
// parent directories of its paths (OldParent, NewParent). Event paths are rebuilt from the
// parent and name recorded in each inode; for a hard-linked file an event
// carries the name the operation used (link, unlink, rename) or one of its
// names (setattr, xattrs, chunks).
//
// # Concurrency
//
// A Namespace is safe for concurrent use. Operations on different inodes
// run in parallel; conflicting ones are serialized by the store's
// transactions (which retry on conflict). Inside one process, operations
// that change the same directory also queue on a striped lock so a hot
// directory does not turn into a storm of conflicting retries; correctness
// never depends on it (several filers on one distributed store are still
// serialized by the store). Open handles are counted in memory: a restart
// frees the open-unlinked inodes the previous process kept.
package meta
