package needle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Errors from decoding needle records.
var (
	ErrShortRecord = errors.New("needle: record cut short")
	ErrChecksum    = errors.New("needle: checksum mismatch")
	ErrCorrupt     = errors.New("needle: corrupt record")
	ErrTooLarge    = errors.New("needle: field too large")
)

// Layout constants; see doc.go.
const (
	HeaderSize    = 16
	ChecksumSize  = 4
	TimestampSize = 8
	Alignment     = 8
	// MaxDataSize bounds one blob's data so a record's body size fits uint32.
	MaxDataSize = 1<<32 - 1 - 1024
)

// Flags describing which optional body fields a needle carries.
const (
	FlagHasName         byte = 1 << 0
	FlagHasMime         byte = 1 << 1
	FlagHasLastModified byte = 1 << 2
	FlagHasTTL          byte = 1 << 3
	// FlagIsManifest marks a blob whose data lists other blobs (filer chunk manifests).
	FlagIsManifest byte = 1 << 4
)

const lastModifiedSize = 5

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Needle is one blob with its metadata.
type Needle struct {
	Cookie       uint32
	ID           uint64
	Data         []byte
	Name         []byte // at most 255 bytes
	Mime         []byte // at most 255 bytes
	LastModified uint64 // unix seconds; 0 = not set
	TTL          TTL
	IsManifest   bool
	AppendAtNs   uint64 // set when appended to a volume
}

// BodySize is the body length for the needle's fields.
func (n *Needle) BodySize() uint32 {
	s := 4 + len(n.Data) + 1
	if len(n.Name) > 0 {
		s += 1 + len(n.Name)
	}
	if len(n.Mime) > 0 {
		s += 1 + len(n.Mime)
	}
	if n.LastModified != 0 {
		s += lastModifiedSize
	}
	if !n.TTL.IsZero() {
		s += 2
	}
	return uint32(s)
}

// RecordSize is the full on-disk length of a record whose body is bodySize
// bytes: header, body, checksum, timestamp and padding.
func RecordSize(bodySize uint32) int64 {
	n := int64(HeaderSize) + int64(bodySize) + ChecksumSize + TimestampSize
	return (n + Alignment - 1) / Alignment * Alignment
}

// Validate checks that the needle's fields fit the format.
func (n *Needle) Validate() error {
	if len(n.Data) > MaxDataSize {
		return fmt.Errorf("%w: data is %d bytes, limit %d", ErrTooLarge, len(n.Data), MaxDataSize)
	}
	if len(n.Name) > 255 {
		return fmt.Errorf("%w: name is %d bytes, limit 255", ErrTooLarge, len(n.Name))
	}
	if len(n.Mime) > 255 {
		return fmt.Errorf("%w: mime type is %d bytes, limit 255", ErrTooLarge, len(n.Mime))
	}
	if n.LastModified >= 1<<40 {
		return fmt.Errorf("%w: last modified %d does not fit 5 bytes", ErrTooLarge, n.LastModified)
	}
	return nil
}

// AppendRecord appends the needle's full record (with padding) to dst.
// Call Validate first; fields that do not fit are truncated.
func (n *Needle) AppendRecord(dst []byte) []byte {
	head, tail, _ := n.RecordParts(nil)
	dst = append(dst, head...)
	dst = append(dst, n.Data...)
	return append(dst, tail...)
}

// recordHeadSize is the part of a record before its data: the header and
// the data's length.
const recordHeadSize = HeaderSize + 4

// RecordParts returns the needle's record as it surrounds n.Data: head
// (header and data length), then n.Data itself, then tail (the other
// fields, checksum, timestamp and padding); written one after another
// they are what AppendRecord appends, without copying the data. Both
// parts live in buf's storage when it has room. dataCRC is the CRC-32C
// of n.Data alone, its ETag: the data is read once for both checksums.
// Call Validate first; fields that do not fit are truncated.
func (n *Needle) RecordParts(buf []byte) (head, tail []byte, dataCRC uint32) {
	body := n.BodySize()
	size := int(RecordSize(body)) - len(n.Data)
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	head, tail = buf[:recordHeadSize], buf[recordHeadSize:]
	putUint32(head[0:], n.Cookie)
	putUint64(head[4:], n.ID)
	putUint32(head[12:], body)
	putUint32(head[HeaderSize:], uint32(len(n.Data)))
	dataCRC = crc32.Checksum(n.Data, castagnoli)
	flags := byte(0)
	if len(n.Name) > 0 {
		flags |= FlagHasName
	}
	if len(n.Mime) > 0 {
		flags |= FlagHasMime
	}
	if n.LastModified != 0 {
		flags |= FlagHasLastModified
	}
	if !n.TTL.IsZero() {
		flags |= FlagHasTTL
	}
	if n.IsManifest {
		flags |= FlagIsManifest
	}
	b := tail
	b[0] = flags
	p := 1
	if len(n.Name) > 0 {
		b[p] = byte(len(n.Name))
		p++
		p += copy(b[p:], n.Name)
	}
	if len(n.Mime) > 0 {
		b[p] = byte(len(n.Mime))
		p++
		p += copy(b[p:], n.Mime)
	}
	if n.LastModified != 0 {
		lm := n.LastModified
		for i := lastModifiedSize - 1; i >= 0; i-- {
			b[p+i] = byte(lm)
			lm >>= 8
		}
		p += lastModifiedSize
	}
	if !n.TTL.IsZero() {
		t := n.TTL.Bytes()
		p += copy(b[p:], t[:])
	}
	// The record's checksum covers head, data and the fields above.
	sum := crc32Combine(crc32.Checksum(head, castagnoli), dataCRC, int64(len(n.Data)))
	putUint32(b[p:], crc32.Update(sum, castagnoli, b[:p]))
	p += ChecksumSize
	putUint64(b[p:], n.AppendAtNs)
	p += TimestampSize
	clear(b[p:])
	return head, tail, dataCRC
}

