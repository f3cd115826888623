package locks

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The model: a byte map over offsets 0..modelBytes-1, plus one cell that
// stands for every byte from modelBytes to MaxOffset. Random ranges start
// below modelBytes and end below it or at MaxOffset, so every record
// boundary the Table can produce is below modelBytes+1 and the tail cell is
// exact for all the bytes it stands for.
const (
	modelBytes = 64
	modelCells = modelBytes + 1
	seedEnv    = "KELP_LOCKS_SEED" // replay one seed: KELP_LOCKS_SEED=123 go test -run Model ./locks
)

var modelOwners = []Owner{{"a", 1}, {"a", 2}, {"b", 1}, {"b", 2}}

// model holds, per owner, the Type it holds on each cell (Unlock: none),
// and its flock lock.
type model struct {
	posix [][modelCells]Type // by owner index
	flock []Type
}

func newModel() *model {
	return &model{posix: make([][modelCells]Type, len(modelOwners)), flock: make([]Type, len(modelOwners))}
}

func cellRange(r Range) (lo, hi int) {
	hi = modelBytes
	if r.End < modelBytes {
		hi = int(r.End)
	}
	return int(r.Start), hi
}

func ownerIndex(o Owner) int {
	for i, x := range modelOwners {
		if x == o {
			return i
		}
	}
	panic("unknown owner " + o.String())
}

func typesConflict(a, b Type) bool {
	return a != Unlock && b != Unlock && (a == Exclusive || b == Exclusive)
}

// conflict reports whether req conflicts with any other owner's holding.
func (m *model) conflict(req Lock) bool {
	for i, o := range modelOwners {
		if o != req.Owner && m.conflictWith(req, i) {
			return true
		}
	}
	return false
}

// conflictWith reports whether req conflicts with what owner i holds,
// whoever asks.
func (m *model) conflictWith(req Lock, i int) bool {
	if req.Kind == Flock {
		return typesConflict(req.Type, m.flock[i])
	}
	lo, hi := cellRange(req.Range)
	for c := lo; c <= hi; c++ {
		if typesConflict(req.Type, m.posix[i][c]) {
			return true
		}
	}
	return false
}

// conflictOwners lists the owners holding something that conflicts with req.
func (m *model) conflictOwners(req Lock) []Owner {
	var out []Owner
	for _, o := range modelOwners {
		if o == req.Owner {
			continue
		}
		if m.conflictWith(req, ownerIndex(o)) {
			out = append(out, o)
		}
	}
	return out
}

func sameOwners(a, b []Owner) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, func(x, y Owner) int { return cmpLock(Lock{Owner: x}, Lock{Owner: y}) })
	slices.SortFunc(b, func(x, y Owner) int { return cmpLock(Lock{Owner: x}, Lock{Owner: y}) })
	return slices.Equal(a, b)
}

func (m *model) apply(req Lock) {
	me := ownerIndex(req.Owner)
	if req.Kind == Flock {
		m.flock[me] = req.Type
		return
	}
	lo, hi := cellRange(req.Range)
	for c := lo; c <= hi; c++ {
		m.posix[me][c] = req.Type
	}
}

// recordsOf counts the canonical records o holds of kind.
func (m *model) recordsOf(o Owner, kind Kind) int {
	n := 0
	for _, l := range m.want() {
		if l.Owner == o && l.Kind == kind {
			n++
		}
	}
	return n
}

// frees reports whether req would release bytes its owner holds or change
// their type.
func (m *model) frees(req Lock) bool {
	me := ownerIndex(req.Owner)
	if req.Kind == Flock {
		return m.flock[me] != Unlock && m.flock[me] != req.Type
	}
	lo, hi := cellRange(req.Range)
	for c := lo; c <= hi; c++ {
		if old := m.posix[me][c]; old != Unlock && old != req.Type {
			return true
		}
	}
	return false
}

func (m *model) releaseOwner(o Owner) {
	m.posix[ownerIndex(o)] = [modelCells]Type{}
}

func (m *model) releaseSession(session string) {
	for i, o := range modelOwners {
		if o.Session == session {
			m.posix[i] = [modelCells]Type{}
			m.flock[i] = Unlock
		}
	}
}

// want returns the canonical record list the Table must hold: per owner,
// maximal runs of one type, sorted like the Table sorts them. Pids are
// fixed per owner in this test, so they are predictable.
func (m *model) want() []Lock {
	var out []Lock
	for i, o := range modelOwners {
		for c := 0; c < modelCells; {
			t := m.posix[i][c]
			if t == Unlock {
				c++
				continue
			}
			start := c
			for c < modelCells && m.posix[i][c] == t {
				c++
			}
			end := int64(c - 1)
			if c-1 == modelBytes {
				end = MaxOffset
			}
			out = append(out, Lock{Kind: Fcntl, Type: t, Range: Range{int64(start), end}, Owner: o, Pid: modelPid(o)})
		}
	}
	slices.SortFunc(out, cmpLock)
	for i, o := range modelOwners {
		if m.flock[i] != Unlock {
			out = append(out, Lock{Kind: Flock, Type: m.flock[i], Range: WholeFile(), Owner: o, Pid: modelPid(o)})
		}
	}
	return out
}

func modelPid(o Owner) uint32 { return uint32(100*len(o.Session) + int(o.ID)) }

