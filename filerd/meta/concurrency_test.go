package meta

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

// expectedErr reports whether err is one a racing operation may get.
func expectedErr(err error) bool {
	for _, e := range []error{ErrNotFound, ErrExists, ErrNotEmpty, ErrNotDir, ErrIsDir, ErrInvalid, ErrPermission, ErrStale} {
		if errors.Is(err, e) {
			return true
		}
	}
	return err == nil
}

func TestConcurrentRenameLinkUnlink(t *testing.T) {
	ns, ctx := newNS(t)
	var dirs []Inode
	dirs = append(dirs, RootInode)
	for _, n := range []string{"a", "b", "c"} {
		d := mkdir(t, ns, RootInode, n)
		dirs = append(dirs, d.Inode, mkdir(t, ns, d.Inode, "s").Inode)
	}
	names := []string{"x", "y", "z", "s", "w"}
	iters := 400
	if testing.Short() {
		iters = 100
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			pd := func() Inode { return dirs[rng.Intn(len(dirs))] }
			pn := func() string { return names[rng.Intn(len(names))] }
			for i := 0; i < iters; i++ {
				var err error
				switch rng.Intn(8) {
				case 0:
					_, err = ns.Create(ctx, pd(), pn(), CreateRequest{Mode: 0o644, Exclusive: true})
				case 1:
					_, err = ns.Mkdir(ctx, pd(), pn(), 0o755, 0, 0)
				case 2:
					err = ns.Unlink(ctx, pd(), pn())
				case 3:
					err = ns.Rmdir(ctx, pd(), pn())
				case 4, 5:
					flags := RenameFlags(rng.Intn(3))
					err = ns.Rename(ctx, pd(), pn(), pd(), pn(), flags)
				case 6:
					var a Attr
					if a, err = ns.Lookup(ctx, pd(), pn()); err == nil {
						_, err = ns.Link(ctx, a.Inode, pd(), pn())
					}
				case 7:
					var a Attr
					if a, err = ns.Lookup(ctx, pd(), pn()); err == nil && !a.IsDir() {
						if err = ns.Open(ctx, a.Inode); err == nil {
							_ = ns.Unlink(ctx, pd(), pn())
							err = ns.Release(ctx, a.Inode)
						}
					}
				}
				if !expectedErr(err) {
					errc <- fmt.Errorf("goroutine %d: %w", g, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	checkInvariants(t, ns)
	// No inode is left open-unlinked: every handle was released.
	_ = ns.st.View(ctx, func(tx store.Tx) error {
		return tx.Scan([]byte{pfxOrphan}, nil, func(k, _ []byte) (bool, error) {
			t.Errorf("orphan left: %x", k)
			return true, nil
		})
	})
	// Every event is in the log once, in order.
	evs := allEvents(t, ns)
	for i := 1; i < len(evs); i++ {
		if evs[i].TsNs <= evs[i-1].TsNs {
			t.Fatalf("log order broken at %d", i)
		}
	}
}

// TestOpenRacesUnlink: a handle taken concurrently with the unlink of the
// last name either fails with ErrStale or keeps the inode until Release.
func TestOpenRacesUnlink(t *testing.T) {
	ns, ctx := newNS(t)
	for i := 0; i < 200; i++ {
		f := mkfile(t, ns, RootInode, "f")
		var wg sync.WaitGroup
		var openErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				openErr = ns.Open(ctx, f.Inode)
			} else {
				_, openErr = ns.OpenContent(ctx, f.Inode)
			}
		}()
		go func() { defer wg.Done(); ok(t, ns.Unlink(ctx, RootInode, "f")) }()
		wg.Wait()
		if openErr == nil {
			if _, err := ns.GetAttr(ctx, f.Inode); err != nil {
				t.Fatalf("open succeeded but the inode is gone: %v", err)
			}
			ok(t, ns.Release(ctx, f.Inode))
		} else {
			mustErr(t, openErr, ErrStale)
		}
		if _, err := ns.GetAttr(ctx, f.Inode); !errors.Is(err, ErrNotFound) {
			t.Fatalf("inode left after release: %v", err)
		}
	}
	checkInvariants(t, ns)
	_ = context.Background
}
