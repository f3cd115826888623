package meta

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

// checkTree builds a tree using every kind of key: directories, files with
// chunks (one overwritten, so deletions are pending), inline content, hard
// links, a symlink, a fifo, xattrs and an open-unlinked file.
type checkTree struct {
	dirA, dirB      Attr
	file, linked    Attr
	chunkFile, open Attr
}

func buildCheckTree(t *testing.T, ns *Namespace) checkTree {
	t.Helper()
	ctx := context.Background()
	var tr checkTree
	tr.dirA = mkdir(t, ns, RootInode, "a")
	tr.dirB = mkdir(t, ns, tr.dirA.Inode, "b")
	tr.file = mkfile(t, ns, tr.dirB.Inode, "inline")
	_, err := ns.SetInline(ctx, tr.file.Inode, []byte("hello"))
	ok(t, err)
	tr.linked = mkfile(t, ns, RootInode, "linked")
	_, err = ns.Link(ctx, tr.linked.Inode, tr.dirA.Inode, "l2")
	ok(t, err)
	_, err = ns.Link(ctx, tr.linked.Inode, tr.dirB.Inode, "l3")
	ok(t, err)
	tr.chunkFile = mkfile(t, ns, tr.dirA.Inode, "chunks")
	_, err = ns.AppendChunks(ctx, tr.chunkFile.Inode, []Chunk{
		{Offset: 0, Size: 100, FileID: "3,01aa", ModifiedNs: 1},
		{Offset: 100, Size: 100, FileID: "3,02bb", ModifiedNs: 2},
	}, 0)
	ok(t, err)
	_, err = ns.AppendChunks(ctx, tr.chunkFile.Inode, []Chunk{{Offset: 0, Size: 100, FileID: "3,03cc", ModifiedNs: 3}}, 0)
	ok(t, err)
	_, err = ns.Symlink(ctx, tr.dirB.Inode, "sym", "../chunks", 0, 0)
	ok(t, err)
	_, err = ns.Create(ctx, RootInode, "fifo", CreateRequest{Mode: S_IFIFO | 0o600})
	ok(t, err)
	ok(t, ns.SetXattr(ctx, tr.file.Inode, "user.k", []byte("v"), 0))
	tr.open = mkfile(t, ns, RootInode, "open")
	ok(t, ns.Open(ctx, tr.open.Inode))
	ok(t, ns.Unlink(ctx, RootInode, "open"))
	ok(t, ns.Rename(ctx, RootInode, "fifo", tr.dirB.Inode, "fifo2", 0))
	return tr
}

func TestCheckHealthyTree(t *testing.T) {
	ns, ctx := newNS(t)
	r, err := ns.Check(ctx)
	ok(t, err)
	if !r.Clean() || r.Inodes != 1 || r.Dirs != 1 {
		t.Fatalf("empty namespace: %s", r.String())
	}
	buildCheckTree(t, ns)
	r, err = ns.Check(ctx)
	ok(t, err)
	if !r.Clean() {
		t.Fatalf("healthy tree: %s", r.String())
	}
	// root, a, b, inline, linked, chunks, sym, fifo, open (open-unlinked).
	want := Report{Inodes: 9, Dirs: 3, Files: 4, Symlinks: 1, Specials: 1,
		Entries: 9, OpenUnlinked: 1, Chunks: 2, PendingDeletions: 1}
	if r.Inodes != want.Inodes || r.Dirs != want.Dirs || r.Files != want.Files || r.Symlinks != want.Symlinks ||
		r.Specials != want.Specials || r.Entries != want.Entries || r.OpenUnlinked != want.OpenUnlinked ||
		r.Chunks != want.Chunks || r.PendingDeletions != want.PendingDeletions {
		t.Fatalf("counts: got %s\nwant %s", r.String(), want.String())
	}
	if !strings.HasSuffix(r.String(), ": clean") {
		t.Fatalf("String: %q", r.String())
	}
}

