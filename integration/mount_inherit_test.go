package integration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// withUmask runs the rest of the test under umask (the process's, so the
// test must not run in parallel with others that create files).
func withUmask(t *testing.T, umask int) {
	old := syscall.Umask(umask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// lstat returns the stat of p, failing the test if it fails.
func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

// TestMountInheritSetgid: in a setgid directory new inodes take the
// directory's group, and new directories the setgid bit too, as seen by
// this mount and by a second one that learns them from the filer.
func TestMountInheritSetgid(t *testing.T) {
	c, m := mountCluster(t, nil)
	withUmask(t, 0o022)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	d := m.Path("d")
	must(os.Mkdir(d, 0o755))
	must(syscall.Chmod(d, 0o2755)) // chmod g+s
	must(os.Chown(d, -1, 1234))
	if st := lstat(t, d); st.Gid != 1234 || st.Mode&syscall.S_ISGID == 0 {
		t.Fatalf("d: gid %d mode %#o, want 1234 with S_ISGID", st.Gid, st.Mode)
	}
	f, err := os.OpenFile(filepath.Join(d, "f"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	must(err)
	must(f.Close())
	must(os.Mkdir(filepath.Join(d, "sub"), 0o755))
	must(syscall.Mkfifo(filepath.Join(d, "fifo"), 0o644))
	must(os.Symlink("f", filepath.Join(d, "link")))

	m2 := c.MountFiler(nil)
	for _, mt := range []*cluster.Mount{m, m2} {
		for _, name := range []string{"f", "sub", "fifo", "link"} {
			if st := lstat(t, mt.Path("d", name)); st.Gid != 1234 {
				t.Errorf("%s: gid %d, want 1234", mt.Path("d", name), st.Gid)
			}
		}
		if st := lstat(t, mt.Path("d", "sub")); st.Mode != syscall.S_IFDIR|syscall.S_ISGID|0o755 {
			t.Errorf("%s: mode %#o, want %#o", mt.Path("d", "sub"), st.Mode, syscall.S_IFDIR|syscall.S_ISGID|0o755)
		}
		if st := lstat(t, mt.Path("d", "f")); st.Mode != syscall.S_IFREG|0o644 {
			t.Errorf("%s: mode %#o, want %#o", mt.Path("d", "f"), st.Mode, syscall.S_IFREG|0o644)
		}
	}
	// Outside a setgid directory the creator's group stays.
	must(os.Mkdir(m.Path("plain"), 0o755))
	if st := lstat(t, m.Path("plain")); st.Gid != uint32(os.Getegid()) || st.Mode&syscall.S_ISGID != 0 {
		t.Errorf("plain: gid %d mode %#o, want %d without S_ISGID", st.Gid, st.Mode, os.Getegid())
	}
}

// ACL entry tags of the Linux posix_acl xattr format.
const (
	aclTagUserObj  = 0x01
	aclTagUser     = 0x02
	aclTagGroupObj = 0x04
	aclTagMask     = 0x10
	aclTagOther    = 0x20
)

// aclXattr encodes entries {tag, perm, id} as a posix_acl xattr value:
// version 2, then 8 bytes per entry, little endian.
func aclXattr(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

const aclNoID = 0xffffffff

// sharedACL is user::<u>,user:1000:rwx,group::r-x,mask::<mask>,other::---.
func sharedACL(u, mask uint32) []byte {
	return aclXattr([3]uint32{aclTagUserObj, u, aclNoID}, [3]uint32{aclTagUser, 7, 1000},
		[3]uint32{aclTagGroupObj, 5, aclNoID}, [3]uint32{aclTagMask, mask, aclNoID}, [3]uint32{aclTagOther, 0, aclNoID})
}

// wantACL fails unless p's xattr name is want (nil: absent).
func wantACL(t *testing.T, p, name string, want []byte) {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := syscall.Getxattr(p, name, buf)
	if want == nil {
		if !errors.Is(err, syscall.ENODATA) {
			t.Errorf("%s of %s: %x, %v; want none", name, p, buf[:max(n, 0)], err)
		}
		return
	}
	if err != nil || !bytes.Equal(buf[:n], want) {
		t.Errorf("%s of %s = %x, %v; want %x", name, p, buf[:max(n, 0)], err, want)
	}
}

// wantMode fails unless p's mode is want.
func wantMode(t *testing.T, p string, want uint32) {
	t.Helper()
	if st := lstat(t, p); st.Mode != want {
		t.Errorf("%s: mode %#o, want %#o", p, st.Mode, want)
	}
}

// TestMountInheritDefaultACL: under a directory with a default ACL (as
// `setfacl -d -m u:1000:rwx` leaves), new inodes get an access ACL masked
// by the mode they were created with, and the umask (the process's and
// the mount's own) does not apply; elsewhere it does.
func TestMountInheritDefaultACL(t *testing.T) {
	c, m := mountCluster(t, nil)
	withUmask(t, 0o022)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	def := sharedACL(7, 7)
	d := m.Path("d2")
	must(os.Mkdir(d, 0o755))
	must(syscall.Setxattr(d, "system.posix_acl_default", def, 0))
	wantACL(t, d, "system.posix_acl_default", def)

	f, err := os.OpenFile(filepath.Join(d, "f"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	must(err)
	must(f.Close())
	must(syscall.Mkfifo(filepath.Join(d, "fifo"), 0o666))
	must(os.Mkdir(filepath.Join(d, "sub"), 0o777))
	must(os.Mkdir(m.Path("plain"), 0o777))
	pf, err := os.OpenFile(m.Path("plain", "f"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	must(err)
	must(pf.Close())

	access := sharedACL(6, 6) // user::rw-,user:1000:rwx,group::r-x,mask::rw-,other::---
	m2 := c.MountFiler(nil)
	for _, mt := range []*cluster.Mount{m, m2} {
		wantMode(t, mt.Path("d2", "f"), syscall.S_IFREG|0o660)
		wantACL(t, mt.Path("d2", "f"), "system.posix_acl_access", access)
		wantMode(t, mt.Path("d2", "fifo"), syscall.S_IFIFO|0o660)
		wantACL(t, mt.Path("d2", "fifo"), "system.posix_acl_access", access)
		wantMode(t, mt.Path("d2", "sub"), syscall.S_IFDIR|0o770)
		wantACL(t, mt.Path("d2", "sub"), "system.posix_acl_access", def)
		wantACL(t, mt.Path("d2", "sub"), "system.posix_acl_default", def)
		wantMode(t, mt.Path("plain"), syscall.S_IFDIR|0o755)
		wantMode(t, mt.Path("plain", "f"), syscall.S_IFREG|0o644)
		wantACL(t, mt.Path("plain", "f"), "system.posix_acl_access", nil)
	}

	// The mount's own umask is a umask too: on top of the process's,
	// and replaced by a default ACL.
	m3 := c.MountFiler(func(cfg *mount.Config) { cfg.Umask = 0o077 })
	must(os.WriteFile(m3.Path("d2", "g"), nil, 0o666))
	must(os.WriteFile(m3.Path("plain", "g"), nil, 0o666))
	must(os.Mkdir(m3.Path("plain", "s"), 0o777))
	wantMode(t, m3.Path("d2", "g"), syscall.S_IFREG|0o660)
	wantACL(t, m3.Path("d2", "g"), "system.posix_acl_access", access)
	wantMode(t, m3.Path("plain", "g"), syscall.S_IFREG|0o600)
	wantMode(t, m3.Path("plain", "s"), syscall.S_IFDIR|0o700)
}
