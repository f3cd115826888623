package meta

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

func snapshot(t *testing.T, st store.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	ok(t, st.View(context.Background(), func(tx store.Tx) error {
		return tx.Scan(nil, nil, func(k, v []byte) (bool, error) {
			out[string(k)] = string(v)
			return true, nil
		})
	}))
	return out
}

func diffSnap(a, b map[string]string) string {
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return fmt.Sprintf("key %q changed or removed", k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return fmt.Sprintf("key %q added", k)
		}
	}
	return ""
}

// faultFixture is the tree every fault case starts from.
type faultFixture struct {
	dir, sub, file, file2 Inode
}

func setupFault(t *testing.T, ns *Namespace) faultFixture {
	ctx := context.Background()
	d := mkdir(t, ns, RootInode, "d")
	s := mkdir(t, ns, d.Inode, "s")
	f := mkfile(t, ns, d.Inode, "f")
	g := mkfile(t, ns, RootInode, "g")
	_, err := ns.Link(ctx, f.Inode, RootInode, "f-link")
	ok(t, err)
	_, err = ns.AppendChunks(ctx, g.Inode, []Chunk{{Offset: 0, Size: 100, FileID: "1,g", ModifiedNs: 1}}, 0)
	ok(t, err)
	ok(t, ns.SetXattr(ctx, g.Inode, "user.a", []byte("v"), 0))
	return faultFixture{d.Inode, s.Inode, f.Inode, g.Inode}
}

func TestFaultLeavesNothingHalfDone(t *testing.T) {
	ctx := context.Background()
	ops := map[string]func(ns *Namespace, fx faultFixture) error{
		"create": func(ns *Namespace, fx faultFixture) error {
			_, err := ns.Create(ctx, fx.dir, "new", CreateRequest{Mode: 0o644})
			return err
		},
		"mkdir": func(ns *Namespace, fx faultFixture) error {
			_, err := ns.Mkdir(ctx, fx.sub, "new", 0o755, 0, 0)
			return err
		},
		"unlink-last": func(ns *Namespace, fx faultFixture) error { return ns.Unlink(ctx, RootInode, "g") },
		"unlink-hard": func(ns *Namespace, fx faultFixture) error { return ns.Unlink(ctx, fx.dir, "f") },
		"rmdir":       func(ns *Namespace, fx faultFixture) error { return ns.Rmdir(ctx, fx.dir, "s") },
		"rename-move": func(ns *Namespace, fx faultFixture) error { return ns.Rename(ctx, fx.dir, "s", RootInode, "s2", 0) },
		"rename-over": func(ns *Namespace, fx faultFixture) error { return ns.Rename(ctx, fx.dir, "f", RootInode, "g", 0) },
		"rename-xchg": func(ns *Namespace, fx faultFixture) error {
			return ns.Rename(ctx, fx.dir, "s", RootInode, "g", RenameExchange)
		},
		"link": func(ns *Namespace, fx faultFixture) error {
			_, err := ns.Link(ctx, fx.file2, fx.sub, "l")
			return err
		},
		"truncate": func(ns *Namespace, fx faultFixture) error {
			_, err := ns.SetAttr(ctx, fx.file2, SetAttrRequest{Size: u64(10)})
			return err
		},
		"append": func(ns *Namespace, fx faultFixture) error {
			_, err := ns.AppendChunks(ctx, fx.file2, []Chunk{{Offset: 0, Size: 200, FileID: "1,h", ModifiedNs: 5}}, 0)
			return err
		},
		"setxattr": func(ns *Namespace, fx faultFixture) error {
			return ns.SetXattr(ctx, fx.file2, "user.b", []byte("x"), 0)
		},
		"symlink": func(ns *Namespace, fx faultFixture) error {
			_, err := ns.Symlink(ctx, fx.dir, "sl", "t", 0, 0)
			return err
		},
	}
	for name, op := range ops {
		for _, commit := range []bool{false, true} {
			for k := int64(1); ; k++ {
				fs := &faultStore{Store: newStore(t), failCommit: commit, failAt: k}
				if commit {
					fs.failAt = -1
				}
				ns, _ := newNSOn(t, fs)
				fx := setupFault(t, ns)
				before := snapshot(t, fs)
				wm := ns.Watermark()
				fs.sets.Store(0)
				fs.armed.Store(true)
				err := op(ns, fx)
				fs.armed.Store(false)
				if err == nil {
					if commit {
						t.Fatalf("%s: commit failure not reported", name)
					}
					if k == 1 {
						t.Fatalf("%s: wrote nothing", name)
					}
					checkInvariants(t, ns)
					break
				}
				if !errors.Is(err, errInjected) {
					t.Fatalf("%s (set %d, commit %v): err %v", name, k, commit, err)
				}
				if d := diffSnap(before, snapshot(t, fs)); d != "" {
					t.Fatalf("%s (set %d, commit %v): %s", name, k, commit, d)
				}
				if ns.Watermark() != wm {
					t.Fatalf("%s: watermark moved on failure", name)
				}
				// The failure left nothing in memory either: the op now works.
				if err := op(ns, fx); err != nil {
					t.Fatalf("%s after failure: %v", name, err)
				}
				checkInvariants(t, ns)
				if commit {
					break
				}
			}
		}
	}
}
