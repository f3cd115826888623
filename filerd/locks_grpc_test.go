package filerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/locks"
)

// startLockFiler serves a filer without a lock grace period (unless tweak
// sets one) and returns a LockClient on the test's FilerClient connection.
func startLockFiler(t *testing.T, tweak func(*Config)) (*testFiler, *client.LockClient) {
	t.Helper()
	tf := startFiler(t, func(c *Config) {
		c.LockGrace = 0
		if tweak != nil {
			tweak(c)
		}
	})
	return tf, tf.fc.Locks()
}

// restartWithGrace closes tf's filer and serves a new one on the same
// store, with lease ttl and grace period grace.
func restartWithGrace(t *testing.T, tf *testFiler, ttl, grace time.Duration) *Server {
	t.Helper()
	cfg := tf.s.cfg
	if err := tf.s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.LockSessionTTL, cfg.LockGrace = ttl, grace
	cfg.HandleGrace = min(cfg.HandleGrace, grace) // the previous run's orphans kept for grace
	return serve(t, cfg)
}

// rng is an fcntl lock of owner over [start, end].
func rng(ino uint64, typ lockpb.LockType, start, end int64, owner uint64, pid uint32) *lockpb.Lock {
	return &lockpb.Lock{Inode: ino, Kind: lockpb.LockKind_FCNTL, Type: typ, Start: start, End: end, Owner: owner, Pid: pid}
}

func whole(ino uint64, typ lockpb.LockType, owner uint64) *lockpb.Lock {
	return &lockpb.Lock{Inode: ino, Kind: lockpb.LockKind_FLOCK, Type: typ, Owner: owner}
}

func open(t *testing.T, lc *client.LockClient, id string, ttl time.Duration) client.LockSession {
	t.Helper()
	ls, err := lc.OpenSession(context.Background(), id, ttl)
	if err != nil {
		t.Fatalf("open session %s: %v", id, err)
	}
	return ls
}

// within polls cond every millisecond until it holds, failing after d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantLockErr checks err wraps the lock sentinel and carries errno.
func wantLockErr(t *testing.T, what string, err error, sentinel error, errno string) {
	t.Helper()
	if !errors.Is(err, sentinel) || client.PosixErrno(err) != errno {
		t.Fatalf("%s: %v (errno %q), want %v with %s", what, err, client.PosixErrno(err), sentinel, errno)
	}
}

// setLkwAsync runs SetLkw in a goroutine and waits until the filer has it
// parked as a waiter (waiters counts the ones parked before).
func setLkwAsync(t *testing.T, ctx context.Context, tf *testFiler, lc *client.LockClient, session string, l *lockpb.Lock) <-chan error {
	t.Helper()
	before := tf.s.locks.Stats().Waiters
	res := make(chan error, 1)
	go func() { res <- lc.SetLkw(ctx, session, l) }()
	within(t, 3*time.Second, "SetLkw parked on the filer", func() bool { return tf.s.locks.Stats().Waiters > before })
	return res
}

func recvWithin(t *testing.T, res <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(d):
		t.Fatalf("%s: no answer within %v", what, d)
		return nil
	}
}

