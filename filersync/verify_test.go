package filersync

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// These tests run Verify against fakeFiler, an in-memory namespace behind
// the part of the filer's gRPC API Verify uses; the whole-cluster tests
// are in integration/filersync_verify_test.go.

func TestVerifyContent(t *testing.T) {
	blob := []byte("hello, world")
	etag := needle.ETag(blob)
	ch := func(off, size int64, tag string, mod int64) *filerpb.Chunk {
		return &filerpb.Chunk{Offset: off, Size: size, FileId: fmt.Sprintf("1,%x", off+1), Etag: tag, ModifiedNs: mod}
	}
	type side struct {
		size   uint64
		chunks []*filerpb.Chunk
		inline []byte
	}
	for _, tc := range []struct {
		name string
		a, b side
		same bool
		why  string
	}{
		{"same chunks", side{20, []*filerpb.Chunk{ch(0, 10, "e1", 1), ch(10, 10, "e2", 2)}, nil},
			side{20, []*filerpb.Chunk{ch(0, 10, "e1", 5), ch(10, 10, "e2", 6)}, nil}, true, ""},
		{"other etag", side{20, []*filerpb.Chunk{ch(0, 10, "e1", 1), ch(10, 10, "e2", 2)}, nil},
			side{20, []*filerpb.Chunk{ch(0, 10, "e1", 1), ch(10, 10, "e3", 2)}, nil}, false, "content"},
		{"other place", side{20, []*filerpb.Chunk{ch(0, 10, "e1", 1)}, nil},
			side{20, []*filerpb.Chunk{ch(5, 10, "e1", 1)}, nil}, false, "content"},
		{"hole vs none", side{20, []*filerpb.Chunk{ch(0, 10, "e1", 1)}, nil},
			side{20, nil, nil}, false, "content"},
		// A newer chunk hides part of an older one: the list order and
		// the hidden part do not matter, what is visible does.
		{"overlap resolved", side{10, []*filerpb.Chunk{ch(0, 10, "e1", 1), ch(4, 2, "e2", 2)}, nil},
			side{10, []*filerpb.Chunk{ch(4, 2, "e2", 2), ch(0, 10, "e1", 1)}, nil}, true, ""},
		{"overlap newest wins", side{10, []*filerpb.Chunk{ch(0, 10, "e1", 1), ch(4, 2, "e2", 2)}, nil},
			side{10, []*filerpb.Chunk{ch(0, 10, "e1", 3), ch(4, 2, "e2", 2)}, nil}, false, "content"},
		// The same blob listed as two adjacent chunks (a split) shows the
		// same bytes as one chunk.
		{"split chunk", side{10, []*filerpb.Chunk{ch(0, 10, "e1", 1)}, nil},
			side{10, []*filerpb.Chunk{ch(0, 10, "e1", 1), ch(0, 4, "e1", 2)}, nil}, true, ""},
		{"past size ignored", side{10, []*filerpb.Chunk{ch(0, 10, "e1", 1)}, nil},
			side{10, []*filerpb.Chunk{ch(0, 10, "e1", 1), ch(10, 5, "e9", 2)}, nil}, true, ""},
		{"no etag", side{10, []*filerpb.Chunk{ch(0, 10, "", 1)}, nil},
			side{10, []*filerpb.Chunk{ch(0, 10, "", 1)}, nil}, false, "content unverifiable (chunk without ETag)"},
		{"inline same", side{3, nil, []byte("abc")}, side{3, nil, []byte("abc")}, true, ""},
		{"inline differs", side{3, nil, []byte("abc")}, side{3, nil, []byte("abd")}, false, "content"},
		{"inline vs zeros", side{5, nil, []byte("abc")}, side{5, nil, []byte("abc\x00\x00")}, true, ""},
		{"inline vs chunk", side{uint64(len(blob)), nil, blob},
			side{uint64(len(blob)), []*filerpb.Chunk{ch(0, int64(len(blob)), etag, 1)}, nil}, true, ""},
		{"chunk vs inline other bytes", side{uint64(len(blob)), []*filerpb.Chunk{ch(0, int64(len(blob)), etag, 1)}, nil},
			side{uint64(len(blob)), nil, []byte("hello, World")}, false, "content"},
		{"empty inline vs no chunks", side{0, nil, nil}, side{0, nil, []byte{}}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := contentOf(tc.a.size, tc.a.chunks, tc.a.inline)
			b := contentOf(tc.b.size, tc.b.chunks, tc.b.inline)
			same, why := sameContent(a, b)
			if same != tc.same || why != tc.why {
				t.Fatalf("sameContent = %v %q, want %v %q (spans %+v / %+v)", same, why, tc.same, tc.why, a.spans, b.spans)
			}
		})
	}
}

