package meta

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// aclValue encodes entries as an ACL xattr value.
func aclValue(es ...aclEntry) []byte { return posixACL(es).encode() }

func owner(p uint16) aclEntry { return aclEntry{tag: aclUserObj, perm: p, id: aclUndefinedID} }
func user(id uint32, p uint16) aclEntry {
	return aclEntry{tag: aclUser, perm: p, id: id}
}
func owningGroup(p uint16) aclEntry { return aclEntry{tag: aclGroupObj, perm: p, id: aclUndefinedID} }
func group(id uint32, p uint16) aclEntry {
	return aclEntry{tag: aclGroup, perm: p, id: id}
}
func mask(p uint16) aclEntry  { return aclEntry{tag: aclMask, perm: p, id: aclUndefinedID} }
func other(p uint16) aclEntry { return aclEntry{tag: aclOther, perm: p, id: aclUndefinedID} }

func TestParseACL(t *testing.T) {
	equiv644 := aclValue(owner(6), owningGroup(4), other(4))
	withVersion := func(v uint32) []byte {
		b := bytes.Clone(equiv644)
		binary.LittleEndian.PutUint32(b, v)
		return b
	}
	for _, tc := range []struct {
		name  string
		v     []byte
		mode  uint32
		equiv bool
	}{
		{"base entries", equiv644, 0o644, true},
		{"mask without named entries", aclValue(owner(7), owningGroup(7), mask(5), other(0)), 0o750, false},
		{"named user and group", aclValue(owner(6), user(1000, 7), user(1001, 4), owningGroup(4), group(50, 6), mask(6), other(0)), 0o660, false},
	} {
		acl, err := parseACL(tc.v)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m, eq := acl.mode(); m != tc.mode || eq != tc.equiv {
			t.Errorf("%s: mode %#o equivalent %v, want %#o %v", tc.name, m, eq, tc.mode, tc.equiv)
		}
		if got := acl.encode(); !bytes.Equal(got, tc.v) {
			t.Errorf("%s: encode = %x, want %x", tc.name, got, tc.v)
		}
	}
	if acl, err := parseACL(aclValue()); err != nil || acl != nil {
		t.Errorf("header alone: %v, %v; want no ACL", acl, err)
	}

	for _, tc := range []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"short header", []byte{2, 0}},
		{"version 1", withVersion(1)},
		{"version 3", withVersion(3)},
		{"partial entry", equiv644[:len(equiv644)-3]},
		{"trailing bytes", append(bytes.Clone(equiv644), 0)},
		{"no owner", aclValue(owningGroup(4), other(4))},
		{"no owning group", aclValue(owner(6), other(4))},
		{"no other", aclValue(owner(6), owningGroup(4))},
		{"only other", aclValue(other(4))},
		{"owner twice", aclValue(owner(6), owner(6), owningGroup(4), other(4))},
		{"other twice", aclValue(owner(6), owningGroup(4), other(4), other(4))},
		{"entry after other", aclValue(owner(6), owningGroup(4), other(4), user(5, 4))},
		{"wrong order", aclValue(owningGroup(4), owner(6), other(4))},
		{"named user after owning group", aclValue(owner(6), owningGroup(4), user(5, 4), mask(4), other(4))},
		{"named user without mask", aclValue(owner(6), user(5, 4), owningGroup(4), other(4))},
		{"named group without mask", aclValue(owner(6), owningGroup(4), group(5, 4), other(4))},
		{"mask twice", aclValue(owner(6), owningGroup(4), mask(4), mask(4), other(4))},
		{"named user without id", aclValue(owner(6), user(aclUndefinedID, 4), owningGroup(4), mask(4), other(4))},
		{"unknown tag", aclValue(owner(6), owningGroup(4), aclEntry{tag: 0x40}, other(4))},
		{"permission bits past rwx", aclValue(owner(0o10), owningGroup(4), other(4))},
	} {
		if _, err := parseACL(tc.v); err == nil {
			t.Errorf("%s: parsed", tc.name)
		} else {
			mustErr(t, err, ErrInvalid)
		}
	}
}

