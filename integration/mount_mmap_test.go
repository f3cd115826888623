package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// The mmap calls run in a helper process (this test binary run again as
// TestMountMmapHelperProcess): the mount is served by this process, and
// a process that both serves a FUSE mount and maps its files can deadlock
// in the kernel (munmap of a dirty shared mapping holds the process's
// mmap lock while it waits for the FUSE writeback, which the serving
// thread cannot read without that lock). Real mounts are served by
// another process (kelp mount), like the helper here.

// mmapPatchOffsets are the single bytes mmapPatch flips (plus the last
// byte), around the 1 MiB chunk boundaries.
var mmapPatchOffsets = []int{0, 4095, 4096, 1<<20 - 1, 1 << 20, 2<<20 + 12345}

// mmapPatchAt is where mmapPatch copies its patch: across the boundary of
// chunks 1 and 2.
const mmapPatchAt = 2<<20 - 5000

// mmapPatch changes b: flips single bytes and copies patch in.
func mmapPatch(b, patch []byte) {
	for _, off := range append(mmapPatchOffsets, len(b)-1) {
		b[off] ^= 0xff
	}
	copy(b[mmapPatchAt:], patch)
}

// mmapHelper is a running helper process.
type mmapHelper struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  *bufio.Scanner
	output strings.Builder
	cancel context.CancelFunc
}

// startMmapHelper runs op in a helper process on file path (size bytes),
// with the local files patch (bytes mmapPatch copies in) and want (what
// the mapping must show, where op checks it).
func startMmapHelper(t *testing.T, op, path string, size int, patch, want string) *mmapHelper {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMountMmapHelperProcess$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "KELP_MMAP_HELPER="+op, "KELP_MMAP_PATH="+path, "KELP_MMAP_SIZE="+strconv.Itoa(size),
		"KELP_MMAP_PATCH="+patch, "KELP_MMAP_WANT="+want,
		// A race-enabled binary sleeps a second at exit unless told not to.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	h := &mmapHelper{cmd: cmd, cancel: cancel}
	var err error
	if h.in, err = cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	r, w, err := os.Pipe() // stdout and stderr (race reports) together
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	h.lines = bufio.NewScanner(r)
	err = cmd.Start()
	w.Close()
	if err != nil {
		cancel()
		r.Close()
		t.Fatalf("start the mmap helper: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		r.Close()
	})
	return h
}

// waitFor reads the helper's output up to its line "KELP-HELPER word".
func (h *mmapHelper) waitFor(t *testing.T, word string) {
	t.Helper()
	for h.lines.Scan() {
		line := h.lines.Text()
		h.output.WriteString(line + "\n")
		if line == "KELP-HELPER "+word {
			return
		}
	}
	_ = h.cmd.Wait()
	t.Fatalf("the mmap helper ended before %q:\n%s", word, h.output.String())
}

// resume lets the helper go on from a pause.
func (h *mmapHelper) resume(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(h.in, "go\n"); err != nil {
		t.Fatalf("resume the mmap helper: %v", err)
	}
}

// finish waits for the helper to end and fails t unless it passed.
func (h *mmapHelper) finish(t *testing.T) {
	t.Helper()
	h.in.Close()
	for h.lines.Scan() {
		h.output.WriteString(h.lines.Text() + "\n")
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("mmap helper: %v\n%s", err, h.output.String())
	}
}

// runMmapHelper runs op start to end.
func runMmapHelper(t *testing.T, op, path string, size int, patch, want string) {
	t.Helper()
	h := startMmapHelper(t, op, path, size, patch, want)
	h.finish(t)
}

