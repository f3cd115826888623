package filerd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/needle"
)

// gcBatch is how many queued deletions one GC pass takes at a time.
const gcBatch = 256

// gcCallTimeout bounds one blob deletion.
const gcCallTimeout = 30 * time.Second

// wakeGC nudges the GC loop (after an operation that may free chunks).
func (s *Server) wakeGC() {
	select {
	case s.gcWake <- struct{}{}:
	default:
	}
}

// gcLoop runs collectGarbage every GCInterval and when woken, until Close.
func (s *Server) gcLoop() {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.gcWake:
		case <-s.baseCtx.Done():
			return
		}
		if _, _, err := s.collectGarbage(s.baseCtx); err != nil && s.baseCtx.Err() == nil {
			s.log.Warn("chunk gc", "err", err)
		}
	}
}

// collectGarbage deletes the queued chunks from the volume servers and
// acknowledges those that are gone (a blob already missing counts as
// gone). A blob whose deletion fails, or whose volume the master cannot
// locate, stays queued for the next pass, with a log line. A manifest
// chunk's record is done once every blob it lists (but its Keep list) and
// then its own blob are gone. It returns how many records were done and
// how many failed. First, folds begun long ago and never finished (a
// filer that died mid-fold) are abandoned, which queues their blobs.
func (s *Server) collectGarbage(ctx context.Context) (deleted, failed int, err error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	if n, err := s.ns.ExpireFolds(ctx, time.Now().Add(-s.intentMaxAge).UnixNano()); err != nil {
		return 0, 0, fmt.Errorf("expire fold intents: %w", err)
	} else if n > 0 {
		s.log.Info("chunk gc: abandoned unfinished folds", "count", n)
	}
	for {
		pend, err := s.ns.PendingDeletions(ctx, gcBatch)
		if err != nil {
			return deleted, failed, fmt.Errorf("read gc queue: %w", err)
		}
		var done [][]byte
		batchFailed := 0
		for _, p := range pend {
			del := s.deleteBlob
			if p.Chunk.IsManifest {
				del = func(ctx context.Context, fid string) error { return s.deleteManifest(ctx, fid, p.Keep) }
			}
			if err := del(ctx, p.Chunk.FileID); err != nil {
				if ctx.Err() != nil {
					return deleted, failed, ctx.Err()
				}
				batchFailed++
				s.log.Warn("chunk gc: delete failed, will retry", "fid", p.Chunk.FileID, "err", err)
				continue
			}
			done = append(done, p.Key)
		}
		if len(done) > 0 {
			if err := s.ns.AckDeletions(ctx, done); err != nil {
				return deleted, failed + batchFailed, fmt.Errorf("ack %d deletions: %w", len(done), err)
			}
		}
		deleted += len(done)
		failed += batchFailed
		// A full batch with no failure may have more behind it; a batch
		// with failures would only be read again, so wait for next round.
		if len(pend) < gcBatch || batchFailed > 0 {
			return deleted, failed, nil
		}
	}
}

// deleteBlob deletes fid from its volume's replicas. The volume must be
// known to the master first: a lookup failure is not proof that the blob
// is gone (a restarted master may not have heard from its volume servers
// yet), so it is an error; a replica answering 404 is.
func (s *Server) deleteBlob(ctx context.Context, fid string) error {
	ctx, cancel := context.WithTimeout(ctx, gcCallTimeout)
	defer cancel()
	vid, err := volumeOf(fid)
	if err != nil {
		// Such a fid was never written: nothing to delete.
		s.log.Warn("chunk gc: dropping unparsable file id", "fid", fid, "err", err)
		return nil
	}
	if _, err := s.cluster.Master.Lookup(ctx, vid); err != nil {
		return fmt.Errorf("locate volume %d: %w", vid, err)
	}
	err = s.cluster.Delete(ctx, fid)
	if err == nil || errors.Is(err, client.ErrNotFound) {
		return nil
	}
	return err
}

// deleteManifest deletes the blobs manifest fid lists, but those in keep,
// then the manifest blob itself: a manifest blob that is gone means its
// chunks went before it.
func (s *Server) deleteManifest(ctx context.Context, fid string, keep []string) error {
	inner, err := s.manifests.ReadManifest(ctx, fid)
	switch {
	case errors.Is(err, client.ErrNotFound):
		// Deleted by an earlier pass that died before its ack.
	case errors.Is(err, meta.ErrCorrupt):
		// Nothing to learn from it; its chunks, if any, are lost to GC.
		s.log.Error("chunk gc: unreadable manifest; the chunks it lists may leak", "manifest", fid, "err", err)
	case err != nil:
		return fmt.Errorf("read manifest %s: %w", fid, err)
	default:
		spare := make(map[string]bool, len(keep)+len(inner))
		for _, k := range keep {
			spare[k] = true
		}
		for _, c := range inner {
			if spare[c.FileID] {
				continue
			}
			spare[c.FileID] = true // each blob once
			if err := s.deleteBlob(ctx, c.FileID); err != nil {
				return fmt.Errorf("chunk %s of manifest %s: %w", c.FileID, fid, err)
			}
		}
	}
	if err := s.deleteBlob(ctx, fid); err != nil {
		return err
	}
	s.manifests.forget(fid)
	return nil
}

// volumeOf returns the volume id of a file id.
func volumeOf(fid string) (uint32, error) {
	f, err := needle.ParseFileID(fid)
	if err != nil {
		return 0, err
	}
	return f.VolumeID, nil
}
