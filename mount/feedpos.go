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
	kick  chan struct{} // buffered(1): a waiter wants the watcher to reconnect now
}

func newFeedPosition() *feedPosition {
	return &feedPosition{moved: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// kicked is where the watcher, waiting to reconnect, learns that a lock
// grant waits for it.
func (p *feedPosition) kicked() <-chan struct{} { return p.kick }

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

// wait blocks until everything up to ts has been applied, or ctx ends,
// or the position has not moved for idle (the stream is down), or total
// has passed (a stream too far behind); it reports whether ts was
// reached. A waiter also kicks the watcher out of its reconnect back-off.
func (p *feedPosition) wait(ctx context.Context, ts int64, idle, total time.Duration) bool {
	var stall *time.Timer
	var deadline <-chan time.Time
	for {
		p.mu.Lock()
		reached, moved := p.pos >= ts, p.moved
		p.mu.Unlock()
		if reached {
			return true
		}
		if stall == nil {
			select {
			case p.kick <- struct{}{}:
			default:
			}
			stall = time.NewTimer(idle)
			defer stall.Stop()
			t := time.NewTimer(total)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-moved:
			stall.Reset(idle)
		case <-stall.C:
			return false
		case <-deadline:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
