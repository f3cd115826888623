package needle_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// golden builds a record by hand: header+body, CRC-32C of those, timestamp,
// zero padding to a multiple of 8. It shares no code with the encoder.
func golden(headerAndBody []byte, appendAt uint64) []byte {
	var b []byte
	b = append(b, headerAndBody...)
	b = append(b, be32(crc32.Checksum(headerAndBody, castagnoli))...)
	b = append(b, be64(appendAt)...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCRC32CKnownValue(t *testing.T) {
	// The standard check value of CRC-32C guards the table the tests use.
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xe3069283 {
		t.Fatalf("crc32c check value = %#x", got)
	}
	if got := needle.ETag([]byte("123456789")); got != "e3069283" {
		t.Fatalf("ETag = %q, want e3069283", got)
	}
	if got := needle.ETag(nil); got != "00000000" {
		t.Fatalf("ETag(nil) = %q", got)
	}
}

func TestRecordGoldenPlain(t *testing.T) {
	n := &needle.Needle{Cookie: 0x637037d6, ID: 0x01, Data: []byte("hello"), AppendAtNs: 0x0102030405060708}
	hb := cat(
		[]byte{0x63, 0x70, 0x37, 0xd6}, // cookie
		[]byte{0, 0, 0, 0, 0, 0, 0, 1}, // id
		[]byte{0, 0, 0, 10},            // body size: 4 + 5 + 1
		[]byte{0, 0, 0, 5},             // data size
		[]byte("hello"),
		[]byte{0}, // flags
	)
	want := golden(hb, 0x0102030405060708)
	if len(want) != 40 {
		t.Fatalf("hand-built record is %d bytes, want 40", len(want))
	}
	if !bytes.Equal(want[26:30], be32(crc32.Checksum(want[:26], castagnoli))) {
		t.Fatal("bad golden checksum placement")
	}
	if !bytes.Equal(want[30:38], []byte{1, 2, 3, 4, 5, 6, 7, 8}) || !bytes.Equal(want[38:], []byte{0, 0}) {
		t.Fatalf("bad golden tail % x", want[26:])
	}
	if n.BodySize() != 10 {
		t.Fatalf("BodySize = %d, want 10", n.BodySize())
	}
	got := n.AppendRecord(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendRecord:\n got % x\nwant % x", got, want)
	}
	if needle.RecordSize(n.BodySize()) != int64(len(want)) {
		t.Fatalf("RecordSize = %d, want %d", needle.RecordSize(n.BodySize()), len(want))
	}
	dec, deleted, err := needle.DecodeRecord(want)
	if err != nil || deleted {
		t.Fatalf("DecodeRecord: deleted=%v err=%v", deleted, err)
	}
	n.Name, n.Mime = nil, nil
	if !needlesEqual(dec, n) {
		t.Fatalf("decoded %+v, want %+v", dec, n)
	}
}

func TestRecordGoldenAllFields(t *testing.T) {
	n := &needle.Needle{
		Cookie:       0xdeadbeef,
		ID:           0x0a0b0c0d0e0f1011,
		Data:         []byte("xyz"),
		Name:         []byte("a.txt"),
		Mime:         []byte("text/plain"),
		LastModified: 0x0102030405,
		TTL:          needle.TTL{Count: 3, Unit: 'd'},
		IsManifest:   true,
		AppendAtNs:   0xfffffffffffffffe,
	}
	hb := cat(
		[]byte{0xde, 0xad, 0xbe, 0xef},
		[]byte{0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11},
		[]byte{0, 0, 0, 32}, // 4+3 +1 +1+5 +1+10 +5 +2
		[]byte{0, 0, 0, 3}, []byte("xyz"),
		[]byte{0x1f}, // name|mime|lastmod|ttl|manifest
		[]byte{5}, []byte("a.txt"),
		[]byte{10}, []byte("text/plain"),
		[]byte{0x01, 0x02, 0x03, 0x04, 0x05},
		[]byte{3, 'd'},
	)
	if len(hb) != 16+32 {
		t.Fatalf("hand-built header+body is %d bytes", len(hb))
	}
	want := golden(hb, 0xfffffffffffffffe)
	if len(want) != 64 { // 16+32+4+8 = 60 -> 64
		t.Fatalf("hand-built record is %d bytes, want 64", len(want))
	}
	got := n.AppendRecord(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendRecord:\n got % x\nwant % x", got, want)
	}
	dec, deleted, err := needle.DecodeRecord(want)
	if err != nil || deleted {
		t.Fatalf("DecodeRecord: deleted=%v err=%v", deleted, err)
	}
	if !needlesEqual(dec, n) {
		t.Fatalf("decoded %+v, want %+v", dec, n)
	}
}

func TestRecordGoldenSingleOptionalFields(t *testing.T) {
	base := func() *needle.Needle { return &needle.Needle{Cookie: 1, ID: 2, Data: []byte{0xaa}, AppendAtNs: 3} }
	head := func(body uint32) []byte { return cat(be32(1), be64(2), be32(body), []byte{0, 0, 0, 1, 0xaa}) }
	cases := []struct {
		name string
		mod  func(*needle.Needle)
		hb   []byte
	}{
		{"name", func(n *needle.Needle) { n.Name = []byte("n") }, cat(head(8), []byte{0x01, 1, 'n'})},
		{"mime", func(n *needle.Needle) { n.Mime = []byte("m/x") }, cat(head(10), []byte{0x02, 3, 'm', '/', 'x'})},
		{"lastmod", func(n *needle.Needle) { n.LastModified = 1700000000 },
			cat(head(11), []byte{0x04}, be64(1700000000)[3:])},
		{"ttl", func(n *needle.Needle) { n.TTL = needle.TTL{Count: 255, Unit: 'y'} }, cat(head(8), []byte{0x08, 255, 'y'})},
		{"manifest", func(n *needle.Needle) { n.IsManifest = true }, cat(head(6), []byte{0x10})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := base()
			c.mod(n)
			want := golden(c.hb, 3)
			if got := n.AppendRecord(nil); !bytes.Equal(got, want) {
				t.Fatalf("AppendRecord:\n got % x\nwant % x", got, want)
			}
			dec, _, err := needle.DecodeRecord(want)
			if err != nil {
				t.Fatal(err)
			}
			if !needlesEqual(dec, n) {
				t.Fatalf("decoded %+v, want %+v", dec, n)
			}
		})
	}
}

func TestDeleteRecordGolden(t *testing.T) {
	hb := cat(be32(0x637037d6), be64(0x01), be32(0))
	want := golden(hb, 42)
	if len(want) != 32 { // 16+4+8 = 28 -> 32
		t.Fatalf("hand-built deletion record is %d bytes", len(want))
	}
	got := needle.AppendDeleteRecord(nil, 0x01, 0x637037d6, 42)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendDeleteRecord:\n got % x\nwant % x", got, want)
	}
	if needle.RecordSize(0) != 32 {
		t.Fatalf("RecordSize(0) = %d", needle.RecordSize(0))
	}
	n, deleted, err := needle.DecodeRecord(want)
	if err != nil || !deleted {
		t.Fatalf("DecodeRecord: deleted=%v err=%v", deleted, err)
	}
	if n.ID != 1 || n.Cookie != 0x637037d6 || n.AppendAtNs != 42 || len(n.Data) != 0 {
		t.Fatalf("decoded deletion %+v", n)
	}
}

