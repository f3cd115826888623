package mount

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/locks"
)

// Locks. flock and fcntl locks taken through the mount are held by the
// filer's lock service (api/lockpb), so they hold against every mount of
// the cluster (DESIGN.md decision 6). The mount opens one lock session,
// lazily at its first open or lock request (the session also leases the
// filer's handles on the mount's open files, handles.go), renews its lease every third of the
// ttl from a goroutine the FS owns, and closes it when it unmounts. It
// keeps its own record of what its owners hold, for two reasons: a
// close(2) sends a FLUSH whose lock owner's record locks must go (POSIX),
// and the record says whether that needs a call to the filer at all (it
// almost never does); and after a filer restart the locks are re-asserted
// from it, in the filer's grace period.
//
// Sessions end in two ways the mount did not ask for: the filer restarted
// (its table is gone; it is in its grace period and takes re-assertions)
// or the lease ran out while the filer kept running (the mount was cut
// off; someone else may hold the locks now). The mount notices either at
// its next renewal or request (ErrSessionExpired), opens a fresh session
// and re-asserts, unless more than the lease has passed since its last
// renewal was sent (the filer may have given the locks to another mount
// before it restarted: leaseLapsed); locks it cannot or must not
// re-assert are lost, which is logged, and
// the next lock request of an owner that lost locks on the file fails
// with ENOLCK, once, instead of being granted on stale state. Everyone
// else goes on under the new session.

// LockKind and LockType are the locks package's, named here with their
// values for mount/fusefs, which imports only this package.
type (
	LockKind = locks.Kind
	LockType = locks.Type
)

const (
	LockFcntl     = locks.Fcntl
	LockFlock     = locks.Flock
	LockShared    = locks.Shared
	LockExclusive = locks.Exclusive
	LockUnlock    = locks.Unlock
)

// LockRequest is a lock request as the kernel forwards it.
type LockRequest struct {
	Kind LockKind
	Type LockType // Shared, Exclusive or Unlock
	// Start and End are the inclusive byte range; End ==
	// locks.MaxOffset runs to end of file. flock locks ignore them.
	Start, End int64
	// Owner is the kernel's lock owner: the process (its files table)
	// for fcntl locks, the open file description for flock and OFD
	// locks.
	Owner uint64
	Pid   uint32
}

// errLocksClosed: the mount is unmounting; no lock is taken any more.
var errLocksClosed = errors.New("the mount is closing")

// lockRetryMax bounds the back-off between retries while the filer is in
// its grace period or away.
const lockRetryMax = time.Second

// lockService is the mount's side of the lock service.
type lockService struct {
	fs  *FS
	api *client.LockClient

	openMu sync.Mutex // serializes opening sessions
	// handlesMu orders filer handle calls against session replacements
	// (handles.go). Order: openMu, then handlesMu, then mu.
	handlesMu sync.RWMutex

	mu      sync.Mutex
	session string // the live session; "" until one is open
	// leaseSent is when the last call that extended the lease of the
	// live (or last) session was sent: its open or a renewal that
	// succeeded. The filer's lease runs at least ttl from then, and
	// perhaps no longer (leaseLapsed).
	leaseSent time.Time
	// failedAt and failErr are the last failed attempt to open one.
	failedAt time.Time
	failErr  error
	ttl      time.Duration
	opened   int // sessions opened so far, for fresh ids
	running  bool
	closed   bool // the FS is closing: no new session
	// held records what this mount's owners hold, one Table per
	// (inode, owner) so that an owner's record never conflicts with
	// another's while their calls cross on the way back from the filer.
	held map[ownerKey]*locks.Table
	lost int // locks lost to ended sessions, since the mount started
	// lostBy marks the (inode, owner) pairs that lost locks and have not
	// been told yet (takeLost).
	lostBy map[ownerKey]struct{}
}

type ownerKey struct{ ino, owner uint64 }

// recordSession is the session id of the record's Tables, which need one.
const recordSession = "mount"

