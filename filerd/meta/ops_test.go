package meta

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

func TestRootAndLookup(t *testing.T) {
	ns, ctx := newNS(t)
	r, err := ns.GetAttr(ctx, RootInode)
	ok(t, err)
	if !r.IsDir() || r.Nlink != 2 {
		t.Fatalf("root %+v", r)
	}
	d := mkdir(t, ns, RootInode, "d")
	f := mkfile(t, ns, d.Inode, "f")
	a, err := ns.Lookup(ctx, d.Inode, "f")
	ok(t, err)
	if a.Inode != f.Inode || !a.IsRegular() || a.Nlink != 1 {
		t.Fatalf("lookup f = %+v", a)
	}
	if a, _ := ns.Lookup(ctx, d.Inode, ".."); a.Inode != RootInode {
		t.Fatalf(".. = %d", a.Inode)
	}
	if a, _ := ns.Lookup(ctx, d.Inode, "."); a.Inode != d.Inode {
		t.Fatalf(". = %d", a.Inode)
	}
	if a, _ := ns.Lookup(ctx, RootInode, ".."); a.Inode != RootInode {
		t.Fatalf("root .. = %d", a.Inode)
	}
	_, err = ns.Lookup(ctx, d.Inode, "nope")
	mustErr(t, err, ErrNotFound)
	_, err = ns.Lookup(ctx, f.Inode, "x")
	mustErr(t, err, ErrNotDir)
	_, err = ns.Lookup(ctx, 999999, "x")
	mustErr(t, err, ErrNotFound)
	_, err = ns.GetAttr(ctx, 999999)
	mustErr(t, err, ErrNotFound)
	// Reopening keeps the tree and the root.
	ns2, err := Open(ctx, ns.st, DefaultConfig())
	ok(t, err)
	if a, err := ns2.Lookup(ctx, d.Inode, "f"); err != nil || a.Inode != f.Inode {
		t.Fatalf("after reopen: %v %+v", err, a)
	}
	g := mkfile(t, ns2, RootInode, "g")
	if g.Inode == f.Inode || g.Inode == d.Inode {
		t.Fatalf("inode %d reused after reopen", g.Inode)
	}
	checkInvariants(t, ns2)
}

func TestBadNames(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name string
		want error
	}{
		{"", ErrInvalid}, {".", ErrInvalid}, {"..", ErrInvalid}, {"a/b", ErrInvalid},
		{"a\x00b", ErrInvalid}, {long, ErrNameTooLong},
	} {
		_, err := ns.Create(ctx, RootInode, tc.name, CreateRequest{Mode: 0o644})
		mustErr(t, err, tc.want)
		_, err = ns.Mkdir(ctx, RootInode, tc.name, 0o755, 0, 0)
		mustErr(t, err, tc.want)
		_, err = ns.Symlink(ctx, RootInode, tc.name, "t", 0, 0)
		mustErr(t, err, tc.want)
		_, err = ns.Link(ctx, f.Inode, RootInode, tc.name)
		mustErr(t, err, tc.want)
		mustErr(t, ns.Rename(ctx, RootInode, "f", RootInode, tc.name, 0), tc.want)
		if tc.name != "" && tc.name != "." && tc.name != ".." {
			mustErr(t, ns.Unlink(ctx, RootInode, tc.name), tc.want)
		}
	}
	if _, err := ns.Create(ctx, RootInode, strings.Repeat("y", 255), CreateRequest{}); err != nil {
		t.Fatalf("255-byte name: %v", err)
	}
	mustErr(t, ns.Rmdir(ctx, RootInode, "."), ErrInvalid)
	mustErr(t, ns.Rmdir(ctx, RootInode, ".."), ErrNotEmpty)
	// Parent not a directory, parent missing.
	_, err := ns.Create(ctx, f.Inode, "x", CreateRequest{})
	mustErr(t, err, ErrNotDir)
	_, err = ns.Mkdir(ctx, 12345678, "x", 0o755, 0, 0)
	mustErr(t, err, ErrNotFound)
	checkInvariants(t, ns)
}

