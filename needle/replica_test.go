package needle_test

import (
	"errors"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

func TestParseReplicaPlacement(t *testing.T) {
	cases := []struct {
		in     string
		want   needle.ReplicaPlacement
		b      byte
		copies int
		str    string
	}{
		{"", needle.ReplicaPlacement{}, 0, 1, "000"},
		{"000", needle.ReplicaPlacement{}, 0, 1, "000"},
		{"001", needle.ReplicaPlacement{SameRack: 1}, 1, 2, "001"},
		{"010", needle.ReplicaPlacement{DiffRack: 1}, 10, 2, "010"},
		{"100", needle.ReplicaPlacement{DiffDataCenter: 1}, 100, 2, "100"},
		{"200", needle.ReplicaPlacement{DiffDataCenter: 2}, 200, 3, "200"},
		{"110", needle.ReplicaPlacement{DiffDataCenter: 1, DiffRack: 1}, 110, 3, "110"},
		{"012", needle.ReplicaPlacement{DiffRack: 1, SameRack: 2}, 12, 4, "012"},
		{"222", needle.ReplicaPlacement{DiffDataCenter: 2, DiffRack: 2, SameRack: 2}, 222, 7, "222"},
	}
	for _, c := range cases {
		got, err := needle.ParseReplicaPlacement(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseReplicaPlacement(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if got.Byte() != c.b {
			t.Errorf("%q.Byte() = %d, want %d", c.in, got.Byte(), c.b)
		}
		if got.CopyCount() != c.copies {
			t.Errorf("%q.CopyCount() = %d, want %d", c.in, got.CopyCount(), c.copies)
		}
		if got.String() != c.str {
			t.Errorf("%q.String() = %q, want %q", c.in, got.String(), c.str)
		}
		if back := needle.ReplicaPlacementFromByte(c.b); back != got {
			t.Errorf("ReplicaPlacementFromByte(%d) = %+v, want %+v", c.b, back, got)
		}
	}
}

func TestParseReplicaPlacementErrors(t *testing.T) {
	bad := []string{"0", "00", "0000", "003", "030", "300", "a00", "-01", " 01", "01 ", "1", "xyz", "\x00\x00\x00", "１00"}
	for _, s := range bad {
		if got, err := needle.ParseReplicaPlacement(s); !errors.Is(err, needle.ErrBadReplication) {
			t.Errorf("ParseReplicaPlacement(%q) = %+v, %v; want ErrBadReplication", s, got, err)
		}
	}
}
