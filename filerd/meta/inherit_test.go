package meta

import (
	"bytes"
	"testing"
)

// sharedDefault is a default ACL granting user 1000 everything:
// user::rwx,user:1000:rwx,group::r-x,mask::rwx,other::---.
var sharedDefault = aclValue(owner(7), user(1000, 7), owningGroup(5), mask(7), other(0))

// wantXattr fails unless ino's xattr name is want (nil: absent).
func wantXattr(t *testing.T, ns *Namespace, ino Inode, name string, want []byte) {
	t.Helper()
	got, err := ns.GetXattr(t.Context(), ino, name)
	if want == nil {
		mustErr(t, err, ErrNoAttr)
		return
	}
	ok(t, err)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s of %d = %x, want %x", name, ino, got, want)
	}
}

// lastCreate returns the newest event, which must be the creation of ino.
func lastCreate(t *testing.T, ns *Namespace, ino Inode) Event {
	t.Helper()
	evs := allEvents(t, ns)
	ev := evs[len(evs)-1]
	if ev.Kind != EventCreate || ev.NewEntry == nil || ev.NewEntry.Attr.Inode != ino {
		t.Fatalf("last event %+v, want the creation of %d", ev, ino)
	}
	return ev
}

func TestInheritSetgidGroup(t *testing.T) {
	ns, ctx := newNS(t)
	d, err := ns.Mkdir(ctx, RootInode, "d", S_ISGID|0o775, 1, 50)
	ok(t, err)
	f, err := ns.Create(ctx, d.Inode, "f", CreateRequest{Mode: 0o644, Uid: 2, Gid: 3, Exclusive: true})
	ok(t, err)
	s, err := ns.MkdirUmask(ctx, d.Inode, "s", 0o755, 0o022, 2, 3)
	ok(t, err)
	p, err := ns.Mknod(ctx, d.Inode, "p", S_IFIFO|0o644, 2, 3, 0)
	ok(t, err)
	l, err := ns.Symlink(ctx, d.Inode, "l", "f", 2, 3)
	ok(t, err)
	if f.Gid != 50 || f.Mode != S_IFREG|0o644 {
		t.Errorf("file gid %d mode %#o, want 50 %#o", f.Gid, f.Mode, S_IFREG|0o644)
	}
	if s.Gid != 50 || s.Mode != S_IFDIR|S_ISGID|0o755 {
		t.Errorf("subdirectory gid %d mode %#o, want 50 %#o", s.Gid, s.Mode, S_IFDIR|S_ISGID|0o755)
	}
	if p.Gid != 50 || l.Gid != 50 || l.Mode != S_IFLNK|0o777 {
		t.Errorf("fifo gid %d, symlink gid %d mode %#o; want 50, 50 %#o", p.Gid, l.Gid, l.Mode, S_IFLNK|0o777)
	}
	// The subdirectory passes it on.
	ss, err := ns.Mkdir(ctx, s.Inode, "ss", 0o700, 2, 3)
	ok(t, err)
	if ss.Gid != 50 || ss.Mode&S_ISGID == 0 {
		t.Errorf("sub-subdirectory gid %d mode %#o, want 50 with S_ISGID", ss.Gid, ss.Mode)
	}
	// The event and the recorded changes carry the inherited attributes.
	cctx, ch := WithChanges(ctx)
	g, err := ns.Create(cctx, d.Inode, "g", CreateRequest{Mode: 0o600, Uid: 2, Gid: 3, Exclusive: true})
	ok(t, err)
	if ev := lastCreate(t, ns, g.Inode); ev.NewEntry.Attr != g || g.Gid != 50 {
		t.Errorf("event attributes %+v, create returned %+v (gid 50)", ev.NewEntry.Attr, g)
	}
	found := false
	for _, a := range ch.Attrs() {
		found = found || a == g
	}
	if !found {
		t.Errorf("changes %+v lack %+v", ch.Attrs(), g)
	}

	// Without setgid the caller's group stays.
	plain := mkdir(t, ns, RootInode, "plain")
	h, err := ns.Create(ctx, plain.Inode, "h", CreateRequest{Mode: 0o644, Uid: 2, Gid: 3, Exclusive: true})
	ok(t, err)
	e, err := ns.Mkdir(ctx, plain.Inode, "e", 0o755, 2, 3)
	ok(t, err)
	if h.Gid != 3 || e.Gid != 3 || e.Mode&S_ISGID != 0 {
		t.Errorf("in a plain directory: file gid %d, directory gid %d mode %#o; want 3, 3 without S_ISGID", h.Gid, e.Gid, e.Mode)
	}
	checkInvariants(t, ns)
}