func newLockService(fs *FS) *lockService {
	return &lockService{fs: fs, api: fs.filer.Locks(), held: make(map[ownerKey]*locks.Table), lostBy: make(map[ownerKey]struct{})}
}

// LockStats says what the mount's lock session holds.
type LockStats struct {
	Session string // "" before the first open or lock request
	Held    int    // lock records held by the mount's owners
	Lost    int    // locks lost because a session ended (lease out, filer restart past grace)
}

// LockStats reports the lock session's state.
func (fs *FS) LockStats() LockStats {
	ls := fs.locks
	ls.mu.Lock()
	defer ls.mu.Unlock()
	st := LockStats{Session: ls.session, Lost: ls.lost}
	for _, t := range ls.held {
		st.Held += t.Len()
	}
	return st
}

// GetLk tests req (F_GETLK) on ino and returns the first conflicting
// lock of another owner, on any mount, or conflict false.
func (fs *FS) GetLk(ctx context.Context, ino uint64, req LockRequest) (held LockRequest, conflict bool, errno syscall.Errno) {
	if errno := checkLock(req); errno != 0 {
		return held, false, errno
	}
	if req.Type == locks.Unlock {
		return held, false, syscall.EINVAL
	}
	var got *lockpb.Lock
	errno = fs.locks.do(ctx, ownerKey{ino, req.Owner}, func(ctx context.Context, session string) error {
		var err error
		got, err = fs.locks.api.GetLk(ctx, session, lockToPB(ino, req))
		return err
	}, true)
	if errno != 0 || got == nil {
		return held, false, errno
	}
	return LockRequest{Kind: req.Kind, Type: typeFromPB(got.Type), Start: got.Start, End: got.End, Pid: got.Pid}, true, 0
}

// A lock grant waits for the change log to be applied up to the grant
// (feedPosition): normally a round trip, as the filer asks this mount's
// subscription for a progress report with the grant. It gives up when the
// stream has not moved for feedWaitIdle (down, as in a filer restart), or
// after feedWaitMax however it moves (far behind).
const (
	feedWaitIdle = 2 * time.Second
	feedWaitMax  = 30 * time.Second
)

// SetLk sets or releases req on ino through handle fh (F_SETLK, F_SETLKW,
// flock). With wait it blocks while another owner holds a conflicting
// lock, until ctx ends (EINTR; the request is withdrawn and leaves
// nothing behind, unless the lock was granted first, which is then held).
func (fs *FS) SetLk(ctx context.Context, fh, ino uint64, req LockRequest, wait bool) syscall.Errno {
	if errno := checkLock(req); errno != 0 {
		return errno
	}
	h := fs.handle(fh)
	if h == nil {
		return syscall.EBADF
	}
	if req.Kind == locks.Fcntl && req.Type != locks.Unlock {
		h.f.lockedThrough(req.Owner, fh)
	}
	if req.Type != locks.Exclusive {
		// What was written under the lock reaches the filer before
		// another mount can take the lock and read it.
		if errno := h.f.flush(ctx); errno != 0 {
			return errno
		}
	}
	ls := fs.locks
	pl := lockToPB(ino, req)
	if req.Type == locks.Unlock {
		ls.forgetLost(ownerKey{ino, req.Owner}) // given up anyway
	}
	var grant client.Grant
	errno := ls.do(ctx, ownerKey{ino, req.Owner}, func(ctx context.Context, session string) error {
		var err error
		grant, err = ls.api.Set(ctx, session, pl, wait, fs.sig)
		switch {
		case err == nil && !ls.record(session, ino, req):
			// Granted under a session replaced meanwhile, whose
			// re-assertion did not know of it: ask again under the
			// new one.
			return client.ErrSessionExpired
		case wait && req.Kind == locks.Flock && (errors.Is(err, client.ErrCanceled) || errors.Is(err, client.ErrLockLimit)):
			// A flock conversion that had to wait dropped the old
			// lock first (as Linux does), and the wait failed.
			ls.forget(session, ino, req.Owner, locks.Flock)
		}
		return err
	}, !wait)
	if errno == 0 && req.Type != locks.Unlock {
		// What another mount changed in the namespace before releasing
		// the lock (SQLite's journal, created and removed in every
		// transaction) is what this one shows now. The lock is held
		// whatever happens here, so neither an interrupt nor a watcher
		// that stays behind turns the grant into an error: the wait is
		// bounded and only logged.
		if start := time.Now(); !fs.feedPos.wait(context.WithoutCancel(ctx), grant.LogTs, feedWaitIdle, feedWaitMax) {
			fs.log.Warn("mount: lock granted before the change log caught up; other mounts' recent changes may show late",
				"inode", ino, "log_ts", grant.LogTs, "waited", time.Since(start).Round(time.Millisecond))
		}
		// And what another mount wrote under the lock before is what
		// this one reads now. A failure is logged, not reported (the
		// next open or read fetches the file anyway).
		if e := h.f.revalidate(context.WithoutCancel(ctx), grant.Generation); e != 0 {
			fs.log.Warn("mount: refreshing a file after a lock grant failed", "inode", ino, "errno", e)
		}
	}
	return errno
}

