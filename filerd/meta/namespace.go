package meta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/kelpfs/kelp/filerd/store"
)

// Namespace is the POSIX namespace over a store. It is safe for concurrent
// use; its methods take a context that bounds the store calls.
type Namespace struct {
	st  store.Store
	cfg Config
	log *slog.Logger

	tsMu     sync.Mutex
	lastTs   int64              // the largest timestamp handed out
	lastEv   int64              // the largest timestamp of a committed event
	inflight map[int64]struct{} // timestamps of attempts whose Update has not returned
	wm       int64              // published watermark
	changes  chan struct{}      // closed (and replaced) when wm advances

	recent recentLog // the newest events, for ReadLog

	allocMu         sync.Mutex
	nextIno, endIno uint64 // reserved, unused inode numbers [nextIno, endIno)

	// dirLocks serialize, inside this process, the operations that change
	// the same directory, so they queue instead of conflicting in the
	// store and retrying. Correctness never depends on them.
	dirLocks [256]sync.Mutex

	openMu sync.Mutex
	opens  map[Inode]int         // handles the filer holds per inode
	dying  map[Inode]*dyingInode // inodes an uncommitted op is about to free
}

// dyingInode keeps Open from racing an operation that frees the inode.
type dyingInode struct {
	refs int
	done chan struct{}
}

