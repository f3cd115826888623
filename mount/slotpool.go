package mount

import (
	"sync"
	"sync/atomic"
)

// A sequential writer's chunk buffers come from a pool and go back to it
// once nothing points into them: a fresh 4 MiB buffer costs the Go
// runtime's clearing and a page fault per page (about an eighth of the
// daemon's CPU in fsbench's parallel writers; on this VM a fresh page
// faults on the host too), a reused one neither. Only files with an image
// use the pool: their chunks are not handed to the chunk cache (the image
// holds the bytes), so the holders of a buffer are known: each chunk
// sealed from it until its upload (or spill) lets go of its bytes, and
// each write of it queued for the image until written. A buffer whose
// holders never all let go (chunks dropped with their slot by an inline
// commit, a chunk whose upload keeps failing) is simply left to the
// garbage collector. Should the image go before the upload ends, the
// chunk goes to the cache as a copy.

// slotPool keeps up to max free chunk-size buffers.
type slotPool struct {
	size int
	max  int

	mu   sync.Mutex
	free [][]byte
}

// pooledBuf is a pool buffer in use: holders count the chunks and image
// writes pointing into it.
type pooledBuf struct {
	pool    *slotPool
	b       []byte
	holders atomic.Int32
}

// slotPoolBuffers is how many free buffers the pool keeps: enough for a
// few sequential writers' uploads and image queues, at most a quarter of
// the write buffer.
func slotPoolBuffers(cfg Config) int {
	return int(min(16, max(1, cfg.WriteBufferMB/int64(cfg.ChunkSizeMB)/4)))
}

func newSlotPool(size, max int) *slotPool {
	return &slotPool{size: size, max: max}
}

// get returns a cleared buffer of the pool's size (cleared: a slot's
// unwritten bytes read as zeros, as in a new buffer).
func (p *slotPool) get() *pooledBuf {
	p.mu.Lock()
	var b []byte
	if n := len(p.free); n > 0 {
		b, p.free[n-1] = p.free[n-1], nil
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if b == nil {
		b = make([]byte, p.size)
	} else {
		clear(b)
	}
	return &pooledBuf{pool: p, b: b}
}

func (p *slotPool) put(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < p.max {
		p.free = append(p.free, b)
	}
}

// hold counts one more holder; nil is a buffer from no pool.
func (pb *pooledBuf) hold() {
	if pb != nil {
		pb.holders.Add(1)
	}
}

// done lets go of one holder; the last one gives the buffer back.
func (pb *pooledBuf) done() {
	if pb == nil {
		return
	}
	switch n := pb.holders.Add(-1); {
	case n == 0:
		b := pb.b
		pb.b = nil
		pb.pool.put(b[:cap(b)])
	case n < 0:
		// A holder let go twice: the buffer may already be another
		// writer's. Going on would corrupt files.
		panic("mount: a pooled chunk buffer was let go of more often than held")
	}
}

// dropMemLocked lets go of r's bytes in memory (uploaded or spilled), and
// of its hold on the pool buffer they lie in (called with f.mu held).
func (r *chunkRef) dropMemLocked() {
	if r.mem == nil {
		return
	}
	r.mem = nil
	r.pb.done()
	r.pb = nil
}