func TestInheritSetgidStripped(t *testing.T) {
	ns, ctx := newNS(t)
	d, err := ns.Mkdir(ctx, RootInode, "d", S_ISGID|0o777, 1, 50)
	ok(t, err)
	plain, err := ns.Mkdir(ctx, RootInode, "plain", 0o777, 1, 50)
	ok(t, err)
	for _, tc := range []struct {
		name     string
		dir      Inode
		mode     uint32
		uid, gid uint32
		want     uint32
	}{
		{"outsider", d.Inode, S_IFREG | S_ISGID | 0o755, 2, 3, S_IFREG | 0o755},
		{"outsider fifo", d.Inode, S_IFIFO | S_ISGID | 0o750, 2, 3, S_IFIFO | 0o750},
		{"member", d.Inode, S_IFREG | S_ISGID | 0o755, 2, 50, S_IFREG | S_ISGID | 0o755},
		{"root", d.Inode, S_IFREG | S_ISGID | 0o755, 0, 3, S_IFREG | S_ISGID | 0o755},
		{"no group execute", d.Inode, S_IFREG | S_ISGID | 0o745, 2, 3, S_IFREG | S_ISGID | 0o745},
		{"plain directory", plain.Inode, S_IFREG | S_ISGID | 0o755, 2, 3, S_IFREG | S_ISGID | 0o755},
	} {
		a, err := ns.Create(ctx, tc.dir, tc.name, CreateRequest{Mode: tc.mode, Uid: tc.uid, Gid: tc.gid, Exclusive: true})
		ok(t, err)
		if a.Mode != tc.want {
			t.Errorf("%s: mode %#o, want %#o", tc.name, a.Mode, tc.want)
		}
	}
	// A directory keeps (and gets) S_ISGID whoever makes it.
	s, err := ns.Mkdir(ctx, d.Inode, "s", S_ISGID|0o755, 2, 3)
	ok(t, err)
	if s.Mode != S_IFDIR|S_ISGID|0o755 {
		t.Errorf("directory mode %#o, want %#o", s.Mode, S_IFDIR|S_ISGID|0o755)
	}
}

func TestInheritDefaultACLFile(t *testing.T) {
	ns, ctx := newNS(t)
	d := mkdir(t, ns, RootInode, "d")
	ok(t, ns.SetXattr(ctx, d.Inode, XattrACLDefault, sharedDefault, 0))

	cctx, ch := WithChanges(ctx)
	f, err := ns.Create(cctx, d.Inode, "f", CreateRequest{Mode: 0o666, Umask: 0o022, Uid: 2, Gid: 3, Exclusive: true})
	ok(t, err)
	// The umask is not applied; the create mode masks the ACL instead.
	if f.Mode != S_IFREG|0o660 {
		t.Errorf("mode %#o, want %#o", f.Mode, S_IFREG|0o660)
	}
	access := aclValue(owner(6), user(1000, 7), owningGroup(5), mask(6), other(0))
	wantXattr(t, ns, f.Inode, XattrACLAccess, access)
	wantXattr(t, ns, f.Inode, XattrACLDefault, nil)
	if a, err := ns.GetAttr(ctx, f.Inode); err != nil || a != f {
		t.Errorf("stored attributes %+v, %v; create returned %+v", a, err, f)
	}
	ev := lastCreate(t, ns, f.Inode)
	if ev.NewEntry.Attr != f || len(ev.NewEntry.Xattrs) != 1 || !bytes.Equal(ev.NewEntry.Xattrs[XattrACLAccess], access) {
		t.Errorf("event entry %+v, want attributes %+v and the access ACL", ev.NewEntry, f)
	}
	found := false
	for _, a := range ch.Attrs() {
		found = found || a == f
	}
	if !found {
		t.Errorf("changes %+v lack %+v", ch.Attrs(), f)
	}

	// A mode asking for less gets less, in the ACL too.
	g, err := ns.Create(ctx, d.Inode, "g", CreateRequest{Mode: 0o640, Umask: 0o077, Exclusive: true})
	ok(t, err)
	if g.Mode != S_IFREG|0o640 {
		t.Errorf("mode %#o, want %#o", g.Mode, S_IFREG|0o640)
	}
	wantXattr(t, ns, g.Inode, XattrACLAccess, aclValue(owner(6), user(1000, 7), owningGroup(5), mask(4), other(0)))

	// Mknod inherits as Create does.
	p, err := ns.Create(ctx, d.Inode, "p", CreateRequest{Mode: S_IFIFO | 0o666, Umask: 0o022, Exclusive: true})
	ok(t, err)
	if p.Mode != S_IFIFO|0o660 {
		t.Errorf("fifo mode %#o, want %#o", p.Mode, S_IFIFO|0o660)
	}
	wantXattr(t, ns, p.Inode, XattrACLAccess, access)
	checkInvariants(t, ns)
}

