package meta

import (
	"testing"
)

func TestRename(t *testing.T) {
	ns, ctx := newNS(t)
	a := mkdir(t, ns, RootInode, "a")
	b := mkdir(t, ns, a.Inode, "b")
	c := mkdir(t, ns, RootInode, "c")
	f := mkfile(t, ns, a.Inode, "f")
	g := mkfile(t, ns, c.Inode, "g")
	mkfile(t, ns, b.Inode, "inner")

	// Plain move of a file between directories.
	ok(t, ns.Rename(ctx, a.Inode, "f", c.Inode, "f2", 0))
	if x, err := ns.Lookup(ctx, c.Inode, "f2"); err != nil || x.Inode != f.Inode {
		t.Fatalf("moved: %v %+v", err, x)
	}
	if p, _ := ns.Path(ctx, f.Inode); p != "/c/f2" {
		t.Fatalf("path %q", p)
	}
	// Directory move adjusts parents' nlink and the path of the subtree.
	ok(t, ns.Rename(ctx, a.Inode, "b", c.Inode, "b", 0))
	if x, _ := ns.GetAttr(ctx, a.Inode); x.Nlink != 2 {
		t.Fatalf("a nlink %d", x.Nlink)
	}
	if x, _ := ns.GetAttr(ctx, c.Inode); x.Nlink != 3 {
		t.Fatalf("c nlink %d", x.Nlink)
	}
	if x, _ := ns.Lookup(ctx, b.Inode, ".."); x.Inode != c.Inode {
		t.Fatalf(".. of moved dir = %d", x.Inode)
	}
	checkInvariants(t, ns)

	// Errors.
	mustErr(t, ns.Rename(ctx, RootInode, "c", b.Inode, "c", 0), ErrInvalid)    // into own subtree
	mustErr(t, ns.Rename(ctx, RootInode, "c", c.Inode, "self", 0), ErrInvalid) // into itself
	mustErr(t, ns.Rename(ctx, RootInode, "nope", RootInode, "x", 0), ErrNotFound)
	mustErr(t, ns.Rename(ctx, RootInode, "a", 999999, "x", 0), ErrNotFound)
	mustErr(t, ns.Rename(ctx, RootInode, "a", f.Inode, "x", 0), ErrNotDir)
	mustErr(t, ns.Rename(ctx, c.Inode, "f2", c.Inode, "b", 0), ErrIsDir)   // file over dir
	mustErr(t, ns.Rename(ctx, RootInode, "a", c.Inode, "g", 0), ErrNotDir) // dir over file
	mustErr(t, ns.Rename(ctx, RootInode, "a", RootInode, "c", 0), ErrNotEmpty)
	mustErr(t, ns.Rename(ctx, c.Inode, "f2", c.Inode, "g", RenameNoReplace), ErrExists)
	mustErr(t, ns.Rename(ctx, c.Inode, "f2", c.Inode, "zz", RenameExchange), ErrNotFound)
	mustErr(t, ns.Rename(ctx, c.Inode, "f2", c.Inode, "g", RenameExchange|RenameNoReplace), ErrInvalid)
	checkInvariants(t, ns)

	// Replace a file: the old one is freed.
	ok(t, ns.Rename(ctx, c.Inode, "f2", c.Inode, "g", 0))
	_, err := ns.GetAttr(ctx, g.Inode)
	mustErr(t, err, ErrNotFound)
	// Replace an empty directory with a directory.
	e := mkdir(t, ns, RootInode, "e")
	ok(t, ns.Rename(ctx, RootInode, "a", RootInode, "e", 0))
	_, err = ns.GetAttr(ctx, e.Inode)
	mustErr(t, err, ErrNotFound)
	if x, _ := ns.GetAttr(ctx, RootInode); x.Nlink != 4 { // e(=a), c, and . ..
		t.Fatalf("root nlink %d", x.Nlink)
	}
	checkInvariants(t, ns)

	// Same name and hard links of one inode: no-ops.
	ok(t, ns.Rename(ctx, c.Inode, "g", c.Inode, "g", 0))
	_, err = ns.Link(ctx, f.Inode, RootInode, "hl")
	ok(t, err)
	ok(t, ns.Rename(ctx, c.Inode, "g", RootInode, "hl", 0))
	if x, _ := ns.GetAttr(ctx, f.Inode); x.Nlink != 2 {
		t.Fatalf("nlink after no-op rename %d", x.Nlink)
	}
	if _, err := ns.Lookup(ctx, c.Inode, "g"); err != nil {
		t.Fatalf("source gone after no-op rename: %v", err)
	}
	// Renaming one hard link elsewhere keeps nlink and paths valid.
	ok(t, ns.Rename(ctx, c.Inode, "g", b.Inode, "g3", 0))
	checkInvariants(t, ns)
	mustErr(t, ns.Rename(ctx, RootInode, ".", RootInode, "x", 0), ErrInvalid)
}

