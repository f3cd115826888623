package meta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

func newNS(t testing.TB) (*Namespace, context.Context) {
	t.Helper()
	return newNSOn(t, newStore(t))
}

func newNSOn(t testing.TB, st store.Store) (*Namespace, context.Context) {
	t.Helper()
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Signature = 7
	ns, err := Open(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ns, ctx
}

func mustErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mkfile(t testing.TB, ns *Namespace, dir Inode, name string) Attr {
	t.Helper()
	a, err := ns.Create(context.Background(), dir, name, CreateRequest{Mode: 0o644, Exclusive: true})
	ok(t, err)
	return a
}

func mkdir(t testing.TB, ns *Namespace, dir Inode, name string) Attr {
	t.Helper()
	a, err := ns.Mkdir(context.Background(), dir, name, 0o755, 0, 0)
	ok(t, err)
	return a
}

// checkInvariants walks the whole tree and checks, against the raw store:
// every entry points at an existing inode of the entry's type; every
// non-directory's nlink equals its entries, a directory has exactly one
// entry, nlink 2 + subdirectories, and records its parent and name; every
// stored inode is reachable or open-unlinked; every key belongs to a live
// inode; no referenced chunk is queued for deletion.
func checkInvariants(t testing.TB, ns *Namespace) {
	t.Helper()
	err := ns.st.View(context.Background(), func(tx store.Tx) error {
		attrs := map[Inode]Attr{}
		ents := map[Inode][]string{}
		subdirs := map[Inode]int{}
		entriesOf := map[Inode]int{}
		orphans := map[Inode]bool{}
		queued := map[string]bool{}
		type ent struct {
			dir   Inode
			name  string
			child Inode
			typ   Type
		}
		var all []ent
		err := tx.Scan(nil, nil, func(k, v []byte) (bool, error) {
			switch k[0] {
			case pfxInode:
				a, err := decodeAttr(v)
				if err != nil {
					return false, err
				}
				attrs[Inode(binary.BigEndian.Uint64(k[1:]))] = a
			case pfxDirent:
				ino, typ, err := decodeDirent(v)
				if err != nil {
					return false, err
				}
				d := Inode(binary.BigEndian.Uint64(k[1:9]))
				all = append(all, ent{d, string(k[9:]), ino, typ})
				entriesOf[d]++
			case pfxOrphan:
				orphans[Inode(binary.BigEndian.Uint64(k[1:]))] = true
			case pfxGC:
				c, err := decodeChunk(v)
				if err != nil {
					return false, err
				}
				queued[c.FileID] = true
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, e := range all {
			d, okd := attrs[e.dir]
			if !okd || !d.IsDir() {
				return fmt.Errorf("entry %q in %d: parent missing or not a dir", e.name, e.dir)
			}
			a, oka := attrs[e.child]
			if !oka {
				return fmt.Errorf("entry %q in %d: dangling -> %d", e.name, e.dir, e.child)
			}
			if TypeOf(a.Mode) != e.typ {
				return fmt.Errorf("entry %q: type %d, inode mode %o", e.name, e.typ, a.Mode)
			}
			ents[e.child] = append(ents[e.child], fmt.Sprintf("%d/%s", e.dir, e.name))
			if a.IsDir() {
				subdirs[e.dir]++
				if a.Parent != e.dir || a.Name != e.name {
					return fmt.Errorf("dir %d recorded as %d/%q, entry %d/%q", e.child, a.Parent, a.Name, e.dir, e.name)
				}
			}
		}
		// Reachability from the root.
		reach := map[Inode]bool{RootInode: true}
		queue := []Inode{RootInode}
		children := map[Inode][]Inode{}
		for _, e := range all {
			children[e.dir] = append(children[e.dir], e.child)
		}
		for len(queue) > 0 {
			d := queue[0]
			queue = queue[1:]
			for _, c := range children[d] {
				if !reach[c] {
					reach[c] = true
					queue = append(queue, c)
				}
			}
		}
		for ino, a := range attrs {
			n := len(ents[ino])
			switch {
			case ino == RootInode:
				if n != 0 || a.Nlink != uint32(2+subdirs[ino]) {
					return fmt.Errorf("root: %d entries, nlink %d, subdirs %d", n, a.Nlink, subdirs[ino])
				}
			case a.IsDir():
				if n != 1 || a.Nlink != uint32(2+subdirs[ino]) {
					return fmt.Errorf("dir %d: entries %v nlink %d subdirs %d", ino, ents[ino], a.Nlink, subdirs[ino])
				}
			default:
				if a.Nlink != uint32(n) {
					return fmt.Errorf("inode %d: nlink %d, entries %v", ino, a.Nlink, ents[ino])
				}
				if n == 0 && !orphans[ino] {
					return fmt.Errorf("inode %d: no entries and not open-unlinked", ino)
				}
				if n > 0 {
					found := false
					for _, e := range ents[ino] {
						found = found || e == fmt.Sprintf("%d/%s", a.Parent, a.Name)
					}
					if !found {
						return fmt.Errorf("inode %d recorded as %d/%q, entries %v", ino, a.Parent, a.Name, ents[ino])
					}
				}
			}
			if !reach[ino] && !orphans[ino] {
				return fmt.Errorf("inode %d unreachable", ino)
			}
		}
		// Per-inode keys belong to live inodes; chunks are not queued.
		return tx.Scan(nil, nil, func(k, v []byte) (bool, error) {
			switch k[0] {
			case pfxXattr, pfxData, pfxBackref, pfxOrphan:
				ino := Inode(binary.BigEndian.Uint64(k[1:9]))
				if _, ok := attrs[ino]; !ok {
					return false, fmt.Errorf("key %q of missing inode %d", k, ino)
				}
				if k[0] == pfxData {
					fd, err := decodeData(v)
					if err != nil {
						return false, err
					}
					for _, c := range fd.Chunks {
						if queued[c.FileID] {
							return false, fmt.Errorf("chunk %s of %d both referenced and queued", c.FileID, ino)
						}
					}
				}
			}
			return true, nil
		})
	})
	if err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

// allEvents reads the whole log.
func allEvents(t testing.TB, ns *Namespace) []Event {
	t.Helper()
	var evs []Event
	ok(t, ns.ReadLog(context.Background(), 0, 1<<62, func(e Event) bool {
		evs = append(evs, e)
		return true
	}))
	return evs
}

func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}
