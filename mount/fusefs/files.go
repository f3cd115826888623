package fusefs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kelpfs/kelp/mount"
)

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	start := r.guard.start()
	a, fh, mode, errno := r.fs.Create(opCtx(&in.InHeader), caller(&in.InHeader), r.ino(in.NodeId), name, in.Mode, in.Umask, in.Flags)
	if errno != 0 {
		return status(errno)
	}
	r.fillEntry(start, r.ino(in.NodeId), name, &a, &out.EntryOut)
	out.Fh = fh
	setOpenFlags(&out.OpenOut, in.Flags, mode)
	return fuse.OK
}

// setOpenFlags tells the kernel how to do a handle's IO: passthrough to
// a backing file (with nothing the kernel refuses beside it), direct,
// or through its page cache; the cache is kept if still current.
func setOpenFlags(out *fuse.OpenOut, flags uint32, mode mount.OpenMode) {
	switch {
	case mode.BackingID != 0:
		out.OpenFlags |= fuse.FOPEN_PASSTHROUGH
		out.BackingID = mode.BackingID
		if mode.DirectIO {
			out.OpenFlags |= fuse.FOPEN_DIRECT_IO
		}
		return
	case flags&syscall.O_DIRECT != 0, mode.DirectIO:
		out.OpenFlags |= fuse.FOPEN_DIRECT_IO
	}
	if mode.KeepCache {
		out.OpenFlags |= fuse.FOPEN_KEEP_CACHE
	}
}

func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fh, mode, errno := r.fs.Open(opCtx(&in.InHeader), r.ino(in.NodeId), in.Flags)
	if errno != 0 {
		return status(errno)
	}
	out.Fh = fh
	setOpenFlags(out, in.Flags, mode)
	return fuse.OK
}

func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	ctx, done := waitCtx(&in.InHeader, cancel)
	defer done()
	n, errno := r.fs.Read(ctx, in.Fh, buf[:min(len(buf), int(in.Size))], int64(in.Offset))
	if errno != 0 {
		return nil, status(errno)
	}
	return fuse.ReadResultData(buf[:n]), fuse.OK
}

func (r *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	ctx, done := waitCtx(&in.InHeader, cancel)
	defer done()
	n, errno := r.fs.Write(ctx, in.Fh, data, int64(in.Offset))
	return uint32(n), status(errno)
}

func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return status(r.fs.Flush(opCtx(&in.InHeader), in.Fh, in.LockOwner))
}

func (r *rawFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return status(r.fs.Fsync(opCtx(&in.InHeader), in.Fh))
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.fs.Release(in.Fh, in.LockOwner, in.ReleaseFlags&fuse.FUSE_RELEASE_FLOCK_UNLOCK != 0)
}

func (r *rawFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	off, errno := r.fs.Lseek(opCtx(&in.InHeader), in.Fh, int64(in.Offset), in.Whence)
	if errno != 0 {
		return status(errno)
	}
	out.Offset = uint64(off)
	return fuse.OK
}

func (r *rawFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	ctx, done := waitCtx(&in.InHeader, cancel)
	defer done()
	return status(r.fs.Fallocate(ctx, in.Fh, in.Mode, int64(in.Offset), int64(in.Length)))
}

func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	ctx, done := waitCtx(&in.InHeader, cancel)
	defer done()
	n, errno := r.fs.CopyFileRange(ctx, in.FhIn, int64(in.OffIn), in.FhOut, int64(in.OffOut),
		int64(min(in.Len, 1<<30)))
	if errno != 0 && n == 0 {
		return 0, status(errno)
	}
	return uint32(n), fuse.OK
}

// RegisterBacking hands fd to the kernel as a passthrough backing file.
func (r *rawFS) RegisterBacking(fd int) (int32, syscall.Errno) {
	return r.server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
}

// UnregisterBacking gives a backing id back.
func (r *rawFS) UnregisterBacking(id int32) syscall.Errno {
	return r.server.UnregisterBackingFd(id)
}
