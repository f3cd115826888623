package filerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/filerd/store/badger"
	"github.com/kelpfs/kelp/filerd/store/storetest"
)

// manifestEnv is a filer on a fake master and a fake volume server that
// keeps blobs, with a gRPC client.
type manifestEnv struct {
	*httpEnv
	api filerpb.FilerClient
	ctx context.Context
}

func startManifestEnv(t *testing.T, mutate func(*Config)) *manifestEnv {
	t.Helper()
	e := startHTTP(t, mutate)
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: e.srv.GRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	return &manifestEnv{httpEnv: e, api: fc.API(), ctx: context.Background()}
}

// write stores data as a blob and commits it at off.
func (e *manifestEnv) write(t *testing.T, ino uint64, off int64, data []byte, mtime int64) {
	t.Helper()
	fid, _, err := e.srv.cluster.Write(e.ctx, data, client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.api.CommitChunks(e.ctx, &filerpb.CommitChunksRequest{Inode: ino,
		Chunks: []*filerpb.Chunk{{Offset: off, Size: int64(len(data)), FileId: fid, ModifiedNs: mtime}}})
	if err != nil {
		t.Fatal(err)
	}
}

// read returns a file's bytes as a client resolves GetChunks' answer.
func (e *manifestEnv) read(t *testing.T, ino uint64) []byte {
	t.Helper()
	gc, err := e.api.GetChunks(e.ctx, &filerpb.GetChunksRequest{Inode: ino})
	if err != nil {
		t.Fatal(err)
	}
	return e.resolve(t, gc)
}

func (e *manifestEnv) resolve(t *testing.T, gc *filerpb.GetChunksResponse) []byte {
	t.Helper()
	var cs []meta.Chunk
	for _, c := range gc.Chunks {
		if c.IsManifest {
			t.Fatalf("a manifest chunk reached a client: %v", c)
		}
		cs = append(cs, chunkFromPB(c))
	}
	out := make([]byte, gc.Attr.Size)
	for _, iv := range meta.VisibleIntervals(cs) {
		stop := min(iv.Stop, int64(len(out)))
		if stop <= iv.Start {
			continue
		}
		b, err := e.srv.cluster.ReadRange(e.ctx, iv.FileID, iv.ChunkOffset, stop-iv.Start)
		if err != nil {
			t.Fatal(err)
		}
		copy(out[iv.Start:stop], b)
	}
	return out
}

func (e *manifestEnv) rawChunks(t *testing.T, ino uint64) []meta.Chunk {
	t.Helper()
	c, err := e.srv.ns.GetContent(e.ctx, meta.Inode(ino))
	if err != nil {
		t.Fatal(err)
	}
	return c.Chunks
}

func hasManifest(cs []meta.Chunk) bool {
	return slices.ContainsFunc(cs, func(c meta.Chunk) bool { return c.IsManifest })
}

// blobs lists the fake volume's blobs.
func (e *manifestEnv) blobs() []string {
	e.vol.mu.Lock()
	defer e.vol.mu.Unlock()
	var out []string
	for fid := range e.vol.blobs {
		out = append(out, fid)
	}
	sort.Strings(out)
	return out
}

// referenced lists the blobs the files hold: data chunks, manifests and
// every chunk the manifests list.
func (e *manifestEnv) referenced(t *testing.T, inos ...uint64) []string {
	t.Helper()
	set := map[string]bool{}
	for _, ino := range inos {
		for _, c := range e.rawChunks(t, ino) {
			set[c.FileID] = true
			if !c.IsManifest {
				continue
			}
			// All it lists, also the chunks cut off by a truncate.
			inner, err := e.srv.manifests.ReadManifest(e.ctx, c.FileID)
			if err != nil {
				t.Fatal(err)
			}
			for _, ic := range inner {
				set[ic.FileID] = true
			}
		}
	}
	var out []string
	for fid := range set {
		out = append(out, fid)
	}
	sort.Strings(out)
	return out
}

// writeModel applies a write to the expected bytes of a file.
func writeModel(m []byte, off int64, data []byte) []byte {
	if end := int(off) + len(data); end > len(m) {
		m = append(m, make([]byte, end-len(m))...)
	}
	copy(m[off:], data)
	return m
}

// A file written in many overlapping pieces is folded into manifests as
// it grows past the threshold; every reader (GetChunks, OpenContent,
// HTTP GET with and without Range) sees exactly the written bytes, events
// carry manifest chunks that ResolveManifest expands, and unlinking the
// file deletes every blob, manifests and the chunks they list included.
func TestManifestFoldEndToEnd(t *testing.T) {
	e := startManifestEnv(t, func(c *Config) { c.ManifestThreshold, c.ManifestBatch = 8, 4 })
	api, ctx := e.api, e.ctx
	sub := subscribe(t, api, &filerpb.SubscribeMetadataRequest{})
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "big", Mode: 0o644}))
	ino := f.Attr.Inode
	rng := rand.New(rand.NewSource(3))
	var model []byte
	mtime := int64(1000)
	for i := range 60 {
		off := int64(rng.Intn(3000))
		if i%7 == 0 {
			off = int64(len(model)) // some appends at the end
		}
		data := randBytes(t, 1+rng.Intn(400))
		mtime++
		e.write(t, ino, off, data, mtime)
		model = writeModel(model, off, data)
		if i == 40 {
			size := uint64(len(model) / 2)
			must[*filerpb.AttrResponse](t)(api.SetAttr(ctx, &filerpb.SetAttrRequest{Inode: ino, Size: &size}))
			model = model[:size]
		}
		if got := e.read(t, ino); !bytes.Equal(got, model) {
			t.Fatalf("after write %d: the file reads differently from what was written", i)
		}
	}
	// A client's copy of the list from before the folds below stays
	// good: folding changes neither the content nor the generation (an
	// open naming it is answered "unchanged"), and keeps the blobs.
	before := must[*filerpb.GetChunksResponse](t)(api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: ino}))
	eventually(t, "a fold", func() bool { return hasManifest(e.rawChunks(t, ino)) })
	// The folder keeps up: the stored list is short.
	eventually(t, "folds down to the threshold", func() bool {
		raw := e.rawChunks(t, ino)
		n := 0
		for _, c := range raw {
			if !c.IsManifest {
				n++
			}
		}
		return n <= 8
	})
	if got := e.read(t, ino); !bytes.Equal(got, model) {
		t.Fatal("after folding the file reads differently")
	}
	oc := must[*filerpb.GetChunksResponse](t)(api.OpenContent(ctx, &filerpb.OpenRequest{Inode: ino}))
	if got := e.resolve(t, oc); !bytes.Equal(got, model) {
		t.Fatal("OpenContent reads differently")
	}
	must[*filerpb.Empty](t)(api.Release(ctx, &filerpb.ReleaseRequest{Inode: ino}))
	again := must[*filerpb.GetChunksResponse](t)(api.OpenContent(ctx, &filerpb.OpenRequest{Inode: ino, KnownGeneration: before.Attr.Generation}))
	if !again.Unchanged {
		t.Fatalf("folding moved the generation %d -> %d", before.Attr.Generation, again.Attr.GetGeneration())
	}
	must[*filerpb.Empty](t)(api.Release(ctx, &filerpb.ReleaseRequest{Inode: ino}))
	if got := e.resolve(t, before); !bytes.Equal(got, model) {
		t.Fatal("the chunk list from before the folds reads differently")
	}
	a := e.do(t, http.MethodGet, "/big", nil)
	if a.code != http.StatusOK || !bytes.Equal(a.body, model) {
		t.Fatalf("HTTP GET: %d, %d bytes (want %d)", a.code, len(a.body), len(model))
	}
	a = e.do(t, http.MethodGet, "/big", nil, "Range", "bytes=100-1099")
	if a.code != http.StatusPartialContent || !bytes.Equal(a.body, model[100:1100]) {
		t.Fatalf("HTTP range: %d", a.code)
	}

	// One more write: its event carries the stored list, manifests and all.
	mtime++
	data := randBytes(t, 10)
	e.write(t, ino, 5, data, mtime)
	model = writeModel(model, 5, data)
	evs := sub.waitFor(t, e.srv.ns.Watermark())
	last := evs[len(evs)-1]
	if last.Kind != filerpb.MetadataEvent_UPDATE || last.NewEntry == nil || last.NewParent != root || last.OldParent != root {
		t.Fatalf("last event %v", last)
	}
	var expanded []meta.Chunk
	sawManifest := false
	for _, c := range last.NewEntry.Chunks {
		if !c.IsManifest {
			expanded = append(expanded, chunkFromPB(c))
			continue
		}
		sawManifest = true
		r := must[*filerpb.ResolveManifestResponse](t)(api.ResolveManifest(ctx, &filerpb.ResolveManifestRequest{FileId: c.FileId}))
		// Cut to the manifest chunk's span, as filer.proto says.
		for _, ic := range r.Chunks {
			x := chunkFromPB(ic)
			if x.Offset >= c.Offset+c.Size {
				continue
			}
			x.Size = min(x.Size, c.Offset+c.Size-x.Offset)
			expanded = append(expanded, x)
		}
	}
	if !sawManifest {
		t.Fatal("the event carries no manifest chunk")
	}
	var evChunks []*filerpb.Chunk
	for _, c := range expanded {
		evChunks = append(evChunks, chunksToPB([]meta.Chunk{c})[0])
	}
	if got := e.resolve(t, &filerpb.GetChunksResponse{Attr: last.NewEntry.Attr, Chunks: evChunks}); !bytes.Equal(got, model) {
		t.Fatal("the event's chunks, expanded by the subscriber, read differently")
	}
	_, err := api.ResolveManifest(ctx, &filerpb.ResolveManifestRequest{FileId: "not a fid"})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	dataFid, _, err := e.srv.cluster.Write(ctx, []byte("hello, not a manifest"), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.ResolveManifest(ctx, &filerpb.ResolveManifestRequest{FileId: dataFid})
	wantErrno(t, err, "EIO", nil)
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("a blob that is no manifest: %v", err)
	}

	if r, err := e.srv.ns.Check(ctx); err != nil || !r.Clean() || r.Manifests == 0 {
		t.Fatalf("check: %v %s", err, r.String())
	}
	// Everything stored is referenced (plus the stray blob); unlinking
	// frees it all.
	eventually(t, "hidden chunks collected", func() bool {
		return slices.Equal(e.blobs(), sortedWith(e.referenced(t, ino), dataFid))
	})
	must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: root, Name: "big"}))
	eventually(t, "every blob deleted", func() bool { return slices.Equal(e.blobs(), []string{dataFid}) })
	// The collector forgets a manifest right after deleting its blob.
	eventually(t, "deleted manifests dropped from the cache", func() bool {
		m, _ := e.srv.manifests.len()
		return m == 0
	})
}

