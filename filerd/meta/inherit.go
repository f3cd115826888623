package meta

import (
	"errors"
	"fmt"
	"slices"

	"github.com/kelpfs/kelp/filerd/store"
)

// A new inode takes some of its attributes from its parent directory, as
// on a local Linux file system: the group of a setgid directory
// (inode_init_owner) and the ACLs of a directory with a default ACL
// (posix_acl_create). The umask belongs here too, because whether it
// applies depends on the parent: a default ACL replaces it. Clients hand
// the namespace the caller's mode and umask unmasked so it can decide.

// inherit sets up new inode a, whose Uid and Gid are the caller's and
// whose Mode is the one asked for, in directory d: it applies the setgid
// rules, then the umask or d's default ACL. It stores the new inode's ACL
// xattrs and returns them (nil for none) for the create event.
func (t *txn) inherit(a, d *Attr, umask uint32) (map[string][]byte, error) {
	a.Mode = stripSetgid(a.Mode, a.Uid, a.Gid, d)
	inheritGroup(a, d)
	if a.Mode&S_IFMT == S_IFLNK {
		// A symlink's mode is always 0777; ACLs do not apply to it.
		return nil, nil
	}
	def, err := t.defaultACL(d.Inode)
	if err != nil {
		return nil, err
	}
	if def == nil {
		a.Mode &^= umask & ModePerm
		return nil, nil
	}
	return t.inheritACL(a, def)
}

// stripSetgid clears S_ISGID from the mode of a new non-directory in the
// setgid directory d when the caller (uid, gid) may not set it: the file
// would run with d's group, which the caller need not belong to (Linux
// mode_strip_sgid, and only when group execute is set too, as there).
// Linux asks whether the caller is in the group at all, supplementary
// groups included, or has CAP_FSETID; the namespace gets the caller's uid
// and gid only, so this approximates that as "gid differs and not root",
// which also strips it for a caller in d's group through a supplementary
// group only. (Linux 6.0 and later apply the exact rule in the VFS before
// a FUSE request is sent, so for a mount this only ever strips more.)
func stripSetgid(mode, uid, gid uint32, d *Attr) uint32 {
	const sgidExec = S_ISGID | 0o010
	switch {
	case mode&sgidExec != sgidExec, mode&S_IFMT == S_IFDIR, d.Mode&S_ISGID == 0:
		return mode
	case gid == d.Gid || uid == 0:
		return mode
	}
	return mode &^ S_ISGID
}

// inheritGroup gives a new inode in a setgid directory d the directory's
// group, and a new directory the setgid bit as well, so a tree shared by
// a group stays the group's.
func inheritGroup(a, d *Attr) {
	if d.Mode&S_ISGID == 0 {
		return
	}
	a.Gid = d.Gid
	if a.IsDir() {
		a.Mode |= S_ISGID
	}
}

// defaultACL returns directory dir's default ACL, or nil when it has none.
// A stored value that does not parse was not accepted by SetXattr (it
// predates ACL handling); it counts as none, as chmodACL leaves such a
// value alone rather than failing.
func (t *txn) defaultACL(dir Inode) (posixACL, error) {
	v, err := t.tx.Get(xattrKey(dir, XattrACLDefault))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("default acl of %d: %w", dir, err)
	}
	acl, err := parseACL(v)
	if err != nil {
		return nil, nil
	}
	return acl, nil
}

// inheritACL gives new inode a the ACLs its parent's default ACL def
// implies (Linux posix_acl_create): a directory keeps def as its own
// default ACL; the access ACL is def masked by a's mode, which in turn
// takes its permission bits from that ACL. The access ACL is stored only
// when the mode cannot say as much.
func (t *txn) inheritACL(a *Attr, def posixACL) (map[string][]byte, error) {
	xattrs := make(map[string][]byte, 2)
	if a.IsDir() {
		v := def.encode()
		if err := t.tx.Set(xattrKey(a.Inode, XattrACLDefault), v); err != nil {
			return nil, fmt.Errorf("default acl of %d: %w", a.Inode, err)
		}
		xattrs[XattrACLDefault] = v
	}
	// Linux posix_acl_create_masq: the entries that mirror a mode keep
	// only what the create's mode asks for, and the mode only what they
	// grant, so the new inode gets no permission the caller left out.
	// Whether the ACL is equivalent to a mode depends on its tags only.
	acl := slices.Clone(def)
	perm, equiv := acl.mode()
	perm &= a.Mode
	acl.chmod(perm)
	a.Mode = a.Mode&^0o777 | perm
	if !equiv {
		v := acl.encode()
		if err := t.tx.Set(xattrKey(a.Inode, XattrACLAccess), v); err != nil {
			return nil, fmt.Errorf("access acl of %d: %w", a.Inode, err)
		}
		xattrs[XattrACLAccess] = v
	}
	if len(xattrs) == 0 {
		return nil, nil
	}
	return xattrs, nil
}
