package mount

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/needle"
)

// chunkRef is one chunk of a file as this mount knows it: committed (the
// filer lists it), uploaded but not yet committed, or sealed and still in
// memory (fid == "") while its upload runs or after it failed.
type chunkRef struct {
	off, size int64
	fid       string
	etag      string
	modNs     int64
	mem       []byte     // the bytes while fid == "", unless spilled
	pb        *pooledBuf // the pool buffer mem lies in, if any (slotpool.go)
	spill     *spilled   // or there, on disk
	committed bool
	failed    bool // the last upload failed; Flush retries it
}

// slot holds the unsealed writes to one ChunkSize-aligned range.
type slot struct {
	idx     int64
	buf     []byte     // bytes from the slot's start; len = highest written end
	runs    []span     // written ranges, sorted, disjoint, merged (slot-relative)
	charged int64      // budget bytes held (cap of buf)
	pb      *pooledBuf // buf's pool buffer, if it came from the pool
}

type span struct{ start, end int64 }

// file is an inode open on this mount or holding unflushed data. Handles
// share it, so every reader on the mount sees every writer's bytes.
type file struct {
	fs  *FS
	ino uint64

	truncMu sync.RWMutex // writes share it; a truncate takes it alone
	flushMu sync.Mutex   // one flush at a time

	mu        sync.Mutex
	cond      *sync.Cond // signalled when inflight drops
	opens     int
	writers   int  // writable handles open on this mount
	filerOpen bool // the filer holds a handle for this mount
	// filerLease is the session that handle was taken under (or taken
	// back under, handles.go): its release names it.
	filerLease string
	storing    bool // storeSmall is filling the kernel's page cache
	loaded     bool // refs/inline/size reflect the filer (plus local state)
	stale      bool // another client changed the file: reload when clean
	// staleSeq counts stale marks, so that a fetch answered after one
	// came in does not clear it (the change may be newer than the
	// answer).
	staleSeq uint64
	attr     Attr // the filer's attributes, last seen
	// contentGen is the generation whose content inline and the
	// committed refs are exactly (0: not known: the next open fetches
	// it whole); an open naming it is answered "unchanged" while the
	// file stays at it.
	contentGen uint64
	// lazyGen is the generation a read-only open found current without
	// fetching the content (a lazy kept entry): not loaded, the first
	// read fetches it, and a close before then keeps a lazy entry again.
	lazyGen   uint64
	inline    []byte // committed inline content
	refs      []*chunkRef
	ivs       []needle.Interval
	ivsOK     bool
	size      int64
	mtime     int64
	metaDirty bool // size or mtime changed locally and not committed
	dirty     map[int64]*slot
	inflight  int
	err       error // first upload error since the last flush
	lastMod   int64
	writeEnd  int64  // where the last write ended
	writes    uint64 // writes taken, to tell whether any came in meanwhile
	// lockOwners are the owners that asked for record locks on the
	// file, each with the handles it asked through: a close by the
	// owner (Flush) releases its locks and forgets it, so what is left
	// at a handle's release belongs to its open file description.
	lockOwners map[uint64]map[uint64]struct{}
}

type handle struct {
	fh      uint64
	f       *file
	backing bool // opened naming the file's image as its backing file
	// mapsImage: a writable handle with the image as its backing file;
	// the kernel maps the image for its mmap.
	mapsImage bool
	// direct: a writable handle doing direct IO (EnableDirectWrites):
	// its writes never reached the kernel's page cache.
	direct   bool
	writable bool // counted in f.writers
	mu       sync.Mutex
	lastEnd  int64 // where the last read ended, for read-ahead
}

// fileFor returns ino's file state, creating it.
func (fs *FS) fileFor(ino uint64) *file {
	fs.mu.Lock()
	f := fs.files[ino]
	if f == nil {
		f = &file{fs: fs, ino: ino, dirty: make(map[int64]*slot)}
		f.cond = sync.NewCond(&f.mu)
		fs.files[ino] = f
	}
	f.mu.Lock()
	fs.mu.Unlock()
	f.opens++
	// A new handle's IO must not cross a store into the page cache
	// (storeSmall).
	for f.storing {
		f.cond.Wait()
	}
	f.mu.Unlock()
	return f
}

