package filersync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// replicator keeps one direction: the source's tree under srcRoot into the
// target's under dstRoot.
type replicator struct {
	name     string // "a->b"
	src, dst *endpoint
	srcSide  Side
	srcRoot  string
	dstRoot  string
	cfg      *Config
	log      *slog.Logger
	copier   *copier
	stats    *dirStats
	// inodes maps source inodes of regular files lately written to the
	// target inodes holding them, for hard links made later.
	inodes *lru.Cache[uint64, uint64]
}

// recentInodes bounds replicator.inodes.
const recentInodes = 1 << 16

// dirStats are one direction's counters, read by Stats and the metrics.
type dirStats struct {
	applied     atomic.Int64 // events applied
	retries     atomic.Int64 // failed attempts, retried
	chunks      atomic.Int64 // chunks copied
	bytes       atomic.Int64 // file bytes committed with copied chunks
	lastApplied atomic.Int64 // ts of the last event applied (ns)
	checkpoint  atomic.Int64 // ts saved as the checkpoint (ns)
	pending     atomic.Int64 // events in the scheduler
	walking     atomic.Bool  // a bootstrap walk is under way
	walked      atomic.Int64 // entries a bootstrap walk made match the source
}

func newReplicator(name string, src, dst *endpoint, srcSide, dstSide Side, cfg *Config, log *slog.Logger) *replicator {
	st := &dirStats{}
	inodes, _ := lru.New[uint64, uint64](recentInodes) // a positive size cannot fail
	return &replicator{inodes: inodes, name: name, src: src, dst: dst, srcSide: srcSide, srcRoot: srcSide.Path, dstRoot: dstSide.Path,
		cfg: cfg, log: log.With("direction", name), stats: st,
		copier: &copier{src: src, dst: dst, sem: make(chan struct{}, cfg.ChunkConcurrency), stats: st}}
}

// mapPath maps a source path onto the target, or false when the path is
// outside the tree kept in step or excluded.
func (r *replicator) mapPath(p string) (string, bool) {
	if p == "" || !under(p, r.srcRoot) || r.excluded(p) {
		return "", false
	}
	return rebase(p, r.srcRoot, r.dstRoot), true
}

func (r *replicator) excluded(p string) bool {
	for _, x := range r.srcSide.Exclude {
		if under(p, x) {
			return true
		}
	}
	return false
}

// checkpointKey names this direction's checkpoint in the target's KV
// store: the source's signature and path, and where they map to.
func (r *replicator) checkpointKey() []byte {
	return fmt.Appendf(nil, "filer.sync.checkpoint.%d:%s>%s", r.src.sig, r.srcRoot, r.dstRoot)
}

func (r *replicator) loadCheckpoint(ctx context.Context) (int64, bool, error) {
	kv, err := r.dst.api.KvGet(ctx, &filerpb.KvGetRequest{Key: r.checkpointKey()})
	if err != nil {
		return 0, false, fmt.Errorf("read checkpoint from %s: %w", r.dst.addr, err)
	}
	if !kv.Found {
		return 0, false, nil
	}
	ts, err := strconv.ParseInt(string(kv.Value), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("checkpoint %q in %s: %w", kv.Value, r.dst.addr, err)
	}
	return ts, true, nil
}

func (r *replicator) saveCheckpoint(ctx context.Context, ts int64) error {
	if ts <= r.stats.checkpoint.Load() {
		return nil
	}
	_, err := r.dst.api.KvPut(ctx, &filerpb.KvPutRequest{Key: r.checkpointKey(), Value: strconv.AppendInt(nil, ts, 10)})
	if err != nil {
		return fmt.Errorf("save checkpoint to %s: %w", r.dst.addr, err)
	}
	r.stats.checkpoint.Store(ts)
	return nil
}

// run follows the source's change log until ctx ends, resubscribing from
// the checkpoint after any failure, with back-off.
func (r *replicator) run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	var since int64
	loaded := false
	fromCheckpoint := false // since is a checkpoint (not the start asked for)
	for ctx.Err() == nil {
		if !loaded {
			ts, found, err := r.loadCheckpoint(ctx)
			if err == nil {
				loaded = true
				since = r.srcSide.FromTsNs
				if found {
					since = ts
				}
				fromCheckpoint = found
				r.stats.checkpoint.Store(since)
				r.log.Info("filer.sync: following", "from", r.src.addr, "to", r.dst.addr, "since_ns", since,
					"checkpoint", found, "path", r.srcRoot, "target_path", r.dstRoot)
			} else if ctx.Err() == nil {
				r.log.Warn("filer.sync: cannot read the checkpoint; retrying", "err", err, "retry_in", backoff)
			}
		}
		if loaded {
			start := time.Now()
			last, err := r.follow(ctx, since)
			fromCheckpoint = fromCheckpoint || last != since
			since = last
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, client.ErrPrecondition) {
				// The log no longer holds since: copy the tree instead.
				r.log.Warn("filer.sync: "+r.bootstrapReason(since, fromCheckpoint), "from", r.src.addr, "to", r.dst.addr,
					"since_ns", since, "err", err)
				noted, berr := r.bootstrap(ctx)
				if berr == nil {
					since, fromCheckpoint, backoff = noted, true, 100*time.Millisecond
					continue
				}
				if ctx.Err() != nil {
					break
				}
				err = berr
			}
			if time.Since(start) > time.Minute {
				backoff = 100 * time.Millisecond
			}
			r.log.Warn("filer.sync: change log stream ended; resubscribing from the checkpoint", "err", err,
				"since_ns", since, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.RetryMax)
	}
	return nil
}

