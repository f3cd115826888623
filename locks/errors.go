package locks

import "errors"

// Sentinel errors. Callers test them with errors.Is; the filer's lock service
// translates them to gRPC status codes and the mount to errno values (the
// POSIX equivalent is given with each).
var (
	// ErrInvalid: a malformed request, such as a negative start, an end
	// before the start, a length that overflows, an unknown lock kind or
	// type, or an empty session id (EINVAL).
	ErrInvalid = errors.New("locks: invalid argument")
	// ErrWouldBlock: a conflicting lock is held by another owner and the
	// request does not wait (EAGAIN for fcntl F_SETLK, EWOULDBLOCK for
	// flock with LOCK_NB).
	ErrWouldBlock = errors.New("locks: conflicting lock held")
	// ErrDeadlock: waiting would close a cycle of owners each waiting for
	// the next (EDEADLK). Only fcntl requests are checked, as on Linux.
	ErrDeadlock = errors.New("locks: deadlock")
	// ErrSessionExpired: the session is unknown, closed, or its lease ran
	// out; its locks are gone. The mount opens a fresh session and reports
	// the failure to the application (ENOLCK or EIO, never a silent grant).
	ErrSessionExpired = errors.New("locks: session unknown or expired")
	// ErrGrace: the manager is in its grace period after a restart, in
	// which only re-assertions are granted; retry once it ends.
	ErrGrace = errors.New("locks: in grace period, retry later")
	// ErrNoGrace: a re-assertion arrived outside a grace period; the lock
	// is lost and the owner must be told.
	ErrNoGrace = errors.New("locks: re-assertion outside grace period")
	// ErrLimit: a session, waiter or lock-count limit of the Config was
	// reached (ENOLCK).
	ErrLimit = errors.New("locks: limit reached")
)