// addHandle numbers h and records it.
func (fs *FS) addHandle(h *handle) uint64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.nextFh++
	h.fh = fs.nextFh
	fs.handles[fs.nextFh] = h
	return fs.nextFh
}

func (fs *FS) handle(fh uint64) *handle {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.handles[fh]
}

// Open opens regular file ino and says how the kernel should do its IO
// (see OpenMode).
func (fs *FS) Open(ctx context.Context, ino uint64, flags uint32) (fh uint64, mode OpenMode, errno syscall.Errno) {
	if fs.cfg.ReadOnly && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return 0, OpenMode{}, syscall.EROFS
	}
	f := fs.fileFor(ino)
	lazyOK := flags&syscall.O_ACCMODE == syscall.O_RDONLY && flags&syscall.O_DIRECT == 0
	if errno := f.open(ctx, lazyOK); errno != 0 {
		fs.dropOpen(f)
		return 0, OpenMode{}, errno
	}
	if lazyOK {
		// A file written here lately may be getting its image.
		fs.images.awaitFill(ctx, ino)
	}
	fh, mode = fs.newHandleMode(f, flags)
	if mode.BackingID == 0 {
		mode.KeepCache = f.keepCache()
	}
	return fh, mode, 0
}

// newHandleMode makes a handle on f opened with flags, passing it
// through to f's image when the image store says so.
func (fs *FS) newHandleMode(f *file, flags uint32) (uint64, OpenMode) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	f.mu.Lock()
	id, direct := fs.images.open(f, flags)
	streaming := f.streamingLocked(flags)
	if writable {
		f.writers++
	}
	f.mu.Unlock()
	h := &handle{f: f, backing: id != 0, mapsImage: id != 0 && writable, writable: writable}
	if id == 0 && streaming && fs.directWrites.Load() {
		h.direct, direct = true, true
		fs.io.directHandles.Add(1)
	}
	return fs.addHandle(h), OpenMode{BackingID: id, DirectIO: direct}
}

// streamingLocked says whether a handle opened with flags is one whose
// writes should skip the kernel's page cache (EnableDirectWrites): one
// opened write-only, or read-write on a file that holds no data yet (new,
// truncated, or only sized: cp, tar, a compiler, fio's writers). A
// read-write open of a file with data (a database, an editor) reads what
// it updates, and the page cache serves those reads.
func (f *file) streamingLocked(flags uint32) bool {
	switch flags & syscall.O_ACCMODE {
	case syscall.O_WRONLY:
		return true
	case syscall.O_RDWR:
		return len(f.refs) == 0 && len(f.inline) == 0 && len(f.dirty) == 0
	}
	return false
}

// Create makes and opens a regular file.
// Create makes and opens a regular file for a caller whose umask the
// kernel left to the file system (see umask).
func (fs *FS) Create(ctx context.Context, c Caller, parent uint64, name string, mode, umask, flags uint32) (Attr, uint64, OpenMode, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, 0, OpenMode{}, e
	}
	defer fs.meta.changing(parent)()
	var (
		a      Attr
		f      *file
		loaded bool
	)
	err := fs.withHandleSession(ctx, func(session string) error {
		resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
			return fs.api.Create(ctx, &filerpb.CreateRequest{Parent: parent, Name: name,
				Mode: syscall.S_IFREG | mode&^syscall.S_IFMT, Umask: fs.umask(umask), Uid: c.Uid, Gid: c.Gid,
				Exclusive: flags&syscall.O_EXCL != 0, Open: true, Lease: session})
		})
		if err != nil {
			return err
		}
		a = fs.entryMade(parent, name, resp)
		// A new inode has no file capabilities; the kernel asks before
		// every write.
		fs.xattrs.remember(a.Ino, capabilityXattr, fs.cfg.AttrTimeout)
		f = fs.fileFor(a.Ino)
		f.mu.Lock()
		if a.Size == 0 && !f.hasLocalLocked() {
			fs.images.emptyAt(a.Ino, a.Generation)
		}
		f.mu.Unlock()
		loaded = f.created(resp.Attr, session)
		return nil
	})
	if err != nil {
		return Attr{}, 0, OpenMode{}, fs.failed(err, []uint64{parent})
	}
	if !loaded {
		if errno := f.reload(ctx, true); errno != 0 {
			fs.dropOpen(f)
			return Attr{}, 0, OpenMode{}, errno
		}
	}
	f.overlayAttr(&a)
	fh, om := fs.newHandleMode(f, flags)
	return a, fh, om, 0
}

