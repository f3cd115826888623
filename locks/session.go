package locks

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// OpenSession starts the lease of session id for ttl. Opening a live
// session again renews it with the new ttl (so a retried open is
// harmless); opening an id whose lease has run out first expires the old
// session, releasing its locks, so that nothing is granted on stale state.
// A mount should still open a fresh id after ErrSessionExpired, so that
// requests of the old session still in flight keep failing.
func (m *Manager) OpenSession(id string, ttl time.Duration) error {
	if id == "" {
		return fmt.Errorf("%w: empty session id", ErrInvalid)
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: session ttl %v", ErrInvalid, ttl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if s := m.sessions[id]; s != nil {
		if now.Before(s.deadline) {
			s.ttl, s.deadline = ttl, now.Add(ttl)
			return nil
		}
		m.dropSessionLocked(s, "lease ended")
	}
	if len(m.sessions) >= m.maxSessions {
		return fmt.Errorf("%w: %d sessions open (max %d)", ErrLimit, len(m.sessions), m.maxSessions)
	}
	m.sessions[id] = &session{
		id:       id,
		ttl:      ttl,
		deadline: now.Add(ttl),
		inodes:   make(map[uint64]int),
		waiters:  make(map[*waiter]struct{}),
	}
	return nil
}

// Renew extends the lease of session id by its ttl from now. It returns
// ErrSessionExpired when the session is unknown or its lease has already
// run out (then its locks are released here, if Expire has not yet done it).
func (m *Manager) Renew(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.liveSessionLocked(id)
	if err != nil {
		return err
	}
	s.deadline = m.now().Add(s.ttl)
	return nil
}

// CloseSession ends session id: its locks are released, waiters for them
// are woken, and its own blocked requests return ErrSessionExpired.
// Closing an unknown session is a no-op.
func (m *Manager) CloseSession(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.sessions[id]; s != nil {
		m.dropSessionLocked(s, whyClosed)
	}
	return nil
}

// Expire ends every session whose lease ran out at or before now, as
// CloseSession does, and returns their ids. Call it periodically (Run
// does); a request that meets an expired session's lock also expires that
// session on the spot, so a lease's end never depends on this sweep alone
// for a conflicting request to succeed, only for a waiter to be woken.
func (m *Manager) Expire(now time.Time) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, s := range m.sessions {
		if !now.Before(s.deadline) {
			ids = append(ids, id)
			m.dropSessionLocked(s, "lease ended")
		}
	}
	slices.Sort(ids)
	return ids
}

// Run calls Expire with the Manager's clock every interval until ctx ends,
// and returns ctx.Err(). The caller owns the goroutine that runs it.
func (m *Manager) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("%w: expiry interval %v", ErrInvalid, interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			m.Expire(m.now())
		}
	}
}

// Snapshot returns every lock held by owners of session, ordered by inode,
// then as Table.Locks orders them: what a mount re-asserts after the filer
// restarts, and what it can compare with its own record.
func (m *Manager) Snapshot(session string) ([]Held, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.liveSessionLocked(session)
	if err != nil {
		return nil, err
	}
	inodes := make([]uint64, 0, len(s.inodes))
	for ino := range s.inodes {
		inodes = append(inodes, ino)
	}
	slices.Sort(inodes)
	out := make([]Held, 0, s.count)
	var buf []Lock
	for _, ino := range inodes {
		f := m.files[ino]
		if f == nil {
			panic(fmt.Sprintf("locks: session %q accounts locks on inode %d, which has none", session, ino))
		}
		buf = f.table.appendSession(buf[:0], session)
		for _, l := range buf {
			out = append(out, Held{Inode: ino, Lock: l})
		}
	}
	return out, nil
}

// Check returns nil if session id is open and within its lease, else
// ErrSessionExpired (expiring it then and there if its lease ran out). It
// does not renew the lease.
func (m *Manager) Check(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.liveSessionLocked(id)
	return err
}

// liveSessionLocked returns session id if its lease is current. A session
// past its deadline is expired here and then.
func (m *Manager) liveSessionLocked(id string) (*session, error) {
	s := m.sessions[id]
	if s == nil {
		return nil, fmt.Errorf("%w: session %q", ErrSessionExpired, id)
	}
	if !m.now().Before(s.deadline) {
		m.dropSessionLocked(s, "lease ended")
		return nil, fmt.Errorf("%w: session %q lease ended", ErrSessionExpired, id)
	}
	return s, nil
}

// liveLocked reports whether s is still the open session of its id and
// within its lease.
func (m *Manager) liveLocked(s *session) bool {
	return m.sessions[s.id] == s && m.now().Before(s.deadline)
}

// dropIfDueLocked expires s if it is still registered but past its lease.
func (m *Manager) dropIfDueLocked(s *session) {
	if m.sessions[s.id] == s && !m.now().Before(s.deadline) {
		m.dropSessionLocked(s, "lease ended")
	}
}

// dropHolderIfDueLocked expires the session named id, the holder of a
// conflicting lock, if its lease has run out, and reports whether it did.
// It never drops keep, the session of the request being served.
func (m *Manager) dropHolderIfDueLocked(id string, keep *session) bool {
	s := m.sessions[id]
	if s == nil || s == keep || m.now().Before(s.deadline) {
		return false
	}
	m.dropSessionLocked(s, "lease ended")
	return true
}

// whyClosed is the reason a session ends when its owner closes it.
const whyClosed = "closed"

// dropSessionLocked removes s, releases its locks, wakes the waiters on
// every file it held locks on, and wakes its own waiters so that they
// return ErrSessionExpired.
func (m *Manager) dropSessionLocked(s *session, why string) {
	delete(m.sessions, s.id)
	for ino := range s.inodes {
		f := m.files[ino]
		if f == nil {
			continue
		}
		f.table.ReleaseSession(s.id)
		for w := range f.waiters {
			w.wake()
		}
		m.gcLocked(ino, f)
	}
	m.log.Info("lock session ended", "session", s.id, "reason", why, "locks", s.count, "waiters", len(s.waiters))
	if m.onEnd != nil {
		m.onEnd(s.id, why == whyClosed)
	}
	s.inodes, s.count = nil, 0
	for w := range s.waiters {
		w.wake()
	}
}
