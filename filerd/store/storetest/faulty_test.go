package storetest_test

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/filerd/store/badger"
	"github.com/kelpfs/kelp/filerd/store/storetest"
)

func memStore(t *testing.T) store.Store {
	cfg := badger.DefaultConfig()
	cfg.InMemory = true
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := badger.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With no fault armed, Faulty is a conforming store.
func TestFaultyConforms(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.NewFaulty(memStore(t)) })
}

// threeKeys writes a, b, c in one Update.
func threeKeys(t *testing.T, s store.Store) error {
	return s.Update(t.Context(), func(tx store.Tx) error {
		for _, k := range []string{"a", "b", "c"} {
			if err := tx.Set([]byte(k), []byte(k)); err != nil {
				return err
			}
		}
		return tx.Delete([]byte("old"))
	})
}

func count(t *testing.T, s store.Store) (n int, old bool) {
	err := s.View(t.Context(), func(tx store.Tx) error {
		return tx.Scan(nil, nil, func(k, v []byte) (bool, error) {
			if string(k) == "old" {
				old = true
			} else {
				n++
			}
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, old
}

func reset(t *testing.T, s store.Store) {
	err := s.Update(t.Context(), func(tx store.Tx) error {
		for _, k := range []string{"a", "b", "c"} {
			if err := tx.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return tx.Set([]byte("old"), []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every failure point of an Update leaves nothing applied, and the sweep
// idiom from the Faulty doc finds all of them.
func TestFaultySweep(t *testing.T) {
	f := storetest.NewFaulty(memStore(t))
	defer f.Close()
	points := 0
	for n := 0; ; n++ {
		reset(t, f)
		f.FailAfter(storetest.OpWrite|storetest.OpCommit, n, nil)
		before := f.Injected()
		err := threeKeys(t, f)
		if f.Injected() == before {
			if err != nil {
				t.Fatalf("no fault fired but Update = %v", err)
			}
			break
		}
		points++
		if !errors.Is(err, storetest.ErrInjected) {
			t.Fatalf("fault %d: Update = %v, want ErrInjected", n, err)
		}
		if got, old := count(t, f); got != 0 || !old {
			t.Fatalf("fault %d: %d keys written, old key present %v: half-done", n, got, old)
		}
	}
	if points != 5 { // 3 sets, 1 delete, 1 commit
		t.Fatalf("%d failure points, want 5", points)
	}
	if got, old := count(t, f); got != 3 || old {
		t.Fatalf("after the sweep: %d keys, old %v", got, old)
	}
}

func TestFaultyKinds(t *testing.T) {
	f := storetest.NewFaulty(memStore(t))
	defer f.Close()
	ctx := t.Context()

	// A write fault fn ignores still fails the Update.
	reset(t, f)
	f.FailAfterSets(1)
	err := f.Update(ctx, func(tx store.Tx) error {
		for _, k := range []string{"a", "b", "c"} {
			_ = tx.Set([]byte(k), nil)
		}
		return nil
	})
	if !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("ignored Set fault: Update = %v", err)
	}
	if n, _ := count(t, f); n != 0 {
		t.Fatalf("ignored Set fault: %d keys applied", n)
	}

	// A custom error, e.g. a full disk, on a Get in a View.
	errDisk := fmt.Errorf("disk: %w", errors.ErrUnsupported)
	f.FailAfter(storetest.OpGet, 0, errDisk)
	err = f.View(ctx, func(tx store.Tx) error { _, err := tx.Get([]byte("old")); return err })
	if !errors.Is(err, errDisk) {
		t.Fatalf("Get fault: %v", err)
	}
	// One-shot: the next Get works.
	if err := f.View(ctx, func(tx store.Tx) error { _, err := tx.Get([]byte("old")); return err }); err != nil {
		t.Fatal(err)
	}

	// FailNextCommit: fn ran to the end, nothing applied.
	f.FailNextCommit()
	if err := threeKeys(t, f); !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("commit fault: %v", err)
	}
	if n, old := count(t, f); n != 0 || !old {
		t.Fatal("commit fault applied the transaction")
	}

	// OpCommitAck: applied, yet reported as failed.
	f.FailAfter(storetest.OpCommitAck, 0, nil)
	if err := threeKeys(t, f); !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("ack fault: %v", err)
	}
	if n, old := count(t, f); n != 3 || old {
		t.Fatal("ack fault did not apply the transaction")
	}

	// Scan fault, and Disarm.
	f.FailAfter(storetest.OpScan, 0, nil)
	f.Disarm()
	if n, _ := count(t, f); n != 3 {
		t.Fatal("disarmed fault fired")
	}
	f.FailAfter(storetest.OpScan, 0, nil)
	err = f.View(ctx, func(tx store.Tx) error {
		return tx.Scan(nil, nil, func(k, v []byte) (bool, error) { return true, nil })
	})
	if !errors.Is(err, storetest.ErrInjected) {
		t.Fatalf("scan fault: %v", err)
	}
	if f.Injected() != 5 {
		t.Fatalf("Injected = %d, want 5", f.Injected())
	}
	if got := (storetest.OpSet | storetest.OpCommit).String(); got != "set|commit" {
		t.Fatalf("Op.String = %q", got)
	}
}
