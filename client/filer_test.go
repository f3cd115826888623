package client

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
)

// fakeFiler fails Lookup with ENOENT and ends SubscribeMetadata with a
// trimmed-log error after one event.
type fakeFiler struct {
	filerpb.UnimplementedFilerServer
}

func posixStatus(code codes.Code, msg, errno string) error {
	st, err := status.New(code, msg).WithDetails(&filerpb.PosixError{Errno: errno})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func (fakeFiler) Lookup(context.Context, *filerpb.LookupRequest) (*filerpb.EntryResponse, error) {
	return nil, posixStatus(codes.NotFound, "no such entry", "ENOENT")
}

func (fakeFiler) SubscribeMetadata(_ *filerpb.SubscribeMetadataRequest, s filerpb.Filer_SubscribeMetadataServer) error {
	if err := s.Send(&filerpb.MetadataEvent{TsNs: 1}); err != nil {
		return err
	}
	return status.Error(codes.FailedPrecondition, "change log trimmed")
}

func TestFilerClientErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	filerpb.RegisterFilerServer(gs, fakeFiler{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	defer func() {
		gs.Stop()
		<-done
	}()

	fc, err := NewFilerClient(FilerClientConfig{Address: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	ctx := context.Background()

	_, err = fc.API().Lookup(ctx, &filerpb.LookupRequest{Parent: 1, Name: "x"})
	if !errors.Is(err, ErrNotFound) || PosixErrno(err) != "ENOENT" || status.Code(err) != codes.NotFound {
		t.Fatalf("lookup: %v (errno %q, code %v)", err, PosixErrno(err), status.Code(err))
	}
	// Wrapped further by a caller, the errno survives.
	if w := errors.Join(errors.New("mount"), err); PosixErrno(w) != "ENOENT" || !errors.Is(w, ErrNotFound) {
		t.Fatalf("wrapped: %v", w)
	}
	// Unimplemented: a status without errno.
	_, err = fc.API().KvGet(ctx, &filerpb.KvGetRequest{Key: []byte("k")})
	if PosixErrno(err) != "" || !errors.Is(err, ErrInternal) {
		t.Fatalf("kvget: %v", err)
	}

	stream, err := fc.API().SubscribeMetadata(ctx, &filerpb.SubscribeMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.TsNs != 1 {
		t.Fatalf("first event %v, %v", ev, err)
	}
	_, err = stream.Recv()
	if !errors.Is(err, ErrPrecondition) || status.Code(err) != codes.FailedPrecondition || errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
}

func TestPosixErrno(t *testing.T) {
	if PosixErrno(nil) != "" || PosixErrno(errors.New("plain")) != "" {
		t.Fatal("errno from an error without one")
	}
	if got := PosixErrno(posixStatus(codes.AlreadyExists, "exists", "EEXIST")); got != "EEXIST" {
		t.Fatalf("raw status: %q", got)
	}
	if _, err := NewFilerClient(FilerClientConfig{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no address: %v", err)
	}
}

func TestWithFilerSignature(t *testing.T) {
	ctx := WithFilerSignature(context.Background(), -42)
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok || len(md.Get(FilerSignatureKey)) != 1 || md.Get(FilerSignatureKey)[0] != "-42" {
		t.Fatalf("outgoing metadata %v", md)
	}
}
