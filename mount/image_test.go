package mount

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeBacker records what the image store registers.
type fakeBacker struct {
	mu      sync.Mutex
	next    int32
	live    map[int32]int // id -> fd
	fail    syscall.Errno
	unregs  int
	badFree int              // unregistrations of ids not registered
	seen    map[int32][]byte // id -> the backing file's bytes when registered
}

func (b *fakeBacker) RegisterBacking(fd int) (int32, syscall.Errno) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != 0 {
		return 0, b.fail
	}
	if b.live == nil {
		b.live = make(map[int32]int)
	}
	b.next++
	b.live[b.next] = fd
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err == nil {
		buf := make([]byte, st.Size)
		if n, err := syscall.Pread(fd, buf, 0); err == nil {
			if b.seen == nil {
				b.seen = make(map[int32][]byte)
			}
			b.seen[b.next] = buf[:n]
		}
	}
	return b.next, 0
}

func (b *fakeBacker) UnregisterBacking(id int32) syscall.Errno {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.live[id]; !ok {
		b.badFree++
		return syscall.EINVAL
	}
	delete(b.live, id)
	b.unregs++
	return 0
}

func (b *fakeBacker) registered() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.live)
}

func newTestImages(t *testing.T, budget int64) (*imageStore, *fakeBacker) {
	t.Helper()
	s, err := newImageStore(filepath.Join(t.TempDir(), "images"), budget, -1, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBacker{}
	s.setBacker(b)
	t.Cleanup(func() { _ = s.close() })
	return s, b
}

// imageFS is an FS with just what writes into buffers need, and images.
func imageFS(s *imageStore) *FS {
	return &FS{cfg: Config{ChunkSizeMB: 16}, log: s.log, wbuf: newBudget(256 << 20), images: s}
}

// writer is a file of fs being written, empty at generation gen.
func writer(fs *FS, ino, gen uint64) *file {
	f := &file{fs: fs, ino: ino, attr: Attr{Ino: ino, Generation: gen}, dirty: make(map[int64]*slot), loaded: true}
	f.cond = sync.NewCond(&f.mu)
	fs.images.emptyAt(ino, gen)
	return f
}

// write puts data at off into f's buffers as Write does (no slot fills
// up in these tests, so nothing uploads).
func write(t *testing.T, f *file, data []byte, off int64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	need := f.growthLocked(off, int64(len(data)))
	if !f.fs.wbuf.tryAcquire(need) {
		t.Fatal("write buffer full")
	}
	f.writeLocked(data, off, need)
}

// seal turns f's write buffers into chunks as a flush does (without
// uploading them): their bytes reach the image.
func seal(f *file) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cs := f.fs.cfg.chunkSize()
	var refs []*chunkRef
	for idx, sl := range f.dirty {
		for _, r := range sl.runs {
			refs = append(refs, &chunkRef{off: idx*cs + r.start, size: r.end - r.start, mem: sl.buf[r.start:r.end], committed: true})
		}
		delete(f.dirty, idx)
	}
	f.refs = append(f.refs, refs...)
	f.ivsOK = false
	f.fs.images.sealed(f, refs)
}