// TestVerifyWalk compares two trees with many entries per directory (more
// than a ReadDir page) and every kind of difference.
func TestVerifyWalk(t *testing.T) {
	a, b := newFakeFiler(7), newFakeFiler(5)
	for _, f := range []*fakeFiler{a, b} {
		for d := range 4 {
			for s := range 3 {
				dir := fmt.Sprintf("/d%d/s%d", d, s)
				f.mkdirAll(dir, 0o755)
				for i := range 20 {
					f.file(fmt.Sprintf("%s/f%02d", dir, i), 0o644, []byte(fmt.Sprintf("content %d %d %d", d, s, i)))
				}
			}
		}
		f.file("/chunked", 0o644, nil, &filerpb.Chunk{Offset: 0, Size: 100, Etag: "e1", ModifiedNs: 1})
		f.symlink("/link", "d0/s0/f00")
		f.setXattr("/d1", "user.tag", "x")
		f.create("/dev", syscall.S_IFCHR|0o600, 0x0103)
	}
	// Differences.
	a.file("/d0/s1/only-a", 0o644, []byte("a"))
	a.mkdirAll("/d2/tree-a/sub", 0o755)
	b.file("/d0/s2/only-b", 0o644, []byte("b"))
	b.file("/d3/s0/f05", 0o644, []byte("longer content"))
	b.file("/d3/s0/f06", 0o644, []byte("content 3 0 7"))
	b.file("/chunked", 0o644, nil, &filerpb.Chunk{Offset: 0, Size: 100, Etag: "e2", ModifiedNs: 1})
	b.symlink("/link", "d0/s0/f01")
	b.setXattr("/d1", "user.tag", "y")
	b.setXattr("/d1", "user.more", "z")
	b.chmod("/d2/s2/f19", 0o600)
	b.chown("/d1/s1", 7, 8)
	b.create("/dev", syscall.S_IFCHR|0o600, 0x0104)
	b.remove("/d3/s2/f10")
	b.mkdirAll("/d3/s2/f10", 0o755)

	rep, err := Verify(context.Background(), VerifySide{Filer: a}, VerifySide{Filer: b, Path: "/"}, VerifyOptions{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := VerifyReport{
		Missing: []string{"/d0/s1/only-a", "/d2/tree-a"},
		Extra:   []string{"/d0/s2/only-b"},
		Differ: []Difference{
			{"/chunked", "content"},
			{"/d1", "xattr user.more extra"},
			{"/d1", "xattr user.tag value"},
			{"/d1/s1", "uid 0 != 7"},
			{"/d1/s1", "gid 0 != 8"},
			{"/d2/s2/f19", "mode 0644 != 0600"},
			{"/d3/s0/f05", "size 13 != 14"},
			{"/d3/s0/f06", "content"},
			{"/d3/s2/f10", "type file != dir"},
			{"/dev", "rdev 259 != 260"},
			{"/link", `symlink target "d0/s0/f00" != "d0/s0/f01"`},
		},
		Compared: 4 + 4*3 + 4*3*20 + 3,
	}
	checkReport(t, rep, want)
	if got := max(a.maxReadDirs.Load(), b.maxReadDirs.Load()); got > 3 || got < 2 {
		t.Errorf("%d directories listed at once on one side, want 2 or 3", got)
	}
}

// TestVerifyPaths maps A's /x onto B's /y and leaves excluded subtrees out
// on both sides.
func TestVerifyPaths(t *testing.T) {
	a, b := newFakeFiler(0), newFakeFiler(0)
	a.mkdirAll("/x/keep", 0o755)
	a.file("/x/keep/f", 0o644, []byte("same"))
	a.file("/x/skip/f", 0o644, []byte("a"))
	a.file("/x/other/g", 0o644, []byte("a"))
	a.file("/elsewhere", 0o644, nil)
	a.chmod("/x", 0o700) // the roots' own attributes are not compared
	b.mkdirAll("/y/keep", 0o755)
	b.file("/y/keep/f", 0o644, []byte("same"))
	b.file("/y/skip/f", 0o644, []byte("b"))
	b.file("/y/skip/g", 0o644, []byte("b"))
	b.file("/y/other/g", 0o644, []byte("b"))
	b.file("/y/tmp", 0o644, []byte("b"))
	ctx := context.Background()

	rep, err := Verify(ctx, VerifySide{Filer: a, Path: "/x/", Exclude: []string{"/x/skip", "/x/nothing"}},
		VerifySide{Filer: b, Path: "/y", Exclude: []string{"/y/other", "/y/tmp"}}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, VerifyReport{Compared: 2})

	rep, err = Verify(ctx, VerifySide{Filer: a, Path: "/x"}, VerifySide{Filer: b, Path: "/y"}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, VerifyReport{Extra: []string{"/skip/g", "/tmp"},
		Differ:   []Difference{{"/other/g", "content"}, {"/skip/f", "content"}},
		Compared: 6})

	// An exclude above the root leaves nothing to compare.
	rep, err = Verify(ctx, VerifySide{Filer: a, Path: "/x", Exclude: []string{"/"}}, VerifySide{Filer: b, Path: "/y"}, VerifyOptions{})
	if err != nil || !rep.Clean() || rep.Compared != 0 {
		t.Fatalf("whole tree excluded: %+v, %v", rep, err)
	}

	for _, bad := range []struct {
		a, b VerifySide
		want error
	}{
		{VerifySide{Filer: a, Path: "/x/nope"}, VerifySide{Filer: b}, client.ErrNotFound},
		{VerifySide{Filer: a, Path: "/elsewhere"}, VerifySide{Filer: b}, client.ErrInvalid},
		{VerifySide{Filer: a, Path: "x"}, VerifySide{Filer: b}, client.ErrInvalid},
		{VerifySide{Filer: a, Exclude: []string{"rel"}}, VerifySide{Filer: b}, client.ErrInvalid},
		{VerifySide{Filer: a}, VerifySide{}, client.ErrInvalid},
	} {
		if _, err := Verify(ctx, bad.a, bad.b, VerifyOptions{}); !errors.Is(err, bad.want) {
			t.Errorf("Verify(%q, %q): %v, want %v", bad.a.Path, bad.b.Path, err, bad.want)
		}
	}
}

// TestVerifyVanished: names that vanish between the listing and the
// comparison, and a directory that vanishes while it is listed, count as
// missing on their side, not as errors.
func TestVerifyVanished(t *testing.T) {
	a, b := newFakeFiler(2), newFakeFiler(2)
	for _, f := range []*fakeFiler{a, b} {
		f.file("/f", 0o644, []byte("x"))
		f.symlink("/l", "t")
		f.mkdirAll("/d", 0o755)
		for i := range 5 {
			f.file(fmt.Sprintf("/d/%d", i), 0o644, nil)
		}
		f.file("/both", 0o644, nil)
	}
	b.hook = func(f *fakeFiler, method, p string) {
		if method == "GetChunks" && p == "/f" || method == "Readlink" && p == "/l" {
			f.remove(p)
		}
	}
	var listings atomic.Int32
	a.hook = func(f *fakeFiler, method, p string) {
		switch {
		case method == "ReadDir" && p == "/d" && listings.Add(1) == 2:
			// After the first page of /d: remove the directory.
			for i := range 5 {
				f.remove(fmt.Sprintf("/d/%d", i))
			}
			f.remove("/d")
		case method == "GetChunks" && p == "/both":
			f.remove(p)
			b.remove(p)
		}
	}
	rep, err := Verify(context.Background(), VerifySide{Filer: a}, VerifySide{Filer: b}, VerifyOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, VerifyReport{Missing: []string{"/f", "/l"}, Extra: []string{"/d"}, Compared: 1})
}

// TestVerifyFilerDown: an error that is not about one entry stops the walk
// and says where it happened.
func TestVerifyFilerDown(t *testing.T) {
	a, b := newFakeFiler(0), newFakeFiler(0)
	for _, f := range []*fakeFiler{a, b} {
		for i := range 30 {
			f.mkdirAll(fmt.Sprintf("/d%02d/e", i), 0o755)
		}
	}
	b.hook = func(f *fakeFiler, method, p string) {
		if method == "ReadDir" && p == "/d17/e" {
			f.down.Store(true)
		}
	}
	_, err := Verify(context.Background(), VerifySide{Filer: a}, VerifySide{Filer: b}, VerifyOptions{Concurrency: 4})
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "side B") {
		t.Fatalf("Verify with B down: %v, want side B and %v", err, client.ErrUnavailable)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, VerifySide{Filer: a}, VerifySide{Filer: a}, VerifyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with a cancelled context: %v", err)
	}
}

func checkReport(t *testing.T, got, want VerifyReport) {
	t.Helper()
	if !slices.Equal(got.Missing, want.Missing) {
		t.Errorf("Missing = %q, want %q", got.Missing, want.Missing)
	}
	if !slices.Equal(got.Extra, want.Extra) {
		t.Errorf("Extra = %q, want %q", got.Extra, want.Extra)
	}
	if !slices.Equal(got.Differ, want.Differ) {
		t.Errorf("Differ =\n%s\nwant\n%s", fmtDiffs(got.Differ), fmtDiffs(want.Differ))
	}
	if got.Compared != want.Compared {
		t.Errorf("Compared = %d, want %d", got.Compared, want.Compared)
	}
	if got.Clean() != want.Clean() {
		t.Errorf("Clean = %v, want %v", got.Clean(), want.Clean())
	}
}

func fmtDiffs(ds []Difference) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "\t%s: %s\n", d.Path, d.What)
	}
	return b.String()
}

