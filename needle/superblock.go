package needle

import (
	"encoding/binary"
	"fmt"
)

// SuperBlockSize is the length of the header at the start of every .dat.
const SuperBlockSize = 8

// CurrentVersion is the .dat format version written by this code.
const CurrentVersion = 1

// SuperBlock is a volume's header.
type SuperBlock struct {
	Version         uint8
	Replication     ReplicaPlacement
	TTL             TTL
	CompactRevision uint16
}

// Bytes encodes the superblock.
func (s SuperBlock) Bytes() []byte {
	b := make([]byte, SuperBlockSize)
	b[0] = s.Version
	b[1] = s.Replication.Byte()
	t := s.TTL.Bytes()
	copy(b[2:4], t[:])
	binary.BigEndian.PutUint16(b[4:], s.CompactRevision)
	return b
}

// ParseSuperBlock decodes and checks a superblock.
func ParseSuperBlock(b []byte) (SuperBlock, error) {
	if len(b) < SuperBlockSize {
		return SuperBlock{}, fmt.Errorf("%w: superblock of %d bytes", ErrShortRecord, len(b))
	}
	if b[0] != CurrentVersion {
		return SuperBlock{}, fmt.Errorf("%w: unknown volume version %d", ErrCorrupt, b[0])
	}
	rp := ReplicaPlacementFromByte(b[1])
	if rp.DiffDataCenter > 2 || rp.DiffRack > 2 || rp.SameRack > 2 {
		return SuperBlock{}, fmt.Errorf("%w: replica placement byte %d", ErrCorrupt, b[1])
	}
	return SuperBlock{
		Version:         b[0],
		Replication:     rp,
		TTL:             TTLFromBytes(b[2:4]),
		CompactRevision: binary.BigEndian.Uint16(b[4:]),
	}, nil
}
