package filersync

// Bootstrap: when the source's change log no longer reaches back to where
// a direction must start (the beginning of time, -fromTsMs, or a
// checkpoint older than the source's LogRetention), the events in between
// are gone, so the source's tree itself is copied instead:
//
//  1. note the source's log position (its watermark, as the caught_up
//     marker of a subscription reports it);
//  2. walk the source's tree under Side.Path, excludes applied, and make
//     each entry on the target match it (upsert: idempotent);
//  3. save the noted position as the checkpoint, and follow from it.
//
// Changes made on the source during the walk have timestamps after the
// noted position, so they are applied again when following, on top of
// what the walk copied (some already copied, some not): harmless, since
// applying an event is idempotent. The checkpoint is saved only once the
// walk has finished, so a sync stopped mid-walk walks again at its next
// start. Entries the target has and the source has not are left alone:
// a walk cannot tell a delete lost from the log from the target's own
// new entry (in active-active the other direction brings those back).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
)

// bootstrap copies the source's tree onto the target and saves the
// checkpoint; it returns the source position to follow from.
func (r *replicator) bootstrap(ctx context.Context) (int64, error) {
	noted, err := r.sourcePosition(ctx)
	if err != nil {
		return 0, fmt.Errorf("bootstrap: %w", err)
	}
	r.log.Info("filer.sync: bootstrap: walking the source's tree", "from", r.src.addr, "to", r.dst.addr,
		"path", r.srcRoot, "target_path", r.dstRoot, "follow_from_ns", noted)
	start := time.Now()
	w := newTreeWalker(r.src.api, r.excluded, r.cfg.Concurrency, r.walkEntry)
	r.stats.walking.Store(true)
	st, err := w.walk(ctx, r.srcRoot, r.dstRoot)
	r.stats.walking.Store(false)
	if err != nil {
		return 0, fmt.Errorf("bootstrap: walk %s: %w", r.srcRoot, err)
	}
	el := time.Since(start)
	r.log.Info("filer.sync: bootstrap: tree copied; following the change log from the noted position",
		"dirs", st.dirs, "files", st.files, "others", st.others, "bytes", st.bytes, "elapsed", el.Round(time.Millisecond),
		"files_per_s", int64(float64(st.files)/el.Seconds()), "mb_per_s", fmt.Sprintf("%.1f", float64(st.bytes)/1e6/el.Seconds()),
		"follow_from_ns", noted)
	// Saved with a context of its own, so a walk that ended just as ctx
	// did still counts.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.saveCheckpoint(sctx, noted); err != nil {
		// Following saves it again within CheckpointInterval.
		r.log.Warn("filer.sync: bootstrap: checkpoint after the walk", "err", err)
	}
	return noted, nil
}

// bootstrapReason says, for the log, why a direction falls back to a walk
// when its change log subscription from since was refused as trimmed.
func (r *replicator) bootstrapReason(since int64, fromCheckpoint bool) string {
	switch {
	case fromCheckpoint:
		return "the checkpoint is older than the source's change log reaches back (stopped longer than its retention?): events were lost; walking the source's tree to repair the target"
	case since == 0:
		return "the source's change log no longer reaches back to its beginning (trimmed to its retention); copying the source's tree instead"
	default:
		return "the source's change log no longer reaches back to -fromTsMs; copying the source's tree instead"
	}
}

// sourcePosition notes where the source's change log is now: the
// caught_up marker of a subscription from this host's present time
// carries the source's watermark (every event at or before it logged, none
// later), whichever of the two clocks is ahead; a source clock ahead of
// ours only makes the probe read the events logged in between.
func (r *replicator) sourcePosition(ctx context.Context) (int64, error) {
	ts, err := r.caughtUpAt(ctx, time.Now().UnixNano())
	if err != nil {
		return 0, fmt.Errorf("note the position of %s's change log: %w", r.src.addr, err)
	}
	return ts, nil
}

// caughtUpAt subscribes from since and returns the timestamp the
// caught_up marker carries: everything logged before the subscription
// began, at least since.
func (r *replicator) caughtUpAt(ctx context.Context, since int64) (int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := r.srcRoot
	if prefix == "/" {
		prefix = ""
	}
	sub, err := r.src.api.SubscribeMetadata(sctx, &filerpb.SubscribeMetadataRequest{SinceNs: since, PathPrefix: prefix,
		ClientSignature: r.dst.sig, ClientName: "filer.sync " + r.name + " position", MarkCaughtUp: true})
	if err != nil {
		return 0, err
	}
	for {
		ev, err := sub.Recv()
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%s ended the change log stream before its caught_up marker", r.src.addr)
		}
		if err != nil {
			return 0, err
		}
		if ev.CaughtUp {
			return ev.TsNs, nil
		}
	}
}

// walkEntry makes the target's dst match the source's entry at src, whose
// attributes a listing gave, retrying failures until ctx ends. The
// changes carry the source's signature, so that in active-active the
// other direction does not send them back. errVanished: the source entry
// is gone (its delete or rename is in the log after the noted position).
func (r *replicator) walkEntry(ctx context.Context, src, dst string, a *filerpb.Attr) error {
	tctx := withSignatures(ctx, []int32{r.src.sig})
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		e, err := r.sourceState(ctx, src, a)
		if notFound(err) {
			return errVanished
		}
		if err == nil {
			err = r.upsert(tctx, src, dst, e)
			if errors.Is(err, errSuperseded) {
				return errVanished
			}
		}
		if err == nil {
			r.stats.walked.Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.stats.retries.Add(1)
		r.log.Warn("filer.sync: bootstrap: copying an entry failed; retrying", "path", src, "target_path", dst,
			"attempt", attempt, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.RetryMax)
	}
}

