package meta

import (
	"context"
	"fmt"
)

// Rename moves oldName in oldParent to newName in newParent, atomically.
//
// An existing target is replaced: a directory only by a directory and only
// if it is empty (ErrNotEmpty); a file over a directory is ErrIsDir, a
// directory over a file ErrNotDir. RenameNoReplace makes an existing target
// ErrExists; RenameExchange swaps the two (both must exist). Moving a
// directory into its own subtree is ErrInvalid. When both names are links
// of the same inode nothing happens.
func (n *Namespace) Rename(ctx context.Context, oldParent Inode, oldName string, newParent Inode, newName string, flags RenameFlags) error {
	if err := n.checkName(oldName); err != nil {
		return wrap("rename", err)
	}
	if err := n.checkName(newName); err != nil {
		return wrap("rename", err)
	}
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return wrap("rename", fmt.Errorf("flags %#x: %w", flags, ErrInvalid))
	}
	defer n.lockDirs(oldParent, newParent)()
	err := n.update(ctx, func(t *txn) error {
		od, err := t.dirAttr(oldParent)
		if err != nil {
			return err
		}
		nd, err := t.dirAttr(newParent)
		if err != nil {
			return err
		}
		src, _, err := t.lookup(oldParent, oldName)
		if err != nil {
			return err
		}
		sa, err := t.attr(src)
		if err != nil {
			return err
		}
		dst, _, err := t.lookup(newParent, newName)
		exists := err == nil
		if err != nil && !isNotFound(err) {
			return err
		}
		if flags&RenameExchange != 0 && !exists {
			return fmt.Errorf("exchange with missing %q: %w", newName, ErrNotFound)
		}
		if exists && flags&RenameNoReplace != 0 {
			return fmt.Errorf("%q: %w", newName, ErrExists)
		}
		if exists && dst == src {
			return nil // same inode (or same name): nothing to do
		}
		if nd.Nlink == 0 {
			return fmt.Errorf("directory %d was removed: %w", newParent, ErrNotFound)
		}
		if sa.IsDir() && oldParent != newParent {
			if err := t.checkNotUnder(newParent, src); err != nil {
				return err
			}
		}
		var da *Attr
		if exists {
			if da, err = t.attr(dst); err != nil {
				return err
			}
			if flags&RenameExchange != 0 && da.IsDir() && oldParent != newParent {
				if err := t.checkNotUnder(oldParent, dst); err != nil {
					return err
				}
			}
		}
		oldPath, err := t.childPath(oldParent, oldName)
		if err != nil {
			return err
		}
		newPath, err := t.childPath(newParent, newName)
		if err != nil {
			return err
		}
		ev := &Event{Kind: EventRename, OldPath: oldPath, NewPath: newPath, OldParent: oldParent, NewParent: newParent}

		if flags&RenameExchange != 0 {
			if err := t.setEntry(newParent, newName, src, TypeOf(sa.Mode)); err != nil {
				return err
			}
			if err := t.setEntry(oldParent, oldName, dst, TypeOf(da.Mode)); err != nil {
				return err
			}
			if err := t.moveName(sa, oldParent, oldName, newParent, newName); err != nil {
				return err
			}
			if err := t.moveName(da, newParent, newName, oldParent, oldName); err != nil {
				return err
			}
			if oldParent != newParent && sa.IsDir() != da.IsDir() {
				if sa.IsDir() {
					od.Nlink--
					nd.Nlink++
				} else {
					od.Nlink++
					nd.Nlink--
				}
			}
			ev.Exchange = true
		} else {
			if exists {
				switch {
				case sa.IsDir() && !da.IsDir():
					return fmt.Errorf("%q over a file: %w", oldName, ErrNotDir)
				case !sa.IsDir() && da.IsDir():
					return fmt.Errorf("over directory %q: %w", newName, ErrIsDir)
				}
				if ev.Replaced, err = t.attrState(dst); err != nil {
					return err
				}
				if da.IsDir() {
					if ok, err := t.empty(dst); err != nil {
						return err
					} else if !ok {
						return fmt.Errorf("%q: %w", newName, ErrNotEmpty)
					}
					if err := t.remove(dst); err != nil {
						return err
					}
					if err := t.countInode(newParent, -1); err != nil {
						return err
					}
					nd.Nlink--
				} else if err := t.dropLink(da, newParent, newName); err != nil {
					return err
				}
			}
			if err := t.delEntry(oldParent, oldName); err != nil {
				return err
			}
			if err := t.setEntry(newParent, newName, src, TypeOf(sa.Mode)); err != nil {
				return err
			}
			if err := t.moveName(sa, oldParent, oldName, newParent, newName); err != nil {
				return err
			}
			if sa.IsDir() && oldParent != newParent {
				od.Nlink--
				nd.Nlink++
			}
		}
		od.Mtime, od.Ctime = t.ts, t.ts
		nd.Mtime, nd.Ctime = t.ts, t.ts
		t.touch(oldParent)
		t.touch(newParent)
		if ev.OldEntry, err = t.state(src); err != nil {
			return err
		}
		if ev.Exchange {
			if ev.NewEntry, err = t.state(dst); err != nil {
				return err
			}
		} else {
			ev.NewEntry = ev.OldEntry
		}
		t.ev = ev
		return nil
	})
	return wrap("rename", err)
}

// checkNotUnder returns ErrInvalid if dir is ino or lies below it.
func (t *txn) checkNotUnder(dir, ino Inode) error {
	for i := 0; ; i++ {
		if dir == ino {
			return fmt.Errorf("directory %d into its own subtree: %w", ino, ErrInvalid)
		}
		if dir == RootInode {
			return nil
		}
		if i > 4096 {
			return fmt.Errorf("parent chain of %d: %w", dir, ErrCorrupt)
		}
		a, err := t.attr(dir)
		if err != nil {
			return err
		}
		dir = a.Parent
	}
}
