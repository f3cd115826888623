package storage

import (
	"slices"

	"github.com/kelpfs/kelp/needle"
)

// nmBlockCap is the capacity of one needle map block: 1024 entries of 16
// bytes, so a block is 16 KiB and an insert or removal in the middle of a
// block moves at most 16 KiB.
const nmBlockCap = 1024

// nmEntry is one live needle: 16 bytes, the whole per-needle cost of the map.
type nmEntry struct {
	key    uint64
	offset uint32 // .dat offset / needle.Alignment
	size   uint32 // record body size
}

// datOffset is the entry's byte offset in .dat.
func (e nmEntry) datOffset() int64 { return int64(e.offset) * needle.Alignment }

// needleMap maps needle keys to their current record. It is a one-level
// B+tree: a sorted list of blocks, each a sorted slice of packed entries with
// a fixed capacity of nmBlockCap. Keys handed out by the master's sequencer
// mostly increase, so nearly every insert is an append to the last block and
// blocks are full: about 16 bytes per needle. An out-of-order key is inserted
// into its block (splitting a full block in two); a removal closes the gap
// and merges small neighbours, so memory stays within a small factor of the
// live count even under random keys and deletes. Lookups are two binary
// searches. There is no per-needle heap object.
//
// needleMap is not safe for concurrent use; the volume guards it.
type needleMap struct {
	blocks [][]nmEntry // every block non-empty, cap nmBlockCap, keys ascending across blocks
	n      int         // live entries

	// Counters since the last compaction, maintained by put and del.
	deleteCount  uint64 // needles deleted or overwritten
	deletedBytes int64  // .dat bytes of dead records and deletion records
	maxKey       uint64 // highest key seen (live, overwritten or deleted)
}

func newNeedleMap() *needleMap { return &needleMap{} }

// Len is the number of live needles.
func (m *needleMap) Len() int { return m.n }

// get returns the entry for key.
func (m *needleMap) get(key uint64) (nmEntry, bool) {
	bi, i, ok := m.locate(key)
	if !ok {
		return nmEntry{}, false
	}
	return m.blocks[bi][i], true
}

// locate finds key: block index and position within the block where it is or
// would be inserted.
func (m *needleMap) locate(key uint64) (bi, i int, found bool) {
	lo, hi := 0, len(m.blocks)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.blocks[mid][0].key <= key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	bi = lo - 1
	if bi < 0 {
		return 0, 0, false
	}
	b := m.blocks[bi]
	lo, hi = 0, len(b)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if b[mid].key < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return bi, lo, lo < len(b) && b[lo].key == key
}

// set stores e, returning the entry it replaced.
func (m *needleMap) set(e nmEntry) (old nmEntry, replaced bool) {
	nb := len(m.blocks)
	if nb == 0 {
		m.appendBlock(e)
		m.n++
		return nmEntry{}, false
	}
	last := m.blocks[nb-1]
	if last[len(last)-1].key < e.key { // the common case: a new, larger key
		if len(last) < nmBlockCap {
			m.blocks[nb-1] = append(last, e)
		} else {
			m.appendBlock(e)
		}
		m.n++
		return nmEntry{}, false
	}
	bi, i, found := m.locate(e.key)
	if found {
		old = m.blocks[bi][i]
		m.blocks[bi][i] = e
		return old, true
	}
	m.insertAt(bi, i, e)
	m.n++
	return nmEntry{}, false
}

func (m *needleMap) appendBlock(e nmEntry) {
	b := make([]nmEntry, 1, nmBlockCap)
	b[0] = e
	m.blocks = append(m.blocks, b)
}

func (m *needleMap) insertAt(bi, i int, e nmEntry) {
	b := m.blocks[bi]
	if len(b) < nmBlockCap {
		m.blocks[bi] = slices.Insert(b, i, e) // fits in cap: no allocation
		return
	}
	half := len(b) / 2
	right := make([]nmEntry, len(b)-half, nmBlockCap)
	copy(right, b[half:])
	left := b[:half]
	if i <= half {
		left = slices.Insert(left, i, e)
	} else {
		right = slices.Insert(right, i-half, e)
	}
	m.blocks[bi] = left
	m.blocks = slices.Insert(m.blocks, bi+1, right)
}

// remove deletes key, returning the entry it held.
func (m *needleMap) remove(key uint64) (old nmEntry, removed bool) {
	bi, i, found := m.locate(key)
	if !found {
		return nmEntry{}, false
	}
	b := m.blocks[bi]
	old = b[i]
	b = slices.Delete(b, i, i+1)
	m.n--
	switch {
	case len(b) == 0:
		m.blocks = slices.Delete(m.blocks, bi, bi+1)
	case bi+1 < len(m.blocks) && len(b)+len(m.blocks[bi+1]) <= nmBlockCap/2:
		m.blocks[bi] = append(b, m.blocks[bi+1]...)
		m.blocks = slices.Delete(m.blocks, bi+1, bi+2)
	case bi > 0 && len(b)+len(m.blocks[bi-1]) <= nmBlockCap/2:
		m.blocks[bi-1] = append(m.blocks[bi-1], b...)
		m.blocks = slices.Delete(m.blocks, bi, bi+1)
	default:
		m.blocks[bi] = b
	}
	return old, true
}

// put records a write of key at byte offset off with body size size and
// updates the counters: an overwritten record becomes garbage.
func (m *needleMap) put(key uint64, off int64, size uint32) {
	old, replaced := m.set(nmEntry{key: key, offset: uint32(off / needle.Alignment), size: size})
	if replaced {
		m.deleteCount++
		m.deletedBytes += needle.RecordSize(old.size)
	}
	if key > m.maxKey {
		m.maxKey = key
	}
}

// del records a deletion of key: the needle's record and the deletion
// record itself become garbage.
func (m *needleMap) del(key uint64) (old nmEntry, removed bool) {
	old, removed = m.remove(key)
	if removed {
		m.deleteCount++
		m.deletedBytes += needle.RecordSize(old.size)
	}
	m.deletedBytes += needle.RecordSize(0)
	if key > m.maxKey {
		m.maxKey = key
	}
	return old, removed
}

// snapshot returns a copy of every live entry in key order.
func (m *needleMap) snapshot() []nmEntry {
	out := make([]nmEntry, 0, m.n)
	for _, b := range m.blocks {
		out = append(out, b...)
	}
	return out
}
