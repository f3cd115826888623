package mount

import (
	"context"
	"sync"
)

// budget caps the bytes of write buffers across the mount. Writers that
// cannot get bytes seal their slots (starting uploads, which give bytes
// back when done) and wait for a release.
type budget struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	changed chan struct{} // closed and replaced on every release
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, changed: make(chan struct{})}
}

// tryAcquire takes n bytes if they fit. With nothing in use it always
// succeeds, so a single buffer larger than the cap cannot wait forever.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// releaseSignal returns a channel closed at the next release.
func (b *budget) releaseSignal() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// wait blocks until the next release or until ctx ends.
func (b *budget) wait(ctx context.Context, sig <-chan struct{}) error {
	select {
	case <-sig:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
