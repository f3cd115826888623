package locks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Default limits of a Config left at zero.
const (
	DefaultMaxSessions          = 1 << 16
	DefaultMaxLocksPerSession   = 1 << 16
	DefaultMaxWaitersPerSession = 1 << 12
)

// Config configures a Manager. The zero Config is valid: every zero field
// takes its default.
type Config struct {
	// Now is the clock for leases and the grace period; nil means
	// time.Now. Tests inject a fake clock and drive expiry with Expire.
	Now func() time.Time
	// MaxSessions bounds the live sessions; OpenSession of a new session
	// beyond it returns ErrLimit. 0 means DefaultMaxSessions.
	MaxSessions int
	// MaxLocksPerSession bounds the lock records (fcntl records after
	// merging, plus flock locks) all owners of one session hold across all
	// files. A request that would take the session past it returns
	// ErrLimit, like Linux's ENOLCK; that includes an unlock that would
	// split a record. 0 means DefaultMaxLocksPerSession.
	MaxLocksPerSession int
	// MaxWaitersPerSession bounds the SetLkw calls of one session blocked
	// at once; one more returns ErrLimit. 0 means
	// DefaultMaxWaitersPerSession.
	MaxWaitersPerSession int
	// Logger receives session expiries; nil discards.
	Logger *slog.Logger
	// OnSessionEnd, if set, is called with a session's id whenever it
	// ends (closed, lease run out, or reopened past its lease), so that
	// whatever else the session holds (the filer's file handles) can go
	// too; closed says its owner closed it (CloseSession), rather than
	// letting its lease run out. It runs with the Manager's mutex held:
	// it must neither call the Manager nor block.
	OnSessionEnd func(id string, closed bool)
}

// DefaultConfig returns a Config with every field at its default.
func DefaultConfig() Config {
	return Config{
		Now:                  time.Now,
		MaxSessions:          DefaultMaxSessions,
		MaxLocksPerSession:   DefaultMaxLocksPerSession,
		MaxWaitersPerSession: DefaultMaxWaitersPerSession,
	}
}

// Validate rejects negative limits.
func (c Config) Validate() error {
	if c.MaxSessions < 0 || c.MaxLocksPerSession < 0 || c.MaxWaitersPerSession < 0 {
		return fmt.Errorf("%w: negative limit in locks.Config", ErrInvalid)
	}
	return nil
}

// Manager is the lock authority of one filer: a Table per inode, the
// sessions that own the locks, the waiters of blocking requests, and the
// grace period after a restart. All methods are safe for concurrent use;
// they serialize on one mutex, and none blocks under it (SetLkw waits with
// the mutex released).
type Manager struct {
	now                  func() time.Time
	maxSessions          int
	maxLocksPerSession   int
	maxWaitersPerSession int
	log                  *slog.Logger
	onEnd                func(id string, closed bool)

	mu         sync.Mutex
	files      map[uint64]*file
	sessions   map[string]*session
	waiting    map[Owner]map[*waiter]struct{} // blocked fcntl requests by owner
	graceUntil time.Time
	freeFile   *file // one empty file kept for reuse

	// parked, if set (by tests), is called under mu whenever a SetLkw is
	// about to wait.
	parked func(inode uint64, req Lock)
}

// file is one inode's locks and the requests waiting for them. It exists
// while it holds a lock or has a waiter.
type file struct {
	table   Table
	waiters map[*waiter]struct{}
}

// session is one mount session's lease and the bookkeeping to release it.
type session struct {
	id       string
	ttl      time.Duration
	deadline time.Time
	count    int            // lock records held by the session's owners
	inodes   map[uint64]int // records held per inode
	waiters  map[*waiter]struct{}
}

// waiter is one blocked SetLkw.
type waiter struct {
	inode    uint64
	req      Lock
	sess     *session
	ch       chan struct{} // capacity 1: a pending wake-up
	blockers []Owner       // owners it waits for; emptied when woken
}

