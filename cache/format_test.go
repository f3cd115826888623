package cache

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

func TestLengthFromSizeInvertsFileSize(t *testing.T) {
	lengths := []int64{0, 1, 100, blockSize - 1, blockSize, blockSize + 1, 2*blockSize - 1, 2 * blockSize,
		4 << 10, 4 << 20, 4<<20 + 7, 16 << 20}
	for _, n := range lengths {
		got, ok := lengthFromSize(fileSize(n))
		if !ok || got != n {
			t.Errorf("lengthFromSize(fileSize(%d)=%d) = %d, %v", n, fileSize(n), got, ok)
		}
	}
	// Sizes no blob produces are rejected.
	valid := map[int64]bool{}
	for n := int64(0); n < 3*blockSize; n++ {
		valid[fileSize(n)] = true
	}
	for size := int64(0); size < fileSize(3*blockSize-1); size++ {
		if _, ok := lengthFromSize(size); ok != valid[size] {
			t.Fatalf("lengthFromSize(%d) ok=%v, want %v", size, ok, valid[size])
		}
	}
}

func TestHeaderAndBlocksRoundTrip(t *testing.T) {
	data := blob("7,abc", 3*blockSize+17)
	head := encodeHead(make([]byte, dataOffset(int64(len(data)))), "7,abc", data)
	if err := checkHeader(head, "7,abc", int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := checkBlocks(head[headerSize:], 0, data); err != nil {
		t.Fatal(err)
	}
	// Blocks 1..3 alone, as a range read sees them.
	if err := checkBlocks(head[headerSize+tableEntry:], 1, data[blockSize:]); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		fid    string
		length int64
		mutate func(h []byte)
	}{
		"other fid":    {"7,abd", int64(len(data)), nil},
		"other length": {"7,abc", int64(len(data)) - 1, nil},
		"bad magic":    {"7,abc", int64(len(data)), func(h []byte) { h[0] ^= 1 }},
		"flipped len":  {"7,abc", int64(len(data)), func(h []byte) { h[9] ^= 1 }},
	} {
		h := append([]byte(nil), head[:headerSize]...)
		if tc.mutate != nil {
			tc.mutate(h)
		}
		if err := checkHeader(h, tc.fid, tc.length); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: checkHeader = %v, want errCorrupt", name, err)
		}
	}
	bad := append([]byte(nil), data...)
	bad[2*blockSize+5] ^= 0x40
	if err := checkBlocks(head[headerSize:], 0, bad); !errors.Is(err, errCorrupt) {
		t.Errorf("flipped data byte: %v", err)
	}
	// A block checked at the wrong index fails (the index seeds the CRC).
	if err := checkBlocks(head[headerSize:], 1, data[:blockSize]); !errors.Is(err, errCorrupt) {
		t.Errorf("misplaced block: %v", err)
	}
}

func TestBlockCRCSeed(t *testing.T) {
	for _, i := range []int64{0, 1, 255, 256, 1 << 40, -1} {
		b := []byte("some block bytes")
		idx := binary.LittleEndian.AppendUint64(nil, uint64(i))
		want := crc32.Update(crc32.Update(0, castagnoli, idx), castagnoli, b)
		if got := blockCRC(i, b); got != want {
			t.Errorf("blockCRC(%d) = %x, want %x", i, got, want)
		}
	}
}
