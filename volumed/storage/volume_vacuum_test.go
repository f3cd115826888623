package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kelpfs/kelp/needle"
)

func noCompactionFiles(t *testing.T, dir string) {
	t.Helper()
	for _, pat := range []string{"*.cpd", "*.cpx", "*.cpm", "*.cpm.tmp"} {
		if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
			t.Fatalf("compaction files left: %v", m)
		}
	}
}

func TestVacuumReclaimsSpace(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	live := map[uint64]int{}
	for k := uint64(1); k <= 400; k++ {
		e.write(1, k, 2000)
		live[k] = 2000
	}
	for k := uint64(1); k <= 400; k += 2 {
		if _, err := e.store.Delete(1, k, cookieFor(k)); err != nil {
			t.Fatal(err)
		}
		delete(live, k)
	}
	for k := uint64(2); k <= 100; k += 2 {
		e.write(1, k, 100)
		live[k] = 100
	}
	ratio, err := e.store.VacuumCheck(1)
	if err != nil || ratio < 0.4 || ratio > 0.7 {
		t.Fatalf("VacuumCheck = %v, %v", ratio, err)
	}
	before, _ := e.store.VolumeStatus(1)
	reclaimed, err := e.store.Vacuum(1)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := e.store.VolumeStatus(1)
	t.Logf("vacuum: %d -> %d bytes, reclaimed %d, garbage ratio was %.2f", before.Size, after.Size, reclaimed, ratio)
	if reclaimed != before.Size-after.Size || reclaimed < before.DeletedBytes*9/10 {
		t.Fatalf("reclaimed %d; size %d -> %d; deleted bytes were %d", reclaimed, before.Size, after.Size, before.DeletedBytes)
	}
	if after.CompactRevision != 1 || after.FileCount != before.FileCount || after.DeleteCount != 0 || after.DeletedBytes != 0 {
		t.Fatalf("status after vacuum: %+v", after)
	}
	if r, _ := e.store.VacuumCheck(1); r != 0 {
		t.Fatalf("garbage ratio after vacuum %v", r)
	}
	check := func() {
		t.Helper()
		for k := uint64(1); k <= 400; k++ {
			if size, ok := live[k]; ok {
				e.mustRead(1, k, size)
			} else {
				e.mustNotFind(1, k)
			}
		}
	}
	check()
	noCompactionFiles(t, e.dir)
	if got := fileSize(t, filepath.Join(e.dir, "1.dat")); got != after.Size {
		t.Fatalf(".dat is %d bytes, status says %d", got, after.Size)
	}
	e.write(1, 1000, 10)
	live[1000] = 10
	e.reopen()
	check()
	e.mustRead(1, 1000, 10)
	if st, _ := e.store.VolumeStatus(1); st.CompactRevision != 1 {
		t.Fatalf("revision after reload %d", st.CompactRevision)
	}
	if e.logs.contains("cutting") || e.logs.contains("dropping") {
		t.Fatalf("reload after vacuum repaired something:\n%s", e.logs)
	}
}

func TestVacuumDropsExpiredNeedles(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(c *Config) { c.Now = clock.now })
	ttl, _ := needle.ParseTTL("1h")
	e.allocate(1, "", ttl)
	for k := uint64(1); k <= 10; k++ {
		e.write(1, k, 100)
	}
	clock.advance(50 * time.Minute)
	for k := uint64(11); k <= 20; k++ {
		e.write(1, k, 100)
	}
	clock.advance(20 * time.Minute)
	if _, err := e.store.Vacuum(1); err != nil {
		t.Fatal(err)
	}
	st, _ := e.store.VolumeStatus(1)
	if st.FileCount != 10 {
		t.Fatalf("%d needles after vacuum, want the 10 unexpired", st.FileCount)
	}
	for k := uint64(11); k <= 20; k++ {
		e.mustRead(1, k, 100)
	}
}

