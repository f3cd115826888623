package filerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

// readLog returns the whole change log after since, up to the watermark.
func readLog(t *testing.T, s *Server, since int64) []meta.Event {
	t.Helper()
	var out []meta.Event
	if err := s.ns.ReadLog(t.Context(), since, s.ns.Watermark(), func(ev meta.Event) bool {
		out = append(out, ev)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// load runs writers that each create, rename and remove files in a
// directory of their own, until stop is closed.
func load(t *testing.T, ns *meta.Namespace, writers int, stop <-chan struct{}) *sync.WaitGroup {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range writers {
		d, err := ns.Mkdir(ctx, meta.RootInode, fmt.Sprintf("w%d", w), 0o755, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("f%d", i)
				if _, err := ns.Create(ctx, d.Inode, name, meta.CreateRequest{Mode: 0o644}); err != nil {
					t.Error(err)
					return
				}
				if err := ns.Rename(ctx, d.Inode, name, d.Inode, name+"r", 0); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := ns.Unlink(ctx, d.Inode, name+"r"); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	return &wg
}

// subscriber collects a stream's events in the background.
type subscriber struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []*filerpb.MetadataEvent
	err    error
}

func subscribe(t *testing.T, api filerpb.FilerClient, req *filerpb.SubscribeMetadataRequest) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := api.SubscribeMetadata(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sub := &subscriber{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sub.done)
		for {
			ev, err := stream.Recv()
			sub.mu.Lock()
			if err != nil {
				sub.err = err
				sub.mu.Unlock()
				return
			}
			sub.events = append(sub.events, ev)
			sub.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-sub.done
	})
	return sub
}

func (s *subscriber) snapshot() ([]*filerpb.MetadataEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*filerpb.MetadataEvent(nil), s.events...), s.err
}

// waitFor waits until the subscriber got an event with ts >= ts.
func (s *subscriber) waitFor(t *testing.T, ts int64) []*filerpb.MetadataEvent {
	t.Helper()
	var evs []*filerpb.MetadataEvent
	eventually(t, fmt.Sprintf("event %d", ts), func() bool {
		var err error
		evs, err = s.snapshot()
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		return len(evs) > 0 && evs[len(evs)-1].TsNs >= ts
	})
	return evs
}

// stop ends the subscription and returns what it got.
func (s *subscriber) stop() []*filerpb.MetadataEvent {
	s.cancel()
	<-s.done
	evs, _ := s.snapshot()
	return evs
}

// sameEvents compares received events with the log, event by event.
func sameEvents(t *testing.T, got []*filerpb.MetadataEvent, want []meta.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, the log has %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.TsNs != w.TsNs || g.OldPath != w.OldPath || g.NewPath != w.NewPath || kindToPB[w.Kind] != g.Kind {
			t.Fatalf("event %d: got %v %d %q -> %q, log has %v %d %q -> %q", i, g.Kind, g.TsNs, g.OldPath, g.NewPath,
				w.Kind, w.TsNs, w.OldPath, w.NewPath)
		}
	}
}

func TestSubscribeMidLoadGetsEveryEventOnce(t *testing.T) {
	tf := startFiler(t, nil)
	stop := make(chan struct{})
	wg := load(t, tf.s.ns, 4, stop)
	// Let the writers make some history first.
	eventually(t, "history", func() bool { return tf.s.ns.Watermark() > 0 && len(readLog(t, tf.s, 0)) > 200 })
	sub := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{SinceNs: 0, ClientName: "mid-load"})
	eventually(t, "live events", func() bool { evs, _ := sub.snapshot(); return len(evs) > 400 })
	close(stop)
	wg.Wait()
	want := readLog(t, tf.s, 0)
	got := sub.waitFor(t, want[len(want)-1].TsNs)
	sameEvents(t, got, want)
	for i := 1; i < len(got); i++ {
		if got[i].TsNs <= got[i-1].TsNs {
			t.Fatalf("events out of order at %d", i)
		}
	}
}

func TestSubscribeResumeAfterDisconnect(t *testing.T) {
	tf := startFiler(t, nil)
	stop := make(chan struct{})
	wg := load(t, tf.s.ns, 3, stop)
	first := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{})
	eventually(t, "first events", func() bool { evs, _ := first.snapshot(); return len(evs) > 100 })
	got := first.stop() // disconnect mid-load
	last := got[len(got)-1].TsNs
	second := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{SinceNs: last})
	eventually(t, "resumed events", func() bool { evs, _ := second.snapshot(); return len(evs) > 100 })
	close(stop)
	wg.Wait()
	want := readLog(t, tf.s, 0)
	got = append(got, second.waitFor(t, want[len(want)-1].TsNs)...)
	sameEvents(t, got, want)
}

