package filerd

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

// Manifest chunks (see filerd/meta/manifest.go for the rules and
// api/filerpb/filer.proto for what clients see). This file owns the blob
// format, the cache of manifest blobs, and the folder: the loop that
// folds the chunks of files meta reports as too long into manifest blobs.

// manifestVersion is the ChunkManifest version this filer writes and reads.
const manifestVersion = 1

// manifestMime is the content type manifest blobs are stored with.
const manifestMime = "application/x-kelp-chunk-manifest"

// foldTimeout bounds one fold: plan, assign, upload and commit.
const foldTimeout = time.Minute

// foldIntentMaxAge is how old a fold intent gets before the GC treats its
// fold as dead (a crashed filer) and deletes its blob; far above
// foldTimeout, so a live fold is never raced (and if it were, the intent
// key makes the fold or the expiry fail, never both succeed).
const foldIntentMaxAge = 10 * time.Minute

// foldQueueMax bounds the files waiting for a fold; a hint beyond it is
// dropped (the file's next commit hints again).
const foldQueueMax = 4096

// encodeManifest returns the blob of a manifest listing cs: the protobuf
// wire form of filerpb.ChunkManifest, version 1.
func encodeManifest(cs []meta.Chunk) ([]byte, error) {
	m := &filerpb.ChunkManifest{Version: manifestVersion, Chunks: chunksToPB(cs)}
	return proto.Marshal(m)
}

