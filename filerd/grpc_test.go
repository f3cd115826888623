package filerd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

const root = uint64(meta.RootInode)

func TestNamespaceOpsOverGRPC(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	entry := must[*filerpb.EntryResponse](t)

	_, err := api.Lookup(ctx, &filerpb.LookupRequest{Parent: root, Name: "missing"})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("code = %v", status.Code(err))
	}

	a := entry(api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: root, Name: "a", Mode: 0o750, Uid: 5, Gid: 6}))
	if a.Attr.Mode != uint32(meta.S_IFDIR|0o750) || a.Attr.Uid != 5 || a.Attr.Nlink != 2 {
		t.Fatalf("mkdir attr %+v", a.Attr)
	}
	_, err = api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: root, Name: "a", Mode: 0o755})
	wantErrno(t, err, "EEXIST", client.ErrExists)

	f := entry(api.Create(ctx, &filerpb.CreateRequest{Parent: a.Attr.Inode, Name: "f", Mode: 0o644, Exclusive: true}))
	if f.Attr.Mode != uint32(meta.S_IFREG|0o644) || f.Attr.Nlink != 1 {
		t.Fatalf("create attr %+v", f.Attr)
	}
	_, err = api.Create(ctx, &filerpb.CreateRequest{Parent: a.Attr.Inode, Name: "f", Mode: 0o644, Exclusive: true})
	wantErrno(t, err, "EEXIST", client.ErrExists)
	again := entry(api.Create(ctx, &filerpb.CreateRequest{Parent: a.Attr.Inode, Name: "f", Mode: 0o600}))
	if again.Attr.Inode != f.Attr.Inode {
		t.Fatalf("non-exclusive create returned inode %d, want %d", again.Attr.Inode, f.Attr.Inode)
	}
	got := entry(api.Lookup(ctx, &filerpb.LookupRequest{Parent: a.Attr.Inode, Name: "f"}))
	if got.Attr.Inode != f.Attr.Inode || got.Name != "f" {
		t.Fatalf("lookup %+v", got)
	}

	fifo := entry(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "fifo", Mode: meta.S_IFIFO | 0o600, Exclusive: true}))
	if fifo.Attr.Mode&meta.S_IFMT != meta.S_IFIFO {
		t.Fatalf("fifo mode %o", fifo.Attr.Mode)
	}
	dev := entry(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "dev", Mode: meta.S_IFCHR | 0o600, Rdev: 0x0501, Exclusive: true}))
	if dev.Attr.Rdev != 0x0501 {
		t.Fatalf("rdev %x", dev.Attr.Rdev)
	}

	_, err = api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: root, Name: "a"})
	wantErrno(t, err, "ENOTEMPTY", nil)
	_, err = api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: root, Name: strings.Repeat("n", 256), Mode: 0o755})
	wantErrno(t, err, "ENAMETOOLONG", client.ErrInvalid)
	_, err = api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "x/y", Mode: 0o644})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	_, err = api.Lookup(ctx, &filerpb.LookupRequest{Parent: f.Attr.Inode, Name: "x"})
	wantErrno(t, err, "ENOTDIR", client.ErrPrecondition)
	_, err = api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: root, Name: "a"})
	wantErrno(t, err, "EISDIR", nil)

	b := entry(api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: a.Attr.Inode, Name: "b", Mode: 0o755}))
	_, err = api.Rename(ctx, &filerpb.RenameRequest{OldParent: root, OldName: "a", NewParent: b.Attr.Inode, NewName: "c"})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	_, err = api.Rename(ctx, &filerpb.RenameRequest{OldParent: a.Attr.Inode, OldName: "f", NewParent: root, NewName: "fifo", Flags: 1})
	wantErrno(t, err, "EEXIST", client.ErrExists)
	_, err = api.Rename(ctx, &filerpb.RenameRequest{OldParent: root, OldName: "nope", NewParent: root, NewName: "x"})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
	// Exchange, then back.
	must[*filerpb.ChangeResponse](t)(api.Rename(ctx, &filerpb.RenameRequest{OldParent: a.Attr.Inode, OldName: "f", NewParent: root, NewName: "fifo", Flags: 2}))
	if x := entry(api.Lookup(ctx, &filerpb.LookupRequest{Parent: root, Name: "fifo"})); x.Attr.Inode != f.Attr.Inode {
		t.Fatalf("after exchange /fifo is inode %d", x.Attr.Inode)
	}
	must[*filerpb.ChangeResponse](t)(api.Rename(ctx, &filerpb.RenameRequest{OldParent: a.Attr.Inode, OldName: "f", NewParent: root, NewName: "fifo", Flags: 2}))

	// Hard links.
	l := entry(api.Link(ctx, &filerpb.LinkRequest{Inode: f.Attr.Inode, NewParent: root, NewName: "hard"}))
	if l.Attr.Nlink != 2 || l.Attr.Inode != f.Attr.Inode {
		t.Fatalf("link attr %+v", l.Attr)
	}
	_, err = api.Link(ctx, &filerpb.LinkRequest{Inode: a.Attr.Inode, NewParent: root, NewName: "dirlink"})
	wantErrno(t, err, "EPERM", client.ErrPermission)

	// Symlinks.
	s := entry(api.Symlink(ctx, &filerpb.SymlinkRequest{Parent: root, Name: "sl", Target: "a/f"}))
	rl := must[*filerpb.ReadlinkResponse](t)(api.Readlink(ctx, &filerpb.ReadlinkRequest{Inode: s.Attr.Inode}))
	if rl.Target != "a/f" {
		t.Fatalf("readlink %q", rl.Target)
	}
	_, err = api.Readlink(ctx, &filerpb.ReadlinkRequest{Inode: f.Attr.Inode})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)

	// SetAttr / GetAttr.
	mode, uid, size := uint32(0o600), uint32(42), uint64(100)
	sa := must[*filerpb.AttrResponse](t)(api.SetAttr(ctx, &filerpb.SetAttrRequest{Inode: f.Attr.Inode, Mode: &mode, Uid: &uid, Size: &size}))
	if sa.Attr.Mode != uint32(meta.S_IFREG|0o600) || sa.Attr.Uid != 42 || sa.Attr.Size != 100 {
		t.Fatalf("setattr %+v", sa.Attr)
	}
	mt := int64(1_000_000_000)
	sa = must[*filerpb.AttrResponse](t)(api.SetAttr(ctx, &filerpb.SetAttrRequest{Inode: f.Attr.Inode, MtimeNs: &mt}))
	if sa.Attr.MtimeNs != mt {
		t.Fatalf("mtime %d", sa.Attr.MtimeNs)
	}
	ga := must[*filerpb.AttrResponse](t)(api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: f.Attr.Inode}))
	if ga.Attr.Size != 100 || ga.Attr.MtimeNs != mt || ga.Attr.Nlink != 2 {
		t.Fatalf("getattr %+v", ga.Attr)
	}
	_, err = api.SetAttr(ctx, &filerpb.SetAttrRequest{Inode: a.Attr.Inode, Size: &size})
	wantErrno(t, err, "EISDIR", nil)
	_, err = api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: 999999})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)

	// Xattrs.
	xa := must[*filerpb.ChangeResponse](t)
	xa(api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: "user.k", Value: []byte("v1")}))
	_, err = api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: "user.k", Value: []byte("v2"), Flags: 1})
	wantErrno(t, err, "EEXIST", client.ErrExists)
	_, err = api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: "user.new", Value: []byte("v"), Flags: 2})
	wantErrno(t, err, "ENODATA", client.ErrNotFound)
	_, err = api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: "user.k", Value: []byte("v"), Flags: 8})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	_, err = api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: "user.big", Value: make([]byte, 65<<10)})
	wantErrno(t, err, "E2BIG", nil)
	gx := must[*filerpb.GetXattrResponse](t)(api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: f.Attr.Inode, Name: "user.k"}))
	if string(gx.Value) != "v1" {
		t.Fatalf("getxattr %q", gx.Value)
	}
	lx := must[*filerpb.ListXattrResponse](t)(api.ListXattr(ctx, &filerpb.ListXattrRequest{Inode: f.Attr.Inode}))
	if len(lx.Names) != 1 || lx.Names[0] != "user.k" {
		t.Fatalf("listxattr %v", lx.Names)
	}
	xa(api.RemoveXattr(ctx, &filerpb.RemoveXattrRequest{Inode: f.Attr.Inode, Name: "user.k"}))
	_, err = api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: f.Attr.Inode, Name: "user.k"})
	wantErrno(t, err, "ENODATA", client.ErrNotFound)

	// ReadDir with a cookie, with and without attributes.
	var names []string
	after := ""
	for {
		rd := must[*filerpb.ReadDirResponse](t)(api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: root, After: after, Limit: 2, WithAttrs: true}))
		for _, e := range rd.Entries {
			names = append(names, e.Name)
			if e.Attr == nil || e.Attr.Inode != e.Inode || e.Type != e.Attr.Mode&meta.S_IFMT {
				t.Fatalf("entry %+v", e)
			}
		}
		if rd.Eof {
			break
		}
		if len(rd.Entries) == 0 {
			t.Fatal("no entries and no eof")
		}
		after = rd.Entries[len(rd.Entries)-1].Name
	}
	if want := "a,dev,fifo,hard,sl"; strings.Join(names, ",") != want {
		t.Fatalf("readdir %v, want %s", names, want)
	}
	rd := must[*filerpb.ReadDirResponse](t)(api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: a.Attr.Inode}))
	if len(rd.Entries) != 2 || !rd.Eof || rd.Entries[0].Attr != nil {
		t.Fatalf("readdir a: %+v", rd)
	}
	_, err = api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: f.Attr.Inode})
	wantErrno(t, err, "ENOTDIR", nil)

	// Open-unlinked: the inode lives until Release (handles_test.go
	// covers the sessions that hold handles).
	if _, err := tf.fc.Locks().OpenSession(ctx, "s1", time.Minute); err != nil {
		t.Fatal(err)
	}
	must[*filerpb.AttrResponse](t)(api.Open(ctx, &filerpb.OpenRequest{Inode: f.Attr.Inode, Lease: "s1"}))
	must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: root, Name: "hard"}))
	must[*filerpb.ChangeResponse](t)(api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: a.Attr.Inode, Name: "f"}))
	ga = must[*filerpb.AttrResponse](t)(api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: f.Attr.Inode}))
	if ga.Attr.Nlink != 0 {
		t.Fatalf("open-unlinked nlink %d", ga.Attr.Nlink)
	}
	must[*filerpb.Empty](t)(api.Release(ctx, &filerpb.ReleaseRequest{Inode: f.Attr.Inode, Lease: "s1"}))
	_, err = api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: f.Attr.Inode})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
	_, err = api.Open(ctx, &filerpb.OpenRequest{Inode: f.Attr.Inode})
	wantErrno(t, err, "ESTALE", client.ErrNotFound)

	must[*filerpb.ChangeResponse](t)(api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: a.Attr.Inode, Name: "b"}))
	must[*filerpb.ChangeResponse](t)(api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: root, Name: "a"}))
	_, err = api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: root, Name: "a"})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
	_, err = api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: root, Name: "fifo"})
	wantErrno(t, err, "ENOTDIR", nil)
}

