// Package storetest is the conformance suite every store.Store
// implementation runs (Run, RunReopen), and Faulty, a wrapper that injects
// errors into any store so that its callers can test that a failure in the
// middle of an operation leaves nothing half-done.
//
// It depends on filerd/store and the standard library only, and is meant to
// be imported from tests. Run and RunReopen call t.Run for each property and
// open a fresh, empty store for each; the stores are used from several
// goroutines where a property needs it (isolation, conflicts).
package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kelpfs/kelp/filerd/store"
)

// Run runs the conformance suite. open returns a new, empty store; the
// suite closes it at the end of each subtest (and open may register its own
// t.Cleanup too: a second Close must not panic).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"NotFound", testNotFound},
		{"BinaryKeysAndEmptyValues", testBinaryKeys},
		{"ValuesAreCopies", testCopies},
		{"LargeValue", testLargeValue},
		{"ScanOrder", testScanOrder},
		{"ScanPrefixBounds", testScanPrefixBounds},
		{"ScanStart", testScanStart},
		{"ScanStopAndError", testScanStopAndError},
		{"ScanWhileWriting", testScanWhileWriting},
		{"ReadYourOwnWrites", testReadYourOwnWrites},
		{"Atomicity", testAtomicity},
		{"FailedWriteFailsUpdate", testFailedWriteFailsUpdate},
		{"ReadOnlyView", testReadOnly},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"NoLostUpdate", testNoLostUpdate},
		{"BigTransaction", testBigTransaction},
		{"ContextCancelled", testContextCancelled},
		{"ConcurrentMixed", testConcurrentMixed},
		{"Closed", testClosed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			c.fn(t, s)
		})
	}
}

// RunReopen runs the durability properties: what was committed before Close
// is there after the store is opened again on the same dir, and what failed
// is not. open opens (creating if needed) a store in dir.
func RunReopen(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Helper()
	t.Run("Reopen", func(t *testing.T) {
		dir := t.TempDir()
		ctx := t.Context()
		s := open(t, dir)
		want := map[string]string{}
		for batch := range 20 {
			must(t, s.Update(ctx, func(tx store.Tx) error {
				for i := range 250 {
					k, v := fmt.Sprintf("k%03d-%03d", batch, i), fmt.Sprintf("v%d", batch*1000+i)
					want[k] = v
					if err := tx.Set([]byte(k), []byte(v)); err != nil {
						return err
					}
				}
				return nil
			}))
		}
		must(t, s.Update(ctx, func(tx store.Tx) error {
			for i := range 100 {
				k := fmt.Sprintf("k007-%03d", i)
				delete(want, k)
				if err := tx.Delete([]byte(k)); err != nil {
					return err
				}
			}
			return nil
		}))
		errAbort := errors.New("abort")
		if err := s.Update(ctx, func(tx store.Tx) error {
			_ = tx.Set([]byte("aborted"), []byte("x"))
			_ = tx.Delete([]byte("k000-000"))
			return errAbort
		}); !errors.Is(err, errAbort) {
			t.Fatalf("aborted Update = %v, want errAbort", err)
		}
		must(t, s.Close())

		for round := range 2 {
			s = open(t, dir)
			checkContents(t, s, "", want)
			k := fmt.Sprintf("after-reopen-%d", round)
			want[k] = "y"
			must(t, set(ctx, s, k, "y"))
			must(t, s.Close())
		}
		s = open(t, dir)
		defer s.Close()
		checkContents(t, s, "", want)
	})
}

// ---- helpers ----

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func set(ctx context.Context, s store.Store, k, v string) error {
	return s.Update(ctx, func(tx store.Tx) error { return tx.Set([]byte(k), []byte(v)) })
}

func get(t *testing.T, s store.Store, k string) (string, error) {
	t.Helper()
	var v []byte
	err := s.View(t.Context(), func(tx store.Tx) error {
		var err error
		v, err = tx.Get([]byte(k))
		return err
	})
	return string(v), err
}

func wantValue(t *testing.T, s store.Store, k, want string) {
	t.Helper()
	got, err := get(t, s, k)
	if err != nil || got != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", k, got, err, want)
	}
}

func wantMissing(t *testing.T, s store.Store, k string) {
	t.Helper()
	got, err := get(t, s, k)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", k, got, err)
	}
}

type kv struct{ k, v string }

