package locks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestSessionExpiryReleasesAndWakes(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(1, lk(Exclusive, 0, MaxOffset, "A", 1))
	h.set(2, flk(Exclusive, "A", 1))
	b := h.wait(context.Background(), 1, lk(Shared, 0, 0, "B", 1))
	h.waitParked(lk(Shared, 0, 0, "B", 1))

	h.clock.Advance(6 * time.Second)
	if err := h.m.Renew("B"); err != nil {
		t.Fatal(err)
	}
	if got := h.m.Expire(h.clock.Now()); len(got) != 0 {
		t.Fatalf("expired %v before the lease ended", got)
	}
	now := h.clock.Advance(5 * time.Second) // A: 11s since its lease began; B: 5s since renew
	if got := h.m.Expire(now); !slices.Equal(got, []string{"A"}) {
		t.Fatalf("Expire = %v, want [A]", got)
	}
	if err := result(t, b); err != nil {
		t.Fatalf("waiter after the holder expired: %v", err)
	}
	for _, err := range []error{
		h.m.SetLk(1, lk(Shared, 0, 0, "A", 1)),
		h.m.Renew("A"),
	} {
		if !errors.Is(err, ErrSessionExpired) {
			t.Fatalf("expired session's request = %v, want ErrSessionExpired", err)
		}
	}
	h.wantStats(Stats{Sessions: 1, Files: 1, Locks: 1})
	// A fresh session under the old id starts empty.
	h.open("A")
	if snap, err := h.m.Snapshot("A"); err != nil || len(snap) != 0 {
		t.Fatalf("reopened session holds %v, %v", snap, err)
	}
}

// A lock whose session's lease has run out does not block anyone, even
// before the sweep: the conflicting request expires it on the spot.
func TestExpiredHolderReleasedOnConflict(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A")
	h.set(1, lk(Exclusive, 0, 9, "A", 1))
	h.clock.Advance(9 * time.Second)
	if err := h.m.OpenSession("B", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := h.m.SetLk(1, lk(Shared, 0, 0, "B", 1)); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("SetLk under a live lease = %v", err)
	}
	h.clock.Advance(time.Second)
	if c, ok, err := h.m.GetLk(1, lk(Exclusive, 0, 9, "B", 1)); err != nil || ok {
		t.Fatalf("GetLk after A's lease = %s, %v, %v", c, ok, err)
	}
	h.set(1, lk(Exclusive, 0, 9, "B", 1))
	h.wantStats(Stats{Sessions: 1, Files: 1, Locks: 1})
}

// The request that expires the only holder of a file's locks (which
// empties the file) must still record its own lock on that file.
func TestExpiredOnlyHolderReplaced(t *testing.T) {
	for _, blocking := range []bool{false, true} {
		h := newHarness(t, Config{})
		h.open("A")
		h.set(1, lk(Exclusive, 0, 9, "A", 1))
		h.clock.Advance(10 * time.Second)
		if err := h.m.OpenSession("B", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		req := lk(Exclusive, 0, 9, "B", 1)
		var err error
		if blocking {
			err = h.m.SetLkw(context.Background(), 1, req)
		} else {
			err = h.m.SetLk(1, req)
		}
		if err != nil {
			t.Fatalf("blocking %v: %v", blocking, err)
		}
		h.wantStats(Stats{Sessions: 1, Files: 1, Locks: 1})
		if snap, err := h.m.Snapshot("B"); err != nil || !slices.Equal(snap, []Held{{1, req}}) {
			t.Fatalf("blocking %v: B holds %v, %v", blocking, snap, err)
		}
		if err := h.m.SetLk(1, lk(Shared, 0, 0, "B", 2)); !errors.Is(err, ErrWouldBlock) {
			t.Fatalf("blocking %v: B/2 over B/1's lock = %v", blocking, err)
		}
	}
}

func TestCloseSessionWakesItsWaiters(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A", "B")
	h.set(1, lk(Exclusive, 0, 0, "A", 1))
	h.set(2, lk(Shared, 0, 0, "B", 1))
	b := h.wait(context.Background(), 1, lk(Exclusive, 0, 0, "B", 1))
	h.waitParked(lk(Exclusive, 0, 0, "B", 1))
	if err := h.m.CloseSession("B"); err != nil {
		t.Fatal(err)
	}
	if err := result(t, b); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("waiter of a closed session = %v", err)
	}
	h.wantStats(Stats{Sessions: 1, Files: 1, Locks: 1})
	if err := h.m.CloseSession("B"); err != nil {
		t.Fatalf("second close = %v", err)
	}
}

