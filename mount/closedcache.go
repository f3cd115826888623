package mount

import (
	"container/list"
	"sync"
)

// closedCache keeps the content of files no handle holds any more (the
// chunk list, or an inline file's bytes) with the generation it is of.
// Reopening such a file names that generation, and while the file is
// still at it the filer answers with its attributes alone: no chunk list
// to read, expand and send. The filer decides (a generation moves with
// every change of the inode), so a kept entry needs no invalidation to be
// safe; one that went stale only costs a full fetch. Bounded by bytes,
// least recently closed dropped first.
type closedCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	order *list.List // of *keptContent, most recently closed first
	byIno map[uint64]*list.Element
}

// keptContent is a closed file's content as of generation gen.
type keptContent struct {
	ino    uint64
	gen    uint64
	attr   Attr
	inline []byte
	chunks []keptChunk
	cost   int64
}

type keptChunk struct {
	off, size int64
	fid, etag string
	modNs     int64
}

// closedCacheBytes bounds the kept content: a small file costs its bytes
// and a little; a large one about 100 bytes per chunk.
const closedCacheBytes = 16 << 20

// keptEntryCost is what an entry costs beyond its bytes and chunks;
// keptChunkCost what a chunk costs (its ids are short strings).
const (
	keptEntryCost = 160
	keptChunkCost = 128
)

func newClosedCache(max int64) *closedCache {
	return &closedCache{max: max, order: list.New(), byIno: make(map[uint64]*list.Element)}
}

// keep records f's content as f closes for good (called with f.mu held):
// only content that is exactly the filer's at a known generation, with
// nothing local, and attributes of that same generation.
func (c *closedCache) keep(f *file) {
	if c == nil || !f.loaded || f.stale || f.contentGen == 0 || f.attr.Generation != f.contentGen || f.hasLocalLocked() {
		return
	}
	if keptEntryCost+int64(len(f.inline))+keptChunkCost*int64(len(f.refs)) > c.max/8 {
		return // one huge chunk list would push out hundreds of small files
	}
	k := &keptContent{ino: f.ino, gen: f.contentGen, attr: f.attr, inline: f.inline, cost: keptEntryCost + int64(len(f.inline))}
	k.chunks = make([]keptChunk, 0, len(f.refs))
	for _, r := range f.refs {
		k.chunks = append(k.chunks, keptChunk{off: r.off, size: r.size, fid: r.fid, etag: r.etag, modNs: r.modNs})
		k.cost += keptChunkCost
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(f.ino)
	c.byIno[f.ino] = c.order.PushFront(k)
	c.bytes += k.cost
	for c.bytes > c.max {
		c.removeLocked(c.order.Back().Value.(*keptContent).ino)
	}
}

// take removes and returns what is kept of ino, nil if nothing.
func (c *closedCache) take(ino uint64) *keptContent {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byIno[ino]
	if e == nil {
		return nil
	}
	k := e.Value.(*keptContent)
	c.removeLocked(ino)
	return k
}

// drop forgets ino (it changed: what is kept would only cost a question).
func (c *closedCache) drop(ino uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.removeLocked(ino)
	c.mu.Unlock()
}

// reset forgets everything.
func (c *closedCache) reset() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.order.Init()
	clear(c.byIno)
	c.bytes = 0
	c.mu.Unlock()
}

func (c *closedCache) removeLocked(ino uint64) {
	if e := c.byIno[ino]; e != nil {
		c.bytes -= e.Value.(*keptContent).cost
		c.order.Remove(e)
		delete(c.byIno, ino)
	}
}

// installKeptLocked makes k f's content, the filer having answered that
// the file is still at k's generation with attributes a (called with f.mu
// held, f not loaded and holding nothing local). newer is as
// applyContentLocked's. (f.stale is left alone: a change reported while
// the open was in flight happened after the filer's answer, and the next
// open asks.)
func (f *file) installKeptLocked(k *keptContent, a *Attr) (newer bool) {
	refs := f.refs[:0]
	for _, c := range k.chunks {
		refs = append(refs, &chunkRef{off: c.off, size: c.size, fid: c.fid, etag: c.etag, modNs: c.modNs, committed: true})
	}
	f.fs.io.unchanged.Add(1)
	return f.installContentLocked(*a, refs, k.inline)
}