// scan collects the keys and values Scan hands out (copied).
func scan(tx store.Tx, prefix, start []byte) ([]kv, error) {
	var out []kv
	err := tx.Scan(prefix, start, func(k, v []byte) (bool, error) {
		out = append(out, kv{string(k), string(v)})
		return true, nil
	})
	return out, err
}

func scanView(t *testing.T, s store.Store, prefix, start []byte) []kv {
	t.Helper()
	var out []kv
	must(t, s.View(t.Context(), func(tx store.Tx) error {
		var err error
		out, err = scan(tx, prefix, start)
		return err
	}))
	return out
}

func keysOf(kvs []kv) []string {
	out := make([]string, len(kvs))
	for i, e := range kvs {
		out[i] = e.k
	}
	return out
}

func checkContents(t *testing.T, s store.Store, prefix string, want map[string]string) {
	t.Helper()
	got := scanView(t, s, []byte(prefix), nil)
	if len(got) != len(want) {
		t.Fatalf("store holds %d keys under %q, want %d", len(got), prefix, len(want))
	}
	for i, e := range got {
		if w, ok := want[e.k]; !ok || w != e.v {
			t.Fatalf("key %q = %q, want %q (present %v)", e.k, e.v, w, ok)
		}
		if i > 0 && got[i-1].k >= e.k {
			t.Fatalf("scan out of order: %q before %q", got[i-1].k, e.k)
		}
	}
}

func putAll(t *testing.T, s store.Store, keys ...string) {
	t.Helper()
	must(t, s.Update(t.Context(), func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.Set([]byte(k), []byte("v:"+k)); err != nil {
				return err
			}
		}
		return nil
	}))
}

// ---- properties ----

func testGetSetDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, set(ctx, s, "a", "1"))
	wantValue(t, s, "a", "1")
	must(t, set(ctx, s, "a", "2"))
	wantValue(t, s, "a", "2")
	must(t, s.Update(ctx, func(tx store.Tx) error { return tx.Delete([]byte("a")) }))
	wantMissing(t, s, "a")
	must(t, s.Update(ctx, func(tx store.Tx) error { return tx.Delete([]byte("never-there")) }))
	must(t, set(ctx, s, "a", "3"))
	wantValue(t, s, "a", "3")
}

func testNotFound(t *testing.T, s store.Store) {
	wantMissing(t, s, "missing")
	err := s.Update(t.Context(), func(tx store.Tx) error {
		_, err := tx.Get([]byte("missing"))
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get in Update = %v, want ErrNotFound", err)
	}
}

func testBinaryKeys(t *testing.T, s store.Store) {
	keys := [][]byte{{0}, {0, 0}, {0xff}, {0xff, 0xff}, {1, 0, 0xff}, []byte("!badger!x"), []byte("\x00!badger!")}
	must(t, s.Update(t.Context(), func(tx store.Tx) error {
		for i, k := range keys {
			if err := tx.Set(k, []byte{byte(i)}); err != nil {
				return err
			}
		}
		return tx.Set([]byte("empty"), nil)
	}))
	for i, k := range keys {
		wantValue(t, s, string(k), string([]byte{byte(i)}))
	}
	v, err := get(t, s, "empty")
	if err != nil || v != "" {
		t.Fatalf("empty value: Get = %q, %v", v, err)
	}
	got := keysOf(scanView(t, s, nil, nil))
	want := []string{"\x00", "\x00\x00", "\x00!badger!", "\x01\x00\xff", "!badger!x", "empty", "\xff", "\xff\xff"}
	if !slices.Equal(got, want) {
		t.Fatalf("scan = %q, want %q", got, want)
	}
}

func testCopies(t *testing.T, s store.Store) {
	ctx := t.Context()
	key, val := []byte("key"), []byte("value")
	must(t, s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Set(key, val); err != nil {
			return err
		}
		// Mutating the arguments after Set must not change what is stored,
		// neither in this transaction nor after the commit.
		copy(key, "KEY")
		copy(val, "VALUE")
		got, err := tx.Get([]byte("key"))
		if err != nil || string(got) != "value" {
			return fmt.Errorf("Get after mutating Set's arguments = %q, %v", got, err)
		}
		got[0] = 'X'
		again, err := tx.Get([]byte("key"))
		if err != nil || string(again) != "value" {
			return fmt.Errorf("Get after mutating a returned value = %q, %v", again, err)
		}
		return nil
	}))
	wantValue(t, s, "key", "value")
	wantMissing(t, s, "KEY")
	must(t, s.View(ctx, func(tx store.Tx) error {
		got, err := tx.Get([]byte("key"))
		if err != nil {
			return err
		}
		got[0] = 'X'
		return nil
	}))
	wantValue(t, s, "key", "value")
}