func TestCreateMknod(t *testing.T) {
	ns, ctx := newNS(t)
	a, err := ns.Create(ctx, RootInode, "f", CreateRequest{Mode: 0o640, Uid: 5, Gid: 6, Exclusive: true})
	ok(t, err)
	if a.Mode != S_IFREG|0o640 || a.Uid != 5 || a.Gid != 6 || a.Nlink != 1 || a.Size != 0 || a.Ctime == 0 || a.Mtime != a.Ctime {
		t.Fatalf("created %+v", a)
	}
	_, err = ns.Create(ctx, RootInode, "f", CreateRequest{Exclusive: true})
	mustErr(t, err, ErrExists)
	b, err := ns.Create(ctx, RootInode, "f", CreateRequest{Mode: 0o600})
	ok(t, err)
	if b.Inode != a.Inode {
		t.Fatalf("non-exclusive create made a new inode")
	}
	for _, m := range []uint32{S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK} {
		name := fmt.Sprintf("n%o", m)
		a, err := ns.Mknod(ctx, RootInode, name, m|0o600, 0, 0, 0x0801)
		ok(t, err)
		if a.Mode&S_IFMT != m {
			t.Fatalf("mknod %o -> %o", m, a.Mode)
		}
		if (m == S_IFCHR || m == S_IFBLK) != (a.Rdev == 0x0801) {
			t.Fatalf("rdev %x for %o", a.Rdev, m)
		}
		_, err = ns.Mknod(ctx, RootInode, name, m|0o600, 0, 0, 0)
		mustErr(t, err, ErrExists)
		es, _ := ns.ReadDir(ctx, RootInode, name[:len(name)-1], 0)
		if es[0].Name != name || es[0].Type != TypeOf(m) {
			t.Fatalf("entry %+v", es[0])
		}
	}
	_, err = ns.Mknod(ctx, RootInode, "dir", S_IFDIR|0o755, 0, 0, 0)
	mustErr(t, err, ErrInvalid)
	_, err = ns.Mknod(ctx, RootInode, "lnk", S_IFLNK|0o755, 0, 0, 0)
	mustErr(t, err, ErrInvalid)
	_, err = ns.Create(ctx, RootInode, "mkdir", CreateRequest{})
	ok(t, err)
	mkdir(t, ns, RootInode, "d")
	_, err = ns.Create(ctx, RootInode, "d", CreateRequest{})
	mustErr(t, err, ErrIsDir)
	_, err = ns.Create(ctx, RootInode, "d", CreateRequest{Exclusive: true})
	mustErr(t, err, ErrExists)
	// The parent's mtime/ctime follow.
	r, _ := ns.GetAttr(ctx, RootInode)
	d, _ := ns.Lookup(ctx, RootInode, "d")
	if r.Mtime != d.Ctime || r.Ctime != d.Ctime {
		t.Fatalf("root times %d/%d, child ctime %d", r.Mtime, r.Ctime, d.Ctime)
	}
	checkInvariants(t, ns)
}

func TestSetgidInheritance(t *testing.T) {
	ns, ctx := newNS(t)
	d, err := ns.Mkdir(ctx, RootInode, "d", S_ISGID|0o775, 1, 50)
	ok(t, err)
	f, err := ns.Create(ctx, d.Inode, "f", CreateRequest{Mode: 0o644, Uid: 2, Gid: 3})
	ok(t, err)
	s, err := ns.Mkdir(ctx, d.Inode, "s", 0o755, 2, 3)
	ok(t, err)
	if f.Gid != 50 || s.Gid != 50 || s.Mode&S_ISGID == 0 || f.Mode&S_ISGID != 0 {
		t.Fatalf("f %+v s %+v", f, s)
	}
}

func TestMkdirRmdir(t *testing.T) {
	ns, ctx := newNS(t)
	d := mkdir(t, ns, RootInode, "d")
	if d.Nlink != 2 || d.Mode != S_IFDIR|0o755 {
		t.Fatalf("dir %+v", d)
	}
	r, _ := ns.GetAttr(ctx, RootInode)
	if r.Nlink != 3 {
		t.Fatalf("root nlink %d", r.Nlink)
	}
	_, err := ns.Mkdir(ctx, RootInode, "d", 0o755, 0, 0)
	mustErr(t, err, ErrExists)
	mkdir(t, ns, d.Inode, "sub")
	mkfile(t, ns, RootInode, "f")
	mustErr(t, ns.Rmdir(ctx, RootInode, "d"), ErrNotEmpty)
	mustErr(t, ns.Rmdir(ctx, RootInode, "f"), ErrNotDir)
	mustErr(t, ns.Rmdir(ctx, RootInode, "none"), ErrNotFound)
	mustErr(t, ns.Unlink(ctx, RootInode, "d"), ErrIsDir)
	ok(t, ns.Rmdir(ctx, d.Inode, "sub"))
	ok(t, ns.SetXattr(ctx, d.Inode, "user.a", []byte("1"), 0))
	ok(t, ns.Rmdir(ctx, RootInode, "d"))
	if r, _ := ns.GetAttr(ctx, RootInode); r.Nlink != 2 {
		t.Fatalf("root nlink %d", r.Nlink)
	}
	_, err = ns.GetAttr(ctx, d.Inode)
	mustErr(t, err, ErrNotFound)
	// Creating in a removed directory (still referenced by inode) fails.
	_, err = ns.Create(ctx, d.Inode, "x", CreateRequest{})
	mustErr(t, err, ErrNotFound)
	checkInvariants(t, ns)
}

