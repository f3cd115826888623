package filerd

import (
	"slices"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

// A mount sends its signature with its changes and subscribes with it:
// it never sees its own changes, others see them signed.
func TestMountSignature(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	own := tf.s.Signature()
	mine := subscribe(t, api, &filerpb.SubscribeMetadataRequest{ClientSignature: 4242})
	other := subscribe(t, api, &filerpb.SubscribeMetadataRequest{ClientSignature: 5})

	mctx := client.WithFilerSignature(ctx, 4242)
	d := must[*filerpb.EntryResponse](t)(api.Mkdir(mctx, &filerpb.MkdirRequest{Parent: root, Name: "by-mount", Mode: 0o755}))
	f := must[*filerpb.EntryResponse](t)(api.Create(mctx, &filerpb.CreateRequest{Parent: d.Attr.Inode, Name: "f", Mode: 0o644}))
	must[*filerpb.AttrResponse](t)(api.CommitChunks(mctx, &filerpb.CommitChunksRequest{Inode: f.Attr.Inode,
		Chunks: []*filerpb.Chunk{{Size: 3, FileId: "9,01aaaaaaaa", ModifiedNs: 1}}}))
	// Several signatures: a chain (filer.sync), in one or several values.
	chain := metadata.AppendToOutgoingContext(ctx, "kelp-signature", "7, 8", "kelp-signature", "9")
	must[*filerpb.EntryResponse](t)(api.Mkdir(chain, &filerpb.MkdirRequest{Parent: root, Name: "chained", Mode: 0o755}))
	must[*filerpb.EntryResponse](t)(api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: root, Name: "by-someone", Mode: 0o755}))
	end := tf.s.ns.Watermark()

	evs := other.waitFor(t, end)
	if len(evs) != 5 {
		t.Fatalf("the other subscriber got %d events, want 5", len(evs))
	}
	for i, want := range [][]int32{{4242, own}, {4242, own}, {4242, own}, {7, 8, 9, own}, {own}} {
		if !slices.Equal(evs[i].Signatures, want) {
			t.Fatalf("event %d (%s) signatures %v, want %v", i, evs[i].NewPath, evs[i].Signatures, want)
		}
	}
	got := mine.waitFor(t, end)
	if len(got) != 2 || got[0].NewPath != "/chained" || got[1].NewPath != "/by-someone" {
		t.Fatalf("the mount's own subscription got %v", got)
	}
	for _, bad := range []string{"x", "99999999999", ""} {
		_, err := api.Mkdir(metadata.AppendToOutgoingContext(ctx, "kelp-signature", bad),
			&filerpb.MkdirRequest{Parent: root, Name: "bad", Mode: 0o755})
		wantErrno(t, err, "EINVAL", client.ErrInvalid)
	}
	// 0 is no signature.
	must[*filerpb.EntryResponse](t)(api.Mkdir(client.WithFilerSignature(ctx, 0), &filerpb.MkdirRequest{Parent: root, Name: "zero", Mode: 0o755}))
	last := readLog(t, tf.s, end)
	if len(last) != 1 || !slices.Equal(last[0].Signatures, []int32{own}) {
		t.Fatalf("signature 0: %+v", last)
	}
}

// Events name the parent directories of their paths over the wire.
func TestEventParentsOverGRPC(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	sub := subscribe(t, api, &filerpb.SubscribeMetadataRequest{})
	d := must[*filerpb.EntryResponse](t)(api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: root, Name: "d", Mode: 0o755}))
	di := d.Attr.Inode
	must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: di, Name: "f", Mode: 0o644}))
	must[*filerpb.ChangeResponse](t)(api.Rename(ctx, &filerpb.RenameRequest{OldParent: di, OldName: "f", NewParent: root, NewName: "g"}))
	must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: root, Name: "g"}))
	evs := sub.waitFor(t, tf.s.ns.Watermark())
	want := [][2]uint64{{0, root}, {0, di}, {di, root}, {root, 0}}
	if len(evs) != len(want) {
		t.Fatalf("%d events", len(evs))
	}
	for i, w := range want {
		if evs[i].OldParent != w[0] || evs[i].NewParent != w[1] {
			t.Fatalf("event %d %v %s -> %s: parents %d %d, want %v", i, evs[i].Kind, evs[i].OldPath, evs[i].NewPath,
				evs[i].OldParent, evs[i].NewParent, w)
		}
	}
}

