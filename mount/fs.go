package mount

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/grpc/metadata"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/cache"
	"github.com/kelpfs/kelp/client"
)

// Attr is an inode's attributes as the kernel sees them.
type Attr struct {
	Ino                 uint64
	Mode                uint32 // file type bits and permissions, as in stat(2)
	Uid, Gid            uint32
	Size                uint64
	Nlink               uint32
	Rdev                uint32
	Atime, Mtime, Ctime int64 // ns since the epoch
	// Generation is the filer's change counter of the inode: it goes up
	// with every change, so the newer of two answers is known.
	Generation uint64
}

// Caller is who asks for an operation: new inodes are theirs.
type Caller struct {
	Uid, Gid, Pid uint32
}

// Invalidator tells the kernel that cached names or attributes and data
// are stale. mount/fusefs implements it; the FS calls it from its
// watcher goroutine, never while holding a lock.
type Invalidator interface {
	// InvalidateEntry drops the kernel's name parent/name (positive or
	// negative).
	InvalidateEntry(parent uint64, name string)
	// InvalidateInode drops the kernel's attributes and cached data of ino.
	InvalidateInode(ino uint64)
	// InvalidateAttr drops only the kernel's attributes of ino; unlike
	// InvalidateInode it may be called while serving a request for ino.
	InvalidateAttr(ino uint64)
	// StoreCache puts data into the kernel's page cache of ino at off.
	// It must not be called while the kernel may hold a page of ino
	// locked waiting for the mount (a read of ino in flight).
	StoreCache(ino uint64, off int64, data []byte) error
}

// FS is one mount session. Create it with New, hand it to mount/fusefs,
// and Close it after unmounting.
type FS struct {
	cfg     Config
	log     *slog.Logger
	filer   *client.FilerClient
	api     filerpb.FilerClient
	blobs   *client.Cluster
	cache   *cache.Cache
	root    uint64
	sig     int32
	sigMD   metadata.MD   // tags calls with sig, so the watcher skips this mount's own events
	feedPos *feedPosition // how far the watcher has applied the change log (lock grants wait on it)
	session string

	inlineLimit atomic.Int64 // lowered when the filer refuses inline content
	xattrs      xattrMisses
	meta        *metaCache
	kept        *closedCache // content of files closed for good, for reopens
	slots       *slotPool    // sequential writers' chunk buffers (slotpool.go)
	pages       pageStates
	releases    sync.WaitGroup // filer handles being given back
	relMu       sync.Mutex
	relQueue    []heldHandle // handles to give back in the next Release calls
	relSending  bool         // a goroutine is sending relQueue
	inv         atomic.Pointer[invalidatorBox]
	// directWrites: writable handles do direct IO (EnableDirectWrites).
	directWrites atomic.Bool
	io           ioCounters
	locks        *lockService

	mu      sync.Mutex
	files   map[uint64]*file // open on this mount, or holding unflushed data
	handles map[uint64]*handle
	dirs    map[uint64]*dirHandle
	nextFh  uint64
	closed  bool

	wbuf      *budget
	spill     *spillStore // nil without a cache directory
	images    *imageStore // nil without a cache directory or ImageCapacityMB
	uploadSem chan struct{}
	fetchSem  chan struct{}
	fetchMu   sync.Mutex
	fetches   map[string]*fetchCall
	warmed    *lru.Cache[string, struct{}] // chunks lately read ahead from the disk cache

	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup // uploads, prefetches, the watcher
}

type invalidatorBox struct{ Invalidator }

