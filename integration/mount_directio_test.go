package integration

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kelpfs/kelp/integration/cluster"
)

// TestMountDirectWrites: handles opened write-only, or read-write on a
// file with no data yet, do direct IO (their bytes skip the kernel's page
// cache; mount.FS.EnableDirectWrites), and nothing a program sees changes:
// a small file written and closed is read back from the page cache with
// no read reaching the mount; a reader's cached pages follow a writer on
// the same mount; a writer reads back what it wrote through its own
// descriptor.
func TestMountDirectWrites(t *testing.T) {
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true})
	m := c.MountFiler(nil)
	before := m.FS.IOStats()
	small := randomBytes(t, 3000)
	if err := os.WriteFile(m.Path("small"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	if m.FS.IOStats().DirectWriteHandles == before.DirectWriteHandles {
		t.Fatal("a handle opened for writing did no direct IO (the kernel must allow mmap of such handles: Linux 6.6 or later)")
	}
	cluster.WaitFor(t, 10*time.Second, "the small file's content stored in the page cache at its last close", func() error {
		if m.FS.IOStats().SmallStored == before.SmallStored {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	reads := m.FS.IOStats().Reads
	got, err := os.ReadFile(m.Path("small"))
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "small file read back", got, small)
	if n := m.FS.IOStats().Reads - reads; n != 0 {
		t.Fatalf("reading back a small file just written sent %d reads to the mount, want 0 (page cache)", n)
	}

	// A reader with the file's pages cached, and a direct writer beside it.
	data := randomBytes(t, 20<<10)
	if err := os.WriteFile(m.Path("shared"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(m.Path("shared"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, len(data))
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "reader before the write", buf, data)
	// Read-write on a file with data: the page cache serves its reads.
	direct := m.FS.IOStats().DirectWriteHandles
	w, err := os.OpenFile(m.Path("shared"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if m.FS.IOStats().DirectWriteHandles != direct {
		t.Fatal("a read-write open of a file with data did direct IO")
	}
	patch := randomBytes(t, 5000)
	if _, err := w.WriteAt(patch, 4000); err != nil {
		t.Fatal(err)
	}
	copy(data[4000:], patch)
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "reader's cached pages after a direct write on the same mount", buf, data)
	back := make([]byte, len(data))
	if _, err := w.ReadAt(back, 0); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "the writer reading back through its own descriptor", back, data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = os.ReadFile(m.Path("shared"))
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "file after the writer closed", got, data)

	// Read-write on a file with no data yet (as fio opens the file it
	// sized with fallocate): direct IO.
	e, err := os.OpenFile(m.Path("sized"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	direct = m.FS.IOStats().DirectWriteHandles
	e, err = os.OpenFile(m.Path("sized"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if m.FS.IOStats().DirectWriteHandles != direct+1 {
		t.Fatal("a read-write open of a file with no data did no direct IO")
	}
	if _, err := e.WriteAt(patch, 12345); err != nil {
		t.Fatal(err)
	}
	back = make([]byte, len(patch))
	if _, err := e.ReadAt(back, 12345); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "read back through a direct read-write descriptor", back, patch)
}
