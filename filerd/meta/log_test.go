package meta

import (
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"runtime"
	"sync"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

type jitterStore struct{ store.Store }

func (j *jitterStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return j.Store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		for i := rand.Intn(200); i > 0; i-- {
			runtime.Gosched()
		}
		return nil
	})
}

func TestLogOneEventPerMutation(t *testing.T) {
	ns, ctx := newNS(t)
	muts := 0
	okm := func(err error) {
		t.Helper()
		ok(t, err)
		muts++
	}
	d, err := ns.Mkdir(ctx, RootInode, "d", 0o755, 0, 0)
	okm(err)
	f, err := ns.Create(ctx, d.Inode, "f", CreateRequest{Mode: 0o644})
	okm(err)
	_, err = ns.Link(ctx, f.Inode, RootInode, "hl")
	okm(err)
	_, err = ns.Symlink(ctx, RootInode, "s", "d/f", 0, 0)
	okm(err)
	_, err = ns.SetAttr(ctx, f.Inode, SetAttrRequest{Mode: u32(0o600)})
	okm(err)
	okm(ns.SetXattr(ctx, f.Inode, "user.x", []byte("v"), 0))
	okm(ns.RemoveXattr(ctx, f.Inode, "user.x"))
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 3, FileID: "1,1", ModifiedNs: 1}}, 0)
	okm(err)
	okm(ns.Rename(ctx, d.Inode, "f", RootInode, "g", 0))
	okm(ns.Unlink(ctx, RootInode, "hl"))
	okm(ns.Unlink(ctx, RootInode, "g"))
	okm(ns.Rmdir(ctx, RootInode, "d"))
	// Failed operations and non-namespace writes log nothing.
	_ = ns.Rmdir(ctx, RootInode, "nope")
	_, _ = ns.Mkdir(ctx, RootInode, "s", 0o755, 0, 0)
	_ = ns.KVPut(ctx, "k", []byte("v"))
	evs := allEvents(t, ns)
	if len(evs) != muts {
		t.Fatalf("%d events for %d mutations", len(evs), muts)
	}
	kinds := ""
	for i, e := range evs {
		if i > 0 && e.TsNs <= evs[i-1].TsNs {
			t.Fatalf("timestamps not increasing at %d", i)
		}
		kinds += e.Kind.String()[:1]
	}
	if kinds != "ccccuuuurddd" {
		t.Fatalf("kinds %s", kinds)
	}
	if evs[1].NewPath != "/d/f" || evs[2].NewPath != "/hl" || evs[8].OldPath != "/d/f" || evs[8].NewPath != "/g" ||
		evs[10].OldPath != "/g" || evs[10].OldEntry.Attr.Inode != f.Inode || len(evs[10].FreedChunks) != 1 {
		t.Fatalf("events %+v", evs)
	}
	if ns.Watermark() != evs[len(evs)-1].TsNs {
		t.Fatalf("watermark %d, last %d", ns.Watermark(), evs[len(evs)-1].TsNs)
	}
	// A window of the log.
	var got []int64
	ok(t, ns.ReadLog(ctx, evs[2].TsNs, evs[5].TsNs, func(e Event) bool { got = append(got, e.TsNs); return true }))
	if fmt.Sprint(got) != fmt.Sprint([]int64{evs[3].TsNs, evs[4].TsNs, evs[5].TsNs}) {
		t.Fatalf("window %v", got)
	}
	// Trim, then reading from before the trim point is an error.
	ok(t, ns.TrimLog(ctx, evs[6].TsNs))
	err = ns.ReadLog(ctx, evs[2].TsNs, 1<<62, func(Event) bool { return true })
	mustErr(t, err, ErrLogTrimmed)
	got = nil
	ok(t, ns.ReadLog(ctx, evs[5].TsNs, 1<<62, func(e Event) bool { got = append(got, e.TsNs); return true }))
	if len(got) != len(evs)-6 {
		t.Fatalf("after trim read %d events", len(got))
	}
	// Timestamps keep increasing after a reopen, even with a clock behind.
	cfg := DefaultConfig()
	cfg.Clock = func() int64 { return 5 }
	ns2, err := Open(ctx, ns.st, cfg)
	ok(t, err)
	mkfile(t, ns2, RootInode, "after")
	var evs2 []Event
	ok(t, ns2.ReadLog(ctx, evs[len(evs)-1].TsNs, 1<<62, func(e Event) bool { evs2 = append(evs2, e); return true }))
	if l := evs2[len(evs2)-1].TsNs; len(evs2) != 1 || l <= ns.Watermark() {
		t.Fatalf("ts after reopen %d, last before %d", l, evs[len(evs)-1].TsNs)
	}
}

