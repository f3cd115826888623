package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Fills. A file written here from empty while other images are being
// written (more than the cores to spare for copying, see inlineMax) gets
// its image in one pass after its last writer closes, read back from the
// file (what the mount holds, the chunk cache, the volume servers),
// instead of a copy of every sealed chunk beside its upload: with no core
// to spare that second copy slowed every writer (four parallel writers
// ran at half the speed), and files deleted soon after they are written
// (build outputs, temporary files, fsbench's) never cost one.

// imageFillWait bounds how long a read-only open of a file whose image
// is being filled waits for it, to pass through to the image instead of
// reading through the mount. A fill takes about 1.9 s per GiB on the
// 2-core machine.
const imageFillWait = 5 * time.Second

// writerClosed is called when the last writable handle of f is released:
// an inline image gives its place back, a stale one gets its fill, read
// from f's state (or the state the mount holds open then).
func (s *imageStore) writerClosed(f *file) {
	if s == nil {
		return
	}
	s.mu.Lock()
	img := s.images[f.ino]
	if img != nil {
		s.endInlineLocked(img)
		if img.stale {
			img.fillFile = f // the newest state of the file
		}
	}
	s.mu.Unlock()
	if img != nil {
		s.queueFill(img)
	}
}

// queueFill queues a fill of img if it is stale, has a file state to read
// and none is queued or running.
func (s *imageStore) queueFill(img *image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.images[img.ino] != img || !img.stale || !img.valid || img.fillFile == nil || img.fillDone != nil {
		return
	}
	img.fillDone = make(chan struct{})
	s.fillq = append(s.fillq, img)
	if !s.filling {
		s.filling = true
		s.flushers.Add(1) // under mu, before close can wait
		go s.fillLoop()
	}
}

// stopFills makes queued and running fills give up (the mount is closing).
func (s *imageStore) stopFills() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.fillStop()
}

// fillLoop runs the queued fills, one at a time.
func (s *imageStore) fillLoop() {
	defer s.flushers.Done()
	for {
		s.mu.Lock()
		if len(s.fillq) == 0 {
			s.filling = false
			s.mu.Unlock()
			return
		}
		img := s.fillq[0]
		s.fillq[0] = nil
		s.fillq = s.fillq[1:]
		s.mu.Unlock()
		s.fill(img)
	}
}

// fill writes the file's content into its stale image. The image is
// current once written, unless the file changed meanwhile (staleSeq
// moved): then it is filled again once no writer holds the file open (a
// writer's close queues it). Read from the file state the mount holds
// open, else the one the last writer's close left (img.fillFile); with
// neither (the file changed with no state open here, resized), nothing
// is safe to read: the image stays stale until a writer closes.
func (s *imageStore) fill(img *image) {
	s.mu.Lock()
	f := img.fillFile
	seq := img.staleSeq
	live := s.images[img.ino] == img && img.valid && !s.closed && f != nil
	s.mu.Unlock()
	writing := false
	if live {
		f = fillSource(f)
		writing = f.writing()
	}
	var (
		err    error
		filled int64
	)
	if live && !writing {
		start := time.Now()
		filled, err = s.copyIn(f, img)
		s.log.Debug("mount: image filled", "inode", img.ino, "bytes", filled, "took", time.Since(start), "err", err)
	}
	// The outcome and the end of the fill in one step: a truncate
	// (resized) sees either a fill in flight or its result.
	s.mu.Lock()
	var victims []*image
	again, failed := false, false
	if live && !writing && s.images[img.ino] == img {
		switch {
		case err != nil && !errors.Is(err, errImageDropped) && !s.closed:
			failed = true
			s.diskFullLocked(err)
			victims = s.invalidateLocked(img)
		case err != nil:
		case img.staleSeq == seq && filled == img.length:
			img.stale = false
			img.fillFile = nil
			s.stats.Filled++
		case img.staleSeq == seq:
			// The file state read was not the one the image
			// follows: leave it stale (a writer's close fills it).
			s.log.Debug("mount: image fill read another length", "inode", img.ino, "filled", filled, "length", img.length)
		default:
			again = true
		}
	}
	done := img.fillDone
	img.fillDone = nil
	next := img.fillFile // the newest state a writer's close left
	s.mu.Unlock()
	closeImages(victims)
	if failed {
		s.log.Warn("mount: filling a file image failed; reads go through the mount", "inode", img.ino, "err", err)
	}
	close(done) // after the outcome is in place: waiters see it
	if again && next != nil && !fillSource(next).writing() {
		s.queueFill(img)
	}
}

// fillSource returns the file state a fill should read instead of f, the
// state a writer's close left: the one the mount holds open now, if any,
// has every change since (a writer open on it fills at its close),
// unless it is still being opened, its content not loaded yet.
func fillSource(f *file) *file {
	l := f.fs.liveFile(f.ino)
	if l == nil || l == f {
		return f
	}
	l.mu.Lock()
	use := l.loaded && !l.stale || l.writers > 0
	l.mu.Unlock()
	if use {
		return l
	}
	return f
}

// writing says whether f has writable handles open.
func (f *file) writing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writers > 0
}