// fillNow stands for the release of f's last writer: the image is filled
// from f; it waits for that.
func fillNow(t *testing.T, f *file) {
	t.Helper()
	s := f.fs.images
	s.writerClosed(f)
	s.mu.Lock()
	var done chan struct{}
	if img := s.images[f.ino]; img != nil {
		done = img.fillDone
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// commit stands for a flush by this mount answered with generation gen.
func commit(f *file, gen uint64) {
	seal(f)
	f.mu.Lock()
	f.attr.Generation = gen
	f.fs.images.committed(f.ino, gen)
	f.mu.Unlock()
}

// testFile is a file as open sees it: clean, at gen, size bytes, with
// opens handles counting the one being opened.
func testFile(ino, gen uint64, size int64, opens int) *file {
	return &file{ino: ino, attr: Attr{Ino: ino, Generation: gen}, size: size, opens: opens, dirty: make(map[int64]*slot)}
}

func imageBytes(t *testing.T, s *imageStore, ino uint64) []byte {
	t.Helper()
	s.mu.Lock()
	img := s.images[ino]
	s.mu.Unlock()
	if img == nil {
		t.Fatalf("inode %d has no image", ino)
	}
	// What was sealed is on its way to the file.
	img.mu.Lock()
	img.settleLocked()
	img.mu.Unlock()
	b, err := os.ReadFile(img.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imageServes says whether a read of f's first bytes through the mount
// would be served from its image.
func imageServes(s *imageStore, f *file) bool {
	p := make([]byte, 10)
	f.mu.Lock()
	defer f.mu.Unlock()
	return s.readAt(f, p, 0)
}

// noImageFiles checks the image directory is empty.
func noImageFiles(t *testing.T, s *imageStore) {
	t.Helper()
	if entries, _ := os.ReadDir(s.dir); len(entries) != 0 {
		t.Fatalf("%d files left in the image directory", len(entries))
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251)
	}
	return b
}

func TestImageStartsWhenAFreshFileGrowsBig(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	fs := imageFS(s)
	big := pattern(imageMinWrite, 1)

	f1 := writer(fs, 1, 5)
	write(t, f1, big[:100], 100) // not from offset 0
	write(t, f1, big, 0)
	f2 := writer(fs, 2, 5)
	write(t, f2, big[:4096], 0)
	write(t, f2, big, 8192) // a jump: not sequential
	f3 := writer(fs, 3, 5)
	f3.attr.Generation = 6 // changed since it was empty
	write(t, f3, big, 0)
	f4 := writer(fs, 4, 1)
	fs.images.changed(4) // never known empty
	write(t, f4, big, 0)
	if st := s.Stats(); st.Images != 0 {
		t.Fatalf("images = %d, want none", st.Images)
	}

	// Small sequential writes (as fio lays a file out) start an image
	// once they add up; a jump past the end leaves a hole of zeros.
	f5 := writer(fs, 5, 7)
	var want []byte
	for off := 0; off < 2*imageMinWrite; off += 4096 {
		write(t, f5, big[:4096], int64(off))
		want = append(want, big[:4096]...)
	}
	if st := s.Stats(); st.Images != 1 {
		t.Fatalf("images = %d after %d sequential bytes, want 1", st.Images, len(want))
	}
	write(t, f5, []byte("tail"), int64(len(want))+10)
	want = append(append(want, make([]byte, 10)...), "tail"...)
	// Nothing reads the image before its fill, which comes when the
	// last writer closes.
	p := make([]byte, 14)
	f5.mu.Lock()
	ok := s.readAt(f5, p, int64(len(want))-14)
	f5.mu.Unlock()
	if ok {
		t.Fatal("readAt served from an image not filled yet")
	}
	seal(f5)
	fillNow(t, f5)
	if got := imageBytes(t, s, 5); !bytes.Equal(got, want) {
		t.Fatalf("image holds %d bytes, want %d (the writes, a hole of zeros between)", len(got), len(want))
	}
	if st := s.Stats(); st.Images != 1 || st.Bytes != int64(len(want)) {
		t.Fatalf("stats = %+v, want 1 image of %d bytes", st, len(want))
	}
	// A file sized first (fio lays files out with fallocate) gets its
	// image at its first write, wherever it lands.
	f6 := writer(fs, 6, 3)
	f6.size = 1 << 20
	s.resized(6, 0, 1<<20)
	write(t, f6, big[:4096], 512<<10)
	seal(f6)
	fillNow(t, f6)
	want6 := make([]byte, 1<<20)
	copy(want6[512<<10:], big[:4096])
	if got := imageBytes(t, s, 6); !bytes.Equal(got, want6) {
		t.Fatalf("image of a file sized first holds %d bytes, want zeros around the write", len(got))
	}
	if st := s.Stats(); st.Images != 2 || st.Bytes != int64(len(want))+1<<20 || st.Filled != 2 {
		t.Fatalf("stats = %+v, want 2 images of %d bytes, both filled", st, len(want)+1<<20)
	}
	// What a handle that does not pass through reads comes from the
	// image while it is current.
	f5.mu.Lock()
	ok = s.readAt(f5, p, int64(len(want))-14)
	f5.mu.Unlock()
	if !ok || !bytes.Equal(p, want[len(want)-14:]) {
		t.Fatalf("readAt = %v %q, want the last 14 bytes", ok, p)
	}
}

func TestImageFollowsOwnCommitsAndTruncates(t *testing.T) {
	s, b := newTestImages(t, 64<<20)
	fs := imageFS(s)
	data := pattern(1<<20, 3)
	f := writer(fs, 9, 1)
	// An extension by fallocate before the first write keeps the file
	// all zeros, so it stays eligible, and the image takes the size.
	f.size = 2 << 20
	s.resized(9, 0, 2<<20)
	write(t, f, data, 0)
	commit(f, 2)
	fillNow(t, f)
	if got := imageBytes(t, s, 9); len(got) != 2<<20 || !bytes.Equal(got[:1<<20], data) || !bytes.Equal(got[1<<20:], make([]byte, 1<<20)) {
		t.Fatal("image is not the write followed by the zeros of the extension")
	}
	// A truncate by this mount, answered with the next generation.
	s.resized(9, 3, 1000)
	// A rename (a ctime change) by this mount.
	s.committed(9, 4)
	if id, direct := s.open(testFile(9, 4, 1000, 1), syscall.O_RDONLY); id == 0 || direct {
		t.Fatalf("open of a current image: id %d direct %v, want passthrough", id, direct)
	}
	if got := imageBytes(t, s, 9); !bytes.Equal(got, data[:1000]) {
		t.Fatalf("image after truncate holds %d bytes, want the first 1000 of the write", len(got))
	}
	s.released(9)
	if b.registered() != 0 || b.unregs != 1 {
		t.Fatalf("after the last release: %d registered, %d unregistered, want 0 and 1", b.registered(), b.unregs)
	}

	// A generation that skips one: someone else changed the file.
	s.committed(9, 6)
	if st := s.Stats(); st.Images != 0 || st.Invalidated != 1 || st.Bytes != 0 {
		t.Fatalf("after a foreign change: %+v, want the image dropped", st)
	}
	if id, _ := s.open(testFile(9, 6, 1000, 1), syscall.O_RDONLY); id != 0 {
		t.Fatal("open passed through to a dropped image")
	}
}

func TestImageOpenRules(t *testing.T) {
	s, b := newTestImages(t, 64<<20)
	data := pattern(imageMinWrite, 5)
	w := writer(imageFS(s), 1, 1)
	write(t, w, data, 0)
	s.committed(1, 2)
	n := int64(len(data))
	if id, _ := s.open(testFile(1, 2, n, 1), syscall.O_RDONLY); id != 0 {
		t.Fatal("passed through to an image not filled yet")
	}
	fillNow(t, w)

	for _, c := range []struct {
		name  string
		f     *file
		flags uint32
	}{
		{"writer", testFile(1, 2, n, 1), syscall.O_RDWR},
		{"O_DIRECT", testFile(1, 2, n, 1), syscall.O_RDONLY | syscall.O_DIRECT},
		{"another handle open", testFile(1, 2, n, 2), syscall.O_RDONLY},
		{"older generation", testFile(1, 1, n, 1), syscall.O_RDONLY},
		{"other size", testFile(1, 2, n+1, 1), syscall.O_RDONLY},
	} {
		if id, _ := s.open(c.f, c.flags); id != 0 {
			t.Fatalf("%s: passed through", c.name)
		}
	}
	dirty := testFile(1, 2, n, 1)
	dirty.metaDirty = true
	if id, _ := s.open(dirty, syscall.O_RDONLY); id != 0 {
		t.Fatal("passed through with unflushed local changes")
	}

	id, direct := s.open(testFile(1, 2, n, 1), syscall.O_RDONLY)
	if id == 0 || direct {
		t.Fatalf("reader: id %d direct %v, want passthrough", id, direct)
	}
	// While one handle passes through, every open names the backing
	// file; those that may not read the image get direct IO.
	if id2, direct2 := s.open(testFile(1, 2, n, 2), syscall.O_RDONLY); id2 != id || direct2 {
		t.Fatalf("second reader: id %d direct %v, want id %d passthrough", id2, direct2, id)
	}
	if id3, direct3 := s.open(testFile(1, 2, n, 3), syscall.O_WRONLY); id3 != id || !direct3 {
		t.Fatalf("writer beside readers: id %d direct %v, want id %d direct", id3, direct3, id)
	}
	// Changed elsewhere while in use: kept for the kernel, unusable.
	s.changed(1)
	if id4, direct4 := s.open(testFile(1, 3, n, 4), syscall.O_RDONLY); id4 != id || !direct4 {
		t.Fatalf("reader after a change: id %d direct %v, want id %d direct", id4, direct4, id)
	}
	for range 3 {
		s.released(1)
	}
	if b.registered() != 1 || s.Stats().Images != 1 {
		t.Fatal("backing file let go of while a handle still names it")
	}
	s.released(1)
	if b.registered() != 0 || b.badFree != 0 {
		t.Fatalf("after the last release: %d still registered, %d bad unregistrations", b.registered(), b.badFree)
	}
	if st := s.Stats(); st.Images != 0 || st.PassthroughOpens != 2 || st.DirectOpens != 2 {
		t.Fatalf("stats = %+v, want the stale image gone, 2 passthrough and 2 direct opens", st)
	}
	noImageFiles(t, s)
}

func TestImageBudgetEvictsIdleImages(t *testing.T) {
	s, _ := newTestImages(t, 3<<20)
	fs := imageFS(s)
	mb := pattern(1<<20, 7)
	for ino := uint64(1); ino <= 3; ino++ {
		w := writer(fs, ino, 1)
		write(t, w, mb, 0)
		s.committed(ino, 2)
		fillNow(t, w)
	}
	// Inode 1 is in use: it must survive whatever the others need.
	if id, _ := s.open(testFile(1, 2, 1<<20, 1), syscall.O_RDONLY); id == 0 {
		t.Fatal("no passthrough")
	}
	f4 := writer(fs, 4, 1)
	write(t, f4, mb, 0)
	st := s.Stats()
	if st.Images != 3 || st.Evicted != 1 || st.Bytes != 3<<20 {
		t.Fatalf("stats = %+v, want 3 images of 3 MiB after one eviction", st)
	}
	s.mu.Lock()
	_, has1 := s.images[1]
	_, has2 := s.images[2]
	s.mu.Unlock()
	if !has1 || has2 {
		t.Fatalf("evicted the wrong image: has 1 %v, has 2 %v (want the least recently used idle one, 2)", has1, has2)
	}
	// Growing past what eviction can free drops the growing image.
	write(t, f4, pattern(3<<20, 8), 1<<20)
	if st := s.Stats(); st.Bytes > 3<<20 {
		t.Fatalf("%d bytes of images over a %d budget", st.Bytes, 3<<20)
	}
	s.mu.Lock()
	_, has4 := s.images[4]
	s.mu.Unlock()
	if has4 {
		t.Fatal("an image grew past the budget")
	}
}

func TestImageRegistrationRefusedTurnsImagesOff(t *testing.T) {
	s, b := newTestImages(t, 64<<20)
	fs := imageFS(s)
	data := pattern(imageMinWrite, 9)
	w := writer(fs, 1, 1)
	write(t, w, data, 0)
	fillNow(t, w)
	b.fail = syscall.EPERM
	if id, _ := s.open(testFile(1, 1, int64(len(data)), 1), syscall.O_RDONLY); id != 0 {
		t.Fatal("passed through without a registration")
	}
	write(t, writer(fs, 2, 1), data, 0)
	if st := s.Stats(); st.Images != 0 {
		t.Fatalf("images = %d, want none once passthrough was refused", st.Images)
	}
	noImageFiles(t, s)
}

// While handles pass through to an image, it follows every change this
// mount makes to the file, even once it is no longer trusted for new
// opens: the readers must see a truncate or a write made beside them.
func TestImageInUseFollowsLocalChanges(t *testing.T) {
	s, _ := newTestImages(t, 1<<20)
	fs := imageFS(s)
	data := pattern(256<<10, 11)
	f := writer(fs, 1, 1)
	write(t, f, data, 0)
	commit(f, 2)
	fillNow(t, f)
	if id, _ := s.open(testFile(1, 2, int64(len(data)), 1), syscall.O_RDONLY); id == 0 {
		t.Fatal("no passthrough")
	}
	// A writer beside the reader makes the image untrusted; it stays,
	// and takes the writer's bytes at once (no seal needed).
	if _, direct := s.open(testFile(1, 2, int64(len(data)), 2), syscall.O_WRONLY); !direct {
		t.Fatal("writer beside a passthrough reader without direct IO")
	}
	s.resized(1, 3, 1000) // a truncate by this mount
	if got := imageBytes(t, s, 1); !bytes.Equal(got, data[:1000]) {
		t.Fatalf("image in use after a truncate holds %d bytes, want 1000", len(got))
	}
	f.size = 1000
	big := pattern(2<<20, 12) // past the budget: in use, so kept anyway
	write(t, f, big, 0)
	if got := imageBytes(t, s, 1); !bytes.Equal(got, big) {
		t.Fatalf("image in use after a write holds %d bytes, want the %d written", len(got), len(big))
	}
	if st := s.Stats(); st.Images != 1 || st.Bytes != int64(len(big)) {
		t.Fatalf("stats = %+v, want the image kept and charged %d bytes", st, len(big))
	}
	s.released(1)
	s.released(1)
	if st := s.Stats(); st.Images != 0 || st.Bytes != 0 {
		t.Fatalf("stats after the last release = %+v, want the untrusted image gone", st)
	}
}

// A chunk sealed before a file was marked empty (a write that raced the
// truncate) keeps the file from getting an image that would miss it.
func TestImageNotStartedOverEarlierSealedChunks(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	fs := imageFS(s)
	f := writer(fs, 1, 1)
	f.mu.Lock()
	f.refs = append(f.refs, &chunkRef{off: 1 << 20, size: 4096, mem: pattern(4096, 1)}) // sealed, uploading
	f.size = 2 << 20
	f.mu.Unlock()
	write(t, f, pattern(imageMinWrite, 2), 0)
	if st := s.Stats(); st.Images != 0 {
		t.Fatalf("images = %d, want none: the image would lack the sealed chunk", st.Images)
	}
}

// While a handle passes through, sealed bytes reach the image in the
// background, in order with the image's other changes, and all of them
// before another open may read it.
func TestImageQueuedWritesKeepOrder(t *testing.T) {
	s, b := newTestImages(t, 64<<20)
	fs := imageFS(s)
	f := writer(fs, 9, 3)
	want := pattern(imageMinWrite, 200)
	write(t, f, want, 0)
	commit(f, 4)
	fillNow(t, f)
	f.mu.Lock()
	f.metaDirty = false
	f.opens = 1
	id, _ := fs.images.open(f, syscall.O_RDONLY)
	f.mu.Unlock()
	if id == 0 {
		t.Fatal("no passthrough")
	}
	b.mu.Lock()
	seen := b.seen[id]
	b.mu.Unlock()
	if !bytes.Equal(seen, want) {
		t.Fatalf("the kernel got a backing file of %d bytes, want the %d filled", len(seen), len(want))
	}
	for i := range 8 {
		p := pattern(imageMinWrite, byte(i))
		write(t, f, p, int64(len(want)))
		want = append(want, p...)
		seal(f) // queued
	}
	// A truncate waits for what was queued before it.
	fs.images.resized(9, 0, int64(len(want))-1000)
	f.mu.Lock()
	f.size = int64(len(want)) - 1000
	f.mu.Unlock()
	want = want[:len(want)-1000]
	if got := imageBytes(t, s, 9); !bytes.Equal(got, want) {
		t.Fatalf("image after seals then a truncate: %d bytes, want %d (equal %v)", len(got), len(want), bytes.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]))
	}
	for i := range 4 {
		p := pattern(imageMinWrite, byte(100+i))
		write(t, f, p, int64(len(want)))
		want = append(want, p...)
		seal(f)
	}
	f.mu.Lock()
	f.attr.Generation = 5
	f.metaDirty = false // as a flush leaves it
	fs.images.committed(9, 5)
	f.opens = 2
	id2, direct := fs.images.open(f, syscall.O_RDONLY)
	f.mu.Unlock()
	if id2 != id || direct {
		t.Fatalf("second open = %d, %v; want passthrough to %d", id2, direct, id)
	}
	if got := imageBytes(t, s, 9); !bytes.Equal(got, want) {
		t.Fatalf("image holds %d bytes, want all %d sealed", len(got), len(want))
	}
	if st := s.Stats(); st.Filled != 1 {
		t.Fatalf("filled %d times, want once (the writes came through the queue)", st.Filled)
	}
}

// readerAndWriter makes file ino of fs, written and committed by this
// mount, then opens it read-only (passing through to its image) and for
// writing beside that reader (which gets the image as backing file).
func readerAndWriter(t *testing.T, fs *FS, ino uint64) *file {
	t.Helper()
	f := writer(fs, ino, 3)
	write(t, f, pattern(imageMinWrite, 1), 0)
	commit(f, 4)
	fillNow(t, f)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metaDirty = false
	f.opens = 1
	rid, _ := fs.images.open(f, syscall.O_RDONLY)
	f.opens = 2
	wid, direct := fs.images.open(f, syscall.O_RDWR)
	if rid == 0 || wid != rid || !direct {
		t.Fatalf("reader %d, writer %d direct %v: want the writer on the reader's backing file", rid, wid, direct)
	}
	return f
}

// A writer's handle on a passthrough file maps the image; what its
// mapping wrote is told apart from the file while the image follows the
// file's generations, and not once another client changed the file.
func TestImageMappedByAWriter(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	readerAndWriter(t, imageFS(s), 11)
	if s.mapped(11) == nil {
		t.Fatal("a writer shares the backing file: its mapping may write the image")
	}
	s.committed(11, 5) // the writer's own commit
	if s.mapped(11) == nil {
		t.Fatal("after this mount's commit the image still tells the mapping's bytes")
	}
	s.changed(11) // another client
	if s.mapped(11) != nil {
		t.Fatal("after another client's change the image no longer tells the mapping's bytes")
	}
}

// An image whose queued write failed lacks bytes of the file: it is
// never read again, and a writer's mapping of it can no longer be told
// apart from the file.
func TestImageFailedWriteIsNotTrusted(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	f := readerAndWriter(t, imageFS(s), 12)
	if s.mapped(12) == nil {
		t.Fatal("setup: want a passthrough reader and a writer mapping the image")
	}
	// The image file turns unwritable behind the store's back.
	s.mu.Lock()
	img := s.images[12]
	s.mu.Unlock()
	ro, err := os.Open(img.path)
	if err != nil {
		t.Fatal(err)
	}
	img.mu.Lock()
	rw := img.fd
	img.fd = ro
	img.mu.Unlock()
	defer rw.Close()
	write(t, f, pattern(imageMinWrite, 2), imageMinWrite)
	seal(f) // queued; its write fails
	img.mu.Lock()
	img.settleLocked()
	img.mu.Unlock()
	if !img.broken.Load() {
		t.Fatal("a failed queued write left the image trusted")
	}
	if imageServes(s, f) {
		t.Fatal("read served from an image that lacks bytes")
	}
	if img, lost := s.mappedOrLost(12); img != nil || !lost {
		t.Fatalf("mappedOrLost = %v, %v; want the mapping's bytes reported lost", img, lost)
	}
}

// An image is written from its file once the last writer closes; writes
// while nobody passes through make it stale again until the next fill.
func TestImageFillAfterWritersClose(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	fs := imageFS(s)
	f := writer(fs, 3, 1)
	first := pattern(256<<10, 21)
	write(t, f, first, 0)
	commit(f, 2)
	f.mu.Lock()
	f.metaDirty = false
	f.mu.Unlock()
	opened := func(what string, want bool) {
		t.Helper()
		f.mu.Lock()
		f.opens = 1
		id, _ := s.open(f, syscall.O_RDONLY)
		f.mu.Unlock()
		if (id != 0) != want {
			t.Fatalf("%s: passthrough %v, want %v", what, id != 0, want)
		}
		if id != 0 {
			s.released(f.ino)
		}
	}
	opened("before the fill", false)
	if st := s.Stats(); st.Filled != 0 || st.Images != 1 {
		t.Fatalf("before the fill: %+v, want one image, not filled", st)
	}
	fillNow(t, f)
	opened("after the fill", true)
	if got := imageBytes(t, s, 3); !bytes.Equal(got, first) {
		t.Fatalf("filled image holds %d bytes, want the %d written", len(got), len(first))
	}

	// A rewrite of part of it, with no handle passing through.
	second := pattern(64<<10, 22)
	write(t, f, second, 100<<10)
	commit(f, 3)
	f.mu.Lock()
	f.metaDirty = false
	f.mu.Unlock()
	opened("after a rewrite, before its fill", false)
	if imageServes(s, f) {
		t.Fatal("readAt served from a stale image")
	}
	fillNow(t, f)
	want := bytes.Clone(first)
	copy(want[100<<10:], second)
	if got := imageBytes(t, s, 3); !bytes.Equal(got, want) {
		t.Fatal("image after the second fill is not the rewritten file")
	}
	opened("after the second fill", true)
	if st := s.Stats(); st.Filled != 2 {
		t.Fatalf("filled %d times, want 2", st.Filled)
	}

	// A truncate while a fill is in flight leaves the image stale: the
	// fill may be writing past the new size.
	s.mu.Lock()
	img := s.images[3]
	img.fillDone = make(chan struct{})
	s.mu.Unlock()
	s.resized(3, 0, 1000)
	s.mu.Lock()
	stale := img.stale
	img.fillDone = nil
	s.mu.Unlock()
	if !stale {
		t.Fatal("a truncate during a fill left the image current")
	}
}

// A fill writes zeros as holes, and a range that became zeros reads as
// zeros afterwards.
func TestImageFillKeepsHoles(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	fs := imageFS(s)
	f := writer(fs, 4, 1)
	const size = 8 << 20
	f.size = size
	s.resized(4, 0, size)
	data := pattern(64<<10, 31)
	write(t, f, data, 0)
	write(t, f, data, 4<<20)
	seal(f)
	fillNow(t, f)
	want := make([]byte, size)
	copy(want, data)
	copy(want[4<<20:], data)
	if got := imageBytes(t, s, 4); !bytes.Equal(got, want) {
		t.Fatal("filled image is not the writes among zeros")
	}
	s.mu.Lock()
	path := s.images[4].path
	s.mu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 1<<20 {
		t.Fatalf("image of %d bytes uses %d bytes of disk, want the holes left holes", size, used)
	}
	// Zeros written over data: the next fill punches them out.
	write(t, f, make([]byte, len(data)), 4<<20)
	seal(f)
	fillNow(t, f)
	clear(want[4<<20:])
	if got := imageBytes(t, s, 4); !bytes.Equal(got, want) {
		t.Fatal("a range rewritten with zeros does not read as zeros from the image")
	}
}

// A read-only open waits for a fill in progress (so it can pass
// through), but not past its context or imageFillWait.
func TestImageAwaitFill(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	fs := imageFS(s)
	f := writer(fs, 5, 1)
	write(t, f, pattern(imageMinWrite, 41), 0)
	seal(f)
	// No fill queued (a writer still open): no wait.
	s.awaitFill(context.Background(), 5)
	s.mu.Lock()
	img := s.images[5]
	img.fillDone = make(chan struct{}) // stands for a fill running
	done := img.fillDone
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	s.awaitFill(ctx, 5)
	if waited := time.Since(start); waited < 40*time.Millisecond || waited > imageFillWait {
		t.Fatalf("waited %v for a fill that did not end, want the context's 50ms", waited)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.mu.Lock()
		img.fillDone = nil
		s.mu.Unlock()
		close(done)
	}()
	start = time.Now()
	s.awaitFill(context.Background(), 5)
	if waited := time.Since(start); waited > imageFillWait/2 {
		t.Fatalf("waited %v, want until the fill ended", waited)
	}
	if st := s.Stats(); st.FillWaits != 2 {
		t.Fatalf("fill waits = %d, want 2", st.FillWaits)
	}
}

// With a core to spare (inlineMax), an image takes its writer's bytes as
// they are sealed and is current when the writer closes, no fill needed;
// images written beyond that wait for their fill; a writer's close gives
// its place back.
func TestImageInlineWhileCoresSpare(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	s.inlineMax = 1
	fs := imageFS(s)
	a, b := writer(fs, 1, 1), writer(fs, 2, 1)
	da, db := pattern(256<<10, 51), pattern(256<<10, 52)
	for off := 0; off < len(da); off += 4096 {
		write(t, a, da[off:off+4096], int64(off))
		write(t, b, db[off:off+4096], int64(off))
	}
	commit(a, 2)
	commit(b, 2)
	for _, f := range []*file{a, b} {
		f.mu.Lock()
		f.metaDirty = false
		f.mu.Unlock()
	}
	passes := func(f *file) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.opens = 1
		id, _ := s.open(f, syscall.O_RDONLY)
		if id != 0 {
			s.released(f.ino)
		}
		return id != 0
	}
	if !passes(a) {
		t.Fatal("the inline image is not current after its writes were sealed")
	}
	if got := imageBytes(t, s, 1); !bytes.Equal(got, da) {
		t.Fatal("the inline image does not hold the writes")
	}
	if passes(b) {
		t.Fatal("the second image, written beside the first, passed through before its fill")
	}
	fillNow(t, b)
	if !passes(b) || !bytes.Equal(imageBytes(t, s, 2), db) {
		t.Fatal("the second image is not current after its fill")
	}
	fillNow(t, a) // a's writer closes: its place goes back
	if st := s.Stats(); st.Filled != 1 {
		t.Fatalf("filled %d, want 1 (only the second image)", st.Filled)
	}
	c := writer(fs, 3, 1)
	dc := pattern(imageMinWrite, 53)
	write(t, c, dc, 0)
	seal(c)
	s.mu.Lock()
	inline := s.images[3] != nil && s.images[3].inline && !s.images[3].stale
	s.mu.Unlock()
	if !inline {
		t.Fatal("a file written after the first writer closed did not get its place")
	}
}