func TestLocksConflictGetLkAndBadInput(t *testing.T) {
	_, lc := startLockFiler(t, nil)
	ctx := context.Background()
	if ls := open(t, lc, "A", 0); ls.TTL != DefaultLockSessionTTL || ls.Grace != 0 {
		t.Fatalf("open A: %+v, want the default ttl and no grace", ls)
	}
	if ls := open(t, lc, "B", 500*time.Millisecond); ls.TTL != 500*time.Millisecond {
		t.Fatalf("open B: %+v", ls)
	}
	if ls := open(t, lc, "C", time.Millisecond); ls.TTL != minLockSessionTTL {
		t.Fatalf("open C with 1ms: %+v, want the minimum", ls)
	}
	open(t, lc, "B", 0) // reopening a live session renews it

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("A excl [0,99]", lc.SetLk(ctx, "A", rng(7, lockpb.LockType_EXCLUSIVE, 0, 99, 1, 111)))
	err := lc.SetLk(ctx, "B", rng(7, lockpb.LockType_SHARED, 50, 60, 1, 222))
	wantLockErr(t, "B shared over A's exclusive", err, client.ErrWouldBlock, "EAGAIN")
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, client.ErrPrecondition) {
		t.Fatalf("would-block status: %v", err)
	}
	must("B disjoint", lc.SetLk(ctx, "B", rng(7, lockpb.LockType_EXCLUSIVE, 100, locks.MaxOffset, 1, 222)))

	// F_GETLK reports the holder's type, range and pid, nothing of its owner.
	got, err := lc.GetLk(ctx, "B", rng(7, lockpb.LockType_SHARED, 10, 10, 1, 222))
	must("GetLk", err)
	if got == nil || got.Type != lockpb.LockType_EXCLUSIVE || got.Start != 0 || got.End != 99 || got.Pid != 111 || got.Owner != 0 {
		t.Fatalf("GetLk = %v, want A's exclusive [0,99] pid 111", got)
	}
	if got, err := lc.GetLk(ctx, "A", rng(7, lockpb.LockType_SHARED, 0, 99, 1, 111)); err != nil || got != nil {
		t.Fatalf("GetLk by the holder = %v, %v; want none", got, err)
	}

	// Shared locks coexist; flock is its own namespace.
	must("A shared", lc.SetLk(ctx, "A", rng(8, lockpb.LockType_SHARED, 0, 9, 1, 111)))
	must("B shared", lc.SetLk(ctx, "B", rng(8, lockpb.LockType_SHARED, 5, 15, 1, 222)))
	must("A flock ex", lc.SetLk(ctx, "A", whole(7, lockpb.LockType_EXCLUSIVE, 9)))
	wantLockErr(t, "B flock sh", lc.SetLk(ctx, "B", whole(7, lockpb.LockType_SHARED, 9)), client.ErrWouldBlock, "EAGAIN")
	must("A flock un", lc.SetLk(ctx, "A", whole(7, lockpb.LockType_UNLOCK, 9)))
	must("B flock sh", lc.SetLk(ctx, "B", whole(7, lockpb.LockType_SHARED, 9)))
	must("unlock what is not held", lc.SetLk(ctx, "C", rng(7, lockpb.LockType_UNLOCK, 0, 5, 4, 1)))

	// Bad input: EINVAL, nothing granted.
	for name, l := range map[string]*lockpb.Lock{
		"negative start": rng(9, lockpb.LockType_EXCLUSIVE, -1, 10, 1, 1),
		"end < start":    rng(9, lockpb.LockType_EXCLUSIVE, 10, 9, 1, 1),
		"no kind":        {Inode: 9, Type: lockpb.LockType_SHARED},
		"no type":        {Inode: 9, Kind: lockpb.LockKind_FLOCK},
		"unknown type":   {Inode: 9, Kind: lockpb.LockKind_FLOCK, Type: 42},
		"no lock":        nil,
	} {
		err := lc.SetLk(ctx, "A", l)
		if !errors.Is(err, client.ErrInvalid) || client.PosixErrno(err) != "EINVAL" || status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v (errno %q), want EINVAL", name, err, client.PosixErrno(err))
		}
	}
	for name, id := range map[string]string{"empty": "", "too long": string(make([]byte, maxLockSessionID+1))} {
		if _, err := lc.OpenSession(ctx, id, 0); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("open session %s: %v", name, err)
		}
	}
	if _, err := lc.OpenSession(ctx, "D", -time.Second); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("negative ttl: %v", err)
	}

	// An unknown session gets nothing: ENOLCK and the expiry sentinel.
	wantLockErr(t, "unknown session", lc.SetLk(ctx, "nobody", rng(9, lockpb.LockType_SHARED, 0, 1, 1, 1)), client.ErrSessionExpired, "ENOLCK")
	wantLockErr(t, "renew unknown", lc.Renew(ctx, "nobody"), client.ErrSessionExpired, "ENOLCK")

	// Closing a session frees its locks.
	must("close A", lc.CloseSession(ctx, "A"))
	must("close A again", lc.CloseSession(ctx, "A"))
	must("B takes A's range", lc.SetLk(ctx, "B", rng(7, lockpb.LockType_EXCLUSIVE, 0, 99, 1, 222)))
	wantLockErr(t, "A after close", lc.SetLk(ctx, "A", rng(7, lockpb.LockType_SHARED, 0, 1, 1, 1)), client.ErrSessionExpired, "ENOLCK")
}

