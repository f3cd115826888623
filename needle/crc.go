package needle

// crc32Combine returns the CRC-32C of A followed by B from crcA and crcB,
// the checksums (as crc32.Checksum computes them) of A and of B, and B's
// length: the record checksum reuses the data's own checksum (its ETag)
// instead of reading the data twice.
//
// A CRC is linear over GF(2): appending n zero bytes to a message maps
// its register through a fixed 32x32 bit matrix, the n-th power of the
// one-zero-bit operator. The powers for n = 2^k bytes come from repeated
// squaring, so the cost is O(log n) matrix products, whatever n is. The
// pre- and post-inversion of the register cancel out in the sum.
func crc32Combine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA
	}
	// odd holds the operator for one zero bit: shift right, and xor the
	// reflected Castagnoli polynomial when a one falls off.
	var odd, even gf2Matrix
	odd[0] = 0x82f63b78
	row := uint32(1)
	for i := 1; i < 32; i++ {
		odd[i] = row
		row <<= 1
	}
	even.square(&odd) // two zero bits
	odd.square(&even) // four zero bits
	// Each round squares the last operator into the other matrix: the
	// operator for 2^k zero bytes, k = 0, 1, 2, ...
	next, last := &even, &odd
	for lenB > 0 {
		next.square(last)
		if lenB&1 != 0 {
			crcA = next.times(crcA)
		}
		lenB >>= 1
		next, last = last, next
	}
	return crcA ^ crcB
}

// gf2Matrix is a 32x32 bit matrix over GF(2), column i in element i.
type gf2Matrix [32]uint32

// times multiplies m by the bit vector v.
func (m *gf2Matrix) times(v uint32) uint32 {
	var sum uint32
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			sum ^= m[i]
		}
	}
	return sum
}

// square sets m to a*a.
func (m *gf2Matrix) square(a *gf2Matrix) {
	for i := range m {
		m[i] = a.times(a[i])
	}
}