// fakeFiler is an in-memory namespace answering the calls Verify makes
// (Lookup, GetAttr, ReadDir, GetChunks, Readlink, ListXattr, GetXattr) as
// the filer does; other calls panic (nil embedded interface).
type fakeFiler struct {
	filerpb.FilerClient

	pageMax int // ReadDir answers at most this many entries; 0 = no limit
	// hook runs at the start of each call with the path of its inode
	// (without the lock held).
	hook func(f *fakeFiler, method, path string)
	down atomic.Bool // every call fails with ErrUnavailable

	readDirs, maxReadDirs atomic.Int64

	mu    sync.Mutex
	nodes map[uint64]*fakeNode
	next  uint64
}

type fakeNode struct {
	attr     *filerpb.Attr
	parent   uint64
	name     string
	children map[string]uint64
	chunks   []*filerpb.Chunk
	inline   []byte
	target   string
	xattrs   map[string][]byte
}

func newFakeFiler(pageMax int) *fakeFiler {
	f := &fakeFiler{pageMax: pageMax, nodes: map[uint64]*fakeNode{}, next: rootInode + 1}
	f.nodes[rootInode] = &fakeNode{attr: &filerpb.Attr{Inode: rootInode, Mode: syscall.S_IFDIR | 0o755}, children: map[string]uint64{}}
	return f
}