func TestSnapshotReassertUnderGrace(t *testing.T) {
	// The filer before the restart.
	old := newHarness(t, Config{})
	old.open("A", "B")
	old.set(1, lk(Exclusive, 0, 9, "A", 1))
	old.set(1, lk(Shared, 20, MaxOffset, "A", 2))
	old.set(2, flk(Shared, "A", 1))
	old.set(1, lk(Shared, 30, 39, "B", 1))
	snapA, err := old.m.Snapshot("A")
	if err != nil || len(snapA) != 3 {
		t.Fatalf("Snapshot(A) = %v, %v", snapA, err)
	}
	snapB, _ := old.m.Snapshot("B")

	// The restarted filer: empty, in grace.
	h := newHarness(t, Config{})
	h.m.StartGrace(h.clock.Now().Add(30 * time.Second))
	for _, id := range []string{"A", "B", "C"} {
		if err := h.m.OpenSession(id, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if !h.m.InGrace() {
		t.Fatal("not in grace")
	}
	if err := h.m.SetLk(1, lk(Exclusive, 5, 5, "C", 1)); !errors.Is(err, ErrGrace) {
		t.Fatalf("SetLk in grace = %v", err)
	}
	if err := h.m.SetLkw(context.Background(), 1, lk(Shared, 50, 50, "C", 1)); !errors.Is(err, ErrGrace) {
		t.Fatalf("SetLkw in grace = %v", err)
	}
	if _, _, err := h.m.GetLk(1, lk(Shared, 50, 50, "C", 1)); !errors.Is(err, ErrGrace) {
		t.Fatalf("GetLk in grace = %v", err)
	}
	if err := h.m.SetLk(1, lk(Unlock, 0, MaxOffset, "C", 1)); err != nil {
		t.Fatalf("unlock in grace = %v", err)
	}
	if rej, err := h.m.Reassert("A", snapA); err != nil || len(rej) != 0 {
		t.Fatalf("Reassert(A) = %v, %v", rej, err)
	}
	// B re-asserts its own lock plus one that conflicts with A's (as a
	// confused mount might), and one of another session.
	bad := Held{1, lk(Exclusive, 0, 0, "B", 1)}
	foreign := Held{3, lk(Exclusive, 0, 0, "A", 1)}
	rej, err := h.m.Reassert("B", append(slices.Clone(snapB), bad, foreign))
	if err != nil || !slices.Equal(rej, []Held{bad, foreign}) {
		t.Fatalf("Reassert(B) rejected %v, %v", rej, err)
	}
	if got, _ := h.m.Snapshot("A"); !slices.Equal(got, snapA) {
		t.Fatalf("A after re-assertion: %v, want %v", got, snapA)
	}
	if got, _ := h.m.Snapshot("B"); !slices.Equal(got, snapB) {
		t.Fatalf("B after re-assertion: %v, want %v", got, snapB)
	}

	h.clock.Advance(30 * time.Second)
	for _, id := range []string{"A", "B", "C"} {
		if err := h.m.Renew(id); err != nil {
			t.Fatal(err)
		}
	}
	if h.m.InGrace() {
		t.Fatal("grace did not end")
	}
	if err := h.m.SetLk(1, lk(Exclusive, 5, 5, "C", 1)); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("after grace, SetLk over A's lock = %v", err)
	}
	h.set(1, lk(Exclusive, 10, 19, "C", 1))
	if _, err := h.m.Reassert("B", snapB); !errors.Is(err, ErrNoGrace) {
		t.Fatalf("Reassert after grace = %v", err)
	}

	h.m.StartGrace(h.clock.Now().Add(time.Hour))
	h.m.EndGrace()
	if h.m.InGrace() {
		t.Fatal("EndGrace did not end grace")
	}
}

func TestUnknownSession(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	l := lk(Shared, 0, 0, "nobody", 1)
	_, _, getErr := h.m.GetLk(1, l)
	_, snapErr := h.m.Snapshot("nobody")
	_, reErr := h.m.Reassert("nobody", nil)
	for i, err := range []error{
		h.m.SetLk(1, l),
		h.m.SetLkw(ctx, 1, l),
		h.m.SetLk(1, lk(Unlock, 0, 0, "nobody", 1)),
		getErr,
		h.m.ReleaseOwner("nobody", 1, 1),
		h.m.Renew("nobody"),
		snapErr,
		reErr,
	} {
		if !errors.Is(err, ErrSessionExpired) {
			t.Errorf("call %d = %v, want ErrSessionExpired", i, err)
		}
	}
	h.wantStats(Stats{})
}

func TestLimits(t *testing.T) {
	h := newHarness(t, Config{MaxLocksPerSession: 3, MaxWaitersPerSession: 1, MaxSessions: 2})
	h.open("A", "B")
	if err := h.m.OpenSession("C", time.Second); !errors.Is(err, ErrLimit) {
		t.Fatalf("third session = %v, want ErrLimit", err)
	}
	h.set(1, lk(Shared, 0, MaxOffset, "A", 1))
	h.set(1, lk(Unlock, 10, 10, "A", 1)) // 2 records
	h.set(1, lk(Unlock, 20, 20, "A", 1)) // 3 records
	if err := h.m.SetLk(1, lk(Unlock, 30, 30, "A", 1)); !errors.Is(err, ErrLimit) {
		t.Fatalf("splitting unlock past the limit = %v, want ErrLimit", err)
	}
	if err := h.m.SetLk(2, flk(Shared, "A", 2)); !errors.Is(err, ErrLimit) {
		t.Fatalf("a 4th record on another inode = %v, want ErrLimit", err)
	}
	h.set(1, lk(Unlock, 0, 15, "A", 1))        // shrinking at the limit is fine
	h.set(1, lk(Shared, 0, MaxOffset, "A", 1)) // and merging
	h.wantStats(Stats{Sessions: 2, Files: 1, Locks: 1})

	h.set(3, lk(Exclusive, 0, 0, "B", 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := h.wait(ctx, 1, lk(Exclusive, 0, 0, "B", 1))
	h.waitParked(lk(Exclusive, 0, 0, "B", 1))
	if err := h.m.SetLkw(ctx, 1, lk(Exclusive, 5, 5, "B", 2)); !errors.Is(err, ErrLimit) {
		t.Fatalf("second waiter = %v, want ErrLimit", err)
	}
	cancel()
	if err := result(t, w); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestRunExpires(t *testing.T) {
	h := newHarness(t, Config{})
	h.open("A")
	h.set(1, lk(Exclusive, 0, 0, "A", 1))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.m.Run(ctx, time.Millisecond) }()
	h.clock.Advance(time.Minute)
	deadline := time.Now().Add(waitTimeout)
	for h.m.Stats().Sessions != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not expire the session")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	h.wantStats(Stats{})
}

// OnSessionEnd hears of every way a session ends, once each, and Check
// tells a live session from an ended one without renewing it.
func TestSessionEndHookAndCheck(t *testing.T) {
	var ended []string
	h := newHarness(t, Config{OnSessionEnd: func(id string, closed bool) { ended = append(ended, fmt.Sprintf("%s:%v", id, closed)) }})
	h.open("closed", "expired", "met", "reopened", "live")
	if err := h.m.Check("live"); err != nil {
		t.Fatalf("Check of a live session: %v", err)
	}
	if err := h.m.CloseSession("closed"); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(6 * time.Second)
	if err := h.m.Renew("live"); err != nil {
		t.Fatal(err)
	}
	now := h.clock.Advance(5 * time.Second) // all but "live" are past their lease
	if err := h.m.Check("met"); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("Check past the lease = %v, want ErrSessionExpired", err)
	}
	if err := h.m.OpenSession("reopened", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := h.m.Expire(now); !slices.Equal(got, []string{"expired"}) {
		t.Fatalf("Expire = %v, want [expired]", got)
	}
	if err := h.m.Check("live"); err != nil {
		t.Fatalf("Check of a renewed session: %v", err)
	}
	if err := h.m.Check("nobody"); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("Check of an unknown session = %v, want ErrSessionExpired", err)
	}
	if want := []string{"closed:true", "met:false", "reopened:false", "expired:false"}; !slices.Equal(ended, want) {
		t.Fatalf("OnSessionEnd heard %v, want %v", ended, want)
	}
}
