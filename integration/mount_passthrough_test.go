package integration

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestMountPassthrough: a file written through the mount gets a local
// image, and a read-only open then passes through to it: the kernel reads
// the image itself. Each step checks the bytes read, and what the image
// store counted:
//   - read(2) and mmap of a passthrough handle return what was written;
//   - a writer opened beside a passthrough reader goes through the mount
//     (its writes reach the cluster), and the reader sees its bytes;
//   - once the writer closed, the image is current again;
//   - a truncate through the mount keeps it current;
//   - a change made through another mount is read from the cluster, never
//     from the stale image.
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
	opens := func() (int64, int64) {
		st := a.FS.ImageStats()
		return st.PassthroughOpens, st.DirectOpens
	}
	// The kernel releases a closed file's handle after close(2)
	// returns; a passthrough open needs every other handle gone.
	settle := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for a.FS.OpenHandles() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d handles still open", a.FS.OpenHandles())
			}
			time.Sleep(time.Millisecond)
		}
	}
	readAll := func(what string, want []byte) {
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

	readAll("read", want)
	if pt, _ := opens(); pt != 1 {
		t.Fatalf("passthrough opens = %d after a read-only open of a current image, want 1", pt)
	}

	// mmap of a passthrough handle maps the image.
	settle()
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mm, err := syscall.Mmap(int(r.Fd()), 0, len(want), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	if !bytes.Equal(mm, want) {
		t.Fatal("mmap of a passthrough handle differs from what was written")
	}
	_ = syscall.Munmap(mm)
	if pt, _ := opens(); pt != 2 {
		t.Fatalf("passthrough opens = %d, want 2", pt)
	}

	// A writer while r passes through: its IO goes through the mount,
	// and the image (which r reads) takes its bytes at once.
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open for writing beside a passthrough reader: %v", err)
	}
	patch := []byte("written beside a passthrough reader")
	if _, err := w.WriteAt(patch, 1<<20); err != nil {
		t.Fatal(err)
	}
	copy(want[1<<20:], patch)
	got := make([]byte, len(patch))
	if _, err := r.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, patch) {
		t.Fatalf("passthrough reader after a write: %q, %v; want %q", got, err, patch)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, direct := opens(); direct != 1 {
		t.Fatalf("direct opens = %d, want 1 (the writer)", direct)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Mount B reads the writer's bytes from the cluster.
	if got, err := os.ReadFile(b.Path("big")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("mount B reads %d bytes (%v) that differ from what mount A wrote", len(got), err)
	}
	readAll("read after the writer closed", want)
	if pt, _ := opens(); pt != 3 {
		t.Fatalf("passthrough opens = %d, want 3: the image is current after its own writer's commit", pt)
	}

	// A truncate through the mount.
	if err := os.Truncate(path, 2<<20); err != nil {
		t.Fatal(err)
	}
	want = want[:2<<20]
	readAll("read after a truncate", want)
	if pt, _ := opens(); pt != 4 {
		t.Fatalf("passthrough opens = %d, want 4: the image is current after a truncate", pt)
	}

	// A change through mount B: A must read it from the cluster.
	other := randomBytes(t, 1<<20)
	if err := os.WriteFile(b.Path("big"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(visibilityWithin)
	for {
		got, err := os.ReadFile(path)
		if err == nil && bytes.Equal(got, other) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount A still reads %d bytes (%v), not mount B's %d", len(got), err, len(other))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := a.FS.ImageStats(); st.PassthroughOpens != 4 || st.Images != 0 {
		t.Fatalf("after mount B rewrote the file: %+v, want no new passthrough open and the image dropped", st)
	}
}
