package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// regrowRig is a disk tier on a faulty disk with a fake clock and a fake
// statfs, taking blobs of size bytes.
type regrowRig struct {
	t     *testing.T
	c     *Cache
	disk  *faultyDisk
	clock *fakeClock
	space *fakeSpace
	size  int
	next  int
}

func newRegrowRig(t *testing.T, size int, budget int64) *regrowRig {
	r := &regrowRig{t: t, disk: &faultyDisk{}, clock: &fakeClock{t: time.Unix(1e9, 0)}, space: &fakeSpace{}, size: size}
	cfg := diskOnly(t.TempDir(), budget)
	cfg.writeHook, cfg.now = r.disk.write, r.clock.now
	r.c = mustNew(t, cfg)
	useSpace(r.c, r.space)
	return r
}

// put writes the next blob and waits for the writer; it reports whether
// the blob is on disk.
func (r *regrowRig) put() bool {
	fid := fmt.Sprintf("1,%d", r.next)
	r.next++
	r.c.Put(fid, blob(fid, r.size))
	r.c.flush()
	return r.c.Contains(fid)
}

// room makes the fake filesystem report free bytes of total.
func (r *regrowRig) room(free, total int64) {
	r.space.set(fsSpace{avail: free, total: total, inodes: 1000, freeInodes: 900}, nil)
}

// A full disk lowers the budget; once space is freed (by another writer
// of the disk), the first write probeEvery after the failure asks the
// filesystem and raises the budget to what it has room for, never
// lowering it, up to the configured budget.
func TestDiskFullRegrowsFromStatfs(t *testing.T) {
	const size = 40 << 10
	charge := diskCharge(size)
	const total = 4 << 20 // reserve: 64 KiB
	reserve := spaceReserve(total)
	r := newRegrowRig(t, size, 20*charge)
	for range 6 {
		r.put()
	}
	r.disk.set(syscall.ENOSPC)
	r.room(0, total)
	r.put()
	low := (6 * charge * shrinkNum / shrinkDen) &^ (diskUnit - 1)
	if s := r.c.Stats(); s.DiskBudget != low || s.DiskEntries != 5 {
		t.Fatalf("after ENOSPC: %+v, want budget %d and 5 entries", s, low)
	}

	// Room for 4 more blobs appears. Within probeEvery of the failure
	// the filesystem is not asked: the budget stays low.
	r.disk.set(nil)
	r.room(4*charge+reserve, total)
	r.clock.advance(probeEvery - time.Millisecond)
	if !r.put() {
		t.Fatal("write within the lowered budget failed")
	}
	if s := r.c.Stats(); r.space.asked() != 0 || s.DiskBudget != low || s.DiskEntries != 5 {
		t.Fatalf("asked statfs %d times before probeEvery passed: %+v", r.space.asked(), s)
	}
	r.clock.advance(time.Millisecond)
	r.put()
	if s := r.c.Stats(); r.space.asked() != 1 || s.DiskBudget != 9*charge {
		t.Fatalf("after probeEvery: asked %d times, %+v; want budget %d (used + free - reserve)", r.space.asked(), s, 9*charge)
	}
	for range 6 {
		r.put()
	}
	if s := r.c.Stats(); s.DiskEntries != 9 || s.DiskBytes != 9*charge {
		t.Fatalf("the raised budget is not used: %+v", s)
	}

	// The filesystem filling up again does not lower the budget by
	// itself (only a failed write does)...
	r.room(0, total)
	r.clock.advance(probeEvery)
	r.put()
	if s := r.c.Stats(); s.DiskBudget != 9*charge || s.DiskEntries != 9 {
		t.Fatalf("a look at a full filesystem changed the budget: %+v", s)
	}
	// ...nor do bytes free while no inode is.
	r.space.set(fsSpace{avail: 1 << 30, total: total, inodes: 1000, freeInodes: 0}, nil)
	r.clock.advance(probeEvery)
	r.put()
	if s := r.c.Stats(); s.DiskBudget != 9*charge {
		t.Fatalf("raised with no free inode: %+v", s)
	}
	// Plenty of room: back to the configured budget, and the
	// filesystem is no longer asked.
	r.room(1<<30, 1<<30)
	r.clock.advance(probeEvery)
	r.put()
	asked := r.space.asked()
	if s := r.c.Stats(); s.DiskBudget != 20*charge {
		t.Fatalf("budget not back to configured: %+v", s)
	}
	r.clock.advance(probeEvery)
	r.put()
	if r.space.asked() != asked {
		t.Error("statfs asked although the budget is the configured one")
	}
	tmpEmpty(t, r.c.disk.dir)
}

// A full disk with nothing left to evict (another writer took it all)
// leaves a budget below a blob; once that writer frees its space, the cache takes
// blobs again probeEvery after the failure.
func TestDiskFullUntilEmptyRegrowsFromStatfs(t *testing.T) {
	const size = 40 << 10
	charge := diskCharge(size)
	r := newRegrowRig(t, size, 20*charge)
	r.put()
	r.disk.set(syscall.ENOSPC)
	r.room(0, 1<<30)
	r.put()
	r.disk.set(nil)
	if r.put() {
		t.Fatal("written with a budget below the blob's size")
	}
	if s := r.c.Stats(); s.DiskEntries != 0 || s.DiskBudget >= charge || s.DiskWriteErrors != 1 {
		t.Fatalf("full disk with nothing left to evict: %+v", s)
	}
	r.room(1<<30, 1<<30)
	r.clock.advance(probeEvery)
	if !r.put() {
		t.Fatalf("not written once the disk had room: %+v", r.c.Stats())
	}
	if s := r.c.Stats(); s.DiskBudget != 20*charge || s.DiskEntries != 1 {
		t.Errorf("after the disk had room: %+v", s)
	}
}

