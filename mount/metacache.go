package mount

import (
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// metaCache holds the attributes and directory listings the filer gave
// this mount, so GETATTR and LOOKUP (negative ones included) are answered
// without a round trip. It is fed by every filer answer that carries
// attributes, by the ChangeResponses of this mount's own mutations and by
// the change-log watcher for everyone else's. It is trusted only while
// the watcher's stream is up (live), and an entry older than ttl is not
// used, so a missed event cannot keep a stale answer for long. Opens still
// ask the filer (close-to-open consistency does not rest on the cache).
//
// Attributes are ordered by the filer's per-inode generation (it goes up
// with every change), so an older answer arriving late never replaces a
// newer one. Directory listings are ordered by a cache-wide sequence: a
// name learnt by a lookup is kept only if the directory did not change
// while the lookup was in flight.
type metaCache struct {
	ttl time.Duration

	mu    sync.Mutex
	live  bool
	seq   uint64
	attrs *lru.Cache[uint64, *attrEntry]
	dirs  *lru.Cache[uint64, *dirListing]
	busy  map[uint64]int // directories with a change of this mount in flight
}

type attrEntry struct {
	a      Attr
	valid  bool
	minGen uint64 // answers older than this are stale
	at     time.Time
}

// dirListing is what the cache knows of one directory's names. complete
// says names is the whole directory, so a missing name does not exist.
type dirListing struct {
	names    map[string]uint64
	complete bool
	at       time.Time // when complete was last established or confirmed
	version  uint64    // seq of the last change
}

// Cache bounds: an attribute entry is ~200 bytes; a listing is capped so a
// huge directory does not take the memory of thousands of small ones.
const (
	metaCacheInodes  = 1 << 18
	metaCacheDirs    = 1 << 13
	metaCacheDirSize = 1 << 16
	goneGen          = math.MaxUint64
)

func newMetaCache(ttl time.Duration) *metaCache {
	attrs, _ := lru.New[uint64, *attrEntry](metaCacheInodes)
	dirs, _ := lru.New[uint64, *dirListing](metaCacheDirs)
	return &metaCache{ttl: ttl, attrs: attrs, dirs: dirs, busy: make(map[uint64]int)}
}

func (c *metaCache) enabled() bool { return c != nil && c.ttl > 0 }

// setLive says whether the watcher's stream is up; while it is down the
// cache answers nothing (it may be missing other clients' changes).
func (c *metaCache) setLive(live bool) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	c.live = live
	c.mu.Unlock()
}

// reset forgets everything (the watcher lost history).
func (c *metaCache) reset() {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attrs.Purge()
	c.dirs.Purge()
	c.seq++
}

func (c *metaCache) fresh(at time.Time) bool { return c.live && time.Since(at) < c.ttl }

