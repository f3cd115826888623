package mount

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Backer hands files to the kernel as FUSE passthrough backing files, so
// it reads them itself instead of asking the mount (mount/fusefs
// implements it when the kernel offers passthrough; registering needs
// CAP_SYS_ADMIN).
type Backer interface {
	RegisterBacking(fd int) (id int32, errno syscall.Errno)
	UnregisterBacking(id int32) syscall.Errno
}

// OpenMode tells the kernel how to do a new handle's IO.
type OpenMode struct {
	// KeepCache: the kernel's cached pages of the file are current.
	KeepCache bool
	// BackingID, if not 0, is the passthrough backing file: the kernel
	// reads it directly (and maps it for mmap).
	BackingID int32
	// DirectIO with a BackingID: reads and writes still come to the
	// mount; only mmap uses the backing file. The kernel wants every open
	// of an inode to name its backing file while one open does, so a
	// handle that must not read the image gets this.
	DirectIO bool
}

// imageMinWrite: a file gets an image only once it is this long. Small
// files are not worth a local file each (their cost is the open, not the
// reads).
const imageMinWrite = 64 << 10

// imageFullBackoff: after an image write finds the disk full, no new
// image starts for this long. Images share the cache directory's disk
// with the chunk cache: on a full disk each new file's image would fill
// what room the cache had just made, fail and be dropped.
const imageFullBackoff = 5 * time.Second

// errImageDropped: the image was evicted or invalidated meanwhile.
var errImageDropped = errors.New("image dropped")

// maxFresh bounds the inodes remembered as eligible for an image.
const maxFresh = 4096

// imageStore keeps local images of files this mount wrote: a whole copy
// of the file's content at offset 0 in a local file, which the kernel can
// read through FUSE passthrough with no round trip to the mount. An image
// follows the file's changes on this mount from the moment the file is
// known to be empty: while nobody passes through to it, written bytes make
// it stale and a fill after the writers close rewrites it from the file
// (imagefill.go); while somebody does, they reach it as their buffers are
// sealed. It is trusted for an inode generation: the generation the
// filer answered to this mount's own commit, truncate, chmod, rename or
// link when the image mirrored that change (or is stale, to be filled).
// Any other change of the inode (by another client, or one the image did
// not mirror) makes the generation move past it and the image untrusted.
// Images are a cache: bounded by bytes, evicted least recently used,
// removed at start.
type imageStore struct {
	dir    string
	budget int64
	log    *slog.Logger

	flushers sync.WaitGroup // the images' queue writers and the fill loop

	mu       sync.Mutex
	backer   Backer // nil: passthrough unavailable, nothing kept
	used     int64
	images   map[uint64]*image
	idle     *list.List // images no handle passes through to, most recent first
	fresh    map[uint64]freshFile
	seq      uint64
	stats    ImageStats
	disabled bool
	closed   bool
	// fullUntil: no new image starts before it (an image write found
	// the disk full, imageFullBackoff ago at most).
	fullUntil time.Time

	// inliners are the images kept up to date as their file is written
	// (sealed bytes queued for them at once), up to inlineMax: a core
	// to spare does that copy beside the writer; other images wait for
	// their fill. One whose file has not been written for inlineIdle
	// gives its place to a writer that needs one: a file held open for
	// writing for good (a database, a log) must not keep the only place
	// on a small machine.
	inliners   []*image
	inlineMax  int
	inlineIdle time.Duration

	// Fills (imagefill.go): queued images written from their files, one
	// at a time by a goroutine running while the queue is not empty.
	fillq    []*image
	filling  bool
	fillCtx  context.Context // canceled by close
	fillStop context.CancelFunc
}

// freshFile is a file known empty at generation gen, written since only
// sequentially from offset 0 up to end (0: not written): it may still get
// an image.
type freshFile struct {
	gen uint64
	end int64
}

