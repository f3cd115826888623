package storage

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// File name extensions of a volume's files.
const (
	extDat      = ".dat" // superblock + needle records
	extIdx      = ".idx" // 16-byte index entries
	extReadOnly = ".ro"  // marker: the volume is read-only
	extCpd      = ".cpd" // compaction: the new .dat being written
	extCpx      = ".cpx" // compaction: the new .idx being written
	extCpm      = ".cpm" // compaction: commit marker; present = the new files win
	extCpmTmp   = ".cpm.tmp"
)

// diskFile is what a volume needs from an open file. *os.File implements it;
// tests wrap it to inject faults.
type diskFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Close() error
}

var _ diskFile = (*os.File)(nil)

// volFiles is one generation of a volume's open .dat and .idx. Readers take
// a reference while they read; a compaction swaps in a new generation and
// drops the volume's own reference, so the old descriptors close only after
// the last reader that started before the swap is done.
type volFiles struct {
	dat, idx diskFile
	refs     atomic.Int64 // the volume's reference + one per in-flight user
}

func newVolFiles(dat, idx diskFile) *volFiles {
	f := &volFiles{dat: dat, idx: idx}
	f.refs.Store(1)
	return f
}

func (f *volFiles) acquire() { f.refs.Add(1) }

func (f *volFiles) release() {
	if f.refs.Add(-1) == 0 {
		f.dat.Close()
		f.idx.Close()
	}
}

// volumeOptions are the store-wide settings a volume runs with.
type volumeOptions struct {
	log       *slog.Logger
	now       func() time.Time
	sizeLimit int64
	fsync     bool
	notify    func() // a volume became full or read-only by itself
}

// volume is one needle volume: a .dat and an .idx in one directory.
//
// Locking: appendMu serializes every change to the files (write, delete, the
// end of a compaction, close). mu guards the needle map, the file generation
// and the superblock; readers hold it shared only to look up an entry and
// take a file reference, then read from disk with no lock held. Writers hold
// appendMu and take mu exclusively only to update the map. Lock order:
// vacuumMu, appendMu, mu, syncMu.
type volume struct {
	id          uint32
	collection  string
	dir         string
	base        string // dir/<collection>_<id> without extension
	replication needle.ReplicaPlacement
	ttl         needle.TTL
	opts        volumeOptions
	log         *slog.Logger

	vacuumMu sync.Mutex // one compaction at a time
	// compactSync fsyncs a compaction's new file; nil means f.Sync. A test
	// seam, set before the compaction starts.
	compactSync func(f *os.File) error

	appendMu sync.Mutex
	datEnd   int64  // guarded by appendMu: where the next record goes
	idxEnd   int64  // guarded by appendMu: where the next idx entry goes
	wbuf     []byte // guarded by appendMu: record encoding buffer

	mu    sync.RWMutex
	nm    *needleMap        // guarded by mu; written with appendMu held too
	files *volFiles         // guarded by mu; swapped with appendMu held too
	sb    needle.SuperBlock // guarded by mu

	appendSeq atomic.Uint64 // appends so far; written under appendMu
	syncMu    sync.Mutex
	syncedSeq uint64 // guarded by syncMu: appends known durable

	size         atomic.Int64 // mirror of datEnd for status
	lastAppendNs atomic.Int64 // newest append (or creation) time, for DropExpired
	maxKey       atomic.Uint64
	readOnly     atomic.Bool // persisted by the .ro marker
	failed       atomic.Bool // an fsync failed: the volume refuses writes until reloaded
	full         atomic.Bool // refused a write for size, or datEnd >= sizeLimit; see setFull
	closed       atomic.Bool
}

// volumeBaseName is "<collection>_<id>", or "<id>" for the empty collection.
func volumeBaseName(collection string, id uint32) string {
	if collection == "" {
		return strconv.FormatUint(uint64(id), 10)
	}
	return collection + "_" + strconv.FormatUint(uint64(id), 10)
}

