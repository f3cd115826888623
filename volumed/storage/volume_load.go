package storage

import (
	"fmt"
	"io"
	"os"

	"github.com/kelpfs/kelp/needle"
)

// createVolume makes a new, empty volume's files and opens it. The .dat is
// written under a temporary name and renamed into place, so a crash leaves
// either no volume or a complete superblock.
func createVolume(dir, collection string, id uint32, rp needle.ReplicaPlacement, ttl needle.TTL, preallocate int64, opts volumeOptions) (*volume, error) {
	base := joinBase(dir, collection, id)
	name := volumeBaseName(collection, id)
	for _, ext := range []string{extDat, extCpd, extCpm} {
		if _, err := os.Lstat(base + ext); err == nil {
			return nil, fmt.Errorf("storage: volume %d: %s exists in %s: %w", id, name+ext, dir, ErrVolumeExists)
		}
	}
	idx, err := os.OpenFile(base+extIdx, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: volume %d: create index: %w", id, err)
	}
	idx.Close()
	tmp := base + extDat + ".tmp"
	sb := needle.SuperBlock{Version: needle.CurrentVersion, Replication: rp, TTL: ttl}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: volume %d: create data file: %w", id, err)
	}
	cleanup := func() { f.Close(); os.Remove(tmp); os.Remove(base + extIdx) }
	if _, err := f.WriteAt(sb.Bytes(), 0); err != nil {
		cleanup()
		return nil, fmt.Errorf("storage: volume %d: write superblock to %s: %w", id, tmp, err)
	}
	if preallocate > 0 {
		if err := preallocateFile(f, preallocate); err != nil {
			opts.log.Warn("volume preallocation failed; continuing without", "volume", id, "dir", dir, "bytes", preallocate, "err", err)
		}
	}
	if err := f.Sync(); err != nil {
		cleanup()
		return nil, fmt.Errorf("storage: volume %d: sync %s: %w", id, tmp, err)
	}
	f.Close()
	if err := os.Rename(tmp, base+extDat); err != nil {
		os.Remove(tmp)
		os.Remove(base + extIdx)
		return nil, fmt.Errorf("storage: volume %d: %w", id, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("storage: volume %d: %w", id, err)
	}
	v, err := openVolume(dir, collection, id, opts)
	if err != nil {
		return nil, err
	}
	v.lastAppendNs.Store(opts.now().UnixNano())
	return v, nil
}

// openVolume loads a volume from its files: it finishes or discards an
// interrupted compaction, parses the superblock, cuts a torn .idx tail,
// drops trailing .idx entries whose records do not decode, replays the .idx
// into the needle map, then scans the .dat past the last indexed record:
// complete records are indexed, and the first bad or short one and
// everything after it is cut off. Every cut is logged.
func openVolume(dir, collection string, id uint32, opts volumeOptions) (*volume, error) {
	v := &volume{
		id:         id,
		collection: collection,
		dir:        dir,
		base:       joinBase(dir, collection, id),
		opts:       opts,
		log:        opts.log.With("volume", id),
		nm:         newNeedleMap(),
	}
	if err := v.recoverCompaction(); err != nil {
		return nil, err
	}
	dat, err := os.OpenFile(v.path(extDat), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("%v: open: %w", v, err)
	}
	idx, err := os.OpenFile(v.path(extIdx), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		dat.Close()
		return nil, fmt.Errorf("%v: open: %w", v, err)
	}
	if err := v.load(dat, idx); err != nil {
		dat.Close()
		idx.Close()
		return nil, err
	}
	v.files = newVolFiles(dat, idx)
	if _, err := os.Stat(v.path(extReadOnly)); err == nil {
		v.readOnly.Store(true)
	}
	return v, nil
}

