package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// faultyDisk fails writes with err while err is set, after letting half of
// the write through (so a partial temp file exists).
type faultyDisk struct {
	mu  sync.Mutex
	err error
}

func (f *faultyDisk) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *faultyDisk) write(file *os.File, p []byte) (int, error) {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err == nil {
		return file.Write(p)
	}
	n, _ := file.Write(p[:len(p)/2])
	return n, err
}

// fakeSpace stands for statfs of the cache directory's filesystem.
type fakeSpace struct {
	mu    sync.Mutex
	space fsSpace
	err   error
	calls int
}

func (f *fakeSpace) statfs(string) (fsSpace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.space, f.err
}

func (f *fakeSpace) set(space fsSpace, err error) {
	f.mu.Lock()
	f.space, f.err = space, err
	f.mu.Unlock()
}

func (f *fakeSpace) asked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// useSpace makes c's disk tier ask f instead of statfs.
func useSpace(c *Cache, f *fakeSpace) {
	c.disk.mu.Lock()
	c.disk.statfs = f.statfs
	c.disk.mu.Unlock()
}

// noStatfs is a filesystem that cannot tell its free space: the tier
// falls back to regrowing blindly.
func noStatfs(c *Cache) *fakeSpace {
	f := &fakeSpace{err: errors.New("statfs: not supported")}
	useSpace(c, f)
	return f
}

func tmpEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, tmpName))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("temp files left: %d", len(ents))
	}
}

func TestDiskFullShrinksBudget(t *testing.T) {
	dir := t.TempDir()
	const size = 40 << 10
	charge := diskCharge(size)
	disk, clock := &faultyDisk{}, &fakeClock{t: time.Unix(1e9, 0)}
	cfg := diskOnly(dir, 10*charge)
	cfg.writeHook, cfg.now = disk.write, clock.now
	c := mustNew(t, cfg)
	space := noStatfs(c) // the disk says nothing but ENOSPC
	put := func(i int) string {
		fid := fmt.Sprintf("1,%d", i)
		c.Put(fid, blob(fid, size))
		c.flush()
		return fid
	}
	for i := range 6 {
		put(i)
	}
	disk.set(syscall.ENOSPC)
	put(6)
	s := c.Stats()
	if s.DiskWriteErrors != 1 || s.DiskBudget != (6*charge*9/10)&^(diskUnit-1) || s.DiskEntries != 5 {
		t.Fatalf("after ENOSPC: %+v", s)
	}
	if c.Contains("1,0") || c.Contains("1,6") {
		t.Error("oldest not evicted, or failed write indexed")
	}
	if s.DiskBypassed {
		t.Error("bypassed although the cache could shrink")
	}
	// Still full: making room for the write evicts one more, the failure
	// lowers the budget below what is left and evicts again.
	put(7)
	if s := c.Stats(); s.DiskWriteErrors != 2 || s.DiskEntries != 3 {
		t.Fatalf("after second ENOSPC: %+v", s)
	}
	tmpEmpty(t, dir)
	if files := cacheFiles(t, dir); len(files) != 3 {
		t.Errorf("files: %v", files)
	}
	// What is left is intact.
	for i := 3; i < 6; i++ {
		fid := fmt.Sprintf("1,%d", i)
		checkRead(t, c, fid, blob(fid, size), 0, size)
	}

	// Space comes back: writes work within the lowered budget.
	disk.set(nil)
	low := c.Stats().DiskBudget
	for i := 8; i < 20; i++ {
		put(i)
		if s := c.Stats(); s.DiskBytes > low {
			t.Fatalf("over lowered budget: %+v", s)
		}
	}
	if !c.Contains("1,19") {
		t.Error("write after recovery missing")
	}
	// After regrowAfter without errors the budget grows back in steps
	// (the fallback, since statfs cannot tell).
	clock.advance(regrowAfter)
	put(20)
	if got := c.Stats().DiskBudget; got <= low || got > cfg.DiskBytes {
		t.Errorf("budget after regrow: %d (low %d, configured %d)", got, low, cfg.DiskBytes)
	}
	for i := range 12 {
		clock.advance(regrowAfter)
		put(21 + i)
	}
	if got := c.Stats().DiskBudget; got != cfg.DiskBytes {
		t.Errorf("budget not back to configured: %d", got)
	}
	if space.asked() == 0 {
		t.Error("statfs never asked: the fallback was not what regrew the budget")
	}
}

// A full disk with nothing left to evict lowers the budget below a blob:
// blobs are dropped without trying the disk (the tier is not bypassed: that is
// for other errors) until the budget regrows, here by the fallback, since
// statfs cannot tell.
func TestDiskFullUntilEmptyDropsWrites(t *testing.T) {
	dir := t.TempDir()
	disk, clock := &faultyDisk{}, &fakeClock{t: time.Unix(1e9, 0)}
	cfg := diskOnly(dir, 1<<20)
	cfg.writeHook, cfg.now = disk.write, clock.now
	c := mustNew(t, cfg)
	noStatfs(c)
	c.Put("1,a", blob("1,a", 5000))
	c.flush()
	disk.set(syscall.ENOSPC)
	for i := range 3 {
		c.Put(fmt.Sprint("2,", i), blob("x", 5000))
		c.flush()
	}
	// The first failure evicted the only entry and found nothing left to
	// free: the next two blobs are dropped without a write.
	s := c.Stats()
	if s.DiskEntries != 0 || s.DiskBudget >= diskCharge(5000) || s.DiskBypassed || s.DiskWriteErrors != 1 || s.DroppedWrites != 2 {
		t.Fatalf("full disk with nothing left to evict: %+v", s)
	}
	disk.set(nil)
	put := func(fid string) bool {
		c.Put(fid, blob(fid, 5000))
		c.flush()
		return c.Contains(fid)
	}
	if put("3,a") {
		t.Error("written with a budget below the blob's size")
	}
	clock.advance(minBackoff)
	if put("3,b") {
		t.Error("written although the budget is below the blob's size")
	}
	clock.advance(regrowAfter)
	if !put("3,c") {
		t.Errorf("not written after the budget regrew: %+v", c.Stats())
	}
	checkRead(t, c, "3,c", blob("3,c", 5000), 0, 5000)
	tmpEmpty(t, dir)
}