// follow subscribes from since and applies events until the stream or ctx
// ends; it returns the watermark reached (everything up to it applied),
// having saved it as the checkpoint.
func (r *replicator) follow(ctx context.Context, since int64) (int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sched := newScheduler(r.cfg.Concurrency, since)
	// Checkpoints go out while events apply, and once more at the end.
	ckptDone := make(chan struct{})
	go func() {
		defer close(ckptDone)
		t := time.NewTicker(r.cfg.CheckpointInterval)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			wm, pending := sched.mark()
			r.stats.pending.Store(int64(pending))
			if err := r.saveCheckpoint(sctx, wm); err != nil && sctx.Err() == nil {
				r.log.Warn("filer.sync: checkpoint", "err", err)
			}
		}
	}()
	err := r.stream(sctx, since, sched)
	if ctx.Err() == nil {
		// The stream broke: let what was submitted finish first, so
		// the checkpoint is exact before resubscribing.
		sched.wait()
	}
	cancel()
	sched.wait()
	<-ckptDone
	wm, pending := sched.mark()
	r.stats.pending.Store(int64(pending))
	// Saved with a context of its own: ctx may be what ended.
	sctx2, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel2()
	if serr := r.saveCheckpoint(sctx2, wm); serr != nil {
		r.log.Warn("filer.sync: final checkpoint", "err", serr)
	}
	return wm, err
}

// stream reads the subscription and hands each event to the scheduler.
func (r *replicator) stream(ctx context.Context, since int64, sched *scheduler) error {
	prefix := r.srcRoot
	if prefix == "/" {
		prefix = ""
	}
	sub, err := r.src.api.SubscribeMetadata(ctx, &filerpb.SubscribeMetadataRequest{SinceNs: since, PathPrefix: prefix,
		ClientSignature: r.dst.sig, ClientName: "filer.sync " + r.name})
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", r.src.addr, err)
	}
	for {
		ev, err := sub.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%s ended the change log stream", r.src.addr)
			}
			if errors.Is(err, client.ErrPrecondition) {
				return fmt.Errorf("change log of %s no longer holds %d: %w", r.src.addr, since, err)
			}
			return err
		}
		if ev.CaughtUp || ev.Progress {
			continue // markers, not changes (asked for by others of this signature)
		}
		if err := sched.submit(ctx, ev.TsNs, eventPaths(ev), func(ctx context.Context) error {
			return r.applyRetrying(ctx, ev)
		}); err != nil {
			return err
		}
	}
}

// eventPaths are the source paths an event touches, and for a regular
// file a key of its inode, so that the names of one hard-linked file
// (made concurrently, say `echo > a; ln a b`) apply in order and the
// link finds the first name's copy.
func eventPaths(ev *filerpb.MetadataEvent) []string {
	var ps []string
	for _, p := range []string{ev.OldPath, ev.NewPath} {
		if p != "" {
			ps = append(ps, p)
		}
	}
	for _, e := range []*filerpb.EntryState{ev.OldEntry, ev.NewEntry} {
		if a := e.GetAttr(); a != nil && a.Mode&syscall.S_IFMT == syscall.S_IFREG {
			// Not a path: no path starts with a NUL, nor lies below it.
			ps = append(ps, "\x00inode/"+strconv.FormatUint(a.Inode, 10))
		}
	}
	return ps
}

// applyRetrying applies ev until it succeeds or ctx ends (the only error
// it returns); failures are logged and retried with back-off.
func (r *replicator) applyRetrying(ctx context.Context, ev *filerpb.MetadataEvent) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.apply(ctx, ev)
		if errors.Is(err, errSuperseded) {
			r.log.Debug("filer.sync: event superseded on the source; skipped", "ts_ns", ev.TsNs, "path", ev.NewPath)
			err = nil
		}
		if err == nil {
			r.stats.applied.Add(1)
			r.stats.lastApplied.Store(ev.TsNs)
			if r.srcSide.Debug {
				r.log.Info("filer.sync: applied", "kind", ev.Kind.String(), "ts_ns", ev.TsNs, "old_path", ev.OldPath,
					"new_path", ev.NewPath, "signatures", ev.Signatures)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.stats.retries.Add(1)
		r.log.Warn("filer.sync: applying an event failed; retrying", "kind", ev.Kind.String(), "ts_ns", ev.TsNs,
			"old_path", ev.OldPath, "new_path", ev.NewPath, "attempt", attempt, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.RetryMax)
	}
}