// AppendDeleteRecord appends a deletion record (a header with body size 0).
func AppendDeleteRecord(dst []byte, id uint64, cookie uint32, appendAtNs uint64) []byte {
	start := len(dst)
	dst = grow(dst, int(RecordSize(0)))
	b := dst[start:]
	putUint32(b[0:], cookie)
	putUint64(b[4:], id)
	putUint32(b[12:], 0)
	putUint32(b[HeaderSize:], crc32.Checksum(b[:HeaderSize], castagnoli))
	putUint64(b[HeaderSize+ChecksumSize:], appendAtNs)
	clear(b[HeaderSize+ChecksumSize+TimestampSize:])
	return dst
}

// Header is a record's fixed 16-byte prefix.
type Header struct {
	Cookie uint32
	ID     uint64
	Size   uint32 // body size; 0 for a deletion record
}

// ParseHeader decodes the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShortRecord
	}
	return Header{
		Cookie: binary.BigEndian.Uint32(b[0:]),
		ID:     binary.BigEndian.Uint64(b[4:]),
		Size:   binary.BigEndian.Uint32(b[12:]),
	}, nil
}

// DecodeRecord decodes and verifies one record starting at b[0]. b must hold
// at least the record up to its timestamp; padding is optional. The returned
// needle's slices alias b. A deletion record decodes to a needle with no data
// and deleted set.
func DecodeRecord(b []byte) (n *Needle, deleted bool, err error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, false, err
	}
	end := int64(HeaderSize) + int64(h.Size)
	if int64(len(b)) < end+ChecksumSize+TimestampSize {
		return nil, false, ErrShortRecord
	}
	want := binary.BigEndian.Uint32(b[end:])
	if crc32.Checksum(b[:end], castagnoli) != want {
		return nil, false, ErrChecksum
	}
	n = &Needle{Cookie: h.Cookie, ID: h.ID, AppendAtNs: binary.BigEndian.Uint64(b[end+ChecksumSize:])}
	if h.Size == 0 {
		return n, true, nil
	}
	if err := n.decodeBody(b[HeaderSize:end]); err != nil {
		return nil, false, err
	}
	return n, false, nil
}

func (n *Needle) decodeBody(body []byte) error {
	if len(body) < 5 {
		return fmt.Errorf("%w: body of %d bytes", ErrCorrupt, len(body))
	}
	ds := int64(binary.BigEndian.Uint32(body))
	p := int64(4)
	if p+ds+1 > int64(len(body)) {
		return fmt.Errorf("%w: data size %d exceeds body", ErrCorrupt, ds)
	}
	n.Data = body[p : p+ds]
	p += ds
	flags := body[p]
	p++
	field := func(what string) ([]byte, error) {
		if p >= int64(len(body)) {
			return nil, fmt.Errorf("%w: %s size past body", ErrCorrupt, what)
		}
		l := int64(body[p])
		p++
		if p+l > int64(len(body)) {
			return nil, fmt.Errorf("%w: %s past body", ErrCorrupt, what)
		}
		v := body[p : p+l]
		p += l
		return v, nil
	}
	var err error
	if flags&FlagHasName != 0 {
		if n.Name, err = field("name"); err != nil {
			return err
		}
	}
	if flags&FlagHasMime != 0 {
		if n.Mime, err = field("mime"); err != nil {
			return err
		}
	}
	if flags&FlagHasLastModified != 0 {
		if p+lastModifiedSize > int64(len(body)) {
			return fmt.Errorf("%w: last modified past body", ErrCorrupt)
		}
		for i := int64(0); i < lastModifiedSize; i++ {
			n.LastModified = n.LastModified<<8 | uint64(body[p+i])
		}
		p += lastModifiedSize
	}
	if flags&FlagHasTTL != 0 {
		if p+2 > int64(len(body)) {
			return fmt.Errorf("%w: ttl past body", ErrCorrupt)
		}
		n.TTL = TTLFromBytes(body[p : p+2])
		p += 2
	}
	n.IsManifest = flags&FlagIsManifest != 0
	if p != int64(len(body)) {
		return fmt.Errorf("%w: %d stray bytes after fields", ErrCorrupt, int64(len(body))-p)
	}
	return nil
}

// ETag is the blob's entity tag: the hex CRC-32C of its data, the same on
// every replica and in every cluster.
func ETag(data []byte) string {
	return ETagOf(crc32.Checksum(data, castagnoli))
}

// ETagOf is the ETag of data whose CRC-32C is crc (RecordParts's dataCRC).
func ETagOf(crc uint32) string {
	return fmt.Sprintf("%08x", crc)
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

func putUint32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }
func putUint64(b []byte, v uint64) { binary.BigEndian.PutUint64(b, v) }
