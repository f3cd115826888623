package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// enqueue hands a blob to the writer unless it is already on disk, cannot
// be kept there, or the queue is full; it never blocks on disk IO.
func (d *diskTier) enqueue(fid string, data []byte) {
	if len(fid) > maxDiskFid || diskCharge(int64(len(data))) > d.configured || d.contains(fid) {
		return
	}
	d.qmu.Lock()
	defer d.qmu.Unlock()
	if d.closed {
		return
	}
	if d.queued+int64(len(data)) > d.queueMax {
		d.dropped.Add(1)
		return
	}
	select {
	case d.queue <- writeReq{fid: fid, data: data}:
		d.queued += int64(len(data))
		d.pending++
	default:
		d.dropped.Add(1)
	}
}

// run is the writer goroutine: it writes queued blobs until the queue is
// closed and drained.
func (d *diskTier) run() {
	defer close(d.done)
	for req := range d.queue {
		d.write(req.fid, req.data)
		d.qmu.Lock()
		d.queued -= int64(len(req.data))
		d.pending--
		if d.pending == 0 {
			d.idle.Broadcast()
		}
		d.qmu.Unlock()
	}
}

// waitIdle blocks until the writer has finished everything queued so far.
func (d *diskTier) waitIdle() {
	d.qmu.Lock()
	for d.pending > 0 {
		d.idle.Wait()
	}
	d.qmu.Unlock()
}