// Open opens the namespace on st, creating the root directory in an empty
// store and freeing the open-unlinked inodes a previous run left behind.
// The store stays owned by the caller.
func Open(ctx context.Context, st store.Store, cfg Config) (*Namespace, error) {
	def := DefaultConfig()
	if cfg.Clock == nil {
		cfg.Clock = def.Clock
	}
	if cfg.MaxXattrSize <= 0 {
		cfg.MaxXattrSize = def.MaxXattrSize
	}
	if cfg.MaxNameLen <= 0 {
		cfg.MaxNameLen = def.MaxNameLen
	}
	if cfg.InodeBatch == 0 {
		cfg.InodeBatch = def.InodeBatch
	}
	if cfg.InlineLimit < 0 {
		return nil, fmt.Errorf("meta: negative InlineLimit: %w", ErrInvalid)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	n := &Namespace{
		st:       st,
		cfg:      cfg,
		log:      lg,
		inflight: make(map[int64]struct{}),
		changes:  make(chan struct{}),
		opens:    make(map[Inode]int),
		dying:    make(map[Inode]*dyingInode),
	}
	last, err := n.lastLogTs(ctx)
	if err != nil {
		return nil, err
	}
	// The log starts after the newest event, or after the newest trimmed
	// one if the log was trimmed past every event: the watermark too, or
	// a subscriber clamped to it would ask for trimmed history.
	var trimmed int64
	if err := st.View(ctx, func(tx store.Tx) error {
		var err error
		trimmed, err = getInt(tx, metaKey("logtrim"))
		return err
	}); err != nil {
		return nil, wrap("open", err)
	}
	last = max(last, trimmed)
	n.lastTs, n.lastEv, n.wm = last, last, last
	n.recent.from, n.recent.limit = last, recentEvents
	now := cfg.Clock()
	err = st.Update(ctx, func(tx store.Tx) error {
		_, err := tx.Get(attrKey(RootInode))
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		root := Attr{Inode: RootInode, Mode: S_IFDIR | 0o755, Nlink: 2,
			Atime: now, Mtime: now, Ctime: now, Crtime: now, Parent: RootInode}
		if err := tx.Set(attrKey(RootInode), encodeAttr(&root)); err != nil {
			return err
		}
		// A new store keeps its inode count from the start.
		if err := tx.Set(countKey(dirStripe(RootInode)), binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		return tx.Set(metaKey(countedKey), nil)
	})
	if err != nil {
		return nil, fmt.Errorf("meta: create root: %w", err)
	}
	if err := n.initInodeCount(ctx); err != nil {
		return nil, fmt.Errorf("meta: count inodes: %w", err)
	}
	if !cfg.KeepOrphans {
		freed, err := n.FreeOrphans(ctx)
		if err != nil {
			return nil, err
		}
		if freed > 0 {
			lg.Info("freed open-unlinked inodes left by the previous run", "count", freed)
		}
	}
	return n, nil
}

// FreeOrphans frees every open-unlinked inode no handle holds, and
// returns how many it freed. Handles live in memory, so a restart leaves
// the inodes that handles kept: Open frees them unless Config.KeepOrphans
// says to wait, for the clients that held them to take their handles
// again (a filer does so for its mounts' sessions, see filerd).
func (n *Namespace) FreeOrphans(ctx context.Context) (int, error) {
	var orphans []Inode
	err := n.st.View(ctx, func(tx store.Tx) error {
		orphans = orphans[:0]
		return tx.Scan([]byte{pfxOrphan}, nil, func(k, _ []byte) (bool, error) {
			if len(k) == 9 {
				orphans = append(orphans, Inode(binary.BigEndian.Uint64(k[1:])))
			}
			return true, nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("meta: scan orphans: %w", err)
	}
	freed := 0
	for _, ino := range orphans {
		if n.openCount(ino) > 0 {
			continue
		}
		if err := n.reap(ctx, ino); err != nil {
			return freed, fmt.Errorf("meta: free orphan %d: %w", ino, err)
		}
		freed++
	}
	return freed, nil
}

// lastLogTs finds the largest timestamp in the log by bisection over
// Scan's start key, so opening does not read the whole log.
func (n *Namespace) lastLogTs(ctx context.Context) (int64, error) {
	var last int64
	err := n.st.View(ctx, func(tx store.Tx) error {
		first := func(from uint64) (uint64, bool, error) {
			var ts uint64
			found := false
			err := tx.Scan([]byte{pfxLog}, logKey(int64(from)), func(k, _ []byte) (bool, error) {
				if len(k) == 9 {
					ts, found = binary.BigEndian.Uint64(k[1:]), true
				}
				return false, nil
			})
			return ts, found, err
		}
		lo, ok, err := first(0)
		if err != nil || !ok {
			return err
		}
		// Invariant: a key exists at lo; none at or above hi.
		hi := uint64(1) << 63
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			ts, ok, err := first(mid)
			if err != nil {
				return err
			}
			if ok {
				lo = ts
			} else {
				hi = mid
			}
		}
		last = int64(lo)
		return nil
	})
	return last, err
}

// Config returns the configuration in use (with defaults filled in).
func (n *Namespace) Config() Config { return n.cfg }

// nextTs hands out a timestamp for a transaction attempt, replacing the
// attempt's previous one (prev, 0 for none), which never commits.
func (n *Namespace) nextTs(prev int64) int64 {
	n.tsMu.Lock()
	defer n.tsMu.Unlock()
	if prev != 0 {
		delete(n.inflight, prev)
	}
	t := n.cfg.Clock()
	if t <= n.lastTs {
		t = n.lastTs + 1
	}
	n.lastTs = t
	n.inflight[t] = struct{}{}
	n.advanceLocked()
	return t
}

// finishTs ends an operation whose last attempt had timestamp ts;
// logged says it committed an event.
func (n *Namespace) finishTs(ts int64, logged bool) {
	if ts == 0 {
		return
	}
	n.tsMu.Lock()
	delete(n.inflight, ts)
	if logged && ts > n.lastEv {
		n.lastEv = ts
	}
	n.advanceLocked()
	n.tsMu.Unlock()
}

// advanceLocked recomputes the watermark: below every timestamp in flight
// and at most the newest committed event, so that timestamps handed out
// after a restart (above the newest logged event) stay above it.
func (n *Namespace) advanceLocked() {
	wm := n.lastEv
	for t := range n.inflight {
		if t-1 < wm {
			wm = t - 1
		}
	}
	if wm > n.wm {
		n.wm = wm
		close(n.changes)
		n.changes = make(chan struct{})
	}
}

// LastEvent returns the timestamp of the newest committed event: every
// change committed before the call is logged at or before it (it may still
// be above the watermark while an older operation is in flight).
func (n *Namespace) LastEvent() int64 {
	n.tsMu.Lock()
	defer n.tsMu.Unlock()
	return n.lastEv
}

// Watermark returns the timestamp up to which the change log is final:
// every event with TsNs <= Watermark() has committed, and no event with
// such a timestamp will commit later.
func (n *Namespace) Watermark() int64 {
	n.tsMu.Lock()
	defer n.tsMu.Unlock()
	return n.wm
}

// Changes returns a channel that is closed when the watermark next
// advances; call it again after each wake-up.
func (n *Namespace) Changes() <-chan struct{} {
	n.tsMu.Lock()
	defer n.tsMu.Unlock()
	return n.changes
}

type sigKey struct{}

// WithSignatures returns a context whose mutations record sigs (the filers
// a replicated change already passed through) before this filer's own
// signature in their events.
func WithSignatures(ctx context.Context, sigs []int32) context.Context {
	return context.WithValue(ctx, sigKey{}, append([]int32(nil), sigs...))
}

func (n *Namespace) signatures(ctx context.Context) []int32 {
	s, _ := ctx.Value(sigKey{}).([]int32)
	out := make([]int32, 0, len(s)+1)
	out = append(out, s...)
	if n.cfg.Signature != 0 {
		out = append(out, n.cfg.Signature)
	}
	return out
}

// update runs fn in one store transaction with a fresh timestamp per
// attempt, flushes the attributes fn changed, and appends fn's event.
func (n *Namespace) update(ctx context.Context, fn func(t *txn) error) error {
	var ts int64
	var dying []Inode
	sigs := n.signatures(ctx)
	var orphaned, hints []Inode
	logged := false
	var last *txn
	var enc []byte
	err := n.st.Update(ctx, func(tx store.Tx) error {
		ts = n.nextTs(ts)
		orphaned, hints, logged, enc = nil, nil, false, nil
		t := &txn{n: n, tx: tx, ts: ts, attrs: make(map[Inode]*cachedAttr, 4), dying: dying}
		last = t
		err := fn(t)
		dying = t.dying
		orphaned = t.orphaned
		hints = t.hints
		if err != nil {
			return err
		}
		if err := t.flush(); err != nil {
			return err
		}
		if t.ev != nil {
			t.ev.TsNs = ts
			t.ev.FreedChunks = t.freed
			t.ev.Signatures = sigs
			enc = encodeEvent(t.ev)
			if err := tx.Set(logKey(ts), enc); err != nil {
				return err
			}
			logged = true
		}
		return nil
	})
	if err == nil && logged {
		n.recent.add(ts, enc) // before the watermark may pass ts
	}
	n.finishTs(ts, err == nil && logged)
	n.undie(dying)
	if err == nil {
		if c := changesFrom(ctx); c != nil && last != nil {
			c.record(last)
		}
		// A handle released between the decision and the commit
		// found no orphan marker yet; free such inodes now.
		for _, ino := range orphaned {
			if n.openCount(ino) == 0 {
				if rerr := n.reap(ctx, ino); rerr != nil {
					n.log.Warn("free open-unlinked inode", "ino", uint64(ino), "err", rerr)
				}
			}
		}
		if n.cfg.FoldHint != nil {
			for _, ino := range hints {
				n.cfg.FoldHint(ino)
			}
		}
	}
	return err
}

// lockDirs locks the stripes of dirs in order and returns the unlock.
func (n *Namespace) lockDirs(dirs ...Inode) func() {
	var idx [2]int
	k := 0
	for _, d := range dirs {
		i := dirStripe(d)
		dup := false
		for _, j := range idx[:k] {
			dup = dup || j == i
		}
		if !dup {
			idx[k] = i
			k++
		}
	}
	if k == 2 && idx[0] > idx[1] {
		idx[0], idx[1] = idx[1], idx[0]
	}
	for _, i := range idx[:k] {
		n.dirLocks[i].Lock()
	}
	return func() {
		for _, i := range idx[:k] {
			n.dirLocks[i].Unlock()
		}
	}
}

// view runs fn over a read-only snapshot.
func (n *Namespace) view(ctx context.Context, fn func(t *txn) error) error {
	return n.st.View(ctx, func(tx store.Tx) error {
		return fn(&txn{n: n, tx: tx, attrs: make(map[Inode]*cachedAttr, 2)})
	})
}

// allocIno returns a fresh inode number, reserving a batch in a small
// transaction of its own when the current batch is used up.
func (n *Namespace) allocIno(ctx context.Context) (Inode, error) {
	n.allocMu.Lock()
	defer n.allocMu.Unlock()
	if n.nextIno >= n.endIno {
		var start uint64
		err := n.st.Update(ctx, func(tx store.Tx) error {
			start = 16 // 1 is the root; a few more are reserved
			v, err := tx.Get(metaKey("nextino"))
			switch {
			case err == nil && len(v) == 8:
				start = binary.BigEndian.Uint64(v)
			case err == nil:
				return fmt.Errorf("inode counter: %w", ErrCorrupt)
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			return tx.Set(metaKey("nextino"), binary.BigEndian.AppendUint64(nil, start+n.cfg.InodeBatch))
		})
		if err != nil {
			return 0, fmt.Errorf("meta: allocate inodes: %w", err)
		}
		n.nextIno, n.endIno = start, start+n.cfg.InodeBatch
	}
	ino := Inode(n.nextIno)
	n.nextIno++
	return ino, nil
}

// freeOrKeep decides, for an inode whose last name goes away in the
// current attempt, whether it is freed now (true) or kept as open-unlinked
// because the filer holds handles on it (false). A freed inode is marked
// dying until the operation returns, so a concurrent Open waits for it.
func (t *txn) freeOrKeep(ino Inode) bool {
	n := t.n
	n.openMu.Lock()
	defer n.openMu.Unlock()
	if n.opens[ino] > 0 {
		return false
	}
	for _, d := range t.dying {
		if d == ino {
			return true
		}
	}
	d := n.dying[ino]
	if d == nil {
		d = &dyingInode{done: make(chan struct{})}
		n.dying[ino] = d
	}
	d.refs++
	t.dying = append(t.dying, ino)
	return true
}

func (n *Namespace) undie(inos []Inode) {
	if len(inos) == 0 {
		return
	}
	n.openMu.Lock()
	defer n.openMu.Unlock()
	for _, ino := range inos {
		d := n.dying[ino]
		if d == nil {
			continue
		}
		d.refs--
		if d.refs == 0 {
			close(d.done)
			delete(n.dying, ino)
		}
	}
}

// openCount reports the filer's handles on ino.
func (n *Namespace) openCount(ino Inode) int {
	n.openMu.Lock()
	defer n.openMu.Unlock()
	return n.opens[ino]
}
