package mount

import (
	"context"
	"fmt"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// Filer handles. The mount holds one filer handle on each file it has
// open, so that an unlink elsewhere keeps the file's content while it is
// open here. Handles are taken under the mount's lock session (locks.go),
// which makes them last exactly as long as the mount: a mount killed or
// cut off past its lease leaves none behind, and after a filer restart
// the session's replacement takes them back (Reopen) within the filer's
// grace period, before the filer frees the open-unlinked files nobody
// took back (see filerd/handles.go).
//
// handlesMu orders handle calls against a replacement: a call holds it
// for reading from reading the session until the mount has recorded the
// result (file.filerOpen); a replacement holds it for writing from taking
// the list of handles to installing the new session, so every handle is
// either in that list or taken, or given back, under the new session.

// maxHandleAttempts bounds how often a handle call is retried under a
// fresh session.
const maxHandleAttempts = 3

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
		if err == nil || !client.SessionExpired(err) || attempt == maxHandleAttempts {
			return err
		}
		if _, err := ls.replace(sctx, session); err != nil {
			return err
		}
	}
}

// filerHandles lists the files the filer holds a handle on for this mount.
func (fs *FS) filerHandles() []uint64 {
	fs.mu.Lock()
	files := make([]*file, 0, len(fs.files))
	for _, f := range fs.files {
		files = append(files, f)
	}
	fs.mu.Unlock()
	var inodes []uint64
	for _, f := range files {
		f.mu.Lock()
		if f.filerOpen {
			inodes = append(inodes, f.ino)
		}
		f.mu.Unlock()
	}
	return inodes
}

// reopenHandles takes the mount's handles back under session, a fresh
// one, with handlesMu held for writing. Files the filer no longer has
// (freed while no session of this mount held them: the lease ran out)
// are logged; their open descriptors read what the mount still has.
func (fs *FS) reopenHandles(ctx context.Context, session string) error {
	inodes := fs.filerHandles()
	if len(inodes) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(fs.opCtx(ctx), fs.cfg.OpTimeout)
	defer cancel()
	resp, err := fs.api.Reopen(cctx, &filerpb.ReopenRequest{Session: session, Inodes: inodes})
	if err != nil {
		return fmt.Errorf("take file handles back: %w", err)
	}
	if len(resp.Gone) > 0 {
		fs.log.Error("mount: open files lost: the filer freed them while this mount's session was gone (unlinked while open, lease ran out)",
			"lost", len(resp.Gone), "held", len(inodes))
		fs.mu.Lock()
		for _, ino := range resp.Gone {
			if f := fs.files[ino]; f != nil {
				f.mu.Lock()
				f.filerOpen = false
				f.mu.Unlock()
			}
		}
		fs.mu.Unlock()
	} else {
		fs.log.Info("mount: file handles taken back under a fresh session", "handles", len(inodes))
	}
	return nil
}

// sendReleasesUnder gives handles back under the live session. With no
// session there is nothing to give back: the handles went when the last
// one ended (and the replacement did not take back files closed before
// it).
func (fs *FS) sendReleasesUnder(inodes []uint64) {
	ls := fs.locks
	ls.handlesMu.RLock()
	defer ls.handlesMu.RUnlock()
	session := ls.current()
	if session == "" {
		return
	}
	for len(inodes) > 0 {
		n := min(len(inodes), maxReleaseBatch)
		ctx, cancel := context.WithTimeout(context.Background(), fs.cfg.OpTimeout)
		_, err := fs.api.Release(fs.opCtx(ctx), &filerpb.ReleaseRequest{Inodes: inodes[:n], Session: session})
		cancel()
		if err != nil && !client.SessionExpired(err) {
			fs.log.Warn("mount: filer release failed", "inodes", n, "err", err)
		}
		inodes = inodes[n:]
	}
}

// handleRetryEvery is how often a mount whose session could not be
// replaced tries again while it holds handles or locks.
const handleRetryEvery = 200 * time.Millisecond
