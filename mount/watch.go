package mount

import (
	"context"
	"errors"
	"path"
	"syscall"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// startWatcher follows the filer's change log from now on and turns other
// clients' changes into kernel invalidations and stale marks on open
// files. It reconnects with backoff, resuming from the last event seen;
// if the filer no longer has that history, everything open is marked
// stale (the kernel's timeouts bound what it still caches).
func (fs *FS) startWatcher() {
	since := time.Now().UnixNano()
	fs.bg.Add(1)
	go func() {
		defer fs.bg.Done()
		backoff := 100 * time.Millisecond
		for fs.bgCtx.Err() == nil {
			last, err := fs.follow(since)
			if last != since {
				// The filer's position, not this host's clock: a marker
				// may be below a since taken from a clock ahead of the
				// filer's.
				since = last
				backoff = 100 * time.Millisecond
			}
			if fs.bgCtx.Err() != nil {
				return
			}
			if errors.Is(err, client.ErrPrecondition) {
				fs.log.Warn("mount: change log history lost; marking open files stale", "since_ns", since, "err", err)
				since = time.Now().UnixNano()
				fs.meta.reset()
				fs.markAllStale()
			} else {
				fs.log.Warn("mount: change log stream broke; reconnecting", "err", err, "retry_in", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-fs.feedPos.kicked():
				// A lock grant waits for the change log: try now.
			case <-fs.bgCtx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

// follow streams events after since until the stream breaks, returning
// the timestamp of the last event applied.
func (fs *FS) follow(since int64) (int64, error) {
	ctx, cancel := context.WithCancel(fs.opCtx(fs.bgCtx))
	defer cancel()
	prefix := fs.cfg.FilerPath
	if prefix == "/" {
		prefix = ""
	}
	stream, err := fs.api.SubscribeMetadata(ctx, &filerpb.SubscribeMetadataRequest{SinceNs: since, PathPrefix: prefix,
		ClientSignature: fs.sig, ClientName: "mount " + fs.session, MarkCaughtUp: true})
	if err != nil {
		return since, err
	}
	// Events missed while the stream was down come first; the metadata
	// cache is trusted again only once they are applied (the filer marks
	// that point), or it could answer with what they change.
	defer fs.meta.setLive(false)
	for {
		ev, err := stream.Recv()
		if err != nil {
			return since, err
		}
		switch {
		case ev.CaughtUp:
			fs.meta.setLive(true)
		case ev.Progress: // asked for by a lock grant: nothing to apply
		default:
			fs.apply(ev)
		}
		since = ev.TsNs
		fs.feedPos.advance(since)
	}
}

// apply invalidates what one event changed.
func (fs *FS) apply(ev *filerpb.MetadataEvent) {
	fs.applyMeta(ev)
	inv := fs.invalidator()
	entry := func(parent uint64, p string) {
		if inv != nil && parent != 0 && p != "" {
			inv.InvalidateEntry(parent, path.Base(p))
		}
	}
	inode := func(e *filerpb.EntryState) {
		if e == nil || e.Attr == nil {
			return
		}
		fs.markStale(e.Attr.Inode)
		fs.xattrs.forget(e.Attr.Inode)
		if inv != nil {
			inv.InvalidateInode(e.Attr.Inode)
		}
	}
	switch ev.Kind {
	case filerpb.MetadataEvent_CREATE:
		entry(ev.NewParent, ev.NewPath)
		inode(ev.NewEntry) // a hard link changes the inode's nlink
	case filerpb.MetadataEvent_UPDATE:
		inode(ev.NewEntry)
	case filerpb.MetadataEvent_DELETE:
		entry(ev.OldParent, ev.OldPath)
		inode(ev.OldEntry)
	case filerpb.MetadataEvent_RENAME:
		entry(ev.OldParent, ev.OldPath)
		entry(ev.NewParent, ev.NewPath)
		inode(ev.OldEntry)
		inode(ev.NewEntry)
		inode(ev.Replaced)
	}
}

// markStale makes the next read or open of ino fetch its content again.
func (fs *FS) markStale(ino uint64) {
	fs.pages.forget(ino)
	fs.kept.drop(ino)
	// Another client changed it: its image is out of date (kept while
	// handles pass through to it).
	fs.images.changed(ino)
	fs.mu.Lock()
	f := fs.files[ino]
	fs.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	f.stale = true
	f.staleSeq++
	f.mu.Unlock()
}

func (fs *FS) markAllStale() {
	fs.pages.reset()
	fs.kept.reset()
	fs.mu.Lock()
	files := make([]*file, 0, len(fs.files))
	for _, f := range fs.files {
		files = append(files, f)
	}
	fs.mu.Unlock()
	inv := fs.invalidator()
	for _, f := range files {
		f.mu.Lock()
		f.stale = true
		f.staleSeq++
		f.mu.Unlock()
		// Changes may have been missed: the kernel must not keep
		// serving pages of files still open from before (it does not
		// drop them on an mtime change by itself; see fusefs).
		if inv != nil {
			inv.InvalidateInode(f.ino)
		}
	}
}

// applyMeta brings the metadata cache up to date with one event of
// another client. CREATE, UPDATE and RENAME carry the entries' new state;
// DELETE and what a RENAME replaced carry the state before.
func (fs *FS) applyMeta(ev *filerpb.MetadataEvent) {
	c := fs.meta
	if !c.enabled() {
		return
	}
	name := func(parent uint64, p string, e *filerpb.EntryState) {
		if parent == 0 || p == "" {
			return
		}
		var ino uint64
		if e != nil && e.Attr != nil {
			ino = e.Attr.Inode
		}
		c.named(parent, path.Base(p), ino)
		c.invalidateChanged(parent)
	}
	put := func(e *filerpb.EntryState) {
		if e != nil && e.Attr != nil {
			c.putAttr(attrFromPB(e.Attr))
		}
	}
	gone := func(e *filerpb.EntryState) {
		if e == nil || e.Attr == nil {
			return
		}
		c.invalidate(e.Attr.Inode, e.Attr.Generation+1)
		if e.Attr.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			c.forgetDir(e.Attr.Inode)
		}
	}
	switch ev.Kind {
	case filerpb.MetadataEvent_CREATE:
		name(ev.NewParent, ev.NewPath, ev.NewEntry)
		put(ev.NewEntry)
	case filerpb.MetadataEvent_UPDATE:
		put(ev.NewEntry)
	case filerpb.MetadataEvent_DELETE:
		name(ev.OldParent, ev.OldPath, nil)
		gone(ev.OldEntry)
	case filerpb.MetadataEvent_RENAME:
		name(ev.OldParent, ev.OldPath, nil)
		gone(ev.Replaced)
		name(ev.NewParent, ev.NewPath, ev.OldEntry)
		put(ev.OldEntry)
		if ev.Exchange {
			name(ev.OldParent, ev.OldPath, ev.NewEntry)
			put(ev.NewEntry)
		}
	}
}