// OpenContent and Create with open take a handle in the same call;
// Release without Open is harmless; a failed OpenContent keeps no handle.
func TestOpenContentAndCreateOpen(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx, ns := tf.api, tf.ctx, tf.s.ns
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "f", Mode: 0o644, Open: true}))
	ino := f.Attr.Inode
	if ns.OpenCount(meta.Inode(ino)) != 1 {
		t.Fatalf("create with open: %d handles", ns.OpenCount(meta.Inode(ino)))
	}
	must[*filerpb.AttrResponse](t)(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Inline: []byte("hello")}))
	oc := must[*filerpb.GetChunksResponse](t)(api.OpenContent(ctx, &filerpb.OpenRequest{Inode: ino}))
	if string(oc.Inline) != "hello" || oc.Attr.Size != 5 || ns.OpenCount(meta.Inode(ino)) != 2 {
		t.Fatalf("open content %+v, %d handles", oc, ns.OpenCount(meta.Inode(ino)))
	}
	// Unlinked while open, the content stays readable until the last release.
	must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: root, Name: "f"}))
	for range 2 {
		if gc, err := api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: ino}); err != nil || string(gc.Inline) != "hello" {
			t.Fatalf("open-unlinked content: %v", err)
		}
		must[*filerpb.Empty](t)(api.Release(ctx, &filerpb.ReleaseRequest{Inode: ino}))
	}
	_, err := api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: ino})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
	// Releases nobody took are harmless.
	must[*filerpb.Empty](t)(api.Release(ctx, &filerpb.ReleaseRequest{Inode: ino}))
	must[*filerpb.Empty](t)(api.Release(ctx, &filerpb.ReleaseRequest{Inode: 987654}))
	if ns.OpenCount(meta.Inode(ino)) != 0 {
		t.Fatal("a negative handle count")
	}
	// Failures keep no handle.
	_, err = api.OpenContent(ctx, &filerpb.OpenRequest{Inode: root})
	wantErrno(t, err, "EISDIR", nil)
	_, err = api.OpenContent(ctx, &filerpb.OpenRequest{Inode: ino})
	wantErrno(t, err, "ESTALE", nil)
	if ns.OpenCount(meta.RootInode) != 0 || ns.OpenCount(meta.Inode(ino)) != 0 {
		t.Fatal("a failed OpenContent kept a handle")
	}
}

// OpenContent and GetChunks naming the generation the client holds answer
// with the attributes alone while the file is at it (the open still takes
// its handle), and in full once it moved on.
func TestContentSinceKnownGeneration(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx, ns := tf.api, tf.ctx, tf.s.ns
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "f", Mode: 0o644}))
	ino := f.Attr.Inode
	c := must[*filerpb.AttrResponse](t)(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Inline: []byte("hello")}))
	gen := c.Attr.Generation
	oc := must[*filerpb.GetChunksResponse](t)(api.OpenContent(ctx, &filerpb.OpenRequest{Inode: ino, KnownGeneration: gen}))
	if !oc.Unchanged || len(oc.Inline) != 0 || oc.Attr.GetGeneration() != gen || oc.Attr.Size != 5 {
		t.Fatalf("open naming the current generation: %+v", oc)
	}
	if n := ns.OpenCount(meta.Inode(ino)); n != 1 {
		t.Fatalf("an unchanged open took %d handles", n)
	}
	gc := must[*filerpb.GetChunksResponse](t)(api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: ino, KnownGeneration: gen}))
	if !gc.Unchanged || len(gc.Inline) != 0 {
		t.Fatalf("GetChunks naming the current generation: %+v", gc)
	}
	// An older generation, or none, gets the content.
	for _, known := range []uint64{gen - 1, 0} {
		gc = must[*filerpb.GetChunksResponse](t)(api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: ino, KnownGeneration: known}))
		if gc.Unchanged || string(gc.Inline) != "hello" {
			t.Fatalf("GetChunks naming generation %d of %d: %+v", known, gen, gc)
		}
	}
	// Any change moves the generation: a chmod as much as new content.
	mode := uint32(0o600)
	must[*filerpb.AttrResponse](t)(api.SetAttr(ctx, &filerpb.SetAttrRequest{Inode: ino, Mode: &mode}))
	oc = must[*filerpb.GetChunksResponse](t)(api.OpenContent(ctx, &filerpb.OpenRequest{Inode: ino, KnownGeneration: gen}))
	if oc.Unchanged || string(oc.Inline) != "hello" || oc.Attr.GetGeneration() == gen {
		t.Fatalf("open naming a generation before a chmod: %+v", oc)
	}
	if n := ns.OpenCount(meta.Inode(ino)); n != 2 {
		t.Fatalf("%d handles after two opens", n)
	}
}

