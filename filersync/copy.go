package filersync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// copier moves chunk bytes from the source cluster's volume servers to the
// target's. sem bounds the chunks in flight across all events of one
// direction, and so the memory copies hold. It keeps a ledger per event
// being applied of the blobs it wrote for it (see copyLedger).
type copier struct {
	src, dst *endpoint
	sem      chan struct{}
	stats    *dirStats

	ledgersMu sync.Mutex
	ledgers   map[*filerpb.MetadataEvent]*copyLedger
}

// copyChunks stores every chunk of want in the target cluster and returns
// the target's chunk list (same offsets, sizes, times and ETags, the
// target's file ids; a chunk larger than the target's proxy takes is
// split). A chunk whose bytes the target file already has (same ETag)
// keeps its target file id, and a blob l holds a copy of is not copied
// again; every blob copied is recorded in l, even when another fails. An
// error wrapping client.ErrNotFound means a source blob is gone.
func (c *copier) copyChunks(ctx context.Context, want, have []*filerpb.Chunk, l *copyLedger) ([]*filerpb.Chunk, error) {
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
		if bc.pieces = l.copyOf(w.FileId); bc.pieces != nil {
			continue
		}
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
			bc.pieces, bc.err = c.copyBlob(ctx, w.FileId, l)
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
// target, in pieces if the target takes less at once, and records the
// copy in l. The pieces of a copy that fails halfway are deleted.
func (c *copier) copyBlob(ctx context.Context, fid string, l *copyLedger) ([]piece, error) {
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
			l.deleteBlobs(ctx, out)
			return nil, fmt.Errorf("write chunk %s to %s: %w", fid, c.dst.addr, err)
		}
		out = append(out, piece{off: off, size: end - off, fid: newFid, etag: etag})
		if end == int64(len(data)) {
			break
		}
	}
	c.stats.chunks.Add(1)
	if kept := l.add(fid, out); kept[0].fid != out[0].fid {
		l.deleteBlobs(ctx, out) // copied twice at once: one copy is enough
		return kept, nil
	}
	return out, nil
}

// ledgerFor returns the ledger of event ev, made on its first attempt and
// kept across its retries: keyed by the event itself, which each attempt
// is handed (applyRetrying), and dropped by eventDone or discardAll.
func (c *copier) ledgerFor(ev *filerpb.MetadataEvent, log *slog.Logger) *copyLedger {
	c.ledgersMu.Lock()
	defer c.ledgersMu.Unlock()
	if c.ledgers == nil {
		c.ledgers = make(map[*filerpb.MetadataEvent]*copyLedger)
	}
	l := c.ledgers[ev]
	if l == nil {
		l = newCopyLedger(c.dst.blobs, log)
		c.ledgers[ev] = l
	}
	return l
}

// eventDone deletes what event ev copied and no committed chunk list
// names, now that it is applied or superseded.
func (c *copier) eventDone(ctx context.Context, ev *filerpb.MetadataEvent) {
	c.ledgersMu.Lock()
	l := c.ledgers[ev]
	delete(c.ledgers, ev)
	c.ledgersMu.Unlock()
	if l != nil {
		l.discard(ctx)
	}
}

// discardAll deletes what every event left unfinished copied: for the end
// of a run, once no event is being applied (one left unfinished is
// applied again, from its first attempt, after a restart).
func (c *copier) discardAll(ctx context.Context) {
	c.ledgersMu.Lock()
	ls := c.ledgers
	c.ledgers = nil
	c.ledgersMu.Unlock()
	for _, l := range ls {
		l.discard(ctx)
	}
}

// copyLedger keeps the blobs written to the target, for one event or one
// call, that no committed chunk list names yet, by source file id: a retry
// of the event reuses a whole copy instead of copying the blob again, and
// what is left when the event is done with them (applied, superseded, or
// the sync stopping) is deleted, so that failed attempts leave no garbage
// in the target's volumes. Safe for concurrent use.
type copyLedger struct {
	dst blobStore
	log *slog.Logger

	mu     sync.Mutex
	copies map[string][]piece // source fid -> its whole copy on the target
}