func TestInheritDefaultACLDir(t *testing.T) {
	ns, ctx := newNS(t)
	d := mkdir(t, ns, RootInode, "d")
	ok(t, ns.SetXattr(ctx, d.Inode, XattrACLDefault, sharedDefault, 0))

	s, err := ns.MkdirUmask(ctx, d.Inode, "s", 0o777, 0o022, 2, 3)
	ok(t, err)
	if s.Mode != S_IFDIR|0o770 {
		t.Errorf("mode %#o, want %#o", s.Mode, S_IFDIR|0o770)
	}
	wantXattr(t, ns, s.Inode, XattrACLDefault, sharedDefault)
	// The default ACL masked by 0777 asks for no less than it says.
	wantXattr(t, ns, s.Inode, XattrACLAccess, sharedDefault)
	ev := lastCreate(t, ns, s.Inode)
	if ev.NewEntry.Attr != s || !bytes.Equal(ev.NewEntry.Xattrs[XattrACLDefault], sharedDefault) ||
		!bytes.Equal(ev.NewEntry.Xattrs[XattrACLAccess], sharedDefault) {
		t.Errorf("event entry %+v, want attributes %+v and both ACLs", ev.NewEntry, s)
	}

	// It passes the default ACL on.
	f, err := ns.Create(ctx, s.Inode, "f", CreateRequest{Mode: 0o644, Umask: 0o022, Exclusive: true})
	ok(t, err)
	if f.Mode != S_IFREG|0o640 {
		t.Errorf("grandchild mode %#o, want %#o", f.Mode, S_IFREG|0o640)
	}
	wantXattr(t, ns, f.Inode, XattrACLAccess, aclValue(owner(6), user(1000, 7), owningGroup(5), mask(4), other(0)))
	checkInvariants(t, ns)
}

func TestInheritDefaultACLEquivalent(t *testing.T) {
	ns, ctx := newNS(t)
	d := mkdir(t, ns, RootInode, "d")
	def := aclValue(owner(7), owningGroup(5), other(4))
	ok(t, ns.SetXattr(ctx, d.Inode, XattrACLDefault, def, 0))

	// An inherited ACL a mode can say is not stored: only the mode,
	// masked by the ACL and not by the umask.
	f, err := ns.Create(ctx, d.Inode, "f", CreateRequest{Mode: 0o666, Umask: 0o077, Exclusive: true})
	ok(t, err)
	if f.Mode != S_IFREG|0o644 {
		t.Errorf("mode %#o, want %#o", f.Mode, S_IFREG|0o644)
	}
	wantXattr(t, ns, f.Inode, XattrACLAccess, nil)
	if ev := lastCreate(t, ns, f.Inode); len(ev.NewEntry.Xattrs) != 0 {
		t.Errorf("event xattrs %v, want none", ev.NewEntry.Xattrs)
	}
	s, err := ns.MkdirUmask(ctx, d.Inode, "s", 0o777, 0o077, 0, 0)
	ok(t, err)
	if s.Mode != S_IFDIR|0o754 {
		t.Errorf("directory mode %#o, want %#o", s.Mode, S_IFDIR|0o754)
	}
	wantXattr(t, ns, s.Inode, XattrACLAccess, nil)
	wantXattr(t, ns, s.Inode, XattrACLDefault, def)
	checkInvariants(t, ns)
}

