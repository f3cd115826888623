package storage

import (
	"cmp"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

// checkMap verifies the needle map's invariants and compares it with model.
func checkMap(t *testing.T, m *needleMap, model map[uint64]nmEntry) {
	t.Helper()
	if m.Len() != len(model) {
		t.Fatalf("Len = %d, model has %d", m.Len(), len(model))
	}
	var prev uint64
	count := 0
	for bi, b := range m.blocks {
		if len(b) == 0 {
			t.Fatalf("block %d is empty", bi)
		}
		if cap(b) != nmBlockCap {
			t.Fatalf("block %d has cap %d, want %d", bi, cap(b), nmBlockCap)
		}
		for i, e := range b {
			if count > 0 && e.key <= prev {
				t.Fatalf("block %d entry %d: key %d after %d", bi, i, e.key, prev)
			}
			prev = e.key
			count++
			if want, ok := model[e.key]; !ok || want != e {
				t.Fatalf("key %d: map has %+v, model %+v (present %v)", e.key, e, want, ok)
			}
		}
	}
	if count != len(model) {
		t.Fatalf("blocks hold %d entries, model %d", count, len(model))
	}
	for k, want := range model {
		got, ok := m.get(k)
		if !ok || got != want {
			t.Fatalf("get(%d) = %+v, %v; want %+v", k, got, ok, want)
		}
	}
}

func TestNeedleMapSequential(t *testing.T) {
	m := newNeedleMap()
	model := map[uint64]nmEntry{}
	for k := uint64(1); k <= 5000; k++ {
		e := nmEntry{key: k, offset: uint32(k), size: uint32(k * 3)}
		if _, replaced := m.set(e); replaced {
			t.Fatalf("set(%d) replaced", k)
		}
		model[k] = e
	}
	checkMap(t, m, model)
	if want := (5000 + nmBlockCap - 1) / nmBlockCap; len(m.blocks) != want {
		t.Fatalf("%d blocks for sequential keys, want %d (full blocks)", len(m.blocks), want)
	}
	if _, ok := m.get(0); ok {
		t.Fatal("get(0) found")
	}
	if _, ok := m.get(5001); ok {
		t.Fatal("get(5001) found")
	}
}

func TestNeedleMapOutOfOrder(t *testing.T) {
	m := newNeedleMap()
	model := map[uint64]nmEntry{}
	put := func(k uint64) {
		e := nmEntry{key: k, offset: uint32(k + 7), size: uint32(k)}
		m.set(e)
		model[k] = e
	}
	// Even keys in order, then odd keys in reverse: every insert lands in
	// the middle, blocks split.
	for k := uint64(2); k <= 6000; k += 2 {
		put(k)
	}
	for k := uint64(5999); k >= 1 && k < 6000; k -= 2 {
		put(k)
	}
	put(0) // before everything
	checkMap(t, m, model)

	// Overwrite in place.
	old, replaced := m.set(nmEntry{key: 77, offset: 1, size: 2})
	if !replaced || old != model[77] {
		t.Fatalf("overwrite: old %+v replaced %v, want %+v", old, replaced, model[77])
	}
	model[77] = nmEntry{key: 77, offset: 1, size: 2}
	checkMap(t, m, model)

	// Remove most keys: blocks shrink and merge.
	for k := uint64(0); k <= 6000; k++ {
		if k%10 != 0 {
			if _, ok := m.remove(k); !ok {
				t.Fatalf("remove(%d) missed", k)
			}
			delete(model, k)
		}
	}
	checkMap(t, m, model)
	if len(m.blocks) > 3 {
		t.Errorf("%d blocks for %d entries after removals: blocks did not merge", len(m.blocks), m.Len())
	}
	if _, ok := m.remove(3); ok {
		t.Fatal("remove of an absent key succeeded")
	}
}

func TestNeedleMapRandomOpsAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := newNeedleMap()
	model := map[uint64]nmEntry{}
	next := uint64(1)
	for i := 0; i < 200000; i++ {
		var k uint64
		switch r := rng.IntN(100); {
		case r < 60: // sequencer: a new, larger key
			next += uint64(rng.IntN(3)) + 1
			k = next
		case r < 80: // an older key (overwrite or out of order)
			k = rng.Uint64N(next + 1)
		default:
			k = rng.Uint64N(next + 1)
			old, ok := m.remove(k)
			want, wok := model[k]
			if ok != wok || old != want {
				t.Fatalf("op %d remove(%d) = %+v, %v; model %+v, %v", i, k, old, ok, want, wok)
			}
			delete(model, k)
			continue
		}
		e := nmEntry{key: k, offset: rng.Uint32(), size: rng.Uint32()}
		old, replaced := m.set(e)
		want, wok := model[k]
		if replaced != wok || old != want {
			t.Fatalf("op %d set(%d) replaced %+v, %v; model %+v, %v", i, k, old, replaced, want, wok)
		}
		model[k] = e
		if i%20000 == 0 {
			checkMap(t, m, model)
		}
	}
	checkMap(t, m, model)
	snap := m.snapshot()
	byKey := func(a, b nmEntry) int { return cmp.Compare(a.key, b.key) }
	if !slices.IsSortedFunc(snap, byKey) || len(snap) != len(model) {
		t.Fatalf("snapshot: %d entries (model %d), sorted %v", len(snap), len(model), slices.IsSortedFunc(snap, byKey))
	}
}