func TestUnlinkAndHardLinks(t *testing.T) {
	ns, ctx := newNS(t)
	d := mkdir(t, ns, RootInode, "d")
	f := mkfile(t, ns, RootInode, "f")
	_, err := ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 10, FileID: "1,a", ModifiedNs: 1}}, 0)
	ok(t, err)
	a, err := ns.Link(ctx, f.Inode, d.Inode, "g")
	ok(t, err)
	if a.Nlink != 2 {
		t.Fatalf("nlink after link %d", a.Nlink)
	}
	_, err = ns.Link(ctx, f.Inode, d.Inode, "g")
	mustErr(t, err, ErrExists)
	_, err = ns.Link(ctx, d.Inode, RootInode, "dl")
	mustErr(t, err, ErrPermission)
	_, err = ns.Link(ctx, f.Inode, f.Inode, "x")
	mustErr(t, err, ErrNotDir)
	_, err = ns.Link(ctx, 424242, RootInode, "x")
	mustErr(t, err, ErrNotFound)
	_, err = ns.Link(ctx, f.Inode, RootInode, "h")
	ok(t, err)
	checkInvariants(t, ns)
	// Removing the recorded name moves the path to another link.
	ok(t, ns.Unlink(ctx, RootInode, "f"))
	p, err := ns.Path(ctx, f.Inode)
	ok(t, err)
	if p != "/d/g" && p != "/h" {
		t.Fatalf("path after unlink %q", p)
	}
	checkInvariants(t, ns)
	ok(t, ns.Unlink(ctx, d.Inode, "g"))
	if a, _ := ns.GetAttr(ctx, f.Inode); a.Nlink != 1 {
		t.Fatalf("nlink %d", a.Nlink)
	}
	if p, _ := ns.Path(ctx, f.Inode); p != "/h" {
		t.Fatalf("path %q", p)
	}
	mustErr(t, ns.Unlink(ctx, RootInode, "f"), ErrNotFound)
	pd, _ := ns.PendingDeletions(ctx, 0)
	if len(pd) != 0 {
		t.Fatalf("chunks freed while linked: %v", pd)
	}
	ok(t, ns.Unlink(ctx, RootInode, "h"))
	_, err = ns.GetAttr(ctx, f.Inode)
	mustErr(t, err, ErrNotFound)
	pd, _ = ns.PendingDeletions(ctx, 0)
	if len(pd) != 1 || pd[0].Chunk.FileID != "1,a" {
		t.Fatalf("pending %v", pd)
	}
	ok(t, ns.AckDeletions(ctx, [][]byte{pd[0].Key}))
	if pd, _ := ns.PendingDeletions(ctx, 0); len(pd) != 0 {
		t.Fatalf("after ack %v", pd)
	}
	checkInvariants(t, ns)
}

func TestSymlinkReadlink(t *testing.T) {
	ns, ctx := newNS(t)
	a, err := ns.Symlink(ctx, RootInode, "l", "../target", 3, 4)
	ok(t, err)
	if a.Mode != S_IFLNK|0o777 || a.Size != 9 || a.Nlink != 1 {
		t.Fatalf("symlink %+v", a)
	}
	tg, err := ns.Readlink(ctx, a.Inode)
	ok(t, err)
	if tg != "../target" {
		t.Fatalf("target %q", tg)
	}
	_, err = ns.Symlink(ctx, RootInode, "l", "x", 0, 0)
	mustErr(t, err, ErrExists)
	_, err = ns.Symlink(ctx, RootInode, "e", "", 0, 0)
	mustErr(t, err, ErrNotFound)
	_, err = ns.Symlink(ctx, RootInode, "long", strings.Repeat("a", 4096), 0, 0)
	mustErr(t, err, ErrNameTooLong)
	_, err = ns.Readlink(ctx, RootInode)
	mustErr(t, err, ErrInvalid)
	// Symlinks can be hard linked.
	_, err = ns.Link(ctx, a.Inode, RootInode, "l2")
	ok(t, err)
	checkInvariants(t, ns)
}

func u32(v uint32) *uint32 { return &v }
func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

