package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echo is a test service with one unary method whose request says what
// to do.
type echo struct {
	cancelled chan struct{} // a "block" call's context ended
	ended     atomic.Int32  // "wait" calls whose context ended
}

const echoMethod = "/test.Echo/Echo"

var echoDesc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) {
			return srv.(*echo).do(ctx, req.(*wrapperspb.StringValue))
		}
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}, h)
	}}},
}

func (e *echo) do(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	switch v := in.Value; {
	case v == "fail":
		st, _ := status.New(codes.NotFound, "no such thing").WithDetails(wrapperspb.String("ENOENT"))
		return nil, st.Err()
	case v == "plain-error":
		return nil, errors.New("something broke")
	case v == "block":
		<-ctx.Done()
		close(e.cancelled)
		return nil, ctx.Err()
	case v == "wait":
		<-ctx.Done()
		e.ended.Add(1)
		return nil, ctx.Err()
	case v == "md":
		md, _ := metadata.FromIncomingContext(ctx)
		return wrapperspb.String(strings.Join(md.Get("who"), ",")), nil
	case v == "deadline":
		dl, ok := ctx.Deadline()
		return wrapperspb.String(fmt.Sprint(ok && time.Until(dl) > 0 && time.Until(dl) <= time.Minute)), nil
	case v == "nil": // gRPC answers an empty message
		return nil, nil
	case v == "slow":
		select {
		case <-time.After(300 * time.Millisecond):
			return wrapperspb.String("slow done"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case v == "big": // over gRPC's default 4 MiB limit
		return wrapperspb.String(strings.Repeat("y", 5<<20)), nil
	case v == "tagged":
		return wrapperspb.String(fmt.Sprint(ctx.Value(tagKey{}))), nil
	default:
		return wrapperspb.String("echo:" + v), nil
	}
}

type tagKey struct{}

// tagging is an interceptor that leaves a mark the handler reports.
func tagging(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(context.WithValue(ctx, tagKey{}, "intercepted "+info.FullMethod), req)
}

// testServer is a Mux on 127.0.0.1 with a wire server and a gRPC server
// (health, and the echo service) behind it.
type testServer struct {
	addr string
	echo *echo
	mux  *Mux
	ws   *Server
	gs   *grpc.Server
	wg   sync.WaitGroup
}

func startServer(t *testing.T, addr string) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), echo: &echo{cancelled: make(chan struct{})}, mux: NewMux(ln)}
	s.ws = NewServer(tagging)
	s.ws.RegisterService(&echoDesc, s.echo)
	s.gs = grpc.NewServer(grpc.UnaryInterceptor(tagging))
	s.gs.RegisterService(&echoDesc, s.echo)
	healthpb.RegisterHealthServer(s.gs, health.NewServer())
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.ws.Serve(s.mux.Wire()) }()
	go func() { defer s.wg.Done(); _ = s.gs.Serve(s.mux.GRPC()) }()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) stop() {
	s.gs.Stop()
	s.ws.Close(time.Second)
	s.mux.Close()
	s.wg.Wait()
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func newConn(t *testing.T, cfg Config) *Conn {
	t.Helper()
	if cfg.Fallback == nil {
		cfg.Fallback = grpcConn(t, cfg.Address)
	}
	c, err := NewConn(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func echoCall(ctx context.Context, cc grpc.ClientConnInterface, v string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, echoMethod, wrapperspb.String(v), out)
	return out.GetValue(), err
}

// TestSameAsGRPC runs each case over the wire and over gRPC and wants
// the same answer or the same status.
func TestSameAsGRPC(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	w := newConn(t, Config{Address: s.addr})
	g := grpcConn(t, s.addr)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "who", "a", "who", "b")
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, v := range []string{"hello", "", "fail", "plain-error", "md", "deadline", "tagged", strings.Repeat("x", 3<<20), "big", "nil"} {
		c := ctx
		if v == "deadline" {
			c = dctx
		}
		wv, werr := echoCall(c, w, v)
		gv, gerr := echoCall(c, g, v)
		if wv != gv {
			t.Errorf("%.20q: wire answered %.40q, gRPC %.40q", v, wv, gv)
		}
		ws, gs := status.Convert(werr), status.Convert(gerr)
		if ws.Code() != gs.Code() || ws.Message() != gs.Message() || fmt.Sprint(ws.Details()) != fmt.Sprint(gs.Details()) {
			t.Errorf("%.20q: wire error %v %v, gRPC %v %v", v, ws, ws.Details(), gs, gs.Details())
		}
	}
	if got, _ := echoCall(ctx, w, "md"); got != "a,b" {
		t.Errorf("metadata reached the handler as %q, want a,b", got)
	}
	if got, _ := echoCall(dctx, w, "deadline"); got != "true" {
		t.Errorf("the deadline did not reach the handler")
	}
	for _, m := range []string{"/test.Echo/Nope", "/test.Nope/Echo"} {
		ws := status.Convert(w.Invoke(ctx, m, wrapperspb.String(""), new(wrapperspb.StringValue)))
		gs := status.Convert(g.Invoke(ctx, m, wrapperspb.String(""), new(wrapperspb.StringValue)))
		if ws.Code() != codes.Unimplemented || ws.Message() != gs.Message() {
			t.Errorf("%s: wire %v, gRPC %v", m, ws, gs)
		}
	}
	if len(preface) != 24 {
		t.Errorf("the preface has %d bytes, HTTP/2's 24", len(preface))
	}
	// gRPC still works on the shared port, streams included.
	hc := healthpb.NewHealthClient(w)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("health check over the wire (not registered there): %v, want UNIMPLEMENTED", err)
	}
	wc, err := healthpb.NewHealthClient(w).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := wc.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health watch through the fallback: %v %v", r, err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	w := newConn(t, Config{Address: s.addr})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				v := fmt.Sprintf("%d-%d", g, i)
				got, err := echoCall(context.Background(), w, v)
				if err != nil || got != "echo:"+v {
					errs <- fmt.Errorf("call %s: %q, %v", v, got, err)
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
}

func TestCancelReachesHandler(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	w := newConn(t, Config{Address: s.addr})
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := echoCall(ctx, w, "block")
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-res:
		if status.Code(err) != codes.Canceled {
			t.Errorf("cancelled call: %v, want CANCELED", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled call did not return")
	}
	select {
	case <-s.echo.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	// The connection goes on.
	if got, err := echoCall(context.Background(), w, "x"); err != nil || got != "echo:x" {
		t.Errorf("after a cancel: %q %v", got, err)
	}
	// A deadline ends a call the same way.
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	s.echo.cancelled = make(chan struct{})
	if _, err := echoCall(dctx, w, "block"); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("call past its deadline: %v, want DEADLINE_EXCEEDED", err)
	}
}

// TestFallbackWithoutWire: a plain gRPC server (no Mux) gets every call.
func TestFallbackWithoutWire(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	gs.RegisterService(&echoDesc, &echo{})
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	defer func() { gs.Stop(); <-done }()
	w := newConn(t, Config{Address: ln.Addr().String()})
	for i := range 3 {
		if got, err := echoCall(context.Background(), w, "x"); err != nil || got != "echo:x" {
			t.Fatalf("call %d through the fallback: %q %v", i, got, err)
		}
	}
	w.mu.Lock()
	fb := time.Now().Before(w.fallbackTo)
	w.mu.Unlock()
	if !fb {
		t.Error("the client did not note that the server lacks the wire")
	}
}

// TestServerRestart: calls fail with UNAVAILABLE while the server is
// away, or wait for it with WaitForReady, and go on once it is back.
func TestServerRestart(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	addr := s.addr
	w := newConn(t, Config{Address: addr, Fallback: grpcConn(t, addr)})
	if _, err := echoCall(context.Background(), w, "x"); err != nil {
		t.Fatal(err)
	}
	s.stop()
	if _, err := echoCall(context.Background(), w, "x"); status.Code(err) != codes.Unavailable {
		t.Fatalf("call with the server down: %v, want UNAVAILABLE", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan error, 2)
	go func() { // the call's own option
		out := new(wrapperspb.StringValue)
		err := w.Invoke(ctx, echoMethod, wrapperspb.String("y"), out, grpc.WaitForReady(true))
		if err == nil && out.Value != "echo:y" {
			err = fmt.Errorf("answer %q", out.Value)
		}
		res <- err
	}()
	w2 := newConn(t, Config{Address: addr, WaitForReady: true})
	go func() { // the Conn's default
		got, err := echoCall(ctx, w2, "z")
		if err == nil && got != "echo:z" {
			err = fmt.Errorf("answer %q", got)
		}
		res <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-res:
		t.Fatalf("a WaitForReady call returned while the server was down: %v", err)
	default:
	}
	startServer(t, addr)
	for range 2 {
		if err := <-res; err != nil {
			t.Fatalf("a waiting call after the restart: %v", err)
		}
	}
}

func TestCloseWhileCalling(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	w := newConn(t, Config{Address: s.addr})
	res := make(chan error, 1)
	go func() {
		_, err := echoCall(context.Background(), w, "block")
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	w.Close()
	select {
	case err := <-res:
		if status.Code(err) != codes.Canceled {
			t.Errorf("a call when its Conn closed: %v, want CANCELED", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left a call hanging")
	}
	if _, err := echoCall(context.Background(), w, "x"); status.Code(err) != codes.Canceled {
		t.Errorf("a call after Close: %v, want CANCELED", err)
	}
	select {
	case <-s.echo.cancelled: // the lost connection cancelled the handler
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not cancel the handler of a lost connection")
	}
}

func TestServerCloseEndsCalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := NewMux(ln)
	e := &echo{cancelled: make(chan struct{})}
	ws := NewServer(nil)
	ws.RegisterService(&echoDesc, e)
	served := make(chan error, 1)
	go func() { served <- ws.Serve(mux.Wire()) }()
	w := newConn(t, Config{Address: ln.Addr().String()})
	res := make(chan error, 1)
	go func() {
		_, err := echoCall(context.Background(), w, "block")
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ws.Close(100 * time.Millisecond)
	mux.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := <-res; status.Code(err) != codes.Canceled && status.Code(err) != codes.Unavailable {
		t.Errorf("a call running when the server closed: %v", err)
	}
}

func TestFrames(t *testing.T) {
	md := metadata.Pairs("k", "v1", "k", "v2", "other", "")
	b, err := encodeCall(7, call{method: "/a/b", timeout: time.Second, md: md, payload: []byte("payload")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCall(b[headerLen:])
	if err != nil {
		t.Fatal(err)
	}
	if got.method != "/a/b" || got.timeout != time.Second || string(got.payload) != "payload" ||
		fmt.Sprint(got.md["k"]) != "[v1 v2]" || len(got.md["other"]) != 1 {
		t.Errorf("decoded %+v", got)
	}
	for n := range len(b) - headerLen - len("payload") {
		if _, err := decodeCall(b[headerLen : headerLen+n]); err == nil {
			t.Errorf("a call cut to %d bytes decoded", n)
		}
	}
}

// TestDrainAndRestart: a filer restart as the mount sees it. A call
// running when the server closes finishes; a waiting call made while it
// drains runs on the server that comes back, not on the closing one.
func TestDrainAndRestart(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	w := newConn(t, Config{Address: s.addr, WaitForReady: true})
	if _, err := echoCall(context.Background(), w, "x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	slow := make(chan error, 1)
	go func() {
		got, err := echoCall(ctx, w, "slow")
		if err == nil && got != "slow done" {
			err = fmt.Errorf("answer %q", got)
		}
		slow <- err
	}()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		s.stop()
		close(closed)
	}()
	time.Sleep(50 * time.Millisecond) // the server is draining
	later := make(chan error, 1)
	go func() {
		got, err := echoCall(ctx, w, "later")
		if err == nil && got != "echo:later" {
			err = fmt.Errorf("answer %q", got)
		}
		later <- err
	}()
	if err := <-slow; err != nil {
		t.Errorf("a call running through the drain: %v", err)
	}
	<-closed
	select {
	case err := <-later:
		t.Fatalf("a waiting call made during the drain returned before the restart: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	s2 := startServer(t, s.addr)
	if err := <-later; err != nil {
		t.Fatalf("a waiting call made during the drain: %v", err)
	}
	_ = s2
}

// TestManyCallsCancelled: a connection full of calls still hears their
// cancellations, and goes on.
func TestManyCallsCancelled(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	w := newConn(t, Config{Address: s.addr})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range maxCallsPerConn + 20 { // some wait for a slot
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = echoCall(ctx, w, "wait")
		}()
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for s.echo.ended.Load() < maxCallsPerConn && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.echo.ended.Load(); n < maxCallsPerConn {
		t.Errorf("%d of %d running handlers saw their call cancelled", n, maxCallsPerConn)
	}
	if got, err := echoCall(context.Background(), w, "x"); err != nil || got != "echo:x" {
		t.Errorf("after the cancellations: %q %v", got, err)
	}
}

// TestShortDeadlinesSpareOthers: calls that give up mid-send do not take
// the connection, and the calls on it, down with them.
func TestShortDeadlinesSpareOthers(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	w := newConn(t, Config{Address: s.addr})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if got, err := echoCall(ctx, w, "slow"); err != nil || got != "slow done" {
				errs <- fmt.Errorf("a slow call: %q %v", got, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	big := strings.Repeat("z", 3<<20)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			defer cancel()
			_, _ = echoCall(ctx, w, big)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