func TestWriteErrorBypassesWithBackoff(t *testing.T) {
	dir := t.TempDir()
	disk, clock := &faultyDisk{}, &fakeClock{t: time.Unix(1e9, 0)}
	cfg := diskOnly(dir, 1<<20)
	cfg.writeHook, cfg.now = disk.write, clock.now
	c := mustNew(t, cfg)
	c.Put("1,a", blob("1,a", 5000))
	c.flush()
	put := func(fid string) bool {
		c.Put(fid, blob(fid, 5000))
		c.flush()
		return c.Contains(fid)
	}
	disk.set(syscall.EIO)
	if put("2,a") {
		t.Fatal("failed write indexed")
	}
	if s := c.Stats(); !s.DiskBypassed || s.DiskWriteErrors != 1 || s.DiskBudget != cfg.DiskBytes {
		t.Fatalf("after EIO: %+v", s)
	}
	checkRead(t, c, "1,a", blob("1,a", 5000), 0, 5000) // reads go on
	clock.advance(minBackoff)
	if put("2,b") { // fails again: backoff doubles
		t.Fatal("failed write indexed")
	}
	disk.set(nil)
	clock.advance(minBackoff)
	if put("2,c") {
		t.Error("written during the doubled backoff")
	}
	clock.advance(minBackoff)
	if !put("2,d") {
		t.Error("not written after the backoff")
	}
	if s := c.Stats(); s.DiskWriteErrors != 2 || s.DroppedWrites != 1 || s.DiskBypassed {
		t.Errorf("stats: %+v", s)
	}
	tmpEmpty(t, dir)
}

// Put never waits for the disk: with the writer stuck, Puts return and
// overflow is dropped; the queue stays within its byte bound.
func TestPutNeverBlocksOnDisk(t *testing.T) {
	gate := make(chan struct{})
	cfg := diskOnly(t.TempDir(), 64<<20)
	cfg.MemoryBytes = 64 << 20
	cfg.WriteQueueBytes = 4 << 20
	cfg.writeHook = func(f *os.File, p []byte) (int, error) {
		<-gate
		return f.Write(p)
	}
	c := mustNew(t, cfg)
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // runs before c.Close if the test fails early
	data := make([]byte, 1<<20)
	for i := range 50 {
		c.Put(fmt.Sprint("1,", i), data)
	}
	s := c.Stats()
	if s.DroppedWrites == 0 || s.QueuedWriteBytes > cfg.WriteQueueBytes {
		t.Errorf("stuck writer: %+v", s)
	}
	if s.MemoryEntries != 50 {
		t.Errorf("memory tier has %d entries, want 50", s.MemoryEntries)
	}
	release()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.QueuedWriteBytes != 0 || s.DiskWrites == 0 {
		t.Errorf("after Close: %+v", s)
	}
}

// TestRealFullDisk fills a 2 MiB tmpfs with a cache configured for 8 MiB:
// the cache must shrink to what fits, keep serving correct bytes and keep
// taking new blobs.
func TestRealFullDisk(t *testing.T) {
	dir := smallTmpfs(t, "2m")
	const size = 256 << 10
	c := mustNew(t, diskOnly(dir, 8<<20))
	blobs := map[string][]byte{}
	for i := range 40 {
		fid := fmt.Sprintf("5,%x", i)
		blobs[fid] = blob(fid, size)
		c.Put(fid, blobs[fid])
		c.flush()
	}
	s := c.Stats()
	t.Logf("stats: %+v", s)
	if s.DiskWriteErrors == 0 || s.DiskBudget >= 8<<20 || s.DiskBytes > 2<<20 {
		t.Errorf("cache did not shrink to the filesystem: %+v", s)
	}
	if s.DiskWrites <= 8 || !c.Contains("5,27") {
		t.Errorf("cache stopped taking blobs: %+v", s)
	}
	hits := 0
	for fid, want := range blobs {
		p := make([]byte, size)
		if n, ok := c.ReadAt(fid, p, 0); ok {
			hits++
			if n != size || !bytes.Equal(p, want) {
				t.Fatalf("bad bytes for %s", fid)
			}
		}
	}
	if hits != s.DiskEntries || hits == 0 {
		t.Errorf("%d hits, %d entries", hits, s.DiskEntries)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart on the full filesystem finds the survivors intact.
	c2 := mustNew(t, diskOnly(dir, 8<<20))
	if got := c2.Stats().DiskEntries; got != hits {
		t.Errorf("after restart %d entries, want %d", got, hits)
	}
	for fid, want := range blobs {
		p := make([]byte, size)
		if n, ok := c2.ReadAt(fid, p, 0); ok && (n != size || !bytes.Equal(p, want)) {
			t.Fatalf("bad bytes for %s after restart", fid)
		}
	}
}

// smallTmpfs mounts a tmpfs of size (mount's syntax: "2m") for the test.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI needs root for the tmpfs full-disk tests")
		}
		t.Skip("needs root to mount a small tmpfs (runs in CI as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount tmpfs here: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	return dir
}
