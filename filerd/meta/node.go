package meta

import (
	"context"
	"errors"
	"fmt"
)

// Lookup returns the attributes of name in directory parent. "." is parent
// itself and ".." its parent (the root's is the root).
func (n *Namespace) Lookup(ctx context.Context, parent Inode, name string) (Attr, error) {
	var out Attr
	err := n.view(ctx, func(t *txn) error {
		d, err := t.dirAttr(parent)
		if err != nil {
			return err
		}
		switch name {
		case ".":
			out = *d
			return nil
		case "..":
			p, err := t.attr(d.Parent)
			if err != nil {
				return err
			}
			out = *p
			return nil
		}
		if err := n.checkName(name); err != nil {
			return err
		}
		ino, _, err := t.lookup(parent, name)
		if err != nil {
			return err
		}
		a, err := t.attr(ino)
		if err != nil {
			return fmt.Errorf("entry %q: %w", name, ErrStale)
		}
		out = *a
		return nil
	})
	return out, wrap("lookup", err)
}

// GetAttr returns the attributes of ino.
func (n *Namespace) GetAttr(ctx context.Context, ino Inode) (Attr, error) {
	var out Attr
	err := n.view(ctx, func(t *txn) error {
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		out = *a
		return nil
	})
	return out, wrap("getattr", err)
}

// SetAttr changes the attributes req names. chmod, chown and utimens bump
// ctime; a size change (truncate) bumps mtime and ctime and queues the
// chunks past the new size for deletion, trimming a straddling one. A
// chmod also rewrites the owner, mask (or owning group) and other entries
// of a stored access ACL to match the new mode.
func (n *Namespace) SetAttr(ctx context.Context, ino Inode, req SetAttrRequest) (Attr, error) {
	var out Attr
	err := n.update(ctx, func(t *txn) error {
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		now := t.ts
		if req.Size != nil {
			switch {
			case a.IsDir():
				return fmt.Errorf("truncate: %w", ErrIsDir)
			case !a.IsRegular():
				return fmt.Errorf("truncate a non-regular file: %w", ErrInvalid)
			case *req.Size > 1<<62:
				return fmt.Errorf("truncate to %d: %w", *req.Size, ErrInvalid)
			}
			if *req.Size < a.Size {
				if err := t.truncateData(ino, int64(*req.Size)); err != nil {
					return err
				}
			}
			a.Size = *req.Size
			a.Mtime, a.Ctime = now, now
		}
		if req.Mode != nil {
			a.Mode = a.Mode&S_IFMT | *req.Mode&ModePerm
			a.Ctime = now
			if err := t.chmodACL(ino, a.Mode); err != nil {
				return err
			}
		}
		if req.Uid != nil {
			a.Uid = *req.Uid
			a.Ctime = now
		}
		if req.Gid != nil {
			a.Gid = *req.Gid
			a.Ctime = now
		}
		switch {
		case req.AtimeNow:
			a.Atime, a.Ctime = now, now
		case req.Atime != nil:
			a.Atime, a.Ctime = *req.Atime, now
		}
		switch {
		case req.MtimeNow:
			a.Mtime, a.Ctime = now, now
		case req.Mtime != nil:
			a.Mtime, a.Ctime = *req.Mtime, now
		}
		if req.Ctime != nil {
			a.Ctime = *req.Ctime
		}
		t.touch(ino)
		return t.updateEvent(ino, &out)
	})
	return out, wrap("setattr", err)
}

// updateEvent records an update event for ino and copies its attributes to out.
func (t *txn) updateEvent(ino Inode, out *Attr) error {
	a, err := t.attr(ino)
	if err != nil {
		return err
	}
	if a.Nlink == 0 && !a.IsDir() {
		// Open-unlinked: no path, nothing for subscribers.
		*out = *a
		return nil
	}
	p, err := t.path(ino)
	if err != nil {
		return err
	}
	st, err := t.state(ino)
	if err != nil {
		return err
	}
	var parent Inode
	if ino != RootInode {
		parent = st.Attr.Parent
	}
	t.ev = &Event{Kind: EventUpdate, OldPath: p, NewPath: p, OldParent: parent, NewParent: parent, NewEntry: st}
	*out = st.Attr
	return nil
}