// releaseOwner drops owner's fcntl locks on ino (any close(2) of the file
// by the process, or the last close of an OFD), if the record says it
// holds any or touched says it asked for one on the file (the record may
// miss a grant whose answer was lost): most closes cost nothing.
func (fs *FS) releaseOwner(ctx context.Context, ino, owner uint64, touched bool) {
	ls := fs.locks
	ls.forgetLost(ownerKey{ino, owner})
	if !touched && !ls.holds(ino, owner, locks.Fcntl) {
		return
	}
	errno := ls.do(ctx, ownerKey{}, func(ctx context.Context, session string) error {
		err := ls.api.ReleaseOwner(ctx, session, ino, owner)
		if err == nil && !ls.forget(session, ino, owner, locks.Fcntl) {
			return client.ErrSessionExpired // re-asserted meanwhile: release them there
		}
		return err
	}, true)
	if errno != 0 {
		fs.log.Warn("mount: releasing record locks failed; they stay with the filer until the session ends",
			"inode", ino, "owner", owner, "errno", errno)
	}
}

// releaseFlock drops owner's flock lock on ino: the last close of an
// open file description that used flock (the kernel says so), whatever
// the record says.
func (fs *FS) releaseFlock(ctx context.Context, ino, owner uint64) {
	ls := fs.locks
	errno := fs.locks.do(ctx, ownerKey{}, func(ctx context.Context, session string) error {
		err := ls.api.SetLk(ctx, session, &lockpb.Lock{Inode: ino, Kind: lockpb.LockKind_FLOCK,
			Type: lockpb.LockType_UNLOCK, End: locks.MaxOffset, Owner: owner})
		if err == nil && !ls.forget(session, ino, owner, locks.Flock) {
			return client.ErrSessionExpired
		}
		return err
	}, true)
	if errno != 0 {
		fs.log.Warn("mount: releasing a flock lock failed; it stays with the filer until the session ends",
			"inode", ino, "owner", owner, "errno", errno)
	}
}

// checkLock rejects what no kernel sends: an unknown kind or type, or a
// range outside [0, MaxOffset].
func checkLock(req LockRequest) syscall.Errno {
	switch {
	case req.Kind != locks.Fcntl && req.Kind != locks.Flock:
		return syscall.EINVAL
	case req.Type != locks.Shared && req.Type != locks.Exclusive && req.Type != locks.Unlock:
		return syscall.EINVAL
	case req.Kind == locks.Fcntl && (req.Start < 0 || req.End < req.Start):
		return syscall.EINVAL
	}
	return 0
}

