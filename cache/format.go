package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A disk-tier file holds one blob:
//
//	offset 0   header (headerSize = 32 bytes, little endian)
//	             0  magic "KLCC"
//	             4  version u16 (= formatVersion)
//	             6  blockShift u16 (block size = 1 << blockShift)
//	             8  blob length u64
//	            16  CRC32-C of the fid
//	            20  reserved, zero (8 bytes)
//	            28  CRC32-C of bytes 0..27
//	offset 32  block table: one u32 per block, CRC32-C of the block's bytes
//	           seeded with the block index (see blockCRC)
//	offset D   the blob's bytes, D = 32 + 4*nblocks
//
// Every block carries its own checksum so a range read checks exactly the
// blocks it touches: a 4 KiB read of a 16 MiB blob reads one or two blocks
// (the table is read once, when the file is opened), never the whole file. The file size follows from the blob
// length (fileSize), so a torn file is caught by its size, its header or its
// block checksums, whichever comes first.
const (
	headerSize    = 32
	formatVersion = 1
	blockShift    = 13 // 8 KiB blocks: a 4 KiB read costs one block
	blockSize     = 1 << blockShift
	tableEntry    = 4
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	fileMagic  = [4]byte{'K', 'L', 'C', 'C'}
)

// errCorrupt marks a cache file whose header, size or checksums are wrong.
var errCorrupt = errors.New("cache: corrupt cache file")

// numBlocks is the number of blocks of a blob of the given length.
func numBlocks(length int64) int64 { return (length + blockSize - 1) >> blockShift }

// dataOffset is where the blob's bytes start in its file.
func dataOffset(length int64) int64 { return headerSize + tableEntry*numBlocks(length) }

// fileSize is the exact size of the file holding a blob of the given length.
func fileSize(length int64) int64 { return dataOffset(length) + length }

// lengthFromSize inverts fileSize; ok is false when no blob length gives
// exactly that file size (a torn or foreign file).
func lengthFromSize(size int64) (length int64, ok bool) {
	r := size - headerSize
	if r < 0 {
		return 0, false
	}
	nb := (r + blockSize + tableEntry - 1) / (blockSize + tableEntry)
	length = r - tableEntry*nb
	return length, length >= 0 && fileSize(length) == size
}

// blockCRC is the checksum of block i; seeding with the index catches
// blocks written at the wrong place.
func blockCRC(i int64, b []byte) uint32 {
	// crc32.Update(0, castagnoli, le64(i)) without a slice that would
	// escape to the heap.
	crc := ^uint32(0)
	for range 8 {
		crc = castagnoli[byte(crc)^byte(i)] ^ crc>>8
		i >>= 8
	}
	return crc32.Update(^crc, castagnoli, b)
}

// fidCRC identifies the fid a file belongs to inside its header.
func fidCRC(fid string) uint32 { return crc32.Checksum([]byte(fid), castagnoli) }

// encodeHead fills dst (which must hold dataOffset(len(data)) bytes) with
// the header and block table for data and returns it.
func encodeHead(dst []byte, fid string, data []byte) []byte {
	length := int64(len(data))
	dst = dst[:dataOffset(length)]
	copy(dst[0:4], fileMagic[:])
	binary.LittleEndian.PutUint16(dst[4:], formatVersion)
	binary.LittleEndian.PutUint16(dst[6:], blockShift)
	binary.LittleEndian.PutUint64(dst[8:], uint64(length))
	binary.LittleEndian.PutUint32(dst[16:], fidCRC(fid))
	clear(dst[20:28])
	binary.LittleEndian.PutUint32(dst[28:], crc32.Checksum(dst[:28], castagnoli))
	for i := range numBlocks(length) {
		start := i << blockShift
		end := min(start+blockSize, length)
		binary.LittleEndian.PutUint32(dst[headerSize+tableEntry*i:], blockCRC(i, data[start:end]))
	}
	return dst
}

// checkHeader validates a file's header against the fid and blob length the
// index expects.
func checkHeader(h []byte, fid string, length int64) error {
	if len(h) < headerSize {
		return fmt.Errorf("%w: short header", errCorrupt)
	}
	switch {
	case [4]byte(h[0:4]) != fileMagic:
		return fmt.Errorf("%w: bad magic", errCorrupt)
	case binary.LittleEndian.Uint32(h[28:]) != crc32.Checksum(h[:28], castagnoli):
		return fmt.Errorf("%w: header checksum", errCorrupt)
	case binary.LittleEndian.Uint16(h[4:]) != formatVersion:
		return fmt.Errorf("%w: version %d", errCorrupt, binary.LittleEndian.Uint16(h[4:]))
	case binary.LittleEndian.Uint16(h[6:]) != blockShift:
		return fmt.Errorf("%w: block shift %d", errCorrupt, binary.LittleEndian.Uint16(h[6:]))
	case int64(binary.LittleEndian.Uint64(h[8:])) != length:
		return fmt.Errorf("%w: length %d, file size says %d", errCorrupt, binary.LittleEndian.Uint64(h[8:]), length)
	case binary.LittleEndian.Uint32(h[16:]) != fidCRC(fid):
		return fmt.Errorf("%w: file belongs to another fid", errCorrupt)
	}
	return nil
}

// checkBlocks verifies blocks first.. whose bytes are data (block-aligned,
// the last block possibly short) against their table entries.
func checkBlocks(table []byte, first int64, data []byte) error {
	for i := int64(0); len(data) > 0; i++ {
		n := min(len(data), blockSize)
		if blockCRC(first+i, data[:n]) != binary.LittleEndian.Uint32(table[tableEntry*i:]) {
			return fmt.Errorf("%w: block %d checksum", errCorrupt, first+i)
		}
		data = data[n:]
	}
	return nil
}