func (f *fakeFiler) lookup(p string) *fakeNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookupLocked(p)
}

func (f *fakeFiler) lookupLocked(p string) *fakeNode {
	n := f.nodes[rootInode]
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		ino, ok := n.children[name]
		if !ok {
			return nil
		}
		n = f.nodes[ino]
	}
	return n
}

// create makes (or replaces the content of) the entry at p; its parent
// must exist.
func (f *fakeFiler) create(p string, mode, rdev uint32) *fakeNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := f.lookupLocked(path.Dir(p))
	if ino, ok := dir.children[path.Base(p)]; ok {
		n := f.nodes[ino]
		n.attr.Mode, n.attr.Rdev = mode, rdev
		return n
	}
	n := &fakeNode{attr: &filerpb.Attr{Inode: f.next, Mode: mode, Rdev: rdev}, parent: dir.attr.Inode, name: path.Base(p)}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.children = map[string]uint64{}
	}
	f.nodes[f.next] = n
	dir.children[n.name] = f.next
	f.next++
	return n
}

func (f *fakeFiler) mkdirAll(p string, mode uint32) {
	cur := "/"
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		cur = path.Join(cur, name)
		if f.lookup(cur) == nil {
			f.create(cur, syscall.S_IFDIR|mode, 0)
		}
	}
}

