package meta

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Record encodings: a version byte, then fields as varints and
// length-prefixed byte strings, in a fixed order. A decoder rejects a
// version it does not know with ErrCorrupt. Encoders write the newest
// version; decoders read every older one too.
//
// Version history: data, event and chunk (GC record) version 2 add a
// flags varint to every chunk (bit 0: manifest); event version 2 adds the
// old and new parent inodes; event version 3 writes a NewEntry that is
// the OldEntry (a plain rename's) as one byte, 2, instead of again;
// chunk version 2 adds the Keep list.

const (
	attrVersion  = 1
	dataVersion  = 2
	eventVersion = 3
	chunkVersion = 2
)

// chunkManifestFlag is bit 0 of a chunk's flags.
const chunkManifestFlag = 1

type enc struct{ b []byte }

func (e *enc) u(v uint64)     { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)      { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) byte1(v byte)   { e.b = append(e.b, v) }
func (e *enc) bytes(v []byte) { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)   { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) u32(v uint32)   { e.u(uint64(v)) }
func (e *enc) bool1(v bool) {
	if v {
		e.byte1(1)
	} else {
		e.byte1(0)
	}
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = ErrCorrupt
	}
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) u32() uint32 {
	v := d.u()
	if v > 0xffffffff {
		d.fail()
	}
	return uint32(v)
}

func (d *dec) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.u()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string {
	n := d.u()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *dec) bool1() bool { return d.byte1() != 0 }

func (d *dec) done(what string) error {
	if d.err != nil {
		return fmt.Errorf("decode %s: %w", what, d.err)
	}
	return nil
}

func encodeAttrTo(e *enc, a *Attr) {
	e.u(uint64(a.Inode))
	e.u32(a.Mode)
	e.u32(a.Uid)
	e.u32(a.Gid)
	e.u(a.Size)
	e.u32(a.Nlink)
	e.i(a.Atime)
	e.i(a.Mtime)
	e.i(a.Ctime)
	e.i(a.Crtime)
	e.u32(a.Rdev)
	e.str(a.Target)
	e.u(a.Generation)
	e.u(uint64(a.Parent))
	e.str(a.Name)
}

func decodeAttrFrom(d *dec, a *Attr) {
	a.Inode = Inode(d.u())
	a.Mode = d.u32()
	a.Uid = d.u32()
	a.Gid = d.u32()
	a.Size = d.u()
	a.Nlink = d.u32()
	a.Atime = d.i()
	a.Mtime = d.i()
	a.Ctime = d.i()
	a.Crtime = d.i()
	a.Rdev = d.u32()
	a.Target = d.str()
	a.Generation = d.u()
	a.Parent = Inode(d.u())
	a.Name = d.str()
}

func encodeAttr(a *Attr) []byte {
	e := enc{b: make([]byte, 0, 64+len(a.Target)+len(a.Name))}
	e.byte1(attrVersion)
	encodeAttrTo(&e, a)
	return e.b
}

func decodeAttr(b []byte) (Attr, error) {
	d := dec{b: b}
	var a Attr
	if d.byte1() != attrVersion {
		d.fail()
	}
	decodeAttrFrom(&d, &a)
	return a, d.done("attr")
}

func encodeChunkTo(e *enc, c *Chunk) {
	e.i(c.Offset)
	e.i(c.Size)
	e.str(c.FileID)
	e.i(c.ModifiedNs)
	e.str(c.ETag)
	var flags uint64
	if c.IsManifest {
		flags |= chunkManifestFlag
	}
	e.u(flags)
}

// decodeChunkFrom reads a chunk; flags says the record version has the
// flags varint.
func decodeChunkFrom(d *dec, flags bool) Chunk {
	var c Chunk
	c.Offset = d.i()
	c.Size = d.i()
	c.FileID = d.str()
	c.ModifiedNs = d.i()
	c.ETag = d.str()
	if flags {
		f := d.u()
		if f&^chunkManifestFlag != 0 {
			d.fail()
		}
		c.IsManifest = f&chunkManifestFlag != 0
	}
	return c
}

func encodeChunks(e *enc, cs []Chunk) {
	e.u(uint64(len(cs)))
	for i := range cs {
		encodeChunkTo(e, &cs[i])
	}
}

func decodeChunks(d *dec, flags bool) []Chunk {
	n := d.u()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	cs := make([]Chunk, 0, n)
	for j := uint64(0); j < n && d.err == nil; j++ {
		cs = append(cs, decodeChunkFrom(d, flags))
	}
	return cs
}

// fileData is a regular file's content: a chunk list or inline bytes.
type fileData struct {
	Chunks []Chunk
	Inline []byte
}

func encodeData(fd *fileData) []byte {
	e := enc{}
	e.byte1(dataVersion)
	encodeChunks(&e, fd.Chunks)
	e.bytes(fd.Inline)
	return e.b
}

