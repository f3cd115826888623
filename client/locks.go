package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/lockpb"
)

// Lock service sentinels. Errors of LockClient calls wrap one of them when
// the filer's status names it (besides the generic sentinel of the gRPC
// code, as FromStatus gives it), keep the status and carry the errno name
// PosixErrno returns. What a mount does with each is in lockSentinelOf.
var (
	// ErrWouldBlock: another owner holds a conflicting lock (SetLk). The
	// application gets EAGAIN (fcntl) or EWOULDBLOCK (flock LOCK_NB).
	ErrWouldBlock = errors.New("lock held by another owner")
	// ErrDeadlock: an fcntl SetLkw would deadlock (EDEADLK).
	ErrDeadlock = errors.New("lock deadlock")
	// ErrSessionExpired: the lock session is unknown to the filer, closed
	// or past its lease, and its locks are gone. Open a fresh session (and,
	// if the filer is in its grace period, re-assert); fail the request
	// (ENOLCK), never retry it under the old session.
	ErrSessionExpired = errors.New("lock session expired")
	// ErrGrace: the filer is in its grace period after a restart and
	// grants no new lock yet; retry after a short back-off.
	ErrGrace = errors.New("lock service in grace period")
	// ErrNoGrace: a re-assertion came after the grace period; the locks
	// are lost.
	ErrNoGrace = errors.New("lock re-assertion outside grace period")
	// ErrLockLimit: a session, lock or waiter limit of the filer (ENOLCK).
	ErrLockLimit = errors.New("lock limit reached")
)

// lockSentinelOf maps the lock service's (code, errno) pairs back to the
// sentinels above: the reverse of filerd's lockErrorTable (see
// api/lockpb/lock.proto). Other statuses get only FromStatus's sentinel:
// InvalidArgument is ErrInvalid (EINVAL), Canceled ErrCanceled (EINTR),
// Unavailable without EAGAIN ErrUnavailable (filer down or restarting:
// retry, as for ErrGrace).
var lockSentinelOf = []struct {
	code  codes.Code
	errno string
	err   error
}{
	{codes.FailedPrecondition, "EAGAIN", ErrWouldBlock},
	{codes.Aborted, "EDEADLK", ErrDeadlock},
	{codes.NotFound, "ENOLCK", ErrSessionExpired},
	{codes.Unavailable, "EAGAIN", ErrGrace},
	{codes.FailedPrecondition, "ENOLCK", ErrNoGrace},
	{codes.ResourceExhausted, "ENOLCK", ErrLockLimit},
}

// lockError is a lock call's error: FromStatus's error (the generic
// sentinel), the lock sentinel if one matched, the status and its errno.
type lockError struct {
	err   error
	lock  error // nil if none matched
	st    *status.Status
	errno string
}

func (e *lockError) Error() string              { return e.err.Error() }
func (e *lockError) GRPCStatus() *status.Status { return e.st }
func (e *lockError) Unwrap() []error {
	if e.lock == nil {
		return []error{e.err}
	}
	return []error{e.err, e.lock}
}

// LockFromStatus turns a lock service error into an error wrapping
// FromStatus's sentinel and, when the (code, errno) pair names one, a lock
// sentinel (ErrWouldBlock, ErrDeadlock, ...); it keeps the status and the
// errno (PosixErrno). what names the call for context. LockClient's calls
// return their errors this way.
func LockFromStatus(what string, err error) error { return lockErr(what, err) }

// lockErr converts a gRPC error of a lock call into a lockError.
func lockErr(what string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("lock %s: %w", what, err)
	}
	e := &lockError{err: FromStatus("lock "+what, err), st: st, errno: errnoOf(st)}
	for _, row := range lockSentinelOf {
		if row.code == st.Code() && row.errno == e.errno {
			e.lock = row.err
			break
		}
	}
	return e
}

// LockClientConfig configures a LockClient with its own connection.
type LockClientConfig struct {
	// Address is the filer's gRPC address (host:port).
	Address string
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
}

// LockClient calls a filer's lock service (api/lockpb). It holds no state
// of its own: the session id, its renewal (KeepAlive, in a goroutine the
// caller owns) and the record of held locks for re-assertion are the
// caller's. Errors wrap the sentinels above and FromStatus's. Safe for
// concurrent use.
type LockClient struct {
	conn *grpc.ClientConn // nil when sharing a FilerClient's
	api  lockpb.LocksClient
}

// NewLockClient connects lazily to the filer at cfg.Address.
func NewLockClient(cfg LockClientConfig) (*LockClient, error) {
	if cfg.Address == "" {
		return nil, fmt.Errorf("lock client: %w: no filer address", ErrInvalid)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, TransportDialOptions()...)
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("lock client for %s: %w", cfg.Address, err)
	}
	return &LockClient{conn: conn, api: lockpb.NewLocksClient(conn)}, nil
}

