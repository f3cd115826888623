package filerd

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

// openUnlinked creates name in the root with a handle taken under session
// ("" for none), unlinks it, and returns its inode.
func openUnlinked(t *testing.T, api filerpb.FilerClient, name, session string) uint64 {
	t.Helper()
	ctx := context.Background()
	e, err := api.Create(ctx, &filerpb.CreateRequest{Parent: uint64(meta.RootInode), Name: name, Mode: 0o644, Open: true, Lease: session})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: uint64(meta.RootInode), Name: name}); err != nil {
		t.Fatalf("unlink %s: %v", name, err)
	}
	return e.Attr.Inode
}

// exists reports whether inode ino is still in s's namespace.
func exists(t *testing.T, s *Server, ino uint64) bool {
	t.Helper()
	_, err := s.Namespace().GetAttr(context.Background(), meta.Inode(ino))
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("getattr %d: %v", ino, err)
	}
	return err == nil
}

// Handles taken under a session go when it ends (closed: at once; lease
// run out: after HandleGrace, TestHandlesKeptThroughHandleGrace), freeing
// the open-unlinked files only they held; handles taken with no session
// stay; a request naming an unknown session fails as a lock request
// would, holding nothing.
func TestHandlesLeasedToSessions(t *testing.T) {
	tf, lc := startLockFiler(t, func(c *Config) { c.LockSessionTTL, c.HandleGrace = 300*time.Millisecond, time.Minute })
	ctx := context.Background()
	open(t, lc, "S", 0)
	leased := openUnlinked(t, tf.api, "leased", "S")
	plain := openUnlinked(t, tf.api, "plain", "")
	released := openUnlinked(t, tf.api, "released", "S")
	if _, err := tf.api.Release(ctx, &filerpb.ReleaseRequest{Inode: released, Lease: "S"}); err != nil {
		t.Fatal(err)
	}
	if exists(t, tf.s, released) || !exists(t, tf.s, leased) || !exists(t, tf.s, plain) {
		t.Fatal("after the release: want only the released file freed")
	}
	// A release naming a session that holds no such handle is a no-op:
	// it does not take the plain handle away.
	if _, err := tf.api.Release(ctx, &filerpb.ReleaseRequest{Inode: plain, Lease: "S"}); err != nil {
		t.Fatal(err)
	}
	if !exists(t, tf.s, plain) {
		t.Fatal("a release under another session freed the plain file")
	}
	// Mounts of before leases sent their mount id in the session field,
	// which stays ignored: their handles are plain ones.
	if _, err := tf.api.OpenContent(ctx, &filerpb.OpenRequest{Inode: plain, Session: "an-old-mount-id"}); err != nil {
		t.Fatalf("an open from an older mount: %v", err)
	}
	if _, err := tf.api.Release(ctx, &filerpb.ReleaseRequest{Inode: plain, Session: "an-old-mount-id"}); err != nil {
		t.Fatal(err)
	}
	if n := tf.s.Namespace().OpenCount(meta.Inode(plain)); n != 1 {
		t.Fatalf("plain file has %d handles after an older mount's open and release, want 1", n)
	}

	for what, call := range map[string]func() error{
		"Open": func() error {
			_, err := tf.api.Open(ctx, &filerpb.OpenRequest{Inode: plain, Lease: "nobody"})
			return err
		},
		"OpenContent": func() error {
			_, err := tf.api.OpenContent(ctx, &filerpb.OpenRequest{Inode: plain, Lease: "nobody"})
			return err
		},
		"Reopen": func() error {
			_, err := tf.api.Reopen(ctx, &filerpb.ReopenRequest{Inodes: []uint64{plain}, Session: "nobody"})
			return err
		},
		"Create": func() error {
			_, err := tf.api.Create(ctx, &filerpb.CreateRequest{Parent: uint64(meta.RootInode), Name: "never", Mode: 0o644, Open: true, Lease: "nobody"})
			return err
		},
	} {
		if err := call(); client.PosixErrno(err) != "ENOLCK" {
			t.Fatalf("%s under an unknown session = %v, want ENOLCK", what, err)
		}
	}
	if n := tf.s.Namespace().OpenCount(meta.Inode(plain)); n != 1 {
		t.Fatalf("plain file has %d handles after refused opens, want 1", n)
	}
	if _, err := tf.api.Lookup(ctx, &filerpb.LookupRequest{Parent: uint64(meta.RootInode), Name: "never"}); client.PosixErrno(err) != "ENOENT" {
		t.Fatalf("a create refused for its session made the file: %v", err)
	}

	// CloseSession lets go of a session's handles at once.
	open(t, lc, "T", time.Minute)
	if _, err := tf.api.OpenContent(ctx, &filerpb.OpenRequest{Inode: plain, Lease: "T"}); err != nil {
		t.Fatal(err)
	}
	if n := tf.s.handles.count("T"); n != 1 {
		t.Fatalf("session T holds %d handles, want 1", n)
	}
	if err := lc.CloseSession(ctx, "T"); err != nil {
		t.Fatal(err)
	}
	within(t, 3*time.Second, "T's handle released", func() bool { return tf.s.Namespace().OpenCount(meta.Inode(plain)) == 1 })

	// S is never renewed: its lease runs out, and its handle is kept
	// for the grace (a minute here).
	within(t, 3*time.Second, "S's handle kept past its lease", func() bool { return tf.s.handles.lapsedCount() == 1 })
	if !exists(t, tf.s, leased) || !exists(t, tf.s, plain) {
		t.Fatal("a file freed while a lapsed session's handle is kept")
	}
}