func TestChunksOverGRPC(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "f", Mode: 0o644}))
	ino := f.Attr.Inode
	commit := must[*filerpb.AttrResponse](t)
	getChunks := func() *filerpb.GetChunksResponse {
		t.Helper()
		return must[*filerpb.GetChunksResponse](t)(api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: ino}))
	}

	// Volume 9 is unknown to the fake master, so the GC loop (woken by
	// every commit) leaves freed chunks queued for the test to see.
	c1 := &filerpb.Chunk{Offset: 0, Size: 10, FileId: "9,01aaaaaaaa", ModifiedNs: 1, Etag: "e1"}
	c2 := &filerpb.Chunk{Offset: 10, Size: 10, FileId: "9,02aaaaaaaa", ModifiedNs: 2}
	r := commit(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Chunks: []*filerpb.Chunk{c1, c2}}))
	if r.Attr.Size != 20 {
		t.Fatalf("size after append %d", r.Attr.Size)
	}
	r = commit(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Size: 25}))
	if r.Attr.Size != 25 {
		t.Fatalf("size after append with size %d", r.Attr.Size)
	}
	gc := getChunks()
	if len(gc.Chunks) != 2 || gc.Chunks[0].FileId != c1.FileId || gc.Chunks[0].Etag != "e1" || gc.Attr.Size != 25 {
		t.Fatalf("get chunks %+v", gc)
	}
	// A newer chunk over all of c1 frees it.
	c3 := &filerpb.Chunk{Offset: 0, Size: 10, FileId: "9,03aaaaaaaa", ModifiedNs: 3}
	commit(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Chunks: []*filerpb.Chunk{c3}}))
	if pend := pendingFids(t, tf.s); pend != "9,01aaaaaaaa" {
		t.Fatalf("pending after overwrite %q", pend)
	}
	// Replace drops the old list.
	c4 := &filerpb.Chunk{Offset: 0, Size: 5, FileId: "9,04aaaaaaaa", ModifiedNs: 4}
	mt := int64(7_000_000_000)
	r = commit(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Chunks: []*filerpb.Chunk{c4}, Size: 5, Replace: true, MtimeNs: mt}))
	if r.Attr.Size != 5 || r.Attr.MtimeNs != mt {
		t.Fatalf("replace attr %+v", r.Attr)
	}
	gc = getChunks()
	if len(gc.Chunks) != 1 || gc.Chunks[0].FileId != c4.FileId {
		t.Fatalf("chunks after replace %+v", gc.Chunks)
	}
	if pend := pendingFids(t, tf.s); pend != "9,01aaaaaaaa 9,02aaaaaaaa 9,03aaaaaaaa" {
		t.Fatalf("pending after replace %q", pend)
	}
	// Inline content replaces the chunks.
	r = commit(api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Inline: []byte("hello")}))
	if r.Attr.Size != 5 {
		t.Fatalf("inline size %d", r.Attr.Size)
	}
	gc = getChunks()
	if !bytes.Equal(gc.Inline, []byte("hello")) || len(gc.Chunks) != 0 {
		t.Fatalf("inline content %+v", gc)
	}
	_, err := api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Inline: []byte("x"), Chunks: []*filerpb.Chunk{c1}})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	_, err = api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Inline: make([]byte, DefaultConfig().InlineLimit+1)})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	_, err = api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Replace: true,
		Chunks: []*filerpb.Chunk{{Size: 1, FileId: "9,05aaaaaaaa", IsManifest: true}}})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	_, err = api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Replace: true, Chunks: []*filerpb.Chunk{{Size: 0, FileId: "9,05aaaaaaaa"}}})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
	_, err = api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: root})
	wantErrno(t, err, "EISDIR", nil)
	_, err = api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: 424242, Chunks: []*filerpb.Chunk{c1}})
	wantErrno(t, err, "ENOENT", client.ErrNotFound)
}