// TestVacuumUnderLoad compacts a volume several times while writers add,
// overwrite and delete needles and readers read them; every goroutine checks
// its own data, and everything is checked again after a reload.
func TestVacuumUnderLoad(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	const stable = 2000
	for k := uint64(1); k <= stable; k++ {
		e.write(1, k, int(k%50)*40)
	}
	for k := uint64(1); k <= stable; k += 3 { // garbage for the first vacuum
		e.write(1, k, int(k%50)*40)
		e.write(1, k+1_000_000, 100)
		e.store.Delete(1, k+1_000_000, cookieFor(k+1_000_000))
	}

	const writers, readers = 3, 4
	var stop atomic.Bool
	var ops atomic.Int64 // writer operations done
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers+1)
	models := make([]map[uint64]int, writers)
	for w := 0; w < writers; w++ {
		models[w] = map[uint64]int{}
		wg.Add(1)
		go func(model map[uint64]int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			base := uint64(w+1) * 10_000_000
			next := base
			for i := 0; !stop.Load(); i++ {
				ops.Add(1)
				switch r := rng.IntN(10); {
				case r < 6 || len(model) == 0:
					next++
					size := rng.IntN(3000)
					if _, err := e.store.Write(1, &needle.Needle{ID: next, Cookie: cookieFor(next), Data: blob(next, size)}); err != nil {
						errs <- err
						return
					}
					model[next] = size
					if err := checkRead(e.store, 1, next, size); err != nil {
						errs <- fmt.Errorf("read own write: %w", err)
						return
					}
				case r < 8:
					k := base + 1 + rng.Uint64N(next-base)
					if _, ok := model[k]; !ok {
						continue
					}
					if _, err := e.store.Delete(1, k, cookieFor(k)); err != nil {
						errs <- fmt.Errorf("delete %d: %w", k, err)
						return
					}
					delete(model, k)
					if _, err := e.store.Read(1, k, cookieFor(k)); !errors.Is(err, ErrNotFound) {
						errs <- fmt.Errorf("read after delete %d: %v", k, err)
						return
					}
				default:
					k := base + 1 + rng.Uint64N(next-base)
					size, ok := model[k]
					if !ok {
						continue
					}
					if err := checkRead(e.store, 1, k, size); err != nil {
						errs <- err
						return
					}
				}
			}
		}(models[w])
	}
	var reads atomic.Int64
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for !stop.Load() {
				k := 1 + rng.Uint64N(stable)
				if err := checkRead(e.store, 1, k, int(k%50)*40); err != nil {
					errs <- err
					return
				}
				reads.Add(1)
			}
		}()
	}
	var totalReclaimed int64
	for i := 0; i < 5; i++ {
		// Let the writers make garbage and new needles between vacuums.
		target := ops.Load() + 300
		for deadline := time.Now().Add(10 * time.Second); ops.Load() < target && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		n, err := e.store.Vacuum(1)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("vacuum %d: %v", i, err)
		}
		totalReclaimed += n
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	st, _ := e.store.VolumeStatus(1)
	t.Logf("5 vacuums under load: reclaimed %d bytes, %d concurrent reads, %d needles, revision %d", totalReclaimed, reads.Load(), st.FileCount, st.CompactRevision)
	if st.CompactRevision != 5 || totalReclaimed <= 0 {
		t.Fatalf("status %+v, reclaimed %d", st, totalReclaimed)
	}
	verify := func() {
		t.Helper()
		for k := uint64(1); k <= stable; k++ {
			e.mustRead(1, k, int(k%50)*40)
		}
		n := stable
		for _, model := range models {
			for k, size := range model {
				e.mustRead(1, k, size)
			}
			n += len(model)
		}
		if st, _ := e.store.VolumeStatus(1); st.FileCount != uint64(n) {
			t.Fatalf("FileCount %d, models hold %d", st.FileCount, n)
		}
	}
	verify()
	e.reopen()
	verify()
	noCompactionFiles(t, e.dir)
}

