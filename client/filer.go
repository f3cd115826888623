package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fullstorydev/grpchan"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client/wire"
)

// FilerClientConfig configures a FilerClient.
type FilerClientConfig struct {
	// Address is the filer's gRPC address (host:port).
	Address string
	// DialOptions are extra gRPC dial options. They shape the gRPC
	// connection, which carries streams, and unary calls only with
	// NoWire or to a filer without the wire.
	DialOptions []grpc.DialOption
	// Conn, if set, is the connection to use instead of dialing
	// Address: a filer in the same process hands one out
	// (filerd.Server.Local) so that calls skip the network. The
	// client does not close it.
	Conn grpc.ClientConnInterface
	// WaitForReady makes calls wait, until their context ends, for a
	// filer that cannot be reached instead of failing at once.
	WaitForReady bool
	// NoWire sends unary calls over gRPC too. By default they go over
	// the filer's lighter wire protocol (package wire), which takes a
	// third of gRPC's time per call, and over gRPC only to a filer
	// without it.
	NoWire bool
}

// FilerClient is a connection to a filer's gRPC API. Errors returned by
// its API wrap this package's sentinels (as FromStatus makes them), keep
// the gRPC status (status.FromError still works) and carry the filer's
// errno name, which PosixErrno returns. Safe for concurrent use.
type FilerClient struct {
	conn  grpc.ClientConnInterface
	wire  *wire.Conn // nil in-process or with NoWire
	close func() error
	api   filerpb.FilerClient
}

// NewFilerClient connects lazily to the filer at cfg.Address.
func NewFilerClient(cfg FilerClientConfig) (*FilerClient, error) {
	if cfg.Conn != nil {
		conn := grpchan.InterceptClientConn(cfg.Conn, filerUnaryErrors, filerStreamErrors)
		return &FilerClient{conn: conn, close: func() error { return nil }, api: filerpb.NewFilerClient(conn)}, nil
	}
	if cfg.Address == "" {
		return nil, fmt.Errorf("filer client: %w: no filer address", ErrInvalid)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, TransportDialOptions()...)
	if cfg.WaitForReady {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
	}
	opts = append(opts, cfg.DialOptions...)
	gconn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("filer client for %s: %w", cfg.Address, err)
	}
	var conn grpc.ClientConnInterface = gconn
	var wc *wire.Conn
	closeAll := gconn.Close
	if !cfg.NoWire {
		wc, err = wire.NewConn(wire.Config{Address: cfg.Address, Fallback: gconn, WaitForReady: cfg.WaitForReady})
		if err != nil {
			gconn.Close()
			return nil, fmt.Errorf("filer client for %s: %w", cfg.Address, err)
		}
		conn = wc
		closeAll = func() error { return errors.Join(wc.Close(), gconn.Close()) }
	}
	conn = grpchan.InterceptClientConn(conn, filerUnaryErrors, filerStreamErrors)
	return &FilerClient{conn: conn, wire: wc, close: closeAll, api: filerpb.NewFilerClient(conn)}, nil
}

// WireCalls returns how many unary calls went over the wire and how
// many over gRPC because the filer lacks it; both 0 in-process or with
// NoWire.
func (f *FilerClient) WireCalls() (wire, grpc uint64) {
	if f.wire == nil {
		return 0, 0
	}
	return f.wire.Calls()
}

// API returns the filer's gRPC client.
func (f *FilerClient) API() filerpb.FilerClient { return f.api }

// Close releases the connection.
func (f *FilerClient) Close() error { return f.close() }

// PosixErrno returns the errno name ("ENOENT", "EEXIST", ...) a filer
// attached to err, or "" if there is none.
func PosixErrno(err error) string {
	if err == nil {
		return ""
	}
	var fe *filerError
	if errors.As(err, &fe) {
		return fe.errno
	}
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	return errnoOf(st)
}

func errnoOf(st *status.Status) string {
	for _, d := range st.Details() {
		if pe, ok := d.(*filerpb.PosixError); ok {
			return pe.Errno
		}
	}
	return ""
}

// filerError is a filer call's error: the sentinel-wrapping error of
// FromStatus, the status itself and its errno.
type filerError struct {
	err   error
	st    *status.Status
	errno string
}

func (e *filerError) Error() string              { return e.err.Error() }
func (e *filerError) Unwrap() error              { return e.err }
func (e *filerError) GRPCStatus() *status.Status { return e.st }

// filerErr converts a gRPC error of method into a filerError.
func filerErr(method string, err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	what := "filer " + method[strings.LastIndexByte(method, '/')+1:]
	return &filerError{err: FromStatus(what, err), st: st, errno: errnoOf(st)}
}

func filerUnaryErrors(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return filerErr(method, invoker(ctx, method, req, reply, cc, opts...))
}

func filerStreamErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, filerErr(method, err)
	}
	return &filerStream{ClientStream: cs, method: method}, nil
}

// filerStream converts the errors of a stream's messages.
type filerStream struct {
	grpc.ClientStream
	method string
}

func (s *filerStream) RecvMsg(m any) error { return filerErr(s.method, s.ClientStream.RecvMsg(m)) }
func (s *filerStream) SendMsg(m any) error { return filerErr(s.method, s.ClientStream.SendMsg(m)) }

// FilerSignatureKey is the gRPC request metadata key under which a client
// gives a filer its signature(s) on calls that change the namespace; the
// filer records them in those changes' events, so a subscriber with that
// client_signature (a mount following its own changes, filer.sync) skips
// them. See api/filerpb/filer.proto.
const FilerSignatureKey = "kelp-signature"

// WithFilerSignature returns a context whose filer calls carry sig under
// FilerSignatureKey.
func WithFilerSignature(ctx context.Context, sig int32) context.Context {
	return metadata.AppendToOutgoingContext(ctx, FilerSignatureKey, strconv.FormatInt(int64(sig), 10))
}
