package cache

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
)

// maxOpenFiles bounds the cache files kept open for reading (with their
// block tables: at most 8 KiB each for a 16 MiB blob).
const maxOpenFiles = 128

// openFile is a cache file open for reading, with its header checked and
// its block table in memory, so a range read is one pread. It is shared by
// concurrent readers (refs) and closed when it has left the open-file LRU
// (evicted) and no reader holds it. refs and evicted are guarded by
// diskTier.mu.
type openFile struct {
	f       *os.File
	table   []byte
	refs    int
	evicted bool
}

// readBufs holds scratch buffers for range reads that are not block
// aligned (the covering blocks are read, checked, then copied out).
var readBufs = sync.Pool{New: func() any { return new([]byte) }}

// acquire returns fid's file open for reading, opening it (and checking its
// header, loading its block table) if needed. The caller must release it.
func (d *diskTier) acquire(fid string, e *diskEntry) (*openFile, error) {
	d.mu.Lock()
	if of, ok := d.files.Get(e); ok {
		of.refs++
		d.mu.Unlock()
		return of, nil
	}
	d.mu.Unlock()

	f, err := os.Open(d.path(fid, e.gen))
	if err != nil {
		return nil, err
	}
	head := make([]byte, dataOffset(e.length))
	if _, err := f.ReadAt(head, 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := checkHeader(head, fid, e.length); err != nil {
		f.Close()
		return nil, err
	}
	of := &openFile{f: f, table: head[headerSize:], refs: 1}

	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.files.Get(e); ok { // another reader opened it meanwhile
		cur.refs++
		f.Close()
		return cur, nil
	}
	if e.gone || d.shut {
		// Evicted while we opened it (or the cache is closing): do not
		// keep the file open.
		of.evicted = true
	} else {
		d.files.Add(e, of)
	}
	return of, nil
}

// release drops a reader's hold on of.
func (d *diskTier) release(of *openFile) {
	d.mu.Lock()
	of.refs--
	closeNow := of.refs == 0 && of.evicted
	d.mu.Unlock()
	if closeNow {
		of.f.Close()
	}
}

// onFileEvict runs under mu when an open file leaves the LRU.
func (d *diskTier) onFileEvict(_ *diskEntry, of *openFile) {
	of.evicted = true
	if of.refs == 0 {
		of.f.Close()
	}
}

// readWhole reads and checks fid's whole blob from disk. ok is false on a
// miss, including a file found torn or corrupt (which is removed).
func (d *diskTier) readWhole(fid string, e *diskEntry) ([]byte, bool) {
	of, err := d.acquire(fid, e)
	if err != nil {
		return nil, d.readFailed(fid, e, err)
	}
	defer d.release(of)
	buf := make([]byte, e.length)
	if _, err := of.f.ReadAt(buf, dataOffset(e.length)); err != nil {
		return nil, d.readFailed(fid, e, err)
	}
	if err := checkBlocks(of.table, 0, buf); err != nil {
		return nil, d.readFailed(fid, e, err)
	}
	return buf, true
}

// readRange copies the blob's bytes at off into p, reading and checking
// only the blocks that cover them: one pread.
func (d *diskTier) readRange(fid string, e *diskEntry, p []byte, off int64) (int, bool) {
	end := min(off+int64(len(p)), e.length)
	if off >= end {
		return 0, true
	}
	of, err := d.acquire(fid, e)
	if err != nil {
		return 0, d.readFailed(fid, e, err)
	}
	defer d.release(of)
	first, last := off>>blockShift, (end-1)>>blockShift
	start, stop := first<<blockShift, min((last+1)<<blockShift, e.length)

	data := p[:end-off]
	if start != off || stop != end { // not block aligned: read the covering blocks
		bp := readBufs.Get().(*[]byte)
		defer readBufs.Put(bp)
		if int64(cap(*bp)) < stop-start {
			*bp = make([]byte, stop-start)
		}
		data = (*bp)[:stop-start]
	}
	if _, err := of.f.ReadAt(data, dataOffset(e.length)+start); err != nil {
		return 0, d.readFailed(fid, e, err)
	}
	if err := checkBlocks(of.table[tableEntry*first:], first, data); err != nil {
		return 0, d.readFailed(fid, e, err)
	}
	if start != off || stop != end {
		copy(p, data[off-start:end-start])
	}
	return int(end - off), true
}

// readFailed drops the entry and its file, counts why, and reports a miss.
// A vanished file is not an error: it was evicted meanwhile or removed by
// someone else. Torn, corrupt or unreadable files are never served.
func (d *diskTier) readFailed(fid string, e *diskEntry, err error) bool {
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, errCorrupt) || errors.Is(err, io.EOF):
		d.corrupt.Add(1)
		d.log.Warn("cache: dropping corrupt cache file", "fid", fid, "err", err)
	default:
		d.readErrors.Add(1)
		d.log.Warn("cache: dropping unreadable cache file", "fid", fid, "err", err)
	}
	d.drop(fid, e)
	return false
}