// do runs fn for key's owner under the live session (opening one if
// needed) and maps its error to an errno. It retries while the filer is in
// its grace period or unreachable, with back-off, for up to OpTimeout
// (bounded also by ctx); when the session turns out to have ended it opens
// a fresh one and retries. ENOLCK, without a call, when key's owner lost
// locks on the inode since it last asked. bounded says that fn itself
// does not wait for other owners, so it gets OpTimeout too.
func (ls *lockService) do(ctx context.Context, key ownerKey, fn func(ctx context.Context, session string) error, bounded bool) syscall.Errno {
	if ls.takeLost(key) {
		return syscall.ENOLCK
	}
	ctx = ls.fs.opCtx(ctx)
	var giveUp time.Time // set at the first failure to reach the filer
	backoff := 20 * time.Millisecond
	// Opening and replacing sessions run to their end: cut short, they
	// would leave a half re-asserted session behind.
	sctx := context.WithoutCancel(ctx)
	for {
		session, err := ls.ensure(sctx)
		attempt := time.Now()
		if err == nil {
			cctx, cancel := ctx, context.CancelFunc(func() {})
			if bounded {
				cctx, cancel = context.WithTimeout(ctx, ls.fs.cfg.OpTimeout)
			}
			err = fn(cctx, session)
			cancel()
			if errors.Is(err, client.ErrSessionExpired) {
				_, rerr := ls.replace(sctx, session)
				switch {
				case ls.takeLost(key):
					return syscall.ENOLCK
				case rerr == nil:
					continue
				}
				err = rerr
			}
		}
		switch {
		case err == nil:
			return 0
		case errors.Is(err, client.ErrWouldBlock):
			return syscall.EAGAIN
		case errors.Is(err, client.ErrDeadlock):
			return syscall.EDEADLK
		case errors.Is(err, client.ErrLockLimit), errors.Is(err, client.ErrNoGrace):
			return syscall.ENOLCK
		case errors.Is(err, client.ErrInvalid):
			return syscall.EINVAL
		case ctx.Err() != nil:
			return syscall.EINTR
		case errors.Is(err, client.ErrGrace), errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrTimeout):
		default:
			ls.fs.log.Warn("mount: lock call failed", "err", err)
			return syscall.EIO
		}
		// Grace period or filer away: retry, within OpTimeout of the
		// first failure (a lock wait that went on a while before it
		// failed starts the count again; a bounded call that timed out
		// does not).
		if !bounded && time.Since(attempt) > time.Second {
			giveUp, backoff = time.Time{}, 20*time.Millisecond
		}
		if giveUp.IsZero() {
			giveUp = time.Now().Add(ls.fs.cfg.OpTimeout)
		} else if time.Now().After(giveUp) {
			ls.fs.log.Warn("mount: lock call gave up", "err", err)
			return syscall.EIO
		}
		select {
		case <-ctx.Done():
			return syscall.EINTR
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, lockRetryMax)
	}
}

// current returns the live session, "" if there is none.
func (ls *lockService) current() string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.session
}

