package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filersync"
	"github.com/kelpfs/kelp/integration/cluster"
)

// filer.sync.verify (issue 6) against two real clusters whose trees are
// built through the filers' gRPC API: small files inline, larger ones as
// chunks uploaded to each cluster's volume servers, so the same bytes have
// other file ids but the same ETags on both sides.

// verifyChunk is the chunk size of the files built here: small, so a file
// of a few hundred KiB has several chunks.
const verifyChunk = 64 << 10

func TestFilerSyncVerify(t *testing.T) {
	ca := cluster.Start(t, cluster.Options{Filer: true})
	cb := cluster.Start(t, cluster.Options{Filer: true})
	ctx := ctxT(t)
	A, B := newVerifyBuilder(ctx, t, ca), newVerifyBuilder(ctx, t, cb)
	both := func(build func(w *verifyBuilder)) {
		build(A)
		build(B)
	}
	verify := func(t *testing.T, a, b filersync.VerifySide) filersync.VerifyReport {
		t.Helper()
		a.Filer, b.Filer = A.api, B.api
		start := time.Now()
		rep, err := filersync.Verify(ctx, a, b, filersync.VerifyOptions{Concurrency: 4, Logger: syncLog(t)})
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		t.Logf("verified %s -> %s in %v: %d compared", a.Path, b.Path, time.Since(start).Round(time.Millisecond), rep.Compared)
		return rep
	}
	big := randomBytes(t, 5*verifyChunk+1234)

	t.Run("Identical", func(t *testing.T) {
		n := 0
		both(func(w *verifyBuilder) { n = w.common("/same", big) })
		rep := verify(t, filersync.VerifySide{Path: "/same"}, filersync.VerifySide{Path: "/same"})
		wantVerifyReport(t, rep, filersync.VerifyReport{Compared: n})
	})

	// Each case builds the same small tree under /c/<name> on both sides,
	// then changes one side, and verifies only that tree.
	for _, tc := range []struct {
		name   string
		change func(a, b *verifyBuilder, dir string)
		want   filersync.VerifyReport
	}{
		{"MissingFile", func(a, b *verifyBuilder, dir string) { a.file(dir+"/new", 0o644, []byte("only on A")) },
			filersync.VerifyReport{Missing: []string{"/new"}}},
		{"ExtraDir", func(a, b *verifyBuilder, dir string) {
			b.mkdir(dir+"/d/sub", 0o755)
			b.file(dir+"/d/sub/f", 0o644, []byte("x"))
		}, filersync.VerifyReport{Extra: []string{"/d/sub"}}},
		{"Size", func(a, b *verifyBuilder, dir string) { b.file(dir+"/d/small", 0o644, []byte("small file!")) },
			filersync.VerifyReport{Differ: []filersync.Difference{{Path: "/d/small", What: "size 10 != 11"}}}},
		{"ContentSameSize", func(a, b *verifyBuilder, dir string) {
			other := bytes.Clone(big)
			other[3*verifyChunk+7] ^= 1
			b.file(dir+"/big", 0o644, other)
			b.file(dir+"/d/small", 0o644, []byte("small File"))
		}, filersync.VerifyReport{Differ: []filersync.Difference{{Path: "/big", What: "content"}, {Path: "/d/small", What: "content"}}}},
		{"Mode", func(a, b *verifyBuilder, dir string) { b.chmod(dir+"/d/small", 0o600) },
			filersync.VerifyReport{Differ: []filersync.Difference{{Path: "/d/small", What: "mode 0644 != 0600"}}}},
		{"SymlinkTarget", func(a, b *verifyBuilder, dir string) {
			b.remove(dir + "/link")
			b.symlink(dir+"/link", "d/other")
		}, filersync.VerifyReport{Differ: []filersync.Difference{{Path: "/link", What: `symlink target "d/small" != "d/other"`}}}},
		{"Xattr", func(a, b *verifyBuilder, dir string) {
			b.setXattr(dir+"/d", "user.tag", "B")
			a.setXattr(dir+"/big", "user.only", "A")
		}, filersync.VerifyReport{Differ: []filersync.Difference{{Path: "/big", What: "xattr user.only missing"},
			{Path: "/d", What: "xattr user.tag value"}}}},
		{"Type", func(a, b *verifyBuilder, dir string) {
			b.remove(dir + "/big")
			b.mkdir(dir+"/big", 0o755)
		}, filersync.VerifyReport{Differ: []filersync.Difference{{Path: "/big", What: "type file != dir"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := "/c/" + tc.name
			both(func(w *verifyBuilder) { w.caseTree(dir, big) })
			tc.change(A, B, dir)
			rep := verify(t, filersync.VerifySide{Path: dir}, filersync.VerifySide{Path: dir})
			tc.want.Compared = 4 // the case tree's entries
			wantVerifyReport(t, rep, tc.want)
		})
	}

	t.Run("ExcludedSubtree", func(t *testing.T) {
		both(func(w *verifyBuilder) { w.caseTree("/ex", big) })
		A.file("/ex/d/skip/f", 0o644, []byte("A's"))
		B.file("/ex/d/skip/f", 0o644, []byte("B's!"))
		B.file("/ex/d/skip/g", 0o644, nil)
		B.file("/ex/tmp", 0o644, nil)
		rep := verify(t, filersync.VerifySide{Path: "/ex", Exclude: []string{"/ex/d/skip"}},
			filersync.VerifySide{Path: "/ex", Exclude: []string{"/ex/tmp"}})
		wantVerifyReport(t, rep, filersync.VerifyReport{Compared: 4})
		rep = verify(t, filersync.VerifySide{Path: "/ex"}, filersync.VerifySide{Path: "/ex"})
		wantVerifyReport(t, rep, filersync.VerifyReport{Extra: []string{"/d/skip/g", "/tmp"},
			Differ: []filersync.Difference{{Path: "/d/skip/f", What: "size 3 != 4"}}, Compared: 6})
	})

	t.Run("PathMapping", func(t *testing.T) {
		n := A.common("/x/tree", big)
		B.common("/y", big)
		A.chmod("/x/tree", 0o700) // the roots' own attributes are not compared
		rep := verify(t, filersync.VerifySide{Path: "/x/tree"}, filersync.VerifySide{Path: "/y"})
		wantVerifyReport(t, rep, filersync.VerifyReport{Compared: n})
		B.file("/y/d1/new", 0o644, nil)
		rep = verify(t, filersync.VerifySide{Path: "/x/tree"}, filersync.VerifySide{Path: "/y"})
		wantVerifyReport(t, rep, filersync.VerifyReport{Extra: []string{"/d1/new"}, Compared: n})
	})

	// The same bytes inline on one side and in one chunk on the other
	// (filers with other inline limits) are the same content.
	t.Run("InlineVsChunk", func(t *testing.T) {
		data := []byte("the same bytes, kept two ways")
		A.file("/iv/f", 0o644, data)
		B.mkdir("/iv", 0o755)
		ino := B.create("/iv/f", syscall.S_IFREG|0o644)
		if _, err := B.api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: ino, Size: uint64(len(data)),
			Chunks: []*filerpb.Chunk{B.upload(0, data)}, Replace: true}); err != nil {
			t.Fatal(err)
		}
		rep := verify(t, filersync.VerifySide{Path: "/iv"}, filersync.VerifySide{Path: "/iv"})
		wantVerifyReport(t, rep, filersync.VerifyReport{Compared: 1})
		data[0] = 'T'
		A.file("/iv/f", 0o644, data)
		rep = verify(t, filersync.VerifySide{Path: "/iv"}, filersync.VerifySide{Path: "/iv"})
		wantVerifyReport(t, rep, filersync.VerifyReport{Differ: []filersync.Difference{{Path: "/f", What: "content"}}, Compared: 1})
	})

	t.Run("FilerUnreachable", func(t *testing.T) {
		fc, err := client.NewFilerClient(client.FilerClientConfig{Address: fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t))})
		if err != nil {
			t.Fatal(err)
		}
		defer fc.Close()
		_, err = filersync.Verify(ctx, filersync.VerifySide{Filer: A.api, Path: "/same"}, filersync.VerifySide{Filer: fc.API()},
			filersync.VerifyOptions{})
		if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "side B") {
			t.Fatalf("Verify against a filer that is not there: %v, want side B and %v", err, client.ErrUnavailable)
		}
	})
}