// When statfs promises room the next write does not find, the wait
// before asking again doubles (up to regrowAfter), so a filesystem that
// misreports its space cannot make the cache evict every probeEvery; a
// write that succeeds after a raise puts it back to probeEvery. (Every
// full-disk error restarts the wait: while writes keep failing there is
// no point in asking.)
func TestDiskFullWrongStatfsBacksOff(t *testing.T) {
	const size = 40 << 10
	r := newRegrowRig(t, size, 100*diskCharge(size))
	for range 30 {
		r.put()
	}
	r.disk.set(syscall.ENOSPC)
	r.room(1<<30, 1<<30) // wrong while the disk fails
	r.put()
	for i, wait := range []time.Duration{probeEvery, 2 * probeEvery, 4 * probeEvery} {
		// Halfway through the wait a write (the disk works for it)
		// goes in within the lowered budget, without asking.
		r.disk.set(nil)
		r.clock.advance(wait / 2)
		if !r.put() || r.space.asked() != i {
			t.Fatalf("half of %v after the failure: asked %d times, want %d: %+v", wait, r.space.asked(), i, r.c.Stats())
		}
		r.disk.set(syscall.ENOSPC)
		r.clock.advance(wait - wait/2)
		r.put() // asks, raises, fails
		if got := r.space.asked(); got != i+1 {
			t.Fatalf("%v after the failure: asked %d times, want %d", wait, got, i+1)
		}
		if s := r.c.Stats(); s.DiskBudget >= 100*diskCharge(size) || s.DiskEntries == 0 {
			t.Fatalf("setup: a failed write after a raise must lower the budget again: %+v", s)
		}
	}
	// Room for real: the next look raises and the write works; a later
	// failure is looked at again probeEvery after it.
	r.disk.set(nil)
	r.clock.advance(8 * probeEvery)
	if !r.put() || r.space.asked() != 4 {
		t.Fatalf("not written after room came back (asked %d): %+v", r.space.asked(), r.c.Stats())
	}
	r.disk.set(syscall.ENOSPC)
	r.room(0, 1<<30)
	r.put()
	r.disk.set(nil)
	r.room(1<<30, 1<<30)
	r.clock.advance(probeEvery)
	if !r.put() || r.space.asked() != 5 {
		t.Fatalf("after a truthful look the wait is not probeEvery again: asked %d, want 5", r.space.asked())
	}
}

// A quota's EDQUOT is not seen by statfs (the filesystem has room): the
// budget regrows only blindly, after regrowAfter.
func TestDiskQuotaRegrowsBlindly(t *testing.T) {
	const size = 40 << 10
	charge := diskCharge(size)
	r := newRegrowRig(t, size, 20*charge)
	for range 6 {
		r.put()
	}
	r.disk.set(syscall.EDQUOT)
	r.room(1<<30, 1<<30)
	r.put()
	low := r.c.Stats().DiskBudget
	r.disk.set(nil)
	r.clock.advance(regrowAfter - time.Second)
	r.put()
	if s := r.c.Stats(); r.space.asked() != 0 || s.DiskBudget != low {
		t.Fatalf("over quota: asked statfs %d times, %+v (low %d)", r.space.asked(), s, low)
	}
	r.clock.advance(time.Second)
	r.put()
	if got := r.c.Stats().DiskBudget; got != low+2*charge {
		t.Fatalf("budget %d after regrowAfter, want %d (a tenth more)", got, low+2*charge)
	}
}

// On a real 2 MiB tmpfs shared with another file: the other file fills
// the disk, the cache shrinks below a blob; once it is removed, the
// cache takes blobs again probeEvery later (its budget from statfs).
func TestRealFullDiskRegrows(t *testing.T) {
	dir := smallTmpfs(t, "2m")
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	cfg := diskOnly(dir, 8<<20)
	cfg.now = clock.now
	c := mustNew(t, cfg)
	hog := filepath.Join(dir, "hog")
	if err := os.WriteFile(hog, make([]byte, 1536<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	const size = 128 << 10
	put := func(fid string) bool {
		c.Put(fid, blob(fid, size))
		c.flush()
		return c.Contains(fid)
	}
	for i := range 8 {
		put(fmt.Sprintf("1,%d", i))
	}
	full := c.Stats()
	t.Logf("with the other file: %+v", full)
	if full.DiskWriteErrors == 0 || full.DiskBudget >= 1<<20 {
		t.Fatalf("the cache did not shrink: %+v", full)
	}
	if err := os.Remove(hog); err != nil {
		t.Fatal(err)
	}
	clock.advance(probeEvery)
	for i := range 8 {
		if !put(fmt.Sprintf("2,%d", i)) {
			t.Fatalf("blob %d not cached after the other file went: %+v", i, c.Stats())
		}
	}
	s := c.Stats()
	t.Logf("after it went: %+v", s)
	if s.DiskBytes < 1<<20 || s.DiskWriteErrors != full.DiskWriteErrors {
		t.Errorf("the cache did not grow into the freed space: %+v", s)
	}
	for i := range 8 {
		fid := fmt.Sprintf("2,%d", i)
		checkRead(t, c, fid, blob(fid, size), 0, size)
	}
}