// image is one file's local copy.
type image struct {
	ino   uint64
	path  string
	gen   uint64 // the inode generation whose content it holds (plus local writes sealed since)
	valid bool   // false: out of date; kept only while the kernel uses it
	// tainted: a writable handle got it as its backing file, so a
	// shared writable mmap may write it behind the mount's back: never
	// valid again.
	tainted bool
	// foreign: the file changed in a way the image does not mirror
	// (another client, or a change this mount did not see through),
	// so it no longer tells what a writer's mapping wrote.
	foreign    bool
	overBudget bool  // logged once
	length     int64 // the image file's length, also what it is charged
	pt         int   // passthrough handles open on it
	id         int32 // backing id while pt > 0
	elem       *list.Element
	// stale: the file has bytes the image lacks (sealed while no handle
	// passed through, or changed under a fill). Nothing reads a stale
	// image; a fill after the file's writers close rewrites it from the
	// file (imagefill.go). staleSeq counts what made it stale, so a fill
	// that raced a change leaves it stale. fillDone is open while a fill
	// is queued or running and closed when it ends. All under the
	// store's mu.
	stale    bool
	staleSeq uint64
	fillDone chan struct{}
	fillFile *file // the file state of the last writer to close; nil once filled
	// inline: its writers' sealed bytes are queued for it at once (it
	// holds one of the store's inline places until they close, or
	// until another writer takes the place of an idle one). active is
	// when its file was last written or sealed while inline.
	inline bool
	active time.Time

	mu sync.Mutex // held around IO on fd and its close
	fd *os.File   // nil once dropped
	// queue holds sealed bytes on their way to fd, written in order by
	// one goroutine (flushing while it runs): the writer that sealed
	// them does not wait for the page cache. Every other use of fd
	// first waits for the queue to empty (settleLocked), so the image
	// changes in the order the file did.
	queue     []imageWrite
	queued    int64 // bytes in queue
	queuedEnd int64 // the largest end of a queued write (0: none)
	fileLen   int64 // the image file's size, as far as written and truncated
	flushing  bool
	settled   sync.Cond // L is &mu; broadcast when flushing ends or queue shrinks
	// broken: a write or truncate of the image failed, so it lacks
	// bytes of the file. Set under mu before the image is invalidated,
	// so no reader that settles after the failure trusts it.
	broken atomic.Bool
}

// imageWrite is sealed bytes at their offset in the file.
type imageWrite struct {
	data []byte
	off  int64
	pb   *pooledBuf // the pool buffer data lies in, held until written
}

// maxImageQueue bounds the sealed bytes waiting for an image's writer; a
// sealer past it waits (the bytes are also counted nowhere else once
// uploaded).
const maxImageQueue = 32 << 20

// ImageStats counts what passthrough did.
type ImageStats struct {
	// Passthrough: the kernel offers passthrough and the mount may use
	// it (it has a cache directory and an image budget, and the kernel
	// did not refuse a registration).
	Passthrough bool
	// Images is how many images exist, Bytes their length.
	Images int
	Bytes  int64
	// PassthroughOpens counts opens the kernel reads through an image;
	// DirectOpens opens that got the backing file only because another
	// handle of the inode passes through (their IO comes to the mount).
	PassthroughOpens, DirectOpens int64
	// Evicted counts images dropped for room, Invalidated images found
	// out of date, Refreshed images in use rewritten after a lock grant.
	Evicted, Invalidated, Refreshed int64
	// Filled counts images written from their files after the writers
	// closed; FillWaits opens that waited for one.
	Filled, FillWaits int64
}

// newImageStore keeps images in dir (cleared first), up to budget bytes,
// inline of them kept current as their files are written (Config's
// InlineImages: 0 means half the CPUs, at least 1; -1 none).
func newImageStore(dir string, budget int64, inline int, log *slog.Logger) (*imageStore, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear image dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create image dir: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &imageStore{dir: dir, budget: budget, log: log, images: make(map[uint64]*image),
		idle: list.New(), fresh: make(map[uint64]freshFile), fillCtx: ctx, fillStop: stop,
		inlineMax: inlineImages(inline), inlineIdle: inlineIdle}, nil
}

// inlineIdle is how long an inline image's file goes unwritten before
// its place may go to another writer.
const inlineIdle = 2 * time.Second

func inlineImages(n int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return max(1, runtime.NumCPU()/2)
	}
	return n
}

// setBacker turns passthrough on.
func (s *imageStore) setBacker(b Backer) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backer = b
}

func (s *imageStore) onLocked() bool { return s.backer != nil && !s.disabled }

// emptyAt records that ino is empty at generation gen with nothing written
// since (created, or truncated to 0, by this mount): its next write may
// start an image.
func (s *imageStore) emptyAt(ino, gen uint64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.onLocked() {
		return
	}
	if len(s.fresh) >= maxFresh {
		clear(s.fresh)
	}
	s.fresh[ino] = freshFile{gen: gen}
}

