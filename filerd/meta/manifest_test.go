package meta

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/filerd/store/storetest"
)

var errBlobGone = errors.New("blob gone")

// blobSim stands in for the volume servers: the manifests written, and
// how many times each blob was deleted.
type blobSim struct {
	mu        sync.Mutex
	manifests map[string][]Chunk
	deleted   map[string]int
	reads     int
	next      int
}

func newBlobSim() *blobSim {
	return &blobSim{manifests: map[string][]Chunk{}, deleted: map[string]int{}}
}

func (b *blobSim) ReadManifest(_ context.Context, fid string) ([]Chunk, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads++
	m, ok := b.manifests[fid]
	if !ok || b.deleted[fid] > 0 {
		return nil, fmt.Errorf("manifest %s: %w", fid, errBlobGone)
	}
	return m, nil
}

func (b *blobSim) fid(prefix string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	return fmt.Sprintf("%s%d", prefix, b.next)
}

func (b *blobSim) del(fid string) {
	b.mu.Lock()
	b.deleted[fid]++
	b.mu.Unlock()
}

// gc runs the GC worker's rule over the queue: a manifest's listed blobs
// (minus Keep) first, then its blob; then acknowledges everything.
func (b *blobSim) gc(t testing.TB, ns *Namespace) {
	t.Helper()
	ctx := context.Background()
	pend, err := ns.PendingDeletions(ctx, 0)
	ok(t, err)
	var keys [][]byte
	for _, p := range pend {
		if p.Chunk.IsManifest {
			inner, err := b.ReadManifest(ctx, p.Chunk.FileID)
			if err == nil {
				seen := map[string]bool{}
				for _, c := range inner {
					if !seen[c.FileID] && !slices.Contains(p.Keep, c.FileID) {
						seen[c.FileID] = true
						b.del(c.FileID)
					}
				}
			}
		}
		b.del(p.Chunk.FileID)
		keys = append(keys, p.Key)
	}
	if len(keys) > 0 {
		ok(t, ns.AckDeletions(ctx, keys))
	}
}

// fold folds runs of ino as the filer's folder does, until PlanFold has
// none; it returns how many folds committed.
func (b *blobSim) fold(t testing.TB, ns *Namespace, ino Inode, threshold, batch int) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for {
		run, err := ns.PlanFold(ctx, ino, threshold, batch)
		ok(t, err)
		if run == nil {
			return n
		}
		fid := b.fid("m")
		ok(t, ns.BeginFold(ctx, fid))
		b.mu.Lock()
		b.manifests[fid] = run
		b.mu.Unlock()
		ok(t, ns.Fold(ctx, ino, run, ManifestChunk(fid, run)))
		n++
	}
}

func openNS(t testing.TB, st store.Store, tweak func(*Config)) *Namespace {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Signature = 7
	if tweak != nil {
		tweak(&cfg)
	}
	ns, err := Open(context.Background(), st, cfg)
	ok(t, err)
	return ns
}

// render returns, for each byte of a file of size bytes, the blob it
// reads from ("" for a hole), after expanding manifests.
func render(t testing.TB, ns *Namespace, ino Inode) ([]string, []Chunk) {
	t.Helper()
	c, err := ns.GetContent(context.Background(), ino)
	ok(t, err)
	cs, err := ExpandChunks(context.Background(), c.Chunks, ns.Config().Manifests)
	ok(t, err)
	out := make([]string, c.Attr.Size)
	for _, iv := range VisibleIntervals(cs) {
		for i := iv.Start; i < iv.Stop && i < int64(len(out)); i++ {
			out[i] = fmt.Sprintf("%s+%d", iv.FileID, iv.ChunkOffset+i-iv.Start)
		}
	}
	return out, cs
}

