package locks

import (
	"fmt"
	"time"
)

// StartGrace puts the Manager in its grace period until the given time: a
// filer that restarts with an empty table calls it before serving, so that
// mounts can re-assert the locks they held (Reassert) before anyone else
// is granted a lock. Until then SetLk and SetLkw of a lock return ErrGrace
// (unlocks are served), and so does GetLk, because the table is not yet
// complete. The mount retries ErrGrace after a short back-off. The grace
// period should outlast the session ttl, so that every live mount renews
// and re-asserts within it.
func (m *Manager) StartGrace(until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.graceUntil = until
}

// EndGrace ends the grace period now, for instance once every session
// known before the restart has re-asserted.
func (m *Manager) EndGrace() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.graceUntil = time.Time{}
}

// InGrace reports whether the grace period is on.
func (m *Manager) InGrace() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inGraceLocked()
}

func (m *Manager) inGraceLocked() bool {
	return !m.graceUntil.IsZero() && m.now().Before(m.graceUntil)
}

// Reassert grants session the locks it held before the filer restarted,
// as its Snapshot (or the mount's own record) lists them. It works only in
// the grace period, and returns ErrNoGrace outside it: a lock re-asserted
// later may cover data someone else has locked and changed meanwhile, so
// the mount must report it lost. A lock that conflicts with one another
// session has already re-asserted, that is malformed or of another
// session, or that would pass the session's limit is not granted and is
// returned in rejected; the others are granted. The session must be open
// (OpenSession) first.
func (m *Manager) Reassert(session string, held []Held) (rejected []Held, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.liveSessionLocked(session)
	if err != nil {
		return nil, err
	}
	if !m.inGraceLocked() {
		return nil, fmt.Errorf("%w: session %q", ErrNoGrace, session)
	}
	for _, h := range held {
		l, err := h.Lock.normalize()
		if err != nil || l.Type == Unlock || l.Owner.Session != session {
			rejected = append(rejected, h)
			continue
		}
		if err := m.tryLocked(s, h.Inode, l); err != nil {
			rejected = append(rejected, h)
		}
	}
	return rejected, nil
}
