package mount

import (
	"context"
	"sync"
	"time"
)

// feedPosition is how far the mount has applied the filer's change log:
// every event it wants up to pos has been turned into invalidations. The
// watcher advances it with each event and marker; a lock grant waits for
// it to reach the grant's log_ts, so that what another mount changed
// before releasing the lock (a journal created or removed, a file renamed)
// is what this mount's kernel and caches show once the application holds
// the lock.
type feedPosition struct {
	mu    sync.Mutex
	pos   int64
	moved chan struct{} // closed when pos next advances
}

func newFeedPosition() *feedPosition {
	return &feedPosition{moved: make(chan struct{})}
}

// advance records that everything up to ts has been applied.
func (p *feedPosition) advance(ts int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ts <= p.pos {
		return
	}
	p.pos = ts
	close(p.moved)
	p.moved = make(chan struct{})
}

// wait blocks until everything up to ts has been applied, for at most d
// or until ctx ends; it reports whether ts was reached.
func (p *feedPosition) wait(ctx context.Context, ts int64, d time.Duration) bool {
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		reached, moved := p.pos >= ts, p.moved
		p.mu.Unlock()
		if reached {
			return true
		}
		if timeout == nil {
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-moved:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