// created records the filer's handle a Create took with the file, and
// reports whether its content is loaded: an empty file's content is
// known; one that existed (a create without O_EXCL) is to be fetched.
func (f *file) created(a *filerpb.Attr, lease string) (loaded bool) {
	f.mu.Lock()
	dup := f.filerOpen
	if !dup {
		f.filerOpen, f.filerLease = true, lease
	}
	if a.GetSize() == 0 && !f.hasLocalLocked() {
		f.applyContentLocked(&filerpb.GetChunksResponse{Attr: a}, f.staleSeq)
	}
	loaded = f.loaded
	f.mu.Unlock()
	if dup {
		f.fs.releaseAsync(lease, f.ino)
	}
	return loaded
}

// open takes the filer's handle (once per mount) and loads the content
// unless this mount holds unflushed data for it (close-to-open: an open
// sees what was closed elsewhere before it), in one round trip. With
// lazyOK (a read-only open, not O_DIRECT), a file kept without content
// whose pages the kernel should still hold leaves its content to the
// first read that reaches the mount.
func (f *file) open(ctx context.Context, lazyOK bool) syscall.Errno {
	f.mu.Lock()
	needOpen := !f.filerOpen
	known, seq := f.knownGenerationLocked(), f.staleSeq
	var kept *keptContent
	if needOpen && known == 0 && !f.loaded && !f.hasLocalLocked() {
		kept = f.fs.kept.take(f.ino)
		if kept != nil && kept.lazy && !(lazyOK && f.fs.pages.cached(f.ino, kept.attr.Mtime, int64(kept.attr.Size))) {
			kept = nil // a writer builds on the content, and a read would fetch it next: fetch it now
		}
		if kept != nil {
			known = kept.gen
		}
	}
	f.mu.Unlock()
	if !needOpen {
		return f.reload(ctx, true)
	}
	newer, moved := false, false
	err := f.fs.withHandleSession(ctx, func(session string) error {
		resp, err := call(f.fs, ctx, func(ctx context.Context) (*filerpb.GetChunksResponse, error) {
			return f.fs.api.OpenContent(ctx, &filerpb.OpenRequest{Inode: f.ino, Lease: session, KnownGeneration: known})
		})
		if err != nil {
			return err
		}
		f.mu.Lock()
		dup := f.filerOpen
		if !dup {
			f.filerOpen, f.filerLease = true, session
		}
		if !f.hasLocalLocked() {
			switch {
			case !resp.Unchanged:
				newer = f.applyContentLocked(resp, seq)
			case kept != nil && !f.loaded && resp.GetAttr().GetGeneration() == kept.gen && kept.lazy:
				a := attrFromPB(resp.Attr)
				newer = f.installLazyLocked(&a)
			case kept != nil && !f.loaded && resp.GetAttr().GetGeneration() == kept.gen:
				a := attrFromPB(resp.Attr)
				newer = f.installKeptLocked(kept, &a)
			default:
				var ok bool
				ok, newer = f.applyUnchangedLocked(resp, known)
				moved = !ok
			}
		}
		f.mu.Unlock()
		if dup {
			// Another open raced us to it: give ours back.
			f.fs.releaseAsync(session, f.ino)
		}
		return nil
	})
	if err != nil {
		return toErrno(err)
	}
	if moved {
		// The copy the answer vouched for was replaced meanwhile: fetch
		// what the filer has now (the handle is taken).
		return f.reload(ctx, true)
	}
	f.attrChanged(newer)
	return 0
}

