package mount

import (
	"context"
	"syscall"

	"github.com/kelpfs/kelp/api/filerpb"
)

// Lookup finds name in directory parent.
func (fs *FS) Lookup(ctx context.Context, parent uint64, name string) (Attr, syscall.Errno) {
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Lookup(ctx, &filerpb.LookupRequest{Parent: parent, Name: name})
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	return fs.overlay(attrFromPB(resp.Attr)), 0
}

// GetAttr returns ino's attributes; a file with unflushed writes on this
// mount shows its local size and mtime.
func (fs *FS) GetAttr(ctx context.Context, ino uint64) (Attr, syscall.Errno) {
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.AttrResponse, error) {
		return fs.api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: ino})
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	return fs.overlay(attrFromPB(resp.Attr)), 0
}

// overlay lays this mount's unflushed size and mtime over a filer attr.
func (fs *FS) overlay(a Attr) Attr {
	if a.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return a
	}
	fs.mu.Lock()
	f := fs.files[a.Ino]
	fs.mu.Unlock()
	if f != nil {
		f.overlayAttr(&a)
	}
	return a
}

// SetAttrIn says what SetAttr changes; nil fields stay.
type SetAttrIn struct {
	Mode, Uid, Gid     *uint32
	Size               *uint64
	Atime, Mtime       *int64 // ns
	AtimeNow, MtimeNow bool
}

// SetAttr changes ino's attributes (chmod, chown, truncate, utimens). A
// truncate first flushes what this mount holds unflushed for the file.
func (fs *FS) SetAttr(ctx context.Context, ino uint64, in SetAttrIn) (Attr, syscall.Errno) {
	if fs.cfg.ReadOnly {
		return Attr{}, syscall.EROFS
	}
	req := &filerpb.SetAttrRequest{Inode: ino, Mode: in.Mode, Uid: in.Uid, Gid: in.Gid, Size: in.Size,
		AtimeNs: in.Atime, MtimeNs: in.Mtime, AtimeNow: in.AtimeNow, MtimeNow: in.MtimeNow}
	fs.mu.Lock()
	f := fs.files[ino]
	fs.mu.Unlock()
	if f != nil && in.Size != nil {
		// Hold the file's write lock across flush and truncate so no
		// write slips in between and lands beyond the new size.
		f.truncMu.Lock()
		defer f.truncMu.Unlock()
		if errno := f.flush(ctx); errno != 0 {
			return Attr{}, errno
		}
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.AttrResponse, error) {
		return fs.api.SetAttr(ctx, req)
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	a := attrFromPB(resp.Attr)
	if f != nil {
		if in.Size != nil {
			f.truncated(a)
		}
		f.overlayAttr(&a)
	}
	return a, 0
}

func (fs *FS) writable() syscall.Errno {
	if fs.cfg.ReadOnly {
		return syscall.EROFS
	}
	return 0
}

// Mknod makes a regular file, fifo, socket or device node.
func (fs *FS) Mknod(ctx context.Context, c Caller, parent uint64, name string, mode, rdev uint32) (Attr, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, e
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Create(ctx, &filerpb.CreateRequest{Parent: parent, Name: name, Mode: fs.masked(mode),
			Uid: c.Uid, Gid: c.Gid, Rdev: rdev, Exclusive: true})
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	return attrFromPB(resp.Attr), 0
}

func (fs *FS) masked(mode uint32) uint32 { return mode &^ fs.cfg.Umask }

// Mkdir makes a directory.
func (fs *FS) Mkdir(ctx context.Context, c Caller, parent uint64, name string, mode uint32) (Attr, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, e
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: parent, Name: name, Mode: fs.masked(mode) &^ syscall.S_IFMT,
			Uid: c.Uid, Gid: c.Gid})
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	return attrFromPB(resp.Attr), 0
}

// Symlink makes name in parent a symbolic link to target.
func (fs *FS) Symlink(ctx context.Context, c Caller, parent uint64, name, target string) (Attr, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, e
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Symlink(ctx, &filerpb.SymlinkRequest{Parent: parent, Name: name, Target: target, Uid: c.Uid, Gid: c.Gid})
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	return attrFromPB(resp.Attr), 0
}

// Readlink returns a symbolic link's target.
func (fs *FS) Readlink(ctx context.Context, ino uint64) (string, syscall.Errno) {
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ReadlinkResponse, error) {
		return fs.api.Readlink(ctx, &filerpb.ReadlinkRequest{Inode: ino})
	})
	if err != nil {
		return "", toErrno(err)
	}
	return resp.Target, 0
}

// Link gives inode ino another name.
func (fs *FS) Link(ctx context.Context, ino, newParent uint64, newName string) (Attr, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, e
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Link(ctx, &filerpb.LinkRequest{Inode: ino, NewParent: newParent, NewName: newName})
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	return fs.overlay(attrFromPB(resp.Attr)), 0
}

// Unlink removes a non-directory name. An inode open on any mount lives
// on, unlinked, until its last handle is released.
func (fs *FS) Unlink(ctx context.Context, parent uint64, name string) syscall.Errno {
	if e := fs.writable(); e != 0 {
		return e
	}
	_, err := call(fs, ctx, func(ctx context.Context) (*filerpb.Empty, error) {
		return fs.api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: parent, Name: name})
	})
	return toErrno(err)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(ctx context.Context, parent uint64, name string) syscall.Errno {
	if e := fs.writable(); e != 0 {
		return e
	}
	_, err := call(fs, ctx, func(ctx context.Context) (*filerpb.Empty, error) {
		return fs.api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: parent, Name: name})
	})
	return toErrno(err)
}

// Rename flags, as renameat2(2) numbers them.
const (
	RenameNoReplace = 1 << 0
	RenameExchange  = 1 << 1
	renameWhiteout  = 1 << 2
)

// Rename moves oldParent/oldName to newParent/newName (flags:
// RenameNoReplace, RenameExchange).
func (fs *FS) Rename(ctx context.Context, oldParent uint64, oldName string, newParent uint64, newName string, flags uint32) syscall.Errno {
	if e := fs.writable(); e != 0 {
		return e
	}
	if flags&renameWhiteout != 0 || flags&^(RenameNoReplace|RenameExchange|renameWhiteout) != 0 {
		return syscall.EINVAL
	}
	_, err := call(fs, ctx, func(ctx context.Context) (*filerpb.Empty, error) {
		return fs.api.Rename(ctx, &filerpb.RenameRequest{OldParent: oldParent, OldName: oldName, NewParent: newParent,
			NewName: newName, Flags: flags})
	})
	return toErrno(err)
}

// StatFs is the file system's capacity.
type StatFs struct {
	TotalBytes, FreeBytes, Files, BlockSize uint64
}

// StatFs reports the cluster's capacity.
func (fs *FS) StatFs(ctx context.Context) (StatFs, syscall.Errno) {
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.StatFsResponse, error) {
		return fs.api.StatFs(ctx, &filerpb.StatFsRequest{})
	})
	if err != nil {
		return StatFs{}, toErrno(err)
	}
	return StatFs{TotalBytes: resp.TotalBytes, FreeBytes: resp.FreeBytes, Files: resp.Files, BlockSize: resp.BlockSize}, 0
}