func TestACLChmod(t *testing.T) {
	acl := posixACL{owner(6), user(1000, 7), owningGroup(4), mask(6), other(4)}
	acl.chmod(0o751)
	want := posixACL{owner(7), user(1000, 7), owningGroup(4), mask(5), other(1)}
	if !bytes.Equal(acl.encode(), want.encode()) {
		t.Errorf("with a mask: %v, want %v", acl, want)
	}
	acl = posixACL{owner(6), owningGroup(4), other(4)}
	acl.chmod(0o705)
	want = posixACL{owner(7), owningGroup(0), other(5)}
	if !bytes.Equal(acl.encode(), want.encode()) {
		t.Errorf("without a mask: %v, want %v", acl, want)
	}
}

// lastUpdate returns the newest event, which must be an update of ino.
func lastUpdate(t *testing.T, ns *Namespace, ino Inode) Event {
	t.Helper()
	evs := allEvents(t, ns)
	ev := evs[len(evs)-1]
	if ev.Kind != EventUpdate || ev.NewEntry == nil || ev.NewEntry.Attr.Inode != ino {
		t.Fatalf("last event %+v, want an update of %d", ev, ino)
	}
	return ev
}

func TestAccessACLEquivalentSetsModeOnly(t *testing.T) {
	ns, ctx := newNS(t)
	f, err := ns.Create(ctx, RootInode, "f", CreateRequest{Mode: S_IFREG | S_ISUID | 0o600, Exclusive: true})
	ok(t, err)

	cctx, ch := WithChanges(ctx)
	ok(t, ns.SetXattr(cctx, f.Inode, XattrACLAccess, aclValue(owner(6), owningGroup(4), other(4)), 0))
	a, err := ns.GetAttr(ctx, f.Inode)
	ok(t, err)
	if a.Mode != S_IFREG|S_ISUID|0o644 {
		t.Errorf("mode %#o, want %#o", a.Mode, S_IFREG|S_ISUID|0o644)
	}
	if a.Ctime <= f.Ctime || a.Generation <= f.Generation {
		t.Errorf("ctime %d generation %d, were %d %d: not bumped", a.Ctime, a.Generation, f.Ctime, f.Generation)
	}
	_, err = ns.GetXattr(ctx, f.Inode, XattrACLAccess)
	mustErr(t, err, ErrNoAttr)
	if l, err := ns.ListXattr(ctx, f.Inode); err != nil || len(l) != 0 {
		t.Errorf("xattrs %q, %v; want none", l, err)
	}
	if got := ch.Attrs(); len(got) != 1 || got[0] != a {
		t.Errorf("changes %+v, want [%+v]", got, a)
	}
	ev := lastUpdate(t, ns, f.Inode)
	if ev.NewEntry.Attr != a || len(ev.NewEntry.Xattrs) != 0 {
		t.Errorf("event entry %+v, want attributes %+v and no xattrs", ev.NewEntry, a)
	}

	// An equivalent ACL drops a stored one.
	ok(t, ns.SetXattr(ctx, f.Inode, XattrACLAccess, aclValue(owner(6), user(7, 6), owningGroup(4), mask(6), other(0)), 0))
	if _, err := ns.GetXattr(ctx, f.Inode, XattrACLAccess); err != nil {
		t.Fatalf("ACL with a named user not stored: %v", err)
	}
	ok(t, ns.SetXattr(ctx, f.Inode, XattrACLAccess, aclValue(owner(7), owningGroup(5), other(5)), XattrCreate))
	_, err = ns.GetXattr(ctx, f.Inode, XattrACLAccess)
	mustErr(t, err, ErrNoAttr)
	if a, _ := ns.GetAttr(ctx, f.Inode); a.Mode != S_IFREG|S_ISUID|0o755 {
		t.Errorf("mode %#o, want %#o", a.Mode, S_IFREG|S_ISUID|0o755)
	}
	checkInvariants(t, ns)
}

