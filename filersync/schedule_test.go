package filersync

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestRelated(t *testing.T) {
	cases := []struct {
		a, b []string
		want bool
	}{
		{[]string{"/a"}, []string{"/a"}, true},
		{[]string{"/a"}, []string{"/a/b"}, true},
		{[]string{"/a/b"}, []string{"/a"}, true},
		{[]string{"/a"}, []string{"/ab"}, false},
		{[]string{"/a", "/x"}, []string{"/y", "/x/z"}, true},
		{[]string{"/"}, []string{"/anything"}, true},
		{[]string{"\x00inode/5"}, []string{"\x00inode/50"}, false},
		{[]string{"\x00inode/5"}, []string{"\x00inode/5"}, true},
		{[]string{"/a"}, []string{"\x00inode/5"}, false},
	}
	for _, c := range cases {
		if got := related(c.a, c.b); got != c.want {
			t.Errorf("related(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestSchedulerOrder: related jobs run in submission order, one at a
// time; unrelated ones run at the same time; the watermark is the last
// timestamp below which everything finished.
func TestSchedulerOrder(t *testing.T) {
	ctx := context.Background()
	s := newScheduler(8, 100)
	var mu sync.Mutex
	var order []int64
	release := make(chan struct{})
	run := func(ts int64, block bool) func(context.Context) error {
		return func(context.Context) error {
			if block {
				<-release
			}
			mu.Lock()
			order = append(order, ts)
			mu.Unlock()
			return nil
		}
	}
	// 101 on /d blocks; 102 on /d/f must wait for it; 103 on /e need not.
	if err := s.submit(ctx, 101, []string{"/d"}, run(101, true)); err != nil {
		t.Fatal(err)
	}
	if err := s.submit(ctx, 102, []string{"/d/f"}, run(102, false)); err != nil {
		t.Fatal(err)
	}
	if err := s.submit(ctx, 103, []string{"/e"}, run(103, false)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unrelated job did not run while the first blocked: %v", order)
		}
		time.Sleep(time.Millisecond)
	}
	if wm, pending := s.mark(); wm != 100 || pending != 2 {
		t.Fatalf("mark = %d, %d pending; want 100 (101 unfinished), 2", wm, pending)
	}
	close(release)
	s.wait()
	if len(order) != 3 || order[0] != 103 || order[1] != 101 || order[2] != 102 {
		t.Fatalf("order %v, want [103 101 102]", order)
	}
	if wm, pending := s.mark(); wm != 103 || pending != 0 {
		t.Fatalf("mark = %d, %d pending; want 103, 0", wm, pending)
	}
}

// TestSchedulerFailedJobPins: a job that gives up (its context ended)
// keeps the watermark below it for good, even when later jobs finish.
func TestSchedulerFailedJobPins(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := newScheduler(4, 0)
	if err := s.submit(ctx, 10, []string{"/a"}, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	for ts := int64(11); ts <= 13; ts++ {
		if err := s.submit(ctx, ts, []string{"/b"}, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	s.wait()
	if wm, _ := s.mark(); wm != 9 {
		t.Fatalf("watermark %d, want 9: the failed event at 10 must not be passed", wm)
	}
}
