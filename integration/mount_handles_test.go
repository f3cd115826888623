package integration

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kelpfs/kelp/filerd"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// A file unlinked while open keeps its content until its last close, on
// the mount that holds it open, whatever happens to the filer meanwhile;
// and a dead mount does not keep such files forever. The filer holds one
// handle per open file per mount, leased to the mount's session
// (filerd/handles.go, mount/handles.go).

// filerHas reports whether the filer's namespace still has inode ino.
func filerHas(t *testing.T, c *cluster.Cluster, ino uint64) bool {
	t.Helper()
	_, err := c.Filer.Server().Namespace().GetAttr(context.Background(), meta.Inode(ino))
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("filer getattr %d: %v", ino, err)
	}
	return err == nil
}

// inodeOf returns the inode number of p.
func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestMountHandlesFilerRestart: a file open on a mount and unlinked
// survives a filer restart: the mount takes its handle back within the
// grace period, the filer keeps the file past it, the open descriptor
// reads it whole, and the last close frees it.
func TestMountHandlesFilerRestart(t *testing.T) {
	cluster.NeedFUSE(t)
	const ttl, grace = time.Second, 3 * time.Second
	c := cluster.Start(t, cluster.Options{Filer: true, FilerConfig: func(cfg *filerd.Config) {
		cfg.LockSessionTTL, cfg.LockGrace = ttl, grace
	}})
	m := c.MountFiler(func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	data := randomBytes(t, 3<<20+77)
	if err := os.WriteFile(m.Path("held"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.Path("closed"), data[:5000], 0o644); err != nil {
		t.Fatal(err)
	}
	held, closed := inodeOf(t, m.Path("held")), inodeOf(t, m.Path("closed"))
	f, err := os.Open(m.Path("held"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{"held", "closed"} {
		if err := os.Remove(m.Path(name)); err != nil {
			t.Fatal(err)
		}
	}
	// The closed file goes once the mount's release (sent after close
	// returns) reaches the filer.
	cluster.WaitFor(t, 10*time.Second, "the closed file freed at its unlink", func() error {
		if filerHas(t, c, closed) {
			return fmt.Errorf("still there")
		}
		return nil
	})
	if !filerHas(t, c, held) {
		t.Fatal("the open file was freed at its unlink")
	}

	c.Filer.Restart()
	restarted := time.Now()
	cluster.WaitFor(t, grace+10*time.Second, "the mount's session replaced after the restart", func() error {
		if s := m.FS.LockStats().Session; s == "" {
			return fmt.Errorf("no session")
		}
		if !filerHas(t, c, held) {
			return fmt.Errorf("the open-unlinked file is gone")
		}
		if c.Filer.Server().Namespace().OpenCount(meta.Inode(held)) != 1 {
			return fmt.Errorf("the filer holds no handle on the open file yet")
		}
		return nil
	})
	t.Logf("handle taken back %v after the filer restarted (lease %v)", time.Since(restarted).Round(time.Millisecond), ttl)
	if wait := grace + time.Second - time.Since(restarted); wait > 0 {
		time.Sleep(wait) // past the grace period: what nobody took back is freed
	}
	if !filerHas(t, c, held) {
		t.Fatal("the open-unlinked file was freed after the grace period")
	}
	got := make([]byte, len(data)+10)
	n, err := f.ReadAt(got, 0)
	if err != nil && n != len(data) {
		t.Fatalf("read the open-unlinked file after the restart: %d bytes, %v", n, err)
	}
	sameBytes(t, "open-unlinked file across a filer restart", got[:n], data)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "the file freed at its last close", func() error {
		if filerHas(t, c, held) {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

// TestMountHandlesKilledMount: a mount process killed with SIGKILL while a
// process holds an unlinked file open through it: the filer frees the
// file once the dead mount's lease runs out.
func TestMountHandlesKilledMount(t *testing.T) {
	cluster.NeedFUSE(t)
	const ttl, grace = 2 * time.Second, time.Second
	c := cluster.Start(t, cluster.Options{Filer: true, FilerConfig: func(cfg *filerd.Config) { cfg.LockSessionTTL, cfg.HandleGrace = ttl, grace }})
	b := c.MountFiler(nil)
	if err := os.WriteFile(b.Path("orphan"), randomBytes(t, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ino := inodeOf(t, b.Path("orphan"))
	p, dir := startKelpMount(t, c)
	startPyHolder(t, filepath.Join(dir, "orphan")) // holds it open
	if err := os.Remove(b.Path("orphan")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl) // the live mount renews: the file stays
	if !filerHas(t, c, ino) {
		t.Fatal("a file open on a live mount was freed at its unlink")
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-p.exited
	cluster.WaitFor(t, ttl+grace+10*time.Second, "the dead mount's open-unlinked file freed", func() error {
		if filerHas(t, c, ino) {
			return fmt.Errorf("still there")
		}
		return nil
	})
	t.Logf("freed %v after the mount holding it was killed (lease %v, handles kept %v more)", time.Since(killed).Round(time.Millisecond), ttl, grace)
}

// readerPy opens argv[1], says its pid, and answers each "sum" on stdin
// with the sha256 of the whole file read through that descriptor.
const readerPy = `
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("pid", os.getpid(), flush=True)
for line in sys.stdin:
    try:
        h, off = hashlib.sha256(), 0
        while True:
            b = os.pread(fd, 1 << 20, off)
            if not b:
                break
            h.update(b)
            off += len(b)
        print(h.hexdigest(), off, flush=True)
    except OSError as e:
        print("error", e.errno, flush=True)
`

// TestMountHandlesStoppedMount: a mount stopped past its lease (as a
// mount cut off from the filer would be) comes back within the filer's
// HandleGrace, takes its handles back under a fresh session, and the file
// it had open, unlinked meanwhile, is still there and reads whole.
func TestMountHandlesStoppedMount(t *testing.T) {
	cluster.NeedFUSE(t)
	const ttl, grace = time.Second, 5 * time.Second
	c := cluster.Start(t, cluster.Options{Filer: true, FilerConfig: func(cfg *filerd.Config) { cfg.LockSessionTTL, cfg.HandleGrace = ttl, grace }})
	b := c.MountFiler(nil)
	data := randomBytes(t, 3<<20+5)
	if err := os.WriteFile(b.Path("kept"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ino := inodeOf(t, b.Path("kept"))
	p, dir := startKelpMount(t, c)
	h := startPython(t, readerPy, filepath.Join(dir, "kept"))
	if line := h.read(t); !strings.HasPrefix(line, "pid ") {
		t.Fatalf("reader: %q", line)
	}
	if err := os.Remove(b.Path("kept")); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Before the other cleanups: a stopped FUSE daemon would hang them.
	t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
	stopped := time.Now()
	time.Sleep(ttl + ttl/2)
	cluster.WaitFor(t, 10*time.Second, "the stopped mount's session lapsed", func() error {
		if c.Filer.Server().LapsedHandles() == 0 {
			return fmt.Errorf("no lapsed handles yet")
		}
		return nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Once the lapsed session's handles are released (the grace is
	// over), only a handle taken back keeps the file.
	cluster.WaitFor(t, grace+10*time.Second, "the lapsed session's handles released", func() error {
		if n := c.Filer.Server().LapsedHandles(); n > 0 {
			return fmt.Errorf("%d still kept", n)
		}
		return nil
	})
	if since := time.Since(stopped); since < grace {
		t.Fatalf("the lapsed handles went %v after the stop, before the grace of %v", since, grace)
	}
	if !filerHas(t, c, ino) {
		t.Fatalf("the file open on a mount stopped for %v was freed", ttl+ttl/2)
	}
	want := fmt.Sprintf("%x %d", sha256.Sum256(data), len(data))
	if got := h.do(t, "sum"); got != want {
		t.Fatalf("the held descriptor reads %q, want %q", got, want)
	}
	_ = h.cmd.Process.Kill() // its close releases the handle
	cluster.WaitFor(t, 10*time.Second, "the file freed at its last close", func() error {
		if filerHas(t, c, ino) {
			return fmt.Errorf("still there")
		}
		return nil
	})
}