// load reads the superblock and rebuilds the needle map; it repairs the
// tails of both files.
func (v *volume) load(dat, idx *os.File) error {
	datInfo, err := dat.Stat()
	if err != nil {
		return fmt.Errorf("%v: %w", v, err)
	}
	datSize := datInfo.Size()
	sbBuf := make([]byte, needle.SuperBlockSize)
	if _, err := dat.ReadAt(sbBuf, 0); err != nil {
		return fmt.Errorf("%v: read superblock of %s: %w: %w", v, dat.Name(), needle.ErrCorrupt, err)
	}
	sb, err := needle.ParseSuperBlock(sbBuf)
	if err != nil {
		return fmt.Errorf("%v: superblock of %s: %w", v, dat.Name(), err)
	}
	v.sb = sb
	v.replication = sb.Replication
	v.ttl = sb.TTL

	idxInfo, err := idx.Stat()
	if err != nil {
		return fmt.Errorf("%v: %w", v, err)
	}
	idxSize := idxInfo.Size()
	if rem := idxSize % needle.IdxEntrySize; rem != 0 {
		v.log.Warn("cutting torn index tail", "file", idx.Name(), "bytes", rem)
		idxSize -= rem
		if err := idx.Truncate(idxSize); err != nil {
			return fmt.Errorf("%v: truncate torn index tail: %w", v, err)
		}
	}

	// Drop trailing entries whose records are not in .dat intact. Write
	// order (.dat then .idx) makes this impossible after a crash, but a
	// disk or an operator may have cut the .dat.
	var lastAppend int64
	for idxSize > 0 {
		var b [needle.IdxEntrySize]byte
		if _, err := idx.ReadAt(b[:], idxSize-needle.IdxEntrySize); err != nil {
			return fmt.Errorf("%v: read %s: %w", v, idx.Name(), err)
		}
		e, _ := needle.ParseIdxEntry(b[:])
		n, err := checkIndexedRecord(dat, datSize, e)
		if err == nil {
			lastAppend = int64(n.AppendAtNs)
			break
		}
		v.log.Warn("dropping index entry whose record is missing or bad", "file", idx.Name(), "key", e.ID, "offset", e.Offset, "err", err)
		idxSize -= needle.IdxEntrySize
		if err := idx.Truncate(idxSize); err != nil {
			return fmt.Errorf("%v: truncate index: %w", v, err)
		}
	}

	scanFrom, err := v.replayIndex(idx, idxSize, datSize)
	if err != nil {
		return err
	}
	v.idxEnd = idxSize
	end, last, err := v.scanTail(dat, idx, scanFrom, datSize)
	if err != nil {
		return err
	}
	if last != 0 {
		lastAppend = last
	}
	v.datEnd = end
	v.size.Store(end)
	v.full.Store(end >= v.opts.sizeLimit)
	v.maxKey.Store(v.nm.maxKey)
	if lastAppend == 0 {
		lastAppend = datInfo.ModTime().UnixNano()
	}
	v.lastAppendNs.Store(lastAppend)
	return nil
}

// checkIndexedRecord reads and verifies the record an index entry points at.
func checkIndexedRecord(dat io.ReaderAt, datSize int64, e needle.IdxEntry) (*needle.Needle, error) {
	bodySize := e.Size
	if e.IsTombstone() {
		bodySize = 0
	}
	rs := needle.RecordSize(bodySize)
	if e.Offset < needle.SuperBlockSize || e.Offset+rs > datSize {
		return nil, fmt.Errorf("record [%d, %d) outside the %d-byte data file", e.Offset, e.Offset+rs, datSize)
	}
	buf := make([]byte, rs)
	if _, err := dat.ReadAt(buf, e.Offset); err != nil {
		return nil, err
	}
	n, deleted, err := needle.DecodeRecord(buf)
	if err != nil {
		return nil, err
	}
	if n.ID != e.ID || deleted != e.IsTombstone() {
		return nil, fmt.Errorf("record holds key %d (deleted %v), index says key %d (deleted %v)", n.ID, deleted, e.ID, e.IsTombstone())
	}
	return n, nil
}