// A writer whose file goes unwritten for inlineIdle gives its inline
// place to the next writer: its image stays current until its file is
// written again, and goes stale then if no place is free.
func TestImageInlinePlaceOfAnIdleWriter(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	s.inlineMax = 1
	setIdle := func(d time.Duration) {
		s.mu.Lock()
		s.inlineIdle = d
		s.mu.Unlock()
	}
	state := func(ino uint64) (inline, stale bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		img := s.images[ino]
		if img == nil {
			t.Fatalf("inode %d has no image", ino)
		}
		return img.inline, img.stale
	}
	passes := func(f *file) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.metaDirty = false
		f.opens = 1
		id, _ := s.open(f, syscall.O_RDONLY)
		if id != 0 {
			s.released(f.ino)
		}
		return id != 0
	}
	fs := imageFS(s)
	setIdle(time.Hour)
	a, b, c := writer(fs, 1, 1), writer(fs, 2, 1), writer(fs, 3, 1)
	da, db, dc := pattern(imageMinWrite, 61), pattern(imageMinWrite, 62), pattern(imageMinWrite, 63)
	write(t, a, da, 0)
	commit(a, 2)
	write(t, b, db, 0)
	commit(b, 2)
	if in, stale := state(1); !in || stale {
		t.Fatalf("first writer: inline %v stale %v, want its image inline and current", in, stale)
	}
	if in, stale := state(2); in || !stale {
		t.Fatalf("second writer, a's place busy: inline %v stale %v, want a stale image", in, stale)
	}

	setIdle(0) // a has not written since: idle
	write(t, c, dc, 0)
	commit(c, 2)
	if in, stale := state(3); !in || stale {
		t.Fatalf("writer after an idle one: inline %v stale %v, want a's place", in, stale)
	}
	if in, stale := state(1); in || stale {
		t.Fatalf("idle writer: inline %v stale %v, want its place gone and its image still current", in, stale)
	}
	if !passes(a) || !bytes.Equal(imageBytes(t, s, 1), da) {
		t.Fatal("the idle writer's image does not serve its bytes")
	}
	if !passes(c) || !bytes.Equal(imageBytes(t, s, 3), dc) {
		t.Fatal("the new inline image does not serve its bytes")
	}

	setIdle(time.Hour) // c is busy now
	da2 := pattern(imageMinWrite, 64)
	write(t, a, da2, 0)
	commit(a, 3)
	if in, stale := state(1); in || !stale {
		t.Fatalf("idle writer written again, no place free: inline %v stale %v, want stale", in, stale)
	}
	if passes(a) {
		t.Fatal("a stale image passed through")
	}
	fillNow(t, a)
	if !passes(a) || !bytes.Equal(imageBytes(t, s, 1), da2) {
		t.Fatal("the rewritten file's image is not current after its fill")
	}
	s.mu.Lock()
	n := len(s.inliners)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d inline places taken, want 1 (c's)", n)
	}
}

