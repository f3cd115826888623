package meta

import (
	"context"
	"errors"
	"fmt"

	"github.com/kelpfs/kelp/filerd/store"
)

// Open records a handle on ino held through the filer: while any is held,
// unlinking the inode's last name keeps it (nlink 0, an "open-unlinked"
// inode) until the last Release. It returns ErrStale if ino no longer
// exists. Handles live in memory; a restart frees the inodes they kept
// (at Open, or at FreeOrphans with Config.KeepOrphans).
func (n *Namespace) Open(ctx context.Context, ino Inode) error {
	if err := n.hold(ctx, ino); err != nil {
		return err
	}
	_, err := n.GetAttr(ctx, ino)
	return n.opened(ctx, ino, err)
}

// OpenContent is Open and GetContent of regular file ino in one read of
// the store. On an error no handle is held.
func (n *Namespace) OpenContent(ctx context.Context, ino Inode) (Content, error) {
	return n.OpenContentSince(ctx, ino, 0)
}

// OpenContentSince is OpenContent for a caller holding the content as of
// generation known (see ContentSince).
func (n *Namespace) OpenContentSince(ctx context.Context, ino Inode, known uint64) (Content, error) {
	if err := n.hold(ctx, ino); err != nil {
		return Content{}, err
	}
	c, err := n.ContentSince(ctx, ino, known)
	return c, n.opened(ctx, ino, err)
}

// hold counts a handle on ino, once an unlink freeing it has finished.
func (n *Namespace) hold(ctx context.Context, ino Inode) error {
	for {
		n.openMu.Lock()
		if d := n.dying[ino]; d != nil {
			n.openMu.Unlock()
			select {
			case <-d.done:
				continue
			case <-ctx.Done():
				return wrap("open", ctx.Err())
			}
		}
		n.opens[ino]++
		n.openMu.Unlock()
		return nil
	}
}

// opened ends an open whose read of ino (after hold, so an unlink
// meanwhile kept it) gave err: on an error the handle goes (freeing the
// inode if an unlink kept it for this handle alone), and a missing inode
// is ErrStale.
func (n *Namespace) opened(ctx context.Context, ino Inode, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) {
		_ = n.release(ino)
		return wrap("open", fmt.Errorf("inode %d: %w", ino, ErrStale))
	}
	if rerr := n.Release(context.WithoutCancel(ctx), ino); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// Release drops a handle taken by Open; the last one frees an
// open-unlinked inode and queues its chunks for deletion.
func (n *Namespace) Release(ctx context.Context, ino Inode) error {
	if n.release(ino) {
		return wrap("release", n.reap(ctx, ino))
	}
	return nil
}

// release drops one handle and reports whether it was the last.
func (n *Namespace) release(ino Inode) bool {
	n.openMu.Lock()
	defer n.openMu.Unlock()
	c := n.opens[ino]
	if c <= 1 {
		delete(n.opens, ino)
		return c == 1
	}
	n.opens[ino] = c - 1
	return false
}

// reap frees ino if it is an open-unlinked inode no handle holds.
func (n *Namespace) reap(ctx context.Context, ino Inode) error {
	return n.update(ctx, func(t *txn) error {
		if _, err := t.tx.Get(orphanKey(ino)); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		a, err := t.attr(ino)
		if isNotFound(err) {
			return t.tx.Delete(orphanKey(ino))
		}
		if err != nil {
			return err
		}
		if a.Nlink > 0 || !t.freeOrKeep(ino) {
			return nil
		}
		return t.remove(ino)
	})
}

// OpenCount returns the number of handles the filer holds on ino.
func (n *Namespace) OpenCount(ino Inode) int { return n.openCount(ino) }