func testLargeValue(t *testing.T, s store.Store) {
	big := make([]byte, 512<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	must(t, s.Update(t.Context(), func(tx store.Tx) error { return tx.Set([]byte("big"), big) }))
	got, err := get(t, s, "big")
	if err != nil || got != string(big) {
		t.Fatalf("512 KiB value: len %d, %v", len(got), err)
	}
}

func testScanOrder(t *testing.T, s store.Store) {
	var keys []string
	for i := range 1000 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(i*2654435761)) // scattered order
		keys = append(keys, string(b[:]))
	}
	shuffled := slices.Clone(keys)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i := 0; i < len(shuffled); i += 100 {
		putAll(t, s, shuffled[i:i+100]...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	got := scanView(t, s, nil, nil)
	if !slices.Equal(keysOf(got), keys) {
		t.Fatalf("scan returned %d keys, not the %d sorted keys", len(got), len(keys))
	}
	for _, e := range got {
		if e.v != "v:"+e.k {
			t.Fatalf("key %q has value %q", e.k, e.v)
		}
	}
}

func testScanPrefixBounds(t *testing.T, s store.Store) {
	putAll(t, s, "a", "aa\xff", "ab", "ab\x00", "ab\xff", "ab\xff\xff", "ac", "b",
		"\xfe\xff", "\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff")
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"ab", []string{"ab", "ab\x00", "ab\xff", "ab\xff\xff"}},
		{"ab\xff", []string{"ab\xff", "ab\xff\xff"}},
		{"aa", []string{"aa\xff"}},
		{"b", []string{"b"}},
		{"c", nil},
		{"\xff", []string{"\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff"}},
		{"\xff\xff", []string{"\xff\xff", "\xff\xff\xff"}},
		{"\xff\xff\xff\xff", nil},
		{"\xfe", []string{"\xfe\xff"}},
	} {
		got := keysOf(scanView(t, s, []byte(c.prefix), nil))
		if !slices.Equal(got, c.want) {
			t.Errorf("Scan(prefix %q) = %q, want %q", c.prefix, got, c.want)
		}
	}
}

func testScanStart(t *testing.T, s store.Store) {
	putAll(t, s, "p/a", "p/c", "p/e", "q/a", "o/z")
	for _, c := range []struct {
		prefix, start string
		want          []string
	}{
		{"p/", "p/c", []string{"p/c", "p/e"}},      // inclusive
		{"p/", "p/b", []string{"p/c", "p/e"}},      // between keys
		{"p/", "p/c\x00", []string{"p/e"}},         // just after a key
		{"p/", "a", []string{"p/a", "p/c", "p/e"}}, // before the prefix
		{"p/", "p/", []string{"p/a", "p/c", "p/e"}},
		{"p/", "p/f", nil}, // past the last key
		{"p/", "q", nil},   // past the prefix
		{"", "p/c", []string{"p/c", "p/e", "q/a"}},
	} {
		got := keysOf(scanView(t, s, []byte(c.prefix), []byte(c.start)))
		if !slices.Equal(got, c.want) {
			t.Errorf("Scan(prefix %q, start %q) = %q, want %q", c.prefix, c.start, got, c.want)
		}
	}
}

func testScanStopAndError(t *testing.T, s store.Store) {
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	putAll(t, s, keys...)
	calls := 0
	must(t, s.View(t.Context(), func(tx store.Tx) error {
		return tx.Scan([]byte("k"), nil, func(k, v []byte) (bool, error) {
			calls++
			return calls < 3, nil
		})
	}))
	if calls != 3 {
		t.Fatalf("fn returning false on call 3: %d calls", calls)
	}
	errStop := errors.New("stop here")
	calls = 0
	err := s.View(t.Context(), func(tx store.Tx) error {
		return tx.Scan([]byte("k"), nil, func(k, v []byte) (bool, error) {
			calls++
			if calls == 4 {
				return true, errStop
			}
			return true, nil
		})
	})
	if !errors.Is(err, errStop) || calls != 4 {
		t.Fatalf("fn error on call 4: View = %v after %d calls, want errStop after 4", err, calls)
	}
}

