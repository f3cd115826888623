package filerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/locks"
)

// The lock service (api/lockpb) serves the filer's locks.Manager: the lock
// table lives in memory only, leased to mount sessions (DESIGN.md decision
// 6). Handlers decode, call the Manager, encode; errors go through
// lockErrorTable. The Manager's expiry sweep runs as a server loop (Serve
// starts it, Close stops it), and Serve starts the grace period.

const (
	// minLockSessionTTL is the shortest lease granted: a shorter one could
	// not be renewed over a real network.
	minLockSessionTTL = 100 * time.Millisecond
	// maxLockSessionID bounds a session id, which the Manager keeps.
	maxLockSessionID = 256
	// maxLockSweep is the longest interval between expiry sweeps; it
	// bounds how late a waiter is woken after the lease of the holder it
	// waits for runs out. (A request that meets an expired lock needs no
	// sweep: the Manager expires its session on the spot.)
	maxLockSweep = 100 * time.Millisecond
)

// lockErrorTable is the one translation of the locks package's sentinels
// to a gRPC code and an errno name (a filerpb.PosixError detail), the
// reverse of client/locks.go's table. The (code, errno) pairs are distinct,
// so a client can tell every sentinel apart; api/lockpb/lock.proto lists
// them. Choices: a conflicting lock is FAILED_PRECONDITION (the file is not
// in the state the request needs; RESOURCE_EXHAUSTED would read as out of
// space); a deadlock ABORTED, as databases report one; an unknown or
// expired session NOT_FOUND; the grace period UNAVAILABLE, gRPC's
// retryable code, which a mount retries like a filer that is restarting.
var lockErrorTable = []struct {
	err   error
	code  codes.Code
	errno string
}{
	{locks.ErrInvalid, codes.InvalidArgument, "EINVAL"},
	{locks.ErrWouldBlock, codes.FailedPrecondition, "EAGAIN"},
	{locks.ErrDeadlock, codes.Aborted, "EDEADLK"},
	{locks.ErrSessionExpired, codes.NotFound, "ENOLCK"},
	{locks.ErrGrace, codes.Unavailable, "EAGAIN"},
	{locks.ErrNoGrace, codes.FailedPrecondition, "ENOLCK"},
	{locks.ErrLimit, codes.ResourceExhausted, "ENOLCK"},
	{ErrClosed, codes.Unavailable, "EIO"},
	{context.Canceled, codes.Canceled, ""},
	{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
}

// lockError turns a Manager error into a status error (lockErrorTable,
// else the filer's own table, else Internal).
func lockError(err error) error {
	if err == nil {
		return nil
	}
	for _, row := range lockErrorTable {
		if errors.Is(err, row.err) {
			return withErrno(row.code, err.Error(), row.errno)
		}
	}
	return grpcError(err)
}

// newLockManager builds the filer's Manager, with the default limits.
func newLockManager(lg *slog.Logger) (*locks.Manager, error) {
	lc := locks.DefaultConfig()
	lc.Logger = lg.With("service", "locks")
	m, err := locks.NewManager(lc)
	if err != nil {
		return nil, fmt.Errorf("filerd: lock manager: %w", err)
	}
	return m, nil
}

// lockSweepInterval is how often the server expires lapsed sessions.
func lockSweepInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/10, 10*time.Millisecond), maxLockSweep)
}

// locksServer implements lockpb.LocksServer on the server's Manager.
type locksServer struct {
	lockpb.UnimplementedLocksServer
	s *Server
}

var _ lockpb.LocksServer = (*locksServer)(nil)

func (l *locksServer) m() *locks.Manager { return l.s.locks }

func checkSession(id string) error {
	if id == "" || len(id) > maxLockSessionID {
		return fmt.Errorf("%w: session id of %d bytes (want 1..%d)", locks.ErrInvalid, len(id), maxLockSessionID)
	}
	return nil
}

// OpenSession grants the lease asked for, within [minLockSessionTTL,
// Config.LockSessionTTL]; 0 asks for the maximum.
func (l *locksServer) OpenSession(_ context.Context, req *lockpb.OpenSessionRequest) (*lockpb.OpenSessionResponse, error) {
	if err := checkSession(req.Session); err != nil {
		return nil, lockError(err)
	}
	if req.TtlMs < 0 {
		return nil, lockError(fmt.Errorf("%w: ttl_ms %d", locks.ErrInvalid, req.TtlMs))
	}
	maxTTL := l.s.cfg.LockSessionTTL
	ttl := maxTTL
	if req.TtlMs > 0 && req.TtlMs < maxTTL.Milliseconds() {
		ttl = max(time.Duration(req.TtlMs)*time.Millisecond, minLockSessionTTL)
	}
	if err := l.m().OpenSession(req.Session, ttl); err != nil {
		return nil, lockError(err)
	}
	resp := &lockpb.OpenSessionResponse{TtlMs: ttl.Milliseconds()}
	if l.m().InGrace() {
		resp.GraceMs = max(time.Until(l.s.graceUntil).Milliseconds(), 1)
	}
	return resp, nil
}

func (l *locksServer) Renew(_ context.Context, req *lockpb.RenewRequest) (*lockpb.RenewResponse, error) {
	if err := l.m().Renew(req.Session); err != nil {
		return nil, lockError(err)
	}
	return &lockpb.RenewResponse{}, nil
}

func (l *locksServer) CloseSession(_ context.Context, req *lockpb.CloseSessionRequest) (*lockpb.CloseSessionResponse, error) {
	if err := l.m().CloseSession(req.Session); err != nil {
		return nil, lockError(err)
	}
	return &lockpb.CloseSessionResponse{}, nil
}