func TestSetAttr(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	a, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{Mode: u32(S_IFDIR | 0o4711)})
	ok(t, err)
	if a.Mode != S_IFREG|0o4711 || a.Ctime <= f.Ctime || a.Mtime != f.Mtime {
		t.Fatalf("chmod: %+v (was %+v)", a, f)
	}
	b, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{Uid: u32(10), Gid: u32(20)})
	ok(t, err)
	if b.Uid != 10 || b.Gid != 20 || b.Ctime <= a.Ctime || b.Mtime != f.Mtime {
		t.Fatalf("chown: %+v", b)
	}
	c, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{Atime: i64(111), Mtime: i64(222)})
	ok(t, err)
	if c.Atime != 111 || c.Mtime != 222 || c.Ctime <= b.Ctime {
		t.Fatalf("utimens: %+v", c)
	}
	d, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{MtimeNow: true, AtimeNow: true})
	ok(t, err)
	if d.Mtime != d.Ctime || d.Atime != d.Ctime || d.Ctime <= c.Ctime {
		t.Fatalf("utimens now: %+v", d)
	}
	e, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{Size: u64(1000)})
	ok(t, err)
	if e.Size != 1000 || e.Mtime != e.Ctime || e.Ctime <= d.Ctime {
		t.Fatalf("truncate up: %+v", e)
	}
	if e.Generation <= d.Generation {
		t.Fatalf("generation %d -> %d", d.Generation, e.Generation)
	}
	dir := mkdir(t, ns, RootInode, "d")
	_, err = ns.SetAttr(ctx, dir.Inode, SetAttrRequest{Size: u64(0)})
	mustErr(t, err, ErrIsDir)
	l, _ := ns.Symlink(ctx, RootInode, "l", "t", 0, 0)
	_, err = ns.SetAttr(ctx, l.Inode, SetAttrRequest{Size: u64(0)})
	mustErr(t, err, ErrInvalid)
	_, err = ns.SetAttr(ctx, 98765, SetAttrRequest{Mode: u32(0)})
	mustErr(t, err, ErrNotFound)
}

func TestTruncateFreesChunks(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	_, err := ns.AppendChunks(ctx, f.Inode, []Chunk{
		{Offset: 0, Size: 100, FileID: "1,a", ModifiedNs: 1},
		{Offset: 100, Size: 100, FileID: "1,b", ModifiedNs: 2},
		{Offset: 200, Size: 100, FileID: "1,c", ModifiedNs: 3},
	}, 0)
	ok(t, err)
	a, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{Size: u64(150)})
	ok(t, err)
	if a.Size != 150 {
		t.Fatalf("size %d", a.Size)
	}
	c, err := ns.GetContent(ctx, f.Inode)
	ok(t, err)
	if len(c.Chunks) != 2 || c.Chunks[1].FileID != "1,b" || c.Chunks[1].Size != 50 {
		t.Fatalf("chunks %+v", c.Chunks)
	}
	pd, _ := ns.PendingDeletions(ctx, 0)
	if len(pd) != 1 || pd[0].Chunk.FileID != "1,c" {
		t.Fatalf("pending %+v", pd)
	}
	evs := allEvents(t, ns)
	last := evs[len(evs)-1]
	if last.Kind != EventUpdate || len(last.FreedChunks) != 1 || last.NewEntry.Attr.Size != 150 {
		t.Fatalf("event %+v", last)
	}
	// Growing again leaves a hole, not the old bytes.
	_, err = ns.SetAttr(ctx, f.Inode, SetAttrRequest{Size: u64(300)})
	ok(t, err)
	c, _ = ns.GetContent(ctx, f.Inode)
	if iv := VisibleIntervals(c.Chunks); iv[len(iv)-1].Stop != 150 {
		t.Fatalf("intervals %+v", iv)
	}
	checkInvariants(t, ns)
}