// testScanWhileWriting: a transaction may Get, Scan and write while a Scan
// is running (recursive deletes do), and the deletes take effect.
func testScanWhileWriting(t *testing.T, s store.Store) {
	var keys []string
	for i := range 50 {
		keys = append(keys, fmt.Sprintf("d/%02d", i))
	}
	putAll(t, s, keys...)
	putAll(t, s, "e/1", "e/2")
	must(t, s.Update(t.Context(), func(tx store.Tx) error {
		return tx.Scan([]byte("d/"), nil, func(k, v []byte) (bool, error) {
			if _, err := tx.Get(k); err != nil {
				return false, err
			}
			inner, err := scan(tx, []byte("e/"), nil)
			if err != nil || len(inner) != 2 {
				return false, fmt.Errorf("nested scan = %v, %v", inner, err)
			}
			if err := tx.Delete(k); err != nil {
				return false, err
			}
			return true, tx.Set(append([]byte("moved/"), k...), v)
		})
	}))
	if got := scanView(t, s, []byte("d/"), nil); len(got) != 0 {
		t.Fatalf("%d keys left after deleting them during a scan", len(got))
	}
	if got := scanView(t, s, []byte("moved/"), nil); len(got) != 50 {
		t.Fatalf("%d keys moved, want 50", len(got))
	}
}

func testReadYourOwnWrites(t *testing.T, s store.Store) {
	putAll(t, s, "x/1", "x/2", "x/3")
	must(t, s.Update(t.Context(), func(tx store.Tx) error {
		if err := tx.Set([]byte("x/0"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Set([]byte("x/2"), []byte("changed")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("x/3")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("x/0")); err != nil || string(v) != "new" {
			return fmt.Errorf("own Set: Get = %q, %v", v, err)
		}
		if _, err := tx.Get([]byte("x/3")); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("own Delete: Get = %v, want ErrNotFound", err)
		}
		got, err := scan(tx, []byte("x/"), nil)
		if err != nil {
			return err
		}
		want := []kv{{"x/0", "new"}, {"x/1", "v:x/1"}, {"x/2", "changed"}}
		if !slices.Equal(got, want) {
			return fmt.Errorf("scan of own writes = %q, want %q", got, want)
		}
		// Set after Delete in one transaction.
		if err := tx.Delete([]byte("x/1")); err != nil {
			return err
		}
		return tx.Set([]byte("x/1"), []byte("back"))
	}))
	checkContents(t, s, "x/", map[string]string{"x/0": "new", "x/1": "back", "x/2": "changed"})
}

func testAtomicity(t *testing.T, s store.Store) {
	putAll(t, s, "keep", "victim")
	errAbort := errors.New("abort")
	runs := 0
	err := s.Update(t.Context(), func(tx store.Tx) error {
		runs++
		for i := range 100 {
			if err := tx.Set(fmt.Appendf(nil, "new/%d", i), []byte("x")); err != nil {
				return err
			}
		}
		if err := tx.Set([]byte("keep"), []byte("overwritten")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("victim")); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if runs != 1 {
		t.Fatalf("fn ran %d times after returning an error; want once", runs)
	}
	wantValue(t, s, "keep", "v:keep")
	wantValue(t, s, "victim", "v:victim")
	if got := scanView(t, s, []byte("new/"), nil); len(got) != 0 {
		t.Fatalf("failed Update left %d keys", len(got))
	}
	// A panic in fn leaves nothing either (and the store keeps working).
	func() {
		defer func() { _ = recover() }()
		_ = s.Update(t.Context(), func(tx store.Tx) error {
			_ = tx.Set([]byte("panicked"), []byte("x"))
			panic("boom")
		})
	}()
	wantMissing(t, s, "panicked")
	must(t, set(t.Context(), s, "after-panic", "ok"))
	wantValue(t, s, "after-panic", "ok")
}

// testFailedWriteFailsUpdate: a Set that fails (here: a key too big for any
// store, 1 MiB) fails the Update even when fn ignores the error, so a
// transaction never commits only part of what its author wrote.
func testFailedWriteFailsUpdate(t *testing.T, s store.Store) {
	hugeKey := bytes.Repeat([]byte{'k'}, 1<<20)
	var setErr error
	err := s.Update(t.Context(), func(tx store.Tx) error {
		if err := tx.Set([]byte("before"), []byte("x")); err != nil {
			return err
		}
		setErr = tx.Set(hugeKey, []byte("x"))
		return tx.Set([]byte("after"), []byte("x"))
	})
	if setErr == nil {
		// The store takes 1 MiB keys: nothing to check here.
		wantValue(t, s, "before", "x")
		return
	}
	if err == nil {
		t.Fatalf("Set of a 1 MiB key failed (%v) but the Update committed", setErr)
	}
	wantMissing(t, s, "before")
	wantMissing(t, s, "after")
}

func testReadOnly(t *testing.T, s store.Store) {
	putAll(t, s, "ro")
	var setErr, delErr error
	must(t, s.View(t.Context(), func(tx store.Tx) error {
		setErr = tx.Set([]byte("ro"), []byte("changed"))
		delErr = tx.Delete([]byte("ro"))
		return nil
	}))
	if !errors.Is(setErr, store.ErrReadOnly) || !errors.Is(delErr, store.ErrReadOnly) {
		t.Fatalf("writes in View: Set = %v, Delete = %v; want ErrReadOnly", setErr, delErr)
	}
	wantValue(t, s, "ro", "v:ro")
}

func testSnapshotIsolation(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, set(ctx, s, "snap", "old"))
	putAll(t, s, "list/1")
	started, committed := make(chan struct{}), make(chan struct{})
	var viewErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		viewErr = s.View(ctx, func(tx store.Tx) error {
			if v, err := tx.Get([]byte("snap")); err != nil || string(v) != "old" {
				return fmt.Errorf("before: Get = %q, %v", v, err)
			}
			close(started)
			<-committed
			if v, err := tx.Get([]byte("snap")); err != nil || string(v) != "old" {
				return fmt.Errorf("a View saw an Update that committed after it began: Get = %q, %v", v, err)
			}
			if _, err := tx.Get([]byte("added")); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("a View saw a key added after it began: %v", err)
			}
			got, err := scan(tx, []byte("list/"), nil)
			if err != nil || len(got) != 1 {
				return fmt.Errorf("a View's scan saw a later commit: %q, %v", got, err)
			}
			return nil
		})
	})
	<-started
	updErr := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Set([]byte("snap"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Set([]byte("list/2"), nil); err != nil {
			return err
		}
		return tx.Set([]byte("added"), []byte("x"))
	})
	close(committed)
	wg.Wait()
	must(t, updErr)
	must(t, viewErr)
	wantValue(t, s, "snap", "new")
}