// written notes a write f just took (called with f.mu held, after the
// write). A file known empty gets an image when a write makes it
// imageMinWrite bytes long or more: at its first write (a file sized by
// truncate or fallocate and then written anywhere), or once sequential
// writes from offset 0 add up to that. While the mount has a core to
// spare for it (fewer than inlineMax images being written), the image
// takes the file's bytes as they are sealed, beside the writer, so it is
// ready when the writer closes. Otherwise it starts stale: its bytes come
// in one fill from the file once the writers close (imagefill.go), so
// parallel writers do not pay for a second copy of each byte, and a file
// deleted first costs nothing. While handles pass through to the image,
// and read it, each write goes to it at once. For imageFullBackoff after
// an image write found the disk full, no image starts.
func (s *imageStore) written(f *file, data []byte, off int64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	img := s.images[f.ino]
	var prefix []byte
	if img == nil {
		fr, ok := s.fresh[f.ino]
		if !ok {
			s.mu.Unlock()
			return
		}
		end := off + int64(len(data))
		// first: nothing written since it was empty but this write
		// (which may be sealed already); sequential: it follows what
		// was written since. Either way what is sealed lies within
		// what is copied in below, unless a write raced the truncate
		// that made the file empty.
		first := fr.end == 0 && f.size >= imageMinWrite && f.sealedWithinLocked(off, end)
		sequential := off == fr.end && f.sealedWithinLocked(0, end)
		// (f.attr may lag behind fr.gen, never lead it: this mount's
		// own chmod or rename moves fr.gen, not the file's content.)
		if f.attr.Generation > fr.gen || !(first || sequential) || !s.onLocked() {
			delete(s.fresh, f.ino)
			s.mu.Unlock()
			return
		}
		if !first && end < imageMinWrite {
			s.fresh[f.ino] = freshFile{gen: fr.gen, end: end}
			s.mu.Unlock()
			return
		}
		delete(s.fresh, f.ino)
		now := time.Now()
		if now.Before(s.fullUntil) {
			s.mu.Unlock()
			return
		}
		var err error
		if img, err = s.createLocked(f.ino, fr.gen); err != nil {
			s.diskFullLocked(err)
			s.mu.Unlock()
			s.log.Warn("mount: cannot start a file image", "inode", f.ino, "err", err)
			return
		}
		place, idle := s.inlinePlaceLocked(now)
		if place {
			if first {
				// This write may be sealed already (it filled its
				// slot): it goes in now.
				prefix = data
			} else {
				// Some of it may be sealed already: copy it all in
				// (unless part of it is on a volume server only).
				buf := make([]byte, end)
				remote, overlay, err := f.gatherLocked(buf, 0)
				if err == nil && len(remote) == 0 {
					for _, o := range overlay {
						copy(buf[o.at:], o.data)
					}
					prefix, off = buf, 0
				}
			}
		}
		if prefix != nil {
			s.takeInlineLocked(img, now, idle)
		} else {
			img.stale = true
			img.staleSeq++
		}
	}
	if img.inline && prefix == nil {
		img.active = time.Now()
	}
	grows := f.size > img.length
	victims, ok := s.reserveLocked(img, f.size, img.pt > 0)
	if !ok {
		victims = append(victims, s.invalidateLocked(img)...)
	} else if img.elem != nil {
		s.idle.MoveToFront(img.elem)
	}
	now := img.pt > 0
	s.mu.Unlock()
	closeImages(victims)
	if !ok {
		return
	}
	var err error
	img.mu.Lock()
	switch {
	case prefix != nil:
		err = img.writeAt(prefix, off, f.size)
	case now:
		err = img.writeAt(data, off, f.size)
	case grows:
		// The length the image is charged for; the bytes come with the
		// fill (or, while handles pass through, at seal).
		err = img.truncate(f.size)
	}
	report := img.failedLocked(err)
	img.mu.Unlock()
	if report {
		s.failed(img, "write", err)
	}
}

// sealed takes note of chunks just sealed from f's write buffers (called
// with f.mu held). While handles pass through to f's image, or it is
// inline, their bytes are queued for it, and a goroutine writes them;
// otherwise the image goes stale until the fill after the writers close.
func (s *imageStore) sealed(f *file, refs []*chunkRef) {
	if s == nil {
		return
	}
	s.mu.Lock()
	img := s.images[f.ino]
	if img != nil && img.pt == 0 {
		now := time.Now()
		if img.inline {
			img.active = now
		} else if place, idle := s.inlinePlaceLocked(now); place && !img.stale {
			// A current image rewritten, with a core to spare.
			s.takeInlineLocked(img, now, idle)
		}
		if img.stale || !img.inline {
			img.stale = true
			img.staleSeq++
			img = nil
		}
	}
	s.mu.Unlock()
	if img == nil {
		return
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	for img.queued > maxImageQueue && img.fd != nil {
		img.settled.Wait()
	}
	if img.fd == nil {
		return
	}
	for _, r := range refs {
		r.pb.hold() // until written
		img.queue = append(img.queue, imageWrite{r.mem, r.off, r.pb})
		img.queued += int64(len(r.mem))
		img.queuedEnd = max(img.queuedEnd, r.off+int64(len(r.mem)))
	}
	if !img.flushing && len(img.queue) > 0 {
		img.flushing = true
		s.flushers.Add(1)
		go s.flush(img)
	}
}

// flush writes img's queue until it is empty. On an error the rest is
// dropped with the image.
func (s *imageStore) flush(img *image) {
	defer s.flushers.Done()
	var err error
	img.mu.Lock()
	for len(img.queue) > 0 && err == nil {
		w := img.queue[0]
		img.queue[0] = imageWrite{}
		img.queue = img.queue[1:]
		fd := img.fd
		if fd == nil {
			w.pb.done()
			err = errImageDropped
			break
		}
		// Unlocked: the sealer may queue more meanwhile. A close
		// waits for this write (os.File) and makes the next fail.
		img.mu.Unlock()
		_, err = fd.WriteAt(w.data, w.off)
		w.pb.done()
		img.mu.Lock()
		img.queued -= int64(len(w.data))
		if err == nil {
			img.fileLen = max(img.fileLen, w.off+int64(len(w.data)))
		}
		img.settled.Broadcast()
	}
	if err != nil {
		for _, w := range img.queue {
			w.pb.done()
		}
		img.queue, img.queued = nil, 0
	}
	img.queuedEnd = 0
	report := img.failedLocked(err)
	img.flushing = false
	img.settled.Broadcast()
	img.mu.Unlock()
	if report {
		s.failed(img, "write", err)
	}
}

// failedLocked records that an IO on img failed with err (called with
// img.mu held) and reports whether the failure must be logged and the
// image invalidated (it was not simply dropped meanwhile).
func (img *image) failedLocked(err error) bool {
	if err == nil || errors.Is(err, errImageDropped) || errors.Is(err, os.ErrClosed) || img.fd == nil {
		return false
	}
	img.broken.Store(true)
	return true
}

// failed logs an image IO failure and drops the image (or, while the
// kernel uses it, marks it out of date).
func (s *imageStore) failed(img *image, what string, err error) {
	s.log.Warn("mount: file image "+what+" failed; dropping the image", "inode", img.ino, "err", err)
	s.diskFull(err)
	s.invalidate(img)
}

// diskFull starts imageFullBackoff if err says the disk is full.
func (s *imageStore) diskFull(err error) {
	s.mu.Lock()
	s.diskFullLocked(err)
	s.mu.Unlock()
}

func (s *imageStore) diskFullLocked(err error) {
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return
	}
	now := time.Now()
	if !now.Before(s.fullUntil) {
		s.log.Info("mount: the cache disk is full; no new file images for a while", "for", imageFullBackoff)
	}
	s.fullUntil = now.Add(imageFullBackoff)
}

