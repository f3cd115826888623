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
// needle.VisibleIntervals, and names the chunk serving each piece. The
// chunks must be data chunks: expand manifest chunks first (ExpandChunks).
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