func wantVerifyReport(t *testing.T, got, want filersync.VerifyReport) {
	t.Helper()
	if !slices.Equal(got.Missing, want.Missing) || !slices.Equal(got.Extra, want.Extra) ||
		!slices.Equal(got.Differ, want.Differ) || got.Compared != want.Compared {
		t.Errorf("report\n\tmissing %q\n\textra %q\n\tdiffer %q\n\tcompared %d\nwant\n\tmissing %q\n\textra %q\n\tdiffer %q\n\tcompared %d",
			got.Missing, got.Extra, got.Differ, got.Compared, want.Missing, want.Extra, want.Differ, want.Compared)
	}
	if got.Clean() != (len(want.Missing)+len(want.Extra)+len(want.Differ) == 0) {
		t.Errorf("Clean() = %v", got.Clean())
	}
}

// verifyBuilder makes entries in one cluster's namespace through its
// filer's gRPC API, by absolute path.
type verifyBuilder struct {
	t     *testing.T
	ctx   context.Context
	api   filerpb.FilerClient
	blobs *client.Cluster
}

func newVerifyBuilder(ctx context.Context, t *testing.T, c *cluster.Cluster) *verifyBuilder {
	fc := c.FilerClient()
	blobs := client.NewClusterVia(client.NewFilerVolumes(fc, 0), client.NewBlobClient(client.BlobClientConfig{}))
	t.Cleanup(func() { blobs.Close() })
	return &verifyBuilder{t: t, ctx: ctx, api: fc.API(), blobs: blobs}
}

