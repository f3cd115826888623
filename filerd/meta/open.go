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
// exists. Handles live in memory; a restart frees the inodes they kept.
func (n *Namespace) Open(ctx context.Context, ino Inode) error {
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
		break
	}
	if _, err := n.GetAttr(ctx, ino); err != nil {
		_ = n.release(ino)
		if errors.Is(err, ErrNotFound) {
			return wrap("open", fmt.Errorf("inode %d: %w", ino, ErrStale))
		}
		return err
	}
	return nil
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