// knownGenerationLocked is the generation whose content f holds, for a
// fetch that leaves out what did not change (0: none to name).
func (f *file) knownGenerationLocked() uint64 {
	if !f.loaded || f.stale || f.hasLocalLocked() {
		return 0
	}
	return f.contentGen
}

// applyUnchangedLocked takes in the filer's answer that f is still at
// generation known, with no content; ok false if f's copy moved since
// known was read from it (the caller fetches in full). newer is as
// applyContentLocked's.
func (f *file) applyUnchangedLocked(resp *filerpb.GetChunksResponse, known uint64) (ok, newer bool) {
	if !f.loaded || known == 0 || f.contentGen != known || resp.GetAttr().GetGeneration() != known {
		return false, false
	}
	f.attr = attrFromPB(resp.Attr)
	if f.fs.meta.enabled() {
		newer = f.fs.meta.putAttr(f.attr)
	}
	f.fs.io.unchanged.Add(1)
	return true, newer
}

// attrChanged tells the kernel to drop the attributes it holds when an
// open found the file changed since this mount last answered for it
// (close-to-open: the kernel would otherwise read up to the old size
// until its attribute timeout).
func (f *file) attrChanged(newer bool) {
	if !newer {
		return
	}
	if inv := f.fs.invalidator(); inv != nil {
		inv.InvalidateAttr(f.ino)
	}
}

// reload fetches the file's content from the filer unless local state
// must win (unflushed data). With always unset, only a stale or never
// loaded file is fetched.
func (f *file) reload(ctx context.Context, always bool) syscall.Errno {
	newer, _, errno := f.fetch(ctx, func() bool { return !always && f.loaded && !f.stale })
	if errno == 0 {
		f.attrChanged(newer)
	}
	return errno
}

// revalidate fetches the file's content after a lock was granted, unless
// this mount holds unflushed data, and drops the kernel's attributes and
// pages if the file changed: what another mount wrote and flushed before
// it unlocked is what the lock holder reads. (The watcher would tell the
// same a little later; a lock must not wait for that.) gen, if not 0, is
// the file's generation as the filer granted the lock: a copy of that
// generation is current as it is. A lock request holds no page lock, so
// the kernel's pages can be dropped here.
func (f *file) revalidate(ctx context.Context, gen uint64) syscall.Errno {
	_, changed, errno := f.fetch(ctx, func() bool {
		return gen != 0 && !f.stale && f.attr.Generation == gen && (f.loaded || f.lazyGen == gen)
	})
	if errno == 0 && changed {
		f.fs.pages.forget(f.ino)
		if inv := f.fs.invalidator(); inv != nil {
			inv.InvalidateInode(f.ino)
		}
	}
	if errno == 0 {
		// Handles passing through read the image, not the pages.
		errno = f.refreshImage(ctx)
	}
	return errno
}

// fetch installs the filer's content of the file unless the mount holds
// unflushed data (which wins: writes build on what the mount had) or
// current (called with f.mu held) says the copy is current. newer says
// the attributes are newer than any the mount answered before; changed
// that the generation moved (or nothing was loaded).
func (f *file) fetch(ctx context.Context, current func() bool) (newer, changed bool, errno syscall.Errno) {
	f.mu.Lock()
	if f.hasLocalLocked() || current() {
		f.mu.Unlock()
		return false, false, 0
	}
	prev, loaded := f.attr.Generation, f.loaded
	held := loaded || (f.lazyGen != 0 && f.lazyGen == prev) // the kernel's pages are of prev
	known, seq := f.knownGenerationLocked(), f.staleSeq
	f.mu.Unlock()
	for {
		resp, err := call(f.fs, ctx, func(ctx context.Context) (*filerpb.GetChunksResponse, error) {
			return f.fs.api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: f.ino, KnownGeneration: known})
		})
		if err != nil {
			return false, false, toErrno(err)
		}
		if resp.Unchanged && known == 0 {
			f.fs.log.Error("mount: the filer answered 'unchanged' to a fetch naming no generation", "inode", f.ino)
			return false, false, syscall.EIO
		}
		f.mu.Lock()
		if f.hasLocalLocked() {
			f.mu.Unlock()
			return false, false, 0 // a write got in first; it builds on what we had
		}
		if resp.Unchanged {
			ok, newer := f.applyUnchangedLocked(resp, known)
			f.mu.Unlock()
			if ok {
				return newer, false, 0
			}
			known = 0 // f's copy moved meanwhile: ask for all of it
			continue
		}
		newer = f.applyContentLocked(resp, seq)
		changed = !held || f.attr.Generation != prev
		f.mu.Unlock()
		return newer, changed, 0
	}
}

