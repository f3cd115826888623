package mount

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// Filer handles. The mount holds one filer handle on each file it has
// open, so that an unlink elsewhere keeps the file's content while it is
// open here. Handles are leased to the mount's lock session (locks.go),
// which makes them last exactly as long as the mount: a mount killed or
// cut off past its lease leaves none behind, and after a filer restart
// the session's replacement takes them back (Reopen) within the filer's
// grace period, before the filer frees the open-unlinked files nobody
// took back (see filerd/handles.go).
//
// Each file remembers the session its handle was taken (or taken back)
// under, and its release names that session: a release that reaches the
// filer after the session ended is a no-op there, and never takes away a
// handle taken under another session. handlesMu orders the taking of
// handles against a replacement: a call holds it for reading from reading
// the session until the mount has recorded the handle (file.filerOpen,
// file.filerLease); a replacement holds it for writing from listing the
// handles to installing the new session, so every handle is either in
// that list or taken under the new session. Closes do not wait for it:
// the replacement gives back what was closed while it took handles back.

// maxHandleAttempts bounds how often a handle call is retried under a
// fresh session.
const maxHandleAttempts = 3

// heldHandle is a filer handle: the inode and the session it is leased to.
type heldHandle struct {
	lease string
	ino   uint64
}

// withHandleSession runs fn, a filer call taking a handle under session
// that records the handle before it returns, under the live session
// (opening one first if there is none). When the filer no longer knows
// the session, it replaces it (taking the mount's handles back) and runs
// fn again.
func (fs *FS) withHandleSession(ctx context.Context, fn func(session string) error) error {
	ls := fs.locks
	sctx := context.WithoutCancel(fs.opCtx(ctx)) // see lockService.do
	for attempt := 1; ; attempt++ {
		session, err := ls.ensure(sctx)
		if err != nil {
			return err
		}
		ls.handlesMu.RLock()
		if ls.current() != session {
			// Replaced since ensure: use the new one.
			ls.handlesMu.RUnlock()
			continue
		}
		err = fn(session)
		ls.handlesMu.RUnlock()
		if err == nil || !client.SessionExpired(err) {
			return err
		}
		if attempt == maxHandleAttempts {
			return fmt.Errorf("%w: the filer kept refusing fresh sessions: %w", syscall.EIO, err)
		}
		if _, err := ls.replace(sctx, session); err != nil {
			return err
		}
	}
}

// filerHandles lists the files the filer holds a handle on for this mount.
func (fs *FS) filerHandles() []*file {
	fs.mu.Lock()
	files := make([]*file, 0, len(fs.files))
	for _, f := range fs.files {
		files = append(files, f)
	}
	fs.mu.Unlock()
	held := files[:0]
	for _, f := range files {
		f.mu.Lock()
		if f.filerOpen {
			held = append(held, f)
		}
		f.mu.Unlock()
	}
	return held
}

// reopenHandles takes the mount's handles back under session, a fresh
// one, with handlesMu held for writing. Files the filer no longer has
// (freed while no session of this mount held them: the lease ran out),
// or could not reopen, are logged; their open descriptors read what the
// mount still has. A filer that does not know Reopen does not lease
// handles: they were never lost.
func (fs *FS) reopenHandles(ctx context.Context, session string) error {
	files := fs.filerHandles()
	if len(files) == 0 {
		return nil
	}
	inodes := make([]uint64, len(files))
	for i, f := range files {
		inodes[i] = f.ino
	}
	resp := &filerpb.ReopenResponse{}
	for len(inodes) > 0 {
		n := min(len(inodes), maxReleaseBatch)
		cctx, cancel := context.WithTimeout(fs.opCtx(ctx), fs.cfg.OpTimeout)
		r, err := fs.api.Reopen(cctx, &filerpb.ReopenRequest{Session: session, Inodes: inodes[:n]})
		cancel()
		if status.Code(err) == codes.Unimplemented {
			fs.log.Info("mount: the filer does not lease file handles (an older filer): nothing to take back")
			break
		}
		if err != nil {
			return fmt.Errorf("take file handles back: %w", err)
		}
		resp.Gone = append(resp.Gone, r.Gone...)
		resp.Failed = append(resp.Failed, r.Failed...)
		inodes = inodes[n:]
	}
	lost := make(map[uint64]bool, len(resp.Gone)+len(resp.Failed))
	for _, ino := range append(resp.Gone, resp.Failed...) {
		lost[ino] = true
	}
	for _, f := range files {
		f.mu.Lock()
		switch {
		case lost[f.ino]:
			if f.filerOpen {
				f.filerOpen, f.filerLease = false, ""
			}
		case f.filerOpen:
			f.filerLease = session
		default:
			// Closed meanwhile, its release sent under the old
			// session: give back the one just taken.
			fs.releaseAsync(session, f.ino)
		}
		f.mu.Unlock()
	}
	switch {
	case len(lost) > 0:
		fs.log.Error("mount: open files lost: the filer freed them while this mount's session was gone (unlinked while open, lease ran out), or could not reopen them",
			"gone", len(resp.Gone), "failed", len(resp.Failed), "held", len(files))
	default:
		fs.log.Info("mount: file handles taken back under a fresh session", "handles", len(files))
	}
	return nil
}

// sendReleases gives handles back, each under the session it was taken
// under, in as few calls as the batch allows.
func (fs *FS) sendReleases(batch []heldHandle) {
	byLease := make(map[string][]uint64)
	var order []string
	for _, h := range batch {
		if _, ok := byLease[h.lease]; !ok {
			order = append(order, h.lease)
		}
		byLease[h.lease] = append(byLease[h.lease], h.ino)
	}
	for _, lease := range order {
		inodes := byLease[lease]
		for len(inodes) > 0 {
			n := min(len(inodes), maxReleaseBatch)
			ctx, cancel := context.WithTimeout(context.Background(), fs.cfg.OpTimeout)
			_, err := fs.api.Release(fs.opCtx(ctx), &filerpb.ReleaseRequest{Inodes: inodes[:n], Lease: lease})
			cancel()
			if err != nil {
				fs.log.Warn("mount: filer release failed", "inodes", n, "err", err)
			}
			inodes = inodes[n:]
		}
	}
}

// handleRetryEvery is how often a mount whose session could not be
// replaced tries again while it holds handles or locks.
const handleRetryEvery = 200 * time.Millisecond
