package integration

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// needPassthrough skips t when the mount cannot pass through (a kernel
// before 6.9 or without CONFIG_FUSE_PASSTHROUGH, or not root), except in
// CI on a kernel that has it: there it is a failure.
func needPassthrough(t *testing.T, m *cluster.Mount) {
	t.Helper()
	if m.FS.ImageStats().Passthrough {
		return
	}
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	var rel []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	parts := strings.SplitN(string(rel), ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	recent := major > 6 || major == 6 && minor >= 9
	if os.Getenv("CI") != "" && recent && os.Geteuid() == 0 {
		t.Fatalf("kernel %s as root but the mount does not pass through", rel)
	}
	t.Skipf("skipping: no FUSE passthrough here (kernel %s, euid %d; needs Linux 6.9+ and root)", rel, os.Geteuid())
}

// noHandlesOpen waits until the kernel has released every handle of m:
// it releases a closed file's handle after close(2) returns, and a
// passthrough open needs every other handle of the file gone (and a
// writer's release queues its image's fill).
func noHandlesOpen(t *testing.T, m *cluster.Mount) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for m.FS.OpenHandles() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handles still open", m.FS.OpenHandles())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMountPassthrough: a file written through the mount gets a local
// image, and a read-only open then passes through to it: the kernel reads
// the image itself. Each step checks the bytes read, and what the image
// store counted:
//   - read(2) and mmap of a passthrough handle return what was written;
//   - a truncate, an inline rewrite, a hard link and a rename through
//     the mount keep the image current;
//   - a lock taken through a passthrough handle lets it read what another
//     mount wrote meanwhile (the image is rewritten in place);
//   - a writer opened beside a passthrough reader goes through the mount
//     (its writes reach the cluster), the reader sees its bytes, what its
//     shared writable mapping writes (into the image, which the kernel
//     maps) reaches the cluster when it closes, and the image is dropped
//     once both close;
//   - a file changed through another mount is read from the cluster,
//     never from the stale image.
func TestMountPassthrough(t *testing.T) {
	c, a := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	needPassthrough(t, a)
	b := c.MountFiler(nil)
	path := a.Path("big")
	want := randomBytes(t, 3<<20+777)
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := a.FS.ImageStats(); st.Images != 1 || st.Bytes != int64(len(want)) {
		t.Fatalf("after writing %d bytes: %+v, want one image of them", len(want), st)
	}
	stats := a.FS.ImageStats
	settle := func() { t.Helper(); noHandlesOpen(t, a) }
	readAll := func(what, path string, want []byte) {
		t.Helper()
		settle()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes that differ from the %d expected", what, len(got), len(want))
		}
	}
	wantOpens := func(what string, pt, direct int64) {
		t.Helper()
		if st := stats(); st.PassthroughOpens != pt || st.DirectOpens != direct {
			t.Fatalf("%s: %d passthrough and %d direct opens, want %d and %d", what, st.PassthroughOpens, st.DirectOpens, pt, direct)
		}
	}

	readAll("read", path, want)
	wantOpens("a read-only open of a current image", 1, 0)
	if st := stats(); st.Filled != 0 {
		t.Fatalf("a file written alone: %+v, want its image written beside the writer, not filled", st)
	}

	if err := os.Truncate(path, 2<<20+5); err != nil {
		t.Fatal(err)
	}
	want = want[:2<<20+5]
	readAll("read after a truncate", path, want)
	wantOpens("after a truncate through the mount", 2, 0)

	// Small enough to be stored inline: the image follows the inline
	// commit of a rewrite.
	small := a.Path("small")
	if err := os.WriteFile(small, randomBytes(t, 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(small, 100); err != nil {
		t.Fatal(err)
	}
	sf, err := os.OpenFile(small, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	head := []byte("rewritten inline")
	if _, err := sf.WriteAt(head, 10); err != nil {
		t.Fatal(err)
	}
	if err := sf.Close(); err != nil {
		t.Fatal(err)
	}
	settle()
	gotSmall, err := os.ReadFile(small)
	if err != nil || len(gotSmall) != 100 || !bytes.Equal(gotSmall[10:10+len(head)], head) {
		t.Fatalf("small file after an inline rewrite: %d bytes, %v", len(gotSmall), err)
	}
	if got, err := os.ReadFile(b.Path("small")); err != nil || !bytes.Equal(got, gotSmall) {
		t.Fatalf("mount B reads the small file differently (%v)", err)
	}
	wantOpens("after an inline rewrite (the image passes through)", 3, 0)
	if err := os.Remove(small); err != nil {
		t.Fatal(err)
	}

	// A hard link and a rename change the inode (nlink, ctime), not
	// its content.
	if err := os.Link(path, a.Path("link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a.Path("link"), a.Path("renamed")); err != nil {
		t.Fatal(err)
	}
	readAll("read through a renamed hard link", a.Path("renamed"), want)
	wantOpens("after a link and a rename through the mount", 4, 0)
	if err := os.Remove(a.Path("renamed")); err != nil {
		t.Fatal(err)
	}

	// mmap of a passthrough handle maps the image.
	settle()
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wantOpens("open kept for the lock and writer steps", 5, 0)
	mm, err := syscall.Mmap(int(r.Fd()), 0, len(want), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	if !bytes.Equal(mm, want) {
		t.Fatal("mmap of a passthrough handle differs from what was written")
	}
	_ = syscall.Munmap(mm)

	// Mount B rewrites the file while r passes through; a read lock
	// taken through r must let it read B's bytes.
	want = randomBytes(t, len(want))
	if err := os.WriteFile(b.Path("big"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setlk(r, unix.F_SETLKW, unix.F_RDLCK, 0, 0); err != nil {
		t.Fatalf("read lock: %v", err)
	}
	got := make([]byte, len(want))
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("passthrough reader under a lock, after another mount's write: %v, bytes differ: %v", err, !bytes.Equal(got, want))
	}
	if st := stats(); st.Refreshed != 1 {
		t.Fatalf("refreshed images = %d, want 1", st.Refreshed)
	}
	if err := setlk(r, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}

	// A writer while r passes through: its IO goes through the mount,
	// and the image (which r reads) takes its bytes at once.
	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open for writing beside a passthrough reader: %v", err)
	}
	wantOpens("a writer beside a passthrough reader", 5, 1)
	patch := []byte("written beside a passthrough reader")
	if _, err := w.WriteAt(patch, 1<<20); err != nil {
		t.Fatal(err)
	}
	copy(want[1<<20:], patch)
	got = make([]byte, len(patch))
	if _, err := r.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, patch) {
		t.Fatalf("passthrough reader after a write: %q, %v; want %q", got, err, patch)
	}
	// A writer's shared writable mapping maps the image (the kernel
	// maps a handle's backing file): what it writes there still reaches
	// the cluster when it closes. (Another process: a page fault on a
	// FUSE file must not wait on the FUSE server's own process.)
	py := needProgram(t, "python3")
	mapped := "written through a shared mapping"
	script := `import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
at = len(m) // 2 + 7
m[at:at+len(sys.argv[2])] = sys.argv[2].encode()
m[len(m)-3:] = b"end"
m.close()
os.close(fd)
`
	if out, err := exec.Command(py, "-c", script, path, mapped).CombinedOutput(); err != nil {
		t.Fatalf("writing through a shared mapping beside a passthrough reader: %v\n%s", err, out)
	}
	copy(want[len(want)/2+7:], mapped)
	copy(want[len(want)-3:], "end")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	readAll("mount B after the writer closed", b.Path("big"), want)
	readAll("read after the writer closed", path, want)
	// The image goes with the last handle's RELEASE, which the kernel
	// sends after close returns.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := stats()
		if st.PassthroughOpens != 5 {
			t.Fatalf("after a writer shared the backing file: %+v, want no new passthrough open", st)
		}
		if st.Images == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a writer shared the backing file: %+v, want its image dropped", st)
		}
	}

	// A file changed through mount B while A has nothing open: A reads
	// it from the cluster, and drops the image.
	path2 := a.Path("other")
	first := randomBytes(t, 1<<20)
	if err := os.WriteFile(path2, first, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := stats(); st.Images != 1 {
		t.Fatalf("images = %d after writing a second file, want 1", st.Images)
	}
	second := randomBytes(t, 1<<20)
	if err := os.WriteFile(b.Path("other"), second, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(visibilityWithin)
	for {
		got, err := os.ReadFile(path2)
		if err == nil && bytes.Equal(got, second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount A still reads %d bytes (%v), not mount B's %d", len(got), err, len(second))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := stats(); st.PassthroughOpens != 5 || st.Images != 0 {
		t.Fatalf("after mount B rewrote a file: %+v, want no new passthrough open and the image dropped", st)
	}
}

// TestMountPassthroughFill: images of files written while no core is to
// spare for them (InlineImages -1 stands for that) are filled after the
// writer closes. A reader opening the file right after the close waits
// for the fill and passes through; a rewrite refills; a file removed
// right after it is written leaves no image behind.
func TestMountPassthroughFill(t *testing.T) {
	_, a := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1; cfg.InlineImages = -1 })
	needPassthrough(t, a)
	stats := a.FS.ImageStats
	settle := func() { t.Helper(); noHandlesOpen(t, a) }
	path := a.Path("filled")
	// Holes included: sized first, written at both ends.
	want := make([]byte, 5<<20+123)
	copy(want, randomBytes(t, 1<<20))
	copy(want[4<<20:], randomBytes(t, 1<<20+123))
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(want[:1<<20], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(want[4<<20:], 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	settle()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after the writer closed: %d bytes, %v; want the %d written", len(got), err, len(want))
	}
	if st := stats(); st.Filled != 1 || st.PassthroughOpens != 1 {
		t.Fatalf("after a write and a read: %+v, want the image filled once and the read passed through", st)
	}

	// A rewrite of part of it: filled again at its close.
	w, err = os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := randomBytes(t, 300<<10)
	if _, err := w.WriteAt(patch, 2<<20); err != nil {
		t.Fatal(err)
	}
	copy(want[2<<20:], patch)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	settle()
	got, err = os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after a rewrite: %d bytes, %v; want the rewritten %d", len(got), err, len(want))
	}
	if st := stats(); st.Filled != 2 || st.PassthroughOpens != 2 {
		t.Fatalf("after a rewrite and a read: %+v, want a second fill and passthrough", st)
	}

	// Written and removed at once: no image is left.
	tmp := a.Path("tmp")
	if err := os.WriteFile(tmp, randomBytes(t, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); stats().Images != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after writing and removing a file: %+v, want only the first file's image", stats())
		}
	}
}