// common builds a tree of every kind of entry under root (made with its
// parents) and returns how many entries are below root. Built twice, on
// two clusters, it verifies clean.
func (w *verifyBuilder) common(root string, big []byte) int {
	w.mkdir(root, 0o755)
	w.file(root+"/empty", 0o644, nil)
	w.file(root+"/inline", 0o640, []byte("inline content"))
	w.file(root+"/big", 0o644, big)
	w.overwrite(root+"/big", verifyChunk-20, []byte("bytes written over two chunks' boundary, newest wins"))
	w.sparse(root+"/sparse", 1<<30)
	w.mkdir(root+"/d1/d2/d3", 0o750)
	for i := range 30 {
		w.file(fmt.Sprintf("%s/d1/f%02d", root, i), 0o644, []byte(fmt.Sprintf("file %d", i)))
	}
	w.file(root+"/d1/d2/d3/deep", 0o600, big[:verifyChunk+10])
	w.symlink(root+"/d1/link", "../inline")
	w.link(root+"/inline", root+"/d1/d2/hardlink")
	w.create(root+"/fifo", syscall.S_IFIFO|0o644)
	w.chown(root+"/d1/d2", 1000, 100)
	w.setXattr(root+"/inline", "user.a", "1")
	w.setXattr(root+"/inline", "user.b", "")
	w.setXattr(root+"/d1", "user.dir", "yes")
	return 6 + 32 + 2 + 1 // below root, d1, d2, d3
}

// caseTree builds the tree every case starts from.
func (w *verifyBuilder) caseTree(root string, big []byte) {
	w.mkdir(root+"/d", 0o755)
	w.file(root+"/d/small", 0o644, []byte("small file"))
	w.file(root+"/big", 0o644, big)
	w.symlink(root+"/link", "d/small")
	w.setXattr(root+"/d", "user.tag", "A")
}

func (w *verifyBuilder) fatal(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf(format, args...)
}

// lookup returns the attributes of the entry at p.
func (w *verifyBuilder) lookup(p string) *filerpb.Attr {
	w.t.Helper()
	a := &filerpb.Attr{Inode: 1, Mode: syscall.S_IFDIR}
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		r, err := w.api.Lookup(w.ctx, &filerpb.LookupRequest{Parent: a.Inode, Name: name})
		if err != nil {
			w.fatal("lookup %s: %v", p, err)
		}
		a = r.Attr
	}
	return a
}

// mkdir makes directory p and its missing parents (mode 0755).
func (w *verifyBuilder) mkdir(p string, mode uint32) uint64 {
	w.t.Helper()
	ino, cur := uint64(1), "/"
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		cur = path.Join(cur, name)
		m := uint32(0o755)
		if cur == path.Clean(p) {
			m = mode
		}
		r, err := w.api.Mkdir(w.ctx, &filerpb.MkdirRequest{Parent: ino, Name: name, Mode: m})
		if client.PosixErrno(err) == "EEXIST" {
			r, err = w.api.Lookup(w.ctx, &filerpb.LookupRequest{Parent: ino, Name: name})
		}
		if err != nil {
			w.fatal("mkdir %s: %v", cur, err)
		}
		ino = r.Attr.Inode
	}
	return ino
}

// create makes an entry of mode (type bits included) at p.
func (w *verifyBuilder) create(p string, mode uint32) uint64 {
	w.t.Helper()
	parent := w.mkdir(path.Dir(p), 0o755)
	r, err := w.api.Create(w.ctx, &filerpb.CreateRequest{Parent: parent, Name: path.Base(p), Mode: mode})
	if err != nil {
		w.fatal("create %s: %v", p, err)
	}
	return r.Attr.Inode
}

