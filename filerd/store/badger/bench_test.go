package badger_test

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

// BenchmarkUpdateSmall: one Set of a 100-byte value per Update, from
// GOMAXPROCS*4 goroutines, on disk (fsync per commit, shared by concurrent
// commits), without fsync, and without fsync nor the free-space check.
func BenchmarkUpdateSmall(b *testing.B) {
	for _, c := range []struct {
		name  string
		sync  bool
		guard bool
	}{{"fsync", true, true}, {"nosync", false, true}, {"nosync-noguard", false, false}} {
		b.Run(c.name, func(b *testing.B) {
			cfg := diskConfig(b.TempDir())
			cfg.SyncWrites = c.sync
			if !c.guard {
				cfg.MinFreeBytes = 0 // no statfs per commit
			}
			s := open(b, cfg)
			defer s.Close()
			val := make([]byte, 100)
			var next atomic.Uint64
			b.SetParallelism(4)
			b.SetBytes(100)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				key := make([]byte, 8)
				for pb.Next() {
					binary.BigEndian.PutUint64(key, next.Add(1)*0x9E3779B97F4A7C15)
					if err := s.Update(b.Context(), func(tx store.Tx) error { return tx.Set(key, val) }); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGet: one Get per View over 100k keys with 100-byte values,
// in parallel.
func BenchmarkGet(b *testing.B) {
	s := open(b, diskConfig(b.TempDir()))
	defer s.Close()
	const n = 100_000
	val := make([]byte, 100)
	for i := 0; i < n; i += 1000 {
		err := s.Update(b.Context(), func(tx store.Tx) error {
			for j := i; j < i+1000; j++ {
				if err := tx.Set(binary.BigEndian.AppendUint64(nil, uint64(j)), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var ctr atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := make([]byte, 8)
		for pb.Next() {
			binary.BigEndian.PutUint64(key, (ctr.Add(1)*7919)%n)
			err := s.View(b.Context(), func(tx store.Tx) error {
				v, err := tx.Get(key)
				if err == nil && len(v) != 100 {
					b.Errorf("value of %d bytes", len(v))
				}
				return err
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
