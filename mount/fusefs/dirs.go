package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kelpfs/kelp/mount"
)

func (r *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fh, errno := r.fs.OpenDir(opCtx(&in.InHeader), r.ino(in.NodeId))
	if errno != 0 {
		return status(errno)
	}
	out.Fh = fh
	return fuse.OK
}

func (r *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return status(r.fs.ReadDir(opCtx(&in.InHeader), in.Fh, in.Offset, false, func(e mount.DirEntry) bool {
		return out.AddDirEntry(fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode, Off: e.Off})
	}))
}

func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	start, dir := r.guard.start(), r.ino(in.NodeId)
	return status(r.fs.ReadDir(opCtx(&in.InHeader), in.Fh, in.Offset, true, func(e mount.DirEntry) bool {
		eo := out.AddDirLookupEntry(fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode, Off: e.Off})
		if eo == nil {
			return false
		}
		if e.Attr != nil {
			r.fillEntry(start, dir, e.Name, e.Attr, eo)
		}
		return true
	}))
}

func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) { r.fs.ReleaseDir(in.Fh) }

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }
