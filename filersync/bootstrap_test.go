package filersync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// These tests run the bootstrap walk over fakeFiler (verify_test.go); the
// whole-cluster test is integration/filersync_bootstrap_test.go.

// walkRecorder is a visit function that records what it was given and
// checks the walker's promises as it goes.
type walkRecorder struct {
	mu      sync.Mutex
	order   []string          // source paths, in the order visits began
	dsts    map[string]string // source path -> target path
	done    map[string]bool   // source paths whose visit returned
	orphans []string          // visited before their parent's visit returned

	inflight, maxInflight atomic.Int64
	perInode              sync.Map // inode -> *atomic.Int64 of visits in flight
	linkOverlap           atomic.Bool

	fail func(src string) error // optional: what a visit returns
}

func newWalkRecorder() *walkRecorder {
	return &walkRecorder{dsts: map[string]string{}, done: map[string]bool{}}
}

func (w *walkRecorder) visit(ctx context.Context, src, dst string, a *filerpb.Attr) error {
	n := w.inflight.Add(1)
	defer w.inflight.Add(-1)
	for m := w.maxInflight.Load(); n > m && !w.maxInflight.CompareAndSwap(m, n); m = w.maxInflight.Load() {
	}
	if a.Nlink > 1 {
		c, _ := w.perInode.LoadOrStore(a.Inode, &atomic.Int64{})
		if c.(*atomic.Int64).Add(1) > 1 {
			w.linkOverlap.Store(true)
		}
		defer c.(*atomic.Int64).Add(-1)
	}
	w.mu.Lock()
	w.order = append(w.order, src)
	w.dsts[src] = dst
	if p := path.Dir(src); src != p && !w.done[p] && len(w.order) > 1 {
		w.orphans = append(w.orphans, src)
	}
	w.mu.Unlock()
	time.Sleep(200 * time.Microsecond) // let visits overlap
	var err error
	if w.fail != nil {
		err = w.fail(src)
	}
	w.mu.Lock()
	w.done[src] = true
	w.mu.Unlock()
	return err
}

// bigTree makes /src with dirs/files below it, a symlink, an excluded
// subtree, a file outside /src, and one inode with three names.
func bigTree(t *testing.T) (f *fakeFiler, want []string) {
	t.Helper()
	f = newFakeFiler(7) // short pages: listings take several calls
	want = []string{"/src"}
	for d := range 4 {
		for s := range 3 {
			dir := fmt.Sprintf("/src/d%d/s%d", d, s)
			for i := range 10 {
				f.file(fmt.Sprintf("%s/f%d", dir, i), 0o644, []byte("x"))
				want = append(want, fmt.Sprintf("%s/f%d", dir, i))
			}
			want = append(want, dir)
		}
		want = append(want, fmt.Sprintf("/src/d%d", d))
	}
	f.symlink("/src/link", "d0")
	f.file("/src/skip/x", 0o644, []byte("excluded"))
	f.file("/other/y", 0o644, []byte("outside"))
	want = append(want, "/src/link")
	// One inode under three names in three directories.
	f.file("/src/d0/hard", 0o644, []byte("linked"))
	f.edit("/src/d0/hard", func(n *fakeNode) { n.attr.Nlink = 3 })
	ino := f.lookup("/src/d0/hard").attr.Inode
	for _, d := range []string{"/src/d1", "/src/d2"} {
		f.edit(d, func(n *fakeNode) { n.children["hard"] = ino })
	}
	want = append(want, "/src/d0/hard", "/src/d1/hard", "/src/d2/hard")
	slices.Sort(want)
	return f, want
}

func TestTreeWalkerVisitsEachEntryOnce(t *testing.T) {
	f, want := bigTree(t)
	rec := newWalkRecorder()
	const slots = 4
	w := newTreeWalker(f, func(p string) bool { return under(p, "/src/skip") }, slots, rec.visit)
	st, err := w.walk(context.Background(), "/src", "/dst/there")
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(rec.order)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("visited (sorted):\n%v\nwant:\n%v", got, want)
	}
	for src, dst := range rec.dsts {
		if w := rebase(src, "/src", "/dst/there"); dst != w {
			t.Errorf("%s visited as %s, want %s", src, dst, w)
		}
	}
	if len(rec.orphans) > 0 {
		t.Errorf("visited before their directory was done: %v", rec.orphans)
	}
	if m := rec.maxInflight.Load(); m > slots+1 || m < 2 {
		// slots goroutines, plus the walk's own caller, at most.
		t.Errorf("at most %d visits at once, want 2..%d", m, slots+1)
	}
	if rec.linkOverlap.Load() {
		t.Error("names of one hard-linked inode visited at once")
	}
	if st.dirs != 1+4+12 || st.files != 120+3 || st.others != 1 || st.bytes != 120+3*6 {
		t.Errorf("stats %+v, want 17 dirs, 123 files, 1 other, 138 bytes", st)
	}
}