func (l *locksServer) GetLk(_ context.Context, req *lockpb.LockRequest) (*lockpb.GetLkResponse, error) {
	ino, lk, err := lockFromPB(req.Session, req.Lock)
	if err != nil {
		return nil, lockError(err)
	}
	held, conflict, err := l.m().GetLk(ino, lk)
	if err != nil {
		return nil, lockError(err)
	}
	if !conflict {
		return &lockpb.GetLkResponse{}, nil
	}
	return &lockpb.GetLkResponse{Conflict: true, Type: typeToPB(held.Type),
		Start: held.Range.Start, End: held.Range.End, Pid: held.Pid}, nil
}

func (l *locksServer) SetLk(_ context.Context, req *lockpb.LockRequest) (*lockpb.SetLkResponse, error) {
	ino, lk, err := lockFromPB(req.Session, req.Lock)
	if err != nil {
		return nil, lockError(err)
	}
	if err := l.m().SetLk(ino, lk); err != nil {
		return nil, lockError(err)
	}
	return &lockpb.SetLkResponse{}, nil
}

// SetLkw waits for the lock of the stream's first message. Its wait ends
// when the lock is set, the request fails, the client withdraws it (any
// further message or the end of its side: CANCELED), the call is
// cancelled, or the server closes (UNAVAILABLE + EIO).
func (l *locksServer) SetLkw(stream lockpb.Locks_SetLkwServer) error {
	req, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return lockError(fmt.Errorf("%w: SetLkw stream without a request", locks.ErrInvalid))
		}
		return err
	}
	ino, lk, err := lockFromPB(req.Session, req.Lock)
	if err != nil {
		return lockError(err)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stopOnClose := context.AfterFunc(l.s.baseCtx, cancel)
	defer stopOnClose()
	// The withdrawal watcher: it ends at the latest when the handler
	// returns, since gRPC then ends the stream and Recv with it.
	go func() {
		_, _ = stream.Recv()
		cancel()
	}()
	err = l.m().SetLkw(ctx, ino, lk)
	if err != nil && l.s.baseCtx.Err() != nil && stream.Context().Err() == nil {
		err = fmt.Errorf("%w: lock wait ended", ErrClosed)
	}
	if err != nil {
		return lockError(err)
	}
	return stream.Send(&lockpb.SetLkResponse{})
}

func (l *locksServer) ReleaseOwner(_ context.Context, req *lockpb.ReleaseOwnerRequest) (*lockpb.ReleaseOwnerResponse, error) {
	if err := l.m().ReleaseOwner(req.Session, req.Owner, req.Inode); err != nil {
		return nil, lockError(err)
	}
	return &lockpb.ReleaseOwnerResponse{}, nil
}

// Reassert hands the session's locks to the Manager; a lock that does not
// even decode is rejected with the others. rejected keeps the request's
// order.
func (l *locksServer) Reassert(_ context.Context, req *lockpb.ReassertRequest) (*lockpb.ReassertResponse, error) {
	held := make([]locks.Held, 0, len(req.Locks))
	index := make([]int, 0, len(req.Locks)) // held[i] is req.Locks[index[i]]
	refused := make([]bool, len(req.Locks))
	for i, pl := range req.Locks {
		ino, lk, err := lockFromPB(req.Session, pl)
		if err != nil || lk.Type == locks.Unlock {
			refused[i] = true
			continue
		}
		held = append(held, locks.Held{Inode: ino, Lock: lk})
		index = append(index, i)
	}
	rejected, err := l.m().Reassert(req.Session, held)
	if err != nil {
		return nil, lockError(err)
	}
	// rejected is a subsequence of held.
	j := 0
	for _, r := range rejected {
		for j < len(held) && held[j] != r {
			j++
		}
		if j < len(held) {
			refused[index[j]] = true
			j++
		}
	}
	resp := &lockpb.ReassertResponse{}
	for i, pl := range req.Locks {
		if refused[i] {
			resp.Rejected = append(resp.Rejected, pl)
		}
	}
	return resp, nil
}

// lockFromPB decodes a wire lock of session.
func lockFromPB(session string, pl *lockpb.Lock) (uint64, locks.Lock, error) {
	if err := checkSession(session); err != nil {
		return 0, locks.Lock{}, err
	}
	if pl == nil {
		return 0, locks.Lock{}, fmt.Errorf("%w: no lock in request", locks.ErrInvalid)
	}
	var l locks.Lock
	switch pl.Kind {
	case lockpb.LockKind_FCNTL:
		l.Kind = locks.Fcntl
	case lockpb.LockKind_FLOCK:
		l.Kind = locks.Flock
	default:
		return 0, l, fmt.Errorf("%w: lock kind %v", locks.ErrInvalid, pl.Kind)
	}
	switch pl.Type {
	case lockpb.LockType_SHARED:
		l.Type = locks.Shared
	case lockpb.LockType_EXCLUSIVE:
		l.Type = locks.Exclusive
	case lockpb.LockType_UNLOCK:
		l.Type = locks.Unlock
	default:
		return 0, l, fmt.Errorf("%w: lock type %v", locks.ErrInvalid, pl.Type)
	}
	if l.Kind == locks.Flock {
		l.Range = locks.WholeFile()
	} else {
		r, err := locks.NewRange(pl.Start, pl.End)
		if err != nil {
			return 0, l, err
		}
		l.Range = r
	}
	l.Owner = locks.Owner{Session: session, ID: pl.Owner}
	l.Pid = pl.Pid
	return pl.Inode, l, nil
}

func typeToPB(t locks.Type) lockpb.LockType {
	switch t {
	case locks.Shared:
		return lockpb.LockType_SHARED
	case locks.Exclusive:
		return lockpb.LockType_EXCLUSIVE
	case locks.Unlock:
		return lockpb.LockType_UNLOCK
	}
	panic(fmt.Sprintf("filerd: lock type %d", t))
}
