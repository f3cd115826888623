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
	if !p.wait(context.Background(), 10, time.Millisecond) {
		t.Fatal("a position already reached was waited for")
	}
	done := make(chan bool)
	go func() { done <- p.wait(context.Background(), 30, 10*time.Second) }()
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
	start := time.Now()
	if p.wait(context.Background(), 40, 30*time.Millisecond) || time.Since(start) < 30*time.Millisecond {
		t.Fatal("a wait past its bound did not fail at the bound")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p.wait(ctx, 40, time.Minute) {
		t.Fatal("a cancelled wait reported the position reached")
	}
}
