package meta

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

// Every event names the directories of its paths.
func TestEventParents(t *testing.T) {
	ns, ctx := newNS(t)
	d := mkdir(t, ns, RootInode, "d")
	f, err := ns.Create(ctx, d.Inode, "f", CreateRequest{Mode: 0o644})
	ok(t, err)
	_, err = ns.SetAttr(ctx, f.Inode, SetAttrRequest{Mode: u32(0o600)})
	ok(t, err)
	_, err = ns.Link(ctx, f.Inode, RootInode, "hl")
	ok(t, err)
	ok(t, ns.Rename(ctx, d.Inode, "f", RootInode, "g", 0))
	ok(t, ns.Unlink(ctx, RootInode, "hl"))
	ok(t, ns.Rmdir(ctx, RootInode, "d"))
	_, err = ns.SetAttr(ctx, RootInode, SetAttrRequest{Mode: u32(0o700)})
	ok(t, err)
	type pp struct{ old, new Inode }
	want := []pp{
		{0, RootInode},       // mkdir /d
		{0, d.Inode},         // create /d/f
		{d.Inode, d.Inode},   // setattr /d/f
		{0, RootInode},       // link /hl
		{d.Inode, RootInode}, // rename /d/f -> /g
		{RootInode, 0},       // unlink /hl
		{RootInode, 0},       // rmdir /d
		{0, 0},               // setattr /
	}
	evs := allEvents(t, ns)
	if len(evs) != len(want) {
		t.Fatalf("%d events", len(evs))
	}
	for i, e := range evs {
		if got := (pp{e.OldParent, e.NewParent}); got != want[i] {
			t.Errorf("event %d (%s %s -> %s): parents %v, want %v", i, e.Kind, e.OldPath, e.NewPath, got, want[i])
		}
	}
}

func count(t *testing.T, ns *Namespace) uint64 {
	t.Helper()
	n, err := ns.InodeCount(context.Background())
	ok(t, err)
	return n
}

// The inode count follows every operation that adds or removes a named
// inode, survives a reopen, and is computed once for a store without one.
func TestInodeCount(t *testing.T) {
	ns, ctx := newNS(t)
	want := uint64(1) // the root
	step := func(what string, delta int) {
		t.Helper()
		want = uint64(int(want) + delta)
		if got := count(t, ns); got != want {
			t.Fatalf("after %s: count %d, want %d", what, got, want)
		}
		checkInvariants(t, ns)
	}
	step("open", 0)
	d := mkdir(t, ns, RootInode, "d")
	step("mkdir", 1)
	f := mkfile(t, ns, d.Inode, "f")
	step("create", 1)
	_, err := ns.Symlink(ctx, RootInode, "s", "x", 0, 0)
	ok(t, err)
	step("symlink", 1)
	_, err = ns.Link(ctx, f.Inode, RootInode, "hl")
	ok(t, err)
	step("link", 0)
	ok(t, ns.Unlink(ctx, d.Inode, "f"))
	step("unlink of one of two names", 0)
	ok(t, ns.Rename(ctx, RootInode, "hl", d.Inode, "moved", 0))
	step("rename", 0)
	g := mkfile(t, ns, RootInode, "g")
	step("create", 1)
	ok(t, ns.Open(ctx, g.Inode))
	ok(t, ns.Unlink(ctx, RootInode, "g"))
	step("unlink of an open file", -1)
	ok(t, ns.Release(ctx, g.Inode))
	step("release of the open-unlinked file", 0)
	mkfile(t, ns, RootInode, "over")
	step("create", 1)
	ok(t, ns.Rename(ctx, RootInode, "s", RootInode, "over", 0))
	step("rename over a file", -1)
	mkdir(t, ns, RootInode, "e")
	mkdir(t, ns, d.Inode, "e2")
	step("mkdirs", 2)
	ok(t, ns.Rename(ctx, RootInode, "e", d.Inode, "e2", 0))
	step("rename over a directory", -1)
	mkdir(t, ns, RootInode, "e")
	step("mkdir", 1)
	ok(t, ns.Rename(ctx, d.Inode, "e2", RootInode, "e", RenameExchange))
	step("exchange", 0)
	ok(t, ns.Rmdir(ctx, d.Inode, "e2"))
	step("rmdir", -1)
	ok(t, ns.Rmdir(ctx, RootInode, "e"))
	step("rmdir", -1)

	ns2, err := Open(ctx, ns.st, DefaultConfig())
	ok(t, err)
	if got := count(t, ns2); got != want {
		t.Fatalf("after reopen: %d, want %d", got, want)
	}
	// A store written before the count existed is counted at Open.
	ok(t, ns.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.Delete(metaKey(countedKey)); err != nil {
			return err
		}
		// A stale stripe that the recount must not add to.
		return tx.Set(countKey(9), binary.BigEndian.AppendUint64(nil, 1000))
	}))
	ns3, err := Open(ctx, ns.st, DefaultConfig())
	ok(t, err)
	if got := count(t, ns3); got != want {
		t.Fatalf("after a recount: %d, want %d", got, want)
	}
	checkInvariants(t, ns3)
	// Check notices a count that is off.
	ok(t, ns.st.Update(ctx, func(tx store.Tx) error {
		return tx.Set(countKey(9), binary.BigEndian.AppendUint64(nil, 1))
	}))
	r, err := ns3.Check(ctx)
	ok(t, err)
	if r.Clean() {
		t.Fatal("check missed a wrong inode count")
	}
}

