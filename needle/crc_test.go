package needle

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// crc32Combine agrees with checksumming the concatenation, for lengths
// from zero to past a chunk.
func TestCRC32Combine(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 20, 255, 4096, 65537, 4<<20 + 13} {
		a := make([]byte, r.IntN(40))
		b := make([]byte, n)
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := crc32.Checksum(append(append([]byte{}, a...), b...), castagnoli)
		got := crc32Combine(crc32.Checksum(a, castagnoli), crc32.Checksum(b, castagnoli), int64(len(b)))
		if got != want {
			t.Fatalf("len(a)=%d len(b)=%d: combined %08x, want %08x", len(a), n, got, want)
		}
	}
}

// RecordParts's pieces are AppendRecord's record and its dataCRC the ETag.
func TestRecordParts(t *testing.T) {
	n := &Needle{Cookie: 9, ID: 77, Data: []byte("some data for the parts"), Name: []byte("n"), Mime: []byte("text/plain"),
		LastModified: 1700000000, AppendAtNs: 123}
	head, tail, crc := n.RecordParts(make([]byte, 0, 8))
	rec := append(append(append([]byte{}, head...), n.Data...), tail...)
	if int64(len(rec)) != RecordSize(n.BodySize()) {
		t.Fatalf("parts make %d bytes, want %d", len(rec), RecordSize(n.BodySize()))
	}
	got, _, err := DecodeRecord(rec)
	if err != nil || string(got.Data) != string(n.Data) || string(got.Name) != "n" || got.AppendAtNs != 123 {
		t.Fatalf("parsed parts: %+v, %v", got, err)
	}
	if ETagOf(crc) != ETag(n.Data) {
		t.Fatalf("dataCRC %08x, ETag %s", crc, ETag(n.Data))
	}
}