// A directory that vanished (visit says so) is not listed; the walk goes
// on. An error stops the walk and is returned, every goroutine done.
func TestTreeWalkerVanishedAndFailed(t *testing.T) {
	f, _ := bigTree(t)
	rec := newWalkRecorder()
	rec.fail = func(src string) error {
		if src == "/src/d1" {
			return errVanished
		}
		return nil
	}
	if _, err := newTreeWalker(f, func(string) bool { return false }, 3, rec.visit).walk(context.Background(), "/src", "/"); err != nil {
		t.Fatal(err)
	}
	for _, p := range rec.order {
		if strings.HasPrefix(p, "/src/d1/") {
			t.Fatalf("%s visited below a vanished directory", p)
		}
	}

	boom := errors.New("target says no")
	rec = newWalkRecorder()
	rec.fail = func(src string) error {
		if src == "/src/d2/s1/f3" {
			return boom
		}
		return nil
	}
	w := newTreeWalker(f, func(string) bool { return false }, 3, rec.visit)
	if _, err := w.walk(context.Background(), "/src", "/"); !errors.Is(err, boom) {
		t.Fatalf("walk: %v, want %v", err, boom)
	}
	if n := rec.inflight.Load(); n != 0 {
		t.Fatalf("%d visits still running after the walk returned", n)
	}
}

func TestTreeWalkerMissingRootAndListFailure(t *testing.T) {
	f, _ := bigTree(t)
	rec := newWalkRecorder()
	st, err := newTreeWalker(f, func(string) bool { return false }, 2, rec.visit).walk(context.Background(), "/nothing/here", "/")
	if err != nil || len(rec.order) != 0 || st != (walkStats{}) {
		t.Fatalf("missing root: %+v, %v, visited %v", st, err, rec.order)
	}
	f.down.Store(true)
	if _, err := newTreeWalker(f, func(string) bool { return false }, 2, rec.visit).walk(context.Background(), "/src", "/"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("source down: %v", err)
	}
}

// subFiler answers SubscribeMetadata from a script: for each call, the
// events (or the error) it streams.
type subFiler struct {
	*fakeFiler
	mu    sync.Mutex
	calls []*filerpb.SubscribeMetadataRequest
	reply func(req *filerpb.SubscribeMetadataRequest) ([]*filerpb.MetadataEvent, error)
}

func (f *subFiler) SubscribeMetadata(ctx context.Context, in *filerpb.SubscribeMetadataRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[filerpb.MetadataEvent], error) {
	f.mu.Lock()
	f.calls = append(f.calls, in)
	f.mu.Unlock()
	evs, err := f.reply(in)
	return &scriptedStream{ctx: ctx, evs: evs, err: err}, nil
}

type scriptedStream struct {
	grpc.ClientStream
	ctx context.Context
	evs []*filerpb.MetadataEvent
	err error
}

func (s *scriptedStream) Recv() (*filerpb.MetadataEvent, error) {
	if s.err != nil {
		return nil, s.err
	}
	if len(s.evs) == 0 {
		<-s.ctx.Done() // a live stream: nothing more until cancelled
		return nil, s.ctx.Err()
	}
	ev := s.evs[0]
	s.evs = s.evs[1:]
	return ev, nil
}

func testReplicator(src filerpb.FilerClient) *replicator {
	cfg := DefaultConfig()
	return newReplicator("a->b", &endpoint{addr: "a", api: src, sig: 11}, &endpoint{addr: "b", sig: 22},
		Side{Path: "/"}, Side{Path: "/"}, &cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// The position is the caught_up marker's timestamp (the source's
// watermark), from a subscription from this host's present time.
func TestSourcePosition(t *testing.T) {
	f := &subFiler{fakeFiler: newFakeFiler(0)}
	const wm = int64(1234567)
	f.reply = func(req *filerpb.SubscribeMetadataRequest) ([]*filerpb.MetadataEvent, error) {
		return []*filerpb.MetadataEvent{{TsNs: req.SinceNs + 1, NewPath: "/x"}, {CaughtUp: true, TsNs: wm}}, nil
	}
	r := testReplicator(f)
	before := time.Now()
	got, err := r.sourcePosition(context.Background())
	if err != nil || got != wm {
		t.Fatalf("position %d, %v; want %d", got, err, wm)
	}
	if c := f.calls[0]; !c.MarkCaughtUp || c.ClientSignature != 22 || c.SinceNs < before.UnixNano() || c.SinceNs > time.Now().UnixNano() {
		t.Fatalf("subscribed with %+v, want a caught_up marker, the target's signature, since now", c)
	}

	// Any other failure is returned at once.
	f.calls = nil
	f.reply = func(*filerpb.SubscribeMetadataRequest) ([]*filerpb.MetadataEvent, error) {
		return nil, fmt.Errorf("filer away: %w", client.ErrUnavailable)
	}
	if _, err := r.sourcePosition(context.Background()); !errors.Is(err, client.ErrUnavailable) || len(f.calls) != 1 {
		t.Fatalf("source down: %v after %d calls", err, len(f.calls))
	}
	f.reply = func(*filerpb.SubscribeMetadataRequest) ([]*filerpb.MetadataEvent, error) { return nil, io.EOF }
	if _, err := r.sourcePosition(context.Background()); err == nil || !strings.Contains(err.Error(), "caught_up") {
		t.Fatalf("stream ended early: %v", err)
	}
}

func TestBootstrapReason(t *testing.T) {
	r := testReplicator(newFakeFiler(0))
	for _, tc := range []struct {
		since int64
		ckpt  bool
		want  string
	}{{0, false, "beginning"}, {5, false, "-fromTsMs"}, {5, true, "events were lost"}} {
		if got := r.bootstrapReason(tc.since, tc.ckpt); !strings.Contains(got, tc.want) {
			t.Errorf("reason(%d, %v) = %q, want it to say %q", tc.since, tc.ckpt, got, tc.want)
		}
	}
}