// file makes (or rewrites) the regular file p holding data: inline when
// it is small, else chunks of verifyChunk bytes.
func (w *verifyBuilder) file(p string, mode uint32, data []byte) {
	w.t.Helper()
	ino := w.create(p, syscall.S_IFREG|mode)
	req := &filerpb.CommitChunksRequest{Inode: ino, Size: uint64(len(data)), Replace: true}
	if len(data) <= 1024 {
		req.Inline = data
	} else {
		for off := 0; off < len(data); off += verifyChunk {
			req.Chunks = append(req.Chunks, w.upload(int64(off), data[off:min(off+verifyChunk, len(data))]))
		}
	}
	if _, err := w.api.CommitChunks(w.ctx, req); err != nil {
		w.fatal("commit %s: %v", p, err)
	}
}

// overwrite writes data at off of file p as one more chunk.
func (w *verifyBuilder) overwrite(p string, off int64, data []byte) {
	w.t.Helper()
	ino := w.lookup(p).Inode
	if _, err := w.api.CommitChunks(w.ctx, &filerpb.CommitChunksRequest{Inode: ino,
		Chunks: []*filerpb.Chunk{w.upload(off, data)}}); err != nil {
		w.fatal("overwrite %s: %v", p, err)
	}
}

func (w *verifyBuilder) upload(off int64, data []byte) *filerpb.Chunk {
	w.t.Helper()
	fid, res, err := w.blobs.Write(w.ctx, data, client.WriteOptions{})
	if err != nil {
		w.fatal("upload %d bytes: %v", len(data), err)
	}
	return &filerpb.Chunk{Offset: off, Size: int64(len(data)), FileId: fid, Etag: res.ETag, ModifiedNs: time.Now().UnixNano()}
}

// sparse makes p a file of size bytes with no content (all a hole).
func (w *verifyBuilder) sparse(p string, size uint64) {
	w.t.Helper()
	ino := w.create(p, syscall.S_IFREG|0o644)
	if _, err := w.api.SetAttr(w.ctx, &filerpb.SetAttrRequest{Inode: ino, Size: &size}); err != nil {
		w.fatal("truncate %s: %v", p, err)
	}
}

func (w *verifyBuilder) symlink(p, target string) {
	w.t.Helper()
	parent := w.mkdir(path.Dir(p), 0o755)
	if _, err := w.api.Symlink(w.ctx, &filerpb.SymlinkRequest{Parent: parent, Name: path.Base(p), Target: target}); err != nil {
		w.fatal("symlink %s: %v", p, err)
	}
}

func (w *verifyBuilder) link(old, p string) {
	w.t.Helper()
	ino := w.lookup(old).Inode
	parent := w.mkdir(path.Dir(p), 0o755)
	if _, err := w.api.Link(w.ctx, &filerpb.LinkRequest{Inode: ino, NewParent: parent, NewName: path.Base(p)}); err != nil {
		w.fatal("link %s %s: %v", old, p, err)
	}
}

// remove unlinks p (a file, a symlink or an empty directory).
func (w *verifyBuilder) remove(p string) {
	w.t.Helper()
	a := w.lookup(p)
	parent := w.lookup(path.Dir(p)).Inode
	var err error
	if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		_, err = w.api.Rmdir(w.ctx, &filerpb.RmdirRequest{Parent: parent, Name: path.Base(p)})
	} else {
		_, err = w.api.Unlink(w.ctx, &filerpb.UnlinkRequest{Parent: parent, Name: path.Base(p)})
	}
	if err != nil {
		w.fatal("remove %s: %v", p, err)
	}
}

func (w *verifyBuilder) chmod(p string, perm uint32) {
	w.t.Helper()
	if _, err := w.api.SetAttr(w.ctx, &filerpb.SetAttrRequest{Inode: w.lookup(p).Inode, Mode: &perm}); err != nil {
		w.fatal("chmod %s: %v", p, err)
	}
}

func (w *verifyBuilder) chown(p string, uid, gid uint32) {
	w.t.Helper()
	if _, err := w.api.SetAttr(w.ctx, &filerpb.SetAttrRequest{Inode: w.lookup(p).Inode, Uid: &uid, Gid: &gid}); err != nil {
		w.fatal("chown %s: %v", p, err)
	}
}

func (w *verifyBuilder) setXattr(p, name, value string) {
	w.t.Helper()
	if _, err := w.api.SetXattr(w.ctx, &filerpb.SetXattrRequest{Inode: w.lookup(p).Inode, Name: name, Value: []byte(value)}); err != nil {
		w.fatal("setxattr %s %s: %v", p, name, err)
	}
}