// ensure returns the live session, opening one first if there is none.
// Callers that waited for another caller's attempt take its failure
// rather than trying again, so that with the filer away, opens waiting
// for a session fail together, each within OpTimeout.
func (ls *lockService) ensure(ctx context.Context) (string, error) {
	ls.mu.Lock()
	s := ls.session
	ls.mu.Unlock()
	if s != "" {
		return s, nil
	}
	asked := time.Now()
	ls.openMu.Lock()
	defer ls.openMu.Unlock()
	ls.mu.Lock()
	s = ls.session
	failed, ferr := ls.failedAt, ls.failErr
	ls.mu.Unlock()
	if s != "" {
		return s, nil
	}
	if failed.After(asked) {
		return "", ferr
	}
	_, err := ls.openLocked(ctx)
	if err != nil {
		ls.mu.Lock()
		ls.failedAt, ls.failErr = time.Now(), err
		ls.mu.Unlock()
		return "", err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.session, nil
}

// replace ends the use of session, which the filer no longer knows, and
// opens a fresh one, re-asserting the record. It returns how many locks
// were lost. A session already replaced by another call is left alone.
func (ls *lockService) replace(ctx context.Context, session string) (lost int, err error) {
	ls.openMu.Lock()
	defer ls.openMu.Unlock()
	ls.mu.Lock()
	if ls.session != session {
		ls.mu.Unlock()
		return 0, nil
	}
	ls.session = ""
	ls.mu.Unlock()
	return ls.openLocked(ctx)
}

// openLocked opens a fresh session (openMu held) and re-asserts what the
// record holds from the previous one; what the filer does not take back
// is dropped from the record and counted as lost. If the open itself
// fails, the record stays for the next attempt.
func (ls *lockService) openLocked(ctx context.Context) (lost int, err error) {
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		return 0, fmt.Errorf("open lock session: %w", errLocksClosed)
	}
	ls.opened++
	id := fmt.Sprintf("%s.%d", ls.fs.session, ls.opened)
	ls.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, ls.fs.cfg.OpTimeout)
	defer cancel()
	sent := time.Now()
	sess, err := ls.api.OpenSession(octx, id, 0)
	if err != nil {
		return 0, fmt.Errorf("open lock session: %w", err)
	}
	// No filer handle is taken or given back until the new session is
	// installed with the old one's handles (handles.go).
	ls.handlesMu.Lock()
	defer ls.handlesMu.Unlock()
	held := ls.snapshot()
	if len(held) > 0 {
		var rejected []*lockpb.Lock
		switch {
		case ls.leaseLapsed():
			err = fmt.Errorf("the last lease ran out before the filer was heard from again: %w", client.ErrNoGrace)
		case sess.Grace > 0:
			rejected, err = ls.api.Reassert(octx, id, held)
		default:
			err = fmt.Errorf("the filer is not in a grace period: %w", client.ErrNoGrace)
		}
		why := "the filer did not take them back"
		switch {
		case errors.Is(err, client.ErrNoGrace):
			rejected, why, err = held, err.Error(), nil
		case err != nil:
			// The new session is open but holds nothing: close it
			// and let the next attempt start over.
			_ = ls.api.CloseSession(ctx, id)
			return 0, fmt.Errorf("re-assert locks: %w", err)
		}
		lost = len(rejected)
		if lost > 0 {
			ls.fs.log.Error("mount: locks lost: the lock session ended (lease ran out or filer restarted)",
				"lost", lost, "held", len(held), "why", why, "sinceRenewal", ls.sinceLease())
		} else {
			ls.fs.log.Info("mount: locks re-asserted after the lock session ended", "held", len(held), "sinceRenewal", ls.sinceLease())
		}
		ls.drop(rejected)
	}
	if err := ls.fs.reopenHandles(ctx, id); err != nil {
		_ = ls.api.CloseSession(ctx, id)
		return lost, err
	}
	ls.mu.Lock()
	ls.session, ls.ttl, ls.leaseSent = id, sess.TTL, sent
	ls.lost += lost
	start := !ls.running
	ls.running = true
	ls.mu.Unlock()
	if start {
		ls.fs.bg.Add(1)
		go ls.keepAlive(ls.fs.bgCtx)
	}
	return lost, nil
}

// keepAlive renews the live session every ttl/3 and replaces it when the
// filer no longer knows it (re-asserting in time for the filer's grace
// period). It runs from the first session until the FS closes.
func (ls *lockService) keepAlive(ctx context.Context) {
	defer ls.fs.bg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	retrySoon := false
	for {
		ls.mu.Lock()
		session, every := ls.session, ls.ttl/3
		if retrySoon {
			every = ls.ttl / 10
		}
		pending, closed := len(ls.held) > 0, ls.closed
		ls.mu.Unlock()
		if session == "" && !pending {
			pending = len(ls.fs.filerHandles()) > 0
		}
		if closed {
			return
		}
		if session == "" {
			// A replacement failed: retry while something is held.
			every = handleRetryEvery
		}
		timer.Reset(every)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if session == "" {
			if pending {
				if _, err := ls.ensure(ctx); err != nil {
					ls.fs.log.Warn("mount: reopening the lock session", "err", err)
				}
			}
			continue
		}
		rctx, cancel := context.WithTimeout(ls.fs.opCtx(ctx), every)
		sent := time.Now()
		err := ls.api.Renew(rctx, session)
		cancel()
		retrySoon = false
		switch {
		case err == nil:
			ls.renewed(session, sent)
		case errors.Is(err, client.ErrSessionExpired):
			if _, err := ls.replace(ctx, session); err != nil {
				ls.fs.log.Warn("mount: replacing the lock session", "err", err)
			}
		case err != nil:
			// Try again well before the lease runs out.
			ls.fs.log.Warn("mount: renewing the lock session failed", "err", err)
			retrySoon = true
		}
	}
}

