package meta

import "github.com/kelpfs/kelp/needle"

// VisibleInterval is a byte range [Start, Stop) of a file served by one
// chunk: the bytes at ChunkOffset.. of chunk Index of the input.
type VisibleInterval struct {
	Start, Stop int64
	Index       int
	FileID      string
	ChunkOffset int64
	ModifiedNs  int64
}

// VisibleIntervals resolves overlapping chunks newest-wins, by the rule in
// needle.VisibleIntervals, and names the chunk serving each piece.
func VisibleIntervals(chunks []Chunk) []VisibleInterval {
	ivs := needle.VisibleIntervals(len(chunks), func(i int) needle.ChunkSpan {
		c := &chunks[i]
		return needle.ChunkSpan{Offset: c.Offset, Size: c.Size, ModifiedNs: c.ModifiedNs}
	})
	out := make([]VisibleInterval, len(ivs))
	for k, iv := range ivs {
		c := &chunks[iv.Index]
		out[k] = VisibleInterval{Start: iv.Start, Stop: iv.Stop, Index: iv.Index, FileID: c.FileID,
			ChunkOffset: iv.ChunkOffset, ModifiedNs: c.ModifiedNs}
	}
	return out
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
