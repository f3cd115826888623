package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd"
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

// verifyClean runs filersync.Verify between the two clusters' filers and
// fails on any difference.
func verifyClean(t *testing.T, a, b *cluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := filersync.Verify(ctx, filersync.VerifySide{Filer: a.FilerClient().API(), Path: "/"},
		filersync.VerifySide{Filer: b.FilerClient().API(), Path: "/"}, filersync.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.Clean() {
		t.Fatalf("verify: missing %v, extra %v, differing %v", rep.Missing, rep.Extra, rep.Differ)
	}
	t.Logf("verify: %d entries compared, clean", rep.Compared)
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
// kinds of changes made on B (a new tree with a symlink, a hard link, an
// xattr and a chmod, renames of a file and a directory, a truncate,
// deletes) come back to A; concurrent writes on both
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

	// The same kinds of changes on B come back.
	must(os.MkdirAll(b.Path("fromb", "deep"), 0o700))
	must(os.WriteFile(b.Path("fromb", "deep", "f"), randomBytes(t, 1<<20+5), 0o644))
	must(os.Symlink("deep/f", b.Path("fromb", "link-on-b")))
	must(os.Link(b.Path("fromb", "deep", "f"), b.Path("fromb", "hard-on-b")))
	must(unix.Setxattr(b.Path("fromb", "deep", "f"), "user.side", []byte("b"), 0))
	must(os.Chmod(b.Path("fromb", "deep", "f"), 0o600))
	must(os.Rename(b.Path("moved"), b.Path("fromb", "moved-on-b")))
	must(os.Truncate(b.Path("fromb", "moved-on-b", "multi"), 4000))
	must(os.Rename(b.Path("dir", "renamed"), b.Path("fromb", "renamed-on-b")))
	must(os.RemoveAll(b.Path("dir")))
	waitSame(t, a.Dir, b.Dir)
	checkFromB(t, a)

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
	verifyClean(t, p.a, p.b)

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

// checkFromB checks that the changes TestFilerSync makes on B are on A,
// each as itself (waitSame compares the trees as a whole).
func checkFromB(t *testing.T, a *cluster.Mount) {
	t.Helper()
	var f, hard syscall.Stat_t
	if err := syscall.Stat(a.Path("fromb", "deep", "f"), &f); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(a.Path("fromb", "hard-on-b"), &hard); err != nil {
		t.Fatal(err)
	}
	if f.Ino != hard.Ino || f.Nlink != 2 {
		t.Errorf("on A, B's hard link is inode %d and its file %d with %d links: want one inode, 2 links", hard.Ino, f.Ino, f.Nlink)
	}
	if f.Mode&0o7777 != 0o600 || f.Size != 1<<20+5 {
		t.Errorf("on A, B's file has mode %o and %d bytes, want 600 and %d", f.Mode&0o7777, f.Size, 1<<20+5)
	}
	if target, err := os.Readlink(a.Path("fromb", "link-on-b")); err != nil || target != "deep/f" {
		t.Errorf("on A, B's symlink: %q, %v", target, err)
	}
	v := make([]byte, 16)
	if n, err := unix.Getxattr(a.Path("fromb", "deep", "f"), "user.side", v); err != nil || string(v[:n]) != "b" {
		t.Errorf("on A, B's xattr: %q, %v", v[:max(n, 0)], err)
	}
	if st, err := os.Stat(a.Path("fromb", "moved-on-b", "multi")); err != nil || st.Size() != 4000 {
		t.Errorf("on A, the file B truncated: %v", err)
	}
	if got, err := os.ReadFile(a.Path("fromb", "renamed-on-b")); err != nil || string(got) != "small file a" {
		t.Errorf("on A, the file B renamed: %q, %v", got, err)
	}
	for _, gone := range []string{"dir", "moved"} {
		if _, err := os.Lstat(a.Path(gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("on A, %s, which B removed or renamed away: %v", gone, err)
		}
	}
}

// countEvents counts the events in c's change log from the beginning that
// a subscriber with signature sig gets: what a sync into the filer of that
// signature must apply, once each.
func countEvents(t *testing.T, c *cluster.Cluster, sig int32) int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := c.FilerClient().API().SubscribeMetadata(ctx, &filerpb.SubscribeMetadataRequest{ClientSignature: sig, ClientName: "test count"})
	if err != nil {
		t.Fatal(err)
	}
	got, ended := make(chan struct{}, 1), make(chan struct{})
	var n int64
	go func() {
		defer close(ended)
		for {
			if _, err := sub.Recv(); err != nil {
				return
			}
			n++
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}()
	for {
		select {
		case <-got:
		case <-time.After(500 * time.Millisecond):
			cancel()
			<-ended
			return n
		}
	}
}

func filerSignature(t *testing.T, c *cluster.Cluster) int32 {
	t.Helper()
	conf, err := c.FilerClient().API().GetFilerConfiguration(context.Background(), &filerpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	return conf.Signature
}

// TestFilerSyncChain: A <-> B -> C. Changes made on A and on B reach
// every cluster, and each direction applies exactly the events its source
// has that its target has not signed: none goes round in a loop.
func TestFilerSyncChain(t *testing.T) {
	cluster.NeedFUSE(t)
	ca, cb, cc := cluster.Start(t, cluster.Options{Filer: true}), cluster.Start(t, cluster.Options{Filer: true}),
		cluster.Start(t, cluster.Options{Filer: true})
	ma, mb, mc := ca.MountFiler(nil), cb.MountFiler(nil), cc.MountFiler(nil)
	ab, _ := runSync(t, ca, cb, nil)
	bc, _ := runSync(t, cb, cc, func(cfg *filersync.Config) { cfg.ActivePassive = true })

	makeTree(t, ma.Path(), "chain")
	if err := os.MkdirAll(mb.Path("fromb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mb.Path("fromb", "f"), randomBytes(t, 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ma.Path("dir"), ma.Path("dir2")); err != nil {
		t.Fatal(err)
	}
	waitSame(t, ma.Dir, mb.Dir)
	waitSame(t, mb.Dir, mc.Dir)
	time.Sleep(time.Second) // let the counters settle

	sa, sb, sc := filerSignature(t, ca), filerSignature(t, cb), filerSignature(t, cc)
	want := map[string]int64{
		"A->B": countEvents(t, ca, sb), "B->A": countEvents(t, cb, sa), "B->C": countEvents(t, cb, sc),
	}
	got := map[string]int64{}
	for _, d := range ab.Stats() {
		got[map[string]string{"a->b": "A->B", "b->a": "B->A"}[d.Name]] = d.Applied
	}
	for _, d := range bc.Stats() {
		got["B->C"] = d.Applied
	}
	t.Logf("events applied per direction %v, events each source has for its target %v", got, want)
	for k, w := range want {
		if got[k] != w || w == 0 {
			t.Errorf("%s applied %d events, want %d (each once)", k, got[k], w)
		}
	}
}

// TestFilerSyncPathsAndExcludes: A's /x kept in step with B's /y, A to B
// only, with /x/skip left out. Renames across the boundary become
// deletes and creates (a directory moved in brings its contents); nothing
// made on B goes back, nor anything outside /x.
func TestFilerSyncPathsAndExcludes(t *testing.T) {
	p := startSyncPair(t)
	a, b := p.ma, p.mb
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(a.Path("x", "skip", "d", "e"), 0o755))
	must(os.MkdirAll(a.Path("other"), 0o755))
	must(os.MkdirAll(b.Path("y"), 0o755))
	must(os.WriteFile(a.Path("x", "skip", "d", "e", "deep"), []byte("deep"), 0o644))
	_, _ = runSync(t, p.a, p.b, func(cfg *filersync.Config) {
		cfg.ActivePassive = true
		cfg.A.Path, cfg.B.Path = "/x", "/y"
		cfg.A.Exclude = []string{"/x/skip"}
	})
	must(os.WriteFile(a.Path("x", "a"), []byte("a"), 0o644))
	must(os.WriteFile(a.Path("x", "skip", "b"), []byte("b"), 0o644))
	must(os.WriteFile(a.Path("other", "c"), []byte("c"), 0o644))
	must(os.WriteFile(b.Path("y", "onlyb"), []byte("b only"), 0o644))
	waitContents(t, b.Path("y"), map[string]string{"/a": "a", "/onlyb": "b only"})
	must(os.Rename(a.Path("x", "a"), a.Path("x", "skip", "a"))) // out: a delete
	must(os.Rename(a.Path("x", "skip", "b"), a.Path("x", "b"))) // in: a create
	must(os.Rename(a.Path("x", "skip", "d"), a.Path("x", "d"))) // a directory in, with its contents
	must(os.Rename(a.Path("other", "c"), a.Path("x", "c")))     // in from outside the tree
	waitContents(t, b.Path("y"), map[string]string{"/b": "b", "/c": "c", "/d": "dir", "/d/e": "dir", "/d/e/deep": "deep", "/onlyb": "b only"})
	if _, err := os.Stat(a.Path("x", "onlyb")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("B's file reached A in active-passive mode: %v", err)
	}
}

// waitContents waits until the tree under root holds exactly want: per
// path relative to root, a file's content or "dir".
func waitContents(t *testing.T, root string, want map[string]string) {
	t.Helper()
	cluster.WaitFor(t, syncWithin, root+" in step", func() error {
		got := map[string]string{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel := strings.TrimPrefix(p, root)
			switch {
			case rel == "":
			case d.IsDir():
				got[rel] = "dir"
			default:
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				got[rel] = string(data)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if d := diffTrees(want, got); len(d) > 0 {
			return errors.New(strings.Join(d, "; "))
		}
		return nil
	})
}

// writeSyncTree writes the tree the bootstrap tests sync: dirs
// directories of perDir small files (up to a few KiB) under root, and bigs
// files of about bigSize bytes of random data beside them. It returns the
// number of files and their bytes.
func writeSyncTree(t *testing.T, root string, dirs, perDir, bigs, bigSize int) (files int, total int64) {
	t.Helper()
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range perDir {
			data := []byte(fmt.Sprintf("file %d/%d %s", d, f, strings.Repeat("x", f*37)))
			total += int64(len(data))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range bigs {
		data := randomBytes(t, bigSize+i)
		total += int64(len(data))
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("big%d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dirs*perDir + bigs, total
}

// TestFilerSyncRestartMidBootstrap: a sync stopped while it copies a tree
// of a few thousand files, and started again, finishes from its
// checkpoint: nothing missing, nothing duplicated. The first, whole
// bootstrap of the same tree into a third cluster is timed (files/s,
// MB/s).
func TestFilerSyncRestartMidBootstrap(t *testing.T) {
	p := startSyncPair(t)
	const dirs = 20
	files, total := writeSyncTree(t, p.ma.Path(), dirs, 100, 4, 3<<20)

	s1, stop1 := runSync(t, p.a, p.b, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	cluster.WaitFor(t, syncWithin, "sync under way", func() error {
		if n := s1.Stats()[0].Applied; n < int64(files)/4 {
			return fmt.Errorf("%d events applied", n)
		}
		return nil
	})
	stop1()
	st1 := s1.Stats()[0]
	if st1.Checkpoint.IsZero() {
		t.Fatalf("no checkpoint after %d events", st1.Applied)
	}
	s2, _ := runSync(t, p.a, p.b, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	waitSame(t, p.ma.Dir, p.mb.Dir)
	verifyClean(t, p.a, p.b)
	st2 := s2.Stats()[0]
	t.Logf("first run applied %d events (checkpoint %v), the second %d", st1.Applied, st1.Checkpoint.Format(time.RFC3339Nano), st2.Applied)

	// A whole bootstrap of the same tree, into a fresh cluster, timed to
	// the last of A's events applied (then checked through the mounts).
	cc := cluster.Start(t, cluster.Options{Filer: true})
	mc := cc.MountFiler(nil)
	events := countEvents(t, p.a, filerSignature(t, cc))
	start := time.Now()
	s3, _ := runSync(t, p.a, cc, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	cluster.WaitFor(t, syncWithin, "every event applied", func() error {
		if n := s3.Stats()[0].Applied; n < events {
			return fmt.Errorf("%d of %d events applied", n, events)
		}
		return nil
	})
	el := time.Since(start)
	waitSame(t, p.ma.Dir, mc.Dir)
	t.Logf("bootstrap from the change log: %d files (%d dirs, %d events), %.1f MB in %v: %.0f files/s, %.1f MB/s",
		files, dirs, events, float64(total)/1e6, el.Round(time.Millisecond), float64(files)/el.Seconds(), float64(total)/1e6/el.Seconds())
}

// TestFilerSyncLag: under a steady stream of small files written on A,
// the time from close on A to the file's content on B, per file.
func TestFilerSyncLag(t *testing.T) {
	p := startSyncPair(t)
	_, _ = runSync(t, p.a, p.b, nil)
	const files = 50
	var lags []time.Duration
	for i := range files {
		name := fmt.Sprintf("lag%03d", i)
		data := []byte(fmt.Sprintf("content of %s", name))
		if err := os.WriteFile(p.ma.Path(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		closed := time.Now()
		for {
			if got, err := os.ReadFile(p.mb.Path(name)); err == nil && bytes.Equal(got, data) {
				break
			}
			if time.Since(closed) > syncWithin {
				t.Fatalf("%s not on B after %v", name, syncWithin)
			}
			time.Sleep(time.Millisecond)
		}
		lags = append(lags, time.Since(closed))
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(lags)
	t.Logf("close on A to content on B: median %v, p90 %v, max %v (%d files, one every ~20 ms)",
		lags[len(lags)/2], lags[len(lags)*9/10], lags[len(lags)-1], files)
}

// TestFilerSyncLagUnderLoad: files written on A at a steady rate, not
// waiting for B (an open loop), a fifth of them large enough to need chunk
// copies; a watcher on B's mount notes when each is there whole. Reports
// the time from close on A to the content on B.
func TestFilerSyncLagUnderLoad(t *testing.T) {
	p := startSyncPair(t)
	_, _ = runSync(t, p.a, p.b, nil)
	const files, every = 120, 25 * time.Millisecond

	type written struct {
		name   string
		data   []byte
		closed time.Time
	}
	queue := make(chan written, files)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(queue)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := range files {
			<-tick.C
			name := fmt.Sprintf("load%03d", i)
			data := []byte(fmt.Sprintf("small file %s", name))
			if i%5 == 4 {
				data = randomBytes(t, (1+i%4)<<20)
			}
			if err := os.WriteFile(p.ma.Path(name), data, 0o644); err != nil {
				t.Error(err)
				return
			}
			queue <- written{name, data, time.Now()}
		}
	})

	var smallLags, bigLags []time.Duration
	var pending []written
	deadline := time.Now().Add(syncWithin + time.Duration(files)*every)
	for open := true; open || len(pending) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d files not on B in time, first %s", len(pending), pending[0].name)
		}
		for drained := false; open && !drained; {
			select {
			case w, ok := <-queue:
				if !ok {
					open = false
				} else {
					pending = append(pending, w)
				}
			default:
				drained = true
			}
		}
		pending = slices.DeleteFunc(pending, func(w written) bool {
			st, err := os.Stat(p.mb.Path(w.name))
			if err != nil || st.Size() != int64(len(w.data)) {
				return false
			}
			got, err := os.ReadFile(p.mb.Path(w.name))
			if err != nil || !bytes.Equal(got, w.data) {
				return false
			}
			lag := time.Since(w.closed)
			if len(w.data) > 1<<20-1 {
				bigLags = append(bigLags, lag)
			} else {
				smallLags = append(smallLags, lag)
			}
			return true
		})
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	verifyClean(t, p.a, p.b)
	for _, l := range []struct {
		what string
		lags []time.Duration
	}{{"small files", smallLags}, {"1-4 MiB files", bigLags}} {
		slices.Sort(l.lags)
		t.Logf("close on A to content on B, %s: median %v, p90 %v, max %v (%d files; one file every %v, open loop)",
			l.what, l.lags[len(l.lags)/2], l.lags[len(l.lags)*9/10], l.lags[len(l.lags)-1], len(l.lags), every)
	}
}

// TestFilerSyncFilerDown: a filer unreachable when sync starts, and one
// lost mid-run: sync retries, and once the filer is back everything made
// meanwhile arrives.
func TestFilerSyncFilerDown(t *testing.T) {
	p := startSyncPair(t)
	p.b.Filer.Stop()
	s, _ := runSync(t, p.a, p.b, nil)
	if err := os.WriteFile(p.ma.Path("while-b-down"), []byte("made while B's filer was down"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	p.b.Filer.Start()
	waitSame(t, p.ma.Dir, p.mb.Dir)

	// Now A's filer goes away mid-run while B changes.
	p.a.Filer.Stop()
	written := time.Now()
	if err := os.WriteFile(p.mb.Path("while-a-down"), randomBytes(t, 200<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, syncWithin, "a failed attempt to apply on A", func() error {
		for _, d := range s.Stats() {
			if d.Name == "b->a" && d.Retries > 0 {
				return nil
			}
		}
		return errors.New("no retry yet")
	})
	time.Sleep(500 * time.Millisecond) // checkpoints are written every 200 ms
	for _, d := range s.Stats() {
		if d.Name == "b->a" && !d.Checkpoint.Before(written) {
			t.Fatalf("b->a checkpoint %v passed an event it could not apply (written at %v)", d.Checkpoint, written)
		}
	}
	p.a.Filer.Start()
	waitSame(t, p.ma.Dir, p.mb.Dir)
	t.Logf("sync stats: %+v", s.Stats())
}

// TestFilerSyncBinary: `kelp filer.sync` as users run it: it syncs, serves
// its Prometheus metrics, and stops cleanly on SIGTERM; run again, it
// resumes from its checkpoint.
func TestFilerSyncBinary(t *testing.T) {
	p := startSyncPair(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", cluster.FreePort(t))
	args := []string{"filer.sync", "-a", p.a.Filer.MountAddr(), "-b", p.b.Filer.MountAddr(), "-metrics.addr", metrics,
		"-statusInterval", "200ms", "-a.debug"}
	proc := startKelp(t, args...)
	if err := os.WriteFile(p.ma.Path("one"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p.ma.Dir, p.mb.Dir)
	var body string
	cluster.WaitFor(t, syncWithin, "metrics", func() error {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		if err != nil || !strings.Contains(body, `kelp_filersync_last_applied_timestamp_seconds{direction="a->b"}`) {
			return fmt.Errorf("metrics: %v\n%s", err, body)
		}
		return nil
	})
	cluster.WaitFor(t, syncWithin, "a status line", func() error {
		if !strings.Contains(proc.out.String(), "filer.sync: status") {
			return errors.New("none yet")
		}
		return nil
	})
	proc.stop(t, 10*time.Second)
	for _, want := range []string{"filer.sync: applied", "filer.sync: status"} {
		if !strings.Contains(proc.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, proc.out)
		}
	}
	// Again: it resumes from the checkpoint rather than the beginning.
	if err := os.WriteFile(p.ma.Path("two"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	proc2 := startKelp(t, args[:len(args)-1]...)
	waitSame(t, p.ma.Dir, p.mb.Dir)
	cluster.WaitFor(t, syncWithin, "resume line", func() error {
		if !strings.Contains(proc2.out.String(), "checkpoint=true") {
			return fmt.Errorf("no resume from a checkpoint in:\n%s", proc2.out)
		}
		return nil
	})
}

// TestFilerSyncFilerProxy: chunk bytes moved through both filers' HTTP
// APIs instead of their volume servers; the target's filer takes smaller
// chunks than the source writes, so chunks are split on the way.
func TestFilerSyncFilerProxy(t *testing.T) {
	cluster.NeedFUSE(t)
	ca := cluster.Start(t, cluster.Options{Filer: true})
	cb := cluster.Start(t, cluster.Options{Filer: true, FilerConfig: func(cfg *filerd.Config) { cfg.ChunkSizeMB = 1 }})
	ma := ca.MountFiler(func(cfg *mount.Config) { cfg.ChunkSizeMB = 4 })
	mb := cb.MountFiler(nil)
	s, _ := runSync(t, ca, cb, func(cfg *filersync.Config) { cfg.A.FilerProxy, cfg.B.FilerProxy = true, true })
	makeTree(t, ma.Path(), "proxy")
	if err := os.WriteFile(ma.Path("big"), randomBytes(t, 9<<20+3), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mb.Path("fromb"), randomBytes(t, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSame(t, ma.Dir, mb.Dir)
	chunks := cb.FileChunks("/big")
	if len(chunks) < 10 {
		t.Fatalf("B holds /big in %d chunks, want the 4 MiB chunks split into 1 MiB ones", len(chunks))
	}
	t.Logf("sync stats: %+v", s.Stats())
}

// TestFilerSyncUnreadableChunk: a file whose chunk cannot be read from the
// source (its blob deleted behind the filer's back) and that comes to the
// target whole (moved into the tree kept in step, so its first event
// already lists its chunks) is never made on the target, not even empty:
// the event is retried, the rest of the tree goes on, and once the file
// is rewritten on the source the new content arrives whole. The retries
// leave no garbage: the target's volumes hold no more blobs after six
// failed attempts than after two (the chunks that could be read are copied
// once and kept for the retries), and once the file has arrived they hold
// just the blobs B's files name. Both with the chunk bytes moved straight
// between the volume servers and through the filers' blob proxies.
func TestFilerSyncUnreadableChunk(t *testing.T) {
	t.Run("direct", func(t *testing.T) { testFilerSyncUnreadableChunk(t, false) })
	t.Run("filerProxy", func(t *testing.T) { testFilerSyncUnreadableChunk(t, true) })
}

func testFilerSyncUnreadableChunk(t *testing.T, proxy bool) {
	p := startSyncPair(t)
	good, bad := randomBytes(t, 100<<10), randomBytes(t, 2<<20+5)
	if err := os.WriteFile(p.ma.Path("good"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	// Written where the sync does not look, then moved in.
	if err := os.Mkdir(p.ma.Path("staging"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.ma.Path("staging", "bad"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	chunks := p.a.FileChunks("/staging/bad")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.a.Client().Delete(ctx, chunks[1].FileId); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p.ma.Path("staging", "bad"), p.ma.Path("bad")); err != nil {
		t.Fatal(err)
	}
	s, _ := runSync(t, p.a, p.b, func(cfg *filersync.Config) {
		cfg.ActivePassive = true
		cfg.A.Exclude = []string{"/staging"}
		cfg.A.FilerProxy, cfg.B.FilerProxy = proxy, proxy
	})
	fc := p.b.FilerClient()
	notOnB := func() {
		t.Helper()
		_, err := fc.API().Lookup(ctx, &filerpb.LookupRequest{Parent: 1, Name: "bad"})
		if !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("B's filer has bad (lookup: %v) while one of its chunks cannot be read on A", err)
		}
	}
	retried := func(n int64) {
		t.Helper()
		cluster.WaitFor(t, syncWithin, fmt.Sprintf("good on B, and bad retried %d times", n), func() error {
			notOnB()
			got, err := os.ReadFile(p.mb.Path("good"))
			if err != nil || !bytes.Equal(got, good) {
				return fmt.Errorf("good: %v", err)
			}
			if r := s.Stats()[0].Retries; r < n {
				return fmt.Errorf("%d retries so far", r)
			}
			return nil
		})
	}
	retried(2)
	blobs2, bytes2 := liveBlobs(p.b)
	retried(6)
	blobs6, bytes6 := liveBlobs(p.b)
	t.Logf("B's volumes: %d blobs, %d bytes after 2 failed attempts; %d blobs, %d bytes after 6", blobs2, bytes2, blobs6, bytes6)
	if blobs6 != blobs2 || bytes6 != bytes2 {
		t.Fatalf("failed attempts leave garbage on B: %d blobs (%d bytes) after 2, %d (%d) after 6", blobs2, bytes2, blobs6, bytes6)
	}
	notOnB()
	if _, err := os.Lstat(p.mb.Path("bad")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("B's mount shows bad (%v) while one of its chunks cannot be read on A", err)
	}
	fresh := randomBytes(t, 1<<20+9)
	if err := os.WriteFile(p.ma.Path("bad"), fresh, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.ma.Path("staging")); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p.ma.Dir, p.mb.Dir)
	if got, err := os.ReadFile(p.mb.Path("bad")); err != nil || !bytes.Equal(got, fresh) {
		t.Fatalf("bad on B: %d bytes, %v; want the %d rewritten on A", len(got), err, len(fresh))
	}
	// B's collector deletes what the content replaced; what the failed
	// attempts copied is the sync's to delete.
	cluster.WaitFor(t, syncWithin, "B's volumes holding just what B's files name", func() error {
		named := map[string]bool{}
		for _, f := range []string{"/good", "/bad"} {
			for _, ch := range p.b.FileChunks(f) {
				named[ch.FileId] = true
			}
		}
		if n, _ := liveBlobs(p.b); n != uint64(len(named)) {
			return fmt.Errorf("%d blobs live, %d named by files", n, len(named))
		}
		return nil
	})
}

// liveBlobs counts the blobs live in c's volume servers, and the bytes
// their volumes hold for them.
func liveBlobs(c *cluster.Cluster) (blobs uint64, size int64) {
	for _, v := range c.Volumes {
		for _, st := range v.Server().Store().Status() {
			blobs += st.FileCount
			size += st.Size - st.DeletedBytes
		}
	}
	return blobs, size
}

// TestFilerSyncReplay: applying the whole history again (the checkpoint
// lost) changes nothing, even where a name was renamed away and made
// anew afterwards, and where a directory replaced another by rename.
func TestFilerSyncReplay(t *testing.T) {
	p := startSyncPair(t)
	a := p.ma
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	makeTree(t, a.Path(), "replay")
	must(os.Rename(a.Path("dir"), a.Path("dir.1")))
	must(os.MkdirAll(a.Path("dir", "new"), 0o755))
	must(os.WriteFile(a.Path("dir", "new", "x"), []byte("made after the rename"), 0o644))
	must(os.Mkdir(a.Path("empty"), 0o755))
	must(unix.Rename(a.Path("dir.1", "sub"), a.Path("empty"))) // a directory replacing an empty one (os.Rename refuses)
	must(os.WriteFile(a.Path("f"), []byte("first"), 0o644))
	must(os.Rename(a.Path("f"), a.Path("g")))
	must(os.WriteFile(a.Path("f"), []byte("second, made after f was renamed"), 0o644))
	_, stop := runSync(t, p.a, p.b, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	waitSame(t, a.Dir, p.mb.Dir)
	stop()
	before, err := treeState(t, p.mb.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// Forget the checkpoint: the next sync replays from the beginning.
	key := fmt.Sprintf("filer.sync.checkpoint.%d:/>/", filerSignature(t, p.a))
	if _, err := p.b.FilerClient().API().KvDelete(context.Background(), &filerpb.KvDeleteRequest{Key: []byte(key)}); err != nil {
		t.Fatal(err)
	}
	history := countEvents(t, p.a, filerSignature(t, p.b))
	s, _ := runSync(t, p.a, p.b, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	cluster.WaitFor(t, syncWithin, "the replay", func() error {
		if st := s.Stats()[0]; st.Applied < history {
			return fmt.Errorf("%d of %d events applied again", st.Applied, history)
		}
		return nil
	})
	waitSame(t, a.Dir, p.mb.Dir)
	after, err := treeState(t, p.mb.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(before, after); len(d) > 0 {
		t.Fatalf("the replay changed B: %v", d)
	}
	verifyClean(t, p.a, p.b)
	t.Logf("replayed %d events", s.Stats()[0].Applied)
}
