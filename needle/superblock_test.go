package needle_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

func TestSuperBlockGolden(t *testing.T) {
	sb := needle.SuperBlock{
		Version:         needle.CurrentVersion,
		Replication:     needle.ReplicaPlacement{DiffDataCenter: 0, DiffRack: 1, SameRack: 2},
		TTL:             needle.TTL{Count: 5, Unit: 'd'},
		CompactRevision: 0x0203,
	}
	want := []byte{1, 12, 5, 'd', 0x02, 0x03, 0, 0}
	got := sb.Bytes()
	if !bytes.Equal(got, want) {
		t.Fatalf("Bytes:\n got % x\nwant % x", got, want)
	}
	back, err := needle.ParseSuperBlock(want)
	if err != nil || back != sb {
		t.Fatalf("ParseSuperBlock = %+v, %v; want %+v", back, err, sb)
	}
	// Data after the superblock does not matter.
	back, err = needle.ParseSuperBlock(append(bytes.Clone(want), 0xff, 0xff))
	if err != nil || back != sb {
		t.Fatalf("with trailing bytes: %+v, %v", back, err)
	}
}

func TestSuperBlockDefaults(t *testing.T) {
	sb := needle.SuperBlock{Version: needle.CurrentVersion}
	want := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if got := sb.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("got % x want % x", got, want)
	}
	for _, rp := range []string{"000", "001", "002", "010", "020", "100", "200", "110", "222"} {
		r, err := needle.ParseReplicaPlacement(rp)
		if err != nil {
			t.Fatal(err)
		}
		sb := needle.SuperBlock{Version: 1, Replication: r, TTL: needle.TTL{Count: 1, Unit: 'y'}, CompactRevision: 0xffff}
		back, err := needle.ParseSuperBlock(sb.Bytes())
		if err != nil || back != sb {
			t.Fatalf("%s: %+v, %v", rp, back, err)
		}
	}
}

func TestSuperBlockErrors(t *testing.T) {
	for n := 0; n < needle.SuperBlockSize; n++ {
		if _, err := needle.ParseSuperBlock(make([]byte, n)); !errors.Is(err, needle.ErrShortRecord) {
			t.Fatalf("%d bytes: %v, want ErrShortRecord", n, err)
		}
	}
	bad := map[string][]byte{
		"version 0":       {0, 0, 0, 0, 0, 0, 0, 0},
		"version 2":       {2, 0, 0, 0, 0, 0, 0, 0},
		"placement 003":   {1, 3, 0, 0, 0, 0, 0, 0},
		"placement 030":   {1, 30, 0, 0, 0, 0, 0, 0},
		"placement 300":   {1, 255, 0, 0, 0, 0, 0, 0},
		"placement 2xx>2": {1, 229, 0, 0, 0, 0, 0, 0},
	}
	for name, b := range bad {
		if sb, err := needle.ParseSuperBlock(b); !errors.Is(err, needle.ErrCorrupt) {
			t.Errorf("%s: %+v, %v; want ErrCorrupt", name, sb, err)
		}
	}
}
