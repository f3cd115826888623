package meta

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"testing"
)

// mnode is a node of the in-memory model of a POSIX tree.
type mnode struct {
	typ      Type
	ino      Inode // the namespace's inode for it, learned at creation
	size     uint64
	children map[string]*mnode // directories only
}

type model struct{ root *mnode }

type mloc struct {
	dir  *mnode
	name string
}

// walk lists every directory and every entry of the model.
func (m *model) walk() (dirs []*mnode, ents []mloc) {
	var rec func(d *mnode)
	rec = func(d *mnode) {
		dirs = append(dirs, d)
		names := make([]string, 0, len(d.children))
		for n := range d.children {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			c := d.children[n]
			ents = append(ents, mloc{d, n})
			if c.typ == TypeOf(S_IFDIR) {
				rec(c)
			}
		}
	}
	rec(m.root)
	return dirs, ents
}

func (m *model) under(d, anc *mnode) bool { // is d anc or inside it
	if d == anc {
		return true
	}
	for _, c := range anc.children {
		if c.typ == TypeOf(S_IFDIR) && m.under(d, c) {
			return true
		}
	}
	return false
}

// nlinks counts the entries pointing at each non-directory.
func (m *model) nlinks() map[*mnode]int {
	out := map[*mnode]int{}
	_, ents := m.walk()
	for _, e := range ents {
		out[e.dir.children[e.name]]++
	}
	return out
}

var dirType = TypeOf(S_IFDIR)

func TestModelRandom(t *testing.T) {
	seeds := 6
	steps := 700
	if testing.Short() {
		seeds, steps = 2, 200
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, int64(seed), steps) })
	}
}

func runModel(t *testing.T, seed int64, steps int) {
	ns, ctx := newNS(t)
	rng := rand.New(rand.NewSource(seed))
	m := &model{root: &mnode{typ: dirType, ino: RootInode, children: map[string]*mnode{}}}
	names := []string{"a", "b", "c", "d", "e"}
	pickName := func() string { return names[rng.Intn(len(names))] }
	for step := 0; step < steps; step++ {
		dirs, ents := m.walk()
		pickDir := func() *mnode { return dirs[rng.Intn(len(dirs))] }
		// Mostly existing entries, sometimes a random (maybe missing) one.
		pickEnt := func() mloc {
			if len(ents) == 0 || rng.Intn(5) == 0 {
				return mloc{pickDir(), pickName()}
			}
			return ents[rng.Intn(len(ents))]
		}
		var desc string
		var want, got error
		op := rng.Intn(9)
		switch op {
		case 0, 1: // create
			d, n := pickDir(), pickName()
			desc = fmt.Sprintf("create %d/%s", d.ino, n)
			if d.children[n] != nil {
				want = ErrExists
			}
			a, err := ns.Create(ctx, d.ino, n, CreateRequest{Mode: 0o644, Exclusive: true})
			got = err
			if err == nil && want == nil {
				d.children[n] = &mnode{typ: TypeOf(S_IFREG), ino: a.Inode}
			}
		case 2: // mkdir
			d, n := pickDir(), pickName()
			desc = fmt.Sprintf("mkdir %d/%s", d.ino, n)
			if d.children[n] != nil {
				want = ErrExists
			}
			a, err := ns.Mkdir(ctx, d.ino, n, 0o755, 0, 0)
			got = err
			if err == nil && want == nil {
				d.children[n] = &mnode{typ: dirType, ino: a.Inode, children: map[string]*mnode{}}
			}
		case 3: // unlink
			e := pickEnt()
			desc = fmt.Sprintf("unlink %d/%s", e.dir.ino, e.name)
			c := e.dir.children[e.name]
			switch {
			case c == nil:
				want = ErrNotFound
			case c.typ == dirType:
				want = ErrIsDir
			}
			got = ns.Unlink(ctx, e.dir.ino, e.name)
			if want == nil {
				delete(e.dir.children, e.name)
			}
		case 4: // rmdir
			e := pickEnt()
			desc = fmt.Sprintf("rmdir %d/%s", e.dir.ino, e.name)
			c := e.dir.children[e.name]
			switch {
			case c == nil:
				want = ErrNotFound
			case c.typ != dirType:
				want = ErrNotDir
			case len(c.children) > 0:
				want = ErrNotEmpty
			}
			got = ns.Rmdir(ctx, e.dir.ino, e.name)
			if want == nil {
				delete(e.dir.children, e.name)
			}
		case 5, 6: // rename
			src := pickEnt()
			dst := mloc{pickDir(), pickName()}
			if rng.Intn(2) == 0 && len(ents) > 0 {
				dst = ents[rng.Intn(len(ents))]
			}
			var flags RenameFlags
			switch rng.Intn(5) {
			case 0:
				flags = RenameNoReplace
			case 1:
				flags = RenameExchange
			}
			desc = fmt.Sprintf("rename %d/%s -> %d/%s flags %d", src.dir.ino, src.name, dst.dir.ino, dst.name, flags)
			s, d := src.dir.children[src.name], dst.dir.children[dst.name]
			switch {
			case s == nil:
				want = ErrNotFound
			case flags == RenameExchange && d == nil:
				want = ErrNotFound
			case flags == RenameNoReplace && d != nil:
				want = ErrExists
			case d == s:
				want = nil
			case s.typ == dirType && src.dir != dst.dir && m.under(dst.dir, s):
				want = ErrInvalid
			case flags == RenameExchange && d.typ == dirType && src.dir != dst.dir && m.under(src.dir, d):
				want = ErrInvalid
			case flags != RenameExchange && d != nil && s.typ == dirType && d.typ != dirType:
				want = ErrNotDir
			case flags != RenameExchange && d != nil && s.typ != dirType && d.typ == dirType:
				want = ErrIsDir
			case flags != RenameExchange && d != nil && d.typ == dirType && len(d.children) > 0:
				want = ErrNotEmpty
			}
			got = ns.Rename(ctx, src.dir.ino, src.name, dst.dir.ino, dst.name, flags)
			if want == nil && d != s {
				if flags == RenameExchange {
					src.dir.children[src.name], dst.dir.children[dst.name] = d, s
				} else {
					delete(src.dir.children, src.name)
					dst.dir.children[dst.name] = s
				}
			}
		case 7: // link or symlink
			e := pickEnt()
			d, n := pickDir(), pickName()
			c := e.dir.children[e.name]
			if rng.Intn(3) == 0 || c == nil {
				desc = fmt.Sprintf("symlink %d/%s", d.ino, n)
				if d.children[n] != nil {
					want = ErrExists
				}
				a, err := ns.Symlink(ctx, d.ino, n, "target", 0, 0)
				got = err
				if want == nil && err == nil {
					d.children[n] = &mnode{typ: TypeOf(S_IFLNK), ino: a.Inode, size: 6}
				}
				break
			}
			desc = fmt.Sprintf("link %d -> %d/%s", c.ino, d.ino, n)
			switch {
			case c.typ == dirType:
				want = ErrPermission
			case d.children[n] != nil:
				want = ErrExists
			}
			_, got = ns.Link(ctx, c.ino, d.ino, n)
			if want == nil {
				d.children[n] = c
			}
		case 8: // truncate
			e := pickEnt()
			c := e.dir.children[e.name]
			if c == nil {
				continue
			}
			size := uint64(rng.Intn(10000))
			desc = fmt.Sprintf("truncate %d to %d", c.ino, size)
			switch c.typ {
			case dirType:
				want = ErrIsDir
			case TypeOf(S_IFLNK):
				want = ErrInvalid
			}
			_, got = ns.SetAttr(ctx, c.ino, SetAttrRequest{Size: &size})
			if want == nil {
				c.size = size
			}
		}
		if (want == nil) != (got == nil) || (want != nil && !errors.Is(got, want)) {
			t.Fatalf("step %d %s: got %v, want %v", step, desc, got, want)
		}
		compareModel(t, ns, m, fmt.Sprintf("step %d %s", step, desc))
		if step%25 == 0 {
			checkInvariants(t, ns)
		}
	}
	checkInvariants(t, ns)
}

