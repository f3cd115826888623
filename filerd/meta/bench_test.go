package meta

import (
	"context"
	"fmt"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

// reportBytes reports the stored bytes (keys + values) per inode, without
// and with the change log.
func reportBytes(b *testing.B, ns *Namespace, inodes int) {
	var meta, logb int
	err := ns.st.View(context.Background(), func(tx store.Tx) error {
		return tx.Scan(nil, nil, func(k, v []byte) (bool, error) {
			if k[0] == pfxLog {
				logb += len(k) + len(v)
			} else {
				meta += len(k) + len(v)
			}
			return true, nil
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(meta)/float64(inodes), "B/inode")
	b.ReportMetric(float64(logb)/float64(inodes), "logB/inode")
}

func BenchmarkCreate(b *testing.B) {
	ns, ctx := newNS(b)
	d := mkdir(b, ns, RootInode, "d")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ns.Create(ctx, d.Inode, fmt.Sprintf("file%08d", i), CreateRequest{Mode: 0o644, Exclusive: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportBytes(b, ns, b.N)
}

func BenchmarkCreateParallelDirs(b *testing.B) {
	ns, ctx := newNS(b)
	var dirs []Inode
	for i := 0; i < 64; i++ {
		dirs = append(dirs, mkdir(b, ns, RootInode, fmt.Sprint("d", i)).Inode)
	}
	var next int64
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		<-mu
		g := next
		next++
		mu <- struct{}{}
		d := dirs[g%int64(len(dirs))]
		for i := 0; pb.Next(); i++ {
			if _, err := ns.Create(ctx, d, fmt.Sprint("f", g, "-", i), CreateRequest{Mode: 0o644, Exclusive: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchTree(b *testing.B, n int) (*Namespace, Inode, []Attr) {
	ns, _ := newNS(b)
	d := mkdir(b, ns, RootInode, "d")
	var as []Attr
	for i := 0; i < n; i++ {
		as = append(as, mkfile(b, ns, d.Inode, fmt.Sprintf("f%06d", i)))
	}
	return ns, d.Inode, as
}

func BenchmarkLookup(b *testing.B) {
	ns, d, _ := benchTree(b, 1000)
	ctx := b.Context()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if _, err := ns.Lookup(ctx, d, fmt.Sprintf("f%06d", i%1000)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkGetAttr(b *testing.B) {
	ns, _, as := benchTree(b, 1000)
	ctx := b.Context()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if _, err := ns.GetAttr(ctx, as[i%len(as)].Inode); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRename(b *testing.B) {
	ns, d, _ := benchTree(b, 100)
	ctx := b.Context()
	e := mkdir(b, ns, RootInode, "e")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from, to := d, e.Inode
		if (i/100)%2 == 1 {
			from, to = e.Inode, d
		}
		n := fmt.Sprintf("f%06d", i%100)
		if err := ns.Rename(ctx, from, n, to, n, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadDir lists a 1000-entry directory in pages of 100; the
// figure is per entry.
func BenchmarkReadDir(b *testing.B) {
	ns, d, _ := benchTree(b, 1000)
	ctx := b.Context()
	b.ResetTimer()
	entries := 0
	for i := 0; i < b.N; i++ {
		after := ""
		for {
			es, err := ns.ReadDir(ctx, d, after, 100)
			if err != nil {
				b.Fatal(err)
			}
			if len(es) == 0 {
				break
			}
			entries += len(es)
			after = es[len(es)-1].Name
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(entries), "ns/entry")
}

func BenchmarkCreateParallelOneDir(b *testing.B) {
	ns, ctx := newNS(b)
	d := mkdir(b, ns, RootInode, "d")
	var mu = make(chan int, 1)
	mu <- 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := <-mu
		mu <- g + 1
		for i := 0; pb.Next(); i++ {
			if _, err := ns.Create(ctx, d.Inode, fmt.Sprint("f", g, "-", i), CreateRequest{Mode: 0o644, Exclusive: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
