package meta

import (
	"context"
	"sync"
)

// Changes collects what the mutations run under one context committed:
// the attributes each left on the inodes it wrote (parents included) and
// the inodes it deleted, in commit order. A client keeps its attribute
// cache current from them instead of asking again after every change.
type Changes struct {
	mu      sync.Mutex
	attrs   []Attr
	removed []Inode
	freed   int
}

type changesKey struct{}

// WithChanges returns a context whose mutations record into the returned
// Changes.
func WithChanges(ctx context.Context) (context.Context, *Changes) {
	c := &Changes{}
	return context.WithValue(ctx, changesKey{}, c), c
}

// Attrs returns the recorded attributes, oldest first; an inode written
// twice appears twice.
func (c *Changes) Attrs() []Attr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Attr(nil), c.attrs...)
}

// Removed returns the inodes whose attributes were deleted.
func (c *Changes) Removed() []Inode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Inode(nil), c.removed...)
}

// Freed returns how many chunks the mutations queued for deletion.
func (c *Changes) Freed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.freed
}

// record adds what the committed attempt t wrote.
func (c *Changes) record(t *txn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.freed += len(t.freed)
	for ino, a := range t.attrs {
		switch {
		case a.deleted:
			c.removed = append(c.removed, ino)
		case a.dirty:
			c.attrs = append(c.attrs, a.a)
		}
	}
}

func changesFrom(ctx context.Context) *Changes {
	c, _ := ctx.Value(changesKey{}).(*Changes)
	return c
}
