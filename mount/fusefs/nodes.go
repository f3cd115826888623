package fusefs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kelpfs/kelp/mount"
)

func (r *rawFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	start, parent := r.guard.start(), r.ino(h.NodeId)
	a, errno := r.fs.Lookup(opCtx(h), parent, name)
	if errno == syscall.ENOENT {
		// A negative entry: the kernel may remember the name is absent
		// (another client's create invalidates it through the watcher).
		r.fillNegative(start, parent, name, out)
		return fuse.OK
	}
	if errno != 0 {
		return status(errno)
	}
	r.fillEntry(start, parent, name, &a, out)
	return fuse.OK
}

// Forget has nothing to drop: node ids are inode numbers.
func (r *rawFS) Forget(nodeid, nlookup uint64) {}

func (r *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	a, errno := r.fs.GetAttr(opCtx(&in.InHeader), r.ino(in.NodeId))
	if errno != 0 {
		return status(errno)
	}
	r.fillAttrOut(&a, out)
	return fuse.OK
}

func (r *rawFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	var req mount.SetAttrIn
	if m, ok := in.GetMode(); ok {
		mode := m & 0o7777
		req.Mode = &mode
	}
	if u, ok := in.GetUID(); ok {
		req.Uid = &u
	}
	if g, ok := in.GetGID(); ok {
		req.Gid = &g
	}
	if s, ok := in.GetSize(); ok {
		req.Size = &s
	}
	if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		req.AtimeNow = true
	} else if in.Valid&fuse.FATTR_ATIME != 0 {
		t := int64(in.Atime)*1e9 + int64(in.Atimensec)
		req.Atime = &t
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		req.MtimeNow = true
	} else if in.Valid&fuse.FATTR_MTIME != 0 {
		t := int64(in.Mtime)*1e9 + int64(in.Mtimensec)
		req.Mtime = &t
	}
	a, errno := r.fs.SetAttr(opCtx(&in.InHeader), r.ino(in.NodeId), req)
	if errno != 0 {
		return status(errno)
	}
	r.fillAttrOut(&a, out)
	return fuse.OK
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	start := r.guard.start()
	a, errno := r.fs.Mknod(opCtx(&in.InHeader), caller(&in.InHeader), r.ino(in.NodeId), name, in.Mode, in.Umask, in.Rdev)
	if errno != 0 {
		return status(errno)
	}
	r.fillEntry(start, r.ino(in.NodeId), name, &a, out)
	return fuse.OK
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	start := r.guard.start()
	a, errno := r.fs.Mkdir(opCtx(&in.InHeader), caller(&in.InHeader), r.ino(in.NodeId), name, in.Mode, in.Umask)
	if errno != 0 {
		return status(errno)
	}
	r.fillEntry(start, r.ino(in.NodeId), name, &a, out)
	return fuse.OK
}

func (r *rawFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return status(r.fs.Unlink(opCtx(h), r.ino(h.NodeId), name))
}

func (r *rawFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return status(r.fs.Rmdir(opCtx(h), r.ino(h.NodeId), name))
}

func (r *rawFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return status(r.fs.Rename(opCtx(&in.InHeader), r.ino(in.NodeId), oldName, r.ino(in.Newdir), newName, in.Flags))
}

func (r *rawFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	start := r.guard.start()
	a, errno := r.fs.Link(opCtx(&in.InHeader), r.ino(in.Oldnodeid), r.ino(in.NodeId), name)
	if errno != 0 {
		return status(errno)
	}
	r.fillEntry(start, r.ino(in.NodeId), name, &a, out)
	return fuse.OK
}

func (r *rawFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	start := r.guard.start()
	a, errno := r.fs.Symlink(opCtx(h), caller(h), r.ino(h.NodeId), name, target)
	if errno != 0 {
		return status(errno)
	}
	r.fillEntry(start, r.ino(h.NodeId), name, &a, out)
	return fuse.OK
}

func (r *rawFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	t, errno := r.fs.Readlink(opCtx(h), r.ino(h.NodeId))
	if errno != 0 {
		return nil, status(errno)
	}
	return []byte(t), fuse.OK
}

// Access is checked by the kernel (default_permissions); reaching here
// means it passed.
func (r *rawFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status { return fuse.OK }

func (r *rawFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	s, errno := r.fs.StatFs(opCtx(h))
	if errno != 0 {
		return status(errno)
	}
	bs := s.BlockSize
	if bs == 0 {
		bs = 4096
	}
	out.Bsize = uint32(bs)
	out.Frsize = uint32(bs)
	out.Blocks = s.TotalBytes / bs
	out.Bfree = s.FreeBytes / bs
	out.Bavail = out.Bfree
	out.Files = s.Files
	out.Ffree = 1 << 40
	out.NameLen = 255
	return fuse.OK
}
