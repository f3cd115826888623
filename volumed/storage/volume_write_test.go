package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

// faultyFile injects failures into a volume's file.
type faultyFile struct {
	diskFile
	mu           sync.Mutex
	failWrites   bool // WriteAt writes half the bytes, then fails with ENOSPC
	failTruncate bool
	failSync     bool
	writesFailed int
}

func (f *faultyFile) WriteAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	fail := f.failWrites
	if fail {
		f.writesFailed++
	}
	f.mu.Unlock()
	if fail {
		n, _ := f.diskFile.WriteAt(b[:len(b)/2], off)
		return n, &os.PathError{Op: "write", Path: "injected", Err: syscall.ENOSPC}
	}
	return f.diskFile.WriteAt(b, off)
}

func (f *faultyFile) Truncate(size int64) error {
	f.mu.Lock()
	fail := f.failTruncate
	f.mu.Unlock()
	if fail {
		return &os.PathError{Op: "truncate", Path: "injected", Err: syscall.EIO}
	}
	return f.diskFile.Truncate(size)
}

func (f *faultyFile) Sync() error {
	f.mu.Lock()
	fail := f.failSync
	f.mu.Unlock()
	if fail {
		return &os.PathError{Op: "sync", Path: "injected", Err: syscall.EIO}
	}
	return f.diskFile.Sync()
}

// inject wraps the volume's .dat or .idx in a faultyFile.
func inject(v *volume, idx bool) *faultyFile {
	v.appendMu.Lock()
	defer v.appendMu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	if idx {
		f := &faultyFile{diskFile: v.files.idx}
		v.files.idx = f
		return f
	}
	f := &faultyFile{diskFile: v.files.dat}
	v.files.dat = f
	return f
}

func TestFailedAppendLeavesNoPartialNeedle(t *testing.T) {
	for _, which := range []string{"dat", "idx"} {
		t.Run(which, func(t *testing.T) {
			e := newEnv(t, nil)
			e.allocate(1, "", needle.TTL{})
			e.write(1, 1, 1000)
			dat, idx := filepath.Join(e.dir, "1.dat"), filepath.Join(e.dir, "1.idx")
			datSize, idxSize := fileSize(t, dat), fileSize(t, idx)

			ff := inject(e.vol(1), which == "idx")
			ff.failWrites = true
			_, err := e.store.Write(1, &needle.Needle{ID: 2, Cookie: cookieFor(2), Data: blob(2, 1000)})
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "volume 1") || !strings.Contains(err.Error(), "1."+which) {
				t.Fatalf("failed write: %v (want ENOSPC naming the volume and file)", err)
			}
			if got := fileSize(t, dat); got != datSize {
				t.Fatalf(".dat is %d bytes after a failed write, want %d", got, datSize)
			}
			if got := fileSize(t, idx); got != idxSize {
				t.Fatalf(".idx is %d bytes after a failed write, want %d", got, idxSize)
			}
			e.mustNotFind(1, 2)
			if _, err := e.store.Delete(1, 1, cookieFor(1)); err == nil {
				t.Fatal("delete succeeded while writes fail")
			}
			e.mustRead(1, 1, 1000)

			// The disk recovers: writes go on at the right place.
			ff.mu.Lock()
			ff.failWrites = false
			ff.mu.Unlock()
			e.write(1, 3, 500)
			e.mustRead(1, 3, 500)
			e.reopen()
			e.mustRead(1, 1, 1000)
			e.mustNotFind(1, 2)
			e.mustRead(1, 3, 500)
			if e.logs.contains("cutting") || e.logs.contains("past the index end") {
				t.Fatalf("reload found debris of the failed write:\n%s", e.logs)
			}
		})
	}
}

func TestFailedRollbackStopsWrites(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	e.write(1, 1, 1000)
	ff := inject(e.vol(1), false)
	ff.failWrites, ff.failTruncate = true, true
	drainChanged(e.store)
	if _, err := e.store.Write(1, &needle.Needle{ID: 2, Cookie: cookieFor(2), Data: blob(2, 1000)}); err == nil {
		t.Fatal("write succeeded")
	}
	waitChanged(t, e.store)
	ff.mu.Lock()
	ff.failWrites, ff.failTruncate = false, false
	ff.mu.Unlock()
	if _, err := e.store.Write(1, &needle.Needle{ID: 3, Cookie: 1, Data: []byte("x")}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write after a failed rollback: %v, want ErrReadOnly", err)
	}
	if st, _ := e.store.VolumeStatus(1); !st.ReadOnly {
		t.Fatal("status does not show the volume read-only")
	}
	e.mustRead(1, 1, 1000)
	// The half-written record is still on disk; reload cuts it.
	e.reopen()
	if !e.logs.contains("cutting torn data tail") {
		t.Fatalf("torn tail not cut:\n%s", e.logs)
	}
	e.mustNotFind(1, 2)
	e.write(1, 3, 10)
}

func TestFsyncFailure(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Fsync = true })
	e.allocate(1, "", needle.TTL{})
	e.write(1, 1, 100)
	ff := inject(e.vol(1), false)
	ff.failSync = true
	_, err := e.store.Write(1, &needle.Needle{ID: 2, Cookie: cookieFor(2), Data: blob(2, 100)})
	if err == nil || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("write with a failing fsync: %v", err)
	}
	if _, err := e.store.Write(1, &needle.Needle{ID: 3, Cookie: 1}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write after an fsync failure: %v, want ErrReadOnly", err)
	}
	e.mustRead(1, 1, 100)
}

func TestConcurrentFsyncWrites(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Fsync = true })
	e.allocate(1, "", needle.TTL{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				k := uint64(w*1000 + i + 1)
				if _, err := e.store.Write(1, &needle.Needle{ID: k, Cookie: cookieFor(k), Data: blob(k, 100)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.reopen()
	for w := 0; w < 8; w++ {
		for i := 0; i < 25; i++ {
			e.mustRead(1, uint64(w*1000+i+1), 100)
		}
	}
}