// applyContentLocked installs content the filer answered; newer says
// its attributes are newer than any this mount answered before. seq is
// f.staleSeq as it was when the filer was asked: a stale mark set since
// stays.
func (f *file) applyContentLocked(resp *filerpb.GetChunksResponse, seq uint64) (newer bool) {
	if f.loaded && resp.GetAttr().GetGeneration() < f.attr.Generation {
		// An answer older than what f holds: f moved on while it was
		// in flight (a write committed here, a truncate); keep f's.
		return false
	}
	refs := f.refs[:0]
	for _, c := range resp.Chunks {
		refs = append(refs, &chunkRef{off: c.Offset, size: c.Size, fid: c.FileId, etag: c.Etag,
			modNs: c.ModifiedNs, committed: true})
	}
	newer = f.installContentLocked(attrFromPB(resp.Attr), refs, resp.Inline)
	if f.staleSeq == seq {
		f.stale = false // (else a change came in after the question)
	}
	return newer
}

// installContentLocked makes refs (committed) and inline, the filer's
// content with attributes a, f's content, of a's generation. newer says
// a is newer than any attributes this mount answered before.
func (f *file) installContentLocked(a Attr, refs []*chunkRef, inline []byte) (newer bool) {
	prev, loaded := f.attr.Generation, f.loaded
	held := loaded || (f.lazyGen != 0 && f.lazyGen == prev)
	f.attr = a
	if f.fs.meta.enabled() {
		newer = f.fs.meta.putAttr(a)
	} else {
		newer = !held || a.Generation != prev
	}
	f.lazyGen = 0
	f.refs = refs
	for _, r := range refs {
		f.lastMod = max(f.lastMod, r.modNs)
	}
	f.inline = nil
	if len(inline) > 0 {
		f.inline = inline
	}
	f.ivsOK = false
	f.size, f.mtime = int64(a.Size), a.Mtime
	f.loaded = true
	f.contentGen = a.Generation
	return newer
}

// hasLocalLocked: the mount holds something the filer does not have.
func (f *file) hasLocalLocked() bool {
	if len(f.dirty) > 0 || f.inflight > 0 || f.metaDirty || f.err != nil {
		return true
	}
	for _, r := range f.refs {
		if !r.committed {
			return true
		}
	}
	return false
}

// keepCache reports whether the kernel's pages of the file are current,
// and records that they will be from now on.
func (f *file) keepCache() bool {
	f.mu.Lock()
	mtime, size := f.mtime, f.size
	f.mu.Unlock()
	return f.fs.pages.keep(f.ino, mtime, size)
}

// overlayAttr lays unflushed size and mtime over a filer attr.
func (f *file) overlayAttr(a *Attr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hasLocalLocked() {
		a.Size = uint64(f.size)
		a.Mtime = max(a.Mtime, f.mtime)
	}
}

// truncated resets the content after the filer truncated the file; the
// caller holds truncMu and flushed first. An empty file's content is
// known; otherwise reload says the caller must fetch it.
func (f *file) truncated(a Attr) (reload bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attr = a
	f.refs, f.inline, f.ivsOK = nil, nil, false
	f.size, f.mtime = int64(a.Size), a.Mtime
	f.loaded, f.stale = a.Size == 0, a.Size != 0
	f.contentGen, f.lazyGen = 0, 0
	if a.Size == 0 {
		f.contentGen = a.Generation
	}
	f.fs.pages.set(f.ino, a.Mtime, int64(a.Size))
	return a.Size != 0
}

// mtimeSet records a modification time set explicitly (utimens), so a
// later commit of unflushed writes made before it keeps it.
func (f *file) mtimeSet(mtime int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mtime = mtime
}

