package filersync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// memBlobs is a cluster's blobs in memory; it counts writes and fails the
// writes and reads it is told to.
type memBlobs struct {
	mu        sync.Mutex
	blobs     map[string][]byte
	next      int
	writes    int
	failWrite int // the n-th write (1-based) fails; 0 never
	missing   map[string]bool
}

func newMemBlobs() *memBlobs {
	return &memBlobs{blobs: map[string][]byte{}, missing: map[string]bool{}}
}

func (m *memBlobs) Read(_ context.Context, fid string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[fid]
	if !ok || m.missing[fid] {
		return nil, fmt.Errorf("read %s: %w", fid, client.ErrNotFound)
	}
	return b, nil
}

func (m *memBlobs) Write(_ context.Context, data []byte) (string, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.writes == m.failWrite {
		return "", "", fmt.Errorf("write: %w", client.ErrUnavailable)
	}
	m.next++
	fid := fmt.Sprintf("1,%x", m.next)
	m.blobs[fid] = slices.Clone(data)
	return fid, needle.ETag(data), nil
}

func (m *memBlobs) Delete(_ context.Context, fid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[fid]; !ok {
		return fmt.Errorf("delete %s: %w", fid, client.ErrNotFound)
	}
	delete(m.blobs, fid)
	return nil
}

func (m *memBlobs) Close() error { return nil }

// fids lists the blobs held, sorted.
func (m *memBlobs) fids() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.blobs))
}

func (m *memBlobs) writeCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// copyEnv is a copier between two memBlobs, and a file of three chunks on
// the source.
type copyEnv struct {
	src, dst *memBlobs
	c        *copier
	want     []*filerpb.Chunk
	log      *slog.Logger
}