// CreateRequest describes a new inode.
type CreateRequest struct {
	// Mode is the type bits (S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK;
	// 0 means S_IFREG) and the permission bits.
	Mode uint32
	// Umask is the caller's umask, cleared from Mode unless the parent has
	// a default ACL (see Create).
	Umask uint32
	// Uid and Gid are the caller's; in a setgid directory the inode takes
	// the directory's group instead.
	Uid, Gid uint32
	Rdev     uint32
	// Exclusive makes an existing name an error (O_EXCL); otherwise an
	// existing regular file is returned as it is.
	Exclusive bool
	// Open also takes a handle on the inode (see Open). For a new inode
	// the handle is registered before its name is visible, so nobody can
	// unlink and free it first; an existing file reused by a
	// non-exclusive create is opened as Open would.
	Open bool
}

// Create makes a regular file, fifo, socket or device node name in parent.
//
// The new inode inherits from parent as on a local Linux file system: a
// setgid parent gives it its group (and S_ISGID is cleared from a mode
// the caller may not set, see stripSetgid); a parent with a default ACL
// (XattrACLDefault) gives it an access ACL masked by Mode, and Mode's
// permission bits masked by that ACL, instead of applying Umask.
func (n *Namespace) Create(ctx context.Context, parent Inode, name string, req CreateRequest) (Attr, error) {
	typ := req.Mode & S_IFMT
	if typ == 0 {
		typ = S_IFREG
	}
	switch typ {
	case S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK:
	default:
		return Attr{}, wrap("create", fmt.Errorf("mode %o: %w", req.Mode, ErrInvalid))
	}
	a := Attr{Mode: typ | req.Mode&ModePerm, Uid: req.Uid, Gid: req.Gid, Nlink: 1}
	if typ == S_IFCHR || typ == S_IFBLK {
		a.Rdev = req.Rdev
	}
	reuse := !req.Exclusive && typ == S_IFREG
	for i := 0; ; i++ {
		out, opened, err := n.newNode(ctx, "create", parent, name, a, req.Umask, reuse, req.Open)
		if err != nil || !req.Open || opened {
			return out, err
		}
		// An existing file was reused: open it as Open does. If it was
		// unlinked (and freed) in between, the name is free again.
		err = n.Open(ctx, out.Inode)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, ErrStale) || i == 2 {
			return Attr{}, err
		}
	}
}

// Mknod is Create with Exclusive set.
func (n *Namespace) Mknod(ctx context.Context, parent Inode, name string, mode, uid, gid, rdev uint32) (Attr, error) {
	return n.Create(ctx, parent, name, CreateRequest{Mode: mode, Uid: uid, Gid: gid, Rdev: rdev, Exclusive: true})
}

// Mkdir is MkdirUmask without a umask.
func (n *Namespace) Mkdir(ctx context.Context, parent Inode, name string, mode, uid, gid uint32) (Attr, error) {
	return n.MkdirUmask(ctx, parent, name, mode, 0, uid, gid)
}

// MkdirUmask makes directory name in parent for caller uid, gid. It
// inherits from parent as Create describes, and besides keeps a setgid
// parent's S_ISGID and a parent's default ACL as its own default ACL.
func (n *Namespace) MkdirUmask(ctx context.Context, parent Inode, name string, mode, umask, uid, gid uint32) (Attr, error) {
	a := Attr{Mode: S_IFDIR | mode&ModePerm, Uid: uid, Gid: gid, Nlink: 2}
	out, _, err := n.newNode(ctx, "mkdir", parent, name, a, umask, false, false)
	return out, err
}

// MaxSymlinkLen is the longest symlink target.
const MaxSymlinkLen = 4095