func TestManifestChunkAndExpand(t *testing.T) {
	run := []Chunk{{Offset: 10, Size: 5, FileID: "a", ModifiedNs: 3}, {Offset: 0, Size: 8, FileID: "b", ModifiedNs: 9},
		{Offset: 12, Size: 20, FileID: "c", ModifiedNs: 1}}
	m := ManifestChunk("m", run)
	if m != (Chunk{Offset: 0, Size: 32, FileID: "m", ModifiedNs: 9, IsManifest: true}) {
		t.Fatalf("manifest chunk %+v", m)
	}
	b := newBlobSim()
	b.manifests["m"] = run
	m.Size = 14 // truncated at 14: c is cut to 2 bytes
	got, err := ExpandChunks(context.Background(), []Chunk{{Offset: 40, Size: 1, FileID: "x"}, m, {Offset: 0, Size: 1, FileID: "y"}}, b)
	ok(t, err)
	want := []Chunk{{Offset: 40, Size: 1, FileID: "x"}, {Offset: 10, Size: 4, FileID: "a", ModifiedNs: 3}, run[1],
		{Offset: 12, Size: 2, FileID: "c", ModifiedNs: 1}, {Offset: 0, Size: 1, FileID: "y"}}
	if !slices.Equal(got, want) {
		t.Fatalf("expanded %+v\nwant %+v", got, want)
	}
	m.Size = 10 // c and a start past the end
	got, err = ExpandChunks(context.Background(), []Chunk{m}, b)
	ok(t, err)
	if !slices.Equal(got, []Chunk{run[1]}) {
		t.Fatalf("expanded %+v", got)
	}
	if _, err := ExpandChunks(context.Background(), []Chunk{m}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no reader: %v", err)
	}
	b.manifests["bad"] = []Chunk{{Offset: 0, Size: 1, FileID: "n", IsManifest: true}}
	if _, err := ExpandChunks(context.Background(), []Chunk{{Size: 1, FileID: "bad", IsManifest: true}}, b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("nested manifest: %v", err)
	}
	plain := []Chunk{{Size: 1, FileID: "p"}}
	if got, err := ExpandChunks(context.Background(), plain, nil); err != nil || &got[0] != &plain[0] {
		t.Fatalf("a plain list is returned as it is: %v", err)
	}
}