func TestNeedleMapCounters(t *testing.T) {
	m := newNeedleMap()
	m.put(5, 8, 100)
	m.put(9, 8+needle.RecordSize(100), 50)
	m.put(5, 1024, 10) // overwrite: the first record is garbage
	if m.deleteCount != 1 || m.deletedBytes != needle.RecordSize(100) {
		t.Fatalf("after overwrite: deleteCount %d deletedBytes %d", m.deleteCount, m.deletedBytes)
	}
	m.del(9)
	want := needle.RecordSize(100) + needle.RecordSize(50) + needle.RecordSize(0)
	if m.deleteCount != 2 || m.deletedBytes != want || m.Len() != 1 {
		t.Fatalf("after delete: deleteCount %d deletedBytes %d (want %d) len %d", m.deleteCount, m.deletedBytes, want, m.Len())
	}
	m.del(1 << 40) // tombstone of an unknown key still counts its record
	if m.maxKey != 1<<40 || m.deletedBytes != want+needle.RecordSize(0) {
		t.Fatalf("maxKey %d deletedBytes %d", m.maxKey, m.deletedBytes)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestNeedleMapBytesPerNeedle measures the map's memory per needle for a
// million sequential keys (the sequencer's pattern) and, for comparison, a
// plain Go map of structs.
func TestNeedleMapBytesPerNeedle(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement")
	}
	const n = 1_000_000
	before := heapInUse()
	m := newNeedleMap()
	for k := uint64(1); k <= n; k++ {
		m.put(k, int64(k)*8, 1024)
	}
	after := heapInUse()
	perNeedle := float64(after-before) / n
	t.Logf("needle map: %.2f bytes per needle for %d needles (%d blocks)", perNeedle, n, len(m.blocks))
	if perNeedle > 20 {
		t.Errorf("needle map costs %.2f bytes per needle, want about 16", perNeedle)
	}
	runtime.KeepAlive(m)

	// Random insertion order: blocks split, so they are not full.
	rng := rand.New(rand.NewPCG(3, 4))
	keys := rng.Perm(n)
	before = heapInUse()
	r := newNeedleMap()
	for _, k := range keys {
		r.put(uint64(k)+1, int64(k)*8, 1024)
	}
	after = heapInUse()
	t.Logf("needle map, random key order: %.2f bytes per needle", float64(after-before)/n)
	runtime.KeepAlive(r)
	runtime.KeepAlive(keys)

	type value struct{ offset, size uint32 }
	before = heapInUse()
	gm := map[uint64]value{}
	for k := uint64(1); k <= n; k++ {
		gm[k] = value{uint32(k), 1024}
	}
	after = heapInUse()
	t.Logf("plain map[uint64]struct{offset, size uint32}: %.2f bytes per needle", float64(after-before)/n)
	runtime.KeepAlive(gm)
}