// blockFills queues a fill of another image (inode ino) whose file's mu
// the caller holds: the fill loop is stuck on it, so fills queued after
// it wait. The returned func lets it go.
func blockFills(t *testing.T, fs *FS, ino uint64) func() {
	t.Helper()
	fa := writer(fs, ino, 1)
	write(t, fa, pattern(imageMinWrite, 99), 0)
	commit(fa, 2)
	fa.mu.Lock()
	fs.images.writerClosed(fa)
	// Until the loop has taken it off the queue.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		fs.images.mu.Lock()
		queued := len(fs.images.fillq)
		fs.images.mu.Unlock()
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fill loop did not take the fill")
		}
	}
	return fa.mu.Unlock
}

func waitFill(s *imageStore, ino uint64) {
	s.mu.Lock()
	var done chan struct{}
	if img := s.images[ino]; img != nil {
		done = img.fillDone
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// A fill queued with the file state of the closed writer (dropped from
// fs.files since) must not be trusted after a truncate made with no file
// open (SetAttr then only tells the image store): truncating to 0 and
// back to the same size leaves the old state the right length with the
// wrong bytes. (Found in review: the image was marked current.)
func TestImageFillAfterTruncateWithNoFileOpen(t *testing.T) {
	s, b := newTestImages(t, 64<<20)
	fs := imageFS(s)
	const n = 256 << 10
	f1 := writer(fs, 7, 1)
	write(t, f1, pattern(n, 5), 0)
	commit(f1, 2)

	unblock := blockFills(t, fs, 8)
	s.writerClosed(f1) // f1's last writer is released; f1 then leaves fs.files
	// truncate -s 0; truncate -s 256K, no handle open: SetAttr finds no
	// file and only tells the image store.
	s.resized(7, 3, 0)
	s.resized(7, 4, n)
	unblock()
	waitFill(s, 8)
	waitFill(s, 7)

	reader := testFile(7, 4, n, 1) // as a fresh open loads it: gen 4, n zeros
	reader.fs = fs
	id, direct := s.open(reader, syscall.O_RDONLY)
	if id == 0 || direct {
		t.Logf("no passthrough (ok)")
	} else {
		b.mu.Lock()
		seen := b.seen[id]
		b.mu.Unlock()
		if !bytes.Equal(seen, make([]byte, n)) {
			t.Fatalf("passthrough to an image holding the content from before the truncates (file is %d zeros)", n)
		}
	}
	p := make([]byte, 16)
	reader.mu.Lock()
	ok := s.readAt(reader, p, 0)
	reader.mu.Unlock()
	if ok && !bytes.Equal(p, make([]byte, 16)) {
		t.Fatalf("readAt served old bytes %x", p)
	}
}

// A writer that reopens the file (a new file state f2, the old one f1
// having left fs.files) and closes while a fill reads f1 leaves f2 as the
// state to fill from; the fill of f1, seeing staleSeq moved, must refill
// from f2, not from f1 again. (Found in review.)
func TestImageRefillReadsTheLastWritersState(t *testing.T) {
	s, b := newTestImages(t, 64<<20)
	fs := imageFS(s)
	const n = 256 << 10
	old, cur := pattern(n, 5), pattern(n, 77)
	f1 := writer(fs, 7, 1)
	write(t, f1, old, 0)
	commit(f1, 2)

	f1.mu.Lock() // the fill of f1 is past its start (seq taken), reading f1
	s.writerClosed(f1)
	// wait until the fill loop took the image off the queue
	for {
		s.mu.Lock()
		q := len(s.fillq)
		s.mu.Unlock()
		if q == 0 {
			break
		}
	}
	// A writer opens it again: a new file state (f1 left fs.files), the
	// whole file rewritten at the same size, committed, closed.
	f2 := writer(fs, 7, 2)
	write(t, f2, cur, 0)
	commit(f2, 3)
	s.writerClosed(f2) // fill running: only fillFile = f2
	f1.mu.Unlock()     // f2 leaves fs.files (dropOpen) meanwhile
	for {
		s.mu.Lock()
		busy := s.filling
		s.mu.Unlock()
		if !busy {
			break
		}
	}
	reader := testFile(7, 3, n, 1)
	reader.fs = fs
	id, direct := s.open(reader, syscall.O_RDONLY)
	if id == 0 || direct {
		t.Log("no passthrough (ok)")
		return
	}
	b.mu.Lock()
	seen := b.seen[id]
	b.mu.Unlock()
	if bytes.Equal(seen, old) {
		t.Fatal("passthrough to an image filled from the older file state f1, not the last writer's f2")
	}
	if !bytes.Equal(seen, cur) {
		t.Fatal("image holds neither content")
	}
}

// A reader waiting for a queued fill moves it to the front of the queue.
func TestImageAwaitFillGoesFirst(t *testing.T) {
	s, _ := newTestImages(t, 64<<20)
	fs := imageFS(s)
	unblock := blockFills(t, fs, 1) // the fill loop is stuck on inode 1
	var files []*file
	for ino := uint64(2); ino <= 4; ino++ {
		f := writer(fs, ino, 1)
		write(t, f, pattern(imageMinWrite, byte(ino)), 0)
		seal(f)
		s.writerClosed(f)
		files = append(files, f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // only the reordering is looked at here
	s.awaitFill(ctx, 4)
	s.mu.Lock()
	var order []uint64
	for _, img := range s.fillq {
		order = append(order, img.ino)
	}
	s.mu.Unlock()
	unblock()
	for _, f := range files {
		waitFill(s, f.ino)
	}
	if len(order) != 3 || order[0] != 4 || order[1] != 2 || order[2] != 3 {
		t.Fatalf("queue after a reader waited for inode 4: %v, want [4 2 3]", order)
	}
	if st := s.Stats(); st.Filled != 4 {
		t.Fatalf("filled %d, want all 4", st.Filled)
	}
}