func TestInheritUmask(t *testing.T) {
	ns, ctx := newNS(t)
	plain := mkdir(t, ns, RootInode, "plain")
	acl := mkdir(t, ns, RootInode, "acl")
	ok(t, ns.SetXattr(ctx, acl.Inode, XattrACLDefault, aclValue(owner(7), owningGroup(7), other(7)), 0))
	// A default ACL of no entries is none (Linux removes it instead).
	empty := mkdir(t, ns, RootInode, "empty")
	ok(t, ns.SetXattr(ctx, empty.Inode, XattrACLDefault, aclValue(), 0))

	for _, tc := range []struct {
		dir        Inode
		file, subd uint32 // the modes with umask 027 from 0666 and 0777
	}{
		{plain.Inode, 0o640, 0o750},
		{empty.Inode, 0o640, 0o750},
		{acl.Inode, 0o666, 0o777},
	} {
		f, err := ns.Create(ctx, tc.dir, "f", CreateRequest{Mode: 0o666, Umask: 0o027, Exclusive: true})
		ok(t, err)
		s, err := ns.MkdirUmask(ctx, tc.dir, "s", 0o777, 0o027, 0, 0)
		ok(t, err)
		if f.Mode != S_IFREG|tc.file || s.Mode != S_IFDIR|tc.subd {
			t.Errorf("in %d: file mode %#o directory mode %#o, want %#o %#o", tc.dir, f.Mode, s.Mode, S_IFREG|tc.file, S_IFDIR|tc.subd)
		}
		// Symlinks are 0777 whatever the umask and take no ACL.
		l, err := ns.Symlink(ctx, tc.dir, "l", "f", 0, 0)
		ok(t, err)
		if l.Mode != S_IFLNK|0o777 {
			t.Errorf("in %d: symlink mode %#o", tc.dir, l.Mode)
		}
		wantXattr(t, ns, l.Inode, XattrACLAccess, nil)
	}
	// Without a umask (Mkdir, Mknod, older clients) the mode stays.
	m, err := ns.Mknod(ctx, plain.Inode, "m", S_IFIFO|0o666, 0, 0, 0)
	ok(t, err)
	n, err := ns.Mkdir(ctx, plain.Inode, "n", 0o777, 0, 0)
	ok(t, err)
	if m.Mode != S_IFIFO|0o666 || n.Mode != S_IFDIR|0o777 {
		t.Errorf("without a umask: fifo %#o directory %#o", m.Mode, n.Mode)
	}
	// A non-exclusive create of an existing file leaves it as it is.
	f, err := ns.Create(ctx, acl.Inode, "f", CreateRequest{Mode: 0o600, Umask: 0o077})
	ok(t, err)
	if f.Mode != S_IFREG|0o666 {
		t.Errorf("reused file mode %#o, want %#o", f.Mode, S_IFREG|0o666)
	}
	checkInvariants(t, ns)
}

func TestInheritSetgidAndDefaultACL(t *testing.T) {
	ns, ctx := newNS(t)
	d, err := ns.Mkdir(ctx, RootInode, "d", S_ISGID|0o775, 1, 50)
	ok(t, err)
	ok(t, ns.SetXattr(ctx, d.Inode, XattrACLDefault, sharedDefault, 0))
	s, err := ns.MkdirUmask(ctx, d.Inode, "s", 0o777, 0o022, 2, 3)
	ok(t, err)
	if s.Gid != 50 || s.Mode != S_IFDIR|S_ISGID|0o770 {
		t.Errorf("directory gid %d mode %#o, want 50 %#o", s.Gid, s.Mode, S_IFDIR|S_ISGID|0o770)
	}
	wantXattr(t, ns, s.Inode, XattrACLDefault, sharedDefault)
	checkInvariants(t, ns)
}