// renewed notes that a renewal of session sent at sent succeeded.
func (ls *lockService) renewed(session string, sent time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.session == session && sent.After(ls.leaseSent) {
		ls.leaseSent = sent
	}
}

// leaseLapsed reports whether the last session's lease may have run out
// at the filer: more than its ttl has passed since the last call that
// extended it was sent. The filer may then have expired the session and
// granted its locks to another mount before it restarted, and that
// mount's re-assertion must not lose to this one's in the grace period:
// the record is lost rather than re-asserted, never a lock granted on
// stale state. A restart is told apart from a lapse only while it is
// shorter than that: a filer that takes longer than about two thirds of
// the lease to come back (renewals go every third) costs the mounts
// their locks.
//
// The time passed is the longer of the monotonic clock's and the wall
// clock's: the monotonic one stands still while the machine is
// suspended, when the filer's lease runs on; a wall clock stepped back
// is caught by the monotonic one.
func (ls *lockService) leaseLapsed() bool {
	ls.mu.Lock()
	ttl := ls.ttl
	ls.mu.Unlock()
	return ls.sinceLease() > ttl
}

// sinceLease is the time passed since leaseSent; 0 before any session.
func (ls *lockService) sinceLease() time.Duration {
	ls.mu.Lock()
	sent := ls.leaseSent
	ls.mu.Unlock()
	if sent.IsZero() {
		return 0
	}
	now := time.Now()
	return max(now.Sub(sent), now.Round(0).Sub(sent.Round(0)))
}

// close ends the session, releasing every lock of the mount at once
// rather than when its lease runs out.
func (ls *lockService) close() {
	ls.openMu.Lock() // no open in progress
	defer ls.openMu.Unlock()
	ls.mu.Lock()
	session := ls.session
	ls.session, ls.closed = "", true
	ls.mu.Unlock()
	if session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ls.fs.opCtx(context.Background()), 5*time.Second)
	defer cancel()
	if err := ls.api.CloseSession(ctx, session); err != nil {
		ls.fs.log.Warn("mount: closing the lock session", "err", err)
	}
}

// record applies a granted request to the record. It returns false,
// recording nothing, when the request went out under a session that is
// no longer the live one.
func (ls *lockService) record(session string, ino uint64, req LockRequest) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if session != ls.session {
		return false
	}
	k := ownerKey{ino, req.Owner}
	t := ls.held[k]
	if t == nil {
		if req.Type == locks.Unlock {
			return true
		}
		t = &locks.Table{}
		ls.held[k] = t
	}
	l := locks.Lock{Kind: req.Kind, Type: req.Type, Range: locks.Range{Start: req.Start, End: req.End},
		Owner: locks.Owner{Session: recordSession, ID: req.Owner}, Pid: req.Pid}
	if _, err := t.Apply(l); err != nil {
		// One owner's locks never conflict with each other; the
		// request was checked before it went out.
		ls.fs.log.Error("mount: lock record", "lock", l, "err", err)
	}
	if t.Len() == 0 {
		delete(ls.held, k)
	}
	return true
}

// holds reports whether the record has locks of kind for owner on ino.
func (ls *lockService) holds(ino, owner uint64, kind locks.Kind) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	t := ls.held[ownerKey{ino, owner}]
	if t == nil {
		return false
	}
	for _, l := range t.Locks() {
		if l.Kind == kind {
			return true
		}
	}
	return false
}

