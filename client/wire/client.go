package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Config configures a client Conn.
type Config struct {
	// Address is the server's host:port (the gRPC port, behind a Mux).
	Address string
	// Fallback carries streams, and unary calls while the server does
	// not speak the wire. Required.
	Fallback grpc.ClientConnInterface
	// WaitForReady makes a call wait, until its context ends, for a
	// server that cannot be reached (grpc.WaitForReady); otherwise such
	// a call fails at once with UNAVAILABLE. A call's own
	// grpc.WaitForReady option wins.
	WaitForReady bool
	// DialTimeout bounds one attempt to connect and exchange prefaces;
	// 0 means 5 seconds.
	DialTimeout time.Duration
}

// reprobe is how long a client that met a server without the wire
// sends unary calls to Fallback before it tries again.
const reprobe = time.Minute

var (
	errNoWire  = errors.New("the server does not speak the wire")
	errClosing = status.Error(codes.Canceled, "wire: the client connection is closing")
	errRefused = errors.New("refused unrun")
)

// Conn is a client connection: a grpc.ClientConnInterface that sends
// unary calls over the wire and everything else to Config.Fallback. It
// connects at the first call and again after a connection is lost. Safe
// for concurrent use.
type Conn struct {
	cfg      Config
	nextID   atomic.Uint64
	wire     atomic.Uint64   // unary calls sent over the wire
	fallback atomic.Uint64   // unary calls sent to Fallback
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc

	mu         sync.Mutex
	cur        *clientConn              // nil until connected, or once lost
	live       map[*clientConn]struct{} // every connection whose reader runs
	dialing    *dial                    // the attempt in progress, if any
	fallbackTo time.Time                // unary calls go to Fallback until then
	closed     bool
	wg         sync.WaitGroup // dials and connection readers
}

// dial is one connection attempt; callers wait on done.
type dial struct {
	done chan struct{}
	err  error
}

var _ grpc.ClientConnInterface = (*Conn)(nil)

// NewConn returns a Conn; it connects at the first call.
func NewConn(cfg Config) (*Conn, error) {
	if cfg.Address == "" || cfg.Fallback == nil {
		return nil, errors.New("wire: Config needs Address and Fallback")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Conn{cfg: cfg, ctx: ctx, cancel: cancel, live: map[*clientConn]struct{}{}}, nil
}

// Close closes the connection; calls in flight fail with CANCELED, as on
// a closed gRPC connection. It does not close Fallback.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	live := make([]*clientConn, 0, len(c.live))
	for cc := range c.live {
		live = append(live, cc)
	}
	c.mu.Unlock()
	for _, cc := range live {
		cc.fail(errClosing)
	}
	c.wg.Wait()
	return nil
}

// Calls returns how many unary calls went over the wire (each attempt)
// and how many to Fallback.
func (c *Conn) Calls() (wire, fallback uint64) { return c.wire.Load(), c.fallback.Load() }

// NewStream opens a stream on Fallback.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.cfg.Fallback.NewStream(ctx, desc, method, opts...)
}

// Invoke makes a unary call.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	wait := c.cfg.WaitForReady
	for _, o := range opts {
		if ff, ok := o.(grpc.FailFastCallOption); ok {
			wait = !ff.FailFast
		}
	}
	req, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %T is not a protobuf message", args)
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %T is not a protobuf message", reply)
	}
	var cl *call // encoded at the first attempt; a retry takes a new id and timeout
	for {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		cc, err := c.conn(ctx, wait)
		if errors.Is(err, errNoWire) {
			c.fallback.Add(1)
			return c.cfg.Fallback.Invoke(ctx, method, args, reply, opts...)
		}
		if err != nil {
			return err
		}
		if cl == nil {
			payload, err := proto.Marshal(req)
			if err != nil {
				return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
			}
			cl = &call{method: method, payload: payload}
			cl.md, _ = metadata.FromOutgoingContext(ctx)
		}
		if dl, ok := ctx.Deadline(); ok {
			if cl.timeout = time.Until(dl); cl.timeout <= 0 {
				return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
			}
		}
		id := c.nextID.Add(1)
		c.wire.Add(1)
		b, err := encodeCall(id, *cl)
		if err != nil {
			return status.Error(codes.ResourceExhausted, err.Error())
		}
		f, err := cc.roundTrip(ctx, id, b)
		if errors.Is(err, errRefused) {
			continue // it did not run; the next connection may be a new server's
		}
		if err != nil {
			return err
		}
		if f.kind == kindError {
			var st spb.Status
			if err := proto.Unmarshal(f.body, &st); err != nil {
				return status.Errorf(codes.Internal, "wire: decode %s error: %v", method, err)
			}
			if st.Code == int32(codes.OK) { // an error must not read as success
				st.Code = int32(codes.Unknown)
			}
			return status.ErrorProto(&st)
		}
		if len(f.body) > maxMessage {
			return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", len(f.body), maxMessage)
		}
		if err := proto.Unmarshal(f.body, out); err != nil {
			return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		return nil
	}
}

