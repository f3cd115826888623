package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/kelpfs/kelp/needle"
)

// Compaction (vacuum) rewrites a volume without its dead records while the
// volume keeps serving reads and writes.
//
//  1. copy: under appendMu, take a snapshot of the needle map and note the
//     .idx end; release it. Copy every live, unexpired, intact needle of the
//     snapshot (in .dat order) into <base>.cpd, after a superblock whose
//     CompactRevision is one higher, and its entries into <base>.cpx.
//     Writes and deletes go on appending to the old files meanwhile.
//     Then fsync .cpd and .cpx, still without appendMu, so the cost of
//     flushing the whole copy never stalls writers.
//  2. catch up: take appendMu (writes now wait) and replay the .idx entries
//     appended since the snapshot into the new files. fsync .cpd and .cpx
//     again: only what the catch-up added is dirty by now.
//  3. decide: write <base>.cpm.tmp holding the new files' sizes, fsync it,
//     rename it to <base>.cpm, fsync the directory. From this point the
//     compaction is committed: a crash at any later point ends with the new
//     volume.
//  4. rename .cpx -> .idx, fsync the directory.
//  5. rename .cpd -> .dat, fsync the directory.
//  6. remove .cpm, fsync the directory.
//  7. in memory: swap the needle map and the file generation (the .cpd and
//     .cpx descriptors, which are now .dat and .idx) and release appendMu.
//     Readers that took the old generation before the swap finish on the
//     old descriptors, which close when the last of them is done.
//
// Recovery at load (recoverCompaction): a .cpm.tmp is removed. If .cpm
// exists, steps 4 to 6 are (re)done for whichever of .cpx and .cpd still
// exist, after checking their sizes against the marker. If .cpm does not
// exist, the compaction had not committed: .cpd and .cpx are removed, and
// .dat and .idx (never touched before step 4) are the complete old volume.
// A compaction that fails or is cancelled before its commit point ends with
// abort, which removes .cpm (should the rename of step 3 have happened)
// before .cpd and .cpx, so no stale marker outlives it. The steps are separate methods so tests can stop after any of them.

// compaction is one vacuum in progress.
type compaction struct {
	v         *volume
	cpd, cpx  *os.File
	dat, idx  *appender
	nm        *needleMap
	sb        needle.SuperBlock
	srcIdxEnd int64 // old .idx entries up to here are copied
	dropped   int   // needles whose record was missing
	corrupt   int   // corrupt needles copied as they are
	caughtUp  int   // index entries replayed by catchUp
	expired   int   // expired needles left behind
}

// appender writes sequentially to a file through a buffer, with WriteAt.
type appender struct {
	f   *os.File
	off int64 // file end, including buffered bytes
	buf []byte
	at  int64 // file offset of buf[0]
}

func (a *appender) write(b []byte) error {
	if len(a.buf)+len(b) > cap(a.buf) {
		if err := a.flush(); err != nil {
			return err
		}
	}
	if len(b) > cap(a.buf) {
		_, err := a.f.WriteAt(b, a.off)
		if err == nil {
			a.off += int64(len(b))
			a.at = a.off
		}
		return err
	}
	a.buf = append(a.buf, b...)
	a.off += int64(len(b))
	return nil
}

func (a *appender) flush() error {
	if len(a.buf) == 0 {
		return nil
	}
	if _, err := a.f.WriteAt(a.buf, a.at); err != nil {
		return err
	}
	a.at += int64(len(a.buf))
	a.buf = a.buf[:0]
	return nil
}

// vacuum runs a whole compaction and returns the bytes it reclaimed. ctx is
// checked between needles while copying; a cancelled compaction removes its
// files and leaves the volume as it was.
func (v *volume) vacuum(ctx context.Context) (int64, error) {
	v.vacuumMu.Lock()
	defer v.vacuumMu.Unlock()
	c, err := v.compactCopy(ctx)
	if err != nil {
		return 0, err
	}
	// fsync what was copied while writes still go on; under appendMu only
	// what the catch-up adds is still dirty.
	if err := c.syncFiles(); err != nil {
		c.abort()
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		c.abort()
		return 0, fmt.Errorf("%v: compaction: %w", v, err)
	}
	v.appendMu.Lock()
	err = c.catchUp()
	if err == nil {
		err = c.syncFiles()
	}
	if err == nil {
		err = c.writeMarker()
	}
	if err != nil {
		// Still under appendMu: if the marker's rename happened, nothing
		// may be appended to the old files until abort has removed it.
		c.abort()
		v.appendMu.Unlock()
		return 0, err
	}
	if err := c.commitFiles(); err != nil {
		// The marker is down: the next load finishes the commit. Until
		// then the old descriptors still serve a consistent volume, but
		// nothing more may be appended to them.
		v.failed.Store(true)
		v.appendMu.Unlock()
		v.log.Error("compaction commit failed after its marker was written; volume refuses writes until reloaded", "err", err)
		v.opts.notify()
		return 0, err
	}
	reclaimed := c.install()
	needles := c.nm.Len()
	v.appendMu.Unlock()
	v.log.Info("volume compacted", "reclaimed_bytes", reclaimed, "revision", c.sb.CompactRevision,
		"needles", needles, "caught_up", c.caughtUp, "corrupt", c.corrupt, "dropped", c.dropped, "dropped_expired", c.expired)
	return reclaimed, nil
}