// Release closes handle fh: unflushed data is flushed (errors can only be
// logged here; Flush reported them to close(2)), the locks of the open
// file description go (its flock lock, which the kernel names with
// flockOwner when releaseFlock is set, and its OFD record locks), and
// the last handle on the mount gives the filer's handle back.
func (fs *FS) Release(fh uint64, flockOwner uint64, releaseFlock bool) {
	fs.mu.Lock()
	h := fs.handles[fh]
	fs.mu.Unlock()
	if h == nil {
		return
	}
	// Counted open until all of it is done (OpenHandles: a test that
	// waits for none open then finds what the release left, such as a
	// fill queued).
	defer func() {
		fs.mu.Lock()
		delete(fs.handles, fh)
		fs.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), fs.cfg.OpTimeout)
	defer cancel()
	if errno := h.flush(ctx); errno != 0 {
		fs.log.Warn("mount: flush on release failed", "inode", h.f.ino, "errno", errno)
	}
	if releaseFlock {
		fs.releaseFlock(ctx, h.f.ino, flockOwner)
	}
	// Every process that set record locks through this handle has
	// closed it by now, and its close (Flush) dropped them; what is left
	// belongs to the open file description itself: OFD locks, which the
	// kernel sends as record locks owned by the file and never unlocks.
	for _, owner := range h.f.releasedHandle(fh) {
		fs.releaseOwner(ctx, h.f.ino, owner, true)
	}
	if h.backing {
		fs.images.released(h.f.ino)
	}
	if h.writable {
		h.f.mu.Lock()
		h.f.writers--
		last := h.f.writers == 0
		h.f.mu.Unlock()
		if last {
			fs.images.writerClosed(h.f)
		}
	}
	if h.direct {
		h.f.storeSmall()
	}
	fs.dropOpen(h.f)
}

// storeSmall puts the content of a small file into the kernel's page
// cache when the last handle on it, one whose writes bypassed the cache,
// is released: a program that writes small files and reads them back
// (fsbench, a compiler and its linker) finds them there as before. Only
// inline content qualifies (the filer's InlineLimit, 4 KiB by default);
// larger files written here are read through their image.
//
// The store runs with no handle open on the mount: no read of the file
// can hold a page the store needs, and new handles wait for it in
// fileFor, truncates in SetAttr. A change that lands meanwhile (from the
// change feed, or a chmod or utimens here) is noticed afterwards, and the
// pages are dropped again before anyone can open the file.
func (f *file) storeSmall() {
	inv := f.fs.invalidator()
	f.mu.Lock()
	if inv == nil || f.opens != 1 || f.storing || !f.loaded || f.stale || f.hasLocalLocked() ||
		f.size == 0 || int64(len(f.inline)) != f.size {
		f.mu.Unlock()
		return
	}
	data, mtime, size, writes := f.inline, f.mtime, f.size, f.writes
	f.storing = true
	f.mu.Unlock()
	err := inv.StoreCache(f.ino, 0, data)
	f.mu.Lock()
	same := !f.stale && f.mtime == mtime && f.size == size && f.writes == writes && !f.hasLocalLocked()
	if err == nil && !same {
		// Drop what was stored before any new handle can read it
		// (the kernel holds no page of the file waiting on us: there
		// is no handle).
		f.fs.pages.forget(f.ino)
		f.mu.Unlock()
		inv.InvalidateInode(f.ino)
		f.mu.Lock()
	}
	if err == nil && same {
		f.fs.pages.set(f.ino, mtime, size)
		f.fs.io.stored.Add(1)
	}
	f.storing = false
	f.cond.Broadcast()
	f.mu.Unlock()
}

// waitStored waits for a storeSmall of f in progress to end.
func (f *file) waitStored() {
	f.mu.Lock()
	for f.storing {
		f.cond.Wait()
	}
	f.mu.Unlock()
}

