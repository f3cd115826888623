package badger

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kelpfs/kelp/filerd/store"
)

func testConfig(dir string) Config {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.MinFreeBytes = 2 * cfg.MemTableSize
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

// A badger database written by someone else is refused, not adopted.
func TestOpenRefusesForeignBadger(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("theirs"), []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(testConfig(dir)); !errors.Is(err, ErrFormat) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a foreign badger db = %v, want ErrFormat", err)
	}
}

// The value-log GC goroutine runs and stops with Close (under -race).
func TestGCLoopStops(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.GCInterval = time.Millisecond
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2<<20) // over the value threshold: lands in the value log
	for i := range 5 {
		err := s.Update(t.Context(), func(tx store.Tx) error { return tx.Set([]byte{byte(i % 2)}, big) })
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.gcDone:
	default:
		t.Fatal("GC goroutine still running after Close")
	}
}