func decodeData(b []byte) (fileData, error) {
	d := dec{b: b}
	var fd fileData
	v := d.byte1()
	if v < 1 || v > dataVersion {
		d.fail()
	}
	fd.Chunks = decodeChunks(&d, v >= 2)
	fd.Inline = d.bytes()
	if len(fd.Inline) == 0 {
		fd.Inline = nil
	}
	return fd, d.done("file data")
}

// encodeGCRecord encodes a queued deletion: the chunk and, for a
// manifest, the file ids of its chunks that must stay.
func encodeGCRecord(c *Chunk, keep []string) []byte {
	e := enc{}
	e.byte1(chunkVersion)
	encodeChunkTo(&e, c)
	e.u(uint64(len(keep)))
	for _, k := range keep {
		e.str(k)
	}
	return e.b
}

func decodeGCRecord(b []byte) (Chunk, []string, error) {
	d := dec{b: b}
	v := d.byte1()
	if v < 1 || v > chunkVersion {
		d.fail()
	}
	c := decodeChunkFrom(&d, v >= 2)
	var keep []string
	if v >= 2 {
		n := d.u()
		if n > uint64(len(d.b)) {
			d.fail()
		}
		for j := uint64(0); j < n && d.err == nil; j++ {
			keep = append(keep, d.str())
		}
	}
	return c, keep, d.done("chunk")
}

// sameState stands for a NewEntry that is the event's OldEntry.
const sameState = 2

func encodeState(e *enc, s *EntryState) {
	if s == nil {
		e.byte1(0)
		return
	}
	e.byte1(1)
	encodeAttrTo(e, &s.Attr)
	encodeChunks(e, s.Chunks)
	e.bytes(s.Inline)
	names := make([]string, 0, len(s.Xattrs))
	for k := range s.Xattrs {
		names = append(names, k)
	}
	sort.Strings(names)
	e.u(uint64(len(names)))
	for _, k := range names {
		e.str(k)
		e.bytes(s.Xattrs[k])
	}
}

func decodeState(d *dec, flags bool) *EntryState {
	if d.byte1() == 0 {
		return nil
	}
	s := &EntryState{}
	decodeAttrFrom(d, &s.Attr)
	s.Chunks = decodeChunks(d, flags)
	s.Inline = d.bytes()
	if len(s.Inline) == 0 {
		s.Inline = nil
	}
	n := d.u()
	if n > uint64(len(d.b)) {
		d.fail()
		return s
	}
	if n > 0 {
		s.Xattrs = make(map[string][]byte, n)
	}
	for j := uint64(0); j < n && d.err == nil; j++ {
		k := d.str()
		s.Xattrs[k] = d.bytes()
	}
	return s
}

func encodeEvent(ev *Event) []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.byte1(eventVersion)
	e.byte1(byte(ev.Kind))
	e.i(ev.TsNs)
	e.str(ev.OldPath)
	e.str(ev.NewPath)
	encodeState(&e, ev.OldEntry)
	if ev.NewEntry != nil && ev.NewEntry == ev.OldEntry {
		e.byte1(sameState)
	} else {
		encodeState(&e, ev.NewEntry)
	}
	e.bool1(ev.Exchange)
	encodeState(&e, ev.Replaced)
	encodeChunks(&e, ev.FreedChunks)
	e.u(uint64(len(ev.Signatures)))
	for _, s := range ev.Signatures {
		e.i(int64(s))
	}
	e.u(uint64(ev.OldParent))
	e.u(uint64(ev.NewParent))
	// Optional trailing fields, read only if present: a decoder that
	// predates one ignores it (done does not require the end), so adding
	// one needs no new version and a rolled-back filer still reads the log.
	if ev.LinkedPath != "" {
		e.str(ev.LinkedPath)
	}
	return e.b
}

func decodeEvent(b []byte) (Event, error) {
	d := dec{b: b}
	var ev Event
	v := d.byte1()
	if v < 1 || v > eventVersion {
		d.fail()
	}
	v2 := v >= 2
	ev.Kind = EventKind(d.byte1())
	ev.TsNs = d.i()
	ev.OldPath = d.str()
	ev.NewPath = d.str()
	ev.OldEntry = decodeState(&d, v2)
	if v >= 3 && len(d.b) > 0 && d.b[0] == sameState {
		d.byte1()
		ev.NewEntry = ev.OldEntry
	} else {
		ev.NewEntry = decodeState(&d, v2)
	}
	ev.Exchange = d.bool1()
	ev.Replaced = decodeState(&d, v2)
	ev.FreedChunks = decodeChunks(&d, v2)
	n := d.u()
	if n > uint64(len(d.b)) {
		d.fail()
	}
	for j := uint64(0); j < n && d.err == nil; j++ {
		ev.Signatures = append(ev.Signatures, int32(d.i()))
	}
	if v2 {
		ev.OldParent = Inode(d.u())
		ev.NewParent = Inode(d.u())
	}
	if v2 && len(d.b) > 0 {
		ev.LinkedPath = d.str()
	}
	return ev, d.done("event")
}
