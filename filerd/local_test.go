package filerd

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

// The in-process connection serves what the network one does: unary
// calls with the signature interceptor, errors with their errno, the
// change feed stream, the lock service with a blocking wait, and it
// refuses calls once the server is closed.
func TestLocalConn(t *testing.T) {
	tf := startFiler(t, func(c *Config) { c.LockGrace = 0 })
	fc, err := client.NewFilerClient(client.FilerClientConfig{Conn: tf.s.Local()})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	checkConn(t, tf, fc)
}

// The wire serves the same, its unary calls all on the wire; and so does
// plain gRPC.
func TestWireConn(t *testing.T) {
	for _, noWire := range []bool{false, true} {
		tf := startFiler(t, func(c *Config) { c.LockGrace = 0 })
		fc, err := client.NewFilerClient(client.FilerClientConfig{Address: tf.s.GRPCAddr(), NoWire: noWire})
		if err != nil {
			t.Fatal(err)
		}
		defer fc.Close()
		checkConn(t, tf, fc)
		w, g := fc.WireCalls()
		if noWire && w+g != 0 || !noWire && (w < 5 || g != 0) {
			t.Errorf("NoWire %v: %d unary calls on the wire, %d on gRPC", noWire, w, g)
		}
	}
}

// checkConn runs TestLocalConn's checks through fc.
func checkConn(t *testing.T, tf *testFiler, fc *client.FilerClient) {
	t.Helper()
	api := fc.API()
	ctx := context.Background()

	sub := subscribe(t, api, &filerpb.SubscribeMetadataRequest{})
	peer := metadata.AppendToOutgoingContext(ctx, client.FilerSignatureKey, "77")
	f := must[*filerpb.EntryResponse](t)(api.Create(peer, &filerpb.CreateRequest{Parent: uint64(meta.RootInode), Name: "f", Mode: 0o644, Exclusive: true}))
	if got := must[*filerpb.EntryResponse](t)(tf.api.Lookup(ctx, &filerpb.LookupRequest{Parent: uint64(meta.RootInode), Name: "f"})); got.Attr.Inode != f.Attr.Inode {
		t.Fatalf("network lookup found inode %d, created %d", got.Attr.Inode, f.Attr.Inode)
	}
	all := readLog(t, tf.s, 0)
	evs := sub.waitFor(t, all[len(all)-1].TsNs)
	if last := evs[len(evs)-1]; last.NewPath != "/f" || !slices.Contains(last.Signatures, 77) {
		t.Fatalf("events through the stream: %+v", evs)
	}
	_, err := api.Lookup(ctx, &filerpb.LookupRequest{Parent: uint64(meta.RootInode), Name: "missing"})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
	_, err = api.Create(ctx, &filerpb.CreateRequest{Parent: uint64(meta.RootInode), Name: "f", Mode: 0o644, Exclusive: true})
	wantErrno(t, err, "EEXIST", client.ErrExists)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := api.GetAttr(cancelled, &filerpb.GetAttrRequest{Inode: f.Attr.Inode}); status.Code(err) != codes.Canceled {
		t.Fatalf("call with a cancelled context: %v, want CANCELED", err)
	}

	// One session holds a lock; another's blocking wait gets it once
	// the first unlocks.
	lc := fc.Locks()
	open(t, lc, "a", time.Minute)
	open(t, lc, "b", time.Minute)
	ino := f.Attr.Inode
	if err := lc.SetLk(ctx, "a", whole(ino, lockpb.LockType_EXCLUSIVE, 1)); err != nil {
		t.Fatal(err)
	}
	granted := make(chan error, 1)
	go func() { granted <- lc.SetLkw(ctx, "b", whole(ino, lockpb.LockType_EXCLUSIVE, 2)) }()
	select {
	case err := <-granted:
		t.Fatalf("second lock granted while the first is held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := lc.SetLk(ctx, "a", whole(ino, lockpb.LockType_UNLOCK, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-granted:
		if err != nil {
			t.Fatalf("waiting lock: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting lock not granted after the unlock")
	}

	if err := tf.s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: ino})
	if status.Code(err) != codes.Unavailable || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("call after Close: %v, want UNAVAILABLE", err)
	}
}