// Symlink makes symbolic link name in parent pointing at target. A
// setgid parent gives it its group; its mode is always 0777.
func (n *Namespace) Symlink(ctx context.Context, parent Inode, name, target string, uid, gid uint32) (Attr, error) {
	switch {
	case target == "":
		return Attr{}, wrap("symlink", fmt.Errorf("empty target: %w", ErrNotFound))
	case len(target) > MaxSymlinkLen:
		return Attr{}, wrap("symlink", fmt.Errorf("target of %d bytes: %w", len(target), ErrNameTooLong))
	case containsNUL(target):
		return Attr{}, wrap("symlink", fmt.Errorf("target with NUL: %w", ErrInvalid))
	}
	a := Attr{Mode: S_IFLNK | 0o777, Uid: uid, Gid: gid, Nlink: 1, Target: target, Size: uint64(len(target))}
	out, _, err := n.newNode(ctx, "symlink", parent, name, a, 0, false, false)
	return out, err
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// newNode links new inode a as name in parent, after it inherited what it
// takes from parent (see inherit; umask is the caller's). With reuse an
// existing regular file is returned instead of ErrExists. With open a
// handle on the new inode is registered before the transaction, so it
// holds from the moment the name is visible; opened reports that the
// handle was kept (a new inode was made), not for a reused file.
func (n *Namespace) newNode(ctx context.Context, op string, parent Inode, name string, a Attr, umask uint32, reuse, open bool) (out Attr, opened bool, err error) {
	if err := n.checkName(name); err != nil {
		return Attr{}, false, wrap(op, err)
	}
	ino, err := n.allocIno(ctx)
	if err != nil {
		return Attr{}, false, wrap(op, err)
	}
	if open {
		// Nobody else knows ino yet, so no dying marker can be on it.
		n.openMu.Lock()
		n.opens[ino]++
		n.openMu.Unlock()
		defer func() {
			if !opened {
				n.release(ino) // never named: nothing to free
			}
		}()
	}
	defer n.lockDirs(parent)()
	err = n.update(ctx, func(t *txn) error {
		d, err := t.dirAttr(parent)
		if err != nil {
			return err
		}
		if d.Nlink == 0 {
			return fmt.Errorf("directory %d was removed: %w", parent, ErrNotFound)
		}
		if old, _, err := t.lookup(parent, name); err == nil {
			if reuse {
				oa, err := t.attr(old)
				if err != nil {
					return err
				}
				if oa.IsDir() {
					return fmt.Errorf("%q: %w", name, ErrIsDir)
				}
				out = *oa
				return nil
			}
			return fmt.Errorf("%q: %w", name, ErrExists)
		} else if !isNotFound(err) {
			return err
		}
		na := a
		na.Inode = ino
		na.Parent, na.Name = parent, name
		na.Atime, na.Mtime, na.Ctime, na.Crtime = t.ts, t.ts, t.ts, t.ts
		xattrs, err := t.inherit(&na, d, umask)
		if err != nil {
			return err
		}
		na = *t.create(na)
		if na.IsDir() {
			d.Nlink++
		}
		if err := t.countInode(parent, 1); err != nil {
			return err
		}
		d.Mtime, d.Ctime = t.ts, t.ts
		t.touch(parent)
		if err := t.setEntry(parent, name, ino, TypeOf(na.Mode)); err != nil {
			return err
		}
		p, err := t.childPath(parent, name)
		if err != nil {
			return err
		}
		t.ev = &Event{Kind: EventCreate, NewPath: p, NewParent: parent, NewEntry: &EntryState{Attr: na, Xattrs: xattrs}}
		out = na
		return nil
	})
	opened = open && err == nil && out.Inode == ino
	return out, opened, wrap(op, err)
}

// Readlink returns a symlink's target.
func (n *Namespace) Readlink(ctx context.Context, ino Inode) (string, error) {
	a, err := n.GetAttr(ctx, ino)
	if err != nil {
		return "", err
	}
	if a.Mode&S_IFMT != S_IFLNK {
		return "", wrap("readlink", fmt.Errorf("inode %d: %w", ino, ErrInvalid))
	}
	return a.Target, nil
}

// Unlink removes name, not a directory, from parent. The inode is freed
// with its last name unless the filer holds it open (see Open).
func (n *Namespace) Unlink(ctx context.Context, parent Inode, name string) error {
	if err := n.checkName(name); err != nil {
		return wrap("unlink", err)
	}
	defer n.lockDirs(parent)()
	err := n.update(ctx, func(t *txn) error {
		d, err := t.dirAttr(parent)
		if err != nil {
			return err
		}
		ino, _, err := t.lookup(parent, name)
		if err != nil {
			return err
		}
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		if a.IsDir() {
			return fmt.Errorf("%q: %w", name, ErrIsDir)
		}
		p, err := t.childPath(parent, name)
		if err != nil {
			return err
		}
		old, err := t.attrState(ino)
		if err != nil {
			return err
		}
		if err := t.delEntry(parent, name); err != nil {
			return err
		}
		if err := t.dropLink(a, parent, name); err != nil {
			return err
		}
		d.Mtime, d.Ctime = t.ts, t.ts
		t.touch(parent)
		t.ev = &Event{Kind: EventDelete, OldPath: p, OldParent: parent, OldEntry: old}
		return nil
	})
	return wrap("unlink", err)
}

// Rmdir removes the empty directory name from parent.
func (n *Namespace) Rmdir(ctx context.Context, parent Inode, name string) error {
	if name == ".." {
		return wrap("rmdir", fmt.Errorf("%q: %w", name, ErrNotEmpty))
	}
	if err := n.checkName(name); err != nil {
		return wrap("rmdir", err)
	}
	defer n.lockDirs(parent)()
	err := n.update(ctx, func(t *txn) error {
		d, err := t.dirAttr(parent)
		if err != nil {
			return err
		}
		ino, _, err := t.lookup(parent, name)
		if err != nil {
			return err
		}
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		if !a.IsDir() {
			return fmt.Errorf("%q: %w", name, ErrNotDir)
		}
		if ok, err := t.empty(ino); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("%q: %w", name, ErrNotEmpty)
		}
		p, err := t.childPath(parent, name)
		if err != nil {
			return err
		}
		old, err := t.attrState(ino)
		if err != nil {
			return err
		}
		if err := t.delEntry(parent, name); err != nil {
			return err
		}
		if err := t.remove(ino); err != nil {
			return err
		}
		if err := t.countInode(parent, -1); err != nil {
			return err
		}
		d.Nlink--
		d.Mtime, d.Ctime = t.ts, t.ts
		t.touch(parent)
		t.ev = &Event{Kind: EventDelete, OldPath: p, OldParent: parent, OldEntry: old}
		return nil
	})
	return wrap("rmdir", err)
}