// compareModel compares the whole namespace with the model.
func compareModel(t *testing.T, ns *Namespace, m *model, when string) {
	t.Helper()
	ctx := context.Background()
	links := m.nlinks()
	var rec func(d *mnode, path string)
	rec = func(d *mnode, path string) {
		es, err := ns.ReadDir(ctx, d.ino, "", 0)
		if err != nil {
			t.Fatalf("%s: readdir %s: %v", when, path, err)
		}
		if len(es) != len(d.children) {
			t.Fatalf("%s: %s has %v, model %d entries", when, path, names(es), len(d.children))
		}
		subdirs := 0
		for _, e := range es {
			c := d.children[e.Name]
			if c == nil || c.ino != e.Inode || c.typ != e.Type {
				t.Fatalf("%s: %s/%s = %+v, model %+v", when, path, e.Name, e, c)
			}
			a, err := ns.GetAttr(ctx, e.Inode)
			if err != nil {
				t.Fatalf("%s: getattr %s/%s: %v", when, path, e.Name, err)
			}
			if c.typ == dirType {
				subdirs++
				rec(c, path+"/"+e.Name)
				continue
			}
			if a.Nlink != uint32(links[c]) || a.Size != c.size {
				t.Fatalf("%s: %s/%s nlink %d size %d, model %d %d", when, path, e.Name, a.Nlink, a.Size, links[c], c.size)
			}
		}
		a, err := ns.GetAttr(ctx, d.ino)
		if err != nil || a.Nlink != uint32(2+subdirs) {
			t.Fatalf("%s: dir %s nlink %d want %d (%v)", when, path, a.Nlink, 2+subdirs, err)
		}
	}
	rec(m.root, "")
}
