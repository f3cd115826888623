// Package mount is Kelp's filesystem as a FUSE daemon sees it, without
// FUSE: operations on inode numbers that return syscall.Errno values, so
// it is tested without /dev/fuse and mount/fusefs stays a thin adapter.
//
// It owns, for one mount session: the filer connection (metadata over
// gRPC), chunk bytes straight to and from volume servers (client.Cluster
// through the filer's assign and lookup), the chunk cache (package cache),
// open files and their handles, write buffering into chunks, reads with
// read-ahead, and the watcher that follows the filer's change log and
// tells the kernel (through an Invalidator) what other clients changed.
//
// Inode numbers are the filer's, so stat shows stable numbers and hard
// links share one; the mount root (the filer root or a subtree) is
// whatever inode Root returns, and the adapter maps it to the kernel's
// root id.
//
// Write path: each open file keeps dirty data in per-chunk slots (one
// slot per ChunkSize-aligned range of the file). A slot that fills is
// sealed and uploaded in the background while the application writes on;
// Flush and Fsync seal what is left, wait for the uploads and commit the
// new chunks to the filer, so close and fsync return only when the bytes
// are on every replica and the filer lists them. Buffer memory is capped
// across the mount (Config.WriteBufferMB): a writer over the cap seals
// slots early and waits for uploads to finish. Upload errors are kept and
// returned (as EIO) by the next Flush or Fsync; the data stays in memory
// and is retried then.
//
// Read path: a file's chunk list (committed chunks plus this mount's own
// sealed and uploaded ones) resolves newest-wins into intervals
// (needle.VisibleIntervals); pieces come from memory, the cache, or the
// volume servers (whole chunks, fetched once however many readers want
// them, then cached), with the unsealed dirty data laid over them.
// Sequential readers prefetch the next chunks.
//
// Consistency: close-to-open. Open fetches the file's current chunk list
// unless this mount holds unflushed data for it; the kernel's page cache
// is kept (FOPEN_KEEP_CACHE) only when the file is unchanged since it was
// cached.
//
// Concurrency: every method is safe for concurrent use. Each open file
// has a mutex; no filer or volume call is made while holding it except
// where noted. Background goroutines (uploads, prefetches, the watcher)
// belong to the FS and stop in Close.
package mount
