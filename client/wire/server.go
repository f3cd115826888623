package wire

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// maxCallsPerConn bounds the calls a client keeps unanswered on one
	// connection; the server closes a connection that runs more.
	maxCallsPerConn = 256
	// replyTimeout bounds writing one answer; a client that stops
	// reading loses its connection.
	replyTimeout = time.Minute
)

// Server runs the unary methods of gRPC services for wire clients.
type Server struct {
	interceptor grpc.UnaryServerInterceptor
	methods     map[string]method // by full method name, "/service/method"
	services    map[string]bool
	ctx         context.Context // handlers' parent: cancelled by Close after the drain
	cancel      context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	inFlight  sync.WaitGroup // handlers running
	wg        sync.WaitGroup // every goroutine the server started
}

type method struct {
	srv     any
	handler grpc.MethodHandler
}

// NewServer returns a server whose handlers run through interceptor, if
// not nil, as a gRPC server's would.
func NewServer(interceptor grpc.UnaryServerInterceptor) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{interceptor: interceptor, methods: map[string]method{}, services: map[string]bool{},
		ctx: ctx, cancel: cancel, listeners: map[net.Listener]struct{}{}, conns: map[*serverConn]struct{}{}}
}

// RegisterService serves desc's unary methods, implemented by impl, as
// grpc.Server.RegisterService would. Call it before Serve.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.services[desc.ServiceName] = true
	for _, m := range desc.Methods {
		s.methods["/"+desc.ServiceName+"/"+m.MethodName] = method{impl, m.Handler}
	}
}

// Serve accepts wire connections on ln (whose clients have sent the
// preface: see Mux) until ln fails or the server is closed; after Close
// it returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.listeners, ln)
			if s.closed {
				return nil
			}
			return fmt.Errorf("wire: accept: %w", err)
		}
		c := &serverConn{s: s, nc: nc, r: bufio.NewReaderSize(nc, 64<<10), calls: map[uint64]context.CancelFunc{},
			gone: make(chan struct{}), done: make(chan struct{})}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.start()
	}
}

// Close drains the server as grpc.Server.GracefulStop does, within wait:
// it stops accepting and tells every client to send no more calls; a
// call that crosses that message is refused unrun, and the client sends
// it again elsewhere. Once each client has answered and the calls
// running have ended, or wait has passed, it cancels the calls left,
// closes every connection and waits for its goroutines (a handler that
// ignores its context holds it up).
func (s *Server) Close(wait time.Duration) {
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.wg.Add(len(conns) + 1)
	s.mu.Unlock()
	for _, c := range conns {
		go func() { // a client that does not read must not hold up the others
			defer s.wg.Done()
			c.send(appendHeader(nil, kindGoaway, 0, 0))
		}()
	}
	drained, stopWaiting := make(chan struct{}), make(chan struct{})
	go func() {
		defer s.wg.Done()
		for _, c := range conns {
			select {
			case <-c.gone:
			case <-c.done:
			case <-stopWaiting:
				return
			}
		}
		s.inFlight.Wait() // ends at the latest once s.ctx is cancelled
		close(drained)
	}()
	select {
	case <-drained:
	case <-timeout.C:
	}
	close(stopWaiting)
	s.cancel()
	s.mu.Lock()
	left := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left {
		c.shutdown()
	}
	s.wg.Wait()
}

// serverConn is one client connection. One goroutine at a time reads
// it; the one that reads a call hands the reading on to a new goroutine
// and runs the call itself, so an answer needs no hand-off between
// goroutines and a slow call does not hold up the others.
type serverConn struct {
	s    *Server
	nc   net.Conn
	r    *bufio.Reader
	hdr  [headerLen]byte // the reader's scratch
	gone chan struct{}   // closed when the client answers a goaway
	done chan struct{}   // closed by shutdown

	wmu sync.Mutex // one frame at a time

	mu     sync.Mutex
	calls  map[uint64]context.CancelFunc
	closed bool
}

func (c *serverConn) start() {
	c.send([]byte(preface)) // under the write lock: a goaway must come after it
	c.read()
}