func sortedWith(s []string, more ...string) []string {
	out := append(append([]string(nil), s...), more...)
	sort.Strings(out)
	return out
}

// A manifest upload that fails abandons the fold: the file is unchanged,
// the blob id is collected, and the next commit folds.
func TestFoldUploadFailure(t *testing.T) {
	e := startManifestEnv(t, func(c *Config) { c.ManifestThreshold, c.ManifestBatch = 4, 4 })
	api, ctx := e.api, e.ctx
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "f", Mode: 0o644}))
	ino := f.Attr.Inode
	e.vol.mu.Lock()
	e.vol.failPutAt = 6 // five data blobs, then the manifest
	e.vol.mu.Unlock()
	var model []byte
	for i := range 5 {
		data := randBytes(t, 100)
		e.write(t, ino, int64(i)*100, data, int64(i+1))
		model = writeModel(model, int64(i)*100, data)
	}
	eventually(t, "the failed fold's blob collected", func() bool {
		pend, err := e.srv.ns.PendingDeletions(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, puts, _ := e.vol.stats()
		return puts >= 6 && len(pend) == 0
	})
	if hasManifest(e.rawChunks(t, ino)) || !bytes.Equal(e.read(t, ino), model) {
		t.Fatal("a failed fold changed the file")
	}
	data := randBytes(t, 100)
	e.write(t, ino, 500, data, 10)
	model = writeModel(model, 500, data)
	eventually(t, "a fold", func() bool { return hasManifest(e.rawChunks(t, ino)) })
	if !bytes.Equal(e.read(t, ino), model) {
		t.Fatal("the folded file reads differently")
	}
	eventually(t, "nothing leaked", func() bool { return slices.Equal(e.blobs(), e.referenced(t, ino)) })
	if r, err := e.srv.ns.Check(ctx); err != nil || !r.Clean() || r.FoldIntents != 0 {
		t.Fatalf("check: %v %s", err, r.String())
	}
}

