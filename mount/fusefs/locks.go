package fusefs

import (
	"context"
	"math"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kelpfs/kelp/mount"
)

// Locks. With EnableLocks the kernel forwards fcntl record locks (F_GETLK,
// F_SETLK, F_SETLKW, and the OFD variants, as record locks owned by the
// open file) and flock(2) (as whole-file requests flagged FUSE_LK_FLOCK,
// owned by the open file) instead of keeping them itself; the mount
// takes them to the filer. The kernel answers an interrupted F_SETLKW or
// flock by restarting it (it turns our EINTR into ERESTARTSYS), so a
// blocked lock request honours an interrupt at once, unlike reads.

func (r *rawFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	req, errno := lockRequest(in)
	if errno != 0 {
		return status(errno)
	}
	held, conflict, errno := r.fs.GetLk(opCtx(&in.InHeader), r.ino(in.NodeId), req)
	if errno != 0 {
		return status(errno)
	}
	if !conflict {
		out.Lk = fuse.FileLock{Typ: syscall.F_UNLCK}
		return fuse.OK
	}
	out.Lk = fuse.FileLock{Start: uint64(held.Start), End: uint64(held.End), Typ: lockTypeOf(held.Type), Pid: held.Pid}
	return fuse.OK
}

func (r *rawFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	return r.setLk(cancel, in, false)
}

func (r *rawFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	return r.setLk(cancel, in, true)
}

func (r *rawFS) setLk(cancel <-chan struct{}, in *fuse.LkIn, wait bool) fuse.Status {
	req, errno := lockRequest(in)
	if errno != 0 {
		return status(errno)
	}
	var ctx context.Context = opCtx(&in.InHeader)
	if wait {
		ctx = &fuse.Context{Caller: in.Caller, Cancel: cancel}
	}
	return status(r.fs.SetLk(ctx, in.Fh, r.ino(in.NodeId), req, wait))
}

// lockRequest decodes the kernel's request. Its range is already checked
// (fcntl rejects a negative start or an overflowing length with EINVAL
// before we see it); an end beyond OFFSET_MAX in the wire's uint64 would
// come from a broken kernel, and is EINVAL too.
func lockRequest(in *fuse.LkIn) (mount.LockRequest, syscall.Errno) {
	req := mount.LockRequest{Kind: mount.LockFcntl, Owner: in.Owner, Pid: in.Lk.Pid}
	if in.LkFlags&fuse.FUSE_LK_FLOCK != 0 {
		req.Kind = mount.LockFlock
	}
	switch in.Lk.Typ {
	case syscall.F_RDLCK:
		req.Type = mount.LockShared
	case syscall.F_WRLCK:
		req.Type = mount.LockExclusive
	case syscall.F_UNLCK:
		req.Type = mount.LockUnlock
	default:
		return req, syscall.EINVAL
	}
	if in.Lk.Start > math.MaxInt64 || in.Lk.End > math.MaxInt64 || in.Lk.End < in.Lk.Start {
		return req, syscall.EINVAL
	}
	req.Start, req.End = int64(in.Lk.Start), int64(in.Lk.End)
	return req, 0
}

func lockTypeOf(t mount.LockType) uint32 {
	switch t {
	case mount.LockShared:
		return syscall.F_RDLCK
	case mount.LockExclusive:
		return syscall.F_WRLCK
	}
	return syscall.F_UNLCK
}