// TestSubscribeMarksCaughtUp: with mark_caught_up, exactly one marker
// comes, after every event logged before the subscription and before any
// later one; an empty history is marked at once, and a subscriber that
// did not ask gets no marker.
func TestSubscribeMarksCaughtUp(t *testing.T) {
	tf := startFiler(t, nil)
	ns, ctx := tf.s.ns, tf.ctx
	empty := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{SinceNs: time.Now().UnixNano(), MarkCaughtUp: true})
	eventually(t, "marker of an empty history", func() bool { evs, _ := empty.snapshot(); return len(evs) == 1 })
	if evs, _ := empty.snapshot(); !evs[0].CaughtUp {
		t.Fatalf("first event of an empty history is %v, not the marker", evs[0])
	}
	for i := range 300 { // more than one log batch
		if _, err := ns.Create(ctx, meta.RootInode, fmt.Sprintf("before%d", i), meta.CreateRequest{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	history := readLog(t, tf.s, 0)
	marked := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{MarkCaughtUp: true})
	plain := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{})
	eventually(t, "history and marker", func() bool { evs, _ := marked.snapshot(); return len(evs) > len(history) })
	if _, err := ns.Create(ctx, meta.RootInode, "after", meta.CreateRequest{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	want := readLog(t, tf.s, 0)
	got := marked.waitFor(t, want[len(want)-1].TsNs)
	var changes []*filerpb.MetadataEvent
	markers := 0
	for i, ev := range got {
		if !ev.CaughtUp {
			changes = append(changes, ev)
			continue
		}
		markers++
		if i < len(history) || ev.TsNs < history[len(history)-1].TsNs {
			t.Fatalf("marker at %d (ts %d) comes before the end of the history (%d events, last ts %d)",
				i, ev.TsNs, len(history), history[len(history)-1].TsNs)
		}
		if ev.NewPath != "" || ev.OldPath != "" || ev.NewEntry != nil {
			t.Fatalf("marker carries a change: %v", ev)
		}
	}
	if markers != 1 {
		t.Fatalf("%d markers, want 1", markers)
	}
	sameEvents(t, changes, want)
	for _, ev := range plain.waitFor(t, want[len(want)-1].TsNs) {
		if ev.CaughtUp {
			t.Fatal("a subscriber that did not ask got a caught_up marker")
		}
	}
	if evs := empty.waitFor(t, want[len(want)-1].TsNs); len(evs) != 1+len(want) {
		t.Fatalf("the first subscriber got %d events, want its marker and %d changes", len(evs), len(want))
	}
}

// TestSubscribeMarkerIsTheWatermark: a subscription from past the
// filer's watermark (a client whose clock is ahead) is marked with the
// watermark, so resuming from the marker misses no later event.
func TestSubscribeMarkerIsTheWatermark(t *testing.T) {
	tf := startFiler(t, nil)
	ns, ctx := tf.s.ns, tf.ctx
	if _, err := ns.Create(ctx, meta.RootInode, "before", meta.CreateRequest{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	logged := readLog(t, tf.s, 0)
	ahead := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{SinceNs: time.Now().Add(time.Hour).UnixNano(), MarkCaughtUp: true})
	eventually(t, "marker", func() bool { evs, _ := ahead.snapshot(); return len(evs) == 1 })
	evs, _ := ahead.snapshot()
	if !evs[0].CaughtUp || evs[0].TsNs != logged[len(logged)-1].TsNs {
		t.Fatalf("marker %v, want caught_up at the last logged event's ts %d", evs[0], logged[len(logged)-1].TsNs)
	}
	if _, err := ns.Create(ctx, meta.RootInode, "after", meta.CreateRequest{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, tf.s, evs[0].TsNs); len(got) != 1 || got[0].NewPath != "/after" {
		t.Fatalf("events after the marker: %v, want the one create after it", got)
	}
}

func TestSubscribeFilters(t *testing.T) {
	tf := startFiler(t, nil)
	ns, ctx := tf.s.ns, tf.ctx
	own := tf.s.Signature()
	prefixed := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{PathPrefix: "/p/"})
	notFromPeer := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{ClientSignature: 77})
	fromSelf := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{ClientSignature: own})

	p := must[meta.Attr](t)(ns.Mkdir(ctx, meta.RootInode, "p", 0o755, 0, 0))
	q := must[meta.Attr](t)(ns.Mkdir(ctx, meta.RootInode, "pq", 0o755, 0, 0))
	must[meta.Attr](t)(ns.Create(ctx, p.Inode, "in", meta.CreateRequest{Mode: 0o644}))
	must[meta.Attr](t)(ns.Create(ctx, q.Inode, "out", meta.CreateRequest{Mode: 0o644}))
	if err := ns.Rename(ctx, q.Inode, "out", p.Inode, "moved-in", 0); err != nil {
		t.Fatal(err)
	}
	// A change replicated from filer 77 carries its signature.
	peer := meta.WithSignatures(ctx, []int32{77})
	must[meta.Attr](t)(ns.Mkdir(peer, meta.RootInode, "from-peer", 0o755, 0, 0))
	must[meta.Attr](t)(ns.Mkdir(ctx, meta.RootInode, "last", 0o755, 0, 0))
	all := readLog(t, tf.s, 0)
	end := all[len(all)-1].TsNs

	notFromPeer.waitFor(t, end)
	got := notFromPeer.stop()
	var paths []string
	for _, ev := range got {
		paths = append(paths, ev.NewPath)
		if len(ev.Signatures) == 0 || ev.Signatures[len(ev.Signatures)-1] != own {
			t.Fatalf("event without this filer's signature: %+v", ev)
		}
	}
	if want := "/p /pq /p/in /pq/out /p/moved-in /last"; strings.Join(paths, " ") != want {
		t.Fatalf("signature-filtered paths %q, want %q", strings.Join(paths, " "), want)
	}

	// The prefix subscriber has seen everything up to "/last" once it
	// stops; the rename into /p counts (its new path is under it).
	tf.s.ns.Watermark()
	eventually(t, "prefix events", func() bool { evs, _ := prefixed.snapshot(); return len(evs) >= 3 })
	paths = nil
	for _, ev := range prefixed.stop() {
		paths = append(paths, ev.OldPath+">"+ev.NewPath)
	}
	if want := ">/p >/p/in /pq/out>/p/moved-in"; strings.Join(paths, " ") != want {
		t.Fatalf("prefix-filtered events %q, want %q", strings.Join(paths, " "), want)
	}

	// Every event passed through this filer, so its own signature sees
	// none of them; the stream stays open.
	if evs, err := fromSelf.snapshot(); len(evs) != 0 || err != nil {
		t.Fatalf("own-signature subscriber got %d events, err %v", len(evs), err)
	}
}

func TestSubscribeTrimmedIsExplicit(t *testing.T) {
	tf := startFiler(t, nil)
	ns, ctx := tf.s.ns, tf.ctx
	for i := range 5 {
		must[meta.Attr](t)(ns.Mkdir(ctx, meta.RootInode, fmt.Sprint("d", i), 0o755, 0, 0))
	}
	evs := readLog(t, tf.s, 0)
	if err := ns.TrimLog(ctx, evs[3].TsNs); err != nil {
		t.Fatal(err)
	}
	stream, err := tf.api.SubscribeMetadata(ctx, &filerpb.SubscribeMetadataRequest{SinceNs: 0})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, client.ErrPrecondition) ||
		!strings.Contains(err.Error(), "change log trimmed") || !strings.Contains(err.Error(), "resubscribe from") {
		t.Fatalf("trimmed subscription: %v", err)
	}
	// From the trim point on, nothing is missing.
	sub := subscribe(t, tf.api, &filerpb.SubscribeMetadataRequest{SinceNs: evs[2].TsNs})
	got := sub.waitFor(t, evs[4].TsNs)
	sameEvents(t, got, evs[3:])
}

