package mount

import (
	"context"
	"syscall"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// Lookup finds name in directory parent, from the metadata cache when it
// knows the answer (a missing name of a directory it holds whole too).
func (fs *FS) Lookup(ctx context.Context, parent uint64, name string) (Attr, syscall.Errno) {
	if ino, known := fs.meta.lookup(parent, name); known {
		if ino == 0 {
			return Attr{}, syscall.ENOENT
		}
		if a, ok := fs.meta.attr(ino); ok {
			return fs.overlay(a), 0
		}
	}
	since := fs.meta.version()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Lookup(ctx, &filerpb.LookupRequest{Parent: parent, Name: name})
	})
	if err != nil {
		errno := toErrno(err)
		if errno == syscall.ENOENT {
			fs.meta.learnName(parent, name, 0, since)
		}
		return Attr{}, errno
	}
	a := attrFromPB(resp.Attr)
	fs.meta.putAttr(a)
	fs.meta.learnName(parent, name, a.Ino, since)
	return fs.overlay(a), 0
}

// GetAttr returns ino's attributes, from the metadata cache when it has
// them; a file with unflushed writes on this mount shows its local size
// and mtime.
func (fs *FS) GetAttr(ctx context.Context, ino uint64) (Attr, syscall.Errno) {
	if a, ok := fs.meta.attr(ino); ok {
		return fs.overlay(a), 0
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.AttrResponse, error) {
		return fs.api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: ino})
	})
	if err != nil {
		return Attr{}, toErrno(err)
	}
	a := attrFromPB(resp.Attr)
	fs.meta.putAttr(a)
	return fs.overlay(a), 0
}

// changed records in the metadata cache what one of this mount's
// mutations left behind.
func (fs *FS) changed(attrs []*filerpb.Attr, removed []uint64) {
	for _, a := range attrs {
		fs.meta.putAttr(attrFromPB(a))
	}
	for _, ino := range removed {
		fs.meta.invalidate(ino, goneGen)
		fs.meta.forgetDir(ino)
		fs.images.changed(ino)
	}
}

// contentKept tells the file images about inodes a namespace operation
// of this mount changed without touching their content (a link count, a
// ctime), so an image current before stays current.
func (fs *FS) contentKept(attrs []*filerpb.Attr) {
	seen := make(map[uint64]bool, len(attrs))
	for _, a := range attrs {
		if a == nil || a.Mode&syscall.S_IFMT != syscall.S_IFREG || seen[a.Inode] {
			continue
		}
		seen[a.Inode] = true
		if a.Nlink == 0 {
			// Unlinked, kept by open handles: no open will find it
			// by name again, so its image goes once theirs close.
			fs.images.changed(a.Inode)
		} else {
			fs.images.committed(a.Inode, a.Generation)
		}
	}
}

// failed handles a mutation's error: when the filer did not answer with
// an errno, the mutation may or may not have happened, so what the cache
// knows of the inodes and directories involved is dropped.
func (fs *FS) failed(err error, dirs []uint64, inodes ...uint64) syscall.Errno {
	if client.PosixErrno(err) == "" {
		for _, d := range dirs {
			fs.meta.forgetDir(d)
			fs.meta.invalidateChanged(d)
		}
		for _, ino := range inodes {
			fs.meta.invalidateChanged(ino)
		}
	}
	return toErrno(err)
}

// entryMade records a new name from a Create, Mkdir, Symlink or Link.
func (fs *FS) entryMade(parent uint64, name string, resp *filerpb.EntryResponse) Attr {
	a := attrFromPB(resp.Attr)
	fs.changed(resp.Changed, nil)
	fs.meta.putAttr(a)
	fs.meta.named(parent, name, a.Ino)
	return a
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
		// A truncate must not cross a store of the old content into
		// the kernel's page cache (storeSmall).
		f.waitStored()
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
		return Attr{}, fs.failed(err, nil, ino)
	}
	a := attrFromPB(resp.Attr)
	fs.changed(resp.Changed, nil)
	fs.meta.putAttr(a)
	// Under f's write lock (held for a truncate), so the image takes
	// the new size in order with the writes.
	if in.Size != nil {
		fs.images.resized(ino, a.Generation, int64(a.Size))
	} else {
		fs.images.committed(ino, a.Generation)
	}
	if f != nil {
		if in.Size != nil {
			// Writes after the truncate commit the whole chunk
			// list, so it must be the truncated file's.
			if f.truncated(a) {
				if errno := f.reload(ctx, true); errno != 0 {
					return Attr{}, errno
				}
			}
		}
		if in.Mtime != nil || in.MtimeNow {
			f.mtimeSet(a.Mtime)
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

// Mknod makes a regular file, fifo, socket or device node for a caller
// whose umask the kernel left to the file system (see umask).
func (fs *FS) Mknod(ctx context.Context, c Caller, parent uint64, name string, mode, umask, rdev uint32) (Attr, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, e
	}
	defer fs.meta.changing(parent)()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Create(ctx, &filerpb.CreateRequest{Parent: parent, Name: name, Mode: mode, Umask: fs.umask(umask),
			Uid: c.Uid, Gid: c.Gid, Rdev: rdev, Exclusive: true})
	})
	if err != nil {
		return Attr{}, fs.failed(err, []uint64{parent})
	}
	return fs.entryMade(parent, name, resp), 0
}

