package mount

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

// spillStore holds written data that is not on a volume server yet in
// files under the cache directory, so it need not stay in memory: chunks
// waiting for an upload slot while a writer is over the write-buffer cap,
// and chunks whose upload failed (kept for the next flush to retry). The
// directory belongs to this mount (the cache locks its parent); what an
// earlier process left there was never committed and is removed at start.
type spillStore struct {
	dir   string
	limit int64 // bytes on disk at most
	used  atomic.Int64
	peak  atomic.Int64
	seq   atomic.Uint64
}

// errSpillFull: spilling more would pass the store's limit.
var errSpillFull = errors.New("spill space used up")

// spilled is one chunk's bytes in a spill file.
type spilled struct {
	s    *spillStore
	path string
	size int64
}

func newSpillStore(dir string, limit int64) (*spillStore, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear spill dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spill dir: %w", err)
	}
	return &spillStore{dir: dir, limit: limit}, nil
}

// put writes data to a new spill file.
func (s *spillStore) put(data []byte) (*spilled, error) {
	n := int64(len(data))
	if s.used.Add(n) > s.limit {
		s.used.Add(-n)
		return nil, errSpillFull
	}
	p := filepath.Join(s.dir, strconv.FormatUint(s.seq.Add(1), 10))
	err := os.WriteFile(p, data, 0o600)
	if err != nil {
		_ = os.Remove(p)
		s.used.Add(-n)
		return nil, fmt.Errorf("spill %d bytes: %w", n, err)
	}
	for {
		peak, used := s.peak.Load(), s.used.Load()
		if used <= peak || s.peak.CompareAndSwap(peak, used) {
			break
		}
	}
	return &spilled{s: s, path: p, size: n}, nil
}

// readAt fills p from the spilled bytes at off.
func (sp *spilled) readAt(p []byte, off int64) error {
	f, err := os.Open(sp.path)
	if err != nil {
		return fmt.Errorf("read spilled chunk: %w", err)
	}
	defer f.Close()
	if _, err := f.ReadAt(p, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read spilled chunk %s: %w", sp.path, err)
	}
	return nil
}

// read returns all the spilled bytes.
func (sp *spilled) read() ([]byte, error) {
	b := make([]byte, sp.size)
	if err := sp.readAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// remove deletes the spill file (its bytes are stored elsewhere now).
func (sp *spilled) remove() {
	if err := os.Remove(sp.path); err == nil || errors.Is(err, os.ErrNotExist) {
		sp.s.used.Add(-sp.size)
	}
}

// close removes every spill file: data not uploaded by now is lost with
// the mount, as it would be from memory.
func (s *spillStore) close() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove spill dir: %w", err)
	}
	return nil
}
