package needle_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

func TestIdxEntryGolden(t *testing.T) {
	e := needle.IdxEntry{ID: 0x0102030405060708, Offset: 0x11223344 * 8, Size: 0x0a0b0c0d}
	want := []byte{
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // id
		0x11, 0x22, 0x33, 0x44, // offset / 8
		0x0a, 0x0b, 0x0c, 0x0d, // size
	}
	got := needle.AppendIdxEntry(nil, e)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendIdxEntry:\n got % x\nwant % x", got, want)
	}
	back, err := needle.ParseIdxEntry(want)
	if err != nil || back != e {
		t.Fatalf("ParseIdxEntry = %+v, %v; want %+v", back, err, e)
	}
	if back.IsTombstone() {
		t.Fatal("entry reported as tombstone")
	}
}

func TestIdxEntryTombstone(t *testing.T) {
	e := needle.IdxEntry{ID: 7, Offset: 64, Size: needle.TombstoneSize}
	want := []byte{0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff}
	got := needle.AppendIdxEntry(nil, e)
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x want % x", got, want)
	}
	back, err := needle.ParseIdxEntry(got)
	if err != nil || !back.IsTombstone() || back != e {
		t.Fatalf("ParseIdxEntry = %+v, %v", back, err)
	}
}

func TestIdxEntryAppendsAndBounds(t *testing.T) {
	entries := []needle.IdxEntry{
		{ID: 0, Offset: 0, Size: 0},
		{ID: 1, Offset: 8, Size: 1},
		{ID: ^uint64(0), Offset: needle.MaxVolumeOffset, Size: needle.TombstoneSize - 1},
	}
	if needle.MaxVolumeOffset != (1<<32-1)*8 {
		t.Fatalf("MaxVolumeOffset = %d", needle.MaxVolumeOffset)
	}
	buf := []byte("prefix")
	for _, e := range entries {
		buf = needle.AppendIdxEntry(buf, e)
	}
	if string(buf[:6]) != "prefix" || len(buf) != 6+len(entries)*needle.IdxEntrySize {
		t.Fatalf("buffer of %d bytes", len(buf))
	}
	for i, want := range entries {
		got, err := needle.ParseIdxEntry(buf[6+i*16:])
		if err != nil || got != want {
			t.Fatalf("entry %d: %+v, %v; want %+v", i, got, err, want)
		}
	}
	for n := 0; n < needle.IdxEntrySize; n++ {
		if _, err := needle.ParseIdxEntry(make([]byte, n)); !errors.Is(err, needle.ErrShortRecord) {
			t.Fatalf("%d bytes: %v, want ErrShortRecord", n, err)
		}
	}
}
