package storage

import (
	"fmt"

	"github.com/kelpfs/kelp/needle"
)

// delete appends a deletion record for id and a tombstone index entry. It
// returns the body size of the needle it removed.
func (v *volume) delete(id uint64, cookie uint32) (int64, error) {
	v.appendMu.Lock()
	if err := v.checkWritable(); err != nil {
		v.appendMu.Unlock()
		return 0, err
	}
	e, ok := v.nm.get(id)
	if !ok {
		v.appendMu.Unlock()
		return 0, fmt.Errorf("%v: needle %d: %w", v, id, ErrNotFound)
	}
	var hb [needle.HeaderSize]byte
	if _, err := v.files.dat.ReadAt(hb[:], e.datOffset()); err != nil {
		v.appendMu.Unlock()
		return 0, fmt.Errorf("%v: read needle %d header at %d: %w", v, id, e.datOffset(), err)
	}
	h, _ := needle.ParseHeader(hb[:])
	if h.ID != id {
		v.appendMu.Unlock()
		v.log.Error("corrupt needle header", "key", id, "offset", e.datOffset(), "found_key", h.ID)
		return 0, fmt.Errorf("%v: needle %d at %d: header holds key %d: %w", v, id, e.datOffset(), h.ID, ErrCorrupt)
	}
	if h.Cookie != cookie {
		v.appendMu.Unlock()
		return 0, fmt.Errorf("%v: needle %d: %w", v, id, ErrCookieMismatch)
	}
	now := v.opts.now()
	rec := needle.AppendDeleteRecord(v.wbuf[:0], id, cookie, uint64(now.UnixNano()))
	// A deletion may take a full volume a little past its limit: deletes
	// must work on full volumes, and compaction reclaims the space.
	_, err := v.appendLocked([][]byte{rec}, needle.IdxEntry{ID: id, Size: needle.TombstoneSize}, needle.MaxVolumeOffset)
	v.keepBuffer(rec)
	if err != nil {
		v.appendMu.Unlock()
		return 0, err
	}
	v.mu.Lock()
	v.nm.del(id)
	v.mu.Unlock()
	return int64(e.size), v.finishAppend()
}