// TestFoldRandomMatchesUnfolded applies the same random writes, retried
// appends, truncates and rewrites to a namespace that folds manifests
// (threshold 3) and to one that never does: after every step both files
// read the same bytes, the folding one checks clean with its manifests
// expanded, and no blob it still uses was deleted. At the end, with both
// files unlinked and collected, every blob was deleted exactly once.
func TestFoldRandomMatchesUnfolded(t *testing.T) {
	ctx := context.Background()
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		rng := rand.New(rand.NewSource(seed))
		spread := []int{40, 120, 300}[seed%3] // dense overlaps to sparse files with holes
		b, bPlain := newBlobSim(), newBlobSim()
		A := openNS(t, newMemStore(), func(c *Config) { c.Manifests = b })
		B := openNS(t, newMemStore(), nil)
		fa, fb := mkfile(t, A, RootInode, "f"), mkfile(t, B, RootInode, "f")
		var written []string
		var appended []Chunk // since the last truncate or rewrite
		mtimes := map[int64]int{}
		clock := int64(100)
		newChunk := func() Chunk {
			switch r := rng.Intn(10); {
			case r < 5:
				clock += int64(1 + rng.Intn(3))
			case r < 7 && clock > 3: // a writer whose clock lags
				clock -= int64(1 + rng.Intn(3))
			} // else the same time as the last chunk: ties
			c := Chunk{Offset: int64(rng.Intn(spread)), Size: int64(1 + rng.Intn(30)), FileID: b.fid("d"), ModifiedNs: clock}
			written = append(written, c.FileID)
			mtimes[c.ModifiedNs]++
			return c
		}
		both := func(what string, fn func(ns *Namespace, ino Inode) error) {
			t.Helper()
			if err := fn(A, fa.Inode); err != nil {
				t.Fatalf("seed %d %s (folding): %v", seed, what, err)
			}
			if err := fn(B, fb.Inode); err != nil {
				t.Fatalf("seed %d %s (plain): %v", seed, what, err)
			}
		}
		folds := 0
		for step := 0; step < 80; step++ {
			what := ""
			switch r := rng.Intn(100); {
			case r < 50:
				var cs []Chunk
				for range 1 + rng.Intn(3) {
					cs = append(cs, newChunk())
				}
				appended = append(appended, cs...)
				what = fmt.Sprintf("append %v", cs)
				both(what, func(ns *Namespace, ino Inode) error { _, err := ns.AppendChunks(ctx, ino, cs, 0); return err })
			case r < 62:
				// A retried append of a chunk still whole in the file.
				_, list := render(t, B, fb.Inode)
				var cands []Chunk
				for _, c := range appended {
					if mtimes[c.ModifiedNs] == 1 && slices.Contains(list, c) {
						cands = append(cands, c)
					}
				}
				if len(cands) == 0 {
					continue
				}
				c := cands[rng.Intn(len(cands))]
				what = fmt.Sprintf("retry %v", c)
				both(what, func(ns *Namespace, ino Inode) error { _, err := ns.AppendChunks(ctx, ino, []Chunk{c}, 0); return err })
			case r < 70:
				a, err := B.GetAttr(ctx, fb.Inode)
				ok(t, err)
				size := uint64(rng.Int63n(int64(a.Size) + 1))
				what = fmt.Sprintf("truncate %d", size)
				appended = nil
				both(what, func(ns *Namespace, ino Inode) error {
					_, err := ns.SetAttr(ctx, ino, SetAttrRequest{Size: &size})
					return err
				})
			case r < 75:
				// A rewrite from the list a client reads, plus a new chunk.
				_, list := render(t, A, fa.Inode)
				list = append(list, newChunk())
				a, err := B.GetAttr(ctx, fb.Inode)
				ok(t, err)
				size := max(a.Size, uint64(list[len(list)-1].Offset+list[len(list)-1].Size))
				what = fmt.Sprintf("rewrite %d chunks", len(list))
				appended = nil
				both(what, func(ns *Namespace, ino Inode) error { _, err := ns.SetChunks(ctx, ino, list, size); return err })
			case r < 90:
				what = "fold"
				folds += b.fold(t, A, fa.Inode, 3, 2+rng.Intn(2))
			default:
				what = "gc"
				b.gc(t, A)
				bPlain.gc(t, B)
			}
			ra, la := render(t, A, fa.Inode)
			rb, _ := render(t, B, fb.Inode)
			if !slices.Equal(ra, rb) {
				t.Fatalf("seed %d step %d (%s): folding file reads\n%v\nplain file reads\n%v", seed, step, what, ra, rb)
			}
			c, err := A.GetContent(ctx, fa.Inode)
			ok(t, err)
			for _, ch := range append(la, c.Chunks...) {
				if b.deleted[ch.FileID] > 0 {
					t.Fatalf("seed %d step %d (%s): blob %s deleted while the file uses it", seed, step, what, ch.FileID)
				}
			}
			checkInvariants(t, A)
			checkInvariants(t, B)
		}
		if folds == 0 {
			t.Fatalf("seed %d: nothing folded", seed)
		}
		ok(t, A.Unlink(ctx, RootInode, "f"))
		b.gc(t, A)
		checkInvariants(t, A)
		for _, fid := range written {
			if n := b.deleted[fid]; n != 1 {
				t.Fatalf("seed %d: data blob %s deleted %d times", seed, fid, n)
			}
		}
		for fid := range b.manifests {
			if n := b.deleted[fid]; n != 1 {
				t.Fatalf("seed %d: manifest blob %s deleted %d times", seed, fid, n)
			}
		}
	}
}