func TestLocksSetLkwHandOver(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx := context.Background()
	open(t, lc, "A", 0)
	open(t, lc, "B", 0)
	const rounds = 20
	var lat []time.Duration
	for i := range rounds {
		ino := uint64(100 + i)
		if err := lc.SetLk(ctx, "A", rng(ino, lockpb.LockType_EXCLUSIVE, 0, locks.MaxOffset, 1, 1)); err != nil {
			t.Fatal(err)
		}
		res := setLkwAsync(t, ctx, tf, lc, "B", rng(ino, lockpb.LockType_SHARED, 10, 20, 2, 2))
		select {
		case err := <-res:
			t.Fatalf("SetLkw returned while the lock was held: %v", err)
		default:
		}
		t0 := time.Now()
		if err := lc.SetLk(ctx, "A", rng(ino, lockpb.LockType_UNLOCK, 0, locks.MaxOffset, 1, 1)); err != nil {
			t.Fatal(err)
		}
		if err := recvWithin(t, res, 3*time.Second, "SetLkw after unlock"); err != nil {
			t.Fatalf("SetLkw: %v", err)
		}
		lat = append(lat, time.Since(t0))
		if got, _ := lc.GetLk(ctx, "A", rng(ino, lockpb.LockType_EXCLUSIVE, 0, 100, 1, 1)); got == nil || got.Pid != 2 {
			t.Fatalf("B's granted lock not seen: %v", got)
		}
	}
	slices.Sort(lat)
	t.Logf("SetLkw hand-over (unlock sent -> waiter's SetLkw returns, over gRPC): median %v, max %v of %d", lat[rounds/2], lat[rounds-1], rounds)
	if st := tf.s.locks.Stats(); st.Waiters != 0 {
		t.Fatalf("waiters left: %+v", st)
	}
}

