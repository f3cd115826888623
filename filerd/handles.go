package filerd

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/kelpfs/kelp/filerd/meta"
)

// File handles are leased like locks. A mount takes a handle on every
// file it has open (Open, OpenContent, Create with open), so that an
// unlink keeps an open file's content until the last Release; the
// namespace counts them in memory. A handle taken under a lock session
// lasts as long as the session: a mount killed or cut off past its lease
// leaves no handle behind, and the open-unlinked files only it held are
// freed: at once if it closed its session, after HandleGrace if its lease
// ran out, so that a mount cut off for a while takes them back (Reopen)
// when it comes back with a fresh session (a Release naming the lapsed
// session still drops its handle at once). After a restart with sessions live (lockLiveKey) the filer keeps
// the previous run's open-unlinked files for LockGrace
// (meta.Config.KeepOrphans; HandleGrace if longer) while the mounts, which notice at their next
// renewal that their session is gone, open a fresh one and take their
// handles again (Reopen); what nobody took back is freed then. (The lock
// grace period proper runs only if locks may have been held,
// lockHeldKey.) Handles taken with no session
// (clients that keep none) last until released or the filer stops.

// handleTable records which session holds which handles. Its mutex comes
// after the lock Manager's: end runs under the Manager's mutex, and
// nothing here calls the Manager.
type handleTable struct {
	grace time.Duration // how long a lapsed session's handles are kept
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]map[meta.Inode]int
	ended    []map[meta.Inode]int // handles of ended sessions, due for release
	lapsed   []lapsedHandles      // handles of sessions whose lease ran out, oldest first
	nLapsed  int                  // the handles in lapsed
	wake     chan struct{}        // capacity 1: ended has work
}

// lapsedHandles are the handles of a session whose lease ran out, kept
// until due.
type lapsedHandles struct {
	session string
	handles map[meta.Inode]int
	due     time.Time
}

func newHandleTable(grace time.Duration, now func() time.Time) *handleTable {
	return &handleTable{grace: grace, now: now, sessions: make(map[string]map[meta.Inode]int), wake: make(chan struct{}, 1)}
}

// add records one handle on ino held for session.
func (h *handleTable) add(session string, ino meta.Inode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.sessions[session]
	if m == nil {
		m = make(map[meta.Inode]int)
		h.sessions[session] = m
	}
	m[ino]++
}

// remove forgets one handle of session on ino, live or kept after its
// lease ran out, and reports whether the session held one.
func (h *handleTable) remove(session string, ino meta.Inode) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.sessions[session]; m[ino] > 0 {
		if m[ino]--; m[ino] == 0 {
			delete(m, ino)
			if len(m) == 0 {
				delete(h.sessions, session)
			}
		}
		return true
	}
	for i := len(h.lapsed) - 1; i >= 0; i-- {
		l := &h.lapsed[i]
		if l.session != session || l.handles[ino] == 0 {
			continue
		}
		if l.handles[ino]--; l.handles[ino] == 0 {
			delete(l.handles, ino)
		}
		h.nLapsed--
		return true
	}
	return false
}

// end hands the handles of session, which just ended, to the release
// loop: at once if it was closed, after the grace if its lease ran out.
// It is the lock Manager's OnSessionEnd: it must not block.
func (h *handleTable) end(session string, closed bool) {
	h.mu.Lock()
	m := h.sessions[session]
	delete(h.sessions, session)
	now := false
	switch {
	case len(m) == 0:
	case closed || h.grace <= 0:
		h.ended = append(h.ended, m)
		now = true
	default:
		h.lapsed = append(h.lapsed, lapsedHandles{session: session, handles: m, due: h.now().Add(h.grace)})
		for _, c := range m {
			h.nLapsed += c
		}
	}
	h.mu.Unlock()
	if now {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// takeEnded returns the handles due for release (those of closed
// sessions, and of lapsed ones whose grace is over) and forgets them.
func (h *handleTable) takeEnded() []map[meta.Inode]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.ended
	h.ended = nil
	now := h.now()
	i := 0
	for ; i < len(h.lapsed) && !now.Before(h.lapsed[i].due); i++ {
		e = append(e, h.lapsed[i].handles)
		for _, c := range h.lapsed[i].handles {
			h.nLapsed -= c
		}
	}
	h.lapsed = h.lapsed[i:]
	return e
}

// lapsedCount returns the handles kept for lapsed sessions.
func (h *handleTable) lapsedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nLapsed
}