func newCopyEnv(t *testing.T, maxWrite int64) *copyEnv {
	t.Helper()
	e := &copyEnv{src: newMemBlobs(), dst: newMemBlobs(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	dst := &endpoint{addr: "dst", blobs: e.dst}
	if maxWrite > 0 {
		dst.proxied, dst.maxChunk = true, maxWrite
	}
	e.c = &copier{src: &endpoint{addr: "src", blobs: e.src}, dst: dst, sem: make(chan struct{}, 2), stats: &dirStats{}}
	var off int64
	for i, size := range []int{300, 500, 200} {
		data := []byte(fmt.Sprint(i))
		data = append(data, make([]byte, size-1)...)
		fid, etag, err := e.src.Write(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		e.want = append(e.want, &filerpb.Chunk{FileId: fid, Offset: off, Size: int64(size), Etag: etag})
		off += int64(size)
	}
	return e
}

// TestCopyRetryReusesCopies: an attempt that cannot read one chunk keeps
// the copies of the others for the event's next attempt, which copies
// only what is missing; once the chunk list is committed the event leaves
// nothing to delete, and only the committed blobs are on the target.
func TestCopyRetryReusesCopies(t *testing.T) {
	e := newCopyEnv(t, 0)
	ctx := context.Background()
	ev := &filerpb.MetadataEvent{}
	e.src.missing[e.want[1].FileId] = true
	for attempt := range 3 {
		_, err := e.c.copyChunks(ctx, e.want, nil, e.c.ledgerFor(ev, e.log))
		if !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("attempt %d: %v, want ErrNotFound", attempt, err)
		}
	}
	if w := e.dst.writeCount(); w != 2 {
		t.Fatalf("three failed attempts wrote %d blobs to the target, want the 2 readable ones once", w)
	}
	e.src.missing = map[string]bool{}
	got, err := e.c.copyChunks(ctx, e.want, nil, e.c.ledgerFor(ev, e.log))
	if err != nil {
		t.Fatal(err)
	}
	if w := e.dst.writeCount(); w != 3 {
		t.Fatalf("the attempt that succeeded brought the writes to %d, want 3", w)
	}
	for i, ch := range got {
		data, err := e.dst.Read(ctx, ch.FileId)
		if err != nil || ch.Offset != e.want[i].Offset || ch.Size != e.want[i].Size || needle.ETag(data) != e.want[i].Etag {
			t.Fatalf("chunk %d on the target: %+v (%v), want the bytes of %+v", i, ch, err, e.want[i])
		}
	}
	e.c.ledgerFor(ev, e.log).committed(ctx, got)
	e.c.eventDone(ctx, ev)
	if n := len(e.dst.fids()); n != 3 {
		t.Fatalf("after the commit the target holds %d blobs, want the 3 committed", n)
	}
}

// TestCopyEventSupersededDeletesCopies: what an event copied and never
// committed is deleted when it is done with (superseded, or the sync
// stopping), and a commit that may have been done keeps its blobs.
func TestCopyEventSupersededDeletesCopies(t *testing.T) {
	e := newCopyEnv(t, 0)
	ctx := context.Background()
	gone, stopped, unsure := &filerpb.MetadataEvent{}, &filerpb.MetadataEvent{}, &filerpb.MetadataEvent{}
	e.src.missing[e.want[2].FileId] = true
	for _, ev := range []*filerpb.MetadataEvent{gone, stopped} {
		if _, err := e.c.copyChunks(ctx, e.want, nil, e.c.ledgerFor(ev, e.log)); err == nil {
			t.Fatal("a copy with a missing chunk succeeded")
		}
	}
	if n := len(e.dst.fids()); n != 4 {
		t.Fatalf("two events copied %d blobs, want 2 each", n)
	}
	e.c.eventDone(ctx, gone)
	if n := len(e.dst.fids()); n != 2 {
		t.Fatalf("after one event was done the target holds %d blobs, want the other's 2", n)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	e.c.discardAll(canceled) // deletes even though the run's context ended
	if fids := e.dst.fids(); len(fids) != 0 {
		t.Fatalf("after the run the target holds %v", fids)
	}

	e.src.missing = map[string]bool{}
	l := e.c.ledgerFor(unsure, e.log)
	got, err := e.c.copyChunks(ctx, e.want, nil, l)
	if err != nil {
		t.Fatal(err)
	}
	l.forget(got[:1]) // its commit timed out: it may be the filer's
	e.c.eventDone(ctx, unsure)
	if fids := e.dst.fids(); len(fids) != 1 || fids[0] != got[0].FileId {
		t.Fatalf("after a commit of unknown outcome the target holds %v, want only its %s", fids, got[0].FileId)
	}
}

// TestCopyPartialBlobDeleted: a blob split for a target that takes less
// at once, whose copy fails halfway, leaves none of its pieces behind, and
// the retry copies it whole.
func TestCopyPartialBlobDeleted(t *testing.T) {
	e := newCopyEnv(t, 128)
	ctx := context.Background()
	want := e.want[1:2] // 500 bytes: 4 pieces
	e.dst.failWrite = 3
	l := newCopyLedger(e.dst, e.log)
	if _, err := e.c.copyChunks(ctx, want, nil, l); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("copy with a failing write: %v", err)
	}
	if fids := e.dst.fids(); len(fids) != 0 {
		t.Fatalf("a copy that failed halfway left %v on the target", fids)
	}
	got, err := e.c.copyChunks(ctx, want, nil, l)
	if err != nil || len(got) != 4 {
		t.Fatalf("retry: %d chunks, %v; want 4 pieces", len(got), err)
	}
	l.committed(ctx, got)
	l.discard(ctx)
	if n := len(e.dst.fids()); n != 4 {
		t.Fatalf("after the commit the target holds %d blobs, want the 4 pieces", n)
	}
}

// TestCopyLedgerSparesWhatTheFileNames: copies the target file turns out
// to name (a commit that answered an error after all went through) leave
// the ledger and are never deleted; an internal error is not taken for a
// refusal.
func TestCopyLedgerSparesWhatTheFileNames(t *testing.T) {
	e := newCopyEnv(t, 0)
	ctx := context.Background()
	ev := &filerpb.MetadataEvent{}
	l := e.c.ledgerFor(ev, e.log)
	got, err := e.c.copyChunks(ctx, e.want, nil, l)
	if err != nil {
		t.Fatal(err)
	}
	// The commit of the first two answered EIO but was stored: the retry
	// reads the file's chunks and finds them.
	l.spare(got[:2])
	e.c.eventDone(ctx, ev)
	if fids := e.dst.fids(); len(fids) != 2 || !slices.Contains(fids, got[0].FileId) || !slices.Contains(fids, got[1].FileId) {
		t.Fatalf("the target holds %v, want the two the file names (%s, %s)", fids, got[0].FileId, got[1].FileId)
	}
	var nilLedger *copyLedger
	nilLedger.spare(got) // no ledger: nothing to spare, no panic

	if commitRefused(fmt.Errorf("commit: %w", client.ErrInternal)) {
		t.Error("an internal error is taken for a refusal")
	}
	if !commitRefused(fmt.Errorf("commit: %w", client.ErrNotFound)) {
		t.Error("not found is not taken for a refusal")
	}
}