// The handles of a session whose lease ran out are kept for HandleGrace:
// a fresh session of the same mount that takes one back (Reopen) keeps
// its file; the others are released when the grace ends.
func TestHandlesKeptThroughHandleGrace(t *testing.T) {
	const ttl, grace = time.Second, 2 * time.Second
	tf, lc := startLockFiler(t, func(c *Config) { c.LockSessionTTL, c.HandleGrace = ttl, grace })
	ctx := context.Background()
	start := time.Now() // at or before S lapses
	open(t, lc, "S", 0)
	back := openUnlinked(t, tf.api, "back", "S")
	gone := openUnlinked(t, tf.api, "gone", "S")
	closed := openUnlinked(t, tf.api, "closed", "S")
	within(t, 3*time.Second, "S lapsed, its handles kept", func() bool { return tf.s.handles.lapsedCount() == 3 })
	// A release naming the lapsed session drops its handle at once.
	if _, err := tf.api.Release(ctx, &filerpb.ReleaseRequest{Inode: closed, Lease: "S"}); err != nil {
		t.Fatal(err)
	}
	if exists(t, tf.s, closed) || tf.s.handles.lapsedCount() != 2 {
		t.Fatalf("a release naming the lapsed session: file there %v, %d handles kept", exists(t, tf.s, closed), tf.s.handles.lapsedCount())
	}
	open(t, lc, "S2", 0)
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() { // the mount's fresh session stays live
		defer close(renewed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(ttl / 4):
				_ = lc.Renew(ctx, "S2")
			}
		}
	}()
	defer func() { close(stop); <-renewed }()
	r, err := tf.api.Reopen(ctx, &filerpb.ReopenRequest{Session: "S2", Inodes: []uint64{back}})
	if err != nil || len(r.Gone)+len(r.Failed) != 0 {
		t.Fatalf("reopen within the grace: %v %v", r, err)
	}
	if !exists(t, tf.s, gone) {
		t.Fatalf("a lapsed session's file freed %v after it was opened, within the grace", time.Since(start))
	}
	within(t, grace+3*time.Second, "the file nobody took back freed after the grace", func() bool { return !exists(t, tf.s, gone) })
	if since := time.Since(start); since < grace {
		t.Fatalf("freed %v after the open, before the grace of %v", since, grace)
	}
	if !exists(t, tf.s, back) || tf.s.handles.lapsedCount() != 0 {
		t.Fatal("the file taken back was freed, or handles are still kept")
	}
	if _, err := tf.api.Release(ctx, &filerpb.ReleaseRequest{Inode: back, Lease: "S2"}); err != nil {
		t.Fatal(err)
	}
	if exists(t, tf.s, back) {
		t.Fatal("the file taken back outlived its last release")
	}
}