// read reads frames until it has a call to run or the connection ends.
// It runs on a goroutine counted in s.wg.
func (c *serverConn) read() {
	defer c.s.wg.Done()
	for {
		f, err := readFrame(c.r, &c.hdr)
		if err != nil {
			c.shutdown()
			return
		}
		switch f.kind {
		case kindCancel:
			c.mu.Lock()
			cancel := c.calls[f.id]
			c.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		case kindGoneAck:
			c.mu.Lock()
			select {
			case <-c.gone:
			default:
				close(c.gone)
			}
			c.mu.Unlock()
		case kindCall:
			cl, err := decodeCall(f.body)
			if err != nil {
				c.shutdown()
				return
			}
			ctx, ok := c.begin(f.id, cl)
			if !ok { // refused, or a duplicate id
				continue
			}
			c.s.wg.Add(1)
			go c.read()
			c.run(ctx, f.id, cl)
			return
		default:
			c.shutdown()
			return
		}
	}
}

// begin registers a call and returns its context, or refuses it.
func (c *serverConn) begin(id uint64, cl call) (context.Context, bool) {
	s := c.s
	s.mu.Lock()
	closing := s.closed
	if !closing {
		s.inFlight.Add(1)
	}
	s.mu.Unlock()
	if closing {
		c.send(appendHeader(nil, kindRefused, id, 0))
		return nil, false
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if cl.timeout > 0 {
		ctx, cancel = context.WithTimeout(s.ctx, cl.timeout)
	} else {
		ctx, cancel = context.WithCancel(s.ctx)
	}
	if cl.md == nil {
		cl.md = metadata.MD{}
	}
	ctx = metadata.NewIncomingContext(ctx, cl.md)
	c.mu.Lock()
	_, dup := c.calls[id]
	bad := dup || len(c.calls) >= maxCallsPerConn
	if !bad && !c.closed {
		c.calls[id] = cancel
		c.mu.Unlock()
		return ctx, true
	}
	c.mu.Unlock()
	cancel()
	s.inFlight.Done()
	if bad {
		c.shutdown() // a client bug: end the connection rather than guess
	}
	return nil, false
}

func (c *serverConn) run(ctx context.Context, id uint64, cl call) {
	defer c.s.inFlight.Done()
	var resp any
	var err error
	if m, ok := c.s.methods[cl.method]; ok {
		dec := func(in any) error {
			msg, ok := in.(proto.Message)
			if !ok {
				return status.Errorf(codes.Internal, "wire: %T is not a protobuf message", in)
			}
			err := proto.Unmarshal(cl.payload, msg)
			cl.payload = nil
			if err != nil {
				return status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
			}
			return nil
		}
		resp, err = m.handler(m.srv, ctx, dec, c.s.interceptor)
	} else {
		err = unknownMethod(cl.method, c.s.services)
	}
	c.mu.Lock()
	cancel := c.calls[id]
	delete(c.calls, id)
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.reply(id, resp, err)
}

// unknownMethod is gRPC's answer to a method it does not serve.
func unknownMethod(full string, services map[string]bool) error {
	svc, name, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !services[svc] {
		return status.Errorf(codes.Unimplemented, "unknown service %v", svc)
	}
	return status.Errorf(codes.Unimplemented, "unknown method %v for service %v", name, svc)
}

// reply sends a call's answer.
func (c *serverConn) reply(id uint64, resp any, err error) {
	b := appendHeader(make([]byte, 0, 256), kindReply, id, 0)
	if err == nil && resp != nil { // gRPC answers a nil answer with an empty message
		msg, ok := resp.(proto.Message)
		var merr error
		switch {
		case !ok:
			err = status.Errorf(codes.Internal, "grpc: error while marshaling: %T is not a protobuf message", resp)
		default:
			if b, merr = (proto.MarshalOptions{}).MarshalAppend(b, msg); merr != nil {
				err = status.Errorf(codes.Internal, "grpc: error while marshaling: %v", merr)
			} else if n := len(b) - headerLen; n > maxMessage {
				err = status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, maxMessage)
			}
		}
	}
	if err != nil {
		b = appendHeader(b[:0], kindError, id, 0)
		b, _ = (proto.MarshalOptions{}).MarshalAppend(b, statusOf(err).Proto())
	}
	putLength(b)
	c.send(b)
}

// send writes one whole frame; a failed write ends the connection (before
// anyone else writes after a frame cut short).
func (c *serverConn) send(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(replyTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.shutdown()
	}
}

// shutdown closes the connection and cancels its calls; their answers
// go nowhere.
func (c *serverConn) shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	for _, cancel := range c.calls {
		cancel()
	}
	c.mu.Unlock()
	c.nc.Close()
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

// statusOf is the status a gRPC server would send for a handler's error.
func statusOf(err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		return st
	}
	return status.FromContextError(err) // UNKNOWN unless a context error
}