// attr returns ino's cached attributes if they can be trusted.
func (c *metaCache) attr(ino uint64) (Attr, bool) {
	if !c.enabled() {
		return Attr{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.attrs.Get(ino)
	if !ok || !e.valid || !c.fresh(e.at) {
		return Attr{}, false
	}
	return e.a, true
}

// putAttr records attributes the filer answered, unless a newer
// generation is known. newer says no answer as new as a was cached
// before (the kernel may hold older attributes).
func (c *metaCache) putAttr(a Attr) (newer bool) {
	if !c.enabled() || a.Ino == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.putAttrLocked(a)
}

func (c *metaCache) putAttrLocked(a Attr) (newer bool) {
	e, ok := c.attrs.Peek(a.Ino)
	if !ok {
		c.attrs.Add(a.Ino, &attrEntry{a: a, valid: true, minGen: a.Generation, at: time.Now()})
		return true
	}
	if a.Generation < e.minGen || (e.valid && a.Generation < e.a.Generation) {
		return false
	}
	newer = a.Generation > e.a.Generation
	e.a, e.valid, e.minGen, e.at = a, true, a.Generation, time.Now()
	return newer
}

// invalidate drops ino's attributes; answers older than generation minGen
// are refused from now on (goneGen: the inode is gone).
func (c *metaCache) invalidate(ino, minGen uint64) {
	if !c.enabled() || ino == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalidateLocked(ino, minGen)
}

func (c *metaCache) invalidateLocked(ino, minGen uint64) {
	e, ok := c.attrs.Peek(ino)
	if !ok {
		if minGen == 0 {
			return
		}
		e = &attrEntry{}
		c.attrs.Add(ino, e)
	}
	e.valid = false
	e.minGen = max(e.minGen, minGen)
}

// invalidateChanged drops ino's attributes because it changed in a way
// whose result this mount was not told: a newer generation than the one
// cached must come.
func (c *metaCache) invalidateChanged(ino uint64) {
	if !c.enabled() || ino == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var gen uint64
	if e, ok := c.attrs.Peek(ino); ok {
		gen = max(e.minGen, e.a.Generation+1)
	}
	c.invalidateLocked(ino, gen)
}

// lookup answers name in parent from a listing: known says the cache can
// answer; then ino is the name's inode, 0 if it does not exist.
func (c *metaCache) lookup(parent uint64, name string) (ino uint64, known bool) {
	if !c.enabled() {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.dirs.Get(parent)
	if !ok || !c.live || c.busy[parent] > 0 {
		return 0, false
	}
	if ino, ok := d.names[name]; ok {
		return ino, true
	}
	if d.complete && c.fresh(d.at) {
		return 0, true
	}
	return 0, false
}

// changing marks directories as being changed by this mount until the
// returned func runs: the filer may already answer with the change while
// the cache does not have it yet, so lookups there ask the filer (an
// answer older than the filer's could name an inode that is gone).
func (c *metaCache) changing(dirs ...uint64) (done func()) {
	if !c.enabled() {
		return func() {}
	}
	c.mu.Lock()
	for _, d := range dirs {
		c.busy[d]++
	}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, d := range dirs {
			if c.busy[d]--; c.busy[d] <= 0 {
				delete(c.busy, d)
			}
		}
	}
}

// version is the sequence a lookup or listing records before asking the
// filer, to hand to learnName or setListing.
func (c *metaCache) version() uint64 {
	if !c.enabled() {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// listingLocked returns parent's listing, making an empty incomplete one.
func (c *metaCache) listingLocked(parent uint64) *dirListing {
	d, ok := c.dirs.Get(parent)
	if !ok {
		d = &dirListing{names: make(map[string]uint64), version: c.seq}
		c.dirs.Add(parent, d)
	}
	return d
}

// learnName records name -> ino from a lookup that started at version
// since, unless the directory changed meanwhile.
func (c *metaCache) learnName(parent uint64, name string, ino, since uint64) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.listingLocked(parent)
	if d.version > since {
		return
	}
	c.setNameLocked(d, name, ino)
}

func (c *metaCache) setNameLocked(d *dirListing, name string, ino uint64) {
	if _, ok := d.names[name]; !ok && len(d.names) >= metaCacheDirSize {
		d.complete = false
		clear(d.names)
	}
	d.names[name] = ino
}

// setListing installs a directory's whole listing read from version since,
// unless the directory changed meanwhile.
func (c *metaCache) setListing(dir uint64, names map[string]uint64, since uint64) {
	if !c.enabled() || len(names) > metaCacheDirSize {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.listingLocked(dir)
	if d.version > since {
		return
	}
	d.names, d.complete, d.at = names, true, time.Now()
}

// newDir records a directory this mount just made: it is empty.
func (c *metaCache) newDir(dir uint64) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.dirs.Add(dir, &dirListing{names: make(map[string]uint64), complete: true, at: time.Now(), version: c.seq})
}

// named records that name in parent now is ino (0: it does not exist).
func (c *metaCache) named(parent uint64, name string, ino uint64) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.namedLocked(parent, name, ino)
}

func (c *metaCache) namedLocked(parent uint64, name string, ino uint64) {
	c.seq++
	d := c.listingLocked(parent)
	d.version = c.seq
	if ino == 0 {
		delete(d.names, name)
		return
	}
	c.setNameLocked(d, name, ino)
}

// renamed moves a name as a rename did (exchange swaps the two). A name
// whose inode the cache does not know leaves the listings incomplete.
func (c *metaCache) renamed(oldParent uint64, oldName string, newParent uint64, newName string, exchange bool) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	src := c.listingLocked(oldParent)
	dst := c.listingLocked(newParent)
	a, aok := src.names[oldName]
	b, bok := dst.names[newName]
	c.namedLocked(oldParent, oldName, 0)
	c.namedLocked(newParent, newName, 0)
	if !aok {
		dst.complete = false
	} else {
		c.namedLocked(newParent, newName, a)
	}
	if exchange {
		if !bok {
			src.complete = false
		} else {
			c.namedLocked(oldParent, oldName, b)
		}
	}
}

// forgetDir drops what the cache knows of a directory's names (after an
// operation whose outcome is unknown, or a removed directory).
func (c *metaCache) forgetDir(dir uint64) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.dirs.Remove(dir)
}
