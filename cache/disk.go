package cache

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

const (
	// maxDiskFid bounds the fids kept on disk: the file name is the fid in
	// hex, and names stay well under the usual 255-byte limit.
	maxDiskFid = 100
	// diskUnit is the allocation unit disk files are charged in.
	diskUnit = 4096
	// writeQueueLen bounds the number of queued disk writes (bytes are
	// bounded by Config.WriteQueueBytes).
	writeQueueLen = 1024
	// Fault handling: a full disk lowers the effective budget to
	// shrinkNum/shrinkDen of what is used. While it is lowered, a write
	// at least probeEvery after the last look asks the filesystem how
	// much room there is and raises the budget to fit (space freed by
	// others is used again within a fraction of a second); a look that
	// the next write proves wrong (ENOSPC before any write succeeded)
	// doubles the wait, up to regrowAfter. Where the filesystem cannot
	// tell (statfs fails, or the error was EDQUOT, which statfs does not
	// see), the budget grows back blindly by a tenth of the configured
	// budget after each regrowAfter without another full-disk error.
	// Other write errors bypass the disk tier for a backoff between
	// minBackoff and maxBackoff, doubling while they last.
	shrinkNum, shrinkDen = 9, 10
	probeEvery           = 200 * time.Millisecond
	regrowAfter          = 30 * time.Second
	minBackoff           = time.Second
	maxBackoff           = time.Minute

	lockName = "LOCK"
	tmpName  = "tmp"
)

// diskEntry is the index record of one cache file.
type diskEntry struct {
	gen    uint64 // unique per file: names never repeat, so a late unlink cannot hit a newer file
	length int64  // blob length
	charge int64  // bytes charged to the budget
	gone   bool   // left the index (guarded by diskTier.mu)
}

type writeReq struct {
	fid  string
	data []byte
}

// diskTier is a directory of cache files, one per blob, indexed in memory
// by an LRU and bounded by bytes. Writes happen on one background
// goroutine (run); reads happen on the caller's goroutine with pread.
type diskTier struct {
	dir        string
	log        *slog.Logger
	configured int64
	queueMax   int64
	writeHook  func(*os.File, []byte) (int, error)
	now        func() time.Time
	statfs     func(dir string) (fsSpace, error) // guarded by mu (tests swap it)
	lockFile   *os.File
	nextGen    atomic.Uint64

	mu          sync.Mutex
	lru         *simplelru.LRU[string, *diskEntry]
	files       *simplelru.LRU[*diskEntry, *openFile] // open for reading
	shut        bool                                  // closed: keep no file open
	used        int64                                 // charged bytes of indexed files plus the write in progress
	budget      int64                                 // effective budget, <= configured
	victims     []string
	lastAdjust  time.Time // the last full-disk error or blind regrow
	bypassUntil time.Time
	backoff     time.Duration
	// Regrowing from statfs (disk_write.go): when the filesystem was
	// last asked, how long to wait before asking again, whether the
	// budget was last raised by asking with no write succeeding since,
	// and whether the last full-disk error was a quota's.
	lastProbe time.Time
	probeWait time.Duration
	probed    bool
	quotaFull bool

	qmu     sync.Mutex
	idle    *sync.Cond // signalled when pending drops to 0
	closed  bool
	queued  int64 // bytes in the queue or being written
	pending int   // requests in the queue or being written
	queue   chan writeReq
	done    chan struct{}
	headBuf []byte // writer goroutine only

	hits, misses, writes, writeErrors, dropped, corrupt, readErrors atomic.Int64
}

func diskCharge(length int64) int64 {
	return (fileSize(length) + diskUnit - 1) &^ (diskUnit - 1)
}

// openDisk locks cfg.Dir, rebuilds the index from the files there and
// starts the writer.
func openDisk(cfg Config, log *slog.Logger) (*diskTier, error) {
	d := &diskTier{
		dir:        cfg.Dir,
		log:        log,
		configured: cfg.DiskBytes,
		budget:     cfg.DiskBytes,
		queueMax:   cfg.WriteQueueBytes,
		writeHook:  cfg.writeHook,
		now:        cfg.now,
		statfs:     statfsSpace,
		probeWait:  probeEvery,
		queue:      make(chan writeReq, writeQueueLen),
		done:       make(chan struct{}),
	}
	if d.writeHook == nil {
		d.writeHook = (*os.File).Write
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.idle = sync.NewCond(&d.qmu)
	d.lru, _ = simplelru.NewLRU[string, *diskEntry](math.MaxInt, d.onEvict)
	d.files, _ = simplelru.NewLRU[*diskEntry, *openFile](maxOpenFiles, d.onFileEvict)
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: create dir: %w", err)
	}
	if err := d.lock(); err != nil {
		return nil, err
	}
	if err := d.load(); err != nil {
		d.lockFile.Close()
		return nil, err
	}
	d.lastAdjust = d.now()
	go d.run()
	return d, nil
}

