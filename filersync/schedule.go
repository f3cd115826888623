package filersync

import (
	"context"
	"sync"
)

// scheduler applies events concurrently while keeping related ones in
// order: a job waits for every earlier unfinished job whose paths equal,
// contain or lie below one of its own. At most n jobs are in it at once
// (waiting or running); Submit blocks beyond that, which bounds memory.
// Its watermark is the timestamp up to which every submitted job has
// finished successfully: what a checkpoint may record.
type scheduler struct {
	slots chan struct{}
	wg    sync.WaitGroup

	mu        sync.Mutex
	pending   []*job // submitted, not finished (or failed), in submission order
	submitted int64  // ts of the last job submitted
	watermark int64
}

type job struct {
	ts    int64
	paths []string
	done  chan struct{} // closed when the job finished, successfully or not
}

func newScheduler(n int, start int64) *scheduler {
	return &scheduler{slots: make(chan struct{}, n), submitted: start, watermark: start}
}

// submit runs fn for an event of timestamp ts (increasing from call to
// call) touching paths, once every earlier related job has finished. fn
// returns an error only when it gives up (ctx ended); the job then pins
// the watermark below ts. submit returns ctx's error if ctx ends while it
// waits for a slot.
func (s *scheduler) submit(ctx context.Context, ts int64, paths []string, fn func(context.Context) error) error {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	j := &job{ts: ts, paths: paths, done: make(chan struct{})}
	s.mu.Lock()
	var deps []*job
	for _, p := range s.pending {
		if related(p.paths, paths) {
			deps = append(deps, p)
		}
	}
	s.pending = append(s.pending, j)
	s.submitted = ts
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		defer close(j.done)
		for _, d := range deps {
			select {
			case <-d.done:
			case <-ctx.Done():
				return // pinned: stays pending
			}
		}
		if fn(ctx) != nil {
			return
		}
		s.finish(j)
	}()
	return nil
}

// finish removes a successful job and advances the watermark.
func (s *scheduler) finish(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p == j {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			break
		}
	}
	if len(s.pending) == 0 {
		s.watermark = max(s.watermark, s.submitted)
	} else {
		s.watermark = max(s.watermark, s.pending[0].ts-1)
	}
}

// wait waits until every submitted job has ended.
func (s *scheduler) wait() { s.wg.Wait() }

// mark returns the watermark and how many jobs are in the scheduler.
func (s *scheduler) mark() (watermark int64, pending int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watermark, len(s.pending)
}

// related reports whether any path of a equals, contains or lies below
// any path of b.
func related(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if under(x, y) || under(y, x) {
				return true
			}
		}
	}
	return false
}
