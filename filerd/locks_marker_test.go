package filerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

// logBuffer collects a server's log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// markerFiler is a filer whose store outlives it: restart serves a new one
// on the same directory, as after a stop or crash.
type markerFiler struct {
	t   *testing.T
	cfg Config
	s   *Server
	lc  *client.LockClient
	log *logBuffer
}

// startMarkerFiler serves a filer with the lock service's defaults (a
// grace period of DefaultLockSessionTTL + 5 s) unless tweak changes them.
func startMarkerFiler(t *testing.T, tweak func(*Config)) *markerFiler {
	t.Helper()
	tf := startFiler(t, tweak)
	mf := &markerFiler{t: t, cfg: tf.s.cfg, s: tf.s, lc: tf.fc.Locks()}
	mf.cfg.Signature = tf.s.Signature()
	return mf
}

// restart closes the filer and serves a new one on the same store, with a
// logger that the test can read.
func (mf *markerFiler) restart() {
	t := mf.t
	t.Helper()
	if err := mf.s.Close(); err != nil {
		t.Fatal(err)
	}
	mf.log = &logBuffer{}
	cfg := mf.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(mf.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	mf.s = serve(t, cfg)
	lc, err := client.NewLockClient(client.LockClientConfig{Address: mf.s.GRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	mf.lc = lc
}

// heldMarked reports whether the store holds lockHeldKey.
func (mf *markerFiler) heldMarked() bool {
	mf.t.Helper()
	_, err := mf.s.Namespace().KVGet(context.Background(), lockHeldKey)
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		mf.t.Fatalf("read %s: %v", lockHeldKey, err)
	}
	return err == nil
}

// TestLockMarkerSessionWithoutLocks: sessions also lease the mounts' file
// handles, so most are open with no lock; a filer stopped with such a
// session starts with no lock grace period (it keeps the open-unlinked
// files for LockGrace instead, handles_test.go), and the locks-held marker
// goes once the last lock does.
func TestLockMarkerSessionWithoutLocks(t *testing.T) {
	mf := startMarkerFiler(t, nil)
	mf.wantNoGrace("A", 1) // a lock, then unlocked below
	if !mf.heldMarked() {
		t.Fatal("no locks-held marker after a lock was granted")
	}
	if err := mf.lc.SetLk(context.Background(), "A", whole(1, lockpb.LockType_UNLOCK, 1)); err != nil {
		t.Fatal(err)
	}
	within(t, lockMarkerCheck+2*time.Second, "locks-held marker cleared once no lock is held", func() bool { return !mf.heldMarked() })
	if !mf.marked() {
		t.Fatal("the session marker went while A is open")
	}
	mf.restart()
	mf.wantLog("no locks were held: no lock grace period")
	mf.wantLog("keeping the open-unlinked files of the previous run")
	mf.wantNoGrace("B", 1)
}

// inStore reports whether the store holds lockLiveKey.
func (mf *markerFiler) inStore() (bool, error) {
	_, err := mf.s.Namespace().KVGet(context.Background(), lockLiveKey)
	if errors.Is(err, meta.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// marked is inStore for the test's goroutine.
func (mf *markerFiler) marked() bool {
	mf.t.Helper()
	ok, err := mf.inStore()
	if err != nil {
		mf.t.Fatalf("read %s: %v", lockLiveKey, err)
	}
	return ok
}

// wantLog checks the restarted filer logged line.
func (mf *markerFiler) wantLog(line string) {
	mf.t.Helper()
	if !strings.Contains(mf.log.String(), line) {
		mf.t.Fatalf("log lacks %q:\n%s", line, mf.log.String())
	}
}

// wantNoGrace checks a new session gets a lock at once.
func (mf *markerFiler) wantNoGrace(session string, ino uint64) {
	t := mf.t
	t.Helper()
	if ls := open(t, mf.lc, session, 0); ls.Grace != 0 {
		t.Fatalf("open %s: %+v, want no grace period", session, ls)
	}
	if err := mf.lc.SetLk(context.Background(), session, whole(ino, lockpb.LockType_EXCLUSIVE, 1)); err != nil {
		t.Fatalf("SetLk of %s: %v, want it granted at once", session, err)
	}
}

// wantGrace checks a new session is told of a grace period and gets no lock.
func (mf *markerFiler) wantGrace(session string, ino uint64) {
	t := mf.t
	t.Helper()
	if ls := open(t, mf.lc, session, 0); ls.Grace <= 0 || ls.Grace > mf.cfg.LockGrace {
		t.Fatalf("open %s: %+v, want a grace period of at most %v", session, ls, mf.cfg.LockGrace)
	}
	err := mf.lc.SetLk(context.Background(), session, whole(ino, lockpb.LockType_EXCLUSIVE, 1))
	wantLockErr(t, "SetLk in grace", err, client.ErrGrace, "EAGAIN")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("SetLk in grace: %v, want UNAVAILABLE", err)
	}
}

// TestLockMarkerFreshFilerNoGrace: a filer started on an empty store
// grants locks at once, with the grace period at its default; the first
// session writes the marker before it is answered.
func TestLockMarkerFreshFilerNoGrace(t *testing.T) {
	mf := startMarkerFiler(t, nil)
	if mf.cfg.LockGrace != DefaultConfig().LockGrace || mf.cfg.LockGrace == 0 {
		t.Fatalf("LockGrace = %v, want the default", mf.cfg.LockGrace)
	}
	if mf.marked() || mf.s.locks.InGrace() {
		t.Fatalf("fresh filer: marked %v, in grace %v", mf.marked(), mf.s.locks.InGrace())
	}
	mf.wantNoGrace("A", 1)
	if !mf.marked() {
		t.Fatal("no marker after OpenSession answered")
	}
}

// TestLockMarkerGraceAfterStopWithSession: a filer stopped while a session
// holds a lock starts in its grace period on the same store, which then
// ends.
func TestLockMarkerGraceAfterStopWithSession(t *testing.T) {
	mf := startMarkerFiler(t, func(c *Config) {
		c.LockSessionTTL, c.LockGrace = 300*time.Millisecond, time.Second
	})
	mf.wantNoGrace("A", 1)
	mf.restart()
	start := time.Now()
	mf.wantLog("lock grace period: locks may have been held")
	mf.wantGrace("B", 2)
	kctx, stop := context.WithCancel(context.Background())
	kdone := make(chan error, 1)
	go func() { kdone <- mf.lc.KeepAlive(kctx, "B", mf.cfg.LockSessionTTL) }() // as a mount does
	defer func() {
		stop()
		if err := recvWithin(t, kdone, time.Second, "KeepAlive"); !errors.Is(err, context.Canceled) {
			t.Errorf("KeepAlive = %v", err)
		}
	}()
	within(t, mf.cfg.LockGrace+2*time.Second, "grace period over", func() bool {
		return mf.lc.SetLk(context.Background(), "B", whole(2, lockpb.LockType_EXCLUSIVE, 1)) == nil
	})
	t.Logf("grace ended %v after the restart (LockGrace %v)", time.Since(start), mf.cfg.LockGrace)
	if !mf.marked() {
		t.Fatal("marker cleared while B is open")
	}
}

// TestLockMarkerNoGraceAfterCloseSession: a filer whose only session was
// closed before it stopped starts without a grace period.
func TestLockMarkerNoGraceAfterCloseSession(t *testing.T) {
	mf := startMarkerFiler(t, nil)
	mf.wantNoGrace("A", 1)
	open(t, mf.lc, "B", 0)
	if err := mf.lc.CloseSession(context.Background(), "A"); err != nil {
		t.Fatal(err)
	}
	if !mf.marked() {
		t.Fatal("marker cleared while B is open")
	}
	if err := mf.lc.CloseSession(context.Background(), "B"); err != nil {
		t.Fatal(err)
	}
	if mf.marked() {
		t.Fatal("marker still set after the last CloseSession answered")
	}
	mf.restart()
	mf.wantLog("no locks were held: no lock grace period")
	mf.wantNoGrace("C", 1)
}

// TestLockMarkerNoGraceAfterExpiry: a filer whose only session's lease
// ran out before it stopped starts without a grace period.
func TestLockMarkerNoGraceAfterExpiry(t *testing.T) {
	const ttl = 200 * time.Millisecond
	mf := startMarkerFiler(t, func(c *Config) { c.LockSessionTTL = ttl })
	mf.wantNoGrace("A", 1) // never renewed
	t0 := time.Now()
	within(t, ttl+2*time.Second, "marker cleared by the expiry sweep", func() bool { return !mf.marked() })
	t.Logf("marker cleared %v after the last renewal (ttl %v)", time.Since(t0), ttl)
	if n := mf.s.locks.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions left after the marker was cleared", n)
	}
	mf.restart()
	mf.wantLog("no locks were held: no lock grace period")
	mf.wantNoGrace("B", 1)
}

// TestLockMarkerKeptThroughGrace: the marker outlives a grace period in
// which no mount came back, so a second crash during it leads to another
// grace period; once the grace period is over with no session, the marker
// goes.
func TestLockMarkerKeptThroughGrace(t *testing.T) {
	mf := startMarkerFiler(t, func(c *Config) {
		c.LockSessionTTL, c.LockGrace = 200*time.Millisecond, 700*time.Millisecond
	})
	mf.wantNoGrace("A", 1)
	mf.restart()
	// What the sweep does, with no session open: nothing in grace.
	mf.s.clearLockMarker(context.Background())
	if !mf.s.locks.InGrace() || mf.s.locks.Stats().Sessions != 0 || !mf.marked() || !mf.heldMarked() {
		t.Fatalf("in grace %v, %+v, marked %v, %v: want the markers kept through the grace period",
			mf.s.locks.InGrace(), mf.s.locks.Stats(), mf.marked(), mf.heldMarked())
	}
	mf.restart() // a crash in the grace period
	mf.wantLog("locks may have been held")
	if !mf.s.locks.InGrace() {
		t.Fatal("no grace period after a restart during one")
	}
	t0 := time.Now()
	within(t, mf.cfg.LockGrace+lockMarkerCheck+2*time.Second, "markers cleared after the grace period",
		func() bool { return !mf.marked() && !mf.heldMarked() })
	t.Logf("marker cleared %v after the restart (grace %v)", time.Since(t0), mf.cfg.LockGrace)
	mf.restart()
	mf.wantLog("no locks were held: no lock grace period")
	mf.wantNoGrace("B", 1)
}

// TestLockMarkerRace opens and closes sessions from many goroutines, so
// that the count of sessions falls to zero and the marker is cleared while
// other sessions open; each worker's last session is left to the expiry
// sweep. At every step, whenever no marker write is in flight, the store
// must agree with the server and a live session must imply the marker.
func TestLockMarkerRace(t *testing.T) {
	lb := &logBuffer{}
	mf := startMarkerFiler(t, func(c *Config) {
		c.LockSessionTTL = 100 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	check := func() error {
		mk := &mf.s.lockMarker
		mk.mu.Lock()
		defer mk.mu.Unlock()
		sessions := mf.s.locks.Stats().Sessions
		stored, err := mf.inStore()
		switch {
		case err != nil:
			return err
		case mk.set != stored:
			return fmt.Errorf("marker set %v, in store %v", mk.set, stored)
		case sessions > 0 && !stored:
			return fmt.Errorf("%d sessions and no marker", sessions)
		}
		return nil
	}
	const workers, rounds = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				id := fmt.Sprintf("w%d-%d", w, i)
				expire := i == rounds-1
				ttl := time.Duration(0)
				if expire {
					ttl = minLockSessionTTL
				}
				if _, err := mf.lc.OpenSession(ctx, id, ttl); err != nil {
					errs <- err
					return
				}
				if err := check(); err != nil {
					errs <- err
					return
				}
				if !expire {
					if err := mf.lc.CloseSession(ctx, id); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	within(t, 3*time.Second, "every session ended and the marker cleared", func() bool {
		return mf.s.locks.Stats().Sessions == 0 && !mf.marked()
	})
	if err := check(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sessions, marker cleared %d times", workers*rounds, strings.Count(lb.String(), "lock marker cleared"))
}
