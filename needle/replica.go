package needle

import (
	"errors"
	"fmt"
)

// ErrBadReplication reports a replication string that does not parse.
var ErrBadReplication = errors.New("needle: malformed replication")

// ReplicaPlacement is a replication string "xyz": x copies in other data
// centers, y copies on other racks of the same data center, z copies on other
// servers of the same rack, besides the first copy.
type ReplicaPlacement struct {
	DiffDataCenter uint8 // x
	DiffRack       uint8 // y
	SameRack       uint8 // z
}

// ParseReplicaPlacement parses "" (meaning "000") or three digits 0 to 2.
func ParseReplicaPlacement(s string) (ReplicaPlacement, error) {
	if s == "" {
		return ReplicaPlacement{}, nil
	}
	if len(s) != 3 {
		return ReplicaPlacement{}, fmt.Errorf("%w %q: want three digits xyz such as 000, 001, 010, 100, 200, 110", ErrBadReplication, s)
	}
	var d [3]uint8
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '2' {
			return ReplicaPlacement{}, fmt.Errorf("%w %q: want three digits xyz such as 000, 001, 010, 100, 200, 110", ErrBadReplication, s)
		}
		d[i] = s[i] - '0'
	}
	return ReplicaPlacement{DiffDataCenter: d[0], DiffRack: d[1], SameRack: d[2]}, nil
}

// ReplicaPlacementFromByte decodes the superblock byte.
func ReplicaPlacementFromByte(b byte) ReplicaPlacement {
	return ReplicaPlacement{DiffDataCenter: b / 100, DiffRack: b / 10 % 10, SameRack: b % 10}
}

// Byte returns the superblock byte x*100 + y*10 + z.
func (r ReplicaPlacement) Byte() byte {
	return r.DiffDataCenter*100 + r.DiffRack*10 + r.SameRack
}

// String returns the three-digit form.
func (r ReplicaPlacement) String() string {
	return string([]byte{'0' + r.DiffDataCenter, '0' + r.DiffRack, '0' + r.SameRack})
}

// CopyCount is the total number of copies, the first included.
func (r ReplicaPlacement) CopyCount() int {
	return 1 + int(r.DiffDataCenter) + int(r.DiffRack) + int(r.SameRack)
}