// Link makes newName in newParent another name of ino, which must not be a
// directory (ErrPermission).
func (n *Namespace) Link(ctx context.Context, ino, newParent Inode, newName string) (Attr, error) {
	if err := n.checkName(newName); err != nil {
		return Attr{}, wrap("link", err)
	}
	var out Attr
	defer n.lockDirs(newParent)()
	err := n.update(ctx, func(t *txn) error {
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		if a.IsDir() {
			return fmt.Errorf("link to directory %d: %w", ino, ErrPermission)
		}
		if a.Nlink == 0 {
			return fmt.Errorf("inode %d was unlinked: %w", ino, ErrNotFound)
		}
		d, err := t.dirAttr(newParent)
		if err != nil {
			return err
		}
		if d.Nlink == 0 {
			return fmt.Errorf("directory %d was removed: %w", newParent, ErrNotFound)
		}
		if _, _, err := t.lookup(newParent, newName); err == nil {
			return fmt.Errorf("%q: %w", newName, ErrExists)
		} else if !isNotFound(err) {
			return err
		}
		// The name the attributes record, for replicas (LinkedPath); a
		// link does not fail for want of it.
		linked, err := t.path(ino)
		if err != nil {
			linked = ""
		}
		if err := t.setEntry(newParent, newName, ino, TypeOf(a.Mode)); err != nil {
			return err
		}
		if err := t.addLink(a, newParent, newName); err != nil {
			return err
		}
		d.Mtime, d.Ctime = t.ts, t.ts
		t.touch(newParent)
		p, err := t.childPath(newParent, newName)
		if err != nil {
			return err
		}
		st, err := t.state(ino)
		if err != nil {
			return err
		}
		t.ev = &Event{Kind: EventCreate, NewPath: p, NewParent: newParent, NewEntry: st, LinkedPath: linked}
		out = st.Attr
		return nil
	})
	return out, wrap("link", err)
}
