package badger_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/filerd/store/badger"
	"github.com/kelpfs/kelp/filerd/store/storetest"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func open(t testing.TB, cfg badger.Config) *badger.Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	s, err := badger.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func diskConfig(dir string) badger.Config {
	cfg := badger.DefaultConfig()
	cfg.Dir = dir
	cfg.MinFreeBytes = 2 * cfg.MemTableSize // the test disk may be small
	return cfg
}

func TestConformanceOnDisk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, diskConfig(t.TempDir())) })
}

func TestConformanceInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		cfg := badger.DefaultConfig()
		cfg.InMemory = true
		return open(t, cfg)
	})
}

func TestReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T, dir string) store.Store { return open(t, diskConfig(dir)) })
}

func TestConfigValidate(t *testing.T) {
	if err := badger.DefaultConfig().Validate(); err == nil {
		t.Fatal("DefaultConfig without Dir validated")
	}
	good := diskConfig(t.TempDir())
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*badger.Config){
		"small memtable":    func(c *badger.Config) { c.MemTableSize = 1000 },
		"one compactor":     func(c *badger.Config) { c.NumCompactors = 1 },
		"vlog too big":      func(c *badger.Config) { c.ValueLogFileSize = 2 << 30 },
		"reserve too small": func(c *badger.Config) { c.MinFreeBytes = c.MemTableSize },
		"no retries":        func(c *badger.Config) { c.MaxRetries = 0 },
		"bad ratio":         func(c *badger.Config) { c.GCDiscardRatio = 1 },
		"threshold too big": func(c *badger.Config) { c.ValueThreshold = 2 << 20 },
		"threshold < 0":     func(c *badger.Config) { c.ValueThreshold = -1 },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
		if _, err := badger.Open(c); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

// A directory holding something else than a Kelp store is refused.
func TestOpenRefusesForeignData(t *testing.T) {
	dir := t.TempDir()
	s := open(t, diskConfig(dir))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A second Open of the same store works.
	s = open(t, diskConfig(dir))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Not a badger directory at all.
	junk := t.TempDir()
	if err := os.WriteFile(filepath.Join(junk, "MANIFEST"), []byte("not a manifest"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := badger.Open(diskConfig(junk)); err == nil {
		s.Close()
		t.Fatal("opened a directory with a garbage MANIFEST")
	}
}

// A full disk makes Update fail with ErrNoSpace (no panic, no SIGBUS, no
// hang) while View keeps working, Close is clean, and writes resume once
// space is freed.
func TestDiskFull(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "small-disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", disk).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must be able to mount a small tmpfs (runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount an 8 MiB tmpfs to fill (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })
	// 1 MiB of filler to free later.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := badger.DefaultConfig()
	cfg.Dir = filepath.Join(disk, "db")
	cfg.MemTableSize = 1 << 20
	cfg.NumMemtables = 2
	cfg.BlockCacheSize = 1 << 20
	cfg.ValueLogFileSize = 1 << 20
	cfg.MinFreeBytes = 3 << 20
	s := open(t, cfg)
	ctx := t.Context()

	stored := map[string][]byte{}
	var fullErr error
	for i := 0; i < 1000 && fullErr == nil; i++ {
		batch := map[string][]byte{}
		fullErr = s.Update(ctx, func(tx store.Tx) error {
			for j := range 16 {
				k, v := fmt.Sprintf("k%04d-%02d", i, j), make([]byte, 4<<10)
				rand.Read(v)
				batch[k] = v
				if err := tx.Set([]byte(k), v); err != nil {
					return err
				}
			}
			return nil
		})
		if fullErr == nil {
			for k, v := range batch {
				stored[k] = v
			}
		}
	}
	if fullErr == nil {
		t.Fatal("64 MiB of writes fit on an 8 MiB disk")
	}
	if !errors.Is(fullErr, badger.ErrNoSpace) || !errors.Is(fullErr, syscall.ENOSPC) {
		t.Fatalf("full disk: Update = %v, want ErrNoSpace and ENOSPC", fullErr)
	}
	t.Logf("disk full after %d keys (%d KiB): %v", len(stored), len(stored)*4, fullErr)
	if len(stored) == 0 {
		t.Fatal("nothing fit before the disk was full")
	}

	checkAll := func(s store.Store) {
		t.Helper()
		err := s.View(ctx, func(tx store.Tx) error {
			for k, want := range stored {
				v, err := tx.Get([]byte(k))
				if err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
				if string(v) != string(want) {
					return fmt.Errorf("%s: wrong value", k)
				}
			}
			n := 0
			err := tx.Scan([]byte("k"), nil, func(k, v []byte) (bool, error) { n++; return true, nil })
			if err == nil && n != len(stored) {
				err = fmt.Errorf("scan found %d keys, want %d", n, len(stored))
			}
			return err
		})
		if err != nil {
			t.Fatalf("View on a full disk: %v", err)
		}
	}
	checkAll(s)
	// Keep pushing at the limit: background flushes free a little now and
	// then, so some writes get in, but every failure is a clean ErrNoSpace.
	refused := 0
	for i := range 200 {
		k := fmt.Sprintf("k-more-%03d", i)
		v := make([]byte, 4<<10)
		rand.Read(v)
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Set([]byte(k), v) })
		switch {
		case err == nil:
			stored[k] = v
		case errors.Is(err, badger.ErrNoSpace):
			refused++
		default:
			t.Fatalf("write at the limit: %v", err)
		}
	}
	if refused == 0 {
		t.Fatal("200 more writes on a full disk all succeeded")
	}
	checkAll(s)
	// Writes resume once there is room again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Set([]byte("more"), []byte("x")) }); err != nil {
		t.Fatalf("write after freeing space: %v", err)
	}
	stored["more"] = []byte("x")
	if err := s.Close(); err != nil {
		t.Fatalf("Close on a nearly full disk: %v", err)
	}
	s = open(t, cfg)
	defer s.Close()
	delete(stored, "more") // not under the "k" prefix checkAll scans
	checkAll(s)
	if v, err := getOne(t, s, "more"); err != nil || v != "x" {
		t.Fatalf("more = %q, %v", v, err)
	}
}

func getOne(t *testing.T, s store.Store, k string) (string, error) {
	var v []byte
	err := s.View(t.Context(), func(tx store.Tx) (err error) { v, err = tx.Get([]byte(k)); return err })
	return string(v), err
}

// A store written with one value threshold opens and reads with another:
// each value records where it lives (an upgrade from the 1 MiB threshold
// of earlier versions, and back).
func TestValueThresholdChangeAcrossOpens(t *testing.T) {
	dir := t.TempDir()
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 4096+i) }
	write := func(s store.Store, from, to int) {
		t.Helper()
		err := s.Update(t.Context(), func(tx store.Tx) error {
			for i := from; i < to; i++ {
				if err := tx.Set(fmt.Appendf(nil, "k%04d", i), val(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(s store.Store, n int) {
		t.Helper()
		err := s.View(t.Context(), func(tx store.Tx) error {
			for i := 0; i < n; i++ {
				v, err := tx.Get(fmt.Appendf(nil, "k%04d", i))
				if err != nil {
					return err
				}
				if !bytes.Equal(v, val(i)) {
					return fmt.Errorf("k%04d: %d bytes, not what was written", i, len(v))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for round, threshold := range []int64{0, 1 << 10, 0} {
		cfg := diskConfig(dir)
		cfg.ValueThreshold = threshold
		s := open(t, cfg)
		check(s, round*100)
		write(s, round*100, round*100+100)
		check(s, round*100+100)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