func readCounter(tx store.Tx, key []byte) (uint64, error) {
	v, err := tx.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("counter of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func increment(tx store.Tx, key []byte) error {
	n, err := readCounter(tx, key)
	if err != nil {
		return err
	}
	return tx.Set(key, binary.BigEndian.AppendUint64(nil, n+1))
}

func testConcurrentIncrements(t *testing.T, s store.Store) {
	const workers, each = 8, 50
	key := []byte("counter")
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := s.Update(t.Context(), func(tx store.Tx) error { return increment(tx, key) }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment: %v", err)
	}
	var n uint64
	must(t, s.View(t.Context(), func(tx store.Tx) (err error) { n, err = readCounter(tx, key); return err }))
	if n != workers*each {
		t.Fatalf("counter = %d after %d increments", n, workers*each)
	}
}

// testNoLostUpdate interleaves two read-modify-write transactions on purpose:
// A reads, B reads and commits, A writes and commits. A must be retried (or
// wait, on a locking store) so both increments count.
func testNoLostUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	key := []byte("lost")
	bDone := make(chan struct{})
	aRead := make(chan struct{})
	var aOnce sync.Once
	var aErr, bErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		aErr = s.Update(ctx, func(tx store.Tx) error {
			n, err := readCounter(tx, key)
			if err != nil {
				return err
			}
			first := false
			aOnce.Do(func() { first = true; close(aRead) })
			if first {
				// Wait for B's commit; a store that locks on read makes B
				// wait for A instead, so do not wait for ever.
				select {
				case <-bDone:
				case <-time.After(2 * time.Second):
				}
			}
			return tx.Set(key, binary.BigEndian.AppendUint64(nil, n+1))
		})
	})
	<-aRead
	wg.Go(func() {
		defer close(bDone)
		bErr = s.Update(ctx, func(tx store.Tx) error { return increment(tx, key) })
	})
	wg.Wait()
	must(t, aErr)
	must(t, bErr)
	var n uint64
	must(t, s.View(ctx, func(tx store.Tx) (err error) { n, err = readCounter(tx, key); return err }))
	if n != 2 {
		t.Fatalf("counter = %d after two interleaved increments: an update was lost", n)
	}
}