// forget drops owner's locks of kind on ino from the record; false when
// session is no longer the live one (nothing is dropped).
func (ls *lockService) forget(session string, ino, owner uint64, kind locks.Kind) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if session != ls.session {
		return false
	}
	k := ownerKey{ino, owner}
	if t := ls.held[k]; t != nil {
		t.ReleaseOwner(kind, locks.Owner{Session: recordSession, ID: owner})
		if t.Len() == 0 {
			delete(ls.held, k)
		}
	}
	return true
}

// snapshot lists the record as the wire's locks, in a stable order.
func (ls *lockService) snapshot() []*lockpb.Lock {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	keys := make([]ownerKey, 0, len(ls.held))
	for k := range ls.held {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].ino != keys[j].ino {
			return keys[i].ino < keys[j].ino
		}
		return keys[i].owner < keys[j].owner
	})
	var out []*lockpb.Lock
	for _, k := range keys {
		for _, l := range ls.held[k].Locks() {
			out = append(out, lockToPB(k.ino, LockRequest{Kind: l.Kind, Type: l.Type,
				Start: l.Range.Start, End: l.Range.End, Owner: k.owner, Pid: l.Pid}))
		}
	}
	return out
}

// takeLost reports whether key's owner lost locks on the inode since it
// last asked, and clears the mark: its next lock request fails with
// ENOLCK, once, so the application learns of it.
func (ls *lockService) takeLost(key ownerKey) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	_, ok := ls.lostBy[key]
	delete(ls.lostBy, key)
	return ok
}

// forgetLost clears key's mark without reporting it (an unlock, a close).
func (ls *lockService) forgetLost(key ownerKey) {
	ls.mu.Lock()
	delete(ls.lostBy, key)
	ls.mu.Unlock()
}

// maxLostMarks bounds the marks kept for owners that never ask again.
const maxLostMarks = 1 << 14

// drop removes lost locks from the record and marks their owners.
func (ls *lockService) drop(lost []*lockpb.Lock) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, pl := range lost {
		k := ownerKey{pl.Inode, pl.Owner}
		if len(ls.lostBy) < maxLostMarks {
			ls.lostBy[k] = struct{}{}
		}
		t := ls.held[k]
		if t == nil {
			continue
		}
		req := LockRequest{Kind: kindFromPB(pl.Kind), Type: locks.Unlock, Start: pl.Start, End: pl.End, Owner: pl.Owner}
		_, _ = t.Apply(locks.Lock{Kind: req.Kind, Type: locks.Unlock, Range: locks.Range{Start: req.Start, End: req.End},
			Owner: locks.Owner{Session: recordSession, ID: req.Owner}})
		if t.Len() == 0 {
			delete(ls.held, k)
		}
	}
}

func lockToPB(ino uint64, r LockRequest) *lockpb.Lock {
	pl := &lockpb.Lock{Inode: ino, Start: r.Start, End: r.End, Owner: r.Owner, Pid: r.Pid}
	switch r.Kind {
	case locks.Flock:
		pl.Kind = lockpb.LockKind_FLOCK
		pl.Start, pl.End = 0, math.MaxInt64
	default:
		pl.Kind = lockpb.LockKind_FCNTL
	}
	switch r.Type {
	case locks.Shared:
		pl.Type = lockpb.LockType_SHARED
	case locks.Exclusive:
		pl.Type = lockpb.LockType_EXCLUSIVE
	default:
		pl.Type = lockpb.LockType_UNLOCK
	}
	return pl
}

func kindFromPB(k lockpb.LockKind) locks.Kind {
	if k == lockpb.LockKind_FLOCK {
		return locks.Flock
	}
	return locks.Fcntl
}

func typeFromPB(t lockpb.LockType) locks.Type {
	switch t {
	case lockpb.LockType_SHARED:
		return locks.Shared
	case lockpb.LockType_EXCLUSIVE:
		return locks.Exclusive
	}
	return locks.Unlock
}