// file makes a regular file holding inline, or chunks when inline is nil
// (its size the end of the last chunk).
func (f *fakeFiler) file(p string, mode uint32, inline []byte, chunks ...*filerpb.Chunk) {
	f.mkdirAll(path.Dir(p), 0o755)
	n := f.create(p, syscall.S_IFREG|mode, 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	n.inline, n.chunks, n.attr.Size = inline, chunks, uint64(len(inline))
	for _, c := range chunks {
		n.attr.Size = max(n.attr.Size, uint64(c.Offset+c.Size))
	}
}

func (f *fakeFiler) symlink(p, target string) {
	n := f.create(p, syscall.S_IFLNK|0o777, 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	n.target, n.attr.Size = target, uint64(len(target))
}

func (f *fakeFiler) edit(p string, fn func(n *fakeNode)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.lookupLocked(p))
}

func (f *fakeFiler) setXattr(p, name, value string) {
	f.edit(p, func(n *fakeNode) {
		if n.xattrs == nil {
			n.xattrs = map[string][]byte{}
		}
		n.xattrs[name] = []byte(value)
	})
}

func (f *fakeFiler) chmod(p string, perm uint32) {
	f.edit(p, func(n *fakeNode) { n.attr.Mode = n.attr.Mode&syscall.S_IFMT | perm })
}

func (f *fakeFiler) chown(p string, uid, gid uint32) {
	f.edit(p, func(n *fakeNode) { n.attr.Uid, n.attr.Gid = uid, gid })
}

// remove unlinks the entry at p (a directory with whatever it holds).
func (f *fakeFiler) remove(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.lookupLocked(p)
	if n == nil {
		return
	}
	delete(f.nodes[n.parent].children, n.name)
	delete(f.nodes, n.attr.Inode)
}

func cloneAttr(a *filerpb.Attr) *filerpb.Attr { return proto.Clone(a).(*filerpb.Attr) }

// call runs the hook and finds inode ino. Its errors wrap the client's
// sentinels, as client.FilerClient's do.
func (f *fakeFiler) call(ctx context.Context, method string, ino uint64) (*fakeNode, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", method, err)
	}
	if f.hook != nil {
		f.mu.Lock()
		p := f.pathLocked(ino)
		f.mu.Unlock()
		f.hook(f, method, p)
	}
	if f.down.Load() {
		return nil, nil, fmt.Errorf("%s: %w", method, client.ErrUnavailable)
	}
	f.mu.Lock()
	n := f.nodes[ino]
	if n == nil {
		f.mu.Unlock()
		return nil, nil, fmt.Errorf("%s inode %d: %w", method, ino, client.ErrNotFound)
	}
	return n, f.mu.Unlock, nil
}

