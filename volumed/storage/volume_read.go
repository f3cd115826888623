package storage

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// read returns needle id if the cookie matches and it has not expired. The
// disk read runs with no volume lock held.
func (v *volume) read(id uint64, cookie uint32) (*needle.Needle, error) {
	v.mu.RLock()
	f := v.files
	if f == nil {
		v.mu.RUnlock()
		return nil, fmt.Errorf("%v: %w", v, ErrClosed)
	}
	e, ok := v.nm.get(id)
	if !ok {
		v.mu.RUnlock()
		return nil, fmt.Errorf("%v: needle %d: %w", v, id, ErrNotFound)
	}
	f.acquire()
	v.mu.RUnlock()
	n, err := v.readRecord(f.dat, e)
	f.release()
	if err != nil {
		return nil, err
	}
	if n.Cookie != cookie {
		return nil, fmt.Errorf("%v: needle %d: %w", v, id, ErrCookieMismatch)
	}
	if v.expired(n, v.opts.now()) {
		return nil, fmt.Errorf("%v: needle %d expired: %w", v, id, ErrNotFound)
	}
	return n, nil
}

// readRecord reads and verifies the record e points at with one positional
// read. The needle owns the buffer it was decoded from.
func (v *volume) readRecord(dat io.ReaderAt, e nmEntry) (*needle.Needle, error) {
	off := e.datOffset()
	buf := make([]byte, needle.RecordSize(e.size))
	if _, err := dat.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			v.log.Error("needle record past the end of the data file", "key", e.key, "offset", off, "size", e.size)
			return nil, fmt.Errorf("%v: needle %d at %d: record past the end of %s: %w", v, e.key, off, v.path(extDat), ErrCorrupt)
		}
		v.log.Error("reading needle failed", "key", e.key, "offset", off, "err", err)
		return nil, fmt.Errorf("%v: read needle %d at %d: %w", v, e.key, off, err)
	}
	n, deleted, err := needle.DecodeRecord(buf)
	switch {
	case err != nil:
	case deleted:
		err = errors.New("deletion record where a needle was indexed")
	case n.ID != e.key:
		err = fmt.Errorf("record holds key %d", n.ID)
	}
	if err != nil {
		v.log.Error("corrupt needle", "key", e.key, "offset", off, "size", e.size, "err", err)
		return nil, fmt.Errorf("%v: needle %d at %d: %w: %w", v, e.key, off, ErrCorrupt, err)
	}
	return n, nil
}

// expired reports whether n is past its TTL at now: the needle's own TTL, or
// else the volume's, counted from its LastModified (or, if unset, from when
// it was appended). On a TTL volume a needle also expires at its append time
// plus the volume's TTL, so it never outlives the volume (which DropExpired
// removes at its newest append plus its TTL).
func (v *volume) expired(n *needle.Needle, now time.Time) bool {
	ttl := n.TTL
	if ttl.IsZero() {
		ttl = v.ttl
	}
	if ttl.IsZero() {
		return false
	}
	base := int64(n.AppendAtNs)
	if n.LastModified != 0 {
		base = int64(n.LastModified) * int64(time.Second)
	}
	expiry := base + int64(ttl.Duration())
	if !v.ttl.IsZero() {
		expiry = min(expiry, int64(n.AppendAtNs)+int64(v.ttl.Duration()))
	}
	return now.UnixNano() >= expiry
}