// A fold whose run changed in between is refused and changes nothing;
// abandoning it queues the manifest blob alone; an expired intent makes a
// late Fold fail.
func TestFoldConflictsAndIntents(t *testing.T) {
	ctx := context.Background()
	b := newBlobSim()
	ns := openNS(t, newStore(t), func(c *Config) { c.Manifests = b })
	f := mkfile(t, ns, RootInode, "f")
	var cs []Chunk
	for i := range 6 {
		cs = append(cs, Chunk{Offset: int64(i) * 10, Size: 10, FileID: fmt.Sprintf("d%d", i), ModifiedNs: int64(i + 1)})
	}
	_, err := ns.AppendChunks(ctx, f.Inode, cs, 0)
	ok(t, err)
	if run, err := ns.PlanFold(ctx, f.Inode, 6, 4); err != nil || run != nil {
		t.Fatalf("plan at the threshold: %v %v", run, err)
	}
	run, err := ns.PlanFold(ctx, f.Inode, 5, 4)
	ok(t, err)
	if !slices.Equal(run, cs[:4]) {
		t.Fatalf("run %v", run)
	}
	ok(t, ns.BeginFold(ctx, "m1"))
	b.manifests["m1"] = run
	// A write hides chunk 1 before the fold commits.
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 10, Size: 10, FileID: "new", ModifiedNs: 50}}, 0)
	ok(t, err)
	before, err := ns.GetContent(ctx, f.Inode)
	ok(t, err)
	mustErr(t, ns.Fold(ctx, f.Inode, run, ManifestChunk("m1", run)), ErrFoldConflict)
	after, err := ns.GetContent(ctx, f.Inode)
	ok(t, err)
	if !slices.Equal(before.Chunks, after.Chunks) {
		t.Fatalf("a refused fold changed the list")
	}
	// Bad manifest chunks are refused outright.
	mustErr(t, ns.Fold(ctx, f.Inode, run, Chunk{FileID: "m1", IsManifest: true}), ErrInvalid)
	ok(t, ns.AbandonFold(ctx, "m1"))
	ok(t, ns.AbandonFold(ctx, "m1")) // once only
	pend, err := ns.PendingDeletions(ctx, 0)
	ok(t, err)
	var queued []string
	for _, p := range pend {
		queued = append(queued, p.Chunk.FileID)
		if p.Chunk.FileID == "m1" && p.Chunk.IsManifest {
			t.Fatalf("an abandoned fold queued its blob as a manifest: its chunks would go too")
		}
	}
	if !slices.Contains(queued, "m1") || slices.Contains(queued, "d0") {
		t.Fatalf("queue %v", queued)
	}

	// The fold again, from a fresh plan: it commits with no event.
	run, err = ns.PlanFold(ctx, f.Inode, 5, 4)
	ok(t, err)
	ok(t, ns.BeginFold(ctx, "m2"))
	b.manifests["m2"] = run
	wm := ns.Watermark()
	evs := len(allEvents(t, ns))
	ok(t, ns.Fold(ctx, f.Inode, run, ManifestChunk("m2", run)))
	if n := len(allEvents(t, ns)); n != evs {
		t.Fatalf("a fold logged %d events", n-evs)
	}
	if ns.Watermark() < wm {
		t.Fatalf("watermark went back")
	}
	a2, err := ns.GetAttr(ctx, f.Inode)
	ok(t, err)
	if a2.Generation != after.Attr.Generation || a2.Mtime != after.Attr.Mtime {
		t.Fatalf("a fold changed the attributes: %+v -> %+v", after.Attr, a2)
	}
	c, err := ns.GetContent(ctx, f.Inode)
	ok(t, err)
	if len(c.Chunks) != len(after.Chunks)-3 || !c.Chunks[0].IsManifest {
		t.Fatalf("after the fold: %+v", c.Chunks)
	}
	// The same fold twice: its intent is gone.
	mustErr(t, ns.Fold(ctx, f.Inode, run, ManifestChunk("m2", run)), ErrFoldConflict)
	checkInvariants(t, ns)

	// An intent left behind (a filer died mid-fold) expires.
	ok(t, ns.BeginFold(ctx, "m3"))
	r, err := ns.Check(ctx)
	ok(t, err)
	if r.FoldIntents != 1 || !r.Clean() {
		t.Fatalf("check with an intent: %s", r.String())
	}
	if n, err := ns.ExpireFolds(ctx, ns.Config().Clock()-int64(1e12)); err != nil || n != 0 {
		t.Fatalf("expire of a young intent: %d %v", n, err)
	}
	if n, err := ns.ExpireFolds(ctx, ns.Config().Clock()+1); err != nil || n != 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	run, err = ns.PlanFold(ctx, f.Inode, 1, 2)
	ok(t, err)
	if len(run) != 2 {
		t.Fatalf("run %v", run)
	}
	mustErr(t, ns.Fold(ctx, f.Inode, run, ManifestChunk("m3", run)), ErrFoldConflict)
	checkInvariants(t, ns)
}

