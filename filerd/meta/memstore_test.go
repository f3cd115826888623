package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/filerd/store/badger"
)

// memStore is a small in-test store: a map and its sorted keys under an
// RWMutex; Update is serialized and applied only when fn succeeds.
type memStore struct {
	mu     sync.RWMutex
	kv     map[string][]byte
	keys   []string // sorted
	closed bool
}

func newMemStore() *memStore { return &memStore{kv: make(map[string][]byte)} }

// newStore is the store every test runs on: badger in memory, or the
// in-test memStore with KELP_META_STORE=mem.
func newStore(t testing.TB) store.Store {
	t.Helper()
	if os.Getenv("KELP_META_STORE") == "mem" {
		return newMemStore()
	}
	cfg := badger.DefaultConfig()
	cfg.InMemory = true
	cfg.MemTableSize = 8 << 20
	cfg.BlockCacheSize = 8 << 20
	cfg.MinFreeBytes = 0
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := badger.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func (s *memStore) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return fn(&memTx{s: s, ro: true})
}

func (s *memStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	tx := &memTx{s: s, w: make(map[string][]byte)}
	if err := fn(tx); err != nil {
		return err
	}
	for k, v := range tx.w {
		_, had := s.kv[k]
		if v == nil {
			if had {
				delete(s.kv, k)
				i := sort.SearchStrings(s.keys, k)
				s.keys = append(s.keys[:i], s.keys[i+1:]...)
			}
			continue
		}
		s.kv[k] = v
		if !had {
			i := sort.SearchStrings(s.keys, k)
			s.keys = append(s.keys, "")
			copy(s.keys[i+1:], s.keys[i:])
			s.keys[i] = k
		}
	}
	return nil
}

func (s *memStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

type memTx struct {
	s  *memStore
	ro bool
	w  map[string][]byte // pending writes; nil value = deleted
}

func (tx *memTx) Get(key []byte) ([]byte, error) {
	if v, ok := tx.w[string(key)]; ok {
		if v == nil {
			return nil, store.ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	v, ok := tx.s.kv[string(key)]
	if !ok {
		return nil, store.ErrNotFound
	}
	return append([]byte{}, v...), nil
}

func (tx *memTx) Set(key, value []byte) error {
	if tx.ro {
		return store.ErrReadOnly
	}
	tx.w[string(key)] = append([]byte{}, value...) // non-nil even if empty
	return nil
}

func (tx *memTx) Delete(key []byte) error {
	if tx.ro {
		return store.ErrReadOnly
	}
	tx.w[string(key)] = nil
	return nil
}

func (tx *memTx) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	from := string(prefix)
	if start != nil && string(start) > from {
		from = string(start)
	}
	var pend []string
	for k := range tx.w {
		if k >= from && bytes.HasPrefix([]byte(k), prefix) {
			pend = append(pend, k)
		}
	}
	sort.Strings(pend)
	i := sort.SearchStrings(tx.s.keys, from)
	j := 0
	for {
		var k string
		var v []byte
		bi := i < len(tx.s.keys) && bytes.HasPrefix([]byte(tx.s.keys[i]), prefix)
		pj := j < len(pend)
		switch {
		case !bi && !pj:
			return nil
		case pj && (!bi || pend[j] <= tx.s.keys[i]):
			k = pend[j]
			v = tx.w[k]
			if bi && tx.s.keys[i] == k {
				i++
			}
			j++
		default:
			k = tx.s.keys[i]
			i++
			if _, over := tx.w[k]; over {
				continue
			}
			v = tx.s.kv[k]
		}
		if v == nil {
			continue
		}
		more, err := fn([]byte(k), bytes.Clone(v))
		if err != nil || !more {
			return err
		}
	}
}

// faultStore wraps a store and fails the failAt-th Set (counting from 1)
// or, with failCommit, the commit of every Update, while armed.
type faultStore struct {
	store.Store
	armed      atomic.Bool
	failCommit bool
	failAt     int64
	sets       atomic.Int64
}

var errInjected = errors.New("injected failure")

func (f *faultStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return f.Store.Update(ctx, func(tx store.Tx) error {
		if err := fn(&faultTx{Tx: tx, f: f}); err != nil {
			return err
		}
		if f.armed.Load() && f.failCommit {
			return fmt.Errorf("commit: %w", errInjected)
		}
		return nil
	})
}

type faultTx struct {
	store.Tx
	f *faultStore
}

func (tx *faultTx) Set(k, v []byte) error {
	if tx.f.armed.Load() && tx.f.sets.Add(1) == tx.f.failAt {
		return fmt.Errorf("set: %w", errInjected)
	}
	return tx.Tx.Set(k, v)
}

func TestMemStoreScan(t *testing.T) {
	s := newMemStore()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Update(ctx, func(tx store.Tx) error {
		for _, k := range []string{"a1", "a3", "a5", "b1"} {
			must(tx.Set([]byte(k), []byte(k)))
		}
		return nil
	}))
	var got []string
	must(s.Update(ctx, func(tx store.Tx) error {
		must(tx.Set([]byte("a2"), []byte("x")))
		must(tx.Delete([]byte("a3")))
		must(tx.Set([]byte("a5"), []byte("y")))
		return tx.Scan([]byte("a"), []byte("a2"), func(k, v []byte) (bool, error) {
			got = append(got, string(k)+"="+string(v))
			return true, nil
		})
	}))
	if fmt.Sprint(got) != "[a2=x a5=y]" {
		t.Fatalf("scan = %v", got)
	}
}