// A commit with an mtime is one change-log event.
func TestCommitMtimeOneEvent(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "f", Mode: 0o644}))
	before := tf.s.ns.Watermark()
	mt := int64(1_700_000_000_000_000_000)
	r := must[*filerpb.AttrResponse](t)(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: f.Attr.Inode,
		Chunks: []*filerpb.Chunk{{Size: 3, FileId: "9,01aaaaaaaa", ModifiedNs: 1}}, MtimeNs: mt}))
	evs := readLog(t, tf.s, before)
	if len(evs) != 1 || r.Attr.MtimeNs != mt || evs[0].NewEntry.Attr.Mtime != mt || r.Attr.CtimeNs != evs[0].TsNs {
		t.Fatalf("%d events, attr %+v", len(evs), r.Attr)
	}
}

// StatFs reports the named inodes.
func TestStatFsFiles(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	files := func() uint64 {
		t.Helper()
		return must[*filerpb.StatFsResponse](t)(api.StatFs(ctx, &filerpb.StatFsRequest{})).Files
	}
	if n := files(); n != 1 {
		t.Fatalf("files of an empty filer: %d", n)
	}
	d := must[*filerpb.EntryResponse](t)(api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: root, Name: "d", Mode: 0o755}))
	for _, name := range []string{"a", "b", "c"} {
		must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: d.Attr.Inode, Name: name, Mode: 0o644}))
	}
	must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: d.Attr.Inode, Name: "b"}))
	if n := files(); n != 4 {
		t.Fatalf("files %d, want 4", n)
	}
}

// Mutations answer with what they left on every inode they wrote, so a
// mount's attribute cache needs no GetAttr after them; a batched Release
// drops every handle it names.
func TestMutationsReportChanges(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	find := func(what string, as []*filerpb.Attr, ino uint64) *filerpb.Attr {
		t.Helper()
		for _, a := range as {
			if a.Inode == ino {
				return a
			}
		}
		t.Fatalf("%s: inode %d not among the changed %v", what, ino, as)
		return nil
	}
	same := func(what string, got *filerpb.Attr, ino uint64) {
		t.Helper()
		want := must[*filerpb.AttrResponse](t)(api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: ino})).Attr
		if got.MtimeNs != want.MtimeNs || got.CtimeNs != want.CtimeNs || got.Nlink != want.Nlink ||
			got.Generation != want.Generation || got.Size != want.Size {
			t.Fatalf("%s: changed attr of %d %+v, the filer now says %+v", what, ino, got, want)
		}
	}
	d := must[*filerpb.EntryResponse](t)(api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: root, Name: "d", Mode: 0o755}))
	same("mkdir parent", find("mkdir", d.Changed, root), root)
	same("mkdir dir", find("mkdir", d.Changed, d.Attr.Inode), d.Attr.Inode)
	di := d.Attr.Inode
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: di, Name: "f", Mode: 0o644, Open: true}))
	same("create parent", find("create", f.Changed, di), di)
	l := must[*filerpb.EntryResponse](t)(api.Link(ctx, &filerpb.LinkRequest{Inode: f.Attr.Inode, NewParent: root, NewName: "l"}))
	same("link parent", find("link", l.Changed, root), root)
	same("link target", find("link", l.Changed, f.Attr.Inode), f.Attr.Inode)
	rn := must[*filerpb.ChangeResponse](t)(api.Rename(ctx, &filerpb.RenameRequest{OldParent: di, OldName: "f", NewParent: root, NewName: "g"}))
	same("rename old parent", find("rename", rn.Changed, di), di)
	same("rename new parent", find("rename", rn.Changed, root), root)
	xa := must[*filerpb.ChangeResponse](t)(api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: "user.a", Value: []byte("1")}))
	same("setxattr", find("setxattr", xa.Changed, f.Attr.Inode), f.Attr.Inode)
	un := must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: root, Name: "l"}))
	same("unlink parent", find("unlink", un.Changed, root), root)
	same("unlink target", find("unlink", un.Changed, f.Attr.Inode), f.Attr.Inode)
	// The last name goes while the create's handle holds the inode; a
	// batched release (with a zero and an unknown inode) frees it.
	un = must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: root, Name: "g"}))
	if a := find("last unlink", un.Changed, f.Attr.Inode); a.Nlink != 0 {
		t.Fatalf("open-unlinked inode reported with nlink %d", a.Nlink)
	}
	must[*filerpb.Empty](t)(api.Release(ctx, &filerpb.ReleaseRequest{Inodes: []uint64{0, 987654, f.Attr.Inode}}))
	_, err := api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: f.Attr.Inode})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
	rd := must[*filerpb.ChangeResponse](t)(api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: root, Name: "d"}))
	same("rmdir parent", find("rmdir", rd.Changed, root), root)
	if !slices.Contains(rd.Removed, di) {
		t.Fatalf("rmdir removed %v, want %d among them", rd.Removed, di)
	}
}
