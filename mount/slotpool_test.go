package mount

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kelpfs/kelp/cache"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// poolDir is a volume directory that assigns file ids on volume 1 of one
// in-process volume server.
type poolDir struct{ key atomic.Uint64 }

func (d *poolDir) Assign(ctx context.Context, req client.AssignRequest) (client.Assignment, error) {
	return client.Assignment{FileID: needle.FileID{VolumeID: 1, Key: d.key.Add(1), Cookie: 7}, Location: client.Location{URL: "local:1"}}, nil
}
func (d *poolDir) Lookup(ctx context.Context, vid uint32) ([]client.Location, error) {
	return []client.Location{{URL: "local:1"}}, nil
}
func (d *poolDir) Invalidate(vid uint32) {}

// poolBlobs stores uploads in memory, slowly and failing a share of them
// (fail, in percent), to mix uploads, retries and spills.
type poolBlobs struct {
	mu    sync.Mutex
	blobs map[string][]byte
	fail  atomic.Int32
}

func (b *poolBlobs) Upload(ctx context.Context, fid string, data []byte, opts client.UploadOptions) (client.UploadResult, error) {
	time.Sleep(time.Duration(rand.Intn(2000)) * time.Microsecond)
	if rand.Intn(100) < int(b.fail.Load()) {
		return client.UploadResult{}, fmt.Errorf("boom: %w", context.DeadlineExceeded)
	}
	c := bytes.Clone(data)
	b.mu.Lock()
	b.blobs[fid] = c
	b.mu.Unlock()
	return client.UploadResult{Size: int64(len(data)), ETag: "x"}, nil
}

func (b *poolBlobs) Read(ctx context.Context, fid string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.blobs[fid]
	if !ok {
		return nil, client.StatusError("read "+fid, 404, "not found")
	}
	return bytes.Clone(d), nil
}

// pat is file ino's content at off: every byte depends on both.
func pat(ino uint64, off int64, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		x := uint64(off+int64(i))*2654435761 + ino*97
		p[i] = byte(x >> 13)
	}
	return p
}

// TestSlotPoolBuffersNotReusedWhileHeld: six sequential writers of files
// with images (written beside the writers, filled after them, or a mix)
// share a pool of two chunk buffers, uploads fail at random
// (0, 10, 20%) and are retried or spilled, and readers read meanwhile.
// Every read, every uploaded blob and every image (filled from the blobs
// once written) must hold the file's bytes: a buffer given back to the
// pool while a chunk still pointed into it would show as another file's
// bytes.
func TestSlotPoolBuffersNotReusedWhileHeld(t *testing.T) {
	for round := 0; round < 3; round++ {
		runPoolStress(t, round)
	}
}

func runPoolStress(t *testing.T, round int) {
	s, _ := newTestImages(t, 1<<30)
	// Images written as the files are (their queue holds pool
	// buffers), filled afterwards, or some of each.
	s.inlineMax = []int{6, 0, 3}[round]
	sp, err := newSpillStore(filepath.Join(t.TempDir(), "spill"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fb := &poolBlobs{blobs: map[string][]byte{}}
	fb.fail.Store(int32(10 * round))
	cfg := Config{ChunkSizeMB: 1, OpTimeout: 10 * time.Second, WriteBufferMB: 8}
	fs := &FS{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), wbuf: newBudget(8 << 20), images: s,
		uploadSem: make(chan struct{}, 2), spill: sp, bgCtx: ctx,
		blobs: client.NewClusterVia(&poolDir{}, client.NewBlobClient(client.BlobClientConfig{Local: map[string]client.LocalBlobs{"local:1": fb}})),
		slots: newSlotPool(1<<20, 2), fetches: map[string]*fetchCall{}, fetchSem: make(chan struct{}, 4)}
	fs.cache, err = cache.New(cache.Config{MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const nfiles, size = 6, 8 << 20
	var wg sync.WaitGroup
	files := make([]*file, nfiles)
	for i := range files {
		files[i] = writer(fs, uint64(100+i), 1)
		files[i].size = 0
	}
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ino := uint64(100 + i)
			for off := int64(0); off < size; off += 64 << 10 {
				if e := f.write(ctx, pat(ino, off, 64<<10), off); e != 0 {
					t.Error(e)
					return
				}
			}
			f.mu.Lock()
			for {
				f.sealAllLocked()
				for f.inflight > 0 {
					f.cond.Wait()
				}
				any := false
				for _, r := range f.refs {
					if r.failed && (r.mem != nil || r.spill != nil) {
						any = true
						f.startUploadLocked([]*chunkRef{r}, 0)
					}
				}
				if !any {
					break
				}
				for f.inflight > 0 {
					f.cond.Wait()
				}
			}
			f.mu.Unlock()
		}()
	}
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	var okReads, badReads atomic.Int64
	for i, f := range files {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			ino := uint64(100 + i)
			p := make([]byte, 256<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				f.mu.Lock()
				sz := f.size
				f.mu.Unlock()
				if sz < 1<<20 {
					continue
				}
				off := rand.Int63n(sz - int64(len(p)))
				n, e := f.readAt(ctx, nil, p, off, rand.Intn(2) == 0)
				if e != 0 {
					continue
				}
				if !bytes.Equal(p[:n], pat(ino, off, n)) {
					badReads.Add(1)
				} else {
					okReads.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	fs.bg.Wait()
	t.Logf("reads ok %d bad %d", okReads.Load(), badReads.Load())
	if badReads.Load() > 0 {
		t.Fatal("bad reads")
	}
	pooled := 0
	for i, f := range files {
		ino := uint64(100 + i)
		f.mu.Lock()
		for _, r := range f.refs {
			if r.fid == "" {
				t.Fatalf("ref not uploaded")
			}
			fb.mu.Lock()
			got := fb.blobs[r.fid]
			fb.mu.Unlock()
			if !bytes.Equal(got, pat(ino, r.off, int(r.size))) {
				t.Fatalf("round %d ino %d: blob at %d corrupt", round, ino, r.off)
			}
		}
		f.mu.Unlock()
		fillNow(t, f) // the last writer closes
		s.mu.Lock()
		img := s.images[ino]
		s.mu.Unlock()
		if img == nil {
			t.Logf("ino %d: no image", ino)
			continue
		}
		s.mu.Lock()
		stale := img.stale
		s.mu.Unlock()
		if stale {
			t.Fatalf("round %d ino %d: image still stale after its fill", round, ino)
		}
		img.mu.Lock()
		img.settleLocked()
		b, err := os.ReadFile(img.path)
		img.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, pat(ino, 0, size)) {
			t.Fatalf("round %d ino %d: image corrupt", round, ino)
		}
		pooled++
	}
	fs.slots.mu.Lock()
	t.Logf("round %d: images %d, pool free %d", round, pooled, len(fs.slots.free))
	fs.slots.mu.Unlock()
}
