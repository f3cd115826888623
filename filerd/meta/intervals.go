package meta

import (
	"container/heap"
	"sort"
)

// VisibleInterval is a byte range [Start, Stop) of a file served by one
// chunk: the bytes at ChunkOffset.. of chunk Index of the input.
type VisibleInterval struct {
	Start, Stop int64
	Index       int
	FileID      string
	ChunkOffset int64
	ModifiedNs  int64
}

// VisibleIntervals resolves overlapping chunks newest-wins: where chunks
// overlap, the one with the larger ModifiedNs is visible, and between equal
// ModifiedNs the later one in the list. It returns the visible pieces sorted
// by Start, adjacent pieces of the same chunk merged; chunks of size <= 0
// are ignored. Bytes covered by no interval are holes (zeros). It runs in
// O(n log n).
func VisibleIntervals(chunks []Chunk) []VisibleInterval {
	type point struct {
		at    int64
		start bool
		idx   int
	}
	pts := make([]point, 0, 2*len(chunks))
	for i, c := range chunks {
		if c.Size <= 0 {
			continue
		}
		pts = append(pts, point{c.Offset, true, i}, point{c.Offset + c.Size, false, i})
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].at < pts[b].at })
	newer := func(a, b int) bool {
		if chunks[a].ModifiedNs != chunks[b].ModifiedNs {
			return chunks[a].ModifiedNs > chunks[b].ModifiedNs
		}
		return a > b
	}
	h := &chunkHeap{newer: newer}
	ended := make(map[int]bool)
	var out []VisibleInterval
	cur, curStart := -1, int64(0)
	emit := func(stop int64) {
		if cur < 0 || stop <= curStart {
			return
		}
		if k := len(out) - 1; k >= 0 && out[k].Index == cur && out[k].Stop == curStart {
			out[k].Stop = stop
			return
		}
		c := chunks[cur]
		out = append(out, VisibleInterval{Start: curStart, Stop: stop, Index: cur, FileID: c.FileID,
			ChunkOffset: curStart - c.Offset, ModifiedNs: c.ModifiedNs})
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

// compactChunks drops the chunks no visible interval uses and returns the
// kept ones (in their order) and the dropped ones.
func compactChunks(chunks []Chunk) (kept, dropped []Chunk) {
	used := make([]bool, len(chunks))
	for _, iv := range VisibleIntervals(chunks) {
		used[iv.Index] = true
	}
	for i, c := range chunks {
		if used[i] {
			kept = append(kept, c)
		} else {
			dropped = append(dropped, c)
		}
	}
	return kept, dropped
}
