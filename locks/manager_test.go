package locks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests, so a lost wake-up fails the
// test instead of hanging it.
const waitTimeout = 5 * time.Second

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

type harness struct {
	t      *testing.T
	m      *Manager
	clock  *fakeClock
	parked chan Lock // a SetLkw is about to wait for this request
	early  []Lock    // parked requests read while waiting for another
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clock.Now
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, m: m, clock: clock, parked: make(chan Lock, 256)}
	m.parked = func(_ uint64, req Lock) {
		select {
		case h.parked <- req:
		default:
		}
	}
	return h
}

func (h *harness) open(ids ...string) {
	h.t.Helper()
	for _, id := range ids {
		if err := h.m.OpenSession(id, 10*time.Second); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) set(inode uint64, l Lock) {
	h.t.Helper()
	if err := h.m.SetLk(inode, l); err != nil {
		h.t.Fatalf("SetLk(%d, %s) = %v", inode, l, err)
	}
}

// wait starts SetLkw(ctx, inode, l) and returns its result channel.
func (h *harness) wait(ctx context.Context, inode uint64, l Lock) <-chan error {
	done := make(chan error, 1)
	go func() { done <- h.m.SetLkw(ctx, inode, l) }()
	return done
}

// waitParked waits until a SetLkw for l is about to block.
func (h *harness) waitParked(l Lock) {
	h.t.Helper()
	match := func(got Lock) bool { return got.Owner == l.Owner && got.Range == l.Range && got.Type == l.Type }
	if i := slices.IndexFunc(h.early, match); i >= 0 {
		h.early = slices.Delete(h.early, i, i+1)
		return
	}
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case got := <-h.parked:
			if match(got) {
				return
			}
			h.early = append(h.early, got)
		case <-timer.C:
			h.t.Fatalf("SetLkw(%s) never parked", l)
		}
	}
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitTimeout):
		t.Fatal("SetLkw did not return in time")
		return nil
	}
}

func stillWaiting(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("SetLkw returned %v while a conflicting lock is held", err)
	case <-time.After(20 * time.Millisecond):
	}
}

func (h *harness) wantStats(want Stats) {
	h.t.Helper()
	if got := h.m.Stats(); got != want {
		h.t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

func lk(typ Type, start, end int64, session string, owner uint64) Lock {
	return Lock{Kind: Fcntl, Type: typ, Range: Range{start, end}, Owner: Owner{session, owner}, Pid: uint32(1000 + owner)}
}

func flk(typ Type, session string, owner uint64) Lock {
	return Lock{Kind: Flock, Type: typ, Range: WholeFile(), Owner: Owner{session, owner}, Pid: uint32(1000 + owner)}
}

func TestSetLkwWokenOnUnlock(t *testing.T) {
	for _, kind := range []Kind{Fcntl, Flock} {
		t.Run(kind.String(), func(t *testing.T) {
			h := newHarness(t, Config{})
			h.open("A", "B")
			mk := func(typ Type, s string) Lock {
				if kind == Flock {
					return flk(typ, s, 1)
				}
				return lk(typ, 0, MaxOffset, s, 1)
			}
			h.set(7, mk(Exclusive, "A"))
			if err := h.m.SetLk(7, mk(Shared, "B")); !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("SetLk under conflict = %v, want ErrWouldBlock", err)
			}
			done := h.wait(context.Background(), 7, mk(Exclusive, "B"))
			h.waitParked(mk(Exclusive, "B"))
			stillWaiting(t, done)
			h.set(7, mk(Unlock, "A"))
			if err := result(t, done); err != nil {
				t.Fatalf("SetLkw = %v", err)
			}
			snap, _ := h.m.Snapshot("B")
			if len(snap) != 1 || snap[0].Inode != 7 || snap[0].Lock != mk(Exclusive, "B") {
				t.Fatalf("B holds %v", snap)
			}
			h.wantStats(Stats{Sessions: 2, Files: 1, Locks: 1})
		})
	}
}

func TestSetLkwWokenOnDowngradeAndPartialUnlock(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(1, lk(Exclusive, 0, 99, "A", 1))
	shared := h.wait(context.Background(), 1, lk(Shared, 10, 19, "B", 1))
	excl := h.wait(context.Background(), 1, lk(Exclusive, 50, 59, "B", 2))
	h.waitParked(lk(Shared, 10, 19, "B", 1))
	h.waitParked(lk(Exclusive, 50, 59, "B", 2))
	h.set(1, lk(Shared, 0, 99, "A", 1)) // downgrade: the shared waiter goes
	if err := result(t, shared); err != nil {
		t.Fatal(err)
	}
	stillWaiting(t, excl)
	h.set(1, lk(Unlock, 40, 69, "A", 1)) // partial unlock: the exclusive waiter goes
	if err := result(t, excl); err != nil {
		t.Fatal(err)
	}
	h.wantStats(Stats{Sessions: 2, Files: 1, Locks: 4})
}

func TestSetLkwCancelLeavesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(3, lk(Exclusive, 0, 9, "A", 1))

	ctx, cancel := context.WithCancel(context.Background())
	done := h.wait(ctx, 3, lk(Exclusive, 5, 14, "B", 1))
	h.waitParked(lk(Exclusive, 5, 14, "B", 1))
	h.wantStats(Stats{Sessions: 2, Files: 1, Locks: 1, Waiters: 1})
	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled SetLkw = %v", err)
	}
	h.wantStats(Stats{Sessions: 2, Files: 1, Locks: 1})

	// A deadline works the same way.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := h.m.SetLkw(ctx, 3, lk(Shared, 0, 0, "B", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed out SetLkw = %v", err)
	}
	// An already canceled context does not wait.
	if err := h.m.SetLkw(ctx, 3, lk(Shared, 0, 0, "B", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetLkw with a dead context = %v", err)
	}
	h.set(3, lk(Unlock, 0, MaxOffset, "A", 1))
	h.wantStats(Stats{Sessions: 2})
	if snap, _ := h.m.Snapshot("B"); len(snap) != 0 {
		t.Fatalf("canceled waiter holds %v", snap)
	}
}