// dropOpen undoes one fileFor; the last one releases the filer's handle
// and forgets the file if it holds nothing unflushed.
func (fs *FS) dropOpen(f *file) {
	f.mu.Lock()
	f.opens--
	last := f.opens == 0
	release := last && f.filerOpen
	lease := f.filerLease
	if release {
		f.filerOpen, f.filerLease = false, ""
	}
	clean := last && !f.hasLocalLocked()
	f.mu.Unlock()
	if release {
		fs.releaseAsync(lease, f.ino)
	}
	if clean {
		fs.mu.Lock()
		f.mu.Lock()
		if f.opens == 0 && !f.hasLocalLocked() && fs.files[f.ino] == f {
			delete(fs.files, f.ino)
			fs.kept.keep(f)
		}
		f.mu.Unlock()
		fs.mu.Unlock()
	}
}

// releaseAsync gives the filer's handle on ino back in the background:
// close(2) need not wait for it (the filer only counts handles). Releases
// gather for releaseDelay and while a call is in flight, and go together
// in one call, so a burst of closes costs a few round trips. Close waits for them before
// disconnecting.
func (fs *FS) releaseAsync(lease string, ino uint64) {
	fs.relMu.Lock()
	fs.relQueue = append(fs.relQueue, heldHandle{lease, ino})
	start := !fs.relSending
	fs.relSending = true
	fs.relMu.Unlock()
	if !start {
		return
	}
	fs.releases.Add(1)
	go func() {
		defer fs.releases.Done()
		for {
			// Let closes that come right after this one join it
			// (a program closing many files closes them in a row).
			select {
			case <-time.After(releaseDelay):
			case <-fs.bgCtx.Done():
			}
			fs.relMu.Lock()
			batch := fs.relQueue
			fs.relQueue = nil
			if len(batch) == 0 {
				fs.relSending = false
				fs.relMu.Unlock()
				return
			}
			fs.relMu.Unlock()
			fs.sendReleases(batch)
		}
	}()
}

// maxReleaseBatch bounds one Release call; releaseDelay is how long a
// release waits for others to go with it. It only delays when the filer
// frees an unlinked file's space.
const (
	maxReleaseBatch = 1024
	releaseDelay    = 5 * time.Millisecond
)

// Flush is close(2)'s flush: unflushed data reaches every replica and the
// filer before it returns; errors come back as EIO. Then the record locks
// of lockOwner (the closing process) on the file go, as POSIX wants for
// any close of the file.
func (fs *FS) Flush(ctx context.Context, fh, lockOwner uint64) syscall.Errno {
	h := fs.handle(fh)
	if h == nil {
		return syscall.EBADF
	}
	errno := h.flush(ctx)
	fs.releaseOwner(ctx, h.f.ino, lockOwner, h.f.closedBy(lockOwner))
	return errno
}

// flush flushes the handle's file, first taking in what its shared
// writable mapping wrote into the image, if it maps one.
func (h *handle) flush(ctx context.Context) syscall.Errno {
	if h.mapsImage {
		if errno := h.f.absorbMapped(ctx); errno != 0 {
			return errno
		}
	}
	return h.f.flush(ctx)
}

// lockedThrough records that owner asked for a record lock on the file
// through handle fh.
func (f *file) lockedThrough(owner, fh uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lockOwners == nil {
		f.lockOwners = make(map[uint64]map[uint64]struct{})
	}
	if f.lockOwners[owner] == nil {
		f.lockOwners[owner] = make(map[uint64]struct{})
	}
	f.lockOwners[owner][fh] = struct{}{}
}

// closedBy forgets owner, which closed the file, and says whether it had
// asked for record locks on it.
func (f *file) closedBy(owner uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.lockOwners[owner]
	delete(f.lockOwners, owner)
	return ok
}

// releasedHandle forgets handle fh and returns the owners that asked for
// record locks through it and never closed the file: its OFD owners.
func (f *file) releasedHandle(fh uint64) []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint64
	for owner, fhs := range f.lockOwners {
		if _, ok := fhs[fh]; ok {
			out = append(out, owner)
			delete(f.lockOwners, owner)
		}
	}
	return out
}

// Fsync: the volume servers hold every replica once it returns.
func (fs *FS) Fsync(ctx context.Context, fh uint64) syscall.Errno {
	h := fs.handle(fh)
	if h == nil {
		return syscall.EBADF
	}
	return h.flush(ctx)
}