// Held is a lock together with the inode it is on, as Snapshot returns it
// and Reassert takes it.
type Held struct {
	Inode uint64
	Lock  Lock
}

// NewManager returns an empty Manager, not in a grace period.
func NewManager(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	def := DefaultConfig()
	m := &Manager{
		now:                  cfg.Now,
		maxSessions:          cfg.MaxSessions,
		maxLocksPerSession:   cfg.MaxLocksPerSession,
		maxWaitersPerSession: cfg.MaxWaitersPerSession,
		log:                  cfg.Logger,
		onEnd:                cfg.OnSessionEnd,
		files:                make(map[uint64]*file),
		sessions:             make(map[string]*session),
		waiting:              make(map[Owner]map[*waiter]struct{}),
	}
	if m.now == nil {
		m.now = def.Now
	}
	if m.maxSessions == 0 {
		m.maxSessions = def.MaxSessions
	}
	if m.maxLocksPerSession == 0 {
		m.maxLocksPerSession = def.MaxLocksPerSession
	}
	if m.maxWaitersPerSession == 0 {
		m.maxWaitersPerSession = def.MaxWaitersPerSession
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m, nil
}

// SetLk sets or releases req on inode without waiting (F_SETLK, flock with
// LOCK_NB, LOCK_UN). It returns ErrWouldBlock when another owner holds a
// conflicting lock, ErrSessionExpired when req.Owner.Session is not live,
// ErrGrace for a lock (not an unlock) during the grace period, ErrInvalid
// for a malformed request and ErrLimit past the session's lock limit.
// Releasing what is not held succeeds.
func (m *Manager) SetLk(inode uint64, req Lock) error {
	req, err := req.normalize()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.liveSessionLocked(req.Owner.Session)
	if err != nil {
		return err
	}
	if req.Type != Unlock && m.inGraceLocked() {
		return ErrGrace
	}
	return m.tryLocked(s, inode, req)
}

// SetLkw is SetLk that waits while a conflicting lock is held (F_SETLKW,
// flock without LOCK_NB). The waiter is woken by whatever releases or
// downgrades a conflicting lock (an unlock, ReleaseOwner, a session closed
// or expired), never by polling. It returns nil once the lock is set;
// ctx.Err() when ctx ends first, with no lock set and no waiter left;
// ErrDeadlock when an fcntl wait would close a cycle of owners waiting for
// each other; ErrSessionExpired when the session ends while waiting; and
// ErrGrace during the grace period (SetLkw does not wait for it to end). An
// Unlock request is SetLk. A flock conversion that has to wait releases the
// owner's current flock lock before waiting, as Linux does, so on error it
// is gone.
func (m *Manager) SetLkw(ctx context.Context, inode uint64, req Lock) error {
	req, err := req.normalize()
	if err != nil {
		return err
	}
	if req.Type == Unlock {
		return m.SetLk(inode, req)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.liveSessionLocked(req.Owner.Session)
	if err != nil {
		return err
	}
	var w *waiter
	defer func() {
		if w != nil {
			m.unregisterLocked(w)
		}
	}()
	for {
		if !m.liveLocked(s) {
			m.dropIfDueLocked(s)
			return fmt.Errorf("%w: session %q ended while waiting", ErrSessionExpired, s.id)
		}
		if m.inGraceLocked() {
			return ErrGrace
		}
		err := m.tryLocked(s, inode, req)
		if !errors.Is(err, ErrWouldBlock) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if req.Kind == Flock && w == nil {
			// A flock conversion that must wait drops the old lock first,
			// as Linux does, so that two owners upgrading shared locks do
			// not wait for each other forever.
			unlock := req
			unlock.Type = Unlock
			if err := m.tryLocked(s, inode, unlock); err != nil {
				return err
			}
		}
		if w == nil {
			if w, err = m.registerLocked(s, inode, req); err != nil {
				return err
			}
		}
		if f := m.files[inode]; f != nil {
			w.blockers = f.table.conflictOwners(req, w.blockers[:0])
		}
		if req.Kind == Fcntl && m.deadlockLocked(req.Owner, w.blockers) {
			return fmt.Errorf("%w: %s on inode %d", ErrDeadlock, req, inode)
		}
		if m.parked != nil {
			m.parked(inode, req)
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-w.ch:
		}
		m.mu.Lock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// GetLk returns the first lock on inode that conflicts with req (F_GETLK:
// its type, range, owner and pid), or false when req could be granted now.
// req.Type must be Shared or Exclusive. During the grace period it returns
// ErrGrace, since the table is not yet complete.
func (m *Manager) GetLk(inode uint64, req Lock) (Lock, bool, error) {
	req, err := req.normalize()
	if err != nil {
		return Lock{}, false, err
	}
	if req.Type == Unlock {
		return Lock{}, false, fmt.Errorf("%w: GetLk of type unlock", ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.liveSessionLocked(req.Owner.Session); err != nil {
		return Lock{}, false, err
	}
	if m.inGraceLocked() {
		return Lock{}, false, ErrGrace
	}
	for {
		f := m.files[inode]
		if f == nil {
			return Lock{}, false, nil
		}
		c, ok := f.table.Test(req)
		if !ok {
			return Lock{}, false, nil
		}
		if !m.dropHolderIfDueLocked(c.Owner.Session, nil) {
			return c, true, nil
		}
	}
}

// ReleaseOwner releases every fcntl lock that owner of session holds on
// inode: POSIX drops a process's record locks on any close of the file.
// flock locks are released with an Unlock request of kind Flock (FUSE's
// release with FUSE_RELEASE_FLOCK_UNLOCK).
func (m *Manager) ReleaseOwner(session string, owner uint64, inode uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.liveSessionLocked(session)
	if err != nil {
		return err
	}
	f := m.files[inode]
	if f == nil {
		return nil
	}
	if n := f.table.ReleaseOwner(Fcntl, Owner{session, owner}); n > 0 {
		m.accountLocked(s, inode, -n)
		m.wakeLocked(f, Fcntl, WholeFile())
	}
	m.gcLocked(inode, f)
	return nil
}

// Stats is a snapshot of a Manager's size, for metrics.
type Stats struct {
	Sessions int  // live sessions (including those past their lease but not yet expired)
	Files    int  // inodes with a lock or a waiter
	Locks    int  // lock records, both kinds
	Waiters  int  // blocked SetLkw calls
	Grace    bool // in the grace period
}

// Stats returns the current counts.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Stats{Sessions: len(m.sessions), Files: len(m.files), Grace: m.inGraceLocked()}
	for _, f := range m.files {
		st.Locks += f.table.Len()
		st.Waiters += len(f.waiters)
	}
	return st
}

// tryLocked grants req (valid, session s live) on inode if nothing
// conflicts. A conflicting lock whose session's lease has run out is not a
// conflict: that session is expired on the spot.
func (m *Manager) tryLocked(s *session, inode uint64, req Lock) error {
	var f *file
	for {
		// Expiring a holder may empty and forget the file, so look it up
		// again after each.
		if f = m.files[inode]; f == nil {
			if req.Type == Unlock {
				return nil
			}
			f = m.newFileLocked(inode)
		}
		c, ok := f.table.Test(req)
		if !ok {
			break
		}
		if !m.dropHolderIfDueLocked(c.Owner.Session, s) {
			return ErrWouldBlock
		}
	}
	p := f.table.plan(req)
	if p.delta > 0 && s.count+p.delta > m.maxLocksPerSession {
		m.gcLocked(inode, f)
		return fmt.Errorf("%w: session %q holds %d lock records (max %d)", ErrLimit, s.id, s.count, m.maxLocksPerSession)
	}
	f.table.commit(p)
	m.accountLocked(s, inode, p.delta)
	if p.freed {
		m.wakeLocked(f, req.Kind, req.Range)
	}
	m.gcLocked(inode, f)
	return nil
}

// accountLocked adds delta to the records s holds on inode.
func (m *Manager) accountLocked(s *session, inode uint64, delta int) {
	if delta == 0 {
		return
	}
	s.count += delta
	if n := s.inodes[inode] + delta; n > 0 {
		s.inodes[inode] = n
	} else {
		delete(s.inodes, inode)
	}
}

// newFileLocked adds an empty file for inode, reusing the last one
// forgotten, so that lock/unlock pairs on unlocked files do not allocate.
func (m *Manager) newFileLocked(inode uint64) *file {
	f := m.freeFile
	if f != nil {
		m.freeFile = nil
	} else {
		f = &file{}
	}
	m.files[inode] = f
	return f
}

// gcLocked forgets inode's file once it has no lock and no waiter. Callers
// must not use f afterwards.
func (m *Manager) gcLocked(inode uint64, f *file) {
	if f.table.Len() != 0 || len(f.waiters) != 0 || m.files[inode] != f {
		return
	}
	delete(m.files, inode)
	if m.freeFile == nil && cap(f.table.posix)+cap(f.table.spare)+cap(f.table.flock) <= 64 {
		m.freeFile = f
	}
}

// registerLocked adds a waiter for req on inode.
func (m *Manager) registerLocked(s *session, inode uint64, req Lock) (*waiter, error) {
	if len(s.waiters) >= m.maxWaitersPerSession {
		return nil, fmt.Errorf("%w: session %q has %d blocked requests (max %d)", ErrLimit, s.id, len(s.waiters), m.maxWaitersPerSession)
	}
	f := m.files[inode]
	if f == nil {
		f = m.newFileLocked(inode)
	}
	w := &waiter{inode: inode, req: req, sess: s, ch: make(chan struct{}, 1)}
	if f.waiters == nil {
		f.waiters = make(map[*waiter]struct{})
	}
	f.waiters[w] = struct{}{}
	s.waiters[w] = struct{}{}
	if req.Kind == Fcntl {
		ws := m.waiting[req.Owner]
		if ws == nil {
			ws = make(map[*waiter]struct{})
			m.waiting[req.Owner] = ws
		}
		ws[w] = struct{}{}
	}
	return w, nil
}

// unregisterLocked removes w everywhere it is registered.
func (m *Manager) unregisterLocked(w *waiter) {
	if f := m.files[w.inode]; f != nil {
		delete(f.waiters, w)
		m.gcLocked(w.inode, f)
	}
	delete(w.sess.waiters, w)
	if ws := m.waiting[w.req.Owner]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(m.waiting, w.req.Owner)
		}
	}
}

// wakeLocked wakes the waiters on f for locks of kind over r.
func (m *Manager) wakeLocked(f *file, kind Kind, r Range) {
	for w := range f.waiters {
		if w.req.Kind == kind && w.req.Range.Overlaps(r) {
			w.wake()
		}
	}
}

// wake signals w to retry. Its blockers are cleared at once, as Linux
// removes a woken waiter from its blocker's list, so that a deadlock check
// made before w runs again does not follow a stale edge.
func (w *waiter) wake() {
	w.blockers = w.blockers[:0]
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// deadlockLocked reports whether owner o waiting for blockers would close a
// cycle in the wait-for graph of fcntl owners: some blocker waits, directly
// or through others, for o.
func (m *Manager) deadlockLocked(o Owner, blockers []Owner) bool {
	if len(blockers) == 0 || len(m.waiting) == 0 {
		return false
	}
	seen := make(map[Owner]bool)
	stack := append([]Owner(nil), blockers...)
	for len(stack) > 0 {
		b := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if b == o {
			return true
		}
		if seen[b] {
			continue
		}
		seen[b] = true
		for w := range m.waiting[b] {
			stack = append(stack, w.blockers...)
		}
	}
	return false
}