func TestDeadlockTwoParty(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(1, lk(Exclusive, 0, 9, "A", 1))
	h.set(1, lk(Exclusive, 10, 19, "B", 1))
	aWaits := h.wait(context.Background(), 1, lk(Exclusive, 10, 19, "A", 1))
	h.waitParked(lk(Exclusive, 10, 19, "A", 1))
	err := h.m.SetLkw(context.Background(), 1, lk(Exclusive, 0, 9, "B", 1))
	if !errors.Is(err, ErrDeadlock) {
		t.Fatalf("second party got %v, want ErrDeadlock", err)
	}
	stillWaiting(t, aWaits)
	h.set(1, lk(Unlock, 10, 19, "B", 1))
	if err := result(t, aWaits); err != nil {
		t.Fatal(err)
	}
	h.wantStats(Stats{Sessions: 2, Files: 1, Locks: 1}) // A's [0, 19], merged
}

func TestDeadlockAcrossInodesAndThreeParties(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B", "C")
	h.set(1, lk(Exclusive, 0, 0, "A", 1))
	h.set(2, lk(Exclusive, 0, 0, "B", 1))
	h.set(3, lk(Shared, 0, 0, "C", 1))
	h.set(3, lk(Shared, 0, 0, "B", 2)) // another owner in B's session: not B/1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := h.wait(ctx, 2, lk(Exclusive, 0, 0, "A", 1)) // A -> B
	h.waitParked(lk(Exclusive, 0, 0, "A", 1))
	b := h.wait(ctx, 3, lk(Exclusive, 0, 0, "B", 1)) // B -> C and B/2
	h.waitParked(lk(Exclusive, 0, 0, "B", 1))
	// C -> A closes A -> B -> C -> A.
	if err := h.m.SetLkw(ctx, 1, lk(Shared, 0, 0, "C", 1)); !errors.Is(err, ErrDeadlock) {
		t.Fatalf("third party got %v, want ErrDeadlock", err)
	}
	// B/2 -> A closes B/2 -> A -> B/1 -> B/2: B/1 waits for B/2's shared
	// lock. Owners of one session are distinct owners.
	if err := h.m.SetLkw(ctx, 1, lk(Shared, 0, 0, "B", 2)); !errors.Is(err, ErrDeadlock) {
		t.Fatalf("B/2 got %v, want ErrDeadlock", err)
	}
	// C/2 -> A closes no cycle: nobody waits for C/2.
	b2 := h.wait(ctx, 1, lk(Shared, 0, 0, "C", 2))
	h.waitParked(lk(Shared, 0, 0, "C", 2))
	cancel()
	for _, ch := range []<-chan error{a, b, b2} {
		if err := result(t, ch); !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter = %v", err)
		}
	}
	h.wantStats(Stats{Sessions: 3, Files: 3, Locks: 4})
}