func TestRecordSize(t *testing.T) {
	for body, want := range map[uint32]int64{0: 32, 4: 32, 5: 40, 10: 40, 12: 40, 13: 48, 1 << 20: 16 + 1<<20 + 16} {
		if got := needle.RecordSize(body); got != want {
			t.Errorf("RecordSize(%d) = %d, want %d", body, got, want)
		}
	}
	if got := needle.RecordSize(0xffffffff); got%8 != 0 || got < 0xffffffff+28 {
		t.Errorf("RecordSize(max) = %d", got)
	}
}

func TestAppendRecordKeepsPrefixAndAligns(t *testing.T) {
	sb := needle.SuperBlock{Version: needle.CurrentVersion}.Bytes()
	buf := append(make([]byte, 0, 3), sb...) // small cap forces a grow
	var offsets []int
	var want []*needle.Needle
	for i := 0; i < 20; i++ {
		n := &needle.Needle{Cookie: uint32(i * 7), ID: uint64(i), Data: bytes.Repeat([]byte{byte(i)}, i*3), AppendAtNs: uint64(i)}
		if i%3 == 0 {
			n.Name = []byte("f.bin")
		}
		offsets = append(offsets, len(buf))
		if i%5 == 4 {
			buf = needle.AppendDeleteRecord(buf, n.ID, n.Cookie, n.AppendAtNs)
			want = append(want, nil)
			continue
		}
		buf = n.AppendRecord(buf)
		want = append(want, n)
	}
	if !bytes.Equal(buf[:needle.SuperBlockSize], sb) {
		t.Fatal("prefix overwritten")
	}
	for i, off := range offsets {
		if off%needle.Alignment != 0 {
			t.Fatalf("record %d at unaligned offset %d", i, off)
		}
		h, err := needle.ParseHeader(buf[off:])
		if err != nil {
			t.Fatal(err)
		}
		if next := off + int(needle.RecordSize(h.Size)); i+1 < len(offsets) && next != offsets[i+1] {
			t.Fatalf("record %d: RecordSize leads to %d, next record at %d", i, next, offsets[i+1])
		}
		n, deleted, err := needle.DecodeRecord(buf[off:])
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if deleted != (want[i] == nil) {
			t.Fatalf("record %d: deleted=%v", i, deleted)
		}
		if want[i] != nil && !needlesEqual(n, want[i]) {
			t.Fatalf("record %d: got %+v want %+v", i, n, want[i])
		}
	}
	if len(buf)%needle.Alignment != 0 {
		t.Fatalf("buffer length %d unaligned", len(buf))
	}
}

