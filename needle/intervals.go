package needle

import (
	"container/heap"
	"sort"
)

// A file's content is a list of chunks, each a blob placed at an offset;
// where chunks overlap, the newest wins. Both the filer (garbage
// collection, HTTP reads) and the mount (reads) resolve a chunk list the
// same way, so the rule lives here, next to the formats.

// ChunkSpan is what newest-wins resolution needs to know of a chunk.
type ChunkSpan struct {
	Offset, Size, ModifiedNs int64
}

// Interval is a byte range [Start, Stop) of a file served by chunk Index
// of the input, starting ChunkOffset bytes into that chunk.
type Interval struct {
	Start, Stop int64
	Index       int
	ChunkOffset int64
}

// VisibleIntervals resolves n overlapping chunks (span(i) describes chunk
// i) newest-wins: where chunks overlap, the one with the larger
// ModifiedNs is visible, and between equal ModifiedNs the later one in
// the list. It returns the visible pieces sorted by Start, adjacent
// pieces of the same chunk merged; chunks of size <= 0 are ignored. Bytes
// covered by no interval are holes (zeros). It runs in O(n log n).
func VisibleIntervals(n int, span func(i int) ChunkSpan) []Interval {
	type point struct {
		at    int64
		start bool
		idx   int
	}
	spans := make([]ChunkSpan, n)
	pts := make([]point, 0, 2*n)
	for i := range n {
		c := span(i)
		spans[i] = c
		if c.Size <= 0 {
			continue
		}
		pts = append(pts, point{c.Offset, true, i}, point{c.Offset + c.Size, false, i})
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].at < pts[b].at })
	newer := func(a, b int) bool {
		if spans[a].ModifiedNs != spans[b].ModifiedNs {
			return spans[a].ModifiedNs > spans[b].ModifiedNs
		}
		return a > b
	}
	h := &chunkHeap{newer: newer}
	ended := make(map[int]bool)
	var out []Interval
	cur, curStart := -1, int64(0)
	emit := func(stop int64) {
		if cur < 0 || stop <= curStart {
			return
		}
		if k := len(out) - 1; k >= 0 && out[k].Index == cur && out[k].Stop == curStart {
			out[k].Stop = stop
			return
		}
		out = append(out, Interval{Start: curStart, Stop: stop, Index: cur, ChunkOffset: curStart - spans[cur].Offset})
	}
	for i := 0; i < len(pts); {
		at := pts[i].at
		for ; i < len(pts) && pts[i].at == at; i++ {
			if pts[i].start {
				heap.Push(h, pts[i].idx)
			} else {
				ended[pts[i].idx] = true
			}
		}
		for h.Len() > 0 && ended[h.idx[0]] {
			heap.Pop(h)
		}
		top := -1
		if h.Len() > 0 {
			top = h.idx[0]
		}
		if top != cur {
			emit(at)
			cur, curStart = top, at
		}
	}
	return out
}

type chunkHeap struct {
	idx   []int
	newer func(a, b int) bool
}

func (h *chunkHeap) Len() int           { return len(h.idx) }
func (h *chunkHeap) Less(a, b int) bool { return h.newer(h.idx[a], h.idx[b]) }
func (h *chunkHeap) Swap(a, b int)      { h.idx[a], h.idx[b] = h.idx[b], h.idx[a] }
func (h *chunkHeap) Push(x any)         { h.idx = append(h.idx, x.(int)) }
func (h *chunkHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}
