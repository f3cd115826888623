package main

import (
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// nullFS is a root directory holding files f0 .. f<files-1>, 4096 bytes
// each, answered from constants. The root's attributes stay cached for an
// hour, so a path walk costs no request; the files' expire at once.
type nullFS struct {
	fuse.RawFileSystem
	files    int
	uid, gid uint32
}

func newNullFS(files int) *nullFS {
	return &nullFS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		files:         files,
		uid:           uint32(syscall.Getuid()),
		gid:           uint32(syscall.Getgid()),
	}
}

func (n *nullFS) String() string { return "statfloor" }

// node is the node id of file i; the root is 1.
func node(i int) uint64 { return uint64(i) + 2 }

func (n *nullFS) index(name string) (int, bool) {
	if len(name) < 2 || name[0] != 'f' {
		return 0, false
	}
	i, err := strconv.Atoi(name[1:])
	if err != nil || i < 0 || i >= n.files || strconv.Itoa(i) != name[1:] {
		return 0, false
	}
	return i, true
}

func (n *nullFS) attr(id uint64, a *fuse.Attr) bool {
	a.Ino = id
	a.Owner = fuse.Owner{Uid: n.uid, Gid: n.gid}
	a.Mtime, a.Ctime, a.Atime = 1e9, 1e9, 1e9
	switch {
	case id == fuse.FUSE_ROOT_ID:
		a.Mode = syscall.S_IFDIR | 0o755
		a.Nlink = 2
	case id >= node(0) && id < node(n.files):
		a.Mode = syscall.S_IFREG | 0o644
		a.Nlink = 1
		a.Size = 4096
		a.Blocks = 8
	default:
		return false
	}
	return true
}

func (n *nullFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if h.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	i, ok := n.index(name)
	if !ok {
		return fuse.ENOENT
	}
	out.NodeId = node(i)
	out.Generation = 1
	out.SetEntryTimeout(time.Hour)
	n.attr(out.NodeId, &out.Attr)
	return fuse.OK
}

func (n *nullFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !n.attr(in.NodeId, &out.Attr) {
		return fuse.ENOENT
	}
	if in.NodeId == fuse.FUSE_ROOT_ID {
		out.SetTimeout(time.Hour)
	}
	return fuse.OK
}

func (n *nullFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	return fuse.OK
}