// errVanished: an entry listed by the walk is no longer on the source.
var errVanished = errors.New("vanished from the source during the walk")

// treeWalker walks the source's tree and hands each entry to visit,
// a directory before anything below it, up to slots entries at once; a
// walker that finds every slot taken visits the entry itself, depth
// first, so goroutines stay bounded by slots and memory by one page of
// names per directory being listed. The names of one hard-linked inode
// are visited one at a time, so the second finds the first's copy and
// links to it.
type treeWalker struct {
	src     filerpb.FilerClient
	exclude func(p string) bool
	visit   func(ctx context.Context, src, dst string, a *filerpb.Attr) error
	slots   chan struct{}

	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
	cancel  context.CancelFunc

	linksMu sync.Mutex
	links   map[uint64]*inodeLock

	dirs, files, others, bytes atomic.Int64
}

// inodeLock serialises the visits of one hard-linked inode's names.
type inodeLock struct {
	mu   sync.Mutex
	refs int
}

// walkStats counts what a walk visited.
type walkStats struct {
	dirs, files, others, bytes int64
}

// walkPage is the names asked for per ReadDir call.
const walkPage = 1024

func newTreeWalker(src filerpb.FilerClient, exclude func(string) bool, slots int,
	visit func(ctx context.Context, src, dst string, a *filerpb.Attr) error) *treeWalker {
	return &treeWalker{src: src, exclude: exclude, visit: visit, slots: make(chan struct{}, max(slots, 1)),
		links: make(map[uint64]*inodeLock)}
}

// walk visits srcRoot (mapped to dstRoot) and everything below it; every
// goroutine it started has returned when it does. A source root that does
// not exist is an empty tree.
func (w *treeWalker) walk(ctx context.Context, srcRoot, dstRoot string) (walkStats, error) {
	ctx, w.cancel = context.WithCancel(ctx)
	defer w.cancel()
	root, err := w.lookup(ctx, srcRoot)
	switch {
	case notFound(err):
	case err != nil:
		w.fail(err)
	default:
		w.fail(w.entry(ctx, srcRoot, dstRoot, root))
	}
	w.wg.Wait()
	if w.err == nil && ctx.Err() != nil {
		w.err = ctx.Err()
	}
	return walkStats{dirs: w.dirs.Load(), files: w.files.Load(), others: w.others.Load(), bytes: w.bytes.Load()}, w.err
}

func (w *treeWalker) lookup(ctx context.Context, p string) (*filerpb.Attr, error) {
	a, err := w.src.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: rootInode})
	if err != nil {
		return nil, err
	}
	at := a.Attr
	for _, name := range splitPath(p) {
		r, err := w.src.Lookup(ctx, &filerpb.LookupRequest{Parent: at.Inode, Name: name})
		if err != nil {
			return nil, err
		}
		at = r.Attr
	}
	return at, nil
}

func splitPath(p string) []string {
	var out []string
	for p = path.Clean(p); p != "/" && p != "."; p = path.Dir(p) {
		out = append([]string{path.Base(p)}, out...)
	}
	return out
}

// fail records the walk's first error and stops it.
func (w *treeWalker) fail(err error) {
	if err == nil {
		return
	}
	w.errOnce.Do(func() {
		w.err = err
		w.cancel()
	})
}

// spawn runs fn in a goroutine of its own if a slot is free, else here.
func (w *treeWalker) spawn(ctx context.Context, fn func(ctx context.Context) error) {
	select {
	case w.slots <- struct{}{}:
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer func() { <-w.slots }()
			w.fail(fn(ctx))
		}()
	default:
		w.fail(fn(ctx))
	}
}

// entry visits one entry and, for a directory, then lists it.
func (w *treeWalker) entry(ctx context.Context, src, dst string, a *filerpb.Attr) error {
	if ctx.Err() != nil {
		return nil // the walk is stopping; its error is recorded
	}
	typ := a.Mode & syscall.S_IFMT
	if typ == syscall.S_IFREG && a.Nlink > 1 {
		unlock := w.lockInode(a.Inode)
		defer unlock()
	}
	err := w.visit(ctx, src, dst, a)
	if errors.Is(err, errVanished) {
		return nil
	}
	if err != nil {
		return err
	}
	switch typ {
	case syscall.S_IFDIR:
		w.dirs.Add(1)
		return w.list(ctx, src, dst, a.Inode)
	case syscall.S_IFREG:
		w.files.Add(1)
		w.bytes.Add(int64(a.Size))
	default:
		w.others.Add(1)
	}
	return nil
}

// list visits the entries of source directory ino, page by page.
func (w *treeWalker) list(ctx context.Context, src, dst string, ino uint64) error {
	after := ""
	for {
		page, err := w.src.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: ino, After: after, Limit: walkPage, WithAttrs: true})
		if notFound(err) {
			return nil // gone since it was visited: its event follows
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", src, err)
		}
		for _, c := range page.Entries {
			after = c.Name
			cs := path.Join(src, c.Name)
			if w.exclude(cs) || c.Attr == nil {
				continue
			}
			cd, ca := path.Join(dst, c.Name), c.Attr
			w.spawn(ctx, func(ctx context.Context) error { return w.entry(ctx, cs, cd, ca) })
		}
		if page.Eof || len(page.Entries) == 0 || ctx.Err() != nil {
			return nil
		}
	}
}

// lockInode takes the lock of a hard-linked inode; the returned function
// releases it.
func (w *treeWalker) lockInode(ino uint64) (unlock func()) {
	w.linksMu.Lock()
	l := w.links[ino]
	if l == nil {
		l = &inodeLock{}
		w.links[ino] = l
	}
	l.refs++
	w.linksMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		w.linksMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(w.links, ino)
		}
		w.linksMu.Unlock()
	}
}