func TestAppendRecordClearsReusedPadding(t *testing.T) {
	dirty := bytes.Repeat([]byte{0xff}, 128)[:0]
	n := &needle.Needle{Cookie: 1, ID: 2, Data: []byte("hello")}
	got := n.AppendRecord(dirty)
	if want := n.AppendRecord(nil); !bytes.Equal(got, want) {
		t.Fatalf("reused buffer gives % x, fresh % x", got, want)
	}
	got = needle.AppendDeleteRecord(bytes.Repeat([]byte{0xff}, 64)[:0], 1, 2, 3)
	if want := needle.AppendDeleteRecord(nil, 1, 2, 3); !bytes.Equal(got, want) {
		t.Fatalf("reused buffer gives % x, fresh % x", got, want)
	}
}

func TestDecodeRecordPaddingOptional(t *testing.T) {
	n := &needle.Needle{Cookie: 9, ID: 8, Data: []byte("hello")}
	rec := n.AppendRecord(nil)
	unpadded := 16 + int(n.BodySize()) + 12
	if _, _, err := needle.DecodeRecord(rec[:unpadded]); err != nil {
		t.Fatalf("decode without padding: %v", err)
	}
	if _, _, err := needle.DecodeRecord(rec[:unpadded-1]); !errors.Is(err, needle.ErrShortRecord) {
		t.Fatalf("decode cut into timestamp: %v, want ErrShortRecord", err)
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	n := &needle.Needle{Cookie: 9, ID: 8, Data: []byte("hello"), Name: []byte("x")}
	rec := n.AppendRecord(nil)
	for i := 0; i < 16+int(n.BodySize())+12; i++ {
		if _, _, err := needle.DecodeRecord(rec[:i]); !errors.Is(err, needle.ErrShortRecord) {
			t.Fatalf("cut at %d: %v, want ErrShortRecord", i, err)
		}
	}
	// Any flipped bit in header, body or checksum is caught, except ones in
	// the size field that make the record look longer than the buffer.
	for i := 0; i < 16+int(n.BodySize())+4; i++ {
		for bit := 0; bit < 8; bit++ {
			b := bytes.Clone(rec)
			b[i] ^= 1 << bit
			_, _, err := needle.DecodeRecord(b)
			if !errors.Is(err, needle.ErrChecksum) && !errors.Is(err, needle.ErrShortRecord) {
				t.Fatalf("flip byte %d bit %d: %v, want checksum or short", i, bit, err)
			}
		}
	}
}

// sealed wraps a hand-made body in a header and a valid checksum, so only
// the body's structure can make decoding fail.
func sealed(body []byte) []byte {
	return golden(cat(be32(1), be64(2), be32(uint32(len(body))), body), 0)
}

func TestDecodeRecordCorruptBody(t *testing.T) {
	cases := map[string][]byte{
		"body shorter than 5":     {0, 0, 0, 0},
		"data size past body":     cat(be32(10), []byte("abc"), []byte{0}),
		"data size huge":          cat(be32(0xffffffff), []byte{0}),
		"no flags byte":           cat(be32(3), []byte("abc")),
		"name size missing":       cat(be32(0), []byte{0x01}),
		"name past body":          cat(be32(0), []byte{0x01, 5, 'a'}),
		"mime past body":          cat(be32(0), []byte{0x02, 2, 'a'}),
		"lastmod past body":       cat(be32(0), []byte{0x04, 1, 2, 3, 4}),
		"ttl past body":           cat(be32(0), []byte{0x08, 1}),
		"stray bytes":             cat(be32(0), []byte{0x00, 0xff}),
		"stray after all fields":  cat(be32(1), []byte{'z', 0x0b, 1, 'n', 1, 'm', 3, 'd', 0}),
		"name flag with mime len": cat(be32(0), []byte{0x03, 1, 'n'}),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			n, _, err := needle.DecodeRecord(sealed(body))
			if !errors.Is(err, needle.ErrCorrupt) {
				t.Fatalf("got %+v, %v; want ErrCorrupt", n, err)
			}
		})
	}
	// A well-formed hand-made body decodes.
	n, _, err := needle.DecodeRecord(sealed(cat(be32(1), []byte{'z', 0x0b, 1, 'n', 1, 'm', 3, 'd'})))
	if err != nil {
		t.Fatal(err)
	}
	if string(n.Data) != "z" || string(n.Name) != "n" || string(n.Mime) != "m" || n.TTL != (needle.TTL{Count: 3, Unit: 'd'}) {
		t.Fatalf("decoded %+v", n)
	}
}