// Unlinking, truncating and rewriting a folded file frees the manifest
// blob and every chunk it lists, except the blobs the file keeps.
func TestManifestGC(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		op       func(ns *Namespace, ino Inode, cs []Chunk) error
		keptData []int // indices of data chunks that must stay
		keepM    bool  // the manifest stays
	}{
		{"unlink", func(ns *Namespace, ino Inode, _ []Chunk) error { return ns.Unlink(ctx, RootInode, "f") }, nil, false},
		{"truncate-all", func(ns *Namespace, ino Inode, _ []Chunk) error {
			_, err := ns.SetAttr(ctx, ino, SetAttrRequest{Size: u64(0)})
			return err
		}, nil, false},
		{"truncate-into", func(ns *Namespace, ino Inode, _ []Chunk) error {
			_, err := ns.SetAttr(ctx, ino, SetAttrRequest{Size: u64(25)})
			return err
		}, []int{0, 1, 2, 3}, true},
		{"rewrite-keeping-two", func(ns *Namespace, ino Inode, cs []Chunk) error {
			_, err := ns.SetChunks(ctx, ino, []Chunk{cs[1], cs[3], {Offset: 0, Size: 10, FileID: "new", ModifiedNs: 99}}, 40)
			return err
		}, []int{1, 3}, false},
		{"overwrite-all", func(ns *Namespace, ino Inode, _ []Chunk) error {
			_, err := ns.AppendChunks(ctx, ino, []Chunk{{Offset: 0, Size: 40, FileID: "new", ModifiedNs: 99}}, 0)
			return err
		}, nil, false},
		{"inline", func(ns *Namespace, ino Inode, _ []Chunk) error {
			_, err := ns.SetInline(ctx, ino, []byte("x"))
			return err
		}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlobSim()
			ns := openNS(t, newStore(t), func(c *Config) { c.Manifests = b })
			f := mkfile(t, ns, RootInode, "f")
			var cs []Chunk
			for i := range 4 {
				cs = append(cs, Chunk{Offset: int64(i) * 10, Size: 10, FileID: fmt.Sprintf("d%d", i), ModifiedNs: int64(i + 1)})
			}
			_, err := ns.AppendChunks(ctx, f.Inode, cs, 0)
			ok(t, err)
			if b.fold(t, ns, f.Inode, 3, 4) != 1 {
				t.Fatal("no fold")
			}
			ok(t, tc.op(ns, f.Inode, cs))
			checkInvariants(t, ns)
			b.gc(t, ns)
			for i, c := range cs {
				want := 1
				if slices.Contains(tc.keptData, i) {
					want = 0
				}
				if b.deleted[c.FileID] != want {
					t.Fatalf("chunk %d (%s) deleted %d times, want %d", i, c.FileID, b.deleted[c.FileID], want)
				}
			}
			wantM := 1
			if tc.keepM {
				wantM = 0
			}
			if b.deleted["m1"] != wantM {
				t.Fatalf("manifest deleted %d times, want %d", b.deleted["m1"], wantM)
			}
			checkInvariants(t, ns)
		})
	}
}