// conn returns the live connection, connecting if there is none, or
// errNoWire while unary calls go to Fallback. It waits for a dial on
// ctx, not on the dial.
func (c *Conn) conn(ctx context.Context, wait bool) (*clientConn, error) {
	backoff := 20 * time.Millisecond
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return nil, errClosing
		case time.Now().Before(c.fallbackTo):
			c.mu.Unlock()
			return nil, errNoWire
		case c.cur != nil && c.cur.usable():
			cur := c.cur
			c.mu.Unlock()
			return cur, nil
		}
		d := c.dialing
		if d == nil {
			d = &dial{done: make(chan struct{})}
			c.dialing = d
			c.wg.Add(1)
			go c.connect(d)
		}
		c.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		if d.err == nil || errors.Is(d.err, errNoWire) || errors.Is(d.err, errClosing) {
			continue // the state says what to do
		}
		if !wait {
			return nil, status.Errorf(codes.Unavailable, "wire: connect to %s: %v", c.cfg.Address, d.err)
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		case <-ctx.Done():
			return nil, status.Errorf(status.FromContextError(ctx.Err()).Code(), "wire: connect to %s: %v (%v)", c.cfg.Address, ctx.Err(), d.err)
		}
	}
}

// connect makes one connection attempt and records its outcome.
func (c *Conn) connect(d *dial) {
	defer c.wg.Done()
	cc, err := c.handshake()
	c.mu.Lock()
	c.dialing = nil
	switch {
	case c.closed:
		if err == nil {
			cc.nc.Close()
		}
		err = errClosing
	case err == nil:
		c.cur = cc
		c.live[cc] = struct{}{}
		c.wg.Add(1)
		go c.readLoop(cc)
	case errors.Is(err, errNoWire):
		c.fallbackTo = time.Now().Add(reprobe)
	}
	d.err = err
	c.mu.Unlock()
	close(d.done)
}

// handshake connects and exchanges prefaces.
func (c *Conn) handshake() (*clientConn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.cfg.Address)
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) }) // Close ends it early
	defer stop()
	if _, err := nc.Write([]byte(preface)); err != nil {
		nc.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(nc, 64<<10)
	got := make([]byte, len(preface))
	n, err := io.ReadFull(r, got)
	if n > 0 && string(got[:n]) != preface[:n] {
		// Another protocol answered: a gRPC server sends its
		// settings first.
		nc.Close()
		return nil, fmt.Errorf("%w (%s)", errNoWire, c.cfg.Address)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("wire: handshake: %w", err)
	}
	if !stop() {
		nc.Close()
		return nil, errClosing
	}
	_ = nc.SetDeadline(time.Time{})
	return &clientConn{nc: nc, r: r, wlock: make(chan struct{}, 1), slots: make(chan struct{}, maxCallsPerConn),
		pending: map[uint64]chan frame{}, sent: map[uint64]struct{}{}, done: make(chan struct{})}, nil
}

// readLoop reads a connection's answers until it is lost.
func (c *Conn) readLoop(cc *clientConn) {
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		delete(c.live, cc)
		c.mu.Unlock()
		cc.cancels.Wait() // the connection is lost: they end at once
	}()
	for {
		f, err := readFrame(cc.r, &cc.hdr)
		if err != nil {
			cc.fail(status.Errorf(codes.Unavailable, "wire: connection to %s lost: %v", cc.nc.RemoteAddr(), err))
			return
		}
		switch f.kind {
		case kindReply, kindError, kindRefused:
			cc.mu.Lock()
			ch := cc.pending[f.id]
			delete(cc.pending, f.id)
			if _, ok := cc.sent[f.id]; ok {
				delete(cc.sent, f.id)
				<-cc.slots
			}
			if f.kind == kindRefused {
				cc.draining = true
			}
			cc.mu.Unlock()
			if ch != nil { // nil: the caller gave up
				ch <- f
			}
		case kindGoaway:
			cc.mu.Lock()
			cc.draining = true
			cc.mu.Unlock()
			// Calls written from now on see draining under the write
			// lock, so none follows this answer.
			ctx, cancel := context.WithTimeout(c.ctx, time.Second)
			_, _ = cc.write(ctx, appendHeader(nil, kindGoneAck, 0, 0), false)
			cancel()
		default:
			cc.fail(status.Errorf(codes.Unavailable, "wire: %v: a frame of kind %d from %s", errProtocol, f.kind, cc.nc.RemoteAddr()))
			return
		}
	}
}