// pendingFids lists the GC queue's file ids, space-separated, sorted.
func pendingFids(t *testing.T, s *Server) string {
	t.Helper()
	pend, err := s.ns.PendingDeletions(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var fids []string
	for _, p := range pend {
		fids = append(fids, p.Chunk.FileID)
	}
	sortStrings(fids)
	return strings.Join(fids, " ")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestKVOverGRPC(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	g := must[*filerpb.KvGetResponse](t)
	if r := g(api.KvGet(ctx, &filerpb.KvGetRequest{Key: []byte("sync.ckpt")})); r.Found {
		t.Fatal("found a missing key")
	}
	must[*filerpb.Empty](t)(api.KvPut(ctx, &filerpb.KvPutRequest{Key: []byte("sync.ckpt"), Value: []byte("123")}))
	if r := g(api.KvGet(ctx, &filerpb.KvGetRequest{Key: []byte("sync.ckpt")})); !r.Found || string(r.Value) != "123" {
		t.Fatalf("get %+v", r)
	}
	must[*filerpb.Empty](t)(api.KvDelete(ctx, &filerpb.KvDeleteRequest{Key: []byte("sync.ckpt")}))
	must[*filerpb.Empty](t)(api.KvDelete(ctx, &filerpb.KvDeleteRequest{Key: []byte("sync.ckpt")}))
	if r := g(api.KvGet(ctx, &filerpb.KvGetRequest{Key: []byte("sync.ckpt")})); r.Found {
		t.Fatal("found a deleted key")
	}
	_, err := api.KvPut(ctx, &filerpb.KvPutRequest{Key: nil, Value: []byte("x")})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
}

func TestMasterPassThroughAndStatFs(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	a := must[*filerpb.AssignVolumeResponse](t)(api.AssignVolume(ctx, &filerpb.AssignVolumeRequest{Count: 3}))
	if !strings.HasPrefix(a.FileId, "3,") || a.Count != 3 || a.Location.Url != tf.vol.host() || len(a.Replicas) != 1 {
		t.Fatalf("assign %+v", a)
	}
	l := must[*filerpb.LookupVolumeResponse](t)(api.LookupVolume(ctx, &filerpb.LookupVolumeRequest{VolumeIds: []uint32{3, 9}}))
	if len(l.Volumes) != 2 || l.Volumes[0].Locations[0].Url != tf.vol.host() || l.Volumes[1].Error == "" {
		t.Fatalf("lookup %+v", l)
	}
	st := must[*filerpb.StatFsResponse](t)(api.StatFs(ctx, &filerpb.StatFsRequest{}))
	if st.TotalBytes != 4000 || st.FreeBytes != 2*1000+700 || st.BlockSize == 0 {
		t.Fatalf("statfs %+v", st)
	}
}

func TestFilerConfigurationAndSignature(t *testing.T) {
	vol := newFakeVolume(t)
	_, addr := startFakeMaster(t, vol)
	cfg := testConfig(t, addr)
	cfg.Collection = "pics"
	cfg.DefaultReplication = "001"

	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sig := first.Signature()
	if sig == 0 {
		t.Fatal("no signature generated")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened on the same directory, the filer keeps its signature.
	s := serve(t, cfg)
	if s.Signature() != sig {
		t.Fatalf("signature %d after restart, want %d", s.Signature(), sig)
	}
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: s.GRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	c := must[*filerpb.FilerConfiguration](t)(fc.API().GetFilerConfiguration(t.Context(), &filerpb.Empty{}))
	if c.Signature != sig || c.Masters != addr || c.Collection != "pics" || c.Replication != "001" || c.MaxChunkMb != 4 {
		t.Fatalf("configuration %+v", c)
	}
	// Events carry the signature.
	if _, err := s.ns.Mkdir(t.Context(), meta.RootInode, "d", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	evs := readLog(t, s, 0)
	if len(evs) != 1 || len(evs[0].Signatures) != 1 || evs[0].Signatures[0] != sig {
		t.Fatalf("events %+v", evs)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Dir, good.MasterAddr = "/x", "m:1"
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, tweak := range map[string]func(*Config){
		"no dir":      func(c *Config) { c.Dir = "" },
		"no master":   func(c *Config) { c.MasterAddr = "" },
		"no http":     func(c *Config) { c.HTTPAddr = "" },
		"chunk":       func(c *Config) { c.ChunkSizeMB = 0 },
		"inline":      func(c *Config) { c.InlineLimit = -1 },
		"retention":   func(c *Config) { c.LogRetention = 0 },
		"gc":          func(c *Config) { c.GCInterval = 0 },
		"replication": func(c *Config) { c.DefaultReplication = "9x" },
		"threshold":   func(c *Config) { c.ManifestThreshold = -1 },
		"batch big":   func(c *Config) { c.ManifestThreshold, c.ManifestBatch = 10, 11 },
		"batch small": func(c *Config) { c.ManifestBatch = 1 },
		"cache":       func(c *Config) { c.ManifestCacheChunks = -1 },
	} {
		c := good
		tweak(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
	off := good
	off.ManifestThreshold, off.ManifestBatch = 0, 0 // folding off: the batch does not matter
	if err := off.Validate(); err != nil {
		t.Fatalf("folding off: %v", err)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("New(empty) = %v", err)
	}
}

func TestNewFailsCleanlyOnBusyPort(t *testing.T) {
	vol := newFakeVolume(t)
	_, addr := startFakeMaster(t, vol)
	s := serve(t, testConfig(t, addr))
	cfg := testConfig(t, addr)
	cfg.GRPCAddr = s.GRPCAddr()
	if _, err := New(cfg); err == nil {
		t.Fatal("New on a busy port succeeded")
	}
	// The store New opened was closed: another New on the dir works.
	cfg.GRPCAddr = "127.0.0.1:0"
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestGRPCErrorTable(t *testing.T) {
	for _, row := range errorTable {
		err := grpcError(errors.Join(errors.New("ctx"), row.err))
		st, _ := status.FromError(err)
		if st.Code() != row.code || client.PosixErrno(err) != row.errno {
			t.Errorf("%v -> %v %q", row.err, st.Code(), client.PosixErrno(err))
		}
	}
	if err := grpcError(errors.New("boom")); status.Code(err) != codes.Internal || client.PosixErrno(err) != "EIO" {
		t.Fatalf("unknown error -> %v", err)
	}
	if err := grpcError(client.ErrUnavailable); status.Code(err) != codes.Unavailable {
		t.Fatalf("client error -> %v", err)
	}
}