func TestWatermarkInflight(t *testing.T) {
	ns, _ := newNS(t)
	base := ns.Watermark()
	t1 := ns.nextTs(0)
	ch := ns.Changes()
	t2 := ns.nextTs(0)
	if ns.Watermark() != base {
		t.Fatalf("watermark %d moved with nothing committed", ns.Watermark())
	}
	ns.finishTs(t2, true)
	if ns.Watermark() != t1-1 {
		t.Fatalf("watermark %d with %d in flight", ns.Watermark(), t1)
	}
	<-ch // advanced
	ch = ns.Changes()
	// A retried attempt replaces its timestamp; t2 is now final.
	t3 := ns.nextTs(t1)
	if ns.Watermark() != t2 {
		t.Fatalf("watermark %d after retry, want %d", ns.Watermark(), t2)
	}
	<-ch
	ch = ns.Changes()
	// An operation that logs nothing does not move it.
	ns.finishTs(t3, false)
	if ns.Watermark() != t2 {
		t.Fatalf("watermark %d, want %d", ns.Watermark(), t2)
	}
	select {
	case <-ch:
		t.Fatal("signalled without an advance")
	default:
	}
}

// TestLogFollower runs writers concurrently with a reader that follows the
// watermark; the reader sees every event exactly once, in order.
func TestLogFollower(t *testing.T) {
	// With the default memory of recent events, the follower reads
	// them all from memory; with 16, it falls behind it at times and
	// reads from the store.
	for _, limit := range []int{recentEvents, 16} {
		t.Run(fmt.Sprint("recent", limit), func(t *testing.T) { testLogFollower(t, limit) })
	}
}

func testLogFollower(t *testing.T, limit int) {
	// Jitter between a transaction's body and its commit so commits land
	// out of timestamp order (on a store that runs transactions in parallel).
	ns, ctx := newNSOn(t, &jitterStore{Store: newStore(t)})
	ns.recent.limit = limit
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const writers, perWriter = 8, 60
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		d := mkdir(t, ns, RootInode, fmt.Sprint("w", w))
		wg.Add(1)
		go func(w int, dir Inode) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < perWriter; i++ {
				name := fmt.Sprint("f", rng.Intn(10))
				switch rng.Intn(3) {
				case 0:
					_, _ = ns.Create(ctx, dir, name, CreateRequest{Mode: 0o644, Exclusive: true})
				case 1:
					_ = ns.Unlink(ctx, dir, name)
				case 2:
					_ = ns.Rename(ctx, dir, name, dir, fmt.Sprint("f", rng.Intn(10)), 0)
				}
			}
		}(w, d.Inode)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var seen []Event
	last := int64(0)
	follow := func() {
		wm := ns.Watermark()
		ok(t, ns.ReadLog(ctx, last, wm, func(e Event) bool { seen = append(seen, e); return true }))
		last = wm
	}
	for running := true; running; {
		ch := ns.Changes()
		follow()
		select {
		case <-ch:
		case <-done:
			running = false
		}
	}
	follow()
	all := allEvents(t, ns)
	if len(seen) != len(all) {
		t.Fatalf("follower saw %d events, log has %d", len(seen), len(all))
	}
	for i := range all {
		if !reflect.DeepEqual(seen[i], all[i]) {
			t.Fatalf("event %d: follower %+v, log %+v", i, seen[i], all[i])
		}
	}
	served, refused := ns.recent.counts()
	if served == 0 || limit == recentEvents && refused > 0 {
		t.Errorf("reads from memory: %d answered, %d sent to the store", served, refused)
	}
	checkInvariants(t, ns)
}

// TestRecentLogAfterRestart: a log trimmed past every event, then
// reopened, still says so to a reader from before the trim.
func TestRecentLogAfterRestart(t *testing.T) {
	ns, ctx := newNS(t)
	mkfile(t, ns, RootInode, "a")
	mkfile(t, ns, RootInode, "b")
	wm := ns.Watermark()
	ok(t, ns.TrimLog(ctx, wm+1))
	ns2 := openNS(t, ns.st, nil)
	// The reopened watermark is not before what was trimmed: a reader
	// from it (a subscriber whose since it bounds) is not refused.
	w2 := ns2.Watermark()
	if w2 < wm {
		t.Fatalf("reopened watermark %d, before the trimmed log's end %d", w2, wm)
	}
	mkfile(t, ns2, RootInode, "c")
	mustErr(t, ns2.ReadLog(ctx, 1, ns2.Watermark(), func(Event) bool { return true }), ErrLogTrimmed)
	for _, from := range []int64{wm, w2} {
		var got []string
		ok(t, ns2.ReadLog(ctx, from, ns2.Watermark(), func(e Event) bool { got = append(got, e.NewPath); return true }))
		if len(got) != 1 || got[0] != "/c" {
			t.Fatalf("events after the trim, from %d: %v, want [/c]", from, got)
		}
	}
}