func TestAccessACLStoredWithMask(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	v := aclValue(owner(6), user(1000, 7), owningGroup(4), group(20, 4), mask(5), other(0))

	cctx, ch := WithChanges(ctx)
	ok(t, ns.SetXattr(cctx, f.Inode, XattrACLAccess, v, 0))
	a, err := ns.GetAttr(ctx, f.Inode)
	ok(t, err)
	if a.Mode != S_IFREG|0o650 {
		t.Errorf("mode %#o, want %#o (group bits from the mask)", a.Mode, S_IFREG|0o650)
	}
	got, err := ns.GetXattr(ctx, f.Inode, XattrACLAccess)
	ok(t, err)
	if !bytes.Equal(got, v) {
		t.Errorf("stored ACL %x, want %x", got, v)
	}
	if c := ch.Attrs(); len(c) != 1 || c[0] != a {
		t.Errorf("changes %+v, want [%+v]", c, a)
	}
	ev := lastUpdate(t, ns, f.Inode)
	if ev.NewEntry.Attr != a || !bytes.Equal(ev.NewEntry.Xattrs[XattrACLAccess], v) {
		t.Errorf("event entry %+v, want attributes %+v and the ACL", ev.NewEntry, a)
	}

	// Removing the ACL leaves the mode.
	ok(t, ns.RemoveXattr(ctx, f.Inode, XattrACLAccess))
	if b, _ := ns.GetAttr(ctx, f.Inode); b.Mode != a.Mode {
		t.Errorf("mode after removing the ACL %#o, want %#o", b.Mode, a.Mode)
	}
	checkInvariants(t, ns)
}

func TestChmodUpdatesAccessACL(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	ok(t, ns.SetXattr(ctx, f.Inode, XattrACLAccess, aclValue(owner(6), user(1000, 7), owningGroup(4), mask(6), other(4)), 0))

	m := uint32(0o2741)
	cctx, ch := WithChanges(ctx)
	a, err := ns.SetAttr(cctx, f.Inode, SetAttrRequest{Mode: &m})
	ok(t, err)
	if a.Mode != S_IFREG|0o2741 {
		t.Errorf("mode %#o", a.Mode)
	}
	got, err := ns.GetXattr(ctx, f.Inode, XattrACLAccess)
	ok(t, err)
	want := aclValue(owner(7), user(1000, 7), owningGroup(4), mask(4), other(1))
	if !bytes.Equal(got, want) {
		t.Errorf("ACL after chmod %x, want %x", got, want)
	}
	if c := ch.Attrs(); len(c) != 1 || c[0] != a {
		t.Errorf("changes %+v, want [%+v]", c, a)
	}
	if ev := lastUpdate(t, ns, f.Inode); !bytes.Equal(ev.NewEntry.Xattrs[XattrACLAccess], want) {
		t.Errorf("event ACL %x, want %x", ev.NewEntry.Xattrs[XattrACLAccess], want)
	}

	// A file without an ACL gains none.
	g := mkfile(t, ns, RootInode, "g")
	_, err = ns.SetAttr(ctx, g.Inode, SetAttrRequest{Mode: &m})
	ok(t, err)
	_, err = ns.GetXattr(ctx, g.Inode, XattrACLAccess)
	mustErr(t, err, ErrNoAttr)
	checkInvariants(t, ns)
}

func TestSetACLInvalid(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	d := mkdir(t, ns, RootInode, "d")
	bad := [][]byte{
		nil,
		{1, 0, 0, 0},
		aclValue(owner(6), owningGroup(4), other(4))[:9],
		aclValue(owner(6), user(5, 6), owningGroup(4), other(4)),
		aclValue(owner(6), owningGroup(4)),
	}
	for _, v := range bad {
		mustErr(t, ns.SetXattr(ctx, f.Inode, XattrACLAccess, v, 0), ErrInvalid)
		mustErr(t, ns.SetXattr(ctx, d.Inode, XattrACLDefault, v, 0), ErrInvalid)
	}
	a, err := ns.GetAttr(ctx, f.Inode)
	ok(t, err)
	if a != f {
		t.Errorf("attributes changed by rejected ACLs: %+v, were %+v", a, f)
	}
	// A valid default ACL is kept as it is, equivalent or not.
	v := aclValue(owner(7), owningGroup(5), other(5))
	ok(t, ns.SetXattr(ctx, d.Inode, XattrACLDefault, v, 0))
	if got, err := ns.GetXattr(ctx, d.Inode, XattrACLDefault); err != nil || !bytes.Equal(got, v) {
		t.Errorf("default ACL %x, %v; want %x", got, err, v)
	}
}