// clientConn is one wire connection and the calls waiting on it.
type clientConn struct {
	nc  net.Conn
	r   *bufio.Reader
	hdr [headerLen]byte // the reader's scratch

	cancels sync.WaitGroup // cancel frames being sent; the reader waits for them

	wlock chan struct{} // held (full) while a frame is written
	slots chan struct{} // one per call sent and not yet answered

	mu       sync.Mutex
	pending  map[uint64]chan frame // callers waiting, by call id
	sent     map[uint64]struct{}   // calls sent and not yet answered (each holds a slot)
	draining bool                  // the server asked for no more calls
	err      error                 // why the connection was lost
	done     chan struct{}         // closed once lost
}

// usable reports whether new calls may go on the connection.
func (cc *clientConn) usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err == nil && !cc.draining
}

// fail marks the connection lost (for err, if it is the first reason)
// and closes it; the reader then ends.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
		close(cc.done)
	}
	cc.pending = map[uint64]chan frame{}
	cc.mu.Unlock()
	cc.nc.Close()
}

// roundTrip sends a call frame and waits for its answer. errRefused
// means the call did not run.
func (cc *clientConn) roundTrip(ctx context.Context, id uint64, b []byte) (frame, error) {
	select {
	case cc.slots <- struct{}{}:
	case <-ctx.Done():
		return frame{}, status.FromContextError(ctx.Err()).Err()
	case <-cc.done:
		return frame{}, errRefused
	}
	ch := make(chan frame, 1)
	cc.mu.Lock()
	cc.pending[id] = ch
	cc.sent[id] = struct{}{}
	cc.mu.Unlock()
	sent, err := cc.write(ctx, b, true)
	if !sent {
		cc.mu.Lock()
		delete(cc.pending, id)
		if _, ok := cc.sent[id]; ok {
			delete(cc.sent, id)
			<-cc.slots
		}
		cc.mu.Unlock()
		if err == nil || ctx.Err() == nil {
			err = errRefused // not a byte of it went out
		}
		return frame{}, err
	}
	if err == nil {
		select {
		case f := <-ch:
			return answer(f)
		case <-cc.done:
			select {
			case f := <-ch: // answered just before the loss
				return answer(f)
			default:
			}
			cc.mu.Lock()
			err = cc.err
			cc.mu.Unlock()
			return frame{}, err
		case <-ctx.Done():
			err = status.FromContextError(ctx.Err()).Err()
		}
	}
	// The caller gave up on a call that went out: tell the server, off
	// the caller's time.
	cc.mu.Lock()
	delete(cc.pending, id)
	live := cc.err == nil
	if live {
		cc.cancels.Add(1) // before fail, so the reader's Wait sees it
	}
	cc.mu.Unlock()
	if live {
		go func() {
			defer cc.cancels.Done()
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _ = cc.write(cctx, appendHeader(nil, kindCancel, id, 0), false)
		}()
	}
	return frame{}, err
}

func answer(f frame) (frame, error) {
	if f.kind == kindRefused {
		return frame{}, errRefused
	}
	return f, nil
}

// write sends one frame before ctx ends, unless the connection is lost
// (or, for a call, draining). sent reports whether the frame went out
// whole. A frame cut short would corrupt the stream: the rest is
// written regardless of ctx, and if that fails the connection is lost
// before anyone else writes.
func (cc *clientConn) write(ctx context.Context, b []byte, isCall bool) (sent bool, err error) {
	select {
	case cc.wlock <- struct{}{}:
	case <-ctx.Done():
		return false, status.FromContextError(ctx.Err()).Err()
	case <-cc.done:
		return false, nil
	}
	defer func() { <-cc.wlock }()
	cc.mu.Lock()
	stop := cc.err != nil || (isCall && cc.draining)
	cc.mu.Unlock()
	if stop {
		return false, nil
	}
	dl, _ := ctx.Deadline()
	_ = cc.nc.SetWriteDeadline(dl)
	n, err := cc.nc.Write(b)
	if err == nil {
		return true, nil
	}
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	if timedOut && n == 0 {
		return false, status.FromContextError(context.DeadlineExceeded).Err()
	}
	if timedOut { // finish the frame, then let the caller give up
		_ = cc.nc.SetWriteDeadline(time.Now().Add(replyTimeout))
		if _, err2 := cc.nc.Write(b[n:]); err2 == nil {
			return true, status.FromContextError(context.DeadlineExceeded).Err()
		} else {
			err = err2
		}
	}
	cc.fail(status.Errorf(codes.Unavailable, "wire: send to %s: %v", cc.nc.RemoteAddr(), err))
	cc.mu.Lock()
	err = cc.err
	cc.mu.Unlock()
	return false, err
}
