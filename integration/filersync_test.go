package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/filersync"
	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// filer.sync between in-process clusters (issue 6). Each cluster has a
// mount; changes are made through one mount with ordinary file system
// calls and must appear, the same, through the other.

// syncWithin bounds how long a change takes to cross; far above what it
// takes (milliseconds), it only catches a sync that stopped.
const syncWithin = 30 * time.Second

type syncedPair struct {
	a, b   *cluster.Cluster
	ma, mb *cluster.Mount
}

func startSyncPair(t *testing.T) *syncedPair {
	t.Helper()
	cluster.NeedFUSE(t)
	p := &syncedPair{a: cluster.Start(t, cluster.Options{Filer: true}), b: cluster.Start(t, cluster.Options{Filer: true})}
	small := func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 }
	p.ma, p.mb = p.a.MountFiler(small), p.b.MountFiler(small)
	return p
}

// runSync starts a Syncer between the pair's filers; stop ends it.
func runSync(t *testing.T, a, b *cluster.Cluster, adjust func(*filersync.Config)) (s *filersync.Syncer, stop func()) {
	t.Helper()
	cfg := filersync.DefaultConfig()
	cfg.A.Filer, cfg.B.Filer = a.Filer.MountAddr(), b.Filer.MountAddr()
	cfg.CheckpointInterval = 200 * time.Millisecond
	cfg.RetryMax = time.Second
	cfg.Logger = syncLog(t)
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := filersync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sync: %v", err)
		}
		s.Close()
	}
	t.Cleanup(stop)
	return s, stop
}

// syncLog shows the sync's log in the test output when KELP_TEST_LOGS is
// set.
func syncLog(t *testing.T) *slog.Logger {
	if os.Getenv("KELP_TEST_LOGS") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// treeState describes a tree as the comparison sees it: per relative
// path, type, permission bits, owner, size, content digest or link target,
// xattrs, and which other names share its inode.
func treeState(t *testing.T, root string) (map[string]string, error) {
	out := map[string]string{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, root)
		if rel == "" {
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sum=%x", len(data), fnv64(data))
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
			desc += xattrDesc(p)
		}
		out[rel] = desc
		return nil
	})
	for _, names := range inodes {
		slices.Sort(names)
		for _, n := range names {
			out[n] += " links=" + strings.Join(names, ",")
		}
	}
	return out, err
}

func fnv64(b []byte) uint64 {
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

func xattrDesc(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	var sb strings.Builder
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		fmt.Fprintf(&sb, " %s=%q", name, v[:m])
	}
	return sb.String()
}

// diffTrees lists what differs between two tree states.
func diffTrees(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "missing "+k)
		} else if v != w {
			out = append(out, fmt.Sprintf("%s: %s != %s", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	slices.Sort(out)
	return out
}

// waitSame waits until the trees under dirA and dirB are the same.
func waitSame(t *testing.T, dirA, dirB string) {
	t.Helper()
	cluster.WaitFor(t, syncWithin, "trees in step", func() error {
		sa, err := treeState(t, dirA)
		if err != nil {
			return err
		}
		sb, err := treeState(t, dirB)
		if err != nil {
			return err
		}
		if d := diffTrees(sa, sb); len(d) > 0 {
			if len(d) > 10 {
				d = append(d[:10], fmt.Sprintf("... %d more", len(d)-10))
			}
			return errors.New(strings.Join(d, "\n"))
		}
		return nil
	})
}

// makeTree writes a varied tree under root: files of several sizes
// (inline, one chunk, several), directories, a symlink, a hard link, an
// xattr, a fifo.
func makeTree(t *testing.T, root, tag string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "dir", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "small"), []byte("small file "+tag), 0o644))
	must(os.WriteFile(filepath.Join(root, "dir", "chunk"), bytes.Repeat([]byte(tag), 300<<10/len(tag)), 0o600))
	must(os.WriteFile(filepath.Join(root, "dir", "sub", "multi"), randomBytes(t, 2<<20+777), 0o640))
	must(os.Symlink("dir/chunk", filepath.Join(root, "link")))
	must(os.Link(filepath.Join(root, "small"), filepath.Join(root, "dir", "hard")))
	must(unix.Setxattr(filepath.Join(root, "dir", "chunk"), "user.tag", []byte(tag), 0))
	must(unix.Mkfifo(filepath.Join(root, "dir", "fifo"), 0o620))
	must(os.Chmod(filepath.Join(root, "dir", "sub"), 0o750))
}

// TestFilerSync: both directions between two clusters. A tree made on A
// appears on B; renames of a file and a directory, a truncate, an
// overwrite, a chmod, an xattr change and deletes on A follow; the same
// kinds of changes made on B come back to A; concurrent writes on both
// sides to different files converge; Verify reports the trees clean; and
// no event went back and forth (the counts stay put once in step).
func TestFilerSync(t *testing.T) {
	p := startSyncPair(t)
	s, _ := runSync(t, p.a, p.b, nil)
	a, b := p.ma, p.mb

	makeTree(t, a.Path(), "a")
	waitSame(t, a.Dir, b.Dir)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Changes on A.
	must(os.Rename(a.Path("dir", "sub"), a.Path("moved")))
	must(os.Rename(a.Path("small"), a.Path("dir", "renamed")))
	must(os.Truncate(a.Path("dir", "chunk"), 1000))
	must(os.WriteFile(a.Path("moved", "multi"), randomBytes(t, 100<<10), 0o640))
	must(os.Chmod(a.Path("link"), 0o777)) // follows the link: chmods dir/chunk
	must(unix.Setxattr(a.Path("dir", "chunk"), "user.tag", []byte("changed"), 0))
	must(os.Remove(a.Path("dir", "fifo")))
	waitSame(t, a.Dir, b.Dir)

	// Changes on B come back.
	must(os.MkdirAll(b.Path("fromb", "deep"), 0o700))
	must(os.WriteFile(b.Path("fromb", "deep", "f"), randomBytes(t, 1<<20+5), 0o644))
	must(os.Rename(b.Path("moved"), b.Path("fromb", "moved-on-b")))
	must(os.RemoveAll(b.Path("dir")))
	waitSame(t, a.Dir, b.Dir)

	// Both sides at once, different files.
	done := make(chan error, 2)
	for i, m := range []*cluster.Mount{a, b} {
		go func() {
			for j := range 20 {
				name := m.Path(fmt.Sprintf("both-%d-%d", i, j))
				if err := os.WriteFile(name, bytes.Repeat([]byte{byte(j)}, 1000*j+1), 0o644); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	must(<-done)
	must(<-done)
	waitSame(t, a.Dir, b.Dir)

	// Settled: nothing more is applied, in either direction.
	applied := func() []int64 {
		var n []int64
		for _, d := range s.Stats() {
			n = append(n, d.Applied)
		}
		return n
	}
	before := applied()
	time.Sleep(time.Second)
	if after := applied(); !slices.Equal(before, after) {
		t.Fatalf("events still applied once in step (ping-pong?): %v -> %v", before, after)
	}
	t.Logf("sync stats: %+v", s.Stats())
}