// compactCopy is step 1: snapshot and copy the live needles. It checks ctx
// before each needle.
func (v *volume) compactCopy(ctx context.Context) (_ *compaction, err error) {
	v.appendMu.Lock()
	if v.closed.Load() || v.failed.Load() {
		v.appendMu.Unlock()
		return nil, fmt.Errorf("compaction: %w", v.checkWritable()) // a read-only volume may be compacted
	}
	entries := v.nm.snapshot()
	src := v.files
	src.acquire()
	c := &compaction{v: v, nm: newNeedleMap(), sb: v.sb, srcIdxEnd: v.idxEnd}
	c.nm.maxKey = v.nm.maxKey
	v.appendMu.Unlock()
	defer src.release()
	c.sb.CompactRevision++

	if c.cpd, err = os.OpenFile(v.path(extCpd), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return nil, fmt.Errorf("%v: compaction: %w", v, err)
	}
	if c.cpx, err = os.OpenFile(v.path(extCpx), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		c.cpd.Close()
		os.Remove(v.path(extCpd))
		return nil, fmt.Errorf("%v: compaction: %w", v, err)
	}
	defer func() {
		if err != nil {
			c.abort()
		}
	}()
	c.dat = &appender{f: c.cpd, buf: make([]byte, 0, 1<<20)}
	c.idx = &appender{f: c.cpx, buf: make([]byte, 0, 64<<10)}
	if err := c.dat.write(c.sb.Bytes()); err != nil {
		return nil, fmt.Errorf("%v: compaction: write %s: %w", v, c.cpd.Name(), err)
	}

	slices.SortFunc(entries, func(a, b nmEntry) int { return cmp.Compare(a.offset, b.offset) })
	now := v.opts.now()
	var buf []byte
	for i, e := range entries {
		if i%1024 == 0 && v.closed.Load() {
			return nil, fmt.Errorf("%v: compaction: %w", v, ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%v: compaction cancelled after %d of %d needles: %w", v, i, len(entries), err)
		}
		rs := needle.RecordSize(e.size)
		if int64(cap(buf)) < rs {
			buf = make([]byte, rs)
		}
		rec := buf[:rs]
		if _, err := src.dat.ReadAt(rec, e.datOffset()); err != nil {
			if !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%v: compaction: read needle %d at %d: %w", v, e.key, e.datOffset(), err)
			}
			v.log.Error("compaction: dropping a needle whose record is past the end of the data file", "key", e.key, "offset", e.datOffset())
			c.dropped++
			continue
		}
		n, deleted, derr := needle.DecodeRecord(rec)
		switch {
		case derr == nil && !deleted && n.ID == e.key:
			if v.expired(n, now) {
				c.expired++
				continue
			}
		default:
			// Copy a damaged record as it is: it keeps reading as
			// ErrCorrupt (so a replica can repair it) instead of
			// silently becoming "not found".
			v.log.Error("compaction: copying a corrupt needle as is", "key", e.key, "offset", e.datOffset(), "err", derr)
			c.corrupt++
		}
		if err := c.add(rec, e.key, e.size); err != nil {
			return nil, err
		}
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	return c, nil
}

// add appends one record and its index entry to the new files.
func (c *compaction) add(rec []byte, key uint64, size uint32) error {
	off := c.dat.off
	if err := c.dat.write(rec); err != nil {
		return fmt.Errorf("%v: compaction: write %s: %w", c.v, c.cpd.Name(), err)
	}
	var ib [needle.IdxEntrySize]byte
	if err := c.idx.write(needle.AppendIdxEntry(ib[:0], needle.IdxEntry{ID: key, Offset: off, Size: size})); err != nil {
		return fmt.Errorf("%v: compaction: write %s: %w", c.v, c.cpx.Name(), err)
	}
	if size == needle.TombstoneSize {
		c.nm.del(key)
	} else {
		c.nm.put(key, off, size)
	}
	return nil
}

func (c *compaction) flush() error {
	if err := c.dat.flush(); err != nil {
		return fmt.Errorf("%v: compaction: write %s: %w", c.v, c.cpd.Name(), err)
	}
	if err := c.idx.flush(); err != nil {
		return fmt.Errorf("%v: compaction: write %s: %w", c.v, c.cpx.Name(), err)
	}
	return nil
}

// catchUp is step 2: replay what was appended to the old files since the
// snapshot. Called with appendMu held.
func (c *compaction) catchUp() error {
	v := c.v
	if v.closed.Load() {
		return fmt.Errorf("%v: compaction: %w", v, ErrClosed)
	}
	f := v.files
	end := v.idxEnd
	buf := make([]byte, 1024*needle.IdxEntrySize)
	for pos := c.srcIdxEnd; pos < end; {
		n := min(int64(len(buf)), end-pos)
		if _, err := f.idx.ReadAt(buf[:n], pos); err != nil {
			return fmt.Errorf("%v: compaction: read %s: %w", v, v.path(extIdx), err)
		}
		for i := int64(0); i < n; i += needle.IdxEntrySize {
			e, _ := needle.ParseIdxEntry(buf[i : i+needle.IdxEntrySize])
			c.caughtUp++
			if e.IsTombstone() {
				if _, ok := c.nm.get(e.ID); !ok {
					continue
				}
				var rb [needle.HeaderSize]byte
				f.dat.ReadAt(rb[:], e.Offset) // the cookie is informational only
				h, _ := needle.ParseHeader(rb[:])
				rec := needle.AppendDeleteRecord(nil, e.ID, h.Cookie, uint64(v.opts.now().UnixNano()))
				if err := c.add(rec, e.ID, needle.TombstoneSize); err != nil {
					return err
				}
				continue
			}
			// Copied as it is; reads verify it, as they did before.
			rec := make([]byte, needle.RecordSize(e.Size))
			if _, err := f.dat.ReadAt(rec, e.Offset); err != nil {
				return fmt.Errorf("%v: compaction: catch up: read needle %d at %d: %w", v, e.ID, e.Offset, err)
			}
			if err := c.add(rec, e.ID, e.Size); err != nil {
				return err
			}
		}
		pos += n
	}
	c.srcIdxEnd = end
	return c.flush()
}

// syncFiles makes the new files durable: once after the copy, without
// appendMu, and again at the end of step 2 for what the catch-up added.
func (c *compaction) syncFiles() error {
	sync := c.v.compactSync
	if sync == nil {
		sync = (*os.File).Sync
	}
	for _, f := range []*os.File{c.cpd, c.cpx} {
		if err := sync(f); err != nil {
			return fmt.Errorf("%v: compaction: fsync %s: %w", c.v, f.Name(), err)
		}
	}
	return nil
}

// writeMarker is step 3: the commit point.
func (c *compaction) writeMarker() error {
	v := c.v
	body := fmt.Sprintf("kelp compaction\n%d %d %d\n", c.dat.off, c.idx.off, c.sb.CompactRevision)
	if err := writeFileSync(v.path(extCpmTmp), []byte(body)); err != nil {
		return fmt.Errorf("%v: compaction: write marker: %w", v, err)
	}
	if err := os.Rename(v.path(extCpmTmp), v.path(extCpm)); err != nil {
		return fmt.Errorf("%v: compaction: %w", v, err)
	}
	if err := syncDir(v.dir); err != nil {
		return fmt.Errorf("%v: compaction: %w", v, err)
	}
	return nil
}

// commitFiles runs steps 4 to 6.
func (c *compaction) commitFiles() error {
	if err := c.renameIdx(); err != nil {
		return err
	}
	if err := c.renameDat(); err != nil {
		return err
	}
	return c.removeMarker()
}

// renameIdx is step 4.
func (c *compaction) renameIdx() error { return renameSync(c.v, extCpx, extIdx) }

// renameDat is step 5.
func (c *compaction) renameDat() error { return renameSync(c.v, extCpd, extDat) }

// removeMarker is step 6.
func (c *compaction) removeMarker() error {
	v := c.v
	if err := os.Remove(v.path(extCpm)); err != nil {
		return fmt.Errorf("%v: compaction: %w", v, err)
	}
	if err := syncDir(v.dir); err != nil {
		return fmt.Errorf("%v: compaction: %w", v, err)
	}
	return nil
}

func renameSync(v *volume, fromExt, toExt string) error {
	if err := os.Rename(v.path(fromExt), v.path(toExt)); err != nil {
		return fmt.Errorf("%v: compaction: %w", v, err)
	}
	if err := syncDir(v.dir); err != nil {
		return fmt.Errorf("%v: compaction: %w", v, err)
	}
	return nil
}

// install is step 7: switch the in-memory volume to the new files. Called
// with appendMu held. It returns the bytes reclaimed.
func (c *compaction) install() int64 {
	v := c.v
	v.mu.Lock()
	v.syncMu.Lock()
	old := v.files
	reclaimed := v.datEnd - c.dat.off
	v.files = newVolFiles(c.cpd, c.cpx)
	c.nm.maxKey = max(c.nm.maxKey, v.nm.maxKey)
	v.nm = c.nm
	v.sb = c.sb
	v.datEnd = c.dat.off
	v.idxEnd = c.idx.off
	v.size.Store(v.datEnd)
	v.syncedSeq = v.appendSeq.Load() // the new files were fsynced whole
	v.syncMu.Unlock()
	v.mu.Unlock()
	v.setFull(v.datEnd >= v.opts.sizeLimit)
	old.release()
	return reclaimed
}

// abort removes the files of a compaction that did not commit: first the
// marker, in case its rename happened but the directory fsync after it
// failed (a stale .cpm would make a later load take whatever .cpd and .cpx
// exist then for a committed compaction), then the new files. Called with
// appendMu held once writeMarker may have run. If the marker cannot be
// removed durably, the new files are left in place and the volume refuses
// writes: the next load then finds either the marker and the complete new
// files, or neither, and both are a consistent volume.
func (c *compaction) abort() {
	v := c.v
	c.cpd.Close()
	c.cpx.Close()
	err := os.Remove(v.path(extCpm))
	switch {
	case os.IsNotExist(err):
		err = nil
	case err == nil:
		err = syncDir(v.dir)
	}
	if err != nil {
		v.failed.Store(true)
		v.log.Error("cannot remove the marker of an aborted compaction; volume refuses writes until reloaded", "file", v.path(extCpm), "err", err)
		v.opts.notify()
		os.Remove(v.path(extCpmTmp))
		return
	}
	for _, ext := range []string{extCpmTmp, extCpd, extCpx} {
		if err := os.Remove(v.path(ext)); err != nil && !os.IsNotExist(err) {
			v.log.Warn("compaction cleanup", "err", err)
		}
	}
}

// recoverCompaction finishes or discards a compaction interrupted by a
// crash; see the protocol above. Called at load, before .dat is opened.
func (v *volume) recoverCompaction() error {
	if err := os.Remove(v.path(extCpmTmp)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("%v: %w", v, err)
	}
	marker, err := os.ReadFile(v.path(extCpm))
	if os.IsNotExist(err) {
		for _, ext := range []string{extCpd, extCpx} {
			if err := os.Remove(v.path(ext)); err == nil {
				v.log.Warn("discarded the files of an uncommitted compaction", "file", v.path(ext))
			} else if !os.IsNotExist(err) {
				return fmt.Errorf("%v: discard uncommitted compaction: %w", v, err)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%v: read compaction marker: %w", v, err)
	}
	datSize, idxSize, err := parseMarker(marker)
	if err != nil {
		return fmt.Errorf("%v: compaction marker %s: %w", v, v.path(extCpm), err)
	}
	for _, f := range []struct {
		from, to string
		size     int64
	}{{extCpx, extIdx, idxSize}, {extCpd, extDat, datSize}} {
		fi, err := os.Stat(v.path(f.from))
		if os.IsNotExist(err) {
			continue // renamed before the crash
		}
		if err != nil {
			return fmt.Errorf("%v: finish compaction: %w", v, err)
		}
		if fi.Size() != f.size {
			return fmt.Errorf("%v: finish compaction: %s is %d bytes, the marker says %d: %w", v, v.path(f.from), fi.Size(), f.size, needle.ErrCorrupt)
		}
		if err := os.Rename(v.path(f.from), v.path(f.to)); err != nil {
			return fmt.Errorf("%v: finish compaction: %w", v, err)
		}
	}
	if err := syncDir(v.dir); err != nil {
		return err
	}
	if err := os.Remove(v.path(extCpm)); err != nil {
		return fmt.Errorf("%v: finish compaction: %w", v, err)
	}
	if err := syncDir(v.dir); err != nil {
		return err
	}
	v.log.Warn("finished a compaction interrupted after its commit point")
	return nil
}

func parseMarker(b []byte) (datSize, idxSize int64, err error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "kelp compaction" {
		return 0, 0, fmt.Errorf("%w: not a compaction marker", needle.ErrCorrupt)
	}
	f := strings.Fields(lines[1])
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("%w: compaction marker fields", needle.ErrCorrupt)
	}
	if datSize, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("%w: compaction marker: %v", needle.ErrCorrupt, err)
	}
	if idxSize, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("%w: compaction marker: %v", needle.ErrCorrupt, err)
	}
	return datSize, idxSize, nil
}
