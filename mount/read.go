package mount

import (
	"context"
	"fmt"
	"syscall"

	"github.com/kelpfs/kelp/needle"
)

// piece is part of a read served by a chunk that is not in memory here.
type piece struct {
	fid       string
	chunkOff  int64 // where dst starts within the chunk
	chunkSize int64
	dst       []byte
}

// Read reads up to len(p) bytes at off.
func (fs *FS) Read(ctx context.Context, fh uint64, p []byte, off int64) (int, syscall.Errno) {
	h := fs.handle(fh)
	if h == nil {
		return 0, syscall.EBADF
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	fs.io.reads.Add(1)
	return h.f.readAt(ctx, h, p, off, true)
}

// readAt reads up to len(p) bytes of the file at off: from its image if
// fromImage and the image is current, else from memory, the cache and the
// volume servers. h, if not nil, is the reading handle (for read-ahead).
func (f *file) readAt(ctx context.Context, h *handle, p []byte, off int64, fromImage bool) (int, syscall.Errno) {
	fs := f.fs
	if errno := f.reload(ctx, false); errno != 0 {
		return 0, errno
	}
	f.mu.Lock()
	if off >= f.size {
		f.mu.Unlock()
		return 0, 0
	}
	p = p[:min(int64(len(p)), f.size-off)]
	if fromImage && fs.images.readAt(f, p, off) {
		f.mu.Unlock()
		return len(p), 0
	}
	remote, overlay, err := f.gatherLocked(p, off)
	if err != nil {
		f.mu.Unlock()
		fs.log.Error("mount: read of unflushed data failed", "inode", f.ino, "err", err)
		return 0, syscall.EIO
	}
	var ahead []piece
	if h != nil && fs.cfg.ReadAheadChunks > 0 {
		h.mu.Lock()
		sequential := off == h.lastEnd
		h.lastEnd = off + int64(len(p))
		h.mu.Unlock()
		if sequential {
			ahead = f.aheadLocked(off+int64(len(p)), fs.cfg.ReadAheadChunks)
		}
	}
	f.mu.Unlock()
	for _, pc := range ahead {
		fs.prefetch(pc.fid, pc.chunkSize)
	}
	for _, pc := range remote {
		if err := fs.readChunk(ctx, pc); err != nil {
			fs.log.Warn("mount: read failed", "inode", f.ino, "fid", pc.fid, "err", err)
			if ctx.Err() != nil {
				return 0, syscall.EINTR
			}
			return 0, syscall.EIO
		}
	}
	for _, o := range overlay {
		copy(p[o.at:], o.data)
	}
	return len(p), 0
}

// overlayPiece is unsealed data copied out under the lock, laid over the
// fetched chunks last.
type overlayPiece struct {
	at   int64 // offset in the read buffer
	data []byte
}

// intervalsLocked resolves the chunk refs newest-wins (cached until the
// refs change).
func (f *file) intervalsLocked() []needle.Interval {
	if !f.ivsOK {
		f.ivs = needle.VisibleIntervals(len(f.refs), func(i int) needle.ChunkSpan {
			r := f.refs[i]
			return needle.ChunkSpan{Offset: r.off, Size: r.size, ModifiedNs: r.modNs}
		})
		f.ivsOK = true
	}
	return f.ivs
}

// gatherLocked fills p (the file's bytes at off, within its size) with
// what is in memory here, and returns the pieces to fetch and the
// unsealed writes to lay over them afterwards. It fails only if bytes
// spilled to disk cannot be read back.
func (f *file) gatherLocked(p []byte, off int64) (remote []piece, overlay []overlayPiece, err error) {
	end := off + int64(len(p))
	// Only the holes are zeroed (p is a reused buffer): every other
	// byte is copied below or filled by a remote piece, which fills its
	// whole range or fails. Intervals are sorted and disjoint.
	filled := off // bytes before it are copied or zeroed
	if n := int64(len(f.inline)); off < n {
		copy(p, f.inline[off:min(n, end)])
		filled = min(n, end)
	}
	ivs := f.intervalsLocked()
	i := firstInterval(ivs, off)
	for ; i < len(ivs) && ivs[i].Start < end; i++ {
		iv := ivs[i]
		s, e := max(iv.Start, off), min(iv.Stop, end)
		if s >= e {
			continue
		}
		if s > filled {
			clear(p[filled-off : s-off])
		}
		filled = max(filled, e)
		r := f.refs[iv.Index]
		co := iv.ChunkOffset + (s - iv.Start)
		dst := p[s-off : e-off]
		if r.mem != nil {
			copy(dst, r.mem[co:])
			continue
		}
		if r.spill != nil {
			if err := r.spill.readAt(dst, co); err != nil {
				return nil, nil, err
			}
			continue
		}
		remote = append(remote, piece{fid: r.fid, chunkOff: co, chunkSize: r.size, dst: dst})
	}
	if filled < end {
		clear(p[filled-off:])
	}
	if len(f.dirty) == 0 {
		return remote, nil, nil
	}
	cs := f.fs.cfg.chunkSize()
	for idx := off / cs; idx*cs < end; idx++ {
		sl := f.dirty[idx]
		if sl == nil {
			continue
		}
		base := idx * cs
		for _, r := range sl.runs {
			s, e := max(base+r.start, off), min(base+r.end, end)
			if s >= e {
				continue
			}
			src := sl.buf[s-base : e-base]
			if len(remote) == 0 {
				copy(p[s-off:], src)
				continue
			}
			overlay = append(overlay, overlayPiece{at: s - off, data: append([]byte(nil), src...)})
		}
	}
	return remote, overlay, nil
}

// copyLocalLocked fills p with the file's bytes at off; every byte must be
// in memory (inlineContentLocked checked).
func (f *file) copyLocalLocked(p []byte, off int64) {
	remote, overlay, err := f.gatherLocked(p, off)
	if err != nil || len(remote) > 0 {
		panic(fmt.Sprintf("mount: inode %d: copyLocal with %d remote pieces (%v)", f.ino, len(remote), err))
	}
	for _, o := range overlay {
		copy(p[o.at:], o.data)
	}
}

// firstInterval returns the index of the first interval ending after off.
func firstInterval(ivs []needle.Interval, off int64) int {
	lo, hi := 0, len(ivs)
	for lo < hi {
		m := (lo + hi) / 2
		if ivs[m].Stop <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// aheadLocked lists up to n remote chunks that start at or after off.
func (f *file) aheadLocked(off int64, n int) []piece {
	ivs := f.intervalsLocked()
	var out []piece
	seen := ""
	for i := firstInterval(ivs, off); i < len(ivs) && len(out) < n; i++ {
		r := f.refs[ivs[i].Index]
		if r.fid == "" || r.fid == seen {
			continue
		}
		seen = r.fid
		out = append(out, piece{fid: r.fid, chunkSize: r.size})
	}
	return out
}

// fetchCall is one fetch of a whole chunk that every reader wanting it
// waits for.
type fetchCall struct {
	done chan struct{}
	data []byte
	err  error
}

// readChunk fills pc.dst from the cache, or fetches the whole chunk once
// (however many readers want it), caches it and copies from it.
func (fs *FS) readChunk(ctx context.Context, pc piece) error {
	if n, ok := fs.cache.ReadAt(pc.fid, pc.dst, pc.chunkOff); ok && n == len(pc.dst) {
		return nil
	}
	c := fs.startFetch(pc.fid)
	select {
	case <-c.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.err != nil {
		return c.err
	}
	if pc.chunkOff+int64(len(pc.dst)) > int64(len(c.data)) {
		return fmt.Errorf("chunk %s has %d bytes, want %d", pc.fid, len(c.data), pc.chunkOff+int64(len(pc.dst)))
	}
	copy(pc.dst, c.data[pc.chunkOff:])
	return nil
}

// startFetch joins or starts the fetch of chunk fid. The fetch runs in a
// goroutine the FS owns, so a reader that gives up does not cancel it
// for the others.
func (fs *FS) startFetch(fid string) *fetchCall {
	fs.fetchMu.Lock()
	defer fs.fetchMu.Unlock()
	if c := fs.fetches[fid]; c != nil {
		return c
	}
	c := &fetchCall{done: make(chan struct{})}
	fs.fetches[fid] = c
	fs.bg.Add(1)
	go func() {
		defer fs.bg.Done()
		select {
		case fs.fetchSem <- struct{}{}:
			ctx, cancel := context.WithTimeout(fs.bgCtx, fs.cfg.OpTimeout)
			c.data, c.err = fs.blobs.Read(ctx, fid)
			cancel()
			<-fs.fetchSem
		case <-fs.bgCtx.Done():
			c.err = fs.bgCtx.Err()
		}
		if c.err == nil {
			fs.cache.Put(fid, c.data)
		}
		fs.fetchMu.Lock()
		delete(fs.fetches, fid)
		fs.fetchMu.Unlock()
		close(c.done)
	}()
	return c
}

// prefetch starts fetching a chunk a sequential reader will want, unless
// it is cached (then the disk tier's copy is read ahead), already coming,
// or every fetch slot is busy.
func (fs *FS) prefetch(fid string, _ int64) {
	if fs.cache.Contains(fid) {
		fs.warm(fid)
		return
	}
	fs.fetchMu.Lock()
	_, coming := fs.fetches[fid]
	busy := len(fs.fetchSem) >= cap(fs.fetchSem)
	fs.fetchMu.Unlock()
	if coming || busy {
		return
	}
	fs.startFetch(fid)
}

// warm has the cache read a chunk it holds on disk ahead of a sequential
// reader, once per chunk while it is remembered, in a goroutine the FS
// owns (bounded by the fetch slots: it is skipped when all are busy).
func (fs *FS) warm(fid string) {
	if _, seen, _ := fs.warmed.PeekOrAdd(fid, struct{}{}); seen {
		return
	}
	select {
	case fs.fetchSem <- struct{}{}:
	default:
		fs.warmed.Remove(fid)
		return
	}
	fs.bg.Add(1)
	go func() {
		defer fs.bg.Done()
		defer func() { <-fs.fetchSem }()
		fs.cache.Prefetch(fid)
	}()
}
