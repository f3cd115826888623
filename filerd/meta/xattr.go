package meta

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/kelpfs/kelp/filerd/store"
)

// MaxXattrNameLen is the longest xattr name.
const MaxXattrNameLen = 255

func (n *Namespace) checkXattrName(name string) error {
	switch {
	case name == "" || containsNUL(name):
		return fmt.Errorf("xattr name %q: %w", name, ErrInvalid)
	case len(name) > MaxXattrNameLen:
		return fmt.Errorf("xattr name of %d bytes: %w", len(name), ErrNameTooLong)
	}
	return nil
}

// GetXattr returns the value of xattr name of ino, or ErrNoAttr.
func (n *Namespace) GetXattr(ctx context.Context, ino Inode, name string) ([]byte, error) {
	if err := n.checkXattrName(name); err != nil {
		return nil, wrap("getxattr", err)
	}
	var out []byte
	err := n.view(ctx, func(t *txn) error {
		if _, err := t.attr(ino); err != nil {
			return err
		}
		v, err := t.tx.Get(xattrKey(ino, name))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%q: %w", name, ErrNoAttr)
		}
		out = v
		return err
	})
	return out, wrap("getxattr", err)
}

// ListXattr returns the names of ino's xattrs, sorted.
func (n *Namespace) ListXattr(ctx context.Context, ino Inode) ([]string, error) {
	var out []string
	err := n.view(ctx, func(t *txn) error {
		out = out[:0]
		if _, err := t.attr(ino); err != nil {
			return err
		}
		return t.tx.Scan(xattrPrefix(ino), nil, func(k, _ []byte) (bool, error) {
			out = append(out, string(k[9:]))
			return true, nil
		})
	})
	sort.Strings(out)
	return out, wrap("listxattr", err)
}

// SetXattr sets xattr name of ino. XattrCreate makes an existing one
// ErrExists, XattrReplace a missing one ErrNoAttr; a value over
// Config.MaxXattrSize is ErrXattrTooBig. It bumps ctime.
//
// The POSIX ACL xattrs (XattrACLAccess, XattrACLDefault) must hold a valid
// ACL (else ErrInvalid). Setting the access ACL sets the permission bits
// from it and stores it only if it says more than they do: an ACL
// equivalent to a mode leaves only the mode, and removes a stored ACL, as
// a header without entries does. The flags do not apply to the access ACL
// (Linux ignores them for ACLs too).
func (n *Namespace) SetXattr(ctx context.Context, ino Inode, name string, value []byte, flags XattrFlags) error {
	if err := n.checkXattrName(name); err != nil {
		return wrap("setxattr", err)
	}
	if len(value) > n.cfg.MaxXattrSize {
		return wrap("setxattr", fmt.Errorf("value of %d bytes: %w", len(value), ErrXattrTooBig))
	}
	if flags&^(XattrCreate|XattrReplace) != 0 || flags == XattrCreate|XattrReplace {
		return wrap("setxattr", fmt.Errorf("flags %#x: %w", flags, ErrInvalid))
	}
	var acl posixACL
	if name == XattrACLAccess || name == XattrACLDefault {
		var err error
		if acl, err = parseACL(value); err != nil {
			return wrap("setxattr", fmt.Errorf("%q: %w", name, err))
		}
	}
	err := n.update(ctx, func(t *txn) error {
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		if name == XattrACLAccess {
			if err := t.setAccessACL(a, acl, value); err != nil {
				return err
			}
			a.Ctime = t.ts
			t.touch(ino)
			var out Attr
			return t.updateEvent(ino, &out)
		}
		_, err = t.tx.Get(xattrKey(ino, name))
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if exists && flags&XattrCreate != 0 {
			return fmt.Errorf("%q: %w", name, ErrExists)
		}
		if !exists && flags&XattrReplace != 0 {
			return fmt.Errorf("%q: %w", name, ErrNoAttr)
		}
		if err := t.tx.Set(xattrKey(ino, name), value); err != nil {
			return err
		}
		a.Ctime = t.ts
		t.touch(ino)
		var out Attr
		return t.updateEvent(ino, &out)
	})
	return wrap("setxattr", err)
}

// RemoveXattr removes xattr name of ino, or returns ErrNoAttr.
func (n *Namespace) RemoveXattr(ctx context.Context, ino Inode, name string) error {
	if err := n.checkXattrName(name); err != nil {
		return wrap("removexattr", err)
	}
	err := n.update(ctx, func(t *txn) error {
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		if _, err := t.tx.Get(xattrKey(ino, name)); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%q: %w", name, ErrNoAttr)
		} else if err != nil {
			return err
		}
		if err := t.tx.Delete(xattrKey(ino, name)); err != nil {
			return err
		}
		a.Ctime = t.ts
		t.touch(ino)
		var out Attr
		return t.updateEvent(ino, &out)
	})
	return wrap("removexattr", err)
}
