package meta

import (
	"slices"
	"sync"
)

// The newest events a recentLog keeps, by count and by encoded bytes.
const (
	recentEvents = 4096
	recentBytes  = 8 << 20
)

// recentLog keeps the newest committed events, encoded, so that live
// subscribers (every mount follows the log) read them from memory: a
// read from the store opens a transaction and an iterator per wake-up,
// ~7% of the filer's CPU under a small-file loop with one mount. It
// assumes this Namespace is the only one writing events to the store.
type recentLog struct {
	limit int // events kept; recentEvents unless a test shrinks it

	mu      sync.Mutex
	from    int64    // every committed event with a larger timestamp is here
	ts      []int64  // ascending
	enc     [][]byte // encodeEvent output, never modified
	bytes   int      // capacity held by enc
	served  int      // reads answered, for tests and curiosity
	refused int      // reads that started before from
}

// add records a committed event; the caller has not yet let the
// watermark pass ts.
func (r *recentLog) add(ts int64, enc []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts <= r.from {
		return
	}
	i := len(r.ts) // commits come nearly in timestamp order
	for i > 0 && r.ts[i-1] > ts {
		i--
	}
	r.ts = slices.Insert(r.ts, i, ts)
	r.enc = slices.Insert(r.enc, i, enc)
	r.bytes += cap(enc)
	if len(r.ts) > r.limit || r.bytes > recentBytes {
		// Down to 7/8 of the limits at once, so that shifting the
		// slices costs little per event.
		n := 0
		for n < len(r.ts)-1 && (len(r.ts)-n > r.limit*7/8 || r.bytes > recentBytes*7/8) {
			r.from = r.ts[n]
			r.bytes -= cap(r.enc[n])
			n++
		}
		r.ts = slices.Delete(r.ts, 0, n)
		r.enc = slices.Delete(r.enc, 0, n)
	}
}

// trim forgets the events before beforeNs, as TrimLog deleted them.
func (r *recentLog) trim(beforeNs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(r.ts) && r.ts[n] < beforeNs {
		r.bytes -= cap(r.enc[n])
		n++
	}
	r.from = max(r.from, beforeNs-1)
	r.ts = slices.Delete(r.ts, 0, n)
	r.enc = slices.Delete(r.enc, 0, n)
}

// events returns up to max encoded events with sinceNs < ts <= untilNs,
// oldest first, and false if it may not hold them all.
func (r *recentLog) events(sinceNs, untilNs int64, max int) ([][]byte, []int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sinceNs < r.from {
		r.refused++
		return nil, nil, false
	}
	r.served++
	lo, _ := slices.BinarySearch(r.ts, sinceNs+1)
	hi, _ := slices.BinarySearch(r.ts, untilNs+1)
	hi = min(hi, lo+max)
	return slices.Clone(r.enc[lo:hi]), slices.Clone(r.ts[lo:hi]), true
}

// counts returns how many reads it answered and refused.
func (r *recentLog) counts() (served, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served, r.refused
}