// umask returns the umask a new inode's mode is created with: the
// caller's and the mount's own (Config.Umask) on top. The filer applies
// it unless the parent directory has a default ACL, which POSIX says
// replaces the umask; only the filer knows that for sure, so the mount
// passes the mode unmasked (the kernel does too: fusefs asks it to with
// FUSE_DONT_MASK).
func (fs *FS) umask(caller uint32) uint32 { return caller | fs.cfg.Umask }

// Mkdir makes a directory for a caller whose umask the kernel left to the
// file system (see umask).
func (fs *FS) Mkdir(ctx context.Context, c Caller, parent uint64, name string, mode, umask uint32) (Attr, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, e
	}
	defer fs.meta.changing(parent)()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: parent, Name: name, Mode: mode &^ syscall.S_IFMT,
			Umask: fs.umask(umask), Uid: c.Uid, Gid: c.Gid})
	})
	if err != nil {
		return Attr{}, fs.failed(err, []uint64{parent})
	}
	a := fs.entryMade(parent, name, resp)
	fs.meta.newDir(a.Ino)
	return a, 0
}

// Symlink makes name in parent a symbolic link to target.
func (fs *FS) Symlink(ctx context.Context, c Caller, parent uint64, name, target string) (Attr, syscall.Errno) {
	if e := fs.writable(); e != 0 {
		return Attr{}, e
	}
	defer fs.meta.changing(parent)()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Symlink(ctx, &filerpb.SymlinkRequest{Parent: parent, Name: name, Target: target, Uid: c.Uid, Gid: c.Gid})
	})
	if err != nil {
		return Attr{}, fs.failed(err, []uint64{parent})
	}
	return fs.entryMade(parent, name, resp), 0
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
	defer fs.meta.changing(newParent)()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.EntryResponse, error) {
		return fs.api.Link(ctx, &filerpb.LinkRequest{Inode: ino, NewParent: newParent, NewName: newName})
	})
	if err != nil {
		return Attr{}, fs.failed(err, []uint64{newParent}, ino)
	}
	fs.contentKept(append(resp.Changed, resp.Attr))
	return fs.overlay(fs.entryMade(newParent, newName, resp)), 0
}

// Unlink removes a non-directory name. An inode open on any mount lives
// on, unlinked, until its last handle is released.
func (fs *FS) Unlink(ctx context.Context, parent uint64, name string) syscall.Errno {
	if e := fs.writable(); e != 0 {
		return e
	}
	ino, _ := fs.meta.lookup(parent, name)
	defer fs.meta.changing(parent)()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ChangeResponse, error) {
		return fs.api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: parent, Name: name})
	})
	if err != nil {
		return fs.failed(err, []uint64{parent}, ino)
	}
	fs.meta.named(parent, name, 0)
	fs.contentKept(resp.Changed)
	fs.changed(resp.Changed, resp.Removed)
	return 0
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(ctx context.Context, parent uint64, name string) syscall.Errno {
	if e := fs.writable(); e != 0 {
		return e
	}
	ino, _ := fs.meta.lookup(parent, name)
	defer fs.meta.changing(parent)()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ChangeResponse, error) {
		return fs.api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: parent, Name: name})
	})
	if err != nil {
		return fs.failed(err, []uint64{parent, ino})
	}
	fs.meta.named(parent, name, 0)
	fs.changed(resp.Changed, resp.Removed)
	return 0
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
	moved, _ := fs.meta.lookup(oldParent, oldName)
	replaced, _ := fs.meta.lookup(newParent, newName)
	defer fs.meta.changing(oldParent, newParent)()
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ChangeResponse, error) {
		return fs.api.Rename(ctx, &filerpb.RenameRequest{OldParent: oldParent, OldName: oldName, NewParent: newParent,
			NewName: newName, Flags: flags})
	})
	if err != nil {
		return fs.failed(err, []uint64{oldParent, newParent}, moved, replaced)
	}
	fs.meta.renamed(oldParent, oldName, newParent, newName, flags&RenameExchange != 0)
	// A rename may change the moved and replaced inodes in ways the
	// answer lists (ctime, a directory's ".."), or free the replaced one.
	fs.meta.invalidateChanged(moved)
	if flags&RenameExchange == 0 {
		fs.meta.invalidateChanged(replaced)
	}
	fs.contentKept(resp.Changed)
	fs.changed(resp.Changed, resp.Removed)
	return 0
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