// A waiter woken by an unlock no longer waits for its old blocker, so that
// blocker asking for the waiter's lock is not a deadlock.
func TestNoStaleDeadlockAfterWake(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(1, lk(Exclusive, 0, 0, "A", 1))
	h.set(1, lk(Exclusive, 1, 1, "B", 1))
	a := h.wait(context.Background(), 1, lk(Exclusive, 1, 1, "A", 1))
	h.waitParked(lk(Exclusive, 1, 1, "A", 1))
	// Unlock under the Manager's mutex and check before A can run again.
	h.m.mu.Lock()
	if err := h.m.tryLocked(h.m.sessions["B"], 1, lk(Unlock, 1, 1, "B", 1)); err != nil {
		t.Fatal(err)
	}
	if h.m.deadlockLocked(Owner{"B", 1}, []Owner{{"A", 1}}) {
		t.Error("B waiting for A is a deadlock through A's stale edge to B")
	}
	h.m.mu.Unlock()
	b := h.wait(context.Background(), 1, lk(Exclusive, 0, 0, "B", 1))
	if err := result(t, a); err != nil {
		t.Fatal(err)
	}
	stillWaiting(t, b)
	h.set(1, lk(Unlock, 0, MaxOffset, "A", 1))
	if err := result(t, b); err != nil {
		t.Fatal(err)
	}
}

// Two flock owners upgrading shared locks at once do not wait for each
// other: the conversion that waits drops its shared lock first.
func TestFlockUpgradeRace(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(1, flk(Shared, "A", 1))
	h.set(1, flk(Shared, "B", 1))
	a := h.wait(context.Background(), 1, flk(Exclusive, "A", 1))
	h.waitParked(flk(Exclusive, "A", 1))
	if err := h.m.SetLkw(context.Background(), 1, flk(Exclusive, "B", 1)); err != nil {
		t.Fatalf("B's upgrade = %v", err)
	}
	stillWaiting(t, a)
	h.set(1, flk(Unlock, "B", 1))
	if err := result(t, a); err != nil {
		t.Fatal(err)
	}
	// A non-blocking conversion that fails keeps the old lock.
	h.set(1, flk(Shared, "A", 1))
	h.set(1, flk(Shared, "B", 1))
	if err := h.m.SetLk(1, flk(Exclusive, "B", 1)); !errors.Is(err, ErrWouldBlock) {
		t.Fatal(err)
	}
	if snap, _ := h.m.Snapshot("B"); len(snap) != 1 || snap[0].Lock.Type != Shared {
		t.Fatalf("B after a failed LOCK_NB upgrade: %v", snap)
	}
}