// TestCheckFindsCorruption corrupts the raw store one way at a time and
// expects Check to name the problem.
func TestCheckFindsCorruption(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(tx store.Tx, tr checkTree) error
		want    []string // substrings of the problems expected
	}{
		{"deleted inode", func(tx store.Tx, tr checkTree) error {
			return tx.Delete(attrKey(tr.file.Inode))
		}, []string{fmt.Sprintf("dangling, inode %d does not exist", 0), "xattrs of missing inode", "data of missing inode"}},
		{"bumped file nlink", func(tx store.Tx, tr checkTree) error {
			return bumpNlink(tx, tr.linked.Inode, 1)
		}, []string{"nlink 4, but 3 entries"}},
		{"bumped dir nlink", func(tx store.Tx, tr checkTree) error {
			return bumpNlink(tx, tr.dirA.Inode, 1)
		}, []string{"nlink 4, want 3"}},
		{"bumped root nlink", func(tx store.Tx, tr checkTree) error {
			return bumpNlink(tx, RootInode, -1)
		}, []string{"root: nlink 2, want 3"}},
		{"dangling entry", func(tx store.Tx, tr checkTree) error {
			return tx.Set(direntKey(tr.dirA.Inode, "ghost"), encodeDirent(999999, TypeOf(S_IFREG)))
		}, []string{`"ghost": dangling, inode 999999 does not exist`}},
		{"entry in a missing directory", func(tx store.Tx, tr checkTree) error {
			return tx.Set(direntKey(888888, "x"), encodeDirent(tr.file.Inode, TypeOf(S_IFREG)))
		}, []string{"directory 888888 does not exist", "nlink 1, but 2 entries"}},
		{"wrong entry type", func(tx store.Tx, tr checkTree) error {
			return tx.Set(direntKey(tr.dirB.Inode, "inline"), encodeDirent(tr.file.Inode, TypeOf(S_IFDIR)))
		}, []string{`"inline": type 4`}},
		{"unreachable directory", func(tx store.Tx, tr checkTree) error {
			// dirB's entry goes, and a's nlink with it, so only reachability
			// and dirB's missing name are wrong.
			if err := tx.Delete(direntKey(tr.dirA.Inode, "b")); err != nil {
				return err
			}
			return bumpNlink(tx, tr.dirA.Inode, -1)
		}, []string{fmt.Sprintf("directory %d: 0 entries", 0), "not reachable from the root"}},
		{"referenced chunk queued", func(tx store.Tx, tr checkTree) error {
			return tx.Set(gcKey(1, 1), encodeGCRecord(&Chunk{Offset: 100, Size: 100, FileID: "3,02bb"}, nil))
		}, []string{"chunk 3,02bb: referenced by inode"}},
		{"stray xattr", func(tx store.Tx, tr checkTree) error {
			return tx.Set(xattrKey(777777, "user.x"), []byte("v"))
		}, []string{"1 xattrs of missing inode 777777"}},
		{"stray data", func(tx store.Tx, tr checkTree) error {
			return tx.Set(dataKey(tr.dirB.Inode), encodeData(&fileData{Inline: []byte("x")}))
		}, []string{"not a regular file"}},
		{"stray orphan marker", func(tx store.Tx, tr checkTree) error {
			return tx.Set(orphanKey(666666), nil)
		}, []string{"open-unlinked marker of missing inode 666666"}},
		{"unlinked without marker", func(tx store.Tx, tr checkTree) error {
			return tx.Delete(orphanKey(tr.open.Inode))
		}, []string{"not marked open-unlinked"}},
		{"lost back reference", func(tx store.Tx, tr checkTree) error {
			return tx.Delete(backrefKey(tr.linked.Inode, tr.dirA.Inode, "l2"))
		}, []string{"back references"}},
		{"undecodable inode", func(tx store.Tx, tr checkTree) error {
			return tx.Set(attrKey(tr.chunkFile.Inode), []byte{0xff, 0x01})
		}, []string{"undecodable attributes"}},
		{"inode above the counter", func(tx store.Tx, tr checkTree) error {
			a := Attr{Inode: 1 << 40, Mode: S_IFREG | 0o644, Nlink: 1, Parent: RootInode, Name: "big"}
			if err := tx.Set(attrKey(a.Inode), encodeAttr(&a)); err != nil {
				return err
			}
			return tx.Set(direntKey(RootInode, "big"), encodeDirent(a.Inode, TypeOf(a.Mode)))
		}, []string{"at or above the inode counter"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns, ctx := newNS(t)
			tr := buildCheckTree(t, ns)
			ok(t, ns.st.Update(ctx, func(tx store.Tx) error { return tc.corrupt(tx, tr) }))
			r, err := ns.Check(ctx)
			ok(t, err)
			if r.Clean() {
				t.Fatalf("corruption not reported: %s", r.String())
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "inode 0 does", fmt.Sprintf("inode %d does", tr.file.Inode))
				w = strings.ReplaceAll(w, "directory 0:", fmt.Sprintf("directory %d:", tr.dirB.Inode))
				if !strings.Contains(r.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, r.String())
				}
			}
		})
	}
}

func TestCheckCapsProblems(t *testing.T) {
	ns, ctx := newNS(t)
	ok(t, ns.st.Update(ctx, func(tx store.Tx) error {
		for i := 0; i < MaxCheckProblems+20; i++ {
			if err := tx.Set(direntKey(RootInode, fmt.Sprintf("ghost%03d", i)), encodeDirent(Inode(100000+i), TypeOf(S_IFREG))); err != nil {
				return err
			}
		}
		return nil
	}))
	r, err := ns.Check(ctx)
	ok(t, err)
	if len(r.Problems) != MaxCheckProblems || r.Omitted != 20 || r.Entries != MaxCheckProblems+20 {
		t.Fatalf("problems %d omitted %d entries %d", len(r.Problems), r.Omitted, r.Entries)
	}
	if !strings.Contains(r.String(), "and 20 more") {
		t.Fatalf("String lacks the omitted count: %s", r.String())
	}
}

func TestCheckStoreError(t *testing.T) {
	st := newStore(t)
	ns, ctx := newNSOn(t, st)
	ok(t, st.Close())
	if _, err := ns.Check(ctx); err == nil {
		t.Fatal("Check on a closed store: no error")
	}
}

func bumpNlink(tx store.Tx, ino Inode, by int) error {
	v, err := tx.Get(attrKey(ino))
	if err != nil {
		return err
	}
	a, err := decodeAttr(v)
	if err != nil {
		return err
	}
	a.Nlink = uint32(int(a.Nlink) + by)
	return tx.Set(attrKey(ino), encodeAttr(&a))
}