func randRange(rng *rand.Rand) Range {
	start := rng.Int64N(modelBytes)
	if rng.IntN(4) == 0 {
		return Range{start, MaxOffset}
	}
	// Mostly short ranges, so that records split and merge often.
	n := modelBytes - start
	if rng.IntN(2) == 0 {
		n = min(n, 8)
	}
	return Range{start, start + rng.Int64N(n)}
}

func randLock(rng *rand.Rand) Lock {
	o := modelOwners[rng.IntN(len(modelOwners))]
	l := Lock{Kind: Fcntl, Owner: o, Pid: modelPid(o), Range: randRange(rng)}
	if rng.IntN(8) == 0 {
		l.Kind, l.Range = Flock, WholeFile()
	}
	switch x := rng.IntN(10); {
	case x < 4:
		l.Type = Shared
	case x < 7:
		l.Type = Exclusive
	default:
		l.Type = Unlock
	}
	return l
}

// seeds returns the seeds to run: the one in $KELP_LOCKS_SEED, or n fresh
// ones derived from the time (logged, so a failure can be replayed).
func seeds(t *testing.T, n int) []uint64 {
	if s := os.Getenv(seedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, s, err)
		}
		return []uint64{seed}
	}
	base := uint64(time.Now().UnixNano())
	t.Logf("base seed %d (replay one failing seed with %s=<seed>)", base, seedEnv)
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)
	}
	return out
}

// TestTableAgainstModel applies random operation sequences to a Table and
// to the byte-map model and compares them after every step: the exact
// canonical record list (so every byte's holders and types), the grant or
// refusal of each request, and GetLk answers.
func TestTableAgainstModel(t *testing.T) {
	const steps = 600
	total := 0
	for _, seed := range seeds(t, 20) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var tab Table
		m := newModel()
		var history []string
		fail := func(step int, format string, args ...any) {
			t.Helper()
			start := max(0, len(history)-12)
			t.Fatalf("seed %d (replay: %s=%d) step %d: %s\nlast ops:\n  %s", seed, seedEnv, seed, step,
				fmt.Sprintf(format, args...), strings.Join(history[start:], "\n  "))
		}
		for step := range steps {
			total++
			switch x := rng.IntN(100); {
			case x < 3:
				o := modelOwners[rng.IntN(len(modelOwners))]
				history = append(history, "release owner "+o.String())
				tab.ReleaseOwner(Fcntl, o)
				m.releaseOwner(o)
			case x < 5:
				sess := modelOwners[rng.IntN(len(modelOwners))].Session
				history = append(history, "release session "+sess)
				tab.ReleaseSession(sess)
				m.releaseSession(sess)
			default:
				req := randLock(rng)
				wantConflict := m.conflict(req)
				if !wantConflict && step%2 == 1 {
					// Through plan and commit, checking what the Manager
					// relies on: the record count delta and whether held
					// bytes were released or changed type.
					before := m.recordsOf(req.Owner, req.Kind)
					freed := m.frees(req)
					p := tab.plan(req)
					tab.commit(p)
					m.apply(req)
					history = append(history, fmt.Sprintf("plan+commit %s", req))
					if d := m.recordsOf(req.Owner, req.Kind) - before; p.delta != d {
						fail(step, "plan(%s).delta = %d, want %d", req, p.delta, d)
					}
					if p.freed != freed {
						fail(step, "plan(%s).freed = %v, want %v", req, p.freed, freed)
					}
					break
				}
				c, err := tab.Apply(req)
				history = append(history, fmt.Sprintf("apply %s -> %v", req, err))
				switch {
				case wantConflict && !errors.Is(err, ErrWouldBlock):
					fail(step, "Apply(%s) = %v, want ErrWouldBlock", req, err)
				case !wantConflict && err != nil:
					fail(step, "Apply(%s) = %v, want granted", req, err)
				case wantConflict && !conflicts(req, c):
					fail(step, "Apply(%s) reported %s, which does not conflict", req, c)
				}
				if err == nil {
					m.apply(req)
				}
			}

			got, want := tab.Locks(), m.want()
			if !slices.Equal(got, want) {
				fail(step, "table differs from model\n got %v\nwant %v", got, want)
			}
			if tab.Len() != len(got) {
				fail(step, "Len %d, Locks has %d", tab.Len(), len(got))
			}
			for range 4 {
				q := randLock(rng)
				if q.Type == Unlock {
					q.Type = Shared
				}
				c, ok := tab.Test(q)
				owners := tab.conflictOwners(q, nil)
				if want := m.conflictOwners(q); !sameOwners(owners, want) {
					fail(step, "conflictOwners(%s) = %v, want %v", q, owners, want)
				}
				if ok != m.conflict(q) {
					fail(step, "Test(%s) = %v, model says %v", q, ok, !ok)
				}
				if !ok {
					continue
				}
				if !conflicts(q, c) || !slices.Contains(got, c) {
					fail(step, "Test(%s) reported %s: not a held conflicting lock", q, c)
				}
				if q.Kind == Fcntl {
					// The first conflict is the one with the lowest start.
					for _, h := range got {
						if conflicts(q, h) && h.Range.Start < c.Range.Start {
							fail(step, "Test(%s) reported %s, but %s starts earlier", q, c, h)
						}
					}
				}
			}
		}
	}
	t.Logf("%d operations checked", total)
}