func TestLocksSetLkwCancel(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx := context.Background()
	open(t, lc, "A", 0)
	open(t, lc, "B", 0)
	open(t, lc, "C", 0)
	if err := lc.SetLk(ctx, "A", rng(1, lockpb.LockType_EXCLUSIVE, 0, 99, 1, 1)); err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []bool{false, true} {
		cctx, cancel := context.WithCancel(ctx)
		const deadline = 300 * time.Millisecond
		if timeout {
			cctx, cancel = context.WithTimeout(ctx, deadline)
		}
		res := setLkwAsync(t, cctx, tf, lc, "B", rng(1, lockpb.LockType_EXCLUSIVE, 50, 150, 2, 2))
		t0 := time.Now()
		if !timeout {
			cancel()
		}
		err := recvWithin(t, res, deadline+time.Second, "cancelled SetLkw")
		cancel()
		if timeout {
			if !errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("SetLkw past its deadline = %v", err)
			}
		} else if !errors.Is(err, client.ErrCanceled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled SetLkw = %v, want ErrCanceled", err)
		}
		t.Logf("cancelled SetLkw (deadline %v) returned in %v", timeout, time.Since(t0))
		within(t, time.Second, "no waiter left", func() bool { return tf.s.locks.Stats().Waiters == 0 })
	}
	if held, err := tf.s.locks.Snapshot("B"); err != nil || len(held) != 0 {
		t.Fatalf("B holds %v, %v after its cancelled waits", held, err)
	}
	if err := lc.SetLk(ctx, "A", rng(1, lockpb.LockType_UNLOCK, 0, 99, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetLk(ctx, "C", rng(1, lockpb.LockType_EXCLUSIVE, 0, locks.MaxOffset, 3, 3)); err != nil {
		t.Fatalf("a third session cannot lock after the cancelled wait: %v", err)
	}
}

func TestLocksDeadlock(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx := context.Background()
	open(t, lc, "A", 0)
	open(t, lc, "B", 0)
	if err := lc.SetLk(ctx, "A", rng(1, lockpb.LockType_EXCLUSIVE, 0, 9, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetLk(ctx, "B", rng(1, lockpb.LockType_EXCLUSIVE, 10, 19, 2, 2)); err != nil {
		t.Fatal(err)
	}
	resA := setLkwAsync(t, ctx, tf, lc, "A", rng(1, lockpb.LockType_EXCLUSIVE, 10, 19, 1, 1))
	err := lc.SetLkw(ctx, "B", rng(1, lockpb.LockType_EXCLUSIVE, 0, 9, 2, 2))
	wantLockErr(t, "B closing the cycle", err, client.ErrDeadlock, "EDEADLK")
	if status.Code(err) != codes.Aborted {
		t.Fatalf("deadlock code %v", status.Code(err))
	}
	if err := lc.SetLk(ctx, "B", rng(1, lockpb.LockType_UNLOCK, 10, 19, 2, 2)); err != nil {
		t.Fatal(err)
	}
	if err := recvWithin(t, resA, 3*time.Second, "A's wait"); err != nil {
		t.Fatalf("A's SetLkw: %v", err)
	}
}

func TestLocksSessionExpiry(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	open(t, lc, "dead", ttl) // never renewed
	kept := open(t, lc, "kept", ttl)
	open(t, lc, "B", 0)
	kctx, stop := context.WithCancel(ctx)
	kdone := make(chan error, 1)
	go func() { kdone <- lc.KeepAlive(kctx, "kept", kept.TTL) }()
	defer func() {
		stop()
		if err := recvWithin(t, kdone, time.Second, "KeepAlive after its context ended"); !errors.Is(err, context.Canceled) {
			t.Errorf("KeepAlive = %v", err)
		}
	}()
	if err := lc.SetLk(ctx, "dead", rng(1, lockpb.LockType_EXCLUSIVE, 0, 9, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetLk(ctx, "kept", rng(2, lockpb.LockType_EXCLUSIVE, 0, 9, 1, 1)); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	res := setLkwAsync(t, ctx, tf, lc, "B", rng(1, lockpb.LockType_EXCLUSIVE, 0, 9, 2, 2))
	if err := recvWithin(t, res, 3*time.Second, "waiter on an unrenewed session's lock"); err != nil {
		t.Fatalf("SetLkw: %v", err)
	}
	t.Logf("waiter granted %v after the holder's last renewal (ttl %v, sweep %v)", time.Since(t0), ttl, lockSweepInterval(tf.s.cfg.LockSessionTTL))
	if time.Since(t0) < ttl-50*time.Millisecond {
		t.Fatalf("granted after %v, before the lease of %v could end", time.Since(t0), ttl)
	}
	wantLockErr(t, "expired session", lc.SetLk(ctx, "dead", rng(3, lockpb.LockType_SHARED, 0, 1, 1, 1)), client.ErrSessionExpired, "ENOLCK")
	wantLockErr(t, "renew expired", lc.Renew(ctx, "dead"), client.ErrSessionExpired, "ENOLCK")
	// The session kept alive through the same span still holds its lock.
	err := lc.SetLk(ctx, "B", rng(2, lockpb.LockType_SHARED, 0, 9, 2, 2))
	wantLockErr(t, "kept session's lock", err, client.ErrWouldBlock, "EAGAIN")
}

func TestLocksReleaseOwner(t *testing.T) {
	_, lc := startLockFiler(t, nil)
	ctx := context.Background()
	open(t, lc, "A", 0)
	open(t, lc, "B", 0)
	for _, l := range []*lockpb.Lock{
		rng(5, lockpb.LockType_EXCLUSIVE, 0, 9, 1, 1),
		rng(5, lockpb.LockType_SHARED, 20, 29, 1, 1),
		rng(5, lockpb.LockType_EXCLUSIVE, 40, 49, 2, 1), // another owner (process) of A
		whole(5, lockpb.LockType_EXCLUSIVE, 1),
	} {
		if err := lc.SetLk(ctx, "A", l); err != nil {
			t.Fatal(err)
		}
	}
	if err := lc.ReleaseOwner(ctx, "A", 5, 1); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetLk(ctx, "B", rng(5, lockpb.LockType_EXCLUSIVE, 0, 39, 9, 9)); err != nil {
		t.Fatalf("owner 1's fcntl locks not released: %v", err)
	}
	wantLockErr(t, "owner 2's lock", lc.SetLk(ctx, "B", rng(5, lockpb.LockType_SHARED, 45, 45, 9, 9)), client.ErrWouldBlock, "EAGAIN")
	wantLockErr(t, "owner 1's flock", lc.SetLk(ctx, "B", whole(5, lockpb.LockType_SHARED, 9)), client.ErrWouldBlock, "EAGAIN")
	wantLockErr(t, "unknown session", lc.ReleaseOwner(ctx, "nobody", 5, 1), client.ErrSessionExpired, "ENOLCK")
}

// TestLocksGraceAfterRestart: locks held on one filer survive its restart
// through re-assertion; nobody else is granted one during the grace period.
func TestLocksGraceAfterRestart(t *testing.T) {
	tf, _ := startLockFiler(t, nil)
	ctx := context.Background()
	lc1 := tf.fc.Locks()
	open(t, lc1, "A", 0)
	held := []*lockpb.Lock{rng(1, lockpb.LockType_EXCLUSIVE, 0, 99, 1, 11), whole(2, lockpb.LockType_SHARED, 7)}
	for _, l := range held {
		if err := lc1.SetLk(ctx, "A", l); err != nil {
			t.Fatal(err)
		}
	}
	const grace = 800 * time.Millisecond
	s2 := restartWithGrace(t, tf, 500*time.Millisecond, grace)
	start := time.Now()
	lc, err := client.NewLockClient(client.LockClientConfig{Address: s2.GRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()

	// The mount learns of the restart from its renewal, opens a fresh
	// session and re-asserts.
	wantLockErr(t, "renew after restart", lc.Renew(ctx, "A"), client.ErrSessionExpired, "ENOLCK")
	if ls := open(t, lc, "A2", 0); ls.Grace <= 0 || ls.Grace > grace || ls.TTL != 500*time.Millisecond {
		t.Fatalf("open after restart: %+v, want a grace period", ls)
	}
	open(t, lc, "B", 0)
	// Both sessions renew, as mounts do; the grace outlasts their ttl.
	kctx, stop := context.WithCancel(ctx)
	kdone := make(chan error, 2)
	for _, id := range []string{"A2", "B"} {
		go func() { kdone <- lc.KeepAlive(kctx, id, 500*time.Millisecond) }()
	}
	defer func() {
		stop()
		for range 2 {
			if err := recvWithin(t, kdone, time.Second, "KeepAlive"); !errors.Is(err, context.Canceled) {
				t.Errorf("KeepAlive = %v", err)
			}
		}
	}()
	for what, err := range map[string]error{
		"SetLk":  lc.SetLk(ctx, "B", rng(1, lockpb.LockType_SHARED, 200, 300, 2, 22)),
		"SetLkw": lc.SetLkw(ctx, "B", rng(1, lockpb.LockType_SHARED, 200, 300, 2, 22)),
		"GetLk":  func() error { _, err := lc.GetLk(ctx, "B", rng(1, lockpb.LockType_SHARED, 0, 0, 2, 22)); return err }(),
	} {
		wantLockErr(t, what+" in grace", err, client.ErrGrace, "EAGAIN")
		if status.Code(err) != codes.Unavailable || !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("%s in grace: %v, want retryable UNAVAILABLE", what, err)
		}
	}
	if err := lc.SetLk(ctx, "B", rng(1, lockpb.LockType_UNLOCK, 0, 10, 2, 22)); err != nil {
		t.Fatalf("unlock in grace: %v", err)
	}
	rejected, err := lc.Reassert(ctx, "A2", held)
	if err != nil || len(rejected) != 0 {
		t.Fatalf("Reassert = %v, %v", rejected, err)
	}
	// A conflicting re-assertion (and a malformed one) are refused.
	bad := []*lockpb.Lock{rng(1, lockpb.LockType_SHARED, 50, 60, 2, 22), rng(3, lockpb.LockType_SHARED, 5, 1, 2, 22),
		rng(4, lockpb.LockType_SHARED, 0, 9, 2, 22)}
	rejected, err = lc.Reassert(ctx, "B", bad)
	if err != nil || len(rejected) != 2 || rejected[0].Start != 50 || rejected[1].Inode != 3 {
		// rejected keeps the request's order.
		t.Fatalf("conflicting Reassert = %v, %v; want the first two back", rejected, err)
	}

	// After the grace period: new locks again, A2's re-asserted ones hold.
	var n int
	for {
		err = lc.SetLk(ctx, "B", rng(1, lockpb.LockType_SHARED, 50, 60, 2, 22))
		if !errors.Is(err, client.ErrGrace) {
			break
		}
		if time.Since(start) > grace+3*time.Second {
			t.Fatalf("still in grace %v after the restart", time.Since(start))
		}
		n++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("grace ended %v after the restart (%d retries)", time.Since(start), n)
	wantLockErr(t, "re-asserted lock after grace", err, client.ErrWouldBlock, "EAGAIN")
	wantLockErr(t, "re-asserted flock", lc.SetLk(ctx, "B", whole(2, lockpb.LockType_EXCLUSIVE, 8)), client.ErrWouldBlock, "EAGAIN")
	if got, err := lc.GetLk(ctx, "B", rng(1, lockpb.LockType_SHARED, 0, 0, 2, 22)); err != nil || got == nil || got.Pid != 11 || got.End != 99 {
		t.Fatalf("GetLk after grace = %v, %v", got, err)
	}
	_, err = lc.Reassert(ctx, "B", held[:1])
	wantLockErr(t, "Reassert after grace", err, client.ErrNoGrace, "ENOLCK")
	if err := lc.SetLk(ctx, "A2", rng(1, lockpb.LockType_UNLOCK, 0, locks.MaxOffset, 1, 11)); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetLk(ctx, "B", rng(1, lockpb.LockType_EXCLUSIVE, 0, 99, 2, 22)); err != nil {
		t.Fatalf("after A2's unlock: %v", err)
	}
}

// TestLocksCloseEndsWaits: a SetLkw blocked when the filer closes ends
// promptly with UNAVAILABLE instead of holding Close up.
func TestLocksCloseEndsWaits(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx := context.Background()
	open(t, lc, "A", 0)
	open(t, lc, "B", 0)
	if err := lc.SetLk(ctx, "A", rng(1, lockpb.LockType_EXCLUSIVE, 0, 0, 1, 1)); err != nil {
		t.Fatal(err)
	}
	res := setLkwAsync(t, ctx, tf, lc, "B", rng(1, lockpb.LockType_EXCLUSIVE, 0, 0, 2, 2))
	t0 := time.Now()
	if err := tf.s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Close took %v with a lock waiter", d)
	}
	err := recvWithin(t, res, time.Second, "SetLkw at Close")
	if !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrGrace) {
		t.Fatalf("SetLkw at Close = %v, want UNAVAILABLE", err)
	}
}

// TestLockErrorTableRoundTrip: every locks sentinel maps to a distinct
// (code, errno) pair that the client maps back to its sentinel.
func TestLockErrorTableRoundTrip(t *testing.T) {
	want := map[error]error{
		locks.ErrInvalid:        client.ErrInvalid,
		locks.ErrWouldBlock:     client.ErrWouldBlock,
		locks.ErrDeadlock:       client.ErrDeadlock,
		locks.ErrSessionExpired: client.ErrSessionExpired,
		locks.ErrGrace:          client.ErrGrace,
		locks.ErrNoGrace:        client.ErrNoGrace,
		locks.ErrLimit:          client.ErrLockLimit,
		ErrClosed:               client.ErrUnavailable,
		context.Canceled:        client.ErrCanceled,
	}
	seen := map[string]error{}
	for _, row := range lockErrorTable {
		key := fmt.Sprintf("%v/%s", row.code, row.errno)
		if prev, dup := seen[key]; dup {
			t.Errorf("%v and %v share %s", prev, row.err, key)
		}
		seen[key] = row.err
	}
	for in, out := range want {
		err := client.LockFromStatus("call", lockError(fmt.Errorf("ctx: %w", in)))
		if !errors.Is(err, out) {
			t.Errorf("%v -> %v, want %v", in, err, out)
		}
	}
	if err := client.LockFromStatus("call", lockError(errors.New("odd"))); !errors.Is(err, client.ErrInternal) || client.PosixErrno(err) != "EIO" {
		t.Errorf("unknown error -> %v", err)
	}
}

func TestLockConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Dir, good.MasterAddr = "/x", "m:1"
	if good.LockGrace <= good.LockSessionTTL {
		t.Fatalf("default grace %v does not outlast the ttl %v", good.LockGrace, good.LockSessionTTL)
	}
	for name, tweak := range map[string]func(*Config){
		"ttl 0":       func(c *Config) { c.LockSessionTTL = 0 },
		"ttl tiny":    func(c *Config) { c.LockSessionTTL = time.Millisecond },
		"grace < 0":   func(c *Config) { c.LockGrace = -1 },
		"grace < ttl": func(c *Config) { c.LockGrace = c.LockSessionTTL / 2 },
	} {
		c := good
		tweak(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
	off := good
	off.LockGrace = 0
	if err := off.Validate(); err != nil {
		t.Fatalf("grace off: %v", err)
	}
}

// TestLocksRoundTripRate reports uncontended SetLk + unlock pairs per
// second through gRPC (one client, sequential).
func TestLocksRoundTripRate(t *testing.T) {
	_, lc := startLockFiler(t, nil)
	ctx := context.Background()
	open(t, lc, "A", 0)
	const pairs = 1000
	t0 := time.Now()
	for i := range pairs {
		if err := lc.SetLk(ctx, "A", rng(uint64(i%16), lockpb.LockType_EXCLUSIVE, 0, 99, 1, 1)); err != nil {
			t.Fatal(err)
		}
		if err := lc.SetLk(ctx, "A", rng(uint64(i%16), lockpb.LockType_UNLOCK, 0, 99, 1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	d := time.Since(t0)
	t.Logf("%d uncontended lock/unlock pairs in %v: %.0f pairs/s (%v per pair)", pairs, d, pairs/d.Seconds(), d/pairs)
}

// TestLockGrantCarriesGeneration: a lock set on an inode answers the
// inode's generation as it stands, both without and with waiting; an
// unlock, or a lock on an inode the namespace does not have, answers 0.
func TestLockGrantCarriesGeneration(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx, ns := tf.ctx, tf.s.Namespace()
	a, err := ns.Create(ctx, meta.RootInode, "locked", meta.CreateRequest{Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	open(t, lc, "A", 0)
	ino := uint64(a.Inode)
	g, err := lc.Set(ctx, "A", rng(ino, lockpb.LockType_EXCLUSIVE, 0, 9, 1, 1), false, 0)
	if err != nil || g.Generation != a.Generation {
		t.Fatalf("SetLk = generation %d, %v; want %d", g.Generation, err, a.Generation)
	}
	if last := ns.LastEvent(); g.LogTs != last || last == 0 {
		t.Fatalf("SetLk = log_ts %d; want the newest event's %d", g.LogTs, last)
	}
	mode := uint32(0o600)
	b, err := ns.SetAttr(ctx, a.Inode, meta.SetAttrRequest{Mode: &mode})
	if err != nil || b.Generation == a.Generation {
		t.Fatalf("chmod: generation %d -> %d, %v", a.Generation, b.Generation, err)
	}
	g, err = lc.Set(ctx, "A", rng(ino, lockpb.LockType_SHARED, 20, 29, 1, 1), true, 0)
	if err != nil || g.Generation != b.Generation || g.LogTs != ns.LastEvent() {
		t.Fatalf("SetLkw = %+v, %v; want generation %d, log_ts %d", g, err, b.Generation, ns.LastEvent())
	}
	if g, err = lc.Set(ctx, "A", rng(ino, lockpb.LockType_UNLOCK, 0, 99, 1, 1), false, 0); err != nil || g != (client.Grant{}) {
		t.Fatalf("unlock = %+v, %v; want nothing", g, err)
	}
	if g, err = lc.Set(ctx, "A", rng(1<<40, lockpb.LockType_EXCLUSIVE, 0, 9, 1, 1), false, 0); err != nil || g.Generation != 0 {
		t.Fatalf("lock of an inode the filer does not have = generation %d, %v; want 0", g.Generation, err)
	}
}

// TestLockGrantAsksForProgress: a lock set for a feed signature makes
// that signature's subscription report its progress up to the grant's
// log_ts, after every event it wants up to there, even when its own
// events, skipped, are all there is; other subscriptions report nothing.
func TestLockGrantAsksForProgress(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx, ns := tf.ctx, tf.s.Namespace()
	const mine, other = 77, 78
	feed := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{ClientSignature: mine})
	otherFeed := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{ClientSignature: other})
	f, err := ns.Create(ctx, meta.RootInode, "theirs", meta.CreateRequest{Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	// The subscriber's own change: skipped by its feed, yet the newest.
	if _, err := ns.Create(meta.WithSignatures(ctx, []int32{mine}), meta.RootInode, "own", meta.CreateRequest{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	open(t, lc, "A", 0)
	g, err := lc.Set(ctx, "A", rng(uint64(f.Inode), lockpb.LockType_EXCLUSIVE, 0, 9, 1, 1), false, mine)
	if err != nil || g.LogTs != ns.LastEvent() {
		t.Fatalf("grant %+v, %v; want log_ts %d", g, err, ns.LastEvent())
	}
	eventually(t, "a progress report", func() bool {
		evs, _ := feed.snapshot()
		return len(evs) > 0 && evs[len(evs)-1].Progress
	})
	evs, _ := feed.snapshot()
	if len(evs) != 2 || evs[0].NewPath != "/theirs" || evs[1].TsNs < g.LogTs {
		t.Fatalf("feed got %v; want /theirs, then progress at %d or later", evs, g.LogTs)
	}
	// An unlock asks for nothing, nor does a lock whose log_ts the feed
	// has already reported.
	if _, err := lc.Set(ctx, "A", rng(uint64(f.Inode), lockpb.LockType_UNLOCK, 0, 9, 1, 1), false, mine); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if evs, _ := feed.snapshot(); len(evs) != 2 {
		t.Fatalf("an unlock made the feed send %v", evs[2:])
	}
	if _, err := lc.Set(ctx, "A", rng(uint64(f.Inode), lockpb.LockType_SHARED, 0, 9, 1, 1), false, mine); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if evs, _ := feed.snapshot(); len(evs) != 2 {
		t.Fatalf("a lock with nothing new made the feed send %v", evs[2:])
	}
	if evs, _ := otherFeed.snapshot(); len(evs) != 2 || evs[0].Progress || evs[1].Progress {
		t.Fatalf("another signature's feed got %v; want the two creates and no progress", evs)
	}

	// Asked while the signature has no subscription (its mount
	// reconnecting): the next subscription of it reports.
	const reconnecting = 79
	if _, err := ns.Create(ctx, meta.RootInode, "meanwhile", meta.CreateRequest{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	before := ns.LastEvent()
	if _, err := ns.Create(meta.WithSignatures(ctx, []int32{reconnecting}), meta.RootInode, "own2", meta.CreateRequest{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	g, err = lc.Set(ctx, "A", rng(uint64(f.Inode), lockpb.LockType_EXCLUSIVE, 100, 109, 2, 1), false, reconnecting)
	if err != nil {
		t.Fatal(err)
	}
	late := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{SinceNs: before, ClientSignature: reconnecting})
	eventually(t, "a progress report on reconnection", func() bool { evs, _ := late.snapshot(); return len(evs) > 0 })
	if evs, _ := late.snapshot(); len(evs) != 1 || !evs[0].Progress || evs[0].TsNs < g.LogTs {
		t.Fatalf("the reconnected feed got %v; want a progress report at %d or later", evs, g.LogTs)
	}
}
