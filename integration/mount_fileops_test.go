package integration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// TestMountFileOps: fallocate (allocate, keep size, punch hole, zero
// range, and the errno cases), copy_file_range and lseek SEEK_DATA /
// SEEK_HOLE through the mount, each result checked byte for byte, and
// again through a second mount once the file is closed.
func TestMountFileOps(t *testing.T) {
	c, a := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	b := c.MountFiler(nil)
	t.Run("Fallocate", func(t *testing.T) { testFallocate(t, a, b) })
	t.Run("CopyFileRange", func(t *testing.T) { testCopyFileRange(t, a, b) })
	t.Run("SeekDataHole", func(t *testing.T) { testSeekDataHole(t, a) })
}

// expectFile checks the file's content on both mounts.
func expectFile(t *testing.T, name string, want []byte, mounts ...*cluster.Mount) {
	t.Helper()
	for _, m := range mounts {
		got, err := os.ReadFile(m.Path(name))
		if err != nil {
			t.Fatalf("read %s: %v", m.Path(name), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes that differ from the %d expected: %s", m.Path(name), len(got), len(want), firstDiff(want, got, 0))
		}
	}
}

func testFallocate(t *testing.T, a, b *cluster.Mount) {
	f, err := os.Create(a.Path("falloc"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	size := func() int64 {
		t.Helper()
		st, err := f.Stat()
		must("fstat", err)
		return st.Size()
	}
	want := randomBytes(t, 1<<20)
	_, err = f.WriteAt(want[:5], 0)
	must("write", err)

	// Mode 0 grows the file; what was not written reads as zeros.
	must("allocate", unix.Fallocate(fd, 0, 0, 1<<20))
	if got := size(); got != 1<<20 {
		t.Fatalf("size after fallocate to 1 MiB: %d", got)
	}
	zeros := make([]byte, 1<<20)
	copy(zeros, want[:5])
	got := make([]byte, 1<<20)
	_, err = f.ReadAt(got, 0)
	must("read", err)
	if !bytes.Equal(got, zeros) {
		t.Fatal("allocated range does not read as zeros after the written bytes")
	}
	// KEEP_SIZE reserves without growing.
	must("allocate keep size", unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 2<<20))
	if got := size(); got != 1<<20 {
		t.Fatalf("size after fallocate KEEP_SIZE: %d, want it unchanged", got)
	}

	_, err = f.WriteAt(want, 0)
	must("write", err)
	punch := unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	must("punch", unix.Fallocate(fd, uint32(punch), 100, 5000))
	clear(want[100:5100])
	// Across the end: only what is inside the file is zeroed.
	must("punch across the end", unix.Fallocate(fd, uint32(punch), 1<<20-10, 100))
	clear(want[1<<20-10:])
	// Wholly past the end: nothing happens.
	must("punch past the end", unix.Fallocate(fd, uint32(punch), 2<<20, 4096))
	if got := size(); got != 1<<20 {
		t.Fatalf("size after punching holes: %d, want it unchanged", got)
	}
	// ZERO_RANGE zeroes, and grows the file unless KEEP_SIZE.
	must("zero range", unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 200<<10, 10000))
	clear(want[200<<10 : 200<<10+10000])
	must("zero range past the end", unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 1<<20-4, 1004))
	clear(want[1<<20-4:])
	want = append(want, make([]byte, 1000)...)
	must("zero range keep size", unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, int64(len(want))-8, 4096))
	clear(want[len(want)-8:])
	if got := size(); got != int64(len(want)) {
		t.Fatalf("size after zeroing ranges: %d, want %d", got, len(want))
	}
	got = make([]byte, len(want)+10)
	n, err := f.ReadAt(got, 0)
	if err != io.EOF || n != len(want) || !bytes.Equal(got[:n], want) {
		t.Fatalf("read after punching and zeroing: %d bytes, %v; differ from the expected %d", n, err, len(want))
	}

	// Errno cases.
	if err := unix.Fallocate(fd, unix.FALLOC_FL_COLLAPSE_RANGE, 0, 4096); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("FALLOC_FL_COLLAPSE_RANGE: %v, want EOPNOTSUPP", err)
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE, 0, 4096); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("PUNCH_HOLE without KEEP_SIZE: %v, want EOPNOTSUPP", err)
	}
	if err := unix.Fallocate(fd, 0, -1, 4096); !errors.Is(err, unix.EINVAL) {
		t.Errorf("negative offset: %v, want EINVAL", err)
	}
	if err := unix.Fallocate(fd, 0, 0, 0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("zero length: %v, want EINVAL", err)
	}
	ro, err := os.Open(a.Path("falloc"))
	must("open read-only", err)
	if err := unix.Fallocate(int(ro.Fd()), 0, 0, 4096); !errors.Is(err, unix.EBADF) {
		t.Errorf("fallocate on a read-only descriptor: %v, want EBADF", err)
	}
	ro.Close()

	must("close", f.Close())
	expectFile(t, "falloc", want, a, b)
}