// TestVacuumCrashRecovery stops a compaction after each step of its commit
// protocol, as a crash would, and checks that a reload ends with a complete
// volume: the old one before the commit point, the new one after it.
func TestVacuumCrashRecovery(t *testing.T) {
	steps := []string{"copy", "catchup", "sync", "marker", "rename-idx", "rename-dat", "remove-marker"}
	for stopAfter, name := range steps {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.allocate(1, "", needle.TTL{})
			live := map[uint64]int{}
			for k := uint64(1); k <= 100; k++ {
				e.write(1, k, 500)
				live[k] = 500
			}
			for k := uint64(1); k <= 100; k += 2 {
				e.store.Delete(1, k, cookieFor(k))
				delete(live, k)
			}
			v := e.vol(1)
			c, err := v.compactCopy(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// Changes after the snapshot, for the catch-up.
			for k := uint64(101); k <= 110; k++ {
				e.write(1, k, 300)
				live[k] = 300
			}
			for k := uint64(2); k <= 20; k += 2 {
				e.store.Delete(1, k, cookieFor(k))
				delete(live, k)
			}
			e.write(1, 30, 7) // overwrite
			live[30] = 7

			v.appendMu.Lock()
			run := []func() error{c.catchUp, c.syncFiles, c.writeMarker, c.renameIdx, c.renameDat, c.removeMarker}
			for i := 0; i < stopAfter; i++ {
				if err := run[i](); err != nil {
					v.appendMu.Unlock()
					t.Fatalf("step %s: %v", steps[i+1], err)
				}
			}
			v.appendMu.Unlock()
			// Crash: the process dies with every file as it is.
			c.cpd.Close()
			c.cpx.Close()
			e.store.Close()

			e.open()
			committed := stopAfter >= 3
			st, err := e.store.VolumeStatus(1)
			if err != nil {
				t.Fatalf("volume lost: %v\n%s", err, e.logs)
			}
			wantRev := uint16(0)
			if committed {
				wantRev = 1
			}
			if st.CompactRevision != wantRev {
				t.Fatalf("revision %d, want %d", st.CompactRevision, wantRev)
			}
			if committed && st.DeletedBytes > 20*needle.RecordSize(500) {
				t.Fatalf("committed compaction still holds the old garbage: %+v", st)
			}
			for k := uint64(1); k <= 110; k++ {
				if size, ok := live[k]; ok {
					e.mustRead(1, k, size)
				} else {
					e.mustNotFind(1, k)
				}
			}
			noCompactionFiles(t, e.dir)
			if e.logs.contains("cutting") || e.logs.contains("dropping") {
				t.Fatalf("recovery needed repairs:\n%s", e.logs)
			}
			e.write(1, 200, 10)
			e.reopen()
			e.mustRead(1, 200, 10)
		})
	}
}

func TestVacuumOfDeletedVolume(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	e.write(1, 1, 10)
	v := e.vol(1)
	c, err := v.compactCopy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.DeleteVolume(1); err != nil {
		t.Fatal(err)
	}
	v.appendMu.Lock()
	err = c.catchUp()
	v.appendMu.Unlock()
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("catch-up on a deleted volume: %v", err)
	}
	c.abort()
	noCompactionFiles(t, e.dir)
	if _, err := e.store.Vacuum(1); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("Vacuum of a deleted volume: %v", err)
	}
}