// TestMountMmapHelperProcess is not a test: it is the helper process of
// TestMountMmap, doing the operation KELP_MMAP_HELPER names.
func TestMountMmapHelperProcess(t *testing.T) {
	op := os.Getenv("KELP_MMAP_HELPER")
	if op == "" {
		t.Skip("the helper process of TestMountMmap")
	}
	path := os.Getenv("KELP_MMAP_PATH")
	size, err := strconv.Atoi(os.Getenv("KELP_MMAP_SIZE"))
	if err != nil {
		t.Fatal(err)
	}
	readLocal := func(env string) []byte {
		b, err := os.ReadFile(os.Getenv(env))
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		return b
	}
	stdin := bufio.NewReader(os.Stdin)
	pause := func(word string) {
		fmt.Printf("KELP-HELPER %s\n", word)
		if _, err := stdin.ReadString('\n'); err != nil {
			t.Fatalf("waiting to go on after %s: %v", word, err)
		}
	}
	oflags, prot, flags := unix.O_RDWR, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED
	switch op {
	case "verify", "coherent":
		oflags, prot = unix.O_RDONLY, unix.PROT_READ
	case "private":
		flags = unix.MAP_PRIVATE
	}
	fd, err := unix.Open(path, oflags|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	b, err := unix.Mmap(fd, 0, size, prot, flags)
	if err != nil {
		t.Fatalf("mmap %s: %v", path, err)
	}
	switch op {
	case "verify":
		if want := readLocal("KELP_MMAP_WANT"); !bytes.Equal(b, want) {
			t.Errorf("mapping: %s", firstDiff(want, b, 0))
		}
	case "shared-msync", "shared-nomsync":
		mmapPatch(b, readLocal("KELP_MMAP_PATCH"))
		if op == "shared-msync" {
			if err := unix.Msync(b, unix.MS_SYNC); err != nil {
				t.Fatalf("msync: %v", err)
			}
			pause("synced")
		}
	case "private":
		mmapPatch(b, readLocal("KELP_MMAP_PATCH"))
		if want := readLocal("KELP_MMAP_WANT"); !bytes.Equal(b, want) {
			t.Errorf("the private mapping does not show its own changes: %s", firstDiff(want, b, 0))
		}
		if err := unix.Msync(b, unix.MS_SYNC); err != nil {
			t.Fatalf("msync of a private mapping: %v", err)
		}
		pause("changed")
	case "coherent":
		// Fault every page in, then write(2) through another
		// descriptor: the mapping shows the new bytes.
		if want := readLocal("KELP_MMAP_WANT"); !bytes.Equal(b, want) {
			t.Fatalf("mapping: %s", firstDiff(want, b, 0))
		}
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := readLocal("KELP_MMAP_WANT")
		mmapPatch(want, readLocal("KELP_MMAP_PATCH"))
		for _, off := range append(mmapPatchOffsets, size-1) {
			if _, err := w.WriteAt(want[off:off+1], int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.WriteAt(want[mmapPatchAt:mmapPatchAt+len(readLocal("KELP_MMAP_PATCH"))], mmapPatchAt); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("mapping after write(2)s through another descriptor: %s", firstDiff(want, b, 0))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown KELP_MMAP_HELPER %q", op)
	}
	if err := unix.Munmap(b); err != nil {
		t.Fatalf("munmap: %v", err)
	}
	if err := unix.Close(fd); err != nil {
		t.Fatalf("close after munmap: %v", err)
	}
}

// expectContent fails t unless name reads as want on every mount given,
// each opening it afresh.
func expectContent(t *testing.T, what string, want []byte, name string, mounts ...*cluster.Mount) {
	t.Helper()
	for _, m := range mounts {
		got, err := os.ReadFile(m.Path(name))
		if err != nil {
			t.Fatalf("%s: read %s on %s: %v", what, name, m.Dir, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %s on %s: %s", what, name, m.Dir, firstDiff(want, got, 0))
		}
	}
}

// TestMountMmap covers memory-mapped files on a mount with 1 MiB chunks,
// mapped by another process: read-only mappings of a file of several
// chunks (on both mounts), shared writable mappings reaching the cluster
// through msync (seen on a second mount while the mapping is still live)
// and through munmap+close without msync, private mappings leaving the
// file alone, and a mapping seeing write(2)s made through another
// descriptor.
func TestMountMmap(t *testing.T) {
	c, m := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	m2 := c.MountFiler(nil)
	const size = 3<<20 + 512<<10 + 123
	local := t.TempDir()
	saveLocal := func(t *testing.T, name string, b []byte) string {
		t.Helper()
		p := filepath.Join(local, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	patch := randomBytes(t, 10000)
	patchFile := saveLocal(t, "patch", patch)

	t.Run("ReadOnly", func(t *testing.T) {
		data := randomBytes(t, size)
		if err := os.WriteFile(m.Path("ro"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		want := saveLocal(t, "ro", data)
		for _, mm := range []*cluster.Mount{m, m2} {
			runMmapHelper(t, "verify", mm.Path("ro"), size, "", want)
		}
	})

	t.Run("SharedWriteMsync", func(t *testing.T) {
		want := randomBytes(t, size)
		if err := os.WriteFile(m.Path("shared"), want, 0o644); err != nil {
			t.Fatal(err)
		}
		mmapPatch(want, patch)
		h := startMmapHelper(t, "shared-msync", m.Path("shared"), size, patchFile, "")
		h.waitFor(t, "synced")
		// msync(MS_SYNC) is fsync for the mapped range: the other mount
		// opening the file now reads the changes.
		expectContent(t, "after msync, mapping still live", want, "shared", m, m2)
		h.resume(t)
		h.finish(t)
		expectContent(t, "after msync+munmap+close", want, "shared", m, m2)
		if st, err := os.Stat(m2.Path("shared")); err != nil || st.Size() != size {
			t.Fatalf("stat on the second mount: %v, size %d", err, st.Size())
		}
	})

	t.Run("SharedWriteNoMsync", func(t *testing.T) {
		want := randomBytes(t, size)
		if err := os.WriteFile(m.Path("nomsync"), want, 0o644); err != nil {
			t.Fatal(err)
		}
		mmapPatch(want, patch)
		// No msync: munmap and close must still get the dirty pages to
		// the cluster.
		runMmapHelper(t, "shared-nomsync", m.Path("nomsync"), size, patchFile, "")
		expectContent(t, "after munmap+close without msync", want, "nomsync", m, m2)
	})

	t.Run("Private", func(t *testing.T) {
		data := randomBytes(t, size)
		if err := os.WriteFile(m.Path("private"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		changed := bytes.Clone(data)
		mmapPatch(changed, patch)
		h := startMmapHelper(t, "private", m.Path("private"), size, patchFile, saveLocal(t, "private", changed))
		h.waitFor(t, "changed")
		expectContent(t, "private mapping still live", data, "private", m, m2)
		h.resume(t)
		h.finish(t)
		expectContent(t, "after munmap+close of a private mapping", data, "private", m, m2)
	})

	t.Run("MappingSeesWrites", func(t *testing.T) {
		data := randomBytes(t, size)
		if err := os.WriteFile(m.Path("coherent"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		runMmapHelper(t, "coherent", m.Path("coherent"), size, patchFile, saveLocal(t, "coherent", data))
		mmapPatch(data, patch)
		expectContent(t, "after the helper's writes", data, "coherent", m, m2)
	})
}

// alignedBuf returns n bytes aligned to the page size (anonymous memory),
// as O_DIRECT wants.
func alignedBuf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap anonymous: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// TestMountDirectIO writes and reads with O_DIRECT, 4 KiB-aligned, across
// 1 MiB chunk boundaries: the content reads back through O_DIRECT, through
// a buffered reader on the same mount and through a second mount; and
// buffered and direct access to one file see each other's data.
func TestMountDirectIO(t *testing.T) {
	c, m := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	m2 := c.MountFiler(nil)
	const size = 2<<20 + 512<<10 // a multiple of 4 KiB
	const block = 64 << 10
	want := randomBytes(t, size)

	t.Run("WriteRead", func(t *testing.T) {
		fd, err := unix.Open(m.Path("direct"), unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatalf("open O_DIRECT: %v", err)
		}
		defer unix.Close(fd)
		buf := alignedBuf(t, 256<<10)
		for off := 0; off < size; off += block {
			copy(buf, want[off:off+block])
			if n, err := unix.Pwrite(fd, buf[:block], int64(off)); err != nil || n != block {
				t.Fatalf("pwrite at %d: %d, %v", off, n, err)
			}
		}
		// An aligned overwrite across the first chunk boundary.
		over := randomBytes(t, 128<<10)
		at := 1<<20 - 64<<10
		copy(buf, over)
		if n, err := unix.Pwrite(fd, buf[:len(over)], int64(at)); err != nil || n != len(over) {
			t.Fatalf("overwrite: %d, %v", n, err)
		}
		copy(want[at:], over)
		for _, r := range []struct{ off, n int }{{0, 4096}, {at, 128 << 10}, {1<<20 - 4096, 8192}, {2 << 20, 256 << 10}, {size - 4096, 4096}} {
			clear(buf)
			n, err := unix.Pread(fd, buf[:r.n], int64(r.off))
			if err != nil || n != r.n {
				t.Fatalf("O_DIRECT pread %d+%d: %d, %v", r.off, r.n, n, err)
			}
			if !bytes.Equal(buf[:n], want[r.off:r.off+r.n]) {
				t.Errorf("O_DIRECT pread %d+%d before close: %s", r.off, r.n, firstDiff(want[r.off:r.off+r.n], buf[:n], int64(r.off)))
			}
		}
		// Reading past the end returns what there is.
		if n, err := unix.Pread(fd, buf[:8192], size-4096); err != nil || n != 4096 {
			t.Errorf("O_DIRECT pread across the end: %d, %v (want 4096)", n, err)
		}
		if err := unix.Fsync(fd); err != nil {
			t.Fatalf("fsync: %v", err)
		}
		expectContent(t, "after O_DIRECT writes and fsync (buffered readers)", want, "direct", m, m2)
		if err := unix.Close(fd); err != nil {
			t.Fatalf("close: %v", err)
		}
		expectContent(t, "after close", want, "direct", m, m2)
	})

	t.Run("DirectAfterBuffered", func(t *testing.T) {
		// A buffered reader caches the file; an O_DIRECT writer then
		// changes it without changing its size; the next buffered open
		// reads the new bytes, not the cached pages.
		if _, err := os.ReadFile(m.Path("direct")); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(m.Path("direct"), unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		buf := alignedBuf(t, 8192)
		patch := randomBytes(t, 8192)
		copy(buf, patch)
		at := 1 << 20
		if n, err := unix.Pwrite(fd, buf, int64(at)); err != nil || n != len(buf) {
			t.Fatalf("pwrite: %d, %v", n, err)
		}
		copy(want[at:], patch)
		if err := unix.Close(fd); err != nil {
			t.Fatal(err)
		}
		expectContent(t, "buffered open after an O_DIRECT write", want, "direct", m, m2)

		// And the other way: a buffered write, then an O_DIRECT read.
		w, err := os.OpenFile(m.Path("direct"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		patch = randomBytes(t, 4096)
		if _, err := w.WriteAt(patch, 4096); err != nil {
			t.Fatal(err)
		}
		copy(want[4096:], patch)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for _, mm := range []*cluster.Mount{m, m2} {
			fd, err := unix.Open(mm.Path("direct"), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			clear(buf)
			n, err := unix.Pread(fd, buf, 4096)
			unix.Close(fd)
			if err != nil || n != len(buf) || !bytes.Equal(buf, want[4096:4096+len(buf)]) {
				t.Errorf("O_DIRECT read on %s after a buffered write: %d, %v, %s", mm.Dir, n, err, firstDiff(want[4096:4096+len(buf)], buf[:n], 4096))
			}
		}
	})
}
