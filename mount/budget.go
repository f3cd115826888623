package mount

import (
	"context"
	"sync"
	"time"
)

// squeezeAfter is how long a writer waits for buffer bytes before the
// uploads still queued spill to disk. Uploads that keep up release bytes
// every few milliseconds and never get there; spilling them would only
// add a disk write and read to every chunk. Uploads stuck behind a slow
// or failing cluster do, and the writer goes on at disk speed.
const squeezeAfter = 500 * time.Millisecond

// budget caps the bytes of write buffers across the mount. Writers that
// cannot get bytes seal their slots (starting uploads, which give bytes
// back when done, or when they spill to disk while waiting for an upload
// slot) and wait for a release.
type budget struct {
	mu       sync.Mutex
	limit    int64
	used     int64
	changed  chan struct{} // closed and replaced on every release
	waiting  int           // writers waiting for bytes
	pressure chan struct{} // closed while waiting > 0
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, changed: make(chan struct{}), pressure: make(chan struct{})}
}

// squeeze marks a writer as waiting for bytes until done runs: uploads
// still queued then move their bytes to disk and give them back.
func (b *budget) squeeze() (done func()) {
	b.mu.Lock()
	if b.waiting++; b.waiting == 1 {
		close(b.pressure)
	}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		if b.waiting--; b.waiting == 0 {
			b.pressure = make(chan struct{})
		}
		b.mu.Unlock()
	}
}

// pressureSignal returns a channel that is closed while a writer waits.
func (b *budget) pressureSignal() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pressure
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

// wait blocks until the next release or until ctx ends. Waiting longer
// than squeezeAfter (0: never), it squeezes the budget.
func (b *budget) wait(ctx context.Context, sig <-chan struct{}, squeezeAfter time.Duration) error {
	var timeout <-chan time.Time
	if squeezeAfter > 0 {
		t := time.NewTimer(squeezeAfter)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-sig:
			return nil
		case <-timeout:
			defer b.squeeze()()
			timeout = nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