// Every store failure point of a fold leaves the file's bytes as they
// were, and after a GC pass the volume holds exactly the blobs the files
// reference: no manifest blob leaked, none of a committed fold deleted.
func TestFoldStoreFaults(t *testing.T) {
	bc := badger.DefaultConfig()
	bc.InMemory = true
	bc.MinFreeBytes = 0
	bc.MemTableSize, bc.BlockCacheSize = 8<<20, 8<<20
	inner, err := badger.Open(bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	fs := storetest.NewFaulty(inner)
	e := startManifestEnv(t, func(c *Config) {
		c.Store = fs
		c.ManifestThreshold = 0 // no fold but the test's own
		c.GCInterval = time.Hour
	})
	ctx := e.ctx
	eventually(t, "the first log trim", func() bool { return e.srv.trimCutoff.Load() != 0 })
	var inos []uint64
	for _, ops := range []storetest.Op{storetest.OpWrite | storetest.OpCommit | storetest.OpGet | storetest.OpScan, storetest.OpCommitAck} {
		for n := 0; ; n++ {
			name := fmt.Sprintf("f-%v-%d", ops, n)
			f := must[*filerpb.EntryResponse](t)(e.api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: name, Mode: 0o644}))
			ino := f.Attr.Inode
			inos = append(inos, ino)
			var model []byte
			for i := range 5 {
				data := randBytes(t, 50)
				e.write(t, ino, int64(i)*40, data, int64(i+1))
				model = writeModel(model, int64(i)*40, data)
			}
			fs.FailAfter(ops, n, nil)
			before := fs.Injected()
			folded, err := e.srv.foldOnce(ctx, meta.Inode(ino), 3, 4)
			injected := fs.Injected() != before
			fs.Disarm()
			if !bytes.Equal(e.read(t, ino), model) {
				t.Fatalf("%s: the file reads differently after the fault", name)
			}
			if _, _, err := e.srv.collectGarbage(ctx); err != nil {
				t.Fatal(err)
			}
			if got, want := e.blobs(), e.referenced(t, inos...); !slices.Equal(got, want) {
				t.Fatalf("%s (folded %v, err %v): volume holds %v, files reference %v", name, folded, err, got, want)
			}
			if !injected {
				if err != nil || !folded {
					t.Fatalf("%s: fold without fault: %v %v", name, folded, err)
				}
				break
			}
		}
	}
	r, err := e.srv.ns.Check(ctx)
	if err != nil || !r.Clean() || r.FoldIntents != 0 || r.PendingDeletions != 0 {
		t.Fatalf("check: %v %s", err, r.String())
	}
}

