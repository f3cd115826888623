// Package locks owns POSIX lock semantics for Kelp: flock whole-file locks
// and fcntl byte-range record locks, as a pure library (Table), and the
// filer's lease-keeping lock authority on top of it (Manager). It imports
// the standard library only; it knows nothing of gRPC, FUSE or errno
// values, which the filer's lock service and the mount translate at their
// edges from the sentinel errors in errors.go.
//
// # Model
//
// A lock is (Kind, Type, Range, Owner, Pid). Type is Shared (read) or
// Exclusive (write); a request may also be Unlock. A Range is the
// inclusive byte range [Start, End] with 0 <= Start <= End; End ==
// MaxOffset (math.MaxInt64, Linux's OFFSET_MAX) means "to end of file",
// however far it grows. RangeFromLen converts fcntl's (l_start, l_len),
// including l_len == 0 (to EOF) and negative lengths; a negative start, an
// end before the start, or a length that overflows is ErrInvalid. FUSE
// hands the filesystem [start, end] directly (end == OFFSET_MAX for EOF);
// an end above math.MaxInt64 in a uint64 wire field must be rejected as
// ErrInvalid by whoever converts it.
//
// Two locks conflict when they are of the same Kind, belong to different
// owners, overlap, and at least one is Exclusive.
//
// # Owners
//
// An Owner is (Session, ID): Session is the mount session that forwarded
// the request, ID the kernel's lock owner within it (FUSE's lock_owner).
// The same ID in two sessions names two owners. Pid is carried only so
// that F_GETLK can report who holds a lock.
//
// # fcntl versus flock
//
// The two kinds are separate namespaces: a flock lock never conflicts with
// an fcntl lock, as on Linux (where they are separate lists), even for the
// same owner and bytes.
//
// fcntl (POSIX record) locks belong to a process (FUSE passes its
// files_struct as lock_owner). Setting a lock replaces whatever the owner
// holds over the range: records are split where a request covers part of
// them, merged with touching or overlapping records of the same type, and
// upgraded or downgraded in place; an owner's own locks never conflict
// with its request. Unlocking a range splits records around it, and
// unlocking what is not held is a no-op. Close of any descriptor of a file
// releases the process's record locks on it (Manager.ReleaseOwner).
// Records are kept in canonical form (per owner disjoint, no two of one
// type touching), so an owner's state is a function of the bytes it holds,
// which is what the randomized model test compares.
//
// flock locks belong to an open file description (FUSE passes the file as
// lock_owner with FUSE_LK_FLOCK) and always cover the whole file. An owner
// holds at most one per file; a new request converts it in place. A
// conversion that has to wait (SetLkw) first drops the old lock, as Linux
// does, so two owners upgrading shared locks at once do not deadlock; a
// non-blocking conversion (SetLk) that fails keeps the old lock (Linux
// loses it). LOCK_UN is an Unlock request of kind Flock. Deadlocks are not detected for flock, as
// on Linux.
//
// # Manager guarantees
//
// A Manager keeps one Table per inode (locks key on the inode, so hard
// links and renames do not matter) and is safe for concurrent use. It
// serializes every operation on one mutex and never blocks under it.
//
//   - Only owners of a live session get locks. A session is opened with a
//     lease ttl (OpenSession), renewed by heartbeat (Renew), and ends on
//     CloseSession or once its lease runs out: from that moment (judged by
//     the injected clock) every request of the session fails with
//     ErrSessionExpired, and its locks are released, either by the
//     periodic sweep (Expire, or Run in a goroutine) or on the spot when
//     another request meets one of them. Releasing wakes the waiters.
//   - SetLk never waits; SetLkw waits without polling: each blocked call
//     parks on its own channel and is woken when a lock that may conflict
//     with it is released or downgraded. Woken waiters race to retry, so
//     there is no FIFO order (nor is there on Linux), and a stream of
//     shared locks can starve an exclusive waiter.
//   - A SetLkw whose context ends returns ctx.Err() and leaves no lock and
//     no waiter behind: locks are granted only under the mutex by the
//     waiting call itself.
//   - An fcntl SetLkw that would wait for an owner who, directly or
//     through other waiting owners, waits for the requester returns
//     ErrDeadlock instead (any cycle length, not only two parties). Edges
//     of the wait-for graph go from a waiter to every owner of a lock that
//     conflicts with it, and are dropped when the waiter is woken.
//   - After a restart the filer calls StartGrace: until the grace period
//     ends only re-assertions (Reassert, from each session's Snapshot as
//     the mount recorded it) are granted; other lock requests and GetLk
//     return the retryable ErrGrace, unlocks are served. Re-assertion after
//     the grace period is ErrNoGrace: the lock is lost.
//   - Memory is bounded by Config: sessions, lock records per session and
//     blocked requests per session (ErrLimit beyond them, like ENOLCK). A
//     file's state is forgotten when it has no lock and no waiter.
//
// Every Table operation is linear in the records on one file; session
// release is linear in the files the session holds locks on.
package locks