// replayIndex applies every .idx entry to the needle map and returns the end
// of the last indexed record in .dat.
func (v *volume) replayIndex(idx io.ReaderAt, idxSize, datSize int64) (int64, error) {
	end := int64(needle.SuperBlockSize)
	buf := make([]byte, 4096*needle.IdxEntrySize)
	for pos := int64(0); pos < idxSize; {
		n := min(int64(len(buf)), idxSize-pos)
		if _, err := idx.ReadAt(buf[:n], pos); err != nil {
			return 0, fmt.Errorf("%v: read index: %w", v, err)
		}
		for i := int64(0); i < n; i += needle.IdxEntrySize {
			e, _ := needle.ParseIdxEntry(buf[i : i+needle.IdxEntrySize])
			bodySize := e.Size
			if e.IsTombstone() {
				bodySize = 0
			}
			recEnd := e.Offset + needle.RecordSize(bodySize)
			if e.Offset < needle.SuperBlockSize || recEnd > datSize {
				v.log.Error("skipping index entry outside the data file", "key", e.ID, "offset", e.Offset, "size", e.Size, "index_pos", pos+i)
				continue
			}
			if e.IsTombstone() {
				v.nm.del(e.ID)
			} else {
				v.nm.put(e.ID, e.Offset, e.Size)
			}
			end = max(end, recEnd)
		}
		pos += n
	}
	return end, nil
}

// scanTail indexes the complete records in .dat from pos on and cuts the
// first bad one and everything after it. It returns the new .dat end and the
// append time of the last record indexed (0 if none).
func (v *volume) scanTail(dat, idx *os.File, pos, datSize int64) (end, lastAppend int64, err error) {
	var ibuf []byte
	recovered := 0
	var reason error
	for pos < datSize {
		var hb [needle.HeaderSize]byte
		if datSize-pos < needle.HeaderSize {
			reason = needle.ErrShortRecord
			break
		}
		if _, err := dat.ReadAt(hb[:], pos); err != nil {
			return 0, 0, fmt.Errorf("%v: read %s: %w", v, dat.Name(), err)
		}
		h, _ := needle.ParseHeader(hb[:])
		rs := needle.RecordSize(h.Size)
		if pos+rs > datSize || pos+rs > needle.MaxVolumeOffset {
			reason = needle.ErrShortRecord
			break
		}
		rec := make([]byte, rs)
		if _, err := dat.ReadAt(rec, pos); err != nil {
			return 0, 0, fmt.Errorf("%v: read %s: %w", v, dat.Name(), err)
		}
		n, deleted, derr := needle.DecodeRecord(rec)
		if derr != nil {
			reason = derr
			break
		}
		e := needle.IdxEntry{ID: n.ID, Offset: pos, Size: h.Size}
		if deleted {
			e.Size = needle.TombstoneSize
			v.nm.del(n.ID)
		} else {
			v.nm.put(n.ID, pos, h.Size)
		}
		ibuf = needle.AppendIdxEntry(ibuf[:0], e)
		if _, err := idx.WriteAt(ibuf, v.idxEnd); err != nil {
			return 0, 0, fmt.Errorf("%v: re-index tail record into %s: %w", v, idx.Name(), err)
		}
		v.idxEnd += needle.IdxEntrySize
		lastAppend = int64(n.AppendAtNs)
		recovered++
		pos += rs
	}
	if recovered > 0 {
		v.log.Warn("indexed records found past the index end", "file", dat.Name(), "records", recovered)
		if err := idx.Sync(); err != nil {
			return 0, 0, fmt.Errorf("%v: sync %s: %w", v, idx.Name(), err)
		}
	}
	if pos < datSize {
		v.log.Warn("cutting torn data tail", "file", dat.Name(), "offset", pos, "bytes", datSize-pos, "reason", reason)
		if err := dat.Truncate(pos); err != nil {
			return 0, 0, fmt.Errorf("%v: truncate torn tail of %s: %w", v, dat.Name(), err)
		}
		if err := dat.Sync(); err != nil {
			return 0, 0, fmt.Errorf("%v: sync %s: %w", v, dat.Name(), err)
		}
	}
	return pos, lastAppend, nil
}
