package filerd

import (
	"sync"
	"sync/atomic"
)

// Progress reports on request. A mount skips its own events (its
// subscription's client signature), so the last event it received says
// nothing of how far its stream has got. A lock grant needs to know: the
// mount must have applied every change made before the grant (another
// mount's create or remove under the lock) before the application sees
// the lock. So the grant asks the mount's subscriptions, by signature, to
// report once they have sent everything up to the grant's timestamp, and
// the mount waits for that report.

// feedProgress is one subscription's pending progress request.
type feedProgress struct {
	mu   sync.Mutex
	want int64         // report once everything up to want is sent; 0: none asked
	wake chan struct{} // buffered(1): a request arrived
	// reported is the timestamp of the last message queued to the
	// subscriber: a request up to it is met already, and asks nothing.
	reported atomic.Int64
}

// ask records a request to report progress up to ts and wakes the feed,
// unless the subscriber has been told as much already.
func (p *feedProgress) ask(ts int64) {
	if p.reported.Load() >= ts {
		return
	}
	p.mu.Lock()
	p.want = max(p.want, ts)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// due reports whether a progress report is owed now that everything up
// to sent has been sent, the last message sent carrying reported, and
// clears the request once it is met: by the report, or by a message that
// already told the subscriber as much.
func (p *feedProgress) due(sent, reported int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.want == 0 || sent < p.want:
		return false
	case reported >= p.want:
		p.want = 0
		return false
	}
	p.want = 0
	return true
}

// feedRegistry finds the live subscriptions of a client signature.
type feedRegistry struct {
	mu    sync.Mutex
	bySig map[int32]map[*feedProgress]struct{}
	// pending keeps what was asked of a signature with no subscription
	// (its client reconnecting), for the next one to report.
	pending map[int32]int64
}

// maxPendingProgress bounds pending: past it, the oldest requests are
// dropped wholesale (their clients wait their bound instead).
const maxPendingProgress = 4096

// add registers a subscription of sig, owing whatever report was asked
// while none was registered; remove undoes it.
func (r *feedRegistry) add(sig int32) (p *feedProgress, remove func()) {
	p = &feedProgress{wake: make(chan struct{}, 1)}
	r.mu.Lock()
	if r.bySig == nil {
		r.bySig = make(map[int32]map[*feedProgress]struct{})
	}
	if r.bySig[sig] == nil {
		r.bySig[sig] = make(map[*feedProgress]struct{})
	}
	r.bySig[sig][p] = struct{}{}
	if want, ok := r.pending[sig]; ok {
		p.want = want
		delete(r.pending, sig)
	}
	r.mu.Unlock()
	return p, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.bySig[sig], p)
		if len(r.bySig[sig]) == 0 {
			delete(r.bySig, sig)
		}
	}
}

// ask asks every subscription of sig to report its progress up to ts, or
// the next one if none is registered.
func (r *feedRegistry) ask(sig int32, ts int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bySig[sig]) == 0 {
		if r.pending == nil || len(r.pending) >= maxPendingProgress {
			r.pending = make(map[int32]int64)
		}
		r.pending[sig] = max(r.pending[sig], ts)
		return
	}
	for p := range r.bySig[sig] {
		p.ask(ts)
	}
}
