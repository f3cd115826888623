package filersync

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/filerpb"
)

// copier moves chunk bytes from the source cluster's volume servers to the
// target's. sem bounds the chunks in flight across all events of one
// direction, and so the memory copies hold.
type copier struct {
	src, dst *endpoint
	sem      chan struct{}
	stats    *dirStats
}

// copyChunks stores every chunk of want in the target cluster and returns
// the target's chunk list (same offsets, sizes, times and ETags, the
// target's file ids; a chunk larger than the target's proxy takes is
// split). A chunk whose bytes the target file already has (same ETag)
// keeps its target file id. An error wrapping client.ErrNotFound means a
// source blob is gone.
func (c *copier) copyChunks(ctx context.Context, want, have []*filerpb.Chunk) ([]*filerpb.Chunk, error) {
	byEtag := make(map[string]string, len(have))
	for _, h := range have {
		if h.Etag != "" {
			byEtag[h.Etag] = h.FileId
		}
	}
	// The same blob may be listed twice (a manifest clipped, a chunk
	// split by a later write): copy it once.
	copies := make(map[string]*blobCopy)
	var wg sync.WaitGroup
	for _, w := range want {
		if _, ok := byEtag[w.Etag]; (ok && w.Etag != "") || copies[w.FileId] != nil {
			continue
		}
		bc := &blobCopy{}
		copies[w.FileId] = bc
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			bc.err = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-c.sem }()
			bc.pieces, bc.err = c.copyBlob(ctx, w.FileId)
		}()
	}
	wg.Wait()
	var out []*filerpb.Chunk
	for _, w := range want {
		if fid, ok := byEtag[w.Etag]; ok && w.Etag != "" {
			o := proto.Clone(w).(*filerpb.Chunk)
			o.FileId = fid
			out = append(out, o)
			continue
		}
		bc := copies[w.FileId]
		if bc.err != nil {
			return nil, bc.err
		}
		for _, p := range bc.pieces {
			if p.off >= w.Size {
				break
			}
			o := proto.Clone(w).(*filerpb.Chunk)
			o.FileId, o.Offset, o.Size = p.fid, w.Offset+p.off, min(p.size, w.Size-p.off)
			if len(bc.pieces) > 1 || o.Etag == "" {
				o.Etag = p.etag
			}
			out = append(out, o)
		}
	}
	return out, nil
}

type blobCopy struct {
	pieces []piece
	err    error
}

// piece is part of a copied blob stored as a blob of its own.
type piece struct {
	off, size int64
	fid, etag string
}

// copyBlob reads a whole blob from the source and writes it to the
// target, in pieces if the target takes less at once.
func (c *copier) copyBlob(ctx context.Context, fid string) ([]piece, error) {
	data, err := c.src.blobs.Read(ctx, fid)
	if err != nil {
		return nil, fmt.Errorf("read chunk %s from %s: %w", fid, c.src.addr, err)
	}
	step := int64(len(data))
	if m := c.dst.maxWrite(); m > 0 && step > m {
		step = m
	}
	var out []piece
	for off := int64(0); off < int64(len(data)) || off == 0; off += step {
		end := min(off+step, int64(len(data)))
		newFid, etag, err := c.dst.blobs.Write(ctx, data[off:end])
		if err != nil {
			return nil, fmt.Errorf("write chunk %s to %s: %w", fid, c.dst.addr, err)
		}
		out = append(out, piece{off: off, size: end - off, fid: newFid, etag: etag})
		if end == int64(len(data)) {
			break
		}
	}
	c.stats.chunks.Add(1)
	return out, nil
}