// TestVacuumSyncsCopyOutsideAppendLock: the copied files are fsynced before
// the compaction takes appendMu, so writes go on during that fsync; under
// appendMu the files are fsynced again for the catch-up only.
func TestVacuumSyncsCopyOutsideAppendLock(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 200; k++ {
		e.write(1, k, 2000)
	}
	for k := uint64(1); k <= 200; k += 2 {
		if _, err := e.store.Delete(1, k, cookieFor(k)); err != nil {
			t.Fatal(err)
		}
	}
	type syncCall struct {
		file   string
		locked bool
		size   int64
	}
	var calls []syncCall
	v := e.vol(1)
	v.compactSync = func(f *os.File) error {
		locked := !v.appendMu.TryLock()
		if !locked {
			v.appendMu.Unlock()
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		calls = append(calls, syncCall{filepath.Ext(f.Name()), locked, fi.Size()})
		if !locked && len(calls) == 1 {
			// A write while the copy is being fsynced: it must not wait
			// for the compaction, and the catch-up must carry it over.
			e.write(1, 1000, 300)
		}
		return f.Sync()
	}
	if _, err := e.store.Vacuum(1); err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction fsyncs: %+v", calls)
	recSize := func(n int) int64 { return needle.RecordSize((&needle.Needle{Data: make([]byte, n)}).BodySize()) }
	copied := needle.SuperBlockSize + 100*recSize(2000)
	if len(calls) != 4 || calls[0].file != ".cpd" || calls[0].locked || calls[0].size != copied ||
		calls[1].file != ".cpx" || calls[1].locked {
		t.Fatalf("the copy (%d bytes) was not fsynced outside appendMu first: %+v", copied, calls)
	}
	if !calls[2].locked || !calls[3].locked || calls[2].size != copied+recSize(300) {
		t.Fatalf("the catch-up was not fsynced under appendMu: %+v", calls)
	}
	e.mustRead(1, 1000, 300)
	e.reopen()
	e.mustRead(1, 1000, 300)
	e.mustRead(1, 200, 2000)
}

// TestVacuumAbortRemovesMarker: a compaction that fails after renaming its
// marker into place (the directory fsync after the rename failed) removes
// the marker with its files, so a later interrupted compaction cannot be
// mistaken for a committed one.
func TestVacuumAbortRemovesMarker(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 50; k++ {
		e.write(1, k, 500)
	}
	for k := uint64(1); k <= 50; k += 2 {
		e.store.Delete(1, k, cookieFor(k))
	}
	v := e.vol(1)
	c, err := v.compactCopy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v.appendMu.Lock()
	for _, step := range []func() error{c.catchUp, c.syncFiles, c.writeMarker} {
		if err := step(); err != nil {
			v.appendMu.Unlock()
			t.Fatal(err)
		}
	}
	// The marker is in place; vacuum aborts as it does when the directory
	// fsync of writeMarker fails.
	c.abort()
	v.appendMu.Unlock()
	noCompactionFiles(t, e.dir)
	e.write(1, 100, 700) // the volume stays writable

	// A second compaction crashes after its copy.
	c, err = v.compactCopy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.cpd.Close()
	c.cpx.Close()
	e.store.Close()
	e.open()
	st, err := e.store.VolumeStatus(1)
	if err != nil {
		t.Fatalf("volume lost after the crash: %v\n%s", err, e.logs)
	}
	if st.CompactRevision != 0 {
		t.Fatalf("revision %d: an uncommitted compaction was installed", st.CompactRevision)
	}
	noCompactionFiles(t, e.dir)
	for k := uint64(2); k <= 50; k += 2 {
		e.mustRead(1, k, 500)
	}
	e.mustRead(1, 100, 700)
}

// countdownCtx is a context whose Err turns to Canceled after n calls.
type countdownCtx struct {
	context.Context
	n atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestVacuumContextCancel(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 100; k++ {
		e.write(1, k, 500)
	}
	for k := uint64(1); k <= 100; k += 2 {
		e.store.Delete(1, k, cookieFor(k))
	}
	before, _ := e.store.VolumeStatus(1)
	datBefore := fileSize(t, filepath.Join(e.dir, "1.dat"))
	idxBefore := fileSize(t, filepath.Join(e.dir, "1.idx"))
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: %v, want context.Canceled", name, err)
		}
		noCompactionFiles(t, e.dir)
		after, _ := e.store.VolumeStatus(1)
		if after != before {
			t.Fatalf("%s: status changed:\n%+v\n%+v", name, before, after)
		}
		if fileSize(t, filepath.Join(e.dir, "1.dat")) != datBefore || fileSize(t, filepath.Join(e.dir, "1.idx")) != idxBefore {
			t.Fatalf("%s: the volume's files changed", name)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.store.VacuumContext(ctx, 1)
	check("cancelled before", err)

	mid := &countdownCtx{Context: context.Background()}
	mid.n.Store(10)
	_, err = e.store.VacuumContext(mid, 1)
	check("cancelled after 10 needles", err)
	if !strings.Contains(err.Error(), "after 10 of 50 needles") {
		t.Fatalf("error does not say where it stopped: %v", err)
	}

	for k := uint64(2); k <= 100; k += 2 {
		e.mustRead(1, k, 500)
	}
	if _, err := e.store.VacuumContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if st, _ := e.store.VolumeStatus(1); st.CompactRevision != 1 || st.FileCount != 50 {
		t.Fatalf("after a completed vacuum: %+v", st)
	}
}