// settleLocked waits until the sealed bytes queued for img are written
// (called with img.mu held).
func (img *image) settleLocked() {
	for img.flushing {
		img.settled.Wait()
	}
}

// replaced writes f's whole content, about to be committed inline, into
// its image (called with f.mu held).
func (s *imageStore) replaced(f *file, content []byte) {
	s.sealed(f, []*chunkRef{{off: 0, mem: content}})
	if s == nil {
		return
	}
	s.mu.Lock()
	img := s.images[f.ino]
	s.mu.Unlock()
	if img != nil {
		img.mu.Lock()
		err := img.truncate(int64(len(content)))
		report := img.failedLocked(err)
		img.mu.Unlock()
		if report {
			s.failed(img, "truncate", err)
		}
	}
}

// readAt reads p at off from f's image if it holds f's current content
// (called with f.mu held, so no write gets in between), with the writes
// not sealed yet laid over it; false if not.
func (s *imageStore) readAt(f *file, p []byte, off int64) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	img := s.images[f.ino]
	// img.gen may be ahead of f.attr: this mount's own chmod, rename or
	// link moved it, not the content.
	ok := img != nil && img.valid && !img.stale && img.gen >= f.attr.Generation && img.length == f.size
	s.mu.Unlock()
	if !ok {
		return false
	}
	img.mu.Lock()
	img.settleLocked()
	if img.fd == nil || img.broken.Load() {
		img.mu.Unlock()
		return false
	}
	n, err := img.fd.ReadAt(p, off)
	img.mu.Unlock()
	if n != len(p) && (err != io.EOF || off+int64(n) != img.length) {
		return false
	}
	f.overlayDirtyLocked(p, off)
	return true
}

// overlayDirtyLocked copies the unsealed writes that fall in [off,
// off+len(p)) over p.
func (f *file) overlayDirtyLocked(p []byte, off int64) {
	cs := f.fs.cfg.chunkSize()
	end := off + int64(len(p))
	for idx, sl := range f.dirty {
		base := idx * cs
		if base >= end || base+int64(len(sl.buf)) <= off {
			continue
		}
		for _, r := range sl.runs {
			s, e := max(base+r.start, off), min(base+r.end, end)
			if s < e {
				copy(p[s-off:e-off], sl.buf[s-base:e-base])
			}
		}
	}
}

// sealedWithinLocked: every chunk f sealed and has not committed lies in
// [off, end), and f holds no inline content. (Unsealed writes reach an
// image when sealed, wherever they are.)
func (f *file) sealedWithinLocked(off, end int64) bool {
	if len(f.inline) > 0 {
		return false
	}
	for _, r := range f.refs {
		if !r.committed && (r.off < off || r.off+r.size > end) {
			return false
		}
	}
	return true
}

// has says whether ino has an image kept current (possibly stale until
// its fill): the chunk cache need not keep the file's chunks.
func (s *imageStore) has(ino uint64) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img := s.images[ino]
	return img != nil && img.valid
}

