package filerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/locks"
)

// The lock service (api/lockpb) serves the filer's locks.Manager: the lock
// table lives in memory only, leased to mount sessions (DESIGN.md decision
// 6). Handlers decode, call the Manager, encode; errors go through
// lockErrorTable. The Manager's expiry sweep runs as a server loop (Serve
// starts it, Close stops it), and Serve starts the grace period if the
// store's lockLiveKey says sessions may have been live when the filer last
// stopped (lockMarker).

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
	// lockMarkerCheck is how often the sweep looks for a chance to clear
	// lockLiveKey when it expired no session itself: sessions also end
	// when a request meets them past their lease, and the grace period
	// ends. (The check counts the Manager's files under its mutex, so it
	// does not run at every sweep.)
	lockMarkerCheck = time.Second
)

// lockLiveKey is the filer's side KV record (meta's "k" space, next to
// signatureKey, apart from every namespace key) whose presence means "some
// lock session may be live": it is written before the first session is
// granted and deleted once none is left and no grace period runs. A start
// that finds it runs the grace period (Serve).
const lockLiveKey = "filer.locks.live"

// lockHeldKey is the side KV record whose presence means "some lock may
// be held": it is written before the first lock is granted (SetLk, SetLkw
// or Reassert of a lock) and deleted once the Manager holds no lock, no
// lock request is in flight and no grace period runs. A start that finds
// it runs the lock grace period (Serve). Sessions also lease the mounts'
// file handles (handles.go), so lockLiveKey is set whenever a mount has
// opened a file; this record keeps the lock grace period, which stalls
// every lock request, to restarts that may have lost locks.
const lockHeldKey = "filer.locks.held"

// heldMarker keeps lockHeldKey in step with the locks granted: inflight
// counts the lock requests between their check of set and their return,
// so the record is never deleted under a request about to be granted.
type heldMarker struct {
	mu       sync.Mutex
	set      bool
	inflight int
	failing  bool
}

// startLockRequest is called before a request that may grant a lock: it
// commits lockHeldKey first if it is not set. endLockRequest must follow.
func (s *Server) startLockRequest(ctx context.Context) error {
	mk := &s.heldMarker
	mk.mu.Lock()
	defer mk.mu.Unlock()
	if !mk.set {
		if err := s.ns.KVPut(ctx, lockHeldKey, []byte("1")); err != nil {
			return fmt.Errorf("filerd: mark locks held: %w", err)
		}
		mk.set = true
	}
	mk.inflight++
	return nil
}

func (s *Server) endLockRequest() {
	mk := &s.heldMarker
	mk.mu.Lock()
	mk.inflight--
	mk.mu.Unlock()
}

// lockMarker keeps lockLiveKey in step with the Manager's sessions. mu
// orders the record's writes against new sessions: OpenSession holds it
// from the check of set through Manager.OpenSession, and a clear holds it
// from its count of sessions through the delete, so no session is granted
// while the record is missing or about to be deleted. Order: mu before the
// Manager's own mutex. Lock requests other than OpenSession never take mu.
type lockMarker struct {
	mu      sync.Mutex
	set     bool // the record is in the store (as far as a write or a read told)
	failing bool // the last delete failed (logged once per streak)
}

// readLockMarker loads lockLiveKey and lockHeldKey from the store into
// s.lockMarker and s.heldMarker (New).
func (s *Server) readLockMarker(ctx context.Context) error {
	for _, m := range []struct {
		key string
		set *bool
	}{{lockLiveKey, &s.lockMarker.set}, {lockHeldKey, &s.heldMarker.set}} {
		_, err := s.ns.KVGet(ctx, m.key)
		switch {
		case err == nil:
			*m.set = true
		case errors.Is(err, meta.ErrNotFound):
			*m.set = false
		default:
			return fmt.Errorf("filerd: read lock marker %s: %w", m.key, err)
		}
	}
	return nil
}

// openLockSession opens session id in the Manager, first writing
// lockLiveKey (a durable commit) if it is not set: once a mount holds a
// session, a crash of the filer always leads to a grace period. Opening
// further sessions writes nothing.
func (s *Server) openLockSession(ctx context.Context, id string, ttl time.Duration) error {
	mk := &s.lockMarker
	mk.mu.Lock()
	defer mk.mu.Unlock()
	if !mk.set {
		if err := s.ns.KVPut(ctx, lockLiveKey, []byte("1")); err != nil {
			return fmt.Errorf("filerd: mark lock sessions live: %w", err)
		}
		mk.set = true
	}
	return s.locks.OpenSession(id, ttl)
}

// clearLockMarker deletes lockLiveKey if it is set, no session is left and
// no grace period runs. (During one, mounts of before the restart are yet
// to come back: a crash then must lead to another grace period.) A failed
// delete leaves the record, which only costs a needless grace period; the
// sweep tries again.
func (s *Server) clearLockMarker(ctx context.Context) {
	s.clearHeldMarker(ctx)
	mk := &s.lockMarker
	mk.mu.Lock()
	defer mk.mu.Unlock()
	if !mk.set {
		return
	}
	if st := s.locks.Stats(); st.Sessions > 0 || st.Grace || s.handles.lapsedCount() > 0 {
		// (Handles kept for lapsed sessions count as live ones: a
		// restart meanwhile keeps the files they hold for LockGrace.)
		return
	}
	s.deleteMarker(ctx, lockLiveKey, "lock marker", &mk.set, &mk.failing)
}

