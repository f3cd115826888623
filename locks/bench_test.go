package locks

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func benchManager(b *testing.B, sessions ...string) *Manager {
	b.Helper()
	m, err := NewManager(Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range sessions {
		if err := m.OpenSession(s, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// BenchmarkUncontendedLockUnlock measures SetLk of an exclusive fcntl lock
// to EOF and its unlock, on one inode nobody else locks: the cost the
// filer's lock service adds per lock/unlock pair, before the RPCs.
func BenchmarkUncontendedLockUnlock(b *testing.B) {
	for _, kind := range []Kind{Fcntl, Flock} {
		b.Run(kind.String(), func(b *testing.B) {
			m := benchManager(b, "bench")
			l := Lock{Kind: kind, Type: Exclusive, Range: Range{0, MaxOffset}, Owner: Owner{"bench", 1}, Pid: 1}
			u := l
			u.Type = Unlock
			b.ReportAllocs()
			for b.Loop() {
				if err := m.SetLk(1, l); err != nil {
					b.Fatal(err)
				}
				if err := m.SetLk(1, u); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
	}
}

// BenchmarkUncontendedLockUnlockParallel is the same from GOMAXPROCS
// goroutines, each on its own inode and owner: the Manager's one mutex is
// the limit.
func BenchmarkUncontendedLockUnlockParallel(b *testing.B) {
	m := benchManager(b, "bench")
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		id := next.Add(1)
		l := Lock{Kind: Fcntl, Type: Exclusive, Range: Range{0, MaxOffset}, Owner: Owner{"bench", id}, Pid: 1}
		u := l
		u.Type = Unlock
		for pb.Next() {
			if err := m.SetLk(id, l); err != nil {
				b.Error(err)
				return
			}
			if err := m.SetLk(id, u); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}

// BenchmarkHandover measures blocking locks handed between two owners.
// One op is a round trip: A unlocks and B's parked SetLkw is woken and
// granted, then B unlocks and A's parked SetLkw is woken and granted; so
// half of ns/op is one hand-over (wake-up, goroutine switch and grant).
func BenchmarkHandover(b *testing.B) {
	m := benchManager(b, "A", "B")
	ctx := context.Background()
	mk := func(s string, typ Type) Lock {
		return Lock{Kind: Fcntl, Type: typ, Range: WholeFile(), Owner: Owner{s, 1}}
	}
	parked := make(chan struct{}, 1) // a SetLkw is waiting
	bGot := make(chan struct{})      // B holds the lock
	aGot := make(chan struct{})      // A holds the lock
	m.parked = func(uint64, Lock) { parked <- struct{}{} }
	if err := m.SetLk(1, mk("A", Exclusive)); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	n := b.N
	go func() {
		for range n {
			if err := m.SetLkw(ctx, 1, mk("B", Exclusive)); err != nil {
				done <- err
				return
			}
			bGot <- struct{}{}
			<-parked
			if err := m.SetLk(1, mk("B", Unlock)); err != nil {
				done <- err
				return
			}
			<-aGot
		}
		done <- nil
	}()
	b.ResetTimer()
	for range n {
		<-parked
		if err := m.SetLk(1, mk("A", Unlock)); err != nil {
			b.Fatal(err)
		}
		<-bGot
		if err := m.SetLkw(ctx, 1, mk("A", Exclusive)); err != nil {
			b.Fatal(err)
		}
		aGot <- struct{}{}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*n)/1e3, "µs/handover")
}
