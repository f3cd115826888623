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
// safe; one that went stale only costs a full fetch.
//
// Content is bounded by bytes; past them the least recently closed files
// keep their generation and attributes alone (lazy entries, up to
// keptLazyEntries). A read-only open names such a generation too, and
// while the file is at it, opens without its content: the kernel's page
// cache usually serves the reads, and the first read that reaches the
// mount fetches the content. So a working set of small files larger than
// the byte budget (re-read in a loop, which least-recently-used
// eviction would otherwise miss every time) still reopens cheaply.
type closedCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64      // the cost of the entries in full
	full  *list.List // of *keptContent with content, most recently closed first
	lazy  *list.List // of *keptContent without, most recently demoted or closed first
	byIno map[uint64]*list.Element
}

// keptContent is a closed file's content as of generation gen, or (lazy)
// only its generation and attributes.
type keptContent struct {
	ino    uint64
	gen    uint64
	attr   Attr
	lazy   bool
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

// keptLazyEntries bounds the lazy entries (~250 bytes each with their
// list and map entries: 4 MiB).
const keptLazyEntries = 16 << 10

// keptEntryCost is what an entry costs beyond its bytes and chunks;
// keptChunkCost what a chunk costs (its ids are short strings).
const (
	keptEntryCost = 160
	keptChunkCost = 128
)

func newClosedCache(max int64) *closedCache {
	return &closedCache{max: max, full: list.New(), lazy: list.New(), byIno: make(map[uint64]*list.Element)}
}

// keep records f's content as f closes for good (called with f.mu held):
// only content that is exactly the filer's at a known generation, with
// nothing local, and attributes of that same generation; or, for a file
// opened without its content (lazyGen) and never read, a lazy entry.
func (c *closedCache) keep(f *file) {
	if c == nil || f.stale || f.hasLocalLocked() {
		return
	}
	k := &keptContent{ino: f.ino, attr: f.attr}
	switch {
	case f.loaded && f.contentGen != 0 && f.attr.Generation == f.contentGen:
		k.gen = f.contentGen
		k.inline, k.cost = f.inline, keptEntryCost+int64(len(f.inline))
		for _, r := range f.refs {
			k.chunks = append(k.chunks, keptChunk{off: r.off, size: r.size, fid: r.fid, etag: r.etag, modNs: r.modNs})
			k.cost += keptChunkCost
		}
		if k.cost > c.max/8 { // one huge chunk list would push out hundreds of small files
			k.lazy, k.inline, k.chunks, k.cost = true, nil, nil, 0
		}
	case !f.loaded && f.lazyGen != 0 && f.attr.Generation == f.lazyGen:
		k.gen, k.lazy = f.lazyGen, true
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(f.ino)
	if k.lazy {
		c.byIno[f.ino] = c.lazy.PushFront(k)
	} else {
		c.byIno[f.ino] = c.full.PushFront(k)
		c.bytes += k.cost
	}
	for c.bytes > c.max { // the least recently closed keep their generation
		e := c.full.Back()
		old := e.Value.(*keptContent)
		c.full.Remove(e)
		c.bytes -= old.cost
		old.lazy, old.inline, old.chunks, old.cost = true, nil, nil, 0
		c.byIno[old.ino] = c.lazy.PushFront(old)
	}
	for c.lazy.Len() > keptLazyEntries {
		c.removeLocked(c.lazy.Back().Value.(*keptContent).ino)
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
	c.full.Init()
	c.lazy.Init()
	clear(c.byIno)
	c.bytes = 0
	c.mu.Unlock()
}

func (c *closedCache) removeLocked(ino uint64) {
	if e := c.byIno[ino]; e != nil {
		k := e.Value.(*keptContent)
		if k.lazy {
			c.lazy.Remove(e)
		} else {
			c.bytes -= k.cost
			c.full.Remove(e)
		}
		delete(c.byIno, ino)
	}
}

// installLazyLocked takes in the filer's word that f is still at the
// generation of a lazy kept entry, with attributes a: f stays not loaded
// (a read fetches the content) but answers for its size and mtime, so
// the kernel may keep its pages (called with f.mu held, f not loaded and
// holding nothing local). newer is as applyContentLocked's.
func (f *file) installLazyLocked(a *Attr) (newer bool) {
	prev := f.attr.Generation
	f.attr = *a
	if f.fs.meta.enabled() {
		newer = f.fs.meta.putAttr(*a)
	} else {
		newer = a.Generation != prev
	}
	f.size, f.mtime = int64(a.Size), a.Mtime
	f.lazyGen = a.Generation
	f.fs.io.unchanged.Add(1)
	return newer
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