// A retried append of a chunk folded since is not listed twice, so
// freeing either copy can never delete the other's bytes.
func TestRetriedAppendOfFoldedChunk(t *testing.T) {
	ctx := context.Background()
	b := newBlobSim()
	ns := openNS(t, newStore(t), func(c *Config) { c.Manifests = b })
	f := mkfile(t, ns, RootInode, "f")
	var cs []Chunk
	for i := range 4 {
		cs = append(cs, Chunk{Offset: int64(i) * 10, Size: 10, FileID: fmt.Sprintf("d%d", i), ModifiedNs: int64(i + 1)})
	}
	_, err := ns.AppendChunks(ctx, f.Inode, cs, 0)
	ok(t, err)
	b.fold(t, ns, f.Inode, 3, 3)
	reads := b.reads
	// A new write at the end reads no manifest.
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 40, Size: 10, FileID: "d4", ModifiedNs: 10}}, 0)
	ok(t, err)
	if b.reads != reads {
		t.Fatalf("an append past the manifests read %d manifests", b.reads-reads)
	}
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{cs[1]}, 0) // the retry
	ok(t, err)
	c, err := ns.GetContent(ctx, f.Inode)
	ok(t, err)
	for _, ch := range c.Chunks {
		if ch.FileID == cs[1].FileID {
			t.Fatalf("the folded chunk is listed again: %+v", c.Chunks)
		}
	}
	checkInvariants(t, ns)
	// Without a manifest reader such an append cannot be judged.
	ns2 := openNS(t, newStore(t), nil)
	f2 := mkfile(t, ns2, RootInode, "f")
	ok(t, ns2.st.Update(ctx, func(tx store.Tx) error {
		return tx.Set(dataKey(f2.Inode), encodeData(&fileData{Chunks: []Chunk{ManifestChunk("m", cs)}}))
	}))
	_, err = ns2.AppendChunks(ctx, f2.Inode, []Chunk{cs[0]}, 0)
	mustErr(t, err, ErrInvalid)
	// Clients never commit manifest chunks.
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Size: 1, FileID: "x", IsManifest: true}}, 0)
	mustErr(t, err, ErrInvalid)
}

// Every failure point of a fold (and of abandoning it) leaves the store as
// it was or the fold done; in either case, after AbandonFold, the manifest
// blob is either referenced or queued for deletion, never both, never
// neither.
func TestFoldFaults(t *testing.T) {
	ctx := context.Background()
	for _, ops := range []storetest.Op{storetest.OpWrite | storetest.OpCommit | storetest.OpGet | storetest.OpScan, storetest.OpCommitAck} {
		for n := 0; ; n++ {
			b := newBlobSim()
			fs := storetest.NewFaulty(newStore(t))
			ns := openNS(t, fs, func(c *Config) { c.Manifests = b })
			f := mkfile(t, ns, RootInode, "f")
			var cs []Chunk
			for i := range 4 {
				cs = append(cs, Chunk{Offset: int64(i) * 10, Size: 10, FileID: fmt.Sprintf("d%d", i), ModifiedNs: int64(i + 1)})
			}
			_, err := ns.AppendChunks(ctx, f.Inode, cs, 0)
			ok(t, err)
			want, _ := render(t, ns, f.Inode)
			fs.FailAfter(ops, n, nil)
			before := fs.Injected()
			run, err := ns.PlanFold(ctx, f.Inode, 3, 3)
			if err == nil {
				err = ns.BeginFold(ctx, "m1")
				if err == nil {
					b.manifests["m1"] = run
					err = ns.Fold(ctx, f.Inode, run, ManifestChunk("m1", run))
				}
			}
			injected := fs.Injected() != before
			fs.Disarm()
			if !injected {
				ok(t, err)
				break
			}
			if err == nil && ops != storetest.OpCommitAck {
				t.Fatalf("fault %v after %d: no error", ops, n)
			}
			ok(t, ns.AbandonFold(ctx, "m1"))
			got, _ := render(t, ns, f.Inode)
			if !slices.Equal(got, want) {
				t.Fatalf("fault %v after %d: content changed", ops, n)
			}
			c, err := ns.GetContent(ctx, f.Inode)
			ok(t, err)
			referenced := slices.ContainsFunc(c.Chunks, func(ch Chunk) bool { return ch.FileID == "m1" })
			pend, err := ns.PendingDeletions(ctx, 0)
			ok(t, err)
			queued := slices.ContainsFunc(pend, func(p PendingDeletion) bool { return p.Chunk.FileID == "m1" })
			_, began := b.manifests["m1"]
			if referenced == queued && (referenced || began) {
				t.Fatalf("fault %v after %d: manifest blob referenced %v, queued %v", ops, n, referenced, queued)
			}
			checkInvariants(t, ns)
		}
	}
}

