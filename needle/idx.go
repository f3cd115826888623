package needle

import (
	"encoding/binary"
	"fmt"
)

// IdxEntrySize is the length of one .idx entry.
const IdxEntrySize = 16

// TombstoneSize in an .idx entry's size field marks a deletion.
const TombstoneSize uint32 = 0xFFFFFFFF

// MaxVolumeOffset is the largest .dat offset an .idx entry can address.
const MaxVolumeOffset = int64(1<<32-1) * Alignment

// IdxEntry is one .idx entry: where a needle's record lives in .dat.
type IdxEntry struct {
	ID     uint64
	Offset int64  // byte offset in .dat, a multiple of 8
	Size   uint32 // body size, or TombstoneSize
}

// IsTombstone reports whether the entry records a deletion.
func (e IdxEntry) IsTombstone() bool { return e.Size == TombstoneSize }

// AppendIdxEntry appends the 16-byte form of e to dst.
func AppendIdxEntry(dst []byte, e IdxEntry) []byte {
	var b [IdxEntrySize]byte
	binary.BigEndian.PutUint64(b[0:], e.ID)
	binary.BigEndian.PutUint32(b[8:], uint32(e.Offset/Alignment))
	binary.BigEndian.PutUint32(b[12:], e.Size)
	return append(dst, b[:]...)
}

// ParseIdxEntry decodes a 16-byte entry.
func ParseIdxEntry(b []byte) (IdxEntry, error) {
	if len(b) < IdxEntrySize {
		return IdxEntry{}, fmt.Errorf("%w: idx entry of %d bytes", ErrShortRecord, len(b))
	}
	return IdxEntry{
		ID:     binary.BigEndian.Uint64(b[0:]),
		Offset: int64(binary.BigEndian.Uint32(b[8:])) * Alignment,
		Size:   binary.BigEndian.Uint32(b[12:]),
	}, nil
}