// resized mirrors a change of the file's size that wrote no bytes: a
// truncate, or an extension by fallocate. gen, if not 0, is the
// generation the filer answered to it: the image holds that generation
// if it held the one before. With gen 0 the change is still local.
func (s *imageStore) resized(ino, gen uint64, size int64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if fr, ok := s.fresh[ino]; ok {
		// Still zeros past what was written, and nothing past size.
		fr.end = min(fr.end, size)
		switch {
		case gen == 0 || fr.gen+1 == gen:
			fr.gen = max(fr.gen, gen)
			s.fresh[ino] = fr
		case size == 0:
			s.fresh[ino] = freshFile{gen: gen}
		default:
			delete(s.fresh, ino)
		}
	} else if size == 0 && gen != 0 && s.images[ino] == nil && s.onLocked() {
		s.fresh[ino] = freshFile{gen: gen}
	}
	img := s.images[ino]
	if img != nil && (img.fillDone != nil || img.stale) {
		// A fill may be writing past the new size: it must not count.
		// And the file state a writer's close left may not have seen
		// this change (a truncate with no file open here): no fill may
		// read it.
		img.stale = true
		img.staleSeq++
		img.fillFile = nil
	}
	if img == nil || ((!img.valid || (gen != 0 && img.gen+1 != gen)) && img.pt == 0) {
		var victims []*image
		if img != nil {
			if gen != 0 && img.gen+1 != gen {
				img.foreign = true
			}
			victims = s.invalidateLocked(img)
		}
		s.mu.Unlock()
		closeImages(victims)
		return
	}
	// Handles passing through read the image: it follows every change
	// this mount makes, whatever the budget or its validity say.
	victims, ok := s.reserveLocked(img, max(size, img.length), img.pt > 0)
	if !ok {
		victims = append(victims, s.invalidateLocked(img)...)
	}
	s.mu.Unlock()
	closeImages(victims)
	if !ok {
		return
	}
	// The file changes size before the image says it holds the new
	// generation, so no open trusts it in between.
	img.mu.Lock()
	err := img.truncate(size)
	report := img.failedLocked(err)
	img.mu.Unlock()
	if err != nil {
		if report {
			s.failed(img, "truncate", err)
		}
		return
	}
	s.mu.Lock()
	if s.images[ino] == img {
		s.reserveLocked(img, size, true) // a shrink: gives bytes back
		switch {
		case gen == 0:
		case img.gen+1 == gen:
			img.gen = gen
		default:
			img.foreign = true
			s.invalidateLocked(img) // in use, so kept
		}
	}
	s.mu.Unlock()
}

// committed records the generation the filer answered to a commit of the
// file's writes by this mount: the image, which mirrored them, holds it
// if it held the one before; otherwise something else changed the file.
func (s *imageStore) committed(ino, gen uint64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if fr, ok := s.fresh[ino]; ok {
		if fr.gen+1 == gen {
			fr.gen = gen
			s.fresh[ino] = fr
		} else {
			delete(s.fresh, ino)
		}
	}
	img := s.images[ino]
	var victims []*image
	switch {
	case img == nil:
	case img.gen+1 == gen:
		// The chain holds even for an image no longer trusted (a
		// writer's mapping may have written it): what it lacks
		// beside the mount's view is what the mapping wrote.
		img.gen = gen
		if !img.valid {
			victims = s.invalidateLocked(img)
		}
	default:
		img.foreign = true
		victims = s.invalidateLocked(img)
	}
	s.mu.Unlock()
	closeImages(victims)
}

// changed: ino changed in a way its image does not mirror (removed,
// rewritten by another client, changed by an operation that does not
// keep images).
func (s *imageStore) changed(ino uint64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	delete(s.fresh, ino)
	var victims []*image
	if img := s.images[ino]; img != nil {
		img.foreign = true
		victims = s.invalidateLocked(img)
	}
	s.mu.Unlock()
	closeImages(victims)
}