// orphanGrace is how long the open-unlinked files of the previous run
// are kept after a start with sessions live: the lock grace period, in
// which live mounts take their handles back, or HandleGrace, which the
// handles of mounts cut off meanwhile would have had, if longer.
func (s *Server) orphanGrace() time.Duration {
	if s.cfg.LockGrace == 0 {
		return 0 // locks and files of the previous run are given up
	}
	return max(s.cfg.LockGrace, s.cfg.HandleGrace)
}

// count returns the handles held for session.
func (h *handleTable) count(session string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.sessions[session] {
		n += c
	}
	return n
}

// checkLease fails (as a status error) if lease names a session that is
// not live, before an open takes anything.
func (s *Server) checkLease(lease string) error {
	if lease == "" {
		return nil
	}
	if err := s.locks.Check(lease); err != nil {
		return lockError(err)
	}
	return nil
}

// keepHandle records the handle on ino the namespace just took for
// session, and checks that the session is live. If it is not, the handle
// goes at once (also if the session ended meanwhile and took it along)
// and the error is locks.ErrSessionExpired: the mount opens a fresh
// session and asks again. The record comes before the check, so a
// session that ends in between always takes the handle with it.
func (s *Server) keepHandle(ctx context.Context, session string, ino meta.Inode) error {
	if session == "" {
		return nil
	}
	s.handles.add(session, ino)
	err := s.locks.Check(session)
	if err == nil {
		return nil
	}
	if s.handles.remove(session, ino) {
		if rerr := s.ns.Release(context.WithoutCancel(ctx), ino); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// dropHandle releases a handle on ino taken under session. A session that
// no longer holds one (its handles went when it ended) releases nothing.
func (s *Server) dropHandle(ctx context.Context, session string, ino meta.Inode) error {
	if session != "" && !s.handles.remove(session, ino) {
		return nil
	}
	return s.ns.Release(ctx, ino)
}

// releaseEnded releases the handles of sessions that ended, freeing the
// open-unlinked files they alone held. A failure to free one is logged;
// the file is freed at the next start at the latest.
func (s *Server) releaseEnded(ctx context.Context) {
	ended := s.handles.takeEnded()
	if len(ended) == 0 {
		return
	}
	cctx, ch := meta.WithChanges(ctx)
	n := 0
	for _, m := range ended {
		for ino, c := range m {
			for ; c > 0; c-- {
				n++
				if err := s.ns.Release(cctx, ino); err != nil && ctx.Err() == nil {
					s.log.Warn("releasing a handle of an ended session", "ino", uint64(ino), "err", err)
				}
			}
		}
	}
	s.log.Info("released the file handles of ended sessions", "sessions", len(ended), "handles", n, "freed", ch.Freed())
	if ch.Freed() > 0 {
		s.wakeGC()
	}
}

// freeOrphansAfterGrace frees the open-unlinked files the previous run
// left and no mount took back, once LockGrace has passed since Serve. It reports
// whether that is done (or was never needed).
func (s *Server) freeOrphansAfterGrace(ctx context.Context) bool {
	if !s.orphansKept || time.Now().Before(s.orphansUntil) {
		return !s.orphansKept
	}
	freed, err := s.ns.FreeOrphans(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("freeing the open-unlinked files of the previous run; will retry", "err", err)
		}
		return false
	}
	s.orphansKept = false
	if freed > 0 {
		s.log.Info("grace period over: freed open-unlinked files of the previous run no mount took back", "count", freed)
		s.wakeGC()
	}
	return true
}