// Locks returns a LockClient on the FilerClient's connection; closing the
// FilerClient closes it.
func (f *FilerClient) Locks() *LockClient {
	return &LockClient{api: lockpb.NewLocksClient(f.conn)}
}

// Close releases the connection, if the client has its own.
func (c *LockClient) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// LockSession is what OpenSession granted.
type LockSession struct {
	// TTL is the lease: renew it every TTL/3 (KeepAlive does).
	TTL time.Duration
	// Grace, if positive, is about how long the filer's grace period
	// after a restart still lasts: the time to re-assert locks, during
	// which new ones fail with ErrGrace.
	Grace time.Duration
}

// OpenSession starts the lease of session (an id the caller picks, unique
// per mount and filer start) for ttl, or the filer's default for 0. The
// filer may grant less; the answer says what.
func (c *LockClient) OpenSession(ctx context.Context, session string, ttl time.Duration) (LockSession, error) {
	resp, err := c.api.OpenSession(ctx, &lockpb.OpenSessionRequest{Session: session, TtlMs: ttl.Milliseconds()})
	if err != nil {
		return LockSession{}, lockErr("OpenSession", err)
	}
	return LockSession{TTL: time.Duration(resp.TtlMs) * time.Millisecond, Grace: time.Duration(resp.GraceMs) * time.Millisecond}, nil
}

// Renew extends session's lease by its ttl from now.
func (c *LockClient) Renew(ctx context.Context, session string) error {
	_, err := c.api.Renew(ctx, &lockpb.RenewRequest{Session: session})
	return lockErr("Renew", err)
}

// CloseSession ends session and releases its locks.
func (c *LockClient) CloseSession(ctx context.Context, session string) error {
	_, err := c.api.CloseSession(ctx, &lockpb.CloseSessionRequest{Session: session})
	return lockErr("CloseSession", err)
}

// KeepAlive renews session every ttl/3 until ctx ends (it then returns
// ctx.Err()) or the filer no longer knows the session (it returns the
// ErrSessionExpired error: open a fresh session, and re-assert if the
// filer restarted). Other failures, such as the filer being unreachable,
// are retried at the next tick. Run it in a goroutine the caller owns.
func (c *LockClient) KeepAlive(ctx context.Context, session string, ttl time.Duration) error {
	interval := ttl / 3
	if interval <= 0 {
		return fmt.Errorf("lock KeepAlive: %w: ttl %v", ErrInvalid, ttl)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, interval)
		err := c.Renew(rctx, session)
		cancel()
		if errors.Is(err, ErrSessionExpired) || errors.Is(err, ErrInvalid) {
			return err
		}
	}
}

// GetLk tests l (type SHARED or EXCLUSIVE) for session's owner l.Owner and
// returns the first conflicting lock of another owner, with its type,
// range and pid only, or nil when l could be set now.
func (c *LockClient) GetLk(ctx context.Context, session string, l *lockpb.Lock) (*lockpb.Lock, error) {
	resp, err := c.api.GetLk(ctx, &lockpb.LockRequest{Session: session, Lock: l})
	if err != nil {
		return nil, lockErr("GetLk", err)
	}
	if !resp.Conflict {
		return nil, nil
	}
	return &lockpb.Lock{Inode: l.Inode, Kind: l.Kind, Type: resp.Type, Start: resp.Start, End: resp.End, Pid: resp.Pid}, nil
}

// SetLk sets or releases l without waiting: ErrWouldBlock when another
// owner holds a conflicting lock.
func (c *LockClient) SetLk(ctx context.Context, session string, l *lockpb.Lock) error {
	_, err := c.Set(ctx, session, l, false, 0)
	return err
}

// Grant is what a lock set answers (lockpb SetLkResponse).
type Grant struct {
	// Generation is the inode's change counter as the filer set the lock
	// (0 for an unlock or an inode it does not have), so that a mount
	// knows whether its copy of the file is current.
	Generation uint64
	// LogTs is the newest change-log timestamp when the lock was set (0
	// for an unlock): a mount that applied its subscription up to it sees
	// what the previous holder changed in the namespace.
	LogTs int64
}

