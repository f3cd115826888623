package meta

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kelpfs/kelp/filerd/store"
)

// POSIX ACLs are xattrs in the Linux posix_acl_xattr format, little
// endian: a 4-byte version (2), then 8-byte entries {u16 tag, u16 perm,
// u32 id}. The access ACL and the mode's permission bits describe the same
// thing twice, so the namespace keeps them in step as a local file system
// does (Linux fs/posix_acl.c): setting an access ACL sets the permission
// bits from it and stores it only when it says more than they can; a chmod
// rewrites the entries of a stored access ACL that mirror the mode.

// Names of the POSIX ACL xattrs.
const (
	// XattrACLAccess holds an inode's access ACL.
	XattrACLAccess = "system.posix_acl_access"
	// XattrACLDefault holds the ACL a directory's new entries inherit.
	XattrACLDefault = "system.posix_acl_default"
)

const (
	aclVersion   = 2
	aclHeaderLen = 4
	aclEntryLen  = 8

	// aclUndefinedID is the id of the entries that name no user or group.
	aclUndefinedID = 0xffffffff
	// aclPerms is read, write and execute: the only permission bits.
	aclPerms = 0o7
)

// ACL entry tags.
const (
	aclUserObj  uint16 = 0x01 // the owner
	aclUser     uint16 = 0x02 // a named user
	aclGroupObj uint16 = 0x04 // the owning group
	aclGroup    uint16 = 0x08 // a named group
	aclMask     uint16 = 0x10 // the most a group-class entry grants
	aclOther    uint16 = 0x20 // everyone else
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// posixACL is a decoded, valid ACL, its entries in their stored order. A
// nil posixACL is no ACL: an xattr value of the header alone.
type posixACL []aclEntry

// parseACL decodes and validates an ACL xattr value. A malformed one is
// ErrInvalid (Linux answers an unknown version with EOPNOTSUPP; this
// package has no such error).
func parseACL(v []byte) (posixACL, error) {
	if len(v) < aclHeaderLen {
		return nil, fmt.Errorf("acl of %d bytes: %w", len(v), ErrInvalid)
	}
	if ver := binary.LittleEndian.Uint32(v); ver != aclVersion {
		return nil, fmt.Errorf("acl version %d: %w", ver, ErrInvalid)
	}
	body := v[aclHeaderLen:]
	if len(body)%aclEntryLen != 0 {
		return nil, fmt.Errorf("acl of %d bytes is not whole entries: %w", len(v), ErrInvalid)
	}
	if len(body) == 0 {
		return nil, nil
	}
	acl := make(posixACL, len(body)/aclEntryLen)
	for i := range acl {
		e := body[i*aclEntryLen:]
		acl[i] = aclEntry{
			tag:  binary.LittleEndian.Uint16(e),
			perm: binary.LittleEndian.Uint16(e[2:]),
			id:   binary.LittleEndian.Uint32(e[4:]),
		}
	}
	if err := acl.validate(); err != nil {
		return nil, err
	}
	return acl, nil
}

// validate checks what POSIX requires (Linux posix_acl_valid): in this
// order one owner entry, the named users, one owning-group entry, the
// named groups, a mask (required when there are named entries), one other
// entry and nothing after it; named entries name an id; permissions are
// read, write and execute only.
func (acl posixACL) validate() error {
	const (
		wantOwner = iota
		inUsers
		inGroups
		afterMask
		complete
	)
	state, named := wantOwner, false
	for i, e := range acl {
		if e.perm&^aclPerms != 0 {
			return fmt.Errorf("acl entry %d: permissions %#o: %w", i, e.perm, ErrInvalid)
		}
		var ok bool
		switch e.tag {
		case aclUserObj:
			ok, state = state == wantOwner, inUsers
		case aclUser:
			ok, named = state == inUsers && e.id != aclUndefinedID, true
		case aclGroupObj:
			ok, state = state == inUsers, inGroups
		case aclGroup:
			ok, named = state == inGroups && e.id != aclUndefinedID, true
		case aclMask:
			ok, state = state == inGroups, afterMask
		case aclOther:
			ok, state = state == afterMask || state == inGroups && !named, complete
		}
		if !ok {
			return fmt.Errorf("acl entry %d: tag %#x id %d out of place or unknown: %w", i, e.tag, e.id, ErrInvalid)
		}
	}
	if state != complete {
		return fmt.Errorf("acl of %d entries lacks a required entry: %w", len(acl), ErrInvalid)
	}
	return nil
}

// mode returns the permission bits (0o777) the ACL gives and whether the
// ACL is equivalent to them, i.e. has no entries but the owner, owning
// group and other ones (Linux posix_acl_equiv_mode). The group bits come
// from the mask when there is one.
func (acl posixACL) mode() (perm uint32, equiv bool) {
	var group, mask uint32
	hasMask := false
	equiv = true
	for _, e := range acl {
		p := uint32(e.perm & aclPerms)
		switch e.tag {
		case aclUserObj:
			perm |= p << 6
		case aclGroupObj:
			group = p
		case aclOther:
			perm |= p
		case aclMask:
			mask, hasMask, equiv = p, true, false
		default:
			equiv = false
		}
	}
	if hasMask {
		group = mask
	}
	return perm | group<<3, equiv
}

// chmod sets the entries that mirror the mode to mode's permission bits:
// the owner entry, the mask or (without one) the owning-group entry, and
// the other entry (Linux posix_acl_chmod).
func (acl posixACL) chmod(mode uint32) {
	hasMask := false
	for _, e := range acl {
		hasMask = hasMask || e.tag == aclMask
	}
	for i := range acl {
		e := &acl[i]
		switch {
		case e.tag == aclUserObj:
			e.perm = uint16(mode >> 6 & aclPerms)
		case e.tag == aclMask, e.tag == aclGroupObj && !hasMask:
			e.perm = uint16(mode >> 3 & aclPerms)
		case e.tag == aclOther:
			e.perm = uint16(mode & aclPerms)
		}
	}
}

// encode returns the xattr value of acl.
func (acl posixACL) encode() []byte {
	b := make([]byte, 0, aclHeaderLen+len(acl)*aclEntryLen)
	b = binary.LittleEndian.AppendUint32(b, aclVersion)
	for _, e := range acl {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// setAccessACL applies the access ACL acl (value encoded) to a: its
// permission bits take the ACL's, and the ACL is stored only if it is not
// equivalent to them; otherwise (and for no ACL) a stored one is removed.
// No ACL leaves the mode as it is. The setgid bit stays: clearing it for a
// caller outside the owning group (Linux posix_acl_update_mode) needs the
// caller's credentials, which do not reach the namespace.
func (t *txn) setAccessACL(a *Attr, acl posixACL, value []byte) error {
	key := xattrKey(a.Inode, XattrACLAccess)
	if acl == nil {
		return t.tx.Delete(key)
	}
	perm, equiv := acl.mode()
	a.Mode = a.Mode&^0o777 | perm
	if equiv {
		return t.tx.Delete(key)
	}
	return t.tx.Set(key, value)
}

// chmodACL makes ino's stored access ACL, if any, agree with its new mode.
// A stored value that does not parse was not accepted by SetXattr (it
// predates ACL handling); it is left as it is rather than failing the
// chmod.
func (t *txn) chmodACL(ino Inode, mode uint32) error {
	key := xattrKey(ino, XattrACLAccess)
	v, err := t.tx.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("access acl of %d: %w", ino, err)
	}
	acl, err := parseACL(v)
	if err != nil || acl == nil {
		return nil
	}
	acl.chmod(mode)
	if err := t.tx.Set(key, acl.encode()); err != nil {
		return fmt.Errorf("access acl of %d: %w", ino, err)
	}
	return nil
}