// parseVolumeFileName parses "<collection>_<id>.dat" or "<id>.dat".
func parseVolumeFileName(name string) (collection string, id uint32, ok bool) {
	base, found := strings.CutSuffix(name, extDat)
	if !found || base == "" {
		return "", 0, false
	}
	idStr := base
	if i := strings.LastIndexByte(base, '_'); i >= 0 {
		collection, idStr = base[:i], base[i+1:]
		if collection == "" {
			return "", 0, false
		}
	}
	n, err := strconv.ParseUint(idStr, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != idStr {
		return "", 0, false
	}
	return collection, uint32(n), true
}

func (v *volume) path(ext string) string { return v.base + ext }

// String names the volume in errors and logs.
func (v *volume) String() string {
	if v.collection == "" {
		return fmt.Sprintf("volume %d", v.id)
	}
	return fmt.Sprintf("volume %d (collection %s)", v.id, v.collection)
}

// status reports the volume's counters.
func (v *volume) status() VolumeStatus {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return VolumeStatus{
		ID:              v.id,
		Collection:      v.collection,
		Replication:     v.replication,
		TTL:             v.ttl,
		Size:            v.size.Load(),
		FileCount:       uint64(v.nm.Len()),
		DeleteCount:     v.nm.deleteCount,
		DeletedBytes:    v.nm.deletedBytes,
		ReadOnly:        v.readOnly.Load() || v.failed.Load(),
		Full:            v.full.Load(),
		CompactRevision: v.sb.CompactRevision,
		Version:         v.sb.Version,
		Dir:             v.dir,
	}
}

// setFull records whether the volume is full and signals Changed when that
// flips. Called with appendMu held (or before the volume is published).
func (v *volume) setFull(full bool) {
	if v.full.Swap(full) != full {
		if full {
			v.log.Info("volume is full", "size", v.size.Load(), "limit", v.opts.sizeLimit)
		} else {
			v.log.Info("volume is no longer full", "size", v.size.Load(), "limit", v.opts.sizeLimit)
		}
		v.opts.notify()
	}
}

// checkWritable reports why the volume cannot take a change now. Called with
// appendMu held.
func (v *volume) checkWritable() error {
	switch {
	case v.closed.Load():
		return fmt.Errorf("%v: %w", v, ErrClosed)
	case v.failed.Load():
		return fmt.Errorf("%v: %w after an fsync failure (restart the server to reload it)", v, ErrReadOnly)
	case v.readOnly.Load():
		return fmt.Errorf("%v: %w", v, ErrReadOnly)
	}
	return nil
}

// setReadOnly persists (or clears) the read-only marker.
func (v *volume) setReadOnly(ro bool) error {
	v.appendMu.Lock()
	defer v.appendMu.Unlock()
	if v.closed.Load() {
		return fmt.Errorf("%v: %w", v, ErrClosed)
	}
	p := v.path(extReadOnly)
	if ro {
		if err := writeFileSync(p, []byte("read-only\n")); err != nil {
			return fmt.Errorf("%v: mark read-only: %w", v, err)
		}
	} else if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("%v: clear read-only: %w", v, err)
	}
	if err := syncDir(v.dir); err != nil {
		return fmt.Errorf("%v: %w", v, err)
	}
	v.readOnly.Store(ro)
	return nil
}

// close stops the volume: later calls get ErrClosed, in-flight reads finish
// on their file reference, a running compaction aborts. It does not remove
// any file.
func (v *volume) close() {
	v.closed.Store(true) // a running compaction checks this without appendMu
	v.appendMu.Lock()
	v.shutdownLocked()
	v.appendMu.Unlock()
	v.waitCompaction()
}

// closeIfExpired closes the volume if it has a TTL and its newest write is
// older than the TTL at now. The check and the close are one step under
// appendMu, so no write can slip in between.
func (v *volume) closeIfExpired(now time.Time) bool {
	if v.ttl.IsZero() {
		return false
	}
	v.appendMu.Lock()
	if v.closed.Load() || now.UnixNano()-v.lastAppendNs.Load() < int64(v.ttl.Duration()) {
		v.appendMu.Unlock()
		return false
	}
	v.closed.Store(true)
	v.shutdownLocked()
	v.appendMu.Unlock()
	v.waitCompaction()
	return true
}

// shutdownLocked marks the volume closed and drops its file reference.
// Called with appendMu held.
func (v *volume) shutdownLocked() {
	v.closed.Store(true)
	v.mu.Lock()
	f := v.files
	v.files = nil
	v.mu.Unlock()
	if f != nil {
		f.release()
	}
}

// waitCompaction waits for a running compaction to notice the volume is
// closed and clean up after itself.
func (v *volume) waitCompaction() {
	v.vacuumMu.Lock()
	//lint:ignore SA2001 an empty critical section is the barrier we want
	v.vacuumMu.Unlock()
}

// removeFiles deletes every file of the volume. Call after close.
func (v *volume) removeFiles() error {
	var first error
	for _, ext := range []string{extDat, extIdx, extReadOnly, extCpd, extCpx, extCpm, extCpmTmp} {
		if err := os.Remove(v.path(ext)); err != nil && !os.IsNotExist(err) && first == nil {
			first = fmt.Errorf("%v: %w", v, err)
		}
	}
	if err := syncDir(v.dir); err != nil && first == nil {
		first = err
	}
	return first
}

// writeFileSync writes a small file and fsyncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir fsyncs a directory so renames and creations in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("storage: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("storage: sync directory %s: %w", dir, err)
	}
	return nil
}

func joinBase(dir, collection string, id uint32) string {
	return filepath.Join(dir, volumeBaseName(collection, id))
}