func TestCompactChunksWithManifests(t *testing.T) {
	d := func(off, size int64, id string, ts int64) Chunk {
		return Chunk{Offset: off, Size: size, FileID: id, ModifiedNs: ts}
	}
	m := func(off, size int64, id string, ts int64) Chunk {
		c := d(off, size, id, ts)
		c.IsManifest = true
		return c
	}
	ids := func(cs []Chunk) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.FileID)
		}
		sort.Strings(s)
		return fmt.Sprint(s)
	}
	for _, tc := range []struct {
		in            []Chunk
		kept, dropped string
	}{
		// A newer chunk over the whole span drops the manifest.
		{[]Chunk{m(0, 10, "M", 5), d(0, 10, "a", 6)}, "[a]", "[M]"},
		// As new and later in the list: it beats every chunk inside.
		{[]Chunk{m(0, 10, "M", 5), d(0, 10, "a", 5)}, "[a]", "[M]"},
		// As new but earlier: chunks inside may win.
		{[]Chunk{d(0, 10, "a", 5), m(0, 10, "M", 5)}, "[M a]", "[]"},
		// Older: the manifest stays, and so does a (it may show in holes).
		{[]Chunk{m(0, 10, "M", 5), d(0, 10, "a", 4)}, "[M a]", "[]"},
		// A gap in the cover keeps the manifest.
		{[]Chunk{m(0, 10, "M", 5), d(0, 4, "a", 6), d(5, 5, "b", 6)}, "[M a b]", "[]"},
		{[]Chunk{m(0, 10, "M", 5), d(0, 5, "a", 6), d(5, 5, "b", 6)}, "[a b]", "[M]"},
		// A manifest never hides anything itself.
		{[]Chunk{d(0, 10, "a", 1), m(0, 10, "M", 5)}, "[M a]", "[]"},
		// Data chunks still hide each other.
		{[]Chunk{m(20, 10, "M", 5), d(0, 10, "a", 1), d(0, 10, "b", 2)}, "[M b]", "[a]"},
	} {
		kept, dropped := compactChunks(tc.in)
		if ids(kept) != tc.kept || ids(dropped) != tc.dropped {
			t.Errorf("%v: kept %s dropped %s, want %s %s", tc.in, ids(kept), ids(dropped), tc.kept, tc.dropped)
		}
	}
}

func TestFoldHint(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	hints := map[Inode]int{}
	ns := openNS(t, newStore(t), func(c *Config) {
		c.FoldThreshold = 3
		c.FoldHint = func(ino Inode) { mu.Lock(); hints[ino]++; mu.Unlock() }
	})
	f := mkfile(t, ns, RootInode, "f")
	for i := range 5 {
		_, err := ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: int64(i) * 10, Size: 10, FileID: fmt.Sprint(i), ModifiedNs: 1}}, 0)
		ok(t, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hints[f.Inode] != 2 {
		t.Fatalf("hints %v, want 2 for inode %d (the 4th and 5th chunk)", hints, f.Inode)
	}
}