func TestChunksAndInline(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	_, err := ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 100, FileID: "1,a", ModifiedNs: 1}}, 0)
	ok(t, err)
	// A newer chunk hiding the first one completely frees it.
	a, err := ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 120, FileID: "1,b", ModifiedNs: 2}}, 0)
	ok(t, err)
	if a.Size != 120 {
		t.Fatalf("size %d", a.Size)
	}
	pd, _ := ns.PendingDeletions(ctx, 0)
	if len(pd) != 1 || pd[0].Chunk.FileID != "1,a" {
		t.Fatalf("pending %+v", pd)
	}
	a, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 50, Size: 10, FileID: "1,c", ModifiedNs: 3}}, 4096)
	ok(t, err)
	if a.Size != 4096 {
		t.Fatalf("minSize: %d", a.Size)
	}
	c, _ := ns.GetContent(ctx, f.Inode)
	if len(c.Chunks) != 2 {
		t.Fatalf("chunks %+v", c.Chunks)
	}
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: -1, Size: 10, FileID: "x"}}, 0)
	mustErr(t, err, ErrInvalid)
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 0, FileID: "x"}}, 0)
	mustErr(t, err, ErrInvalid)
	// SetChunks replaces all and frees what is gone, once per blob.
	_, err = ns.SetChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 10, FileID: "1,c", ModifiedNs: 3}, {Offset: 10, Size: 10, FileID: "1,d", ModifiedNs: 4}}, 20)
	ok(t, err)
	pd, _ = ns.PendingDeletions(ctx, 0)
	if len(pd) != 2 || pd[1].Chunk.FileID != "1,b" {
		t.Fatalf("pending %+v", pd)
	}
	// Inline.
	_, err = ns.SetInline(ctx, f.Inode, bytes.Repeat([]byte("x"), 5000))
	mustErr(t, err, ErrInvalid)
	a, err = ns.SetInline(ctx, f.Inode, []byte("hello"))
	ok(t, err)
	if a.Size != 5 {
		t.Fatalf("inline size %d", a.Size)
	}
	c, _ = ns.GetContent(ctx, f.Inode)
	if string(c.Inline) != "hello" || len(c.Chunks) != 0 {
		t.Fatalf("content %+v", c)
	}
	if pd, _ := ns.PendingDeletions(ctx, 0); len(pd) != 4 {
		t.Fatalf("pending %+v", pd)
	}
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 1, FileID: "1,e"}}, 0)
	mustErr(t, err, ErrInvalid)
	_, err = ns.SetAttr(ctx, f.Inode, SetAttrRequest{Size: u64(2)})
	ok(t, err)
	c, _ = ns.GetContent(ctx, f.Inode)
	if string(c.Inline) != "he" {
		t.Fatalf("inline after truncate %q", c.Inline)
	}
	d := mkdir(t, ns, RootInode, "d")
	_, err = ns.AppendChunks(ctx, d.Inode, []Chunk{{Offset: 0, Size: 1, FileID: "1,e"}}, 0)
	mustErr(t, err, ErrIsDir)
	_, err = ns.GetContent(ctx, d.Inode)
	mustErr(t, err, ErrIsDir)
	checkInvariants(t, ns)
}

func TestXattrs(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	_, err := ns.GetXattr(ctx, f.Inode, "user.a")
	mustErr(t, err, ErrNoAttr)
	mustErr(t, ns.SetXattr(ctx, f.Inode, "user.a", []byte("1"), XattrReplace), ErrNoAttr)
	ok(t, ns.SetXattr(ctx, f.Inode, "user.a", []byte("1"), XattrCreate))
	mustErr(t, ns.SetXattr(ctx, f.Inode, "user.a", []byte("2"), XattrCreate), ErrExists)
	ok(t, ns.SetXattr(ctx, f.Inode, "user.a", []byte("2"), XattrReplace))
	ok(t, ns.SetXattr(ctx, f.Inode, "user.b", nil, 0))
	v, err := ns.GetXattr(ctx, f.Inode, "user.a")
	ok(t, err)
	if string(v) != "2" {
		t.Fatalf("value %q", v)
	}
	if v, err := ns.GetXattr(ctx, f.Inode, "user.b"); err != nil || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, err)
	}
	l, err := ns.ListXattr(ctx, f.Inode)
	ok(t, err)
	if fmt.Sprint(l) != "[user.a user.b]" {
		t.Fatalf("list %v", l)
	}
	mustErr(t, ns.SetXattr(ctx, f.Inode, "user.big", make([]byte, 64<<10+1), 0), ErrXattrTooBig)
	ok(t, ns.SetXattr(ctx, f.Inode, "user.max", make([]byte, 64<<10), 0))
	mustErr(t, ns.SetXattr(ctx, f.Inode, "", nil, 0), ErrInvalid)
	mustErr(t, ns.SetXattr(ctx, f.Inode, strings.Repeat("n", 256), nil, 0), ErrNameTooLong)
	mustErr(t, ns.SetXattr(ctx, f.Inode, "user.c", nil, XattrCreate|XattrReplace), ErrInvalid)
	mustErr(t, ns.SetXattr(ctx, 55555, "user.c", nil, 0), ErrNotFound)
	mustErr(t, ns.RemoveXattr(ctx, f.Inode, "user.zz"), ErrNoAttr)
	ok(t, ns.RemoveXattr(ctx, f.Inode, "user.a"))
	_, err = ns.GetXattr(ctx, f.Inode, "user.a")
	mustErr(t, err, ErrNoAttr)
	evs := allEvents(t, ns)
	last := evs[len(evs)-1]
	if last.Kind != EventUpdate || len(last.NewEntry.Xattrs) != 2 {
		t.Fatalf("last event %+v", last)
	}
	ok(t, ns.Unlink(ctx, RootInode, "f"))
	checkInvariants(t, ns) // xattr keys gone with the inode
}