// open decides how the kernel does a new handle's IO on f, opened with
// flags (called with f.mu held, after the open counted itself in
// f.opens). A read-only open (not O_DIRECT: the kernel would reopen the
// image with it) of a file whose image holds its current content, with no
// other handle open, passes through to the image. While any handle passes
// through, every open must name the same backing file: those that may not
// read the image get direct IO.
func (s *imageStore) open(f *file, flags uint32) (id int32, direct bool) {
	if s == nil {
		return 0, false
	}
	readOnly := flags&syscall.O_ACCMODE == syscall.O_RDONLY
	plain := readOnly && flags&syscall.O_DIRECT == 0
	s.mu.Lock()
	img := s.images[f.ino]
	s.mu.Unlock()
	if img != nil {
		// The kernel may read the image from now on: what was sealed
		// must be in it. (f.mu keeps new seals out.)
		img.mu.Lock()
		img.settleLocked()
		img.mu.Unlock()
	}
	s.mu.Lock()
	img = s.images[f.ino]
	if img == nil {
		s.mu.Unlock()
		return 0, false
	}
	local := f.hasLocalLocked()
	current := img.valid && !img.stale && !img.broken.Load() && img.gen == f.attr.Generation && img.length == f.size && !local
	if img.pt > 0 {
		img.pt++
		if current && plain {
			s.stats.PassthroughOpens++
		} else {
			s.stats.DirectOpens++
		}
		if !readOnly {
			// The kernel maps the backing file for mmap of this
			// handle: what a shared writable mapping writes lands in
			// the image alone, so the image is no longer the file.
			img.tainted = true
			s.invalidateLocked(img)
		}
		s.mu.Unlock()
		return img.id, !(current && plain)
	}
	if !current {
		s.log.Debug("mount: image not current", "inode", f.ino, "valid", img.valid, "stale", img.stale, "gen", img.gen,
			"fileGen", f.attr.Generation, "length", img.length, "size", f.size, "local", local)
		var victims []*image
		if !local && f.attr.Generation > img.gen {
			// The file moved on without the image (another client
			// changed it): it will never be current again.
			victims = s.invalidateLocked(img)
		}
		s.mu.Unlock()
		closeImages(victims)
		return 0, false
	}
	if !plain || f.opens != 1 || !s.onLocked() {
		s.mu.Unlock()
		s.log.Debug("mount: open does not pass through", "inode", f.ino, "plain", plain, "handles", f.opens)
		return 0, false
	}
	id, errno := s.backer.RegisterBacking(int(img.fd.Fd()))
	if errno != 0 {
		var victims []*image
		switch errno {
		case syscall.EPERM, syscall.ELOOP, syscall.EINVAL, syscall.EOPNOTSUPP, syscall.ENOTTY, syscall.ENOSYS:
			// What refuses one registration refuses them all: no
			// CAP_SYS_ADMIN (EPERM), an image directory on a stacked
			// file system such as overlayfs (ELOOP)... This mount will
			// not pass through, so it keeps no images.
			s.log.Info("mount: FUSE passthrough refused; reads go through the mount", "errno", errno.Error(), "dir", s.dir)
			s.disabled = true
			clear(s.fresh)
			for e := s.idle.Front(); e != nil; e = s.idle.Front() {
				victims = append(victims, s.dropLocked(e.Value.(*image))...)
			}
		default:
			s.log.Warn("mount: passthrough registration failed", "inode", f.ino, "errno", errno.Error())
		}
		s.mu.Unlock()
		closeImages(victims)
		return 0, false
	}
	img.pt, img.id = 1, id
	if img.elem != nil {
		s.idle.Remove(img.elem)
		img.elem = nil
	}
	s.stats.PassthroughOpens++
	s.mu.Unlock()
	return id, false
}

// released: a handle that named ino's backing file is gone (the kernel
// let go of its file before telling the mount). The last one gives the
// backing id back.
func (s *imageStore) released(ino uint64) {
	s.mu.Lock()
	img := s.images[ino]
	if img == nil || img.pt == 0 {
		s.mu.Unlock()
		return
	}
	img.pt--
	if img.pt > 0 {
		s.mu.Unlock()
		return
	}
	if errno := s.backer.UnregisterBacking(img.id); errno != 0 {
		s.log.Warn("mount: passthrough unregistration failed", "inode", ino, "errno", errno)
	}
	img.id = 0
	var victims []*image
	if img.valid {
		img.elem = s.idle.PushFront(img)
	} else {
		victims = s.dropLocked(img)
	}
	s.mu.Unlock()
	closeImages(victims)
}