func (f *fakeFiler) pathLocked(ino uint64) string {
	var parts []string
	for n := f.nodes[ino]; n != nil && n.attr.Inode != rootInode; n = f.nodes[n.parent] {
		parts = append(parts, n.name)
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

func (f *fakeFiler) Lookup(ctx context.Context, in *filerpb.LookupRequest, _ ...grpc.CallOption) (*filerpb.EntryResponse, error) {
	n, unlock, err := f.call(ctx, "Lookup", in.Parent)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ino, ok := n.children[in.Name]
	if !ok {
		return nil, fmt.Errorf("lookup %q: %w", in.Name, client.ErrNotFound)
	}
	return &filerpb.EntryResponse{Name: in.Name, Attr: cloneAttr(f.nodes[ino].attr)}, nil
}

func (f *fakeFiler) GetAttr(ctx context.Context, in *filerpb.GetAttrRequest, _ ...grpc.CallOption) (*filerpb.AttrResponse, error) {
	n, unlock, err := f.call(ctx, "GetAttr", in.Inode)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return &filerpb.AttrResponse{Attr: cloneAttr(n.attr)}, nil
}

func (f *fakeFiler) ReadDir(ctx context.Context, in *filerpb.ReadDirRequest, _ ...grpc.CallOption) (*filerpb.ReadDirResponse, error) {
	cur := f.readDirs.Add(1)
	defer f.readDirs.Add(-1)
	for m := f.maxReadDirs.Load(); cur > m && !f.maxReadDirs.CompareAndSwap(m, cur); m = f.maxReadDirs.Load() {
	}
	time.Sleep(100 * time.Microsecond) // let listings overlap
	n, unlock, err := f.call(ctx, "ReadDir", in.Inode)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if n.children == nil {
		return nil, fmt.Errorf("readdir: %w", client.ErrInvalid)
	}
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		if name > in.After {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	limit := int(in.Limit)
	if f.pageMax > 0 && (limit == 0 || limit > f.pageMax) {
		limit = f.pageMax
	}
	resp := &filerpb.ReadDirResponse{}
	for _, name := range names {
		if limit > 0 && len(resp.Entries) == limit {
			return resp, nil
		}
		c := f.nodes[n.children[name]]
		e := &filerpb.DirEntry{Name: name, Inode: c.attr.Inode, Type: c.attr.Mode & syscall.S_IFMT}
		if in.WithAttrs {
			e.Attr = cloneAttr(c.attr)
		}
		resp.Entries = append(resp.Entries, e)
	}
	resp.Eof = true
	return resp, nil
}

func (f *fakeFiler) GetChunks(ctx context.Context, in *filerpb.GetChunksRequest, _ ...grpc.CallOption) (*filerpb.GetChunksResponse, error) {
	n, unlock, err := f.call(ctx, "GetChunks", in.Inode)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return &filerpb.GetChunksResponse{Attr: cloneAttr(n.attr), Chunks: n.chunks, Inline: n.inline}, nil
}

func (f *fakeFiler) Readlink(ctx context.Context, in *filerpb.ReadlinkRequest, _ ...grpc.CallOption) (*filerpb.ReadlinkResponse, error) {
	n, unlock, err := f.call(ctx, "Readlink", in.Inode)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return &filerpb.ReadlinkResponse{Target: n.target}, nil
}

func (f *fakeFiler) ListXattr(ctx context.Context, in *filerpb.ListXattrRequest, _ ...grpc.CallOption) (*filerpb.ListXattrResponse, error) {
	n, unlock, err := f.call(ctx, "ListXattr", in.Inode)
	if err != nil {
		return nil, err
	}
	defer unlock()
	resp := &filerpb.ListXattrResponse{}
	for name := range n.xattrs {
		resp.Names = append(resp.Names, name)
	}
	return resp, nil
}

func (f *fakeFiler) GetXattr(ctx context.Context, in *filerpb.GetXattrRequest, _ ...grpc.CallOption) (*filerpb.GetXattrResponse, error) {
	n, unlock, err := f.call(ctx, "GetXattr", in.Inode)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v, ok := n.xattrs[in.Name]
	if !ok {
		return nil, fmt.Errorf("getxattr %s: %w", in.Name, client.ErrNotFound)
	}
	return &filerpb.GetXattrResponse{Value: v}, nil
}