func TestRenameExchange(t *testing.T) {
	ns, ctx := newNS(t)
	a := mkdir(t, ns, RootInode, "a")
	b := mkdir(t, ns, RootInode, "b")
	d := mkdir(t, ns, a.Inode, "d")
	f := mkfile(t, ns, b.Inode, "f")
	mkfile(t, ns, d.Inode, "x")
	// Exchange a directory and a file across directories.
	ok(t, ns.Rename(ctx, a.Inode, "d", b.Inode, "f", RenameExchange))
	if x, _ := ns.Lookup(ctx, a.Inode, "d"); x.Inode != f.Inode {
		t.Fatalf("a/d = %d", x.Inode)
	}
	if x, _ := ns.Lookup(ctx, b.Inode, "f"); x.Inode != d.Inode {
		t.Fatalf("b/f = %d", x.Inode)
	}
	if p, _ := ns.Path(ctx, d.Inode); p != "/b/f" {
		t.Fatalf("path %q", p)
	}
	checkInvariants(t, ns)
	// Exchange of a dir with its own ancestor: refused.
	mustErr(t, ns.Rename(ctx, RootInode, "b", d.Inode, "x", RenameExchange), ErrInvalid)
	mustErr(t, ns.Rename(ctx, d.Inode, "x", RootInode, "b", RenameExchange), ErrInvalid)
	// Exchange two non-empty dirs.
	ok(t, ns.Rename(ctx, RootInode, "a", RootInode, "b", RenameExchange))
	checkInvariants(t, ns)
	evs := allEvents(t, ns)
	var ex int
	for _, e := range evs {
		if e.Exchange {
			ex++
		}
	}
	if ex != 2 {
		t.Fatalf("exchange events %d", ex)
	}
}

func TestRenameEvents(t *testing.T) {
	ns, ctx := newNS(t)
	a := mkdir(t, ns, RootInode, "a")
	mkfile(t, ns, a.Inode, "f")
	tgt := mkfile(t, ns, RootInode, "t")
	_, err := ns.AppendChunks(ctx, tgt.Inode, []Chunk{{Offset: 0, Size: 5, FileID: "3,x", ModifiedNs: 1}}, 0)
	ok(t, err)
	ok(t, ns.Rename(ctx, a.Inode, "f", RootInode, "t", 0))
	evs := allEvents(t, ns)
	e := evs[len(evs)-1]
	if e.Kind != EventRename || e.OldPath != "/a/f" || e.NewPath != "/t" || e.Replaced == nil ||
		e.Replaced.Attr.Inode != tgt.Inode || len(e.FreedChunks) != 1 || e.NewEntry.Attr.Name != "t" {
		t.Fatalf("event %+v", e)
	}
	if len(e.Signatures) != 1 || e.Signatures[0] != 7 {
		t.Fatalf("signatures %v", e.Signatures)
	}
}
