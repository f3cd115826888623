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
	d.mu.Lock()
	if now.Before(d.bypassUntil) {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	d.maybeRegrowLocked(now)
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
// the cache shrinks to fit what the filesystem can hold; with nothing left
// to evict, the tier is bypassed for a while. Any other error (EIO, EROFS,
// a removed directory...) bypasses the tier for a backoff that doubles
// while errors continue. Writes dropped meanwhile are counted as dropped.
func (d *diskTier) failedLocked(now time.Time, err error) {
	d.writeErrors.Add(1)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		d.budget = min(d.budget, (d.used*shrinkNum/shrinkDen)&^(diskUnit-1))
		d.lastAdjust = now
		d.evictLocked(d.budget)
		d.log.Warn("cache: disk full, lowering the disk cache budget", "dir", d.dir, "budget", d.budget, "err", err)
		if d.used > 0 {
			return
		}
	}
	d.backoff = min(max(2*d.backoff, minBackoff), maxBackoff)
	d.bypassUntil = now.Add(d.backoff)
	d.log.Warn("cache: disk write failed, bypassing the disk cache", "dir", d.dir, "for", d.backoff, "err", err)
}

// maybeRegrowLocked raises a lowered budget step by step once full-disk
// errors have stopped for a while; if the disk is still full the next
// error lowers it again.
func (d *diskTier) maybeRegrowLocked(now time.Time) {
	if d.budget < d.configured && now.Sub(d.lastAdjust) >= regrowAfter {
		d.budget = min(d.configured, d.budget+max(d.configured/10, diskUnit))
		d.lastAdjust = now
	}
}
