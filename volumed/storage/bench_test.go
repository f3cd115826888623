package storage

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

func benchStore(b *testing.B, fsync bool) *Store {
	b.Helper()
	s, err := NewStore(Config{
		Dirs:            []string{b.TempDir()},
		MaxVolumes:      []int{4},
		VolumeSizeLimit: needle.MaxVolumeOffset,
		Fsync:           fsync,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.AllocateVolume(1, "", needle.ReplicaPlacement{}, needle.TTL{}, 0); err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkWrite1KiB(b *testing.B) {
	s := benchStore(b, false)
	data := blob(1, 1024)
	b.SetBytes(1024)
	b.ReportAllocs()
	var key uint64
	for b.Loop() {
		key++
		if _, err := s.Write(1, &needle.Needle{ID: key, Cookie: 7, Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite1KiBParallel(b *testing.B) {
	s := benchStore(b, false)
	data := blob(1, 1024)
	b.SetBytes(1024)
	b.ReportAllocs()
	var next atomicCounter
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Write(1, &needle.Needle{ID: next.add(), Cookie: 7, Data: data}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkWrite1KiBFsync(b *testing.B) {
	s := benchStore(b, true)
	data := blob(1, 1024)
	b.SetBytes(1024)
	var next atomicCounter
	b.SetParallelism(8) // group commit: concurrent writers share fsyncs
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Write(1, &needle.Needle{ID: next.add(), Cookie: 7, Data: data}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

const benchReadKeys = 100_000

func readStore(b *testing.B) *Store {
	s := benchStore(b, false)
	data := blob(1, 1024)
	for k := uint64(1); k <= benchReadKeys; k++ {
		if _, err := s.Write(1, &needle.Needle{ID: k, Cookie: 7, Data: data}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkRead1KiB(b *testing.B) {
	s := readStore(b)
	rng := rand.New(rand.NewPCG(1, 1))
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Read(1, 1+rng.Uint64N(benchReadKeys), 7); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead1KiBParallel(b *testing.B) {
	s := readStore(b)
	b.SetBytes(1024)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			if _, err := s.Read(1, 1+rng.Uint64N(benchReadKeys), 7); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkNeedleMapGet(b *testing.B) {
	m := newNeedleMap()
	for k := uint64(1); k <= 1_000_000; k++ {
		m.put(k, int64(k)*8, 1024)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for b.Loop() {
		if _, ok := m.get(1 + rng.Uint64N(1_000_000)); !ok {
			b.Fatal("missing")
		}
	}
}
