package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/lockpb"
)

func TestLockFromStatus(t *testing.T) {
	for _, tc := range []struct {
		code     codes.Code
		errno    string
		lock     error // nil: no lock sentinel
		sentinel error
	}{
		{codes.FailedPrecondition, "EAGAIN", ErrWouldBlock, ErrPrecondition},
		{codes.Aborted, "EDEADLK", ErrDeadlock, ErrPrecondition},
		{codes.NotFound, "ENOLCK", ErrSessionExpired, ErrNotFound},
		{codes.Unavailable, "EAGAIN", ErrGrace, ErrUnavailable},
		{codes.FailedPrecondition, "ENOLCK", ErrNoGrace, ErrPrecondition},
		{codes.ResourceExhausted, "ENOLCK", ErrLockLimit, ErrNoSpace},
		{codes.InvalidArgument, "EINVAL", nil, ErrInvalid},
		{codes.Unavailable, "EIO", nil, ErrUnavailable},
		{codes.NotFound, "ENOENT", nil, ErrNotFound},
	} {
		err := LockFromStatus("SetLk", posixStatus(tc.code, "boom", tc.errno))
		if !errors.Is(err, tc.sentinel) || status.Code(err) != tc.code || PosixErrno(err) != tc.errno {
			t.Errorf("%v %s: %v (code %v, errno %q), want %v", tc.code, tc.errno, err, status.Code(err), PosixErrno(err), tc.sentinel)
		}
		for _, s := range []error{ErrWouldBlock, ErrDeadlock, ErrSessionExpired, ErrGrace, ErrNoGrace, ErrLockLimit} {
			if errors.Is(err, s) != (s == tc.lock) {
				t.Errorf("%v %s: errors.Is(%v) = %v", tc.code, tc.errno, s, !(s == tc.lock))
			}
		}
	}
	if err := LockFromStatus("SetLk", nil); err != nil {
		t.Fatal(err)
	}
	plain := errors.New("plain")
	if err := LockFromStatus("SetLk", plain); !errors.Is(err, plain) {
		t.Fatal(err)
	}
}

// withdrawFiler answers a withdrawn SetLkw with grant (OK) or, unless
// grant, CANCELED: the two outcomes a real filer may give.
type withdrawFiler struct {
	lockpb.UnimplementedLocksServer
	grant bool
	got   chan struct{} // closed when the request arrived
}

func (f *withdrawFiler) SetLkw(s lockpb.Locks_SetLkwServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	close(f.got)
	if _, err := s.Recv(); err == nil {
		return status.Error(codes.InvalidArgument, "want the end of the client's side")
	}
	if f.grant {
		return s.Send(&lockpb.SetLkResponse{})
	}
	return status.Error(codes.Canceled, "withdrawn")
}

func TestLockClientSetLkwWithdrawal(t *testing.T) {
	for _, grant := range []bool{false, true} {
		f := &withdrawFiler{grant: grant, got: make(chan struct{})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		lockpb.RegisterLocksServer(gs, f)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = gs.Serve(ln)
		}()
		lc, err := NewLockClient(LockClientConfig{Address: ln.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() { res <- lc.SetLkw(ctx, "s", &lockpb.Lock{Inode: 1}) }()
		select {
		case <-f.got:
		case <-time.After(5 * time.Second):
			t.Fatal("request never reached the server")
		}
		cancel()
		select {
		case err = <-res:
		case <-time.After(5 * time.Second):
			t.Fatal("SetLkw did not return after its context ended")
		}
		if grant && err != nil {
			t.Errorf("granted during withdrawal: SetLkw = %v, want nil", err)
		}
		if !grant && (!errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled)) {
			t.Errorf("withdrawn: SetLkw = %v, want ErrCanceled and context.Canceled", err)
		}
		lc.Close()
		gs.Stop()
		<-done
	}
}

func TestLockClientConfig(t *testing.T) {
	if _, err := NewLockClient(LockClientConfig{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no address: %v", err)
	}
	lc, err := NewLockClient(LockClientConfig{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if err := lc.KeepAlive(context.Background(), "s", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("KeepAlive ttl 0: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := lc.SetLkw(ctx, "s", &lockpb.Lock{}); !errors.Is(err, ErrCanceled) {
		t.Fatalf("SetLkw on a done context: %v", err)
	}
}