func TestReleaseOwner(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(1, lk(Exclusive, 0, 9, "A", 1))
	h.set(1, lk(Exclusive, 20, 29, "A", 1))
	h.set(1, lk(Exclusive, 40, 49, "A", 2))
	h.set(1, flk(Exclusive, "A", 1))
	h.set(2, lk(Exclusive, 0, 9, "A", 1))
	b := h.wait(context.Background(), 1, lk(Exclusive, 0, 29, "B", 1))
	h.waitParked(lk(Exclusive, 0, 29, "B", 1))
	if err := h.m.ReleaseOwner("A", 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := result(t, b); err != nil {
		t.Fatal(err)
	}
	snap, err := h.m.Snapshot("A")
	if err != nil {
		t.Fatal(err)
	}
	want := []Held{
		{1, lk(Exclusive, 40, 49, "A", 2)},
		{1, flk(Exclusive, "A", 1)},
		{2, lk(Exclusive, 0, 9, "A", 1)},
	}
	if !slices.Equal(snap, want) {
		t.Fatalf("after ReleaseOwner A holds\n%v\nwant\n%v", snap, want)
	}
	if err := h.m.ReleaseOwner("A", 1, 99); err != nil {
		t.Fatalf("ReleaseOwner on an unlocked inode = %v", err)
	}
}

func TestGetLkReportsHolder(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(5, lk(Shared, 100, MaxOffset, "A", 42))
	c, ok, err := h.m.GetLk(5, lk(Exclusive, 0, 100, "B", 1))
	if err != nil || !ok || c != lk(Shared, 100, MaxOffset, "A", 42) || c.Pid != 1042 {
		t.Fatalf("GetLk = %s, %v, %v", c, ok, err)
	}
	for _, q := range []Lock{
		lk(Shared, 0, MaxOffset, "B", 1),     // shared with shared
		lk(Exclusive, 0, 99, "B", 1),         // disjoint
		lk(Exclusive, 0, MaxOffset, "A", 42), // its own lock
		flk(Exclusive, "B", 1),               // other namespace
	} {
		if c, ok, err := h.m.GetLk(5, q); err != nil || ok {
			t.Errorf("GetLk(%s) = %s, %v, %v; want none", q, c, ok, err)
		}
	}
	if _, _, err := h.m.GetLk(5, lk(Unlock, 0, 0, "B", 1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("GetLk of unlock = %v", err)
	}
}

func TestManagerInvalid(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A")
	ctx := context.Background()
	for _, l := range []Lock{
		lk(Shared, -1, 10, "A", 1),
		lk(Exclusive, 10, 9, "A", 1),
		lk(Unlock, -5, 0, "A", 1),
		{Kind: Fcntl, Type: 3, Owner: Owner{"A", 1}},
		{Kind: 2, Type: Shared, Owner: Owner{"A", 1}},
		lk(Shared, 0, 0, "", 1),
	} {
		_, _, getErr := h.m.GetLk(1, l)
		for _, err := range []error{h.m.SetLk(1, l), h.m.SetLkw(ctx, 1, l), getErr} {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("request %s = %v, want ErrInvalid", l, err)
			}
		}
	}
	if err := h.m.OpenSession("", time.Second); !errors.Is(err, ErrInvalid) {
		t.Errorf("OpenSession(\"\") = %v", err)
	}
	if err := h.m.OpenSession("x", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("OpenSession with ttl 0 = %v", err)
	}
	if _, err := NewManager(Config{MaxLocksPerSession: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewManager with a negative limit = %v", err)
	}
	if err := h.m.Run(ctx, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Run(0) = %v", err)
	}
	h.wantStats(Stats{Sessions: 1})
}

// TestManagerConcurrent hammers one Manager from many goroutines with
// blocking and non-blocking requests, cancellations and session churn, and
// checks mutual exclusion with counters held while each lock is held. A
// lost wake-up shows up as a waiter that times out with nothing held.
func TestManagerConcurrent(t *testing.T) {
	m, err := NewManager(Config{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		inodes  = 3
		workers = 12
		rounds  = 200
	)
	type counters struct{ readers, writers atomic.Int32 }
	var held [inodes][2]counters // by inode, kind
	for _, s := range []string{"s0", "s1", "s2"} {
		if err := m.OpenSession(s, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			owner := Owner{fmt.Sprintf("s%d", w%3), uint64(w)}
			for range rounds {
				ino := rng.IntN(inodes)
				kind := Kind(rng.IntN(2))
				typ := Shared + Type(rng.IntN(2))
				req := Lock{Kind: kind, Type: typ, Range: WholeFile(), Owner: owner}
				timeout := waitTimeout
				if rng.IntN(5) == 0 {
					timeout = time.Duration(rng.IntN(200)) * time.Microsecond
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				var err error
				if rng.IntN(3) == 0 {
					err = m.SetLk(uint64(ino), req)
				} else {
					err = m.SetLkw(ctx, uint64(ino), req)
				}
				cancel()
				switch {
				case err == nil:
				case errors.Is(err, ErrWouldBlock), timeout != waitTimeout && errors.Is(err, context.DeadlineExceeded):
					continue
				default:
					errs <- fmt.Errorf("%s on %d: %w", req, ino, err)
					return
				}
				c := &held[ino][kind]
				if typ == Exclusive {
					if c.writers.Add(1) != 1 || c.readers.Load() != 0 {
						errs <- fmt.Errorf("exclusive %s lock on %d shared", kind, ino)
						return
					}
					c.writers.Add(-1)
				} else {
					c.readers.Add(1)
					if c.writers.Load() != 0 {
						errs <- fmt.Errorf("shared %s lock on %d under a writer", kind, ino)
						return
					}
					c.readers.Add(-1)
				}
				req.Type = Unlock
				if err := m.SetLk(uint64(ino), req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := m.Stats(); st != (Stats{Sessions: 3}) {
		t.Fatalf("after the run: %+v", st)
	}
}