func TestReadDirCookie(t *testing.T) {
	ns, ctx := newNS(t)
	for i := 0; i < 50; i++ {
		mkfile(t, ns, RootInode, fmt.Sprintf("f%03d", i))
	}
	var got []string
	after := ""
	step := 0
	for {
		es, err := ns.ReadDir(ctx, RootInode, after, 7)
		ok(t, err)
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			got = append(got, e.Name)
		}
		after = es[len(es)-1].Name
		// Meanwhile: remove an entry already listed and one not yet
		// listed, and add one before and one after the cookie.
		step++
		ok(t, ns.Unlink(ctx, RootInode, es[0].Name))
		mkfile(t, ns, RootInode, fmt.Sprintf("a%03d", step))
		mkfile(t, ns, RootInode, fmt.Sprintf("z%03d", step))
		if step == 2 {
			ok(t, ns.Unlink(ctx, RootInode, "f040"))
		}
	}
	seen := map[string]int{}
	for i, n := range got {
		seen[n]++
		if seen[n] > 1 {
			t.Fatalf("%q repeated", n)
		}
		if i > 0 && got[i-1] >= n {
			t.Fatalf("not sorted at %d: %q %q", i, got[i-1], n)
		}
	}
	for i := 0; i < 50; i++ {
		n := fmt.Sprintf("f%03d", i)
		if seen[n] == 0 && n != "f040" {
			t.Fatalf("%q skipped", n)
		}
	}
	if seen["a001"] != 0 || seen["z001"] != 1 {
		t.Fatalf("added entries: a001 %d z001 %d", seen["a001"], seen["z001"])
	}
	_, err := ns.ReadDir(ctx, mkfile(t, ns, RootInode, "file").Inode, "", 0)
	mustErr(t, err, ErrNotDir)
}

func TestOpenUnlinked(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	_, err := ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 10, FileID: "1,a", ModifiedNs: 1}}, 0)
	ok(t, err)
	ok(t, ns.Open(ctx, f.Inode))
	ok(t, ns.Open(ctx, f.Inode))
	ok(t, ns.Unlink(ctx, RootInode, "f"))
	a, err := ns.GetAttr(ctx, f.Inode)
	ok(t, err)
	if a.Nlink != 0 {
		t.Fatalf("nlink %d", a.Nlink)
	}
	if _, err := ns.Lookup(ctx, RootInode, "f"); err == nil {
		t.Fatal("name still there")
	}
	// Writes to the open file still work.
	_, err = ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 10, Size: 10, FileID: "1,b", ModifiedNs: 2}}, 0)
	ok(t, err)
	if pd, _ := ns.PendingDeletions(ctx, 0); len(pd) != 0 {
		t.Fatalf("freed while open: %v", pd)
	}
	_, err = ns.Link(ctx, f.Inode, RootInode, "back")
	mustErr(t, err, ErrNotFound)
	checkInvariants(t, ns)
	ok(t, ns.Release(ctx, f.Inode))
	if _, err := ns.GetAttr(ctx, f.Inode); err != nil {
		t.Fatalf("freed with a handle left: %v", err)
	}
	ok(t, ns.Release(ctx, f.Inode))
	_, err = ns.GetAttr(ctx, f.Inode)
	mustErr(t, err, ErrNotFound)
	if pd, _ := ns.PendingDeletions(ctx, 0); len(pd) != 2 {
		t.Fatalf("pending %v", pd)
	}
	mustErr(t, ns.Open(ctx, f.Inode), ErrStale)
	checkInvariants(t, ns)

	// A crash with open-unlinked inodes: with KeepOrphans the next Open
	// leaves them for FreeOrphans, which keeps those a handle holds
	// again; without, the next Open frees them.
	g := mkfile(t, ns, RootInode, "g")
	k := mkfile(t, ns, RootInode, "k")
	for _, ino := range []Inode{g.Inode, k.Inode} {
		ok(t, ns.Open(ctx, ino))
	}
	ok(t, ns.Unlink(ctx, RootInode, "g"))
	ok(t, ns.Unlink(ctx, RootInode, "k"))
	kc := DefaultConfig()
	kc.KeepOrphans = true
	nsKeep, err := Open(ctx, ns.st, kc)
	ok(t, err)
	ok(t, nsKeep.Open(ctx, k.Inode)) // a client takes its handle again
	for _, ino := range []Inode{g.Inode, k.Inode} {
		if _, err := nsKeep.GetAttr(ctx, ino); err != nil {
			t.Fatalf("orphan %d freed before FreeOrphans: %v", ino, err)
		}
	}
	freed, err := nsKeep.FreeOrphans(ctx)
	ok(t, err)
	if freed != 1 {
		t.Fatalf("FreeOrphans freed %d, want 1", freed)
	}
	_, err = nsKeep.GetAttr(ctx, g.Inode)
	mustErr(t, err, ErrNotFound)
	if _, err := nsKeep.GetAttr(ctx, k.Inode); err != nil {
		t.Fatalf("held orphan freed: %v", err)
	}
	ns2, err := Open(ctx, ns.st, DefaultConfig())
	ok(t, err)
	_, err = ns2.GetAttr(ctx, k.Inode)
	mustErr(t, err, ErrNotFound)
	checkInvariants(t, ns2)

	// Rename over an open file keeps it too.
	h := mkfile(t, ns2, RootInode, "h")
	mkfile(t, ns2, RootInode, "i")
	ok(t, ns2.Open(ctx, h.Inode))
	ok(t, ns2.Rename(ctx, RootInode, "i", RootInode, "h", 0))
	if a, err := ns2.GetAttr(ctx, h.Inode); err != nil || a.Nlink != 0 {
		t.Fatalf("replaced open file: %v %+v", err, a)
	}
	ok(t, ns2.Release(ctx, h.Inode))
	_, err = ns2.GetAttr(ctx, h.Inode)
	mustErr(t, err, ErrNotFound)
	checkInvariants(t, ns2)
}

