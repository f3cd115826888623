package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/needle"
)

// maxKeptBuffer bounds the encoding buffer a volume keeps between writes.
const maxKeptBuffer = 1 << 20

// maxFutureLastModified is how far ahead of the store's clock a needle's
// LastModified may be on a TTL volume.
const maxFutureLastModified = time.Minute

// write appends n to the volume. See Store.Write.
func (v *volume) write(n *needle.Needle) (Written, error) {
	if err := n.Validate(); err != nil {
		return Written{}, fmt.Errorf("%v: needle %d: %w", v, n.ID, err)
	}
	v.appendMu.Lock()
	if err := v.checkWritable(); err != nil {
		v.appendMu.Unlock()
		return Written{}, err
	}
	now := v.opts.now()
	if err := v.checkFits(n, now); err != nil {
		v.appendMu.Unlock()
		return Written{}, err
	}
	if old, ok := v.nm.get(n.ID); ok { // appendMu is enough: only appenders change the map
		same, err := v.sameAsStored(old, n, now)
		if err != nil {
			v.appendMu.Unlock()
			return Written{}, err
		}
		if same {
			v.appendMu.Unlock()
			return Written{Unchanged: true, ETag: needle.ETag(n.Data)}, nil
		}
	}
	n.AppendAtNs = uint64(now.UnixNano())
	body := n.BodySize()
	if needle.RecordSize(body) > v.opts.sizeLimit-needle.SuperBlockSize {
		v.appendMu.Unlock()
		return Written{}, fmt.Errorf("%v: needle %d of %d bytes exceeds the volume size limit %d: %w", v, n.ID, len(n.Data), v.opts.sizeLimit, ErrVolumeFull)
	}
	// The data goes to the file as it is, between the record's head and
	// tail (one pwritev): no copy of a multi-MiB chunk into a record.
	head, tail, dataCRC := n.RecordParts(v.wbuf[:0])
	off, err := v.appendLocked([][]byte{head, n.Data, tail}, needle.IdxEntry{ID: n.ID, Size: body}, v.opts.sizeLimit)
	v.keepBuffer(head[:len(head)+len(tail)])
	if err != nil {
		v.appendMu.Unlock()
		return Written{}, err
	}
	v.mu.Lock()
	v.nm.put(n.ID, off, body)
	v.mu.Unlock()
	v.noteAppend(n.ID, now)
	return Written{ETag: needle.ETagOf(dataCRC)}, v.finishAppend()
}

// checkFits refuses a needle that could outlive its TTL volume: the volume
// is dropped whole at its newest append plus its TTL, so a needle may not
// carry a longer TTL of its own, nor a LastModified (the base its TTL counts
// from) more than maxFutureLastModified ahead of now. expired caps whatever
// that minute allows at the volume's drop time.
func (v *volume) checkFits(n *needle.Needle, now time.Time) error {
	if v.ttl.IsZero() {
		return nil
	}
	if !n.TTL.IsZero() && n.TTL.Duration() > v.ttl.Duration() {
		return fmt.Errorf("%v: needle %d: its TTL %s is longer than the volume's TTL %s: %w", v, n.ID, n.TTL, v.ttl, ErrBadNeedle)
	}
	if n.LastModified != 0 {
		lm := time.Unix(int64(n.LastModified), 0)
		if lm.Sub(now) > maxFutureLastModified {
			return fmt.Errorf("%v: needle %d: last modified %s is more than %v ahead of the server clock %s on a TTL volume: %w",
				v, n.ID, lm.UTC().Format(time.RFC3339), maxFutureLastModified, now.UTC().Format(time.RFC3339), ErrBadNeedle)
		}
	}
	return nil
}

// sameAsStored checks the cookie of the stored needle with n's key and
// reports whether it already holds exactly n's content (and is not expired).
// Called with appendMu held.
func (v *volume) sameAsStored(old nmEntry, n *needle.Needle, now time.Time) (bool, error) {
	dat := v.files.dat
	if old.size == n.BodySize() {
		stored, err := v.readRecord(dat, old)
		if err == nil {
			if stored.Cookie != n.Cookie {
				return false, fmt.Errorf("%v: needle %d exists with another cookie: %w", v, n.ID, ErrCookieMismatch)
			}
			same := bytes.Equal(stored.Data, n.Data) && bytes.Equal(stored.Name, n.Name) &&
				bytes.Equal(stored.Mime, n.Mime) && stored.LastModified == n.LastModified &&
				stored.TTL == n.TTL && stored.IsManifest == n.IsManifest && !v.expired(stored, now)
			if same {
				n.AppendAtNs = stored.AppendAtNs
			}
			return same, nil
		}
		if !errors.Is(err, ErrCorrupt) {
			return false, err
		}
		// A damaged record may be replaced (that is how it gets repaired)
		// if its header still shows the same cookie.
	}
	var hb [needle.HeaderSize]byte
	if _, err := dat.ReadAt(hb[:], old.datOffset()); err != nil {
		return false, fmt.Errorf("%v: read stored needle %d at %d: %w", v, old.key, old.datOffset(), err)
	}
	h, _ := needle.ParseHeader(hb[:])
	if h.ID != old.key {
		v.log.Error("corrupt needle header", "key", old.key, "offset", old.datOffset(), "found_key", h.ID)
		return false, fmt.Errorf("%v: needle %d at %d: header holds key %d: %w", v, old.key, old.datOffset(), h.ID, ErrCorrupt)
	}
	if h.Cookie != n.Cookie {
		return false, fmt.Errorf("%v: needle %d exists with another cookie: %w", v, n.ID, ErrCookieMismatch)
	}
	return false, nil
}

