package cache

import (
	"fmt"
	"testing"
)

// Blobs of 4 MiB read 4 KiB at a time at offsets spread over the blob.
const benchBlob = 4 << 20

func benchOffsets() []int64 {
	offs := make([]int64, 1024)
	for i := range offs {
		offs[i] = int64(i*7919*4096) % (benchBlob - 4096)
	}
	return offs
}

func benchMemory(b *testing.B, parallel bool) {
	c, err := New(memOnly(64 << 20))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	fids := make([]string, 8)
	for i := range fids {
		fids[i] = fmt.Sprintf("3,%08x", i)
		c.Put(fids[i], make([]byte, benchBlob))
	}
	offs := benchOffsets()
	b.SetBytes(4096)
	b.ReportAllocs()
	run := func(next func() bool) {
		p := make([]byte, 4096)
		i := 0
		for next() {
			if _, ok := c.ReadAt(fids[i%len(fids)], p, offs[i%len(offs)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	}
	if parallel {
		b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
	} else {
		run(b.Loop)
	}
}

func BenchmarkReadAtMemory4K(b *testing.B)         { benchMemory(b, false) }
func BenchmarkReadAtMemory4KParallel(b *testing.B) { benchMemory(b, true) }

// benchDisk reads 4 KiB ranges of 4 MiB blobs from the disk tier only (the
// files are in the page cache, so this measures the cache's own cost:
// open, two preads, checksums, close).
func benchDisk(b *testing.B, shift int64, parallel bool) {
	c, err := New(diskOnly(b.TempDir(), 1<<30))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	fids := make([]string, 8)
	for i := range fids {
		fids[i] = fmt.Sprintf("3,%08x", i)
		c.Put(fids[i], blob(fids[i], benchBlob))
		c.flush()
	}
	offs := benchOffsets()
	b.SetBytes(4096)
	b.ReportAllocs()
	run := func(next func() bool) {
		p := make([]byte, 4096)
		i := 0
		for next() {
			if _, ok := c.ReadAt(fids[i%len(fids)], p, offs[i%len(offs)]+shift); !ok {
				b.Fatal("miss")
			}
			i++
		}
	}
	if parallel {
		b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
	} else {
		run(b.Loop)
	}
}

func BenchmarkReadAtDisk4K(b *testing.B)          { benchDisk(b, 0, false) }
func BenchmarkReadAtDisk4KUnaligned(b *testing.B) { benchDisk(b, 100, false) }
func BenchmarkReadAtDisk4KParallel(b *testing.B)  { benchDisk(b, 0, true) }

// BenchmarkPut4M is what a caller pays: memory insert plus queueing (the
// disk write happens on the writer, dropped when the queue is full).
func BenchmarkPut4M(b *testing.B) {
	cfg := diskOnly(b.TempDir(), 1<<30)
	cfg.MemoryBytes = 64 << 20
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	data := blob("x", benchBlob)
	b.SetBytes(benchBlob)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Put(fmt.Sprintf("4,%x", i), data)
		i++
	}
	b.StopTimer()
	c.flush()
}

// BenchmarkDiskWrite4M is the writer's cost per 4 MiB blob: header and
// checksums, temp file, rename, index, eviction (the budget holds 64).
func BenchmarkDiskWrite4M(b *testing.B) {
	c, err := New(diskOnly(b.TempDir(), 64*diskCharge(benchBlob)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	data := blob("x", benchBlob)
	b.SetBytes(benchBlob)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.disk.write(fmt.Sprintf("4,%x", i), data)
		i++
	}
}

// BenchmarkGetDisk4M reads and checks a whole 4 MiB blob from disk.
func BenchmarkGetDisk4M(b *testing.B) {
	c, err := New(diskOnly(b.TempDir(), 1<<30))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Put("3,1", blob("3,1", benchBlob))
	c.flush()
	b.SetBytes(benchBlob)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get("3,1"); !ok {
			b.Fatal("miss")
		}
	}
}