// decodeManifest reads a manifest blob; anything but a valid version 1
// manifest of data chunks is meta.ErrCorrupt.
func decodeManifest(b []byte) ([]meta.Chunk, error) {
	var m filerpb.ChunkManifest
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %v: %w", err, meta.ErrCorrupt)
	}
	if m.Version != manifestVersion {
		return nil, fmt.Errorf("manifest version %d: %w", m.Version, meta.ErrCorrupt)
	}
	cs := make([]meta.Chunk, 0, len(m.Chunks))
	for _, c := range m.Chunks {
		cs = append(cs, chunkFromPB(c))
	}
	if err := meta.CheckManifest(cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// manifestCache reads manifest blobs through the cluster and keeps the
// most recently used ones, up to max listed chunks in total. Manifest
// blobs are immutable, so an entry never goes stale; concurrent reads of
// one blob share one fetch. Safe for concurrent use.
type manifestCache struct {
	fetch func(ctx context.Context, fid string) ([]byte, error)
	max   int

	mu      sync.Mutex
	lru     *list.List // of *cacheEntry, most recent first
	byFid   map[string]*list.Element
	size    int // chunks held
	loading map[string]*loadCall
}

type cacheEntry struct {
	fid    string
	chunks []meta.Chunk
}

type loadCall struct {
	done   chan struct{}
	chunks []meta.Chunk
	err    error
	// forgotten: the manifest was deleted while this load read it (under
	// mu): its result is not cached.
	forgotten bool
}

var _ meta.ManifestReader = (*manifestCache)(nil)

func newManifestCache(max int, fetch func(ctx context.Context, fid string) ([]byte, error)) *manifestCache {
	return &manifestCache{fetch: fetch, max: max, lru: list.New(), byFid: map[string]*list.Element{},
		loading: map[string]*loadCall{}}
}

// ReadManifest implements meta.ManifestReader; callers must not modify
// the returned slice.
func (c *manifestCache) ReadManifest(ctx context.Context, fid string) ([]meta.Chunk, error) {
	c.mu.Lock()
	if e, ok := c.byFid[fid]; ok {
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		return e.Value.(*cacheEntry).chunks, nil
	}
	if l, ok := c.loading[fid]; ok {
		c.mu.Unlock()
		select {
		case <-l.done:
			return l.chunks, l.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l := &loadCall{done: make(chan struct{})}
	c.loading[fid] = l
	c.mu.Unlock()

	b, err := c.fetch(ctx, fid)
	if err == nil {
		l.chunks, err = decodeManifest(b)
		if err != nil {
			err = fmt.Errorf("blob %s: %w", fid, err)
		}
	}
	l.err = err
	c.mu.Lock()
	delete(c.loading, fid)
	if err == nil && !l.forgotten {
		c.addLocked(fid, l.chunks)
	}
	c.mu.Unlock()
	close(l.done)
	return l.chunks, l.err
}

// add caches the chunks of manifest fid (the folder knows them already).
func (c *manifestCache) add(fid string, chunks []meta.Chunk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byFid[fid]; !ok {
		c.addLocked(fid, chunks)
	}
}

func (c *manifestCache) addLocked(fid string, chunks []meta.Chunk) {
	if len(chunks) > c.max {
		return
	}
	c.byFid[fid] = c.lru.PushFront(&cacheEntry{fid: fid, chunks: chunks})
	c.size += len(chunks)
	for c.size > c.max {
		e := c.lru.Back()
		c.removeLocked(e)
	}
}

func (c *manifestCache) removeLocked(e *list.Element) {
	ce := e.Value.(*cacheEntry)
	c.lru.Remove(e)
	delete(c.byFid, ce.fid)
	c.size -= len(ce.chunks)
}

// forget drops manifest fid (deleted by the GC), and keeps a load of it
// in flight, which read the blob before it went, from caching it again.
func (c *manifestCache) forget(fid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byFid[fid]; ok {
		c.removeLocked(e)
	}
	if l, ok := c.loading[fid]; ok {
		l.forgotten = true
	}
}

// len returns the manifests and chunks held.
func (c *manifestCache) len() (manifests, chunks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.size
}

// fetchManifest reads a manifest blob from the cluster. The volume must
// be known to the master: a failed lookup is an error, never "not found".
func (s *Server) fetchManifest(ctx context.Context, fid string) ([]byte, error) {
	vid, err := volumeOf(fid)
	if err != nil {
		return nil, fmt.Errorf("manifest %q: %v: %w", fid, err, meta.ErrCorrupt)
	}
	if _, err := s.cluster.Master.Lookup(ctx, vid); err != nil {
		return nil, fmt.Errorf("locate volume %d of manifest %s: %w", vid, fid, errUnavailable(err))
	}
	return s.cluster.Read(ctx, fid)
}

// errUnavailable turns a lookup's "not found" into "unavailable": the
// master not knowing a volume yet is no proof that a blob is gone.
func errUnavailable(err error) error {
	if errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("%w: %v", client.ErrUnavailable, err)
	}
	return err
}

// content returns a regular file's attributes and content with its
// manifest chunks expanded: what readers see.
func (s *Server) content(ctx context.Context, ino meta.Inode) (meta.Content, error) {
	return s.contentSince(ctx, ino, 0)
}

// contentSince is content for a caller holding generation known (see
// meta.ContentSince): an unchanged file's manifests are not read.
func (s *Server) contentSince(ctx context.Context, ino meta.Inode, known uint64) (meta.Content, error) {
	c, err := s.ns.ContentSince(ctx, ino, known)
	if err != nil || c.Unchanged {
		return c, err
	}
	if c.Chunks, err = meta.ExpandChunks(ctx, c.Chunks, s.manifests); err != nil {
		return meta.Content{}, fmt.Errorf("inode %d: %w", ino, err)
	}
	return c, nil
}

// hintFold queues ino for the folder (meta's FoldHint; never blocks).
func (s *Server) hintFold(ino meta.Inode) {
	s.foldMu.Lock()
	if len(s.foldPending) < foldQueueMax {
		s.foldPending[ino] = struct{}{}
	}
	s.foldMu.Unlock()
	select {
	case s.foldWake <- struct{}{}:
	default:
	}
}

// foldLoop folds the files hinted at, until Close.
func (s *Server) foldLoop() {
	for {
		select {
		case <-s.foldWake:
		case <-s.baseCtx.Done():
			return
		}
		s.foldMu.Lock()
		inos := make([]meta.Inode, 0, len(s.foldPending))
		for ino := range s.foldPending {
			inos = append(inos, ino)
		}
		clear(s.foldPending)
		s.foldMu.Unlock()
		for _, ino := range inos {
			if s.baseCtx.Err() != nil {
				return
			}
			if _, err := s.foldFile(s.baseCtx, ino); err != nil && s.baseCtx.Err() == nil {
				s.log.Warn("fold chunks into a manifest", "ino", uint64(ino), "err", err)
			}
		}
	}
}

// foldFile folds ino's chunks until it has no more than ManifestThreshold
// data chunks (or no run can be folded); it returns the folds made.
func (s *Server) foldFile(ctx context.Context, ino meta.Inode) (int, error) {
	n := 0
	for {
		ok, err := s.foldOnce(ctx, ino, s.cfg.ManifestThreshold, s.cfg.ManifestBatch)
		if err != nil || !ok {
			return n, err
		}
		n++
	}
}

// foldOnce folds the next run of ino's chunks (batch of them when it has
// more than th data chunks), if there is one: it plans
// the run, records the intent (BeginFold), writes the manifest blob and
// swaps the run for the manifest chunk. A fold that fails after the
// intent is abandoned (its blob queued for deletion); one that lost a race
// with a write reports (false, nil): the file's next commit hints again.
func (s *Server) foldOnce(ctx context.Context, ino meta.Inode, th, batch int) (bool, error) {
	if th <= 0 {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, foldTimeout)
	defer cancel()
	run, err := s.ns.PlanFold(ctx, ino, th, batch)
	if err != nil || run == nil {
		if errors.Is(err, meta.ErrNotFound) || errors.Is(err, meta.ErrIsDir) || errors.Is(err, meta.ErrInvalid) {
			return false, nil // gone, or no longer a regular file
		}
		return false, err
	}
	blob, err := encodeManifest(run)
	if err != nil {
		return false, fmt.Errorf("encode manifest: %w", err)
	}
	a, err := s.cluster.Master.Assign(ctx, client.AssignRequest{Replication: s.cfg.DefaultReplication, Collection: s.cfg.Collection})
	if err != nil {
		return false, fmt.Errorf("assign a manifest blob: %w", err)
	}
	fid := a.FileID.String()
	if err := s.ns.BeginFold(ctx, fid); err != nil {
		// An ambiguous failure may have left the intent: abandoning
		// it costs nothing, and the blob was not written yet.
		s.abandonFold(ctx, fid)
		return false, err
	}
	if _, err := s.cluster.Blobs.Upload(ctx, a.Location.URL, fid, blob, client.UploadOptions{Mime: manifestMime}); err != nil {
		s.cluster.Master.Invalidate(a.FileID.VolumeID)
		s.abandonFold(ctx, fid)
		return false, fmt.Errorf("write manifest %s: %w", fid, err)
	}
	if err := s.ns.Fold(ctx, ino, run, meta.ManifestChunk(fid, run)); err != nil {
		s.abandonFold(ctx, fid)
		if errors.Is(err, meta.ErrFoldConflict) {
			s.log.Debug("fold lost a race; the next commit retries", "ino", uint64(ino), "err", err)
			return false, nil
		}
		return false, err
	}
	s.manifests.add(fid, run)
	s.log.Debug("folded chunks into a manifest", "ino", uint64(ino), "chunks", len(run), "manifest", fid)
	return true, nil
}

// abandonFold queues the blob of a fold that did not commit for deletion.
// If even that fails, the intent stays and expires (ExpireFolds).
func (s *Server) abandonFold(ctx context.Context, fid string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.ns.AbandonFold(ctx, fid); err != nil {
		s.log.Warn("abandon fold; its intent will expire", "manifest", fid, "err", err)
		return
	}
	s.wakeGC()
}