// testBigTransaction writes up to 64 MiB in one transaction: it must either
// commit all of it or fail with ErrTooBig and leave nothing.
func testBigTransaction(t *testing.T, s store.Store) {
	const n, size = 1024, 64 << 10
	val := make([]byte, size)
	for i := range val {
		val[i] = byte(i*31 + i>>8)
	}
	err := s.Update(t.Context(), func(tx store.Tx) error {
		for i := range n {
			if err := tx.Set(fmt.Appendf(nil, "big/%04d", i), val); err != nil {
				return err
			}
		}
		return nil
	})
	var count int
	must(t, s.View(t.Context(), func(tx store.Tx) error {
		return tx.Scan([]byte("big/"), nil, func(k, v []byte) (bool, error) {
			if !bytes.Equal(v, val) {
				return false, fmt.Errorf("key %q: wrong value", k)
			}
			count++
			return true, nil
		})
	}))
	switch {
	case err == nil && count != n:
		t.Fatalf("big transaction committed but %d of %d keys are there", count, n)
	case err != nil && !errors.Is(err, store.ErrTooBig):
		t.Fatalf("big transaction failed with %v, want ErrTooBig", err)
	case err != nil && count != 0:
		t.Fatalf("big transaction failed (%v) but left %d keys", err, count)
	}
	if err != nil {
		t.Logf("64 MiB transaction: %v", err)
	}
	// The store still works.
	must(t, set(t.Context(), s, "after-big", "ok"))
	wantValue(t, s, "after-big", "ok")
}

func testContextCancelled(t *testing.T, s store.Store) {
	putAll(t, s, "c")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.View(ctx, func(tx store.Tx) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("View with a cancelled ctx = %v, want context.Canceled", err)
	}
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Set([]byte("c"), []byte("changed")) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Update with a cancelled ctx = %v, want context.Canceled", err)
	}
	wantValue(t, s, "c", "v:c")

	// Cancelled while fn runs: either it committed (nil) or nothing is there.
	ctx, cancel = context.WithCancel(t.Context())
	err = s.Update(ctx, func(tx store.Tx) error {
		cancel()
		return tx.Set([]byte("mid"), []byte("x"))
	})
	if err != nil {
		wantMissing(t, s, "mid")
	} else {
		wantValue(t, s, "mid", "x")
	}

	// A long Scan notices the cancellation (or finishes): no hang.
	var keys []string
	for i := range 2000 {
		keys = append(keys, fmt.Sprintf("s/%05d", i))
	}
	putAll(t, s, keys...)
	ctx, cancel = context.WithCancel(t.Context())
	seen := 0
	err = s.View(ctx, func(tx store.Tx) error {
		return tx.Scan([]byte("s/"), nil, func(k, v []byte) (bool, error) {
			seen++
			if seen == 10 {
				cancel()
			}
			return true, nil
		})
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Scan cancelled midway = %v", err)
	}
	if err == nil && seen != len(keys) {
		t.Fatalf("Scan returned nil after %d of %d keys", seen, len(keys))
	}
}

// testConcurrentMixed runs readers and writers on disjoint and shared keys
// (for the race detector) and checks the result.
func testConcurrentMixed(t *testing.T, s store.Store) {
	const workers, rounds = 4, 50
	ctx := t.Context()
	errs := make(chan error, 2*workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				err := s.Update(ctx, func(tx store.Tx) error {
					if err := tx.Set(fmt.Appendf(nil, "m/%d/%03d", w, i), []byte("x")); err != nil {
						return err
					}
					return increment(tx, []byte("m-total"))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for range rounds {
				err := s.View(ctx, func(tx store.Tx) error {
					// Every committed m/ key was counted in the same
					// transaction, so a snapshot never sees more keys than
					// the counter says.
					n, err := readCounter(tx, []byte("m-total"))
					if err != nil {
						return err
					}
					got, err := scan(tx, []byte("m/"), nil)
					if err != nil {
						return err
					}
					if uint64(len(got)) != n {
						return fmt.Errorf("snapshot with %d keys and counter %d", len(got), n)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := scanView(t, s, []byte("m/"), nil); len(got) != workers*rounds {
		t.Fatalf("%d keys, want %d", len(got), workers*rounds)
	}
}

func testClosed(t *testing.T, s store.Store) {
	putAll(t, s, "k")
	must(t, s.Close())
	ctx := t.Context()
	if err := s.View(ctx, func(tx store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("View after Close = %v, want ErrClosed", err)
	}
	if err := set(ctx, s, "k", "x"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Update after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Fatalf("second Close = %v, want nil or ErrClosed", err)
	}
}
