package cache

import (
	"math"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// memEntryOverhead is charged to the memory budget per entry on top of the
// blob's bytes (list element, map slot, key), so many tiny blobs cannot
// outgrow the budget.
const memEntryOverhead = 128

// memTier is an LRU of whole blobs bounded by bytes. Blobs are immutable
// and shared: a reader takes the slice under the lock and copies from it
// after unlocking, which is safe because nobody writes a cached blob and
// the garbage collector keeps an evicted one alive while it is read.
type memTier struct {
	budget int64

	mu   sync.Mutex
	lru  *simplelru.LRU[string, []byte]
	used int64
}

func newMemTier(budget int64) *memTier {
	m := &memTier{budget: budget}
	// The count limit is unreachable; the byte budget evicts.
	m.lru, _ = simplelru.NewLRU[string, []byte](math.MaxInt, func(fid string, b []byte) {
		m.used -= memCharge(fid, b)
	})
	return m
}

func memCharge(fid string, b []byte) int64 { return int64(len(b)) + int64(len(fid)) + memEntryOverhead }

// get returns the blob and marks it most recently used.
func (m *memTier) get(fid string) ([]byte, bool) {
	m.mu.Lock()
	b, ok := m.lru.Get(fid)
	m.mu.Unlock()
	return b, ok
}

func (m *memTier) contains(fid string) bool {
	m.mu.Lock()
	ok := m.lru.Contains(fid)
	m.mu.Unlock()
	return ok
}

// add keeps b unless it alone exceeds the budget, evicting least recently
// used blobs to make room. A fid already present is only touched: blobs
// are immutable by fid.
func (m *memTier) add(fid string, b []byte) {
	charge := memCharge(fid, b)
	if charge > m.budget {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.lru.Get(fid); ok {
		return
	}
	for m.used+charge > m.budget {
		if _, _, ok := m.lru.RemoveOldest(); !ok {
			break
		}
	}
	m.lru.Add(fid, b)
	m.used += charge
}

func (m *memTier) remove(fid string) {
	m.mu.Lock()
	m.lru.Remove(fid)
	m.mu.Unlock()
}

func (m *memTier) stats() (used int64, entries int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used, m.lru.Len()
}

func (m *memTier) purge() {
	m.mu.Lock()
	m.lru.Purge()
	m.mu.Unlock()
}
