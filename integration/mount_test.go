package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
	"github.com/kelpfs/kelp/mount/fusefs"
)

func mountCluster(t *testing.T, adjust func(*mount.Config)) (*cluster.Cluster, *cluster.Mount) {
	t.Helper()
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true})
	return c, c.MountFiler(adjust)
}

// TestMountFiles writes files of several sizes (inline, one chunk, many
// chunks with a ragged end), reads them back through the mount, and again
// through a second mount, which must see them whole (close-to-open).
func TestMountFiles(t *testing.T) {
	c, m := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	sizes := map[string]int{"empty": 0, "tiny": 10, "inline": 4000, "small": 70 << 10, "chunk": 1 << 20, "multi": 5<<20 + 12345}
	want := map[string][]byte{}
	for name, n := range sizes {
		data := randomBytes(t, n)
		want[name] = data
		if err := os.WriteFile(m.Path(name), data, 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	m2 := c.MountFiler(nil)
	for name, data := range want {
		for _, dir := range []*cluster.Mount{m, m2} {
			got, err := os.ReadFile(dir.Path(name))
			if err != nil {
				t.Fatalf("read %s on %s: %v", name, dir.Dir, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s on %s: got %d bytes, want %d (content differs: %v)", name, dir.Dir, len(got), len(data), len(got) == len(data))
			}
			st, err := os.Stat(dir.Path(name))
			if err != nil || st.Size() != int64(len(data)) {
				t.Fatalf("stat %s: %v size %d", name, err, st.Size())
			}
		}
	}
}

// TestMountOverwriteAndAppend: random overwrites inside a file, appends
// through O_APPEND and a truncate, compared with the same on a local file.
func TestMountOverwriteAndAppend(t *testing.T) {
	_, m := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	local := filepath.Join(t.TempDir(), "f")
	remote := m.Path("f")
	base := randomBytes(t, 3<<20)
	for _, p := range []string{local, remote} {
		if err := os.WriteFile(p, base, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	patch := randomBytes(t, 300<<10)
	ops := func(p string) {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, 1<<20 - 100, 2<<20 + 7, 3<<20 - 10} {
			if _, err := f.WriteAt(patch[:1000+off%5000], off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		a, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write(patch); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 2<<20+500); err != nil {
			t.Fatal(err)
		}
		g, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.WriteAt([]byte("after truncate"), 3<<20); err != nil { // leaves a hole
			t.Fatal(err)
		}
		if err := g.Sync(); err != nil {
			t.Fatalf("fsync: %v", err)
		}
		g.Close()
	}
	ops(local)
	ops(remote)
	l, _ := os.ReadFile(local)
	r, err := os.ReadFile(remote)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l, r) {
		t.Fatalf("mount differs from local: %d vs %d bytes", len(r), len(l))
	}
}

// TestMountNamespace covers directories, renames, links, symlinks,
// xattrs and the errno values programs expect.
func TestMountNamespace(t *testing.T) {
	_, m := mountCluster(t, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	wantErrno := func(err error, want syscall.Errno) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
	}
	must(os.MkdirAll(m.Path("a", "b", "c"), 0o755))
	must(os.WriteFile(m.Path("a", "b", "f"), []byte("hello"), 0o600))
	wantErrno(os.Mkdir(m.Path("a"), 0o755), syscall.EEXIST)
	wantErrno(syscall.Rmdir(m.Path("a", "b")), syscall.ENOTEMPTY)
	_, err := os.Stat(m.Path("nope"))
	wantErrno(err, syscall.ENOENT)
	wantErrno(os.Rename(m.Path("a"), m.Path("a", "b", "c", "inside")), syscall.EINVAL)

	// Hard links share an inode and count it.
	must(os.Link(m.Path("a", "b", "f"), m.Path("g")))
	st1, _ := os.Stat(m.Path("a", "b", "f"))
	st2, _ := os.Stat(m.Path("g"))
	s1, s2 := st1.Sys().(*syscall.Stat_t), st2.Sys().(*syscall.Stat_t)
	if s1.Ino != s2.Ino || s2.Nlink != 2 {
		t.Fatalf("hard link: inodes %d/%d nlink %d", s1.Ino, s2.Ino, s2.Nlink)
	}
	// Rename a directory with contents.
	must(os.Rename(m.Path("a", "b"), m.Path("moved")))
	if b, err := os.ReadFile(m.Path("moved", "f")); err != nil || string(b) != "hello" {
		t.Fatalf("after rename: %q %v", b, err)
	}
	// Symlinks.
	must(os.Symlink("moved/f", m.Path("link")))
	if tgt, err := os.Readlink(m.Path("link")); err != nil || tgt != "moved/f" {
		t.Fatalf("readlink: %q %v", tgt, err)
	}
	if b, err := os.ReadFile(m.Path("link")); err != nil || string(b) != "hello" {
		t.Fatalf("through symlink: %q %v", b, err)
	}
	// chmod, chown, utimes.
	must(os.Chmod(m.Path("g"), 0o640))
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	must(os.Chtimes(m.Path("g"), mt, mt))
	st, _ := os.Stat(m.Path("g"))
	if st.Mode().Perm() != 0o640 || !st.ModTime().Equal(mt) {
		t.Fatalf("after chmod/chtimes: %v %v", st.Mode(), st.ModTime())
	}
	// xattrs.
	must(syscall.Setxattr(m.Path("g"), "user.color", []byte("blue"), 0))
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(m.Path("g"), "user.color", buf)
	if err != nil || string(buf[:n]) != "blue" {
		t.Fatalf("getxattr: %q %v", buf[:n], err)
	}
	_, err = syscall.Getxattr(m.Path("g"), "user.none", buf)
	wantErrno(err, syscall.ENODATA)
	// Listing.
	names, err := os.ReadDir(m.Dir)
	must(err)
	var got []string
	for _, e := range names {
		got = append(got, e.Name())
	}
	if len(got) != 4 { // a, g, link, moved
		t.Fatalf("root lists %v", got)
	}
	// An unlinked file stays readable through an open descriptor.
	f, err := os.Open(m.Path("g"))
	must(err)
	must(os.Remove(m.Path("g")))
	must(os.Remove(m.Path("moved", "f")))
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read after unlink: %q %v", b, err)
	}
	f.Close()
	// rmdir of the now empty tree.
	must(os.RemoveAll(m.Path("moved")))
	must(os.RemoveAll(m.Path("a")))
}

// TestMountReadAhead: as root the mount raises the kernel's read-ahead for
// itself past the 128 KiB the kernel gives FUSE mounts (cold sequential
// reads are several times faster; see docs/mount.md).
func TestMountReadAhead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting a mount's read-ahead through sysfs needs root")
	}
	_, m := mountCluster(t, nil)
	var st syscall.Stat_t
	if err := syscall.Stat(m.Dir, &st); err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("the mount's read-ahead: %v", err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(fusefs.DefaultReadAheadKB) {
		t.Fatalf("%s is %s, want %d", p, got, fusefs.DefaultReadAheadKB)
	}
}