// A restart while a lapsed session's handles are kept keeps its files for
// HandleGrace (longer than the lock grace period here): the kept handles
// hold the "sessions live" marker up, and the previous run's orphans wait
// for the longer of the two graces.
func TestHandlesKeptAcrossRestart(t *testing.T) {
	const ttl, lockGrace, handleGrace = 300 * time.Millisecond, 500 * time.Millisecond, 2500 * time.Millisecond
	tf, lc := startLockFiler(t, func(c *Config) { c.LockSessionTTL, c.HandleGrace = ttl, handleGrace })
	open(t, lc, "S", 0)
	f := openUnlinked(t, tf.api, "f", "S")
	within(t, 3*time.Second, "S lapsed, its handle kept", func() bool { return tf.s.handles.lapsedCount() == 1 })
	time.Sleep(lockMarkerCheck + lockSweepInterval(ttl)) // a sweep that would clear the marker
	cfg := tf.s.cfg
	if err := tf.s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.LockGrace = lockGrace
	restarted := time.Now()
	s2 := serve(t, cfg)
	if !exists(t, s2, f) {
		t.Fatal("a lapsed session's file freed at the restart")
	}
	time.Sleep(time.Until(restarted.Add(lockGrace + time.Second)))
	if !exists(t, s2, f) {
		t.Fatalf("freed within %v of the restart, before HandleGrace %v", lockGrace+time.Second, handleGrace)
	}
	within(t, handleGrace+3*time.Second, "the file nobody took back freed", func() bool { return !exists(t, s2, f) })
}

// After a restart the previous run's open-unlinked files wait out the
// grace period: those a mount takes back with Reopen stay, the others are
// freed when it ends.
func TestHandlesReopenedAfterRestart(t *testing.T) {
	tf, lc := startLockFiler(t, nil)
	ctx := context.Background()
	open(t, lc, "A", time.Minute)
	kept := openUnlinked(t, tf.api, "kept", "A")
	dropped := openUnlinked(t, tf.api, "dropped", "A")
	const grace = 800 * time.Millisecond
	s2 := restartWithGrace(t, tf, 500*time.Millisecond, grace)
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: s2.GRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	api, lc2 := fc.API(), fc.Locks()
	if !exists(t, s2, kept) || !exists(t, s2, dropped) {
		t.Fatal("open-unlinked files freed at the start of a grace period")
	}
	_, err = api.Reopen(ctx, &filerpb.ReopenRequest{Inodes: []uint64{kept}, Session: "A"})
	if !client.SessionExpired(err) {
		t.Fatalf("reopen under the session of before the restart = %v, want the session expired", err)
	}
	open(t, lc2, "A2", 0)
	kctx, stop := context.WithCancel(ctx)
	kdone := make(chan error, 1)
	go func() { kdone <- lc2.KeepAlive(kctx, "A2", 500*time.Millisecond) }()
	defer func() {
		stop()
		<-kdone
	}()
	const missing = 987654321
	resp, err := api.Reopen(ctx, &filerpb.ReopenRequest{Inodes: []uint64{kept, missing}, Session: "A2"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Gone, []uint64{missing}) {
		t.Fatalf("Reopen gone = %v, want [%d]", resp.Gone, uint64(missing))
	}
	within(t, grace+3*time.Second, "the file nobody took back freed after the grace period", func() bool { return !exists(t, s2, dropped) })
	if !exists(t, s2, kept) {
		t.Fatal("the file taken back was freed")
	}
	if _, err := api.Release(ctx, &filerpb.ReleaseRequest{Inode: kept, Lease: "A2"}); err != nil {
		t.Fatal(err)
	}
	if exists(t, s2, kept) {
		t.Fatal("the file taken back outlived its last release")
	}
}
