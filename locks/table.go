package locks

import (
	"cmp"
	"slices"
)

// Table is the lock state of one file: its fcntl record locks and its flock
// locks, kept apart. It is a pure data structure: it never blocks, knows
// nothing of sessions' liveness, and is not safe for concurrent use (the
// Manager guards its tables with its own mutex). The zero Table is empty
// and ready to use.
//
// Fcntl records are kept in canonical form: per owner the records are
// disjoint and no two records of the same type touch (they are merged), and
// the whole list is sorted by start, then owner. Every operation is linear
// in the number of records on the file.
type Table struct {
	posix []Lock // fcntl records, canonical, sorted by cmpLock
	flock []Lock // at most one per owner, sorted by owner
	spare []Lock // the other buffer for posix, reused by plan
}

// cmpLock orders records by start, then owner.
func cmpLock(a, b Lock) int {
	if c := cmp.Compare(a.Range.Start, b.Range.Start); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Owner.Session, b.Owner.Session); c != 0 {
		return c
	}
	return cmp.Compare(a.Owner.ID, b.Owner.ID)
}

// Test returns the first lock that conflicts with req (for fcntl locks, the
// conflicting record with the lowest start), or false when req could be
// granted now. An Unlock request never conflicts. req is expected to be
// valid; an invalid range simply overlaps nothing it should not.
func (t *Table) Test(req Lock) (Lock, bool) {
	if req.Type == Unlock {
		return Lock{}, false
	}
	if req.Kind == Flock {
		req.Range = WholeFile()
		for _, h := range t.flock {
			if conflicts(req, h) {
				return h, true
			}
		}
		return Lock{}, false
	}
	for _, h := range t.posix {
		if h.Range.Start > req.Range.End {
			break
		}
		if conflicts(req, h) {
			return h, true
		}
	}
	return Lock{}, false
}

// conflictOwners appends to dst the distinct owners of every lock that
// conflicts with req.
func (t *Table) conflictOwners(req Lock, dst []Owner) []Owner {
	list := t.posix
	if req.Kind == Flock {
		list = t.flock
	}
	for _, h := range list {
		if req.Kind == Fcntl && h.Range.Start > req.Range.End {
			break
		}
		if conflicts(req, h) && !slices.Contains(dst, h.Owner) {
			dst = append(dst, h.Owner)
		}
	}
	return dst
}

// Apply sets req for its owner if nothing conflicts: the owner's locks over
// req's range are replaced by req (split where req covers part of a
// record, merged with touching records of the same type, upgraded or
// downgraded in place), or removed when req.Type is Unlock. It returns
// ErrInvalid for a malformed request, and the first conflicting lock with
// ErrWouldBlock. Unlocking what is not held is a no-op.
func (t *Table) Apply(req Lock) (Lock, error) {
	req, err := req.normalize()
	if err != nil {
		return Lock{}, err
	}
	if c, ok := t.Test(req); ok {
		return c, ErrWouldBlock
	}
	t.commit(t.plan(req))
	return Lock{}, nil
}

// plan is a change computed but not yet made, so that the Manager can
// check its limits first. A plan must be committed or dropped before the
// next call to plan on the same Table.
type plan struct {
	req Lock
	out []Lock // fcntl: the new record list (in t.spare's buffer)
	idx int    // flock: index of the owner's lock, or -1
	// delta is the change in the number of records req.Owner holds.
	delta int
	// freed is true when the change removed or changed the type of a
	// record, so that waiters may now be granted.
	freed bool
}

// plan computes the effect of the valid, non-conflicting request req.
func (t *Table) plan(req Lock) plan {
	p := plan{req: req, idx: -1}
	if req.Kind == Flock {
		for i, h := range t.flock {
			if h.Owner == req.Owner {
				p.idx = i
				break
			}
		}
		switch {
		case p.idx < 0 && req.Type != Unlock:
			p.delta = 1
		case p.idx >= 0 && req.Type == Unlock:
			p.delta, p.freed = -1, true
		case p.idx >= 0:
			p.freed = t.flock[p.idx].Type != req.Type
		}
		return p
	}

	r := req.Range
	merged := req
	out := t.spare[:0]
	for _, h := range t.posix {
		if h.Owner != req.Owner {
			out = append(out, h)
			continue
		}
		p.delta--
		switch {
		case h.Range.Overlaps(r):
			if h.Type == req.Type { // same type: absorbed into the new record
				merged.Range.Start = min(merged.Range.Start, h.Range.Start)
				merged.Range.End = max(merged.Range.End, h.Range.End)
				continue
			}
			p.freed = true
			if h.Range.Start < r.Start {
				left := h
				left.Range.End = r.Start - 1
				out = append(out, left)
				p.delta++
			}
			if h.Range.End > r.End { // so r.End < MaxOffset
				right := h
				right.Range.Start = r.End + 1
				out = append(out, right)
				p.delta++
			}
		case h.Type == req.Type && h.Range.adjacent(r):
			merged.Range.Start = min(merged.Range.Start, h.Range.Start)
			merged.Range.End = max(merged.Range.End, h.Range.End)
		default:
			out = append(out, h)
			p.delta++
		}
	}
	if req.Type != Unlock {
		out = append(out, merged)
		p.delta++
	}
	slices.SortFunc(out, cmpLock)
	p.out = out
	return p
}

// commit makes the change p describes.
func (t *Table) commit(p plan) {
	if p.req.Kind == Flock {
		switch {
		case p.idx < 0 && p.req.Type != Unlock:
			t.flock = append(t.flock, p.req)
			slices.SortFunc(t.flock, cmpLock)
		case p.idx >= 0 && p.req.Type == Unlock:
			t.flock = slices.Delete(t.flock, p.idx, p.idx+1)
		case p.idx >= 0:
			t.flock[p.idx] = p.req
		}
		return
	}
	old := t.posix
	t.posix = p.out
	clear(old) // drop references to session strings
	t.spare = old[:0]
}

// ReleaseOwner removes every lock of kind held by o and returns how many
// records it removed.
func (t *Table) ReleaseOwner(kind Kind, o Owner) int {
	return t.release(func(l Lock) bool { return l.Kind == kind && l.Owner == o })
}

// ReleaseSession removes every lock, of both kinds, held by an owner of
// session and returns how many records it removed.
func (t *Table) ReleaseSession(session string) int {
	return t.release(func(l Lock) bool { return l.Owner.Session == session })
}

func (t *Table) release(drop func(Lock) bool) int {
	n := len(t.posix) + len(t.flock)
	t.posix = slices.DeleteFunc(t.posix, drop)
	t.flock = slices.DeleteFunc(t.flock, drop)
	return n - len(t.posix) - len(t.flock)
}

// Locks returns a copy of every lock on the file: the fcntl records in
// order of start, then owner, then the flock locks in order of owner.
func (t *Table) Locks() []Lock {
	out := make([]Lock, 0, len(t.posix)+len(t.flock))
	out = append(out, t.posix...)
	return append(out, t.flock...)
}

// appendSession appends the locks held by owners of session to dst.
func (t *Table) appendSession(dst []Lock, session string) []Lock {
	for _, l := range t.posix {
		if l.Owner.Session == session {
			dst = append(dst, l)
		}
	}
	for _, l := range t.flock {
		if l.Owner.Session == session {
			dst = append(dst, l)
		}
	}
	return dst
}

// Len returns the number of lock records on the file.
func (t *Table) Len() int { return len(t.posix) + len(t.flock) }
