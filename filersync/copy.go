package filersync

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
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
// target's file ids). A chunk whose bytes the target file already has
// (same ETag) keeps its target file id. An error wrapping
// client.ErrNotFound means a source blob is gone.
func (c *copier) copyChunks(ctx context.Context, want, have []*filerpb.Chunk) ([]*filerpb.Chunk, error) {
	byEtag := make(map[string]string, len(have))
	for _, h := range have {
		if h.Etag != "" {
			byEtag[h.Etag] = h.FileId
		}
	}
	out := make([]*filerpb.Chunk, len(want))
	// The same blob may be listed twice (a manifest clipped, a chunk
	// split by a later write): copy it once.
	copies := make(map[string]*blobCopy)
	var wg sync.WaitGroup
	for i, w := range want {
		o := proto.Clone(w).(*filerpb.Chunk)
		out[i] = o
		if fid, ok := byEtag[w.Etag]; ok && w.Etag != "" {
			o.FileId = fid
			continue
		}
		bc := copies[w.FileId]
		if bc == nil {
			bc = &blobCopy{fid: w.FileId, done: make(chan struct{})}
			copies[w.FileId] = bc
			select {
			case c.sem <- struct{}{}:
			case <-ctx.Done():
				close(bc.done)
				bc.err = ctx.Err()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-c.sem }()
				defer close(bc.done)
				bc.newFid, bc.etag, bc.err = c.copyBlob(ctx, bc.fid)
			}()
		}
	}
	wg.Wait()
	for i, w := range want {
		bc := copies[w.FileId]
		if bc == nil {
			continue
		}
		if bc.err != nil {
			return nil, bc.err
		}
		out[i].FileId = bc.newFid
		if out[i].Etag == "" {
			out[i].Etag = bc.etag
		}
	}
	return out, nil
}

type blobCopy struct {
	fid          string
	done         chan struct{}
	newFid, etag string
	err          error
}

// copyBlob reads a whole blob from the source and writes it to the target.
func (c *copier) copyBlob(ctx context.Context, fid string) (newFid, etag string, err error) {
	data, err := c.src.blobs.Read(ctx, fid)
	if err != nil {
		return "", "", fmt.Errorf("read chunk %s from %s: %w", fid, c.src.addr, err)
	}
	newFid, res, err := c.dst.blobs.Write(ctx, data, client.WriteOptions{})
	if err != nil {
		return "", "", fmt.Errorf("write chunk %s to %s: %w", fid, c.dst.addr, err)
	}
	c.stats.chunks.Add(1)
	return newFid, res.ETag, nil
}
