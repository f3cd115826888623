package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/metadata"
)

// preface opens every wire connection, in both directions. It is as
// long as HTTP/2's client preface, so an HTTP/2 server reads all of it,
// finds it wrong and hangs up.
const preface = "KELP-WIRE/1.0\r\n\r\nKLP\r\n\r\n"

const (
	kindCall    byte = 1 // client: run a method
	kindCancel  byte = 2 // client: the caller gave up
	kindReply   byte = 3 // server: the answer
	kindError   byte = 4 // server: the call failed
	kindRefused byte = 5 // server: the call did not run (shutting down); try another connection
	kindGoaway  byte = 6 // server: send no more calls on this connection
	kindGoneAck byte = 7 // client: no more calls will come (after a goaway)
)

const headerLen = 4 + 1 + 8

// maxMessage bounds a request or an answer, as gRPC's default receive
// limit does, so that a call fails the same way on either path.
const maxMessage = 4 << 20

// maxFrame bounds a frame's body: a message and the call's fields.
const maxFrame = maxMessage + 128<<10

var errProtocol = errors.New("wire: protocol error")

type frame struct {
	kind byte
	id   uint64
	body []byte
}

// readFrame reads one frame into a fresh body; hdr is the caller's
// scratch space. A large body grows as its bytes arrive rather than at
// the peer's word.
func readFrame(r *bufio.Reader, hdr *[headerLen]byte) (frame, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if n > maxFrame {
		return frame{}, fmt.Errorf("%w: a %d-byte frame", errProtocol, n)
	}
	f := frame{kind: hdr[4], id: binary.BigEndian.Uint64(hdr[5:])}
	var err error
	if n <= 64<<10 {
		f.body = make([]byte, n)
		_, err = io.ReadFull(r, f.body)
	} else {
		var b bytes.Buffer
		_, err = io.CopyN(&b, r, int64(n))
		f.body = b.Bytes()
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return f, nil
}

// appendHeader appends a frame header for a body of n bytes.
func appendHeader(b []byte, kind byte, id uint64, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, kind)
	return binary.BigEndian.AppendUint64(b, id)
}

// putLength sets the length field of a whole frame b.
func putLength(b []byte) {
	binary.BigEndian.PutUint32(b, uint32(len(b)-headerLen))
}

// call is a decoded call frame's body.
type call struct {
	method  string
	timeout time.Duration // 0: none
	md      metadata.MD
	payload []byte
}

// encodeCall returns a whole call frame, header included.
func encodeCall(id uint64, c call) ([]byte, error) {
	if len(c.method) > 0xffff {
		return nil, fmt.Errorf("wire: method name of %d bytes", len(c.method))
	}
	n := 2 + len(c.method) + 8 + 2 + len(c.payload)
	pairs := 0
	for k, vs := range c.md {
		if len(k) > 0xffff {
			return nil, fmt.Errorf("wire: metadata key of %d bytes", len(k))
		}
		for _, v := range vs {
			n += 2 + len(k) + 4 + len(v)
			pairs++
		}
	}
	if pairs > 0xffff {
		return nil, fmt.Errorf("wire: %d metadata pairs", pairs)
	}
	if len(c.payload) > maxMessage || n > maxFrame {
		return nil, fmt.Errorf("grpc: received message larger than max (%d vs. %d)", len(c.payload), maxMessage)
	}
	b := make([]byte, 0, headerLen+n)
	b = appendHeader(b, kindCall, id, n)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.method)))
	b = append(b, c.method...)
	b = binary.BigEndian.AppendUint64(b, uint64(max(c.timeout, 0)))
	b = binary.BigEndian.AppendUint16(b, uint16(pairs))
	for k, vs := range c.md {
		for _, v := range vs {
			b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
			b = append(b, k...)
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return append(b, c.payload...), nil
}

// decodeCall parses a call frame's body; payload aliases body.
func decodeCall(body []byte) (call, error) {
	d := decoder{b: body}
	var c call
	c.method = string(d.bytes(int(d.u16())))
	c.timeout = time.Duration(d.u64())
	if c.timeout < 0 {
		d.fail()
	}
	if pairs := int(d.u16()); pairs > 0 {
		c.md = metadata.MD{}
		for range pairs {
			k := string(d.bytes(int(d.u16())))
			v := string(d.bytes(int(d.u32())))
			c.md[k] = append(c.md[k], v)
		}
	}
	if d.bad {
		return call{}, fmt.Errorf("%w: a malformed call", errProtocol)
	}
	c.payload = d.b
	return c, nil
}

// decoder reads big-endian fields off a byte slice; past the end it
// returns zeros and sets bad.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) fail() { d.bad, d.b = true, nil }

func (d *decoder) bytes(n int) []byte {
	if n > len(d.b) {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u16() uint16 {
	if v := d.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