// lock takes an exclusive flock on Dir/LOCK and records our pid in it.
func (d *diskTier) lock() error {
	name := filepath.Join(d.dir, lockName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("cache: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s is locked by pid %s", ErrLocked, d.dir, strings.TrimSpace(string(b[:n])))
		}
		return fmt.Errorf("cache: lock %s: %w", name, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	d.lockFile = f
	return nil
}

// fanout is the subdirectory of a fid's files.
func fanout(fid string) string { return fmt.Sprintf("%02x", fidCRC(fid)&0xff) }

// path is where the file of fid with generation gen lives.
func (d *diskTier) path(fid string, gen uint64) string {
	return filepath.Join(d.dir, fanout(fid), hex.EncodeToString([]byte(fid))+"-"+fmt.Sprintf("%016x", gen))
}

// parseName inverts path's last element.
func parseName(name string) (fid string, gen uint64, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || len(name)-i-1 != 16 {
		return "", 0, false
	}
	b, err := hex.DecodeString(name[:i])
	if err != nil {
		return "", 0, false
	}
	gen, err = strconv.ParseUint(name[i+1:], 16, 64)
	return string(b), gen, err == nil
}

type loadedFile struct {
	fid     string
	gen     uint64
	length  int64
	recency time.Time
}

// load empties tmp/ (torn writes of an earlier process), indexes every
// well-formed cache file from least to most recently used (by the later of
// its atime and mtime), removes malformed and duplicate ones, and evicts
// down to the budget. File contents are checked when read.
func (d *diskTier) load() error {
	tmp := filepath.Join(d.dir, tmpName)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("cache: clear %s: %w", tmp, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	var files []loadedFile
	var maxGen uint64
	for i := range 256 {
		sub := fmt.Sprintf("%02x", i)
		dir := filepath.Join(d.dir, sub)
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cache: %w", err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		for _, de := range ents {
			if de.IsDir() {
				continue
			}
			name := filepath.Join(dir, de.Name())
			fid, gen, ok := parseName(de.Name())
			info, err := de.Info()
			if err != nil {
				continue // vanished
			}
			length, sizeOK := lengthFromSize(info.Size())
			if !ok || fanout(fid) != sub || !info.Mode().IsRegular() || !sizeOK || len(fid) > maxDiskFid {
				d.log.Debug("cache: removing malformed cache file", "file", name)
				_ = os.Remove(name)
				continue
			}
			maxGen = max(maxGen, gen)
			files = append(files, loadedFile{fid: fid, gen: gen, length: length, recency: recency(info)})
		}
	}
	d.nextGen.Store(maxGen)
	slices.SortFunc(files, func(a, b loadedFile) int {
		return cmp.Or(a.recency.Compare(b.recency), cmp.Compare(a.gen, b.gen))
	})
	d.mu.Lock()
	for _, f := range files {
		if old, ok := d.lru.Peek(f.fid); ok {
			// Two generations of one fid (a crash between a rewrite and
			// the unlink of the evicted file): keep the newer.
			if old.gen > f.gen {
				d.victims = append(d.victims, d.path(f.fid, f.gen))
				continue
			}
			d.lru.Remove(f.fid)
		}
		e := &diskEntry{gen: f.gen, length: f.length, charge: diskCharge(f.length)}
		d.lru.Add(f.fid, e)
		d.used += e.charge
	}
	d.evictLocked(d.budget)
	victims := d.takeVictimsLocked()
	n, used := d.lru.Len(), d.used
	d.mu.Unlock()
	d.unlink(victims)
	d.log.Info("cache: disk tier loaded", "dir", d.dir, "files", n, "bytes", used, "budget", d.budget, "evicted", len(victims))
	return nil
}

// onEvict runs under mu whenever an entry leaves the index.
func (d *diskTier) onEvict(fid string, e *diskEntry) {
	e.gone = true
	d.files.Remove(e) // closed now, or by its last reader
	d.used -= e.charge
	d.victims = append(d.victims, d.path(fid, e.gen))
}

// evictLocked removes least recently used entries until used <= target.
func (d *diskTier) evictLocked(target int64) {
	for d.used > target {
		if _, _, ok := d.lru.RemoveOldest(); !ok {
			return
		}
	}
}

func (d *diskTier) takeVictimsLocked() []string {
	v := d.victims
	d.victims = nil
	return v
}

// unlink removes evicted files; called without mu (names are unique, so a
// late unlink never hits a newer file).
func (d *diskTier) unlink(names []string) {
	for _, n := range names {
		if err := os.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("cache: remove evicted file", "err", err)
		}
	}
}

// lookup returns fid's entry and marks it most recently used.
func (d *diskTier) lookup(fid string) (*diskEntry, bool) {
	d.mu.Lock()
	e, ok := d.lru.Get(fid)
	d.mu.Unlock()
	return e, ok
}

func (d *diskTier) contains(fid string) bool {
	d.mu.Lock()
	ok := d.lru.Contains(fid)
	d.mu.Unlock()
	return ok
}

// drop removes e (if it is still fid's entry) and its file.
func (d *diskTier) drop(fid string, e *diskEntry) {
	d.mu.Lock()
	if cur, ok := d.lru.Peek(fid); ok && cur == e {
		d.lru.Remove(fid)
	}
	victims := d.takeVictimsLocked()
	d.mu.Unlock()
	d.unlink(victims)
}

type diskStats struct {
	used, budget int64
	entries      int
	queued       int64
	bypassed     bool
}

func (d *diskTier) stats() diskStats {
	d.mu.Lock()
	s := diskStats{used: d.used, budget: d.budget, entries: d.lru.Len(), bypassed: d.now().Before(d.bypassUntil)}
	d.mu.Unlock()
	d.qmu.Lock()
	s.queued = d.queued
	d.qmu.Unlock()
	return s
}

// close stops the writer after it has written what is queued, then
// releases the lock.
func (d *diskTier) close() error {
	d.qmu.Lock()
	if !d.closed {
		d.closed = true
		close(d.queue)
	}
	d.qmu.Unlock()
	<-d.done
	d.mu.Lock()
	d.shut = true
	d.files.Purge()
	d.mu.Unlock()
	if err := d.lockFile.Close(); err != nil {
		return fmt.Errorf("cache: release lock: %w", err)
	}
	return nil
}