// copyIn writes f's bytes into img, a chunk at a time, and cuts the
// image to f's size. Zeros become holes.
func (s *imageStore) copyIn(f *file, img *image) (int64, error) {
	f.mu.Lock()
	size, known := f.size, f.loaded && !f.stale
	cs := f.fs.cfg.chunkSize()
	f.mu.Unlock()
	if !known {
		return 0, errImageDropped // changed elsewhere: the image goes with it
	}
	buf := make([]byte, min(size, cs))
	for off := int64(0); off < size; {
		if err := s.fillCtx.Err(); err != nil {
			return 0, err
		}
		n, err := f.readForImage(s.fillCtx, buf[:min(int64(len(buf)), size-off)], off)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			size = off // cut meanwhile; the change made the image stale
			break
		}
		img.mu.Lock()
		img.settleLocked()
		fd := img.fd
		img.mu.Unlock()
		if fd == nil {
			return 0, errImageDropped
		}
		// Unlocked, as flush writes: a close waits for this write and
		// makes the next one fail. Buffered: the image is in the page
		// cache for a reader right after the writer, as the file would
		// be on a local disk. (Direct IO took twice as long here: the
		// disk, not the CPU, became the limit.)
		if err := writeOrPunch(fd, buf[:n], off); err != nil {
			img.mu.Lock()
			dropped := img.fd == nil
			img.mu.Unlock()
			if dropped || errors.Is(err, os.ErrClosed) {
				return 0, errImageDropped
			}
			return 0, err
		}
		off += int64(n)
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	return size, img.truncate(size)
}

// holeBlock is the granularity at which a fill finds zeros to leave as
// holes.
const holeBlock = 64 << 10

// writeOrPunch writes p at off in fd, except that runs of whole
// holeBlocks of zeros are punched out instead (a sparse file's holes stay
// holes; what was there reads as zeros).
func writeOrPunch(fd *os.File, p []byte, off int64) error {
	for len(p) > 0 {
		n := min(len(p), holeBlock)
		zero := n == holeBlock && allZero(p[:n])
		for n < len(p) {
			m := min(len(p)-n, holeBlock)
			if (m == holeBlock && allZero(p[n:n+m])) != zero {
				break
			}
			n += m
		}
		if zero && punch(fd, off, int64(n)) == nil {
			p, off = p[n:], off+int64(n)
			continue
		}
		// Data, or no hole punching here: write the bytes.
		if _, err := fd.WriteAt(p[:n], off); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// punch deallocates length bytes at off in fd, keeping its size.
func punch(fd *os.File, off, length int64) error {
	conn, err := fd.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	if cerr := conn.Control(func(raw uintptr) {
		perr = unix.Fallocate(int(raw), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}); cerr != nil {
		return cerr
	}
	return perr
}

func allZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// awaitFill waits, up to imageFillWait or ctx, for a fill of ino's image
// queued or running, so that a reader opening the file can pass through.
// A queued fill moves to the front of the queue.
func (s *imageStore) awaitFill(ctx context.Context, ino uint64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	var done chan struct{}
	if img := s.images[ino]; img != nil && img.stale {
		done = img.fillDone
		// Queued behind others: a reader is waiting for this one.
		if i := slices.Index(s.fillq, img); i > 0 {
			copy(s.fillq[1:i+1], s.fillq[:i])
			s.fillq[0] = img
		}
	}
	if done != nil {
		s.stats.FillWaits++
	}
	s.mu.Unlock()
	if done == nil {
		return
	}
	t := time.NewTimer(imageFillWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// readForImage reads p at off as readAt does, except that chunks the
// cache lacks are fetched without being cached: a fill reads each byte
// once, into the image, which then serves it.
func (f *file) readForImage(ctx context.Context, p []byte, off int64) (int, error) {
	fs := f.fs
	f.mu.Lock()
	if !f.loaded || f.stale {
		f.mu.Unlock()
		return 0, errImageDropped // changed elsewhere: the image goes with it
	}
	if off >= f.size {
		f.mu.Unlock()
		return 0, nil
	}
	p = p[:min(int64(len(p)), f.size-off)]
	remote, overlay, err := f.gatherLocked(p, off)
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	// A file written at random is many pieces of a few chunks: fetch
	// each chunk once.
	byFid := make(map[string][]piece)
	for _, pc := range remote {
		if n, ok := fs.cache.ReadAt(pc.fid, pc.dst, pc.chunkOff); ok && n == len(pc.dst) {
			continue
		}
		byFid[pc.fid] = append(byFid[pc.fid], pc)
	}
	for fid, pcs := range byFid {
		var data []byte
		var err error
		from := int64(0)
		if pc := pcs[0]; len(pcs) == 1 && !(pc.chunkOff == 0 && int64(len(pc.dst)) == pc.chunkSize) {
			from = pc.chunkOff
			data, err = fs.blobs.ReadRange(ctx, fid, pc.chunkOff, int64(len(pc.dst)))
		} else {
			data, err = fs.blobs.Read(ctx, fid)
		}
		if err != nil {
			return 0, fmt.Errorf("read chunk %s: %w", fid, err)
		}
		for _, pc := range pcs {
			at := pc.chunkOff - from
			if at+int64(len(pc.dst)) > int64(len(data)) {
				return 0, fmt.Errorf("chunk %s has %d bytes from %d, want %d at %d", fid, len(data), from, len(pc.dst), pc.chunkOff)
			}
			copy(pc.dst, data[at:])
		}
	}
	for _, o := range overlay {
		copy(p[o.at:], o.data)
	}
	return len(p), nil
}