// appendLocked writes one record at the end of .dat and then its index
// entry (e with Offset filled in) at the end of .idx, each with a single
// positional write. On any error both files are cut back to their previous
// ends, so a failed append leaves nothing a later load could take for a
// needle. limit bounds the .dat size after the append. Called with appendMu
// held; the caller updates the needle map.
func (v *volume) appendLocked(rec [][]byte, e needle.IdxEntry, limit int64) (int64, error) {
	off := v.datEnd
	size := 0
	for _, b := range rec {
		size += len(b)
	}
	if off+int64(size) > min(limit, needle.MaxVolumeOffset) {
		v.setFull(true)
		return 0, fmt.Errorf("%v: %d + %d bytes would pass the size limit %d: %w", v, off, size, limit, ErrVolumeFull)
	}
	f := v.files
	if err := writeParts(f.dat, rec, off); err != nil {
		v.rollback(f, off, v.idxEnd)
		return 0, fmt.Errorf("%v: append needle %d to %s: %w", v, e.ID, v.path(extDat), err)
	}
	e.Offset = off
	var ib [needle.IdxEntrySize]byte
	if _, err := f.idx.WriteAt(needle.AppendIdxEntry(ib[:0], e), v.idxEnd); err != nil {
		v.rollback(f, off, v.idxEnd)
		return 0, fmt.Errorf("%v: append needle %d to %s: %w", v, e.ID, v.path(extIdx), err)
	}
	v.datEnd += int64(size)
	v.idxEnd += needle.IdxEntrySize
	v.size.Store(v.datEnd)
	v.appendSeq.Add(1)
	if v.datEnd >= v.opts.sizeLimit {
		v.setFull(true) // a deletion may pass the limit
	}
	return off, nil
}

// writeParts writes bufs one after another at off: on a real file with as
// few pwritev calls as the kernel allows, otherwise (a test's file) one
// WriteAt each.
func writeParts(df diskFile, bufs [][]byte, off int64) error {
	f, ok := df.(*os.File)
	if !ok {
		for _, b := range bufs {
			if _, err := df.WriteAt(b, off); err != nil {
				return err
			}
			off += int64(len(b))
		}
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(bufs) > 0 {
		var n int
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			// A regular file cannot be polled: retry here, never
			// ask to wait.
			for {
				n, werr = unix.Pwritev(int(fd), bufs, off)
				if werr != unix.EINTR {
					return true
				}
			}
		}); err != nil {
			return err
		}
		if werr != nil {
			return &os.PathError{Op: "pwritev", Path: f.Name(), Err: werr}
		}
		if n == 0 {
			return &os.PathError{Op: "pwritev", Path: f.Name(), Err: io.ErrShortWrite}
		}
		off += int64(n)
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return nil
}

// rollback cuts both files back after a failed append. If that fails too the
// volume refuses further writes: its tails are no longer known.
func (v *volume) rollback(f *volFiles, datEnd, idxEnd int64) {
	errD := f.dat.Truncate(datEnd)
	errI := f.idx.Truncate(idxEnd)
	if errD != nil || errI != nil {
		v.failed.Store(true)
		v.log.Error("cannot cut back a failed append; volume refuses writes until reloaded", "dat_err", errD, "idx_err", errI)
		v.opts.notify()
	}
}

// keepBuffer keeps rec's storage for the next append unless it is large.
func (v *volume) keepBuffer(rec []byte) {
	if cap(rec) <= maxKeptBuffer {
		v.wbuf = rec[:0]
	} else {
		v.wbuf = nil
	}
}

// noteAppend records the time and key of an append. Called with appendMu held.
func (v *volume) noteAppend(key uint64, now time.Time) {
	v.lastAppendNs.Store(now.UnixNano())
	if key > v.maxKey.Load() {
		v.maxKey.Store(key)
	}
}

// finishAppend releases appendMu and, with Fsync, waits until the append is
// durable. Concurrent writers share one fsync (group commit).
func (v *volume) finishAppend() error {
	if !v.opts.fsync {
		v.appendMu.Unlock()
		return nil
	}
	seq := v.appendSeq.Load()
	f := v.files
	f.acquire()
	v.appendMu.Unlock()
	defer f.release()
	return v.syncTo(f, seq)
}

// syncTo makes every append up to seq durable.
func (v *volume) syncTo(f *volFiles, seq uint64) error {
	v.syncMu.Lock()
	defer v.syncMu.Unlock()
	if v.syncedSeq >= seq {
		return nil
	}
	// Every append numbered up to target is in f: a compaction that swaps
	// the files marks everything before the swap synced, under syncMu.
	target := v.appendSeq.Load()
	if err := f.dat.Sync(); err != nil {
		return v.syncFailed(extDat, err)
	}
	if err := f.idx.Sync(); err != nil {
		return v.syncFailed(extIdx, err)
	}
	v.syncedSeq = target
	return nil
}

// syncFailed handles an fsync error: after one, the kernel may have dropped
// the dirty pages, so nothing more is acknowledged from this volume.
func (v *volume) syncFailed(ext string, err error) error {
	if !v.failed.Swap(true) {
		v.log.Error("fsync failed; volume refuses writes until reloaded", "file", v.path(ext), "err", err)
		v.opts.notify()
	}
	return fmt.Errorf("%v: fsync %s: %w", v, v.path(ext), err)
}
