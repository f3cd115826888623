package locks

import (
	"fmt"
	"math"
	"strconv"
)

// MaxOffset is the largest byte offset. A Range ending at MaxOffset runs to
// the end of the file however far the file grows; it is Linux's OFFSET_MAX,
// the end the kernel hands FUSE for a lock with l_len == 0.
const MaxOffset int64 = math.MaxInt64

// Kind selects one of the two lock namespaces. A lock of one kind never
// conflicts with a lock of the other, as on Linux.
type Kind uint8

const (
	// Fcntl locks are POSIX record locks (fcntl F_SETLK, F_SETLKW, F_GETLK,
	// lockf): byte ranges owned by a process, split and merged per owner.
	Fcntl Kind = iota
	// Flock locks are BSD whole-file locks (flock(2)): one per owner, owned
	// by an open file description.
	Flock
)

func (k Kind) String() string {
	switch k {
	case Fcntl:
		return "fcntl"
	case Flock:
		return "flock"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Type is what a request asks for: a shared (read) lock, an exclusive
// (write) lock, or the release of whatever the owner holds over the range.
type Type uint8

const (
	// Unlock releases (F_UNLCK, LOCK_UN).
	Unlock Type = iota
	// Shared is a read lock (F_RDLCK, LOCK_SH): any number of owners may
	// hold shared locks over the same bytes.
	Shared
	// Exclusive is a write lock (F_WRLCK, LOCK_EX): nobody else may hold
	// any lock over the same bytes.
	Exclusive
)

func (t Type) String() string {
	switch t {
	case Unlock:
		return "unlock"
	case Shared:
		return "shared"
	case Exclusive:
		return "exclusive"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Range is the inclusive byte range [Start, End]. End == MaxOffset means
// "to end of file". A valid Range has 0 <= Start <= End.
type Range struct {
	Start, End int64
}

// WholeFile returns [0, MaxOffset], the range of every flock lock.
func WholeFile() Range { return Range{0, MaxOffset} }

// NewRange returns [start, end] or ErrInvalid when start is negative or end
// is before start.
func NewRange(start, end int64) (Range, error) {
	r := Range{start, end}
	return r, r.Validate()
}

// RangeFromLen converts fcntl's (l_start, l_len), with l_start already
// resolved against l_whence, into a Range: length 0 runs to end of file, a
// positive length covers [start, start+length-1], and a negative length
// covers [start+length, start-1] as POSIX.1-2008 specifies. A negative
// resulting start, or an end past MaxOffset, is ErrInvalid.
func RangeFromLen(start, length int64) (Range, error) {
	if start < 0 {
		return Range{}, fmt.Errorf("%w: negative start %d", ErrInvalid, start)
	}
	switch {
	case length == 0:
		return Range{start, MaxOffset}, nil
	case length > 0:
		if length-1 > MaxOffset-start {
			return Range{}, fmt.Errorf("%w: start %d + length %d overflows", ErrInvalid, start, length)
		}
		return Range{start, start + length - 1}, nil
	default:
		// start >= 0 and length < 0, so start+length cannot overflow.
		if start+length < 0 {
			return Range{}, fmt.Errorf("%w: start %d + length %d is before offset 0", ErrInvalid, start, length)
		}
		return Range{start + length, start - 1}, nil
	}
}

// Validate returns ErrInvalid (wrapped) unless 0 <= Start <= End.
func (r Range) Validate() error {
	if r.Start < 0 {
		return fmt.Errorf("%w: negative start %d", ErrInvalid, r.Start)
	}
	if r.End < r.Start {
		return fmt.Errorf("%w: end %d before start %d", ErrInvalid, r.End, r.Start)
	}
	return nil
}

// Overlaps reports whether r and o share at least one byte.
func (r Range) Overlaps(o Range) bool { return r.Start <= o.End && o.Start <= r.End }

// Contains reports whether off is in r.
func (r Range) Contains(off int64) bool { return r.Start <= off && off <= r.End }

// adjacent reports whether r ends right before o starts or o right before r.
func (r Range) adjacent(o Range) bool {
	return (r.End != MaxOffset && r.End+1 == o.Start) || (o.End != MaxOffset && o.End+1 == r.Start)
}

func (r Range) String() string {
	if r.End == MaxOffset {
		return fmt.Sprintf("[%d, EOF]", r.Start)
	}
	return fmt.Sprintf("[%d, %d]", r.Start, r.End)
}

// Owner identifies who holds a lock: Session is the mount session (one per
// mount and filer), ID the kernel's lock owner within it (FUSE's
// lock_owner: the process's files_struct for fcntl locks, the open file
// description for flock locks). Two owners with the same ID in different
// sessions are different owners.
type Owner struct {
	Session string
	ID      uint64
}

func (o Owner) String() string { return fmt.Sprintf("%s/%#x", o.Session, o.ID) }

// Lock is one lock, held or requested. For Flock locks Range is always
// WholeFile (requests are normalized). Pid is the requesting process, kept
// only so that F_GETLK can report it; it plays no part in ownership.
type Lock struct {
	Kind  Kind
	Type  Type
	Range Range
	Owner Owner
	Pid   uint32
}

func (l Lock) String() string {
	return fmt.Sprintf("%s %s %s owner %s pid %d", l.Kind, l.Type, l.Range, l.Owner, l.Pid)
}

// normalize validates l and returns it with a flock range set to WholeFile.
func (l Lock) normalize() (Lock, error) {
	switch l.Type {
	case Unlock, Shared, Exclusive:
	default:
		return l, fmt.Errorf("%w: lock type %d", ErrInvalid, l.Type)
	}
	switch l.Kind {
	case Fcntl:
		if err := l.Range.Validate(); err != nil {
			return l, err
		}
	case Flock:
		l.Range = WholeFile()
	default:
		return l, fmt.Errorf("%w: lock kind %d", ErrInvalid, l.Kind)
	}
	if l.Owner.Session == "" {
		return l, fmt.Errorf("%w: empty session id", ErrInvalid)
	}
	return l, nil
}

// conflicts reports whether held blocks req: same namespace, different
// owners, overlapping ranges, and at least one of them exclusive.
func conflicts(req, held Lock) bool {
	return req.Kind == held.Kind && req.Owner != held.Owner &&
		(req.Type == Exclusive || held.Type == Exclusive) &&
		req.Type != Unlock && held.Type != Unlock &&
		req.Range.Overlaps(held.Range)
}