func TestKV(t *testing.T) {
	ns, ctx := newNS(t)
	_, err := ns.KVGet(ctx, "a")
	mustErr(t, err, ErrNotFound)
	ok(t, ns.KVPut(ctx, "a", []byte("1")))
	v, err := ns.KVGet(ctx, "a")
	ok(t, err)
	if string(v) != "1" {
		t.Fatalf("%q", v)
	}
	ok(t, ns.KVDelete(ctx, "a"))
	ok(t, ns.KVDelete(ctx, "a"))
	_, err = ns.KVGet(ctx, "a")
	mustErr(t, err, ErrNotFound)
	mustErr(t, ns.KVPut(ctx, "", nil), ErrInvalid)
	mustErr(t, ns.AckDeletions(ctx, [][]byte{[]byte("i123")}), ErrInvalid)
	if evs := allEvents(t, ns); len(evs) != 0 {
		t.Fatalf("kv made events: %v", evs)
	}
	_ = context.Background
}

func TestResolve(t *testing.T) {
	ns, ctx := newNS(t)
	a := mkdir(t, ns, RootInode, "a")
	b := mkdir(t, ns, a.Inode, "b")
	f := mkfile(t, ns, b.Inode, "f")
	_, err := ns.Symlink(ctx, RootInode, "la", "a", 0, 0)
	ok(t, err)
	_, err = ns.Symlink(ctx, b.Inode, "up", "../..", 0, 0)
	ok(t, err)
	_, err = ns.Symlink(ctx, RootInode, "loop1", "loop2", 0, 0)
	ok(t, err)
	_, err = ns.Symlink(ctx, RootInode, "loop2", "/loop1", 0, 0)
	ok(t, err)
	for _, tc := range []struct {
		path string
		want Inode
	}{
		{"/", RootInode}, {"/a/b/f", f.Inode}, {"//a/./b/../b/f", f.Inode}, {"/la/b/f", f.Inode},
		{"/a/b/up/a/b/f", f.Inode}, {"/a/b/up", RootInode}, {"/a/b/", b.Inode},
	} {
		got, err := ns.Resolve(ctx, tc.path, true)
		if err != nil || got.Inode != tc.want {
			t.Errorf("%s: %v %d, want %d", tc.path, err, got.Inode, tc.want)
		}
	}
	if l, err := ns.Resolve(ctx, "/la", false); err != nil || l.Mode&S_IFMT != S_IFLNK {
		t.Fatalf("nofollow: %v %+v", err, l)
	}
	_, err = ns.Resolve(ctx, "/loop1", true)
	mustErr(t, err, ErrLoop)
	_, err = ns.Resolve(ctx, "/loop1/x", false)
	mustErr(t, err, ErrLoop)
	_, err = ns.Resolve(ctx, "/a/b/f/x", true)
	mustErr(t, err, ErrNotDir)
	_, err = ns.Resolve(ctx, "/a/nope", true)
	mustErr(t, err, ErrNotFound)
}