// refreshImage rewrites f's image in place with f's current content when
// handles pass through to it and it is out of date: a lock grant must let
// them read what the lock's last holder wrote (they read the image, not
// the mount). Writes and truncates of f wait meanwhile.
func (f *file) refreshImage(ctx context.Context) syscall.Errno {
	s := f.fs.images
	if s == nil {
		return 0
	}
	s.mu.Lock()
	img := s.images[f.ino]
	inUse := img != nil && img.pt > 0
	s.mu.Unlock()
	if !inUse {
		return 0
	}
	// A writer's mapping may have written the image: take that in
	// before the image is rewritten.
	if errno := f.absorbMapped(ctx); errno != 0 {
		return errno
	}
	f.truncMu.Lock()
	defer f.truncMu.Unlock()
	f.mu.Lock()
	gen, size, local := f.attr.Generation, f.size, f.hasLocalLocked()
	f.mu.Unlock()
	s.mu.Lock()
	current := s.images[f.ino] != img || (img.valid && img.gen == gen && img.length == size)
	s.mu.Unlock()
	if current || local {
		// Unflushed data: the image has it, written through, and
		// the mount serves the same view.
		return 0
	}
	buf := make([]byte, min(size, 1<<20))
	var err error
	for off := int64(0); off < size && err == nil; {
		n, errno := f.readAt(ctx, nil, buf, off, false)
		if errno != 0 {
			err = errno
			break
		}
		if n == 0 {
			err = io.ErrUnexpectedEOF
			break
		}
		img.mu.Lock()
		err = img.writeAt(buf[:n], off, 0)
		img.mu.Unlock()
		off += int64(n)
	}
	if err == nil {
		img.mu.Lock()
		err = img.truncate(size)
		img.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.images[f.ino] != img {
		return 0
	}
	if err != nil {
		f.fs.log.Warn("mount: refreshing a file image failed; its passthrough readers may read old bytes", "inode", f.ino, "err", err)
		s.invalidateLocked(img) // in use: dropped when the last handle goes
		return syscall.EIO
	}
	// Kept whatever the budget says: the kernel reads it.
	s.used += size - img.length
	img.length, img.gen, img.valid, img.foreign = size, gen, !img.tainted, false
	s.stats.Refreshed++
	return 0
}

// mapped returns f's image if a writable handle got it as its backing
// file (a shared writable mapping of that handle maps the image) and the
// image still differs from the file only by what this mount did and such
// a mapping wrote; nil otherwise.
func (s *imageStore) mapped(ino uint64) *image {
	img, _ := s.mappedOrLost(ino)
	return img
}

// mappedOrLost is mapped, and also says whether the image is mapped by
// a writer but changed by another client, so that what the mapping
// wrote can no longer be told apart.
func (s *imageStore) mappedOrLost(ino uint64) (img *image, lost bool) {
	if s == nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img = s.images[ino]
	if img == nil || !img.tainted {
		return nil, false
	}
	if img.foreign || img.broken.Load() {
		return nil, true
	}
	return img, false
}

// absorbMapped writes into f, through the mount, what a shared writable
// mapping wrote into f's image: the kernel maps the backing file for
// mmap of a handle that has one, so those bytes never come to the mount
// as writes. Everything else this mount wrote went into the image too,
// so the ranges where the image and the mount's view of the file differ
// are the mapping's. Writes and truncates of f wait meanwhile (truncMu),
// so both sides are read as of the same moment; a change by another
// client arriving meanwhile stops it (the image no longer tells). Called
// before a writer's handle flushes (close, fsync, release) and before a
// lock grant rewrites the image.
func (f *file) absorbMapped(ctx context.Context) syscall.Errno {
	img, lost := f.fs.images.mappedOrLost(f.ino)
	if lost {
		f.fs.log.Warn("mount: a file was changed elsewhere while a writer here mapped it; what the mapping wrote stays local",
			"inode", f.ino)
	}
	if img == nil {
		return 0
	}
	f.truncMu.Lock()
	defer f.truncMu.Unlock()
	f.mu.Lock()
	size := f.size
	f.mu.Unlock()
	const piece = 1 << 20
	mine, theirs := make([]byte, piece), make([]byte, piece)
	absorbed := int64(0)
	for off := int64(0); off < size; {
		if f.fs.images.mapped(f.ino) != img {
			f.fs.log.Warn("mount: a file changed elsewhere while taking in what a writer's mapping wrote; the rest stays local",
				"inode", f.ino, "offset", off)
			break
		}
		n := int(min(piece, size-off))
		img.mu.Lock()
		img.settleLocked()
		fd := img.fd
		var err error
		if fd != nil {
			_, err = fd.ReadAt(theirs[:n], off)
		}
		img.mu.Unlock()
		if fd == nil || err != nil {
			// Dropped (or unreadable): nothing more can be recovered.
			break
		}
		got, errno := f.readAt(ctx, nil, mine[:n], off, false)
		if errno != 0 {
			return errno
		}
		n = got
		for i := 0; i < n; {
			if mine[i] == theirs[i] {
				i++
				continue
			}
			j := i + 1
			for j < n && mine[j] != theirs[j] {
				j++
			}
			if errno := f.writeHeld(ctx, slices.Clone(theirs[i:j]), off+int64(i)); errno != 0 {
				return errno
			}
			absorbed += int64(j - i)
			i = j
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	if absorbed > 0 {
		f.fs.log.Debug("mount: took in what a shared mapping wrote into a file's image", "inode", f.ino, "bytes", absorbed)
	}
	return 0
}

// Stats returns the counters.
func (s *imageStore) Stats() ImageStats {
	if s == nil {
		return ImageStats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Images, st.Bytes, st.Passthrough = len(s.images), s.used, s.onLocked()
	return st
}

// close drops every image.
func (s *imageStore) close() error {
	if s == nil {
		return nil
	}
	s.stopFills()
	s.mu.Lock()
	var victims []*image
	for _, img := range s.images {
		victims = append(victims, img)
	}
	clear(s.images)
	s.idle.Init()
	s.used = 0
	s.mu.Unlock()
	closeImages(victims)
	s.flushers.Wait()
	return nil
}

func (s *imageStore) createLocked(ino, gen uint64) (*image, error) {
	s.seq++
	p := filepath.Join(s.dir, strconv.FormatUint(ino, 10)+"-"+strconv.FormatUint(s.seq, 10))
	fd, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	img := &image{ino: ino, path: p, gen: gen, valid: true, fd: fd}
	img.settled.L = &img.mu
	img.elem = s.idle.PushFront(img)
	s.images[ino] = img
	return img, nil
}

// reserveLocked charges img for growing to length, evicting idle images
// (least recently used first) to stay within the budget. It returns the
// images evicted, for the caller to close once s.mu is released, and
// false if even that leaves no room (unless force: the charge is made
// over budget).
func (s *imageStore) reserveLocked(img *image, length int64, force bool) ([]*image, bool) {
	need := length - img.length
	if need <= 0 {
		s.used += need
		img.length = length
		return nil, true
	}
	var victims []*image
	for s.used+need > s.budget {
		e := s.idle.Back()
		for e != nil && e.Value.(*image) == img {
			e = e.Prev()
		}
		if e == nil {
			if force {
				if !img.overBudget {
					img.overBudget = true
					s.log.Info("mount: a file image in use grows past -imageCapacityMB; it shrinks back when its handles close",
						"inode", img.ino, "bytes", s.used+need, "budget", s.budget)
				}
				break
			}
			return victims, false
		}
		s.stats.Evicted++
		victims = append(victims, s.dropLocked(e.Value.(*image))...)
	}
	s.used += need
	// The file grows on the write itself; the charge moves now, so
	// two writers never both count on the same room.
	img.length = length
	return victims, true
}

// invalidateLocked marks img out of date: dropped at once unless the
// kernel passes through to it, then when the last such handle goes.
func (s *imageStore) invalidateLocked(img *image) []*image {
	if img.valid {
		img.valid = false
		s.stats.Invalidated++
	}
	if img.pt > 0 {
		return nil
	}
	return s.dropLocked(img)
}

func (s *imageStore) invalidate(img *image) {
	s.mu.Lock()
	var victims []*image
	if s.images[img.ino] == img {
		victims = s.invalidateLocked(img)
	}
	s.mu.Unlock()
	closeImages(victims)
}

// dropLocked forgets img; the caller closes it (closeImages) after
// releasing s.mu.
func (s *imageStore) dropLocked(img *image) []*image {
	if s.images[img.ino] != img {
		return nil
	}
	delete(s.images, img.ino)
	if img.elem != nil {
		s.idle.Remove(img.elem)
		img.elem = nil
	}
	s.used -= img.length
	s.endInlineLocked(img)
	return []*image{img}
}

// inlinePlaceLocked reports whether a writer can have an inline place:
// one is free, or idle holds one and its file has gone unwritten longest,
// for inlineIdle at least.
func (s *imageStore) inlinePlaceLocked(now time.Time) (place bool, idle *image) {
	if len(s.inliners) < s.inlineMax {
		return true, nil
	}
	for _, img := range s.inliners {
		if now.Sub(img.active) >= s.inlineIdle && (idle == nil || img.active.Before(idle.active)) {
			idle = img
		}
	}
	return idle != nil, idle
}

// takeInlineLocked gives img the inline place inlinePlaceLocked found,
// taking it from idle if that is set. The image that loses it stays
// current until its file's next seal, which takes a place again if one is
// free (or idle) and makes the image stale otherwise.
func (s *imageStore) takeInlineLocked(img *image, now time.Time, idle *image) {
	if idle != nil {
		s.endInlineLocked(idle)
	}
	img.inline, img.active = true, now
	s.inliners = append(s.inliners, img)
}

// endInlineLocked gives img's inline place back.
func (s *imageStore) endInlineLocked(img *image) {
	if img.inline {
		img.inline = false
		s.inliners = slices.DeleteFunc(s.inliners, func(o *image) bool { return o == img })
	}
}

func closeImages(imgs []*image) {
	for _, img := range imgs {
		img.mu.Lock()
		if img.fd != nil {
			_ = img.fd.Close()
			img.fd = nil
			_ = os.Remove(img.path)
		}
		img.settled.Broadcast() // a sealer waiting for room gives up
		img.mu.Unlock()
	}
}

// writeAt writes data at off and makes the file size long (a write may
// land past an extension the image already has, or inside one).
func (img *image) writeAt(data []byte, off, size int64) error {
	img.settleLocked()
	if img.fd == nil {
		return errImageDropped
	}
	if _, err := img.fd.WriteAt(data, off); err != nil {
		return err
	}
	end := off + int64(len(data))
	img.fileLen = max(img.fileLen, end)
	if size > end {
		return img.truncate(size)
	}
	return nil
}

// truncate sets the image file's size (called with img.mu held). Growing
// it past every queued write commutes with them, so only a cut waits for
// the queue: a sequential writer extends the image at each write.
func (img *image) truncate(size int64) error {
	if size < img.fileLen || size < img.queuedEnd {
		img.settleLocked()
	}
	if img.fd == nil {
		return errImageDropped
	}
	if err := img.fd.Truncate(size); err != nil {
		return err
	}
	img.fileLen = size
	return nil
}