// Create with Open holds the new file before anyone can unlink it; a
// failed create keeps no handle.
func TestCreateOpen(t *testing.T) {
	ns, ctx := newNS(t)
	a, err := ns.Create(ctx, RootInode, "f", CreateRequest{Mode: 0o644, Open: true})
	ok(t, err)
	if ns.OpenCount(a.Inode) != 1 {
		t.Fatalf("open count %d", ns.OpenCount(a.Inode))
	}
	ok(t, ns.Unlink(ctx, RootInode, "f"))
	if _, err := ns.GetAttr(ctx, a.Inode); err != nil {
		t.Fatalf("an unlinked file created open is gone: %v", err)
	}
	ok(t, ns.Release(ctx, a.Inode))
	_, err = ns.GetAttr(ctx, a.Inode)
	mustErr(t, err, ErrNotFound)

	// Reusing an existing file opens it.
	b := mkfile(t, ns, RootInode, "g")
	r, err := ns.Create(ctx, RootInode, "g", CreateRequest{Mode: 0o644, Open: true})
	ok(t, err)
	if r.Inode != b.Inode || ns.OpenCount(b.Inode) != 1 {
		t.Fatalf("reuse: inode %d (want %d), open count %d", r.Inode, b.Inode, ns.OpenCount(b.Inode))
	}
	ok(t, ns.Release(ctx, b.Inode))

	// Failures keep nothing.
	_, err = ns.Create(ctx, RootInode, "g", CreateRequest{Mode: 0o644, Open: true, Exclusive: true})
	mustErr(t, err, ErrExists)
	_, err = ns.Create(ctx, 999, "x", CreateRequest{Mode: 0o644, Open: true})
	mustErr(t, err, ErrNotFound)
	wantNoHandles(t, ns, "failed creates")
	checkInvariants(t, ns)
}

// A Release without an Open is harmless and leaves no negative count.
func TestReleaseWithoutOpen(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	ok(t, ns.Release(ctx, f.Inode))
	ok(t, ns.Release(ctx, 12345))
	if ns.OpenCount(f.Inode) != 0 {
		t.Fatalf("open count %d", ns.OpenCount(f.Inode))
	}
	// One Open is then exactly one handle.
	ok(t, ns.Open(ctx, f.Inode))
	ok(t, ns.Unlink(ctx, RootInode, "f"))
	if _, err := ns.GetAttr(ctx, f.Inode); err != nil {
		t.Fatalf("open file freed: %v", err)
	}
	ok(t, ns.Release(ctx, f.Inode))
	_, err := ns.GetAttr(ctx, f.Inode)
	mustErr(t, err, ErrNotFound)
	checkInvariants(t, ns)
}

// Commit with an mtime is one transaction and one event.
func TestCommitWithMtime(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	before := len(allEvents(t, ns))
	a, err := ns.Commit(ctx, f.Inode, CommitRequest{Chunks: []Chunk{{Size: 10, FileID: "1,a", ModifiedNs: 5}}, Mtime: 12345})
	ok(t, err)
	evs := allEvents(t, ns)
	if len(evs) != before+1 {
		t.Fatalf("%d events for one commit", len(evs)-before)
	}
	last := evs[len(evs)-1]
	if a.Mtime != 12345 || a.Ctime != last.TsNs || a.Size != 10 || last.NewEntry.Attr.Mtime != 12345 {
		t.Fatalf("attr %+v, event %+v", a, last.NewEntry.Attr)
	}
	a, err = ns.Commit(ctx, f.Inode, CommitRequest{Chunks: []Chunk{{Size: 4, FileID: "1,b", ModifiedNs: 6}}, Size: 4, Replace: true})
	ok(t, err)
	if a.Mtime != a.Ctime || a.Size != 4 {
		t.Fatalf("replace without mtime: %+v", a)
	}
	a, err = ns.Commit(ctx, f.Inode, CommitRequest{Inline: []byte("hi"), Mtime: 7})
	ok(t, err)
	if a.Mtime != 7 || a.Size != 2 {
		t.Fatalf("inline: %+v", a)
	}
	_, err = ns.Commit(ctx, f.Inode, CommitRequest{Inline: []byte("hi"), Chunks: []Chunk{{Size: 1, FileID: "x"}}})
	mustErr(t, err, ErrInvalid)
	if n := len(allEvents(t, ns)); n != before+3 {
		t.Fatalf("%d events for three commits", n-before)
	}
}
