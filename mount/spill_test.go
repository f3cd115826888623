package mount

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A writer starved of buffer bytes for longer than squeezeAfter makes
// uploads still waiting for a slot move their bytes to disk and give the
// bytes back; the data stays readable from there.
func TestSpillWhileWaitingForUploadSlot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	sp, err := newSpillStore(dir, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := &FS{log: slog.New(slog.NewTextHandler(io.Discard, nil)), wbuf: newBudget(1 << 20),
		uploadSem: make(chan struct{}, 1), spill: sp, bgCtx: ctx}
	f := &file{fs: fs, ino: 7}
	f.cond = sync.NewCond(&f.mu)

	data := bytes.Repeat([]byte("kelp"), 256<<10) // 1 MiB
	if !fs.wbuf.tryAcquire(int64(len(data))) {
		t.Fatal("empty budget refused a chunk")
	}
	refs := []*chunkRef{{off: 0, size: 1 << 19, mem: data[:1<<19]}, {off: 1 << 19, size: 1 << 19, mem: data[1<<19:]}}
	fs.uploadSem <- struct{}{} // every upload slot busy

	charged := int64(len(data))
	got := make(chan struct{})
	go func() {
		defer close(got)
		fs.acquireUploadSlot(func() {
			if f.spillRefs(refs) {
				fs.wbuf.release(charged)
				charged = 0
			}
		})
	}()

	// The writer's view: over the cap, waiting for bytes.
	sig := fs.wbuf.releaseSignal()
	if fs.wbuf.tryAcquire(1) {
		t.Fatal("full budget granted more")
	}
	if err := fs.wbuf.wait(ctx, sig, 10*time.Millisecond); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if used := fs.wbuf.inUse(); used != 0 {
		t.Fatalf("budget in use after the queued upload spilled: %d, want 0", used)
	}
	f.mu.Lock()
	for i, r := range refs {
		if r.mem != nil || r.spill == nil {
			t.Errorf("ref %d: mem %v, spill %v: want it on disk only", i, r.mem != nil, r.spill != nil)
		}
	}
	f.mu.Unlock()
	if st := fs.BufferStats(); st.Spilled != int64(len(data)) || st.PeakSpilled != int64(len(data)) {
		t.Fatalf("stats %+v, want %d spilled", st, len(data))
	}

	// Reads find the bytes on disk.
	back := make([]byte, 1000)
	if err := refs[1].spill.readAt(back, 12345); err != nil {
		t.Fatal(err)
	}
	if want := data[1<<19+12345 : 1<<19+12345+1000]; !bytes.Equal(back, want) {
		t.Fatal("spilled bytes read back differ")
	}

	// The slot frees: the upload proceeds.
	<-fs.uploadSem
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("upload did not get the freed slot")
	}
	for _, r := range refs {
		r.spill.remove()
	}
	if st := fs.BufferStats(); st.Spilled != 0 {
		t.Fatalf("spilled after removing every file: %d", st.Spilled)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("spill dir after removal: %d entries, %v", len(ents), err)
	}
}

// A spill past the limit is refused and the bytes stay in memory.
func TestSpillLimit(t *testing.T) {
	sp, err := newSpillStore(filepath.Join(t.TempDir(), "spill"), 100)
	if err != nil {
		t.Fatal(err)
	}
	fs := &FS{log: slog.New(slog.NewTextHandler(io.Discard, nil)), spill: sp}
	f := &file{fs: fs}
	a := &chunkRef{mem: make([]byte, 60)}
	b := &chunkRef{mem: make([]byte, 60)}
	if f.spillRefs([]*chunkRef{a, b}) {
		t.Fatal("spilled 120 bytes into a 100-byte store")
	}
	if a.spill == nil || a.mem != nil || b.spill != nil || b.mem == nil {
		t.Fatalf("want the first on disk and the second in memory: a=(%v,%v) b=(%v,%v)", a.mem != nil, a.spill != nil, b.mem != nil, b.spill != nil)
	}
	if err := sp.close(); err != nil {
		t.Fatal(err)
	}
}