// Set is SetLk (wait false) or SetLkw (wait true, for a lock) that also
// returns the Grant. feedSig is the client signature of the caller's
// change-log subscription, which the filer then asks to report its
// progress up to Grant.LogTs (0: none).
func (c *LockClient) Set(ctx context.Context, session string, l *lockpb.Lock, wait bool, feedSig int32) (Grant, error) {
	req := &lockpb.LockRequest{Session: session, Lock: l, FeedSignature: feedSig}
	if wait && l.GetType() != lockpb.LockType_UNLOCK {
		return c.setLkw(ctx, req)
	}
	resp, err := c.api.SetLk(ctx, req)
	if err != nil {
		return Grant{}, lockErr("SetLk", err)
	}
	return grantOf(resp), nil
}

func grantOf(resp *lockpb.SetLkResponse) Grant {
	return Grant{Generation: resp.Generation, LogTs: resp.LogTs}
}

// withdrawTimeout bounds the wait for the filer's answer to a withdrawn
// SetLkw; past it the call is cut and the outcome is unknown.
const withdrawTimeout = 5 * time.Second

// SetLkw sets l, waiting on the filer while a conflicting lock is held.
// When ctx ends first, it withdraws the request and returns once the
// filer has answered, promptly: an error wrapping ErrCanceled (or
// ErrTimeout) and ctx's error when no lock was set and no waiter is left,
// or nil when the lock was granted before the withdrawal reached the
// filer (the caller then holds it, as with a local fcntl that got its lock
// before the signal). It never leaves a lock the caller does not know of,
// except when the filer does not answer the withdrawal within a few
// seconds (then the session is probably lost anyway).
func (c *LockClient) SetLkw(ctx context.Context, session string, l *lockpb.Lock) error {
	_, err := c.setLkw(ctx, &lockpb.LockRequest{Session: session, Lock: l})
	return err
}

func (c *LockClient) setLkw(ctx context.Context, req *lockpb.LockRequest) (Grant, error) {
	if err := ctx.Err(); err != nil {
		return Grant{}, ctxError(err)
	}
	// The stream outlives ctx: ending ctx withdraws the request instead.
	sctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	stream, err := c.api.SetLkw(sctx)
	if err != nil {
		return Grant{}, lockErr("SetLkw", err)
	}
	if err := stream.Send(req); err != nil {
		_, err = stream.Recv() // the stream's real error
		return Grant{}, lockErr("SetLkw", err)
	}
	type answer struct {
		resp *lockpb.SetLkResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := stream.Recv()
		done <- answer{resp, err}
	}()
	select {
	case a := <-done:
		if a.err != nil {
			return Grant{}, lockErr("SetLkw", a.err)
		}
		return grantOf(a.resp), nil
	case <-ctx.Done():
	}
	_ = stream.CloseSend() // withdraw
	t := time.NewTimer(withdrawTimeout)
	defer t.Stop()
	select {
	case a := <-done:
		switch {
		case a.err == nil:
			return grantOf(a.resp), nil // granted before the withdrawal
		case status.Code(a.err) == codes.Canceled:
			return Grant{}, ctxError(ctx.Err())
		}
		return Grant{}, lockErr("SetLkw", a.err)
	case <-t.C:
		abort()
		<-done
		return Grant{}, fmt.Errorf("lock SetLkw: withdrawal unanswered for %v: %w", withdrawTimeout, ctxError(ctx.Err()))
	}
}

// ctxError wraps a context error in this package's matching sentinel.
func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("lock SetLkw: %w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("lock SetLkw: %w: %w", ErrCanceled, err)
}

// ReleaseOwner releases every fcntl lock owner of session holds on inode
// (POSIX: any close of the file by the process).
func (c *LockClient) ReleaseOwner(ctx context.Context, session string, inode, owner uint64) error {
	_, err := c.api.ReleaseOwner(ctx, &lockpb.ReleaseOwnerRequest{Session: session, Inode: inode, Owner: owner})
	return lockErr("ReleaseOwner", err)
}

// Reassert re-asserts held (each with its inode, kind, type, range, owner
// and pid) under session, which must be open, in the filer's grace period
// after a restart. It returns the locks the filer refused (lost), or
// ErrNoGrace when the grace period is over (all lost).
func (c *LockClient) Reassert(ctx context.Context, session string, held []*lockpb.Lock) (rejected []*lockpb.Lock, err error) {
	resp, err := c.api.Reassert(ctx, &lockpb.ReassertRequest{Session: session, Locks: held})
	if err != nil {
		return nil, lockErr("Reassert", err)
	}
	return resp.Rejected, nil
}

// SessionExpired reports whether err, from a lock call or from a filer
// call that takes a handle under a session (Open, OpenContent, Create with
// open, Reopen), says the filer does not know the session: its lease ran
// out or the filer restarted. The caller opens a fresh session.
func SessionExpired(err error) bool {
	return errors.Is(err, ErrSessionExpired) || (errors.Is(err, ErrNotFound) && PosixErrno(err) == "ENOLCK")
}