func newCopyLedger(dst blobStore, log *slog.Logger) *copyLedger {
	return &copyLedger{dst: dst, log: log, copies: make(map[string][]piece)}
}

// ledgerKey carries the ledger of the event being applied in a context.
type ledgerKey struct{}

func withLedger(ctx context.Context, l *copyLedger) context.Context {
	return context.WithValue(ctx, ledgerKey{}, l)
}

// ledgerOf returns the ledger ctx carries, or nil.
func ledgerOf(ctx context.Context) *copyLedger {
	l, _ := ctx.Value(ledgerKey{}).(*copyLedger)
	return l
}

// copyOf returns the target's copy of source blob fid, or nil.
func (l *copyLedger) copyOf(fid string) []piece {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.copies[fid]
}

// add records pieces as the copy of source blob fid and returns the copy
// recorded: pieces, or one recorded before.
func (l *copyLedger) add(fid string, pieces []piece) []piece {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.copies[fid]; old != nil {
		return old
	}
	l.copies[fid] = pieces
	return pieces
}

// committed drops the copies chunks names (a commit of them succeeded:
// they are the filer's now), deleting their pieces it does not name (the
// end of a blob beyond a clipped chunk).
func (l *copyLedger) committed(ctx context.Context, chunks []*filerpb.Chunk) {
	unnamed := l.take(chunks)
	l.deleteBlobs(ctx, unnamed)
}

// forget drops the copies chunks names without deleting them: a commit of
// them failed in a way that may have left it done, so they may be the
// filer's, and must not be reused either.
func (l *copyLedger) forget(chunks []*filerpb.Chunk) {
	if len(chunks) == 0 {
		return
	}
	l.take(chunks)
	l.log.Warn("filer.sync: a commit failed without saying whether it was done; its chunks stay in the target's volumes",
		"chunks", len(chunks))
}

// spare drops, without deleting anything, the copies any of whose pieces
// chunks (a target file's present content) names: the file holds them,
// whatever the commit that put them there answered. A nil ledger spares
// nothing.
func (l *copyLedger) spare(chunks []*filerpb.Chunk) {
	if l == nil || len(chunks) == 0 {
		return
	}
	named := make(map[string]bool, len(chunks))
	for _, ch := range chunks {
		named[ch.FileId] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for fid, pieces := range l.copies {
		if slices.ContainsFunc(pieces, func(p piece) bool { return named[p.fid] }) {
			delete(l.copies, fid)
		}
	}
}

// take removes the copies chunks names and returns their pieces it does
// not name.
func (l *copyLedger) take(chunks []*filerpb.Chunk) []piece {
	named := make(map[string]bool, len(chunks))
	for _, ch := range chunks {
		named[ch.FileId] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var unnamed []piece
	for fid, pieces := range l.copies {
		var left []piece
		hit := false
		for _, p := range pieces {
			if named[p.fid] {
				hit = true
			} else {
				left = append(left, p)
			}
		}
		if hit {
			delete(l.copies, fid)
			unnamed = append(unnamed, left...)
		}
	}
	return unnamed
}

// discard deletes every copy l holds.
func (l *copyLedger) discard(ctx context.Context) {
	l.mu.Lock()
	var all []piece
	for _, pieces := range l.copies {
		all = append(all, pieces...)
	}
	clear(l.copies)
	l.mu.Unlock()
	l.deleteBlobs(ctx, all)
}

// deleteTimeout bounds the deletion of one batch of uncommitted blobs.
const deleteTimeout = 10 * time.Second

// deleteBlobs removes pieces from the target's volumes, best effort: they are
// named by nothing, so a failure only leaves garbage, logged. It runs even
// when ctx has ended (the sync stopping).
func (l *copyLedger) deleteBlobs(ctx context.Context, pieces []piece) {
	if len(pieces) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	var failed []error
	for _, p := range pieces {
		if err := l.dst.Delete(ctx, p.fid); err != nil && !errors.Is(err, client.ErrNotFound) {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		l.log.Warn("filer.sync: deleting blobs written to the target and not committed; they stay as garbage",
			"blobs", len(pieces), "failed", len(failed), "err", failed[0])
		return
	}
	l.log.Debug("filer.sync: deleted blobs written to the target and not committed", "blobs", len(pieces))
}