func TestValidate(t *testing.T) {
	long := bytes.Repeat([]byte{'a'}, 256)
	ok := []*needle.Needle{
		{},
		{Name: long[:255], Mime: long[:255], LastModified: 1<<40 - 1},
	}
	for _, n := range ok {
		if err := n.Validate(); err != nil {
			t.Errorf("Validate(%d-byte name): %v", len(n.Name), err)
		}
	}
	bad := map[string]*needle.Needle{
		"name":    {Name: long},
		"mime":    {Mime: long},
		"lastmod": {LastModified: 1 << 40},
	}
	for what, n := range bad {
		if err := n.Validate(); !errors.Is(err, needle.ErrTooLarge) {
			t.Errorf("Validate with big %s: %v, want ErrTooLarge", what, err)
		}
	}
}

func TestDecodedSlicesAliasInput(t *testing.T) {
	n := &needle.Needle{Cookie: 1, ID: 1, Data: []byte("data")}
	rec := n.AppendRecord(nil)
	dec, _, err := needle.DecodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	rec[20] = 'D'
	if string(dec.Data) != "Data" {
		t.Fatalf("decoded data %q does not alias the record", dec.Data)
	}
}

// needlesEqual compares needles treating nil and empty slices alike.
func needlesEqual(a, b *needle.Needle) bool {
	norm := func(n *needle.Needle) needle.Needle {
		c := *n
		for _, p := range []*[]byte{&c.Data, &c.Name, &c.Mime} {
			if len(*p) == 0 {
				*p = nil
			}
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