// write stores one blob: reserve its charge (evicting to make room), write
// a temp file, rename it into place, index it. Failures release the
// reservation and adjust the tier (see failedLocked).
func (d *diskTier) write(fid string, data []byte) {
	now := d.now()
	charge := diskCharge(int64(len(data)))
	d.regrow(now)
	d.mu.Lock()
	if now.Before(d.bypassUntil) {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	if d.lru.Contains(fid) {
		d.mu.Unlock()
		return
	}
	if charge > d.budget {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	d.evictLocked(d.budget - charge)
	d.used += charge
	victims := d.takeVictimsLocked()
	d.mu.Unlock()
	d.unlink(victims)

	gen := d.nextGen.Add(1)
	err := d.writeFile(fid, gen, data)

	d.mu.Lock()
	if err != nil {
		d.used -= charge
		d.failedLocked(now, err)
	} else {
		e := &diskEntry{gen: gen, length: int64(len(data)), charge: charge}
		d.lru.Add(fid, e)
		d.backoff = 0
		if d.probed { // the filesystem told the truth
			d.probed, d.probeWait = false, probeEvery
		}
		d.writes.Add(1)
	}
	victims = d.takeVictimsLocked()
	d.mu.Unlock()
	d.unlink(victims)
}

// writeFile writes data as fid's file of generation gen: into tmp/, then
// renamed into place, so a crash leaves either nothing or a whole file
// (whose checksums still guard against what the kernel had not written
// back). No fsync: the checksums make a lost write a miss, not bad data.
func (d *diskTier) writeFile(fid string, gen uint64, data []byte) (err error) {
	tmp := filepath.Join(d.dir, tmpName, fmt.Sprintf("%016x", gen))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) { // tmp/ removed under us
		if err = os.MkdirAll(filepath.Dir(tmp), 0o700); err == nil {
			f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("cache: create temp file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	need := int(dataOffset(int64(len(data))))
	if cap(d.headBuf) < need {
		d.headBuf = make([]byte, need)
	}
	head := encodeHead(d.headBuf, fid, data)
	err = d.writeAll(f, head)
	if err == nil {
		err = d.writeAll(f, data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache: write %s: %w", tmp, err)
	}
	final := d.path(fid, gen)
	err = os.Rename(tmp, final)
	if errors.Is(err, fs.ErrNotExist) { // fan-out dir removed under us
		if err = os.MkdirAll(filepath.Dir(final), 0o700); err == nil {
			err = os.Rename(tmp, final)
		}
	}
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

func (d *diskTier) writeAll(f *os.File, p []byte) error {
	for len(p) > 0 {
		n, err := d.writeHook(f, p)
		if err != nil {
			return err
		}
		if n <= 0 {
			return fmt.Errorf("short write: %w", syscall.EIO)
		}
		p = p[n:]
	}
	return nil
}

// failedLocked reacts to a failed write. A full disk (ENOSPC, EDQUOT)
// lowers the effective budget below what is used and evicts down to it, so
// the cache shrinks to fit what the filesystem can hold (with nothing left
// to evict, below any blob: blobs are dropped without trying the disk
// until regrow raises it). Any other error (EIO, EROFS, a removed
// directory...) bypasses the tier for a backoff that doubles while errors
// continue. Writes dropped meanwhile are counted as dropped.
func (d *diskTier) failedLocked(now time.Time, err error) {
	d.writeErrors.Add(1)
	if full := errors.Is(err, syscall.ENOSPC); full || errors.Is(err, syscall.EDQUOT) {
		d.budget = min(d.budget, (d.used*shrinkNum/shrinkDen)&^(diskUnit-1))
		d.lastAdjust = now
		d.noteFullLocked(now, !full)
		d.evictLocked(d.budget)
		d.log.Warn("cache: disk full, lowering the disk cache budget", "dir", d.dir, "budget", d.budget, "err", err)
		return
	}
	d.backoff = min(max(2*d.backoff, minBackoff), maxBackoff)
	d.bypassUntil = now.Add(d.backoff)
	d.log.Warn("cache: disk write failed, bypassing the disk cache", "dir", d.dir, "for", d.backoff, "err", err)
}

// noteFullLocked sets up regrowing after a full-disk error: the next look
// at the filesystem comes probeWait from now, later if the last look
// promised room this write did not find; a quota's error is not seen by
// statfs, so it leaves regrowing to the blind fallback.
func (d *diskTier) noteFullLocked(now time.Time, quota bool) {
	if d.probed {
		d.probeWait = min(2*d.probeWait, regrowAfter)
	}
	d.probed = false
	d.lastProbe = now
	d.quotaFull = quota
}

// regrow raises a lowered budget (on the writer goroutine, before a
// write) to what the filesystem can hold, asking it at most every
// probeWait; statfs runs outside mu, since a sick disk can make it slow.
// Where the filesystem cannot tell, the budget regrows blindly.
func (d *diskTier) regrow(now time.Time) {
	d.mu.Lock()
	due := d.budget < d.configured && !now.Before(d.bypassUntil) && now.Sub(d.lastProbe) >= d.probeWait
	if due {
		d.lastProbe = now
		if d.quotaFull {
			d.regrowBlindLocked(now)
		}
	}
	ask, statfs := due && !d.quotaFull, d.statfs
	d.mu.Unlock()
	if !ask {
		return
	}
	space, err := statfs(d.dir)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.log.Debug("cache: cannot tell the room left on the cache disk", "err", err)
		d.regrowBlindLocked(now)
		return
	}
	d.fitLocked(space)
}

// minFreeInodes: with fewer free inodes, the filesystem is full whatever
// its free bytes say (ENOSPC also means out of inodes).
const minFreeInodes = 16

// fitLocked raises the budget to what the cache uses plus the room the
// filesystem has left, less a reserve, up to the configured budget. It
// never lowers it: only a failed write does.
func (d *diskTier) fitLocked(space fsSpace) {
	if space.inodes > 0 && space.freeInodes < minFreeInodes {
		return
	}
	room := space.avail - spaceReserve(space.total)
	target := min(d.configured, (d.used+room)&^(diskUnit-1))
	if target <= d.budget {
		return
	}
	d.log.Info("cache: room on the cache disk again, raising the disk cache budget", "dir", d.dir, "budget", target, "free", space.avail)
	d.budget = target
	d.probed = true
}

// regrowBlindLocked raises a lowered budget step by step once full-disk
// errors have stopped for a while; if the disk is still full the next
// error lowers it again.
func (d *diskTier) regrowBlindLocked(now time.Time) {
	if d.budget < d.configured && now.Sub(d.lastAdjust) >= regrowAfter {
		d.budget = min(d.configured, d.budget+max(d.configured/10, diskUnit))
		d.lastAdjust = now
	}
}

// fsSpace is what statfs says of the filesystem holding the cache.
type fsSpace struct {
	avail, total       int64 // bytes: left for unprivileged writers, in all
	inodes, freeInodes int64 // inodes 0: the filesystem does not count them
}

func statfsSpace(dir string) (fsSpace, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fsSpace{}, fmt.Errorf("cache: statfs %s: %w", dir, err)
	}
	bs := int64(st.Bsize)
	return fsSpace{avail: int64(st.Bavail) * bs, total: int64(st.Blocks) * bs, inodes: int64(st.Files), freeInodes: int64(st.Ffree)}, nil
}

// spaceReserve is what a budget raised from statfs leaves free on a
// filesystem of total bytes: a 64th of it, between 64 KiB and 64 MiB, so
// the cache's next writes and other writers of the disk (the mount's file
// images) do not run into ENOSPC at once.
func spaceReserve(total int64) int64 { return min(max(total/64, 64<<10), 64<<20) }
