package mount

import (
	"context"
	"testing"
	"time"
)

// A wait returns as soon as the position reaches its timestamp, at once if
// it already has, and false at its bound or when its context ends.
func TestFeedPositionWait(t *testing.T) {
	p := newFeedPosition()
	p.advance(10)
	if !p.wait(context.Background(), 10, time.Millisecond, time.Second) {
		t.Fatal("a position already reached was waited for")
	}
	done := make(chan bool)
	go func() { done <- p.wait(context.Background(), 30, 10*time.Second, time.Minute) }()
	p.advance(20)
	select {
	case r := <-done:
		t.Fatalf("wait for 30 returned %v at 20", r)
	case <-time.After(20 * time.Millisecond):
	}
	p.advance(5) // never backwards
	p.advance(31)
	if !<-done {
		t.Fatal("wait for 30 did not see 31")
	}
	if len(p.kicked()) != 1 {
		t.Fatal("a waiter did not kick the watcher")
	}
	<-p.kicked()
	start := time.Now()
	if p.wait(context.Background(), 40, 30*time.Millisecond, time.Minute) || time.Since(start) < 30*time.Millisecond {
		t.Fatal("a wait on a position that does not move did not fail at its idle bound")
	}
	// A position that keeps moving, short of ts, is waited for until the
	// total bound, past the idle one.
	stop := make(chan struct{})
	go func() {
		for ts := int64(32); ; ts++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				p.advance(ts)
			}
		}
	}()
	start = time.Now()
	ok := p.wait(context.Background(), 1000, 30*time.Millisecond, 150*time.Millisecond)
	close(stop)
	if ok || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("a wait on a moving position returned %v after %v; want false at the total bound", ok, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p.wait(ctx, 1<<40, time.Minute, time.Minute) {
		t.Fatal("a cancelled wait reported the position reached")
	}
}