// New connects to the filer (failing with a clear error if it cannot be
// reached within ConnectTimeout), resolves FilerPath and opens the cache.
func New(cfg Config) (*FS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	gaddr, err := client.GRPCAddress(cfg.Filer)
	if err != nil {
		return nil, fmt.Errorf("mount: filer address: %w", err)
	}
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: gaddr, Conn: cfg.FilerConn, WaitForReady: true})
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	fs := &FS{cfg: cfg, log: log, filer: fc, api: fc.API(), feedPos: newFeedPosition(),
		files: make(map[uint64]*file), handles: make(map[uint64]*handle), dirs: make(map[uint64]*dirHandle),
		wbuf:      newBudget(cfg.WriteBufferMB << 20),
		uploadSem: make(chan struct{}, cfg.ConcurrentWriters),
		fetchSem:  make(chan struct{}, cfg.ConcurrentReaders),
		fetches:   make(map[string]*fetchCall),
		warmed:    mustLRU[string, struct{}](256),
		meta:      newMetaCache(cfg.MetadataCacheTTL),
		kept:      newClosedCache(cmp.Or(cfg.KeptContentBytes, closedCacheBytes)),
		slots:     newSlotPool(int(cfg.chunkSize()), slotPoolBuffers(cfg)),
	}
	fs.inlineLimit.Store(int64(cfg.InlineLimit))
	var b [12]byte
	_, _ = rand.Read(b[:])
	fs.sig = int32(binary.BigEndian.Uint32(b[:4])&0x7fffffff) | 1
	fs.sigMD = metadata.Pairs(client.FilerSignatureKey, strconv.Itoa(int(fs.sig)))
	fs.session = hex.EncodeToString(b[4:])
	if err := fs.connect(); err != nil {
		fc.Close()
		return nil, err
	}
	fs.blobs = client.NewClusterVia(client.NewFilerVolumes(fc, 0), client.NewBlobClient(client.BlobClientConfig{Local: cfg.LocalVolumes}))
	ccfg := cache.DefaultConfig()
	ccfg.MemoryBytes = cfg.CacheMemoryMB << 20
	ccfg.Dir = cfg.CacheDir
	ccfg.DiskBytes = cfg.CacheCapacityMB << 20
	ccfg.Logger = log
	if fs.cache, err = cache.New(ccfg); err != nil {
		fs.blobs.Close()
		fc.Close()
		return nil, fmt.Errorf("mount: chunk cache: %w", err)
	}
	if cfg.CacheDir != "" && cfg.CacheCapacityMB > 0 {
		// Inside the cache's directory, which the cache has locked.
		if fs.spill, err = newSpillStore(filepath.Join(cfg.CacheDir, "spill"), cfg.CacheCapacityMB<<20); err != nil {
			fs.cache.Close()
			fs.blobs.Close()
			fc.Close()
			return nil, fmt.Errorf("mount: %w", err)
		}
	}
	if cfg.CacheDir != "" && cfg.CacheCapacityMB > 0 && cfg.ImageCapacityMB > 0 {
		// Inside the cache's directory, which the cache has locked.
		if fs.images, err = newImageStore(filepath.Join(cfg.CacheDir, "images"), cfg.ImageCapacityMB<<20, cfg.InlineImages, log); err != nil {
			if fs.spill != nil {
				_ = fs.spill.close()
			}
			fs.cache.Close()
			fs.blobs.Close()
			fc.Close()
			return nil, fmt.Errorf("mount: %w", err)
		}
	}
	fs.bgCtx, fs.bgCancel = context.WithCancel(context.Background())
	fs.locks = newLockService(fs)
	fs.startWatcher()
	return fs, nil
}

// connect checks the filer answers and resolves the mount root.
func (fs *FS) connect() error {
	ctx, cancel := context.WithTimeout(context.Background(), fs.cfg.ConnectTimeout)
	defer cancel()
	if _, err := fs.api.GetFilerConfiguration(ctx, &filerpb.Empty{}); err != nil {
		return fmt.Errorf("mount: cannot reach the filer at %s within %s: %w", fs.cfg.Filer, fs.cfg.ConnectTimeout, err)
	}
	ino := uint64(1)
	for _, name := range strings.Split(strings.Trim(fs.cfg.FilerPath, "/"), "/") {
		if name == "" {
			continue
		}
		resp, err := fs.api.Lookup(ctx, &filerpb.LookupRequest{Parent: ino, Name: name})
		if err != nil {
			return fmt.Errorf("mount: filer path %s: %s: %w", fs.cfg.FilerPath, name, err)
		}
		if resp.Attr.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return fmt.Errorf("mount: filer path %s: %s is not a directory", fs.cfg.FilerPath, path.Join("/", name))
		}
		ino = resp.Attr.Inode
	}
	fs.root = ino
	return nil
}

// Root is the filer inode mounted as the root directory.
func (fs *FS) Root() uint64 { return fs.root }

// Config returns the configuration in effect.
func (fs *FS) Config() Config { return fs.cfg }

// SetInvalidator tells the FS how to reach the kernel; until it is set,
// invalidations are dropped (nothing is cached yet).
func (fs *FS) SetInvalidator(inv Invalidator) { fs.inv.Store(&invalidatorBox{inv}) }

// EnableDirectWrites has the kernel send writes of handles opened for
// writing straight to the mount (FOPEN_DIRECT_IO), not through its page
// cache: a file being written then costs one copy of its bytes in memory
// fewer. A writer's reads come to the mount too; mmap still goes through
// the page cache, which needs the kernel to allow mmap of such handles
// (mount/fusefs checks). Small files written so have their content put
// back into the page cache at their last close (storeSmall), so reading
// them back costs no round trip, as it did when writes went through it.
func (fs *FS) EnableDirectWrites() { fs.directWrites.Store(true) }

// SetBacker turns on FUSE passthrough: from then on the mount keeps local
// images of the files it writes (with a cache directory and
// ImageCapacityMB) and lets the kernel read them directly.
func (fs *FS) SetBacker(b Backer) { fs.images.setBacker(b) }

// ImageStats reports what passthrough did.
func (fs *FS) ImageStats() ImageStats { return fs.images.Stats() }

// liveFile returns the file state the mount holds open for ino, if any.
func (fs *FS) liveFile(ino uint64) *file {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.files[ino]
}

// OpenHandles counts the file handles the kernel holds (released
// asynchronously after close(2) returns).
func (fs *FS) OpenHandles() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.handles)
}