// A filer that dies between writing a manifest blob and committing its
// fold leaves an intent; a later filer's GC expires it and deletes the
// blob.
func TestFoldIntentOfDeadFilerExpires(t *testing.T) {
	e := startManifestEnv(t, nil)
	ctx := e.ctx
	fid, _, err := e.srv.cluster.Write(ctx, []byte("half a fold"), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.ns.BeginFold(ctx, fid); err != nil {
		t.Fatal(err)
	}
	cfg := e.srv.cfg
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.intentMaxAge = time.Nanosecond
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	s.wakeGC()
	eventually(t, "the dead fold's blob deleted", func() bool { return !e.vol.has(fid) })
	if r, err := s.ns.Check(ctx); err != nil || !r.Clean() || r.FoldIntents != 0 {
		t.Fatalf("check: %v %s", err, r.String())
	}
}

func TestManifestCache(t *testing.T) {
	reads := 0
	blobs := map[string][]byte{}
	mk := func(fid string, n int) {
		var cs []meta.Chunk
		for i := range n {
			cs = append(cs, meta.Chunk{Offset: int64(i), Size: 1, FileID: fmt.Sprintf("%s-%d", fid, i)})
		}
		b, err := encodeManifest(cs)
		if err != nil {
			t.Fatal(err)
		}
		blobs[fid] = b
	}
	mk("a", 3)
	mk("b", 3)
	mk("c", 5)
	blobs["bad"] = []byte{0x08, 0x02} // version 2
	c := newManifestCache(6, func(_ context.Context, fid string) ([]byte, error) {
		reads++
		b, ok := blobs[fid]
		if !ok {
			return nil, fmt.Errorf("%s: %w", fid, client.ErrNotFound)
		}
		return b, nil
	})
	ctx := context.Background()
	get := func(fid string) []meta.Chunk {
		t.Helper()
		cs, err := c.ReadManifest(ctx, fid)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	if cs := get("a"); len(cs) != 3 || cs[2].FileID != "a-2" {
		t.Fatalf("a: %v", cs)
	}
	get("a")
	get("b")
	if reads != 2 {
		t.Fatalf("%d reads for two manifests", reads)
	}
	get("a") // a is now the most recent
	get("c") // 11 chunks > 6: b and then a go
	if m, n := c.len(); m != 1 || n != 5 {
		t.Fatalf("cache holds %d manifests, %d chunks", m, n)
	}
	get("c")
	if reads != 3 {
		t.Fatalf("%d reads", reads)
	}
	if _, err := c.ReadManifest(ctx, "bad"); !errors.Is(err, meta.ErrCorrupt) {
		t.Fatalf("a version 2 manifest: %v", err)
	}
	if _, err := c.ReadManifest(ctx, "missing"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a missing manifest: %v", err)
	}
	c.forget("c")
	if m, _ := c.len(); m != 0 {
		t.Fatal("forget kept it")
	}
	mk("huge", 7) // more than the whole cache: served, not kept
	get("huge")
	if m, _ := c.len(); m != 0 {
		t.Fatal("an oversized manifest was cached")
	}
}