// clearHeldMarker deletes lockHeldKey if it is set, no lock is held or
// being requested, and no grace period runs; as clearLockMarker, a failed
// delete is retried by the sweep.
func (s *Server) clearHeldMarker(ctx context.Context) {
	mk := &s.heldMarker
	mk.mu.Lock()
	defer mk.mu.Unlock()
	if !mk.set || mk.inflight > 0 {
		return
	}
	if st := s.locks.Stats(); st.Locks > 0 || st.Grace {
		return
	}
	s.deleteMarker(ctx, lockHeldKey, "locks-held marker", &mk.set, &mk.failing)
}

// deleteMarker deletes key, a marker whose state set and failing track
// (the caller holds the marker's mutex). A failed delete is logged once
// per streak and left for the sweep to retry.
func (s *Server) deleteMarker(ctx context.Context, key, what string, set, failing *bool) {
	if err := s.ns.KVDelete(ctx, key); err != nil {
		if ctx.Err() == nil {
			if !*failing {
				s.log.Warn("cannot clear the "+what+"; will retry", "key", key, "err", err)
			}
			*failing = true
		}
		return
	}
	*set, *failing = false, false
	s.log.Debug(what+" cleared", "key", key)
}

// lockSweepLoop expires lapsed sessions every interval, as Manager.Run
// does, releases the file handles of ended sessions (at once when one
// ends), frees the previous run's open-unlinked files once the grace
// period is over (handles.go), and clears lockLiveKey once no session is
// left: at once after a sweep that ended a session, else every
// lockMarkerCheck. It returns when the server's base context ends.
func (s *Server) lockSweepLoop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var checked time.Time
	orphansDone := s.freeOrphansAfterGrace(s.baseCtx)
	for {
		select {
		case <-s.baseCtx.Done():
			return
		case <-s.handles.wake:
			s.releaseEnded(s.baseCtx)
			continue
		case <-t.C:
		}
		now := time.Now()
		ended := s.locks.Expire(now)
		s.releaseEnded(s.baseCtx) // and the lapsed sessions' handles now due
		if !orphansDone {
			orphansDone = s.freeOrphansAfterGrace(s.baseCtx)
		}
		if len(ended) > 0 || now.Sub(checked) >= lockMarkerCheck {
			checked = now
			s.clearLockMarker(s.baseCtx)
		}
	}
}

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

// newLockManager builds the filer's Manager, with the default limits,
// calling onEnd with each session that ends.
func newLockManager(lg *slog.Logger, onEnd func(id string, closed bool)) (*locks.Manager, error) {
	lc := locks.DefaultConfig()
	lc.Logger = lg.With("service", "locks")
	lc.OnSessionEnd = onEnd
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
// Config.LockSessionTTL]; 0 asks for the maximum. The first session after
// none also commits lockLiveKey before the answer.
func (l *locksServer) OpenSession(ctx context.Context, req *lockpb.OpenSessionRequest) (*lockpb.OpenSessionResponse, error) {
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
	if err := l.s.openLockSession(ctx, req.Session, ttl); err != nil {
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

// CloseSession ends the session and, if it was the last one, clears
// lockLiveKey (a failure there is the sweep's to retry, not the caller's).
func (l *locksServer) CloseSession(ctx context.Context, req *lockpb.CloseSessionRequest) (*lockpb.CloseSessionResponse, error) {
	if err := l.m().CloseSession(req.Session); err != nil {
		return nil, lockError(err)
	}
	l.s.clearLockMarker(ctx)
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

func (l *locksServer) SetLk(ctx context.Context, req *lockpb.LockRequest) (*lockpb.SetLkResponse, error) {
	ino, lk, err := lockFromPB(req.Session, req.Lock)
	if err != nil {
		return nil, lockError(err)
	}
	if lk.Type != locks.Unlock {
		if err := l.s.startLockRequest(ctx); err != nil {
			return nil, lockError(err)
		}
		defer l.s.endLockRequest()
	}
	if err := l.m().SetLk(ino, lk); err != nil {
		return nil, lockError(err)
	}
	return l.granted(ctx, ino, lk, req.FeedSignature), nil
}

// granted is the answer to a lock set: with the inode's generation for a
// lock, so that the mount can tell whether its copy of the file is
// current without fetching it (an inode the namespace does not have
// answers 0: locks key on inode numbers and do not need the inode), and
// the change log's newest timestamp, which the mount's subscription
// (feedSig) is asked to report progress up to, so that the mount can
// apply what the previous holder changed before answering.
func (l *locksServer) granted(ctx context.Context, ino uint64, lk locks.Lock, feedSig int32) *lockpb.SetLkResponse {
	resp := &lockpb.SetLkResponse{}
	if lk.Type == locks.Unlock {
		return resp
	}
	resp.LogTs = l.s.ns.LastEvent()
	if feedSig != 0 {
		l.s.feeds.ask(feedSig, resp.LogTs)
	}
	if a, err := l.s.ns.GetAttr(ctx, meta.Inode(ino)); err == nil {
		resp.Generation = a.Generation
	}
	return resp
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
	if lk.Type != locks.Unlock {
		if err := l.s.startLockRequest(ctx); err != nil {
			return lockError(err)
		}
		defer l.s.endLockRequest()
	}
	err = l.m().SetLkw(ctx, ino, lk)
	if err != nil && l.s.baseCtx.Err() != nil && stream.Context().Err() == nil {
		err = fmt.Errorf("%w: lock wait ended", ErrClosed)
	}
	if err != nil {
		return lockError(err)
	}
	return stream.Send(l.granted(stream.Context(), ino, lk, req.FeedSignature))
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
func (l *locksServer) Reassert(ctx context.Context, req *lockpb.ReassertRequest) (*lockpb.ReassertResponse, error) {
	if err := l.s.startLockRequest(ctx); err != nil {
		return nil, lockError(err)
	}
	defer l.s.endLockRequest()
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