func TestSubscribeSlowSubscriberIsCut(t *testing.T) {
	tf := startFiler(t, func(c *Config) { c.SubscriberTimeout = 20 * time.Millisecond })
	ns, ctx := tf.s.ns, tf.ctx
	for i := range feedQueue + 10 {
		must[meta.Attr](t)(ns.Mkdir(ctx, meta.RootInode, fmt.Sprint("d", i), 0o755, 0, 0))
	}
	unblock := make(chan struct{})
	defer close(unblock)
	sent := 0
	err := tf.s.subscribe(ctx, &filerpb.SubscribeMetadataRequest{}, func(*filerpb.MetadataEvent) error {
		sent++
		if sent == 1 {
			<-unblock // a stream that never drains
		}
		return nil
	})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "subscriber too slow") {
		t.Fatalf("slow subscriber: %v", err)
	}
}

func TestSubscribeEndsCleanlyOnClose(t *testing.T) {
	tf := startFiler(t, nil)
	stream, err := tf.api.SubscribeMetadata(tf.ctx, &filerpb.SubscribeMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	must[meta.Attr](t)(tf.s.ns.Mkdir(tf.ctx, meta.RootInode, "d", 0o755, 0, 0))
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := tf.s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after Close: %v, want io.EOF", err)
	}
}

func TestEventEncoding(t *testing.T) {
	ev := &meta.Event{Kind: meta.EventRename, TsNs: 9, OldPath: "/a", NewPath: "/b", Exchange: true,
		OldEntry: &meta.EntryState{Attr: meta.Attr{Inode: 20}}, NewEntry: &meta.EntryState{Attr: meta.Attr{Inode: 21}},
		FreedChunks: []meta.Chunk{{Size: 1, FileID: "3,01"}}, Signatures: []int32{1, 2}}
	pb := eventToPB(ev)
	if pb.Kind != filerpb.MetadataEvent_RENAME || !pb.Exchange || pb.OldEntry.Path != "/a" || pb.NewEntry.Path != "/a" ||
		pb.NewEntry.Attr.Inode != 21 || len(pb.FreedChunks) != 1 || pb.Replaced != nil || len(pb.Signatures) != 2 {
		t.Fatalf("encoded %+v", pb)
	}
	for _, c := range []struct {
		path, prefix string
		want         bool
	}{{"/a", "", true}, {"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/", "/a", false}} {
		if got := under(c.path, normPrefix(c.prefix)); got != c.want {
			t.Errorf("under(%q, %q) = %v", c.path, c.prefix, got)
		}
	}
}