func TestReadDirPlus(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	_, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{Size: u64(77)})
	ok(t, err)
	mkdir(t, ns, RootInode, "d")
	es, err := ns.ReadDirPlus(ctx, RootInode, "", 0)
	ok(t, err)
	if len(es) != 2 || es[0].Name != "d" || !es[0].Attr.IsDir() || es[1].Attr.Size != 77 {
		t.Fatalf("%+v", es)
	}
	es, err = ns.ReadDirPlus(ctx, RootInode, "d", 1)
	ok(t, err)
	if len(es) != 1 || es[0].Name != "f" {
		t.Fatalf("%+v", es)
	}
}

// ReadDirPlus reads runs of neighbouring inodes in one scan and the rest
// one by one (attrsOf): every entry's attributes are its inode's, hard
// links included, whichever way they were read, and an entry whose inode
// is gone is an error either way.
func TestReadDirPlusRuns(t *testing.T) {
	ns, ctx := newNS(t)
	d := mkdir(t, ns, RootInode, "d")
	other := mkdir(t, ns, RootInode, "other")
	var dense, sparse []Attr
	for i := 0; i < 3*scanRun; i++ { // neighbours: scanned
		dense = append(dense, mkfile(t, ns, d.Inode, fmt.Sprintf("dense%02d", i)))
	}
	for i := 0; i < 6; i++ { // far apart: looked up one by one
		sparse = append(sparse, mkfile(t, ns, d.Inode, fmt.Sprintf("sparse%d", i)))
		for j := 0; j < 2*scanGap; j++ {
			mkfile(t, ns, other.Inode, fmt.Sprintf("o%d-%d", i, j))
		}
	}
	_, err := ns.SetAttr(ctx, dense[5].Inode, SetAttrRequest{Size: u64(5555)})
	ok(t, err)
	_, err = ns.Link(ctx, dense[7].Inode, d.Inode, "link-to-dense07")
	ok(t, err)
	_, err = ns.Link(ctx, sparse[1].Inode, d.Inode, "link-to-sparse1")
	ok(t, err)

	check := func(limit int) {
		t.Helper()
		seen, after := 0, ""
		for {
			es, err := ns.ReadDirPlus(ctx, d.Inode, after, limit)
			ok(t, err)
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				want, err := ns.GetAttr(ctx, e.Inode)
				ok(t, err)
				if e.Attr != want {
					t.Fatalf("entry %s: attributes %+v, its inode has %+v", e.Name, e.Attr, want)
				}
			}
			seen += len(es)
			after = es[len(es)-1].Name
		}
		if want := len(dense) + len(sparse) + 2; seen != want {
			t.Fatalf("pages of %d: %d entries, want %d", limit, seen, want)
		}
	}
	check(0)
	check(scanRun + 3) // runs cut by the page end
	check(1)

	// An entry whose inode record is gone (a damaged store) fails the
	// listing, in a scanned run and out of one.
	for _, gone := range []Attr{dense[20], sparse[3]} {
		ok(t, ns.st.Update(ctx, func(tx store.Tx) error { return tx.Delete(attrKey(gone.Inode)) }))
		_, err := ns.ReadDirPlus(ctx, d.Inode, "", 0)
		mustErr(t, err, ErrNotFound)
	}
}

// OpenContent holds a handle as Open does and answers GetContent; when it
// fails it holds none.
func TestOpenContent(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	_, err := ns.AppendChunks(ctx, f.Inode, []Chunk{{Offset: 0, Size: 10, FileID: "1,a", ModifiedNs: 1}}, 0)
	ok(t, err)
	c, err := ns.OpenContent(ctx, f.Inode)
	ok(t, err)
	if c.Attr.Inode != f.Inode || c.Attr.Size != 10 || len(c.Chunks) != 1 || c.Chunks[0].FileID != "1,a" {
		t.Fatalf("content %+v", c)
	}
	ok(t, ns.Unlink(ctx, RootInode, "f"))
	if _, err := ns.GetAttr(ctx, f.Inode); err != nil {
		t.Fatalf("unlinked while held: %v", err)
	}
	ok(t, ns.Release(ctx, f.Inode))
	_, err = ns.GetAttr(ctx, f.Inode)
	mustErr(t, err, ErrNotFound)

	_, err = ns.OpenContent(ctx, f.Inode)
	mustErr(t, err, ErrStale)
	d, err := ns.Mkdir(ctx, RootInode, "d", 0o755, 0, 0)
	ok(t, err)
	_, err = ns.OpenContent(ctx, d.Inode)
	mustErr(t, err, ErrIsDir)
	wantNoHandles(t, ns, "failed opens")
	checkInvariants(t, ns)
}
