package wire

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// sniffTimeout is how long Mux waits for a connection's first bytes
// before handing it to gRPC as it is (gRPC has its own handshake
// timeout).
const sniffTimeout = 10 * time.Second

// Mux splits one listener between a gRPC server and a wire server by the
// first bytes each connection sends: the wire's preface, or anything
// else (gRPC's HTTP/2 preface). It accepts from the start; Close stops
// it and closes the listener.
type Mux struct {
	ln         net.Listener
	grpc, wire *subListener
	done       chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup

	mu  sync.Mutex
	err error // why accepting stopped
}

// NewMux starts accepting on ln.
func NewMux(ln net.Listener) *Mux {
	m := &Mux{ln: ln, done: make(chan struct{})}
	m.grpc, m.wire = m.newSub(), m.newSub()
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

// GRPC is the listener to give the gRPC server.
func (m *Mux) GRPC() net.Listener { return m.grpc }

// Wire is the listener to give the wire server; its connections have
// sent the preface (and nothing past it has been read).
func (m *Mux) Wire() net.Listener { return m.wire }

// Close stops accepting, closes the listener and every connection not
// yet accepted, and waits for its goroutines.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.stop(net.ErrClosed)
		err = m.ln.Close()
		m.wg.Wait()
	})
	return err
}

func (m *Mux) stop(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		m.err = err
		close(m.done)
	}
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait, as
				// net/http and gRPC do.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-m.done:
					return
				}
			}
			m.stop(err)
			return
		}
		backoff = 0
		m.wg.Add(1)
		go m.sniff(c)
	}
}

// sniff reads a connection's first bytes and hands it on.
func (m *Mux) sniff(c net.Conn) {
	defer m.wg.Done()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() { // Close must not wait out a silent connection
		defer close(stopped)
		select {
		case <-m.done:
			_ = c.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	buf := make([]byte, len(preface))
	n, err := io.ReadFull(c, buf)
	close(stop)
	<-stopped // no deadline is set after this one
	_ = c.SetReadDeadline(time.Time{})
	to, conn := m.grpc, net.Conn(&prefixConn{Conn: c, prefix: buf[:n]})
	if err == nil && string(buf) == preface {
		to, conn = m.wire, c
	}
	select {
	case <-m.done:
		c.Close()
		return
	default:
	}
	select {
	case to.conns <- conn:
	case <-to.closed:
		c.Close()
	case <-m.done:
		c.Close()
	}
}

// subListener is one side of a Mux.
type subListener struct {
	m         *Mux
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (m *Mux) newSub() *subListener {
	return &subListener{m: m, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.m.done:
		l.m.mu.Lock()
		defer l.m.mu.Unlock()
		return nil, l.m.err
	}
}

// Close stops this side accepting; the Mux and the other side go on.
func (l *subListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *subListener) Addr() net.Addr { return l.m.ln.Addr() }

// prefixConn gives back the bytes read while sniffing before the rest.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