// Close flushes every file's unflushed data (best effort, errors logged),
// releases the filer's handles, stops background work and disconnects.
// Call it after the kernel has let go of the mount. Idempotent.
func (fs *FS) Close() error {
	fs.mu.Lock()
	if fs.closed {
		fs.mu.Unlock()
		return nil
	}
	fs.closed = true
	fs.images.stopFills()
	files := make([]*file, 0, len(fs.files))
	for _, f := range fs.files {
		files = append(files, f)
	}
	fs.mu.Unlock()
	var errs []error
	for _, f := range files {
		ctx, cancel := context.WithTimeout(context.Background(), fs.cfg.OpTimeout)
		if errno := f.flush(ctx); errno != 0 {
			errs = append(errs, fmt.Errorf("flush inode %d: %w", f.ino, errno))
		}
		cancel()
	}
	fs.releases.Wait()
	// Closing the session gives back the filer handles still held.
	fs.locks.close()
	fs.bgCancel()
	fs.bg.Wait()
	if fs.spill != nil {
		errs = append(errs, fs.spill.close())
	}
	if st := fs.images.Stats(); st.Passthrough {
		fs.log.Info("file images", "passthroughOpens", st.PassthroughOpens, "directOpens", st.DirectOpens,
			"filled", st.Filled, "fillWaits", st.FillWaits, "evicted", st.Evicted, "invalidated", st.Invalidated)
	}
	errs = append(errs, fs.images.close())
	errs = append(errs, fs.cache.Close())
	if w, g := fs.filer.WireCalls(); w+g > 0 {
		fs.log.Info("filer calls", "wire", w, "grpc", g)
	}
	fs.blobs.Close()
	errs = append(errs, fs.filer.Close())
	if err := errors.Join(errs...); err != nil {
		fs.log.Error("mount: close", "err", err)
		return err
	}
	return nil
}

// BufferStats says where written data not yet on a volume server is.
type BufferStats struct {
	// Memory is what the write buffers hold against WriteBufferMB.
	Memory int64
	// Spilled is what waits on disk in the cache directory; PeakSpilled
	// the most it has been since the mount started.
	Spilled, PeakSpilled int64
}

// BufferStats reports the write buffers' use.
func (fs *FS) BufferStats() BufferStats {
	st := BufferStats{Memory: fs.wbuf.inUse()}
	if fs.spill != nil {
		st.Spilled, st.PeakSpilled = fs.spill.used.Load(), fs.spill.peak.Load()
	}
	return st
}

// IOStats counts what the kernel asked of the mount's file IO.
type IOStats struct {
	// Reads is the reads the kernel sent (those its page cache or a
	// passthrough image did not serve).
	Reads int64
	// DirectWriteHandles is the handles opened for writing that did
	// direct IO; SmallStored the small files whose content was put into
	// the kernel's page cache at their last close (see
	// EnableDirectWrites).
	DirectWriteHandles, SmallStored int64
	// UnchangedOpens is the opens (and fetches) the filer answered with
	// "unchanged since the generation you hold": no chunk list sent.
	UnchangedOpens int64
	// FilerCallsWire and FilerCallsGRPC count the unary filer calls a
	// mount across the network sent on the wire and (to a filer without
	// it) over gRPC; both 0 in-process.
	FilerCallsWire, FilerCallsGRPC int64
}

type ioCounters struct{ reads, directHandles, stored, unchanged atomic.Int64 }

// IOStats reports the counts.
func (fs *FS) IOStats() IOStats {
	w, g := fs.filer.WireCalls()
	return IOStats{Reads: fs.io.reads.Load(), DirectWriteHandles: fs.io.directHandles.Load(), SmallStored: fs.io.stored.Load(),
		UnchangedOpens: fs.io.unchanged.Load(), FilerCallsWire: int64(w), FilerCallsGRPC: int64(g)}
}

// opCtx bounds a filer call by OpTimeout and tags it with this mount's
// signature. The returned context is canceled with ctx; callers that
// need the cancel func use call.
func (fs *FS) opCtx(ctx context.Context) context.Context {
	return metadata.NewOutgoingContext(ctx, fs.sigMD)
}

// call runs fn with a context bounded by OpTimeout.
func call[T any](fs *FS, ctx context.Context, fn func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(fs.opCtx(ctx), fs.cfg.OpTimeout)
	defer cancel()
	return fn(ctx)
}

func (fs *FS) invalidator() Invalidator {
	if b := fs.inv.Load(); b != nil {
		return b.Invalidator
	}
	return nil
}

func (fs *FS) now() int64 { return time.Now().UnixNano() }

func attrFromPB(a *filerpb.Attr) Attr {
	if a == nil {
		return Attr{}
	}
	return Attr{Ino: a.Inode, Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Size: a.Size, Nlink: a.Nlink, Rdev: a.Rdev,
		Atime: a.AtimeNs, Mtime: a.MtimeNs, Ctime: a.CtimeNs, Generation: a.Generation}
}

// mustLRU makes an LRU of a size known to be valid.
func mustLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil {
		panic(err)
	}
	return c
}