func testCopyFileRange(t *testing.T, a, b *cluster.Mount) {
	src := randomBytes(t, 3<<20+333)
	if err := os.WriteFile(a.Path("cfr-src"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(a.Path("cfr-src"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(a.Path("cfr-dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	copyRange := func(offIn, offOut int64, n int) int {
		t.Helper()
		done := 0
		for done < n {
			oi, oo := offIn+int64(done), offOut+int64(done)
			k, err := unix.CopyFileRange(int(in.Fd()), &oi, int(out.Fd()), &oo, n-done, 0)
			if err != nil {
				t.Fatalf("copy_file_range: %v", err)
			}
			if k == 0 {
				break
			}
			done += k
		}
		return done
	}
	if got := copyRange(0, 0, len(src)); got != len(src) {
		t.Fatalf("copied %d bytes, want %d", got, len(src))
	}
	want := append([]byte{}, src...)
	// Within the file, at offsets that straddle chunks.
	if got := copyRange(1000, 1<<20-500, 10000); got != 10000 {
		t.Fatalf("copied %d bytes, want 10000", got)
	}
	copy(want[1<<20-500:], src[1000:11000])
	// Past the source's end: nothing; up to it: what is there.
	if got := copyRange(int64(len(src)), 0, 100); got != 0 {
		t.Fatalf("copy from the source's end: %d bytes, want 0", got)
	}
	if got := copyRange(int64(len(src))-7, int64(len(want)), 100); got != 7 {
		t.Fatalf("copy across the source's end: %d bytes, want 7", got)
	}
	want = append(want, src[len(src)-7:]...)
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	expectFile(t, "cfr-dst", want, a, b)
	// A descriptor not open for writing.
	oi, oo := int64(0), int64(0)
	if _, err := unix.CopyFileRange(int(in.Fd()), &oi, int(in.Fd()), &oo, 10, 0); !errors.Is(err, unix.EBADF) && !errors.Is(err, unix.EINVAL) {
		t.Errorf("copy_file_range into a read-only descriptor: %v, want EBADF", err)
	}
}

func testSeekDataHole(t *testing.T, a *cluster.Mount) {
	f, err := os.Create(a.Path("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := randomBytes(t, 64<<10)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			whence int
			off    int64
			want   int64 // -1: ENXIO
		}{
			{unix.SEEK_DATA, 0, 0},
			{unix.SEEK_HOLE, 0, 64 << 10},
			{unix.SEEK_DATA, 64 << 10, 2 << 20},
			{unix.SEEK_DATA, 100 << 10, 2 << 20},
			{unix.SEEK_HOLE, 2 << 20, 2<<20 + 64<<10},
			{unix.SEEK_DATA, 2<<20 + 64<<10, -1},
			{unix.SEEK_HOLE, 3 << 20, 3 << 20},
			{unix.SEEK_DATA, 4 << 20, -1},
			{unix.SEEK_HOLE, 5 << 20, -1},
		} {
			got, err := unix.Seek(int(f.Fd()), c.off, c.whence)
			if c.want < 0 {
				if !errors.Is(err, unix.ENXIO) {
					t.Errorf("%s: lseek(%d, whence %d) = %d, %v; want ENXIO", when, c.off, c.whence, got, err)
				}
				continue
			}
			if err != nil || got != c.want {
				t.Errorf("%s: lseek(%d, whence %d) = %d, %v; want %d", when, c.off, c.whence, got, err, c.want)
			}
		}
	}
	check("unflushed")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	check("after fsync")
}
