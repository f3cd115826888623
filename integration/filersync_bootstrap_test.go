package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd"
	"github.com/kelpfs/kelp/filersync"
	"github.com/kelpfs/kelp/integration/cluster"
)

// filer.sync's bootstrap: a source whose change log no longer reaches
// back to where the sync must start has its tree copied by a walk, and
// the sync then follows its log from the position noted before the walk.

// shortRetention is the source's LogRetention in these tests: the filer
// trims its log every second, so a tree written and left a couple of
// seconds is gone from the log.
const shortRetention = time.Second

// startShortLogCluster starts a cluster whose filer keeps its change log
// for shortRetention only.
func startShortLogCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	return cluster.Start(t, cluster.Options{Filer: true, FilerConfig: func(cfg *filerd.Config) { cfg.LogRetention = shortRetention }})
}

// waitLogTrimmed waits until c's change log no longer holds the events
// after since: a subscription from there is refused.
func waitLogTrimmed(t *testing.T, c *cluster.Cluster, since int64) {
	t.Helper()
	api := c.FilerClient().API()
	cluster.WaitFor(t, 10*time.Second, "the change log trimmed", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		sub, err := api.SubscribeMetadata(ctx, &filerpb.SubscribeMetadataRequest{SinceNs: since, ClientName: "test trimmed?"})
		if err == nil {
			_, err = sub.Recv()
		}
		if errors.Is(err, client.ErrPrecondition) {
			return nil
		}
		return fmt.Errorf("a subscription from %d still works (%v)", since, err)
	})
}

// logBuffer collects a sync's log lines, and shows them in the test
// output like syncLog when KELP_TEST_LOGS is set.
func logBuffer(t *testing.T) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	var h slog.Handler = slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	if os.Getenv("KELP_TEST_LOGS") != "" {
		h = slog.NewTextHandler(multiWriter{buf, tWriter{t}}, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	return slog.New(h), buf
}

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

// waitLog waits until buf holds a line with want, n times or more.
func waitLog(t *testing.T, buf *syncBuffer, want string, n int) {
	t.Helper()
	cluster.WaitFor(t, syncWithin, fmt.Sprintf("%d log lines with %q", n, want), func() error {
		if got := strings.Count(buf.String(), want); got < n {
			return fmt.Errorf("%d so far in:\n%s", got, buf.String())
		}
		return nil
	})
}

// checkpointKey is the KV key of the a->b checkpoint of whole namespaces.
func checkpointKey(t *testing.T, src *cluster.Cluster) []byte {
	return fmt.Appendf(nil, "filer.sync.checkpoint.%d:/>/", filerSignature(t, src))
}

func hasCheckpoint(t *testing.T, api filerpb.FilerClient, key []byte) bool {
	t.Helper()
	kv, err := api.KvGet(context.Background(), &filerpb.KvGetRequest{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return kv.Found
}

// TestFilerSyncBootstrap: A's log was trimmed (short retention) after a
// varied tree was written: files of several sizes, directories, a
// symlink, hard links across directories, xattrs on a file and a
// directory, a fifo, and a file made and deleted. Synced both ways into
// an empty B, the tree is walked (a log line says so), B ends clean, and
// changes made on A after the walk arrive through the log. Nothing the
// walk wrote to B comes back to A. Stopped, with more changes made on A
// and the log trimmed past the checkpoint, a restart says events were
// lost and walks again, repairing B.
func TestFilerSyncBootstrap(t *testing.T) {
	cluster.NeedFUSE(t)
	ca, cb := startShortLogCluster(t), cluster.Start(t, cluster.Options{Filer: true})
	ma, mb := ca.MountFiler(nil), cb.MountFiler(nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	makeTree(t, ma.Path(), "boot")
	must(os.MkdirAll(ma.Path("links", "deep"), 0o755))
	must(os.Link(ma.Path("dir", "sub", "multi"), ma.Path("links", "deep", "multi-too")))
	must(os.Link(ma.Path("dir", "sub", "multi"), ma.Path("links", "multi-three")))
	must(unix.Setxattr(ma.Path("links"), "user.dir", []byte("on a directory"), 0))
	must(os.WriteFile(ma.Path("gone"), []byte("made, then deleted"), 0o644))
	must(os.Remove(ma.Path("gone")))
	waitLogTrimmed(t, ca, 0)

	log, buf := logBuffer(t)
	s, stop := runSync(t, ca, cb, func(cfg *filersync.Config) { cfg.Logger = log })
	waitLog(t, buf, "no longer reaches back to its beginning", 1)
	waitLog(t, buf, "tree copied", 1)
	waitSame(t, ma.Dir, mb.Dir)
	verifyClean(t, ca, cb)
	st, err := os.Stat(mb.Path("links", "multi-three"))
	must(err)
	if n := st.Sys().(*syscall.Stat_t).Nlink; n != 3 {
		t.Errorf("B's multi-three has %d links, want 3 (the walk copies hard links as links)", n)
	}

	// Live changes after the walk come through the log.
	must(os.WriteFile(ma.Path("after"), randomBytes(t, 700<<10), 0o644))
	must(os.Rename(ma.Path("links"), ma.Path("links-moved")))
	must(os.Remove(ma.Path("dir", "fifo")))
	must(os.Chmod(ma.Path("dir", "chunk"), 0o604))
	waitSame(t, ma.Dir, mb.Dir)
	verifyClean(t, ca, cb)
	time.Sleep(300 * time.Millisecond) // any echo would have arrived by now
	for _, d := range s.Stats() {
		if d.Name == "a->b" && d.Applied == 0 {
			t.Errorf("a->b applied no event after the walk")
		}
		if d.Name == "b->a" && d.Applied != 0 {
			t.Errorf("b->a applied %d events: what the walk or A's events wrote to B came back", d.Applied)
		}
	}
	stop()

	// Stopped longer than the retention: the checkpoint is trimmed away.
	stopped := time.Now().UnixNano()
	must(os.WriteFile(ma.Path("while-stopped"), []byte("written while the sync was stopped"), 0o644))
	must(os.WriteFile(ma.Path("dir", "chunk"), []byte("rewritten while stopped"), 0o604))
	must(os.MkdirAll(ma.Path("newdir", "x"), 0o700))
	waitLogTrimmed(t, ca, stopped)
	log2, buf2 := logBuffer(t)
	_, _ = runSync(t, ca, cb, func(cfg *filersync.Config) { cfg.Logger = log2 })
	waitLog(t, buf2, "events were lost", 1)
	waitLog(t, buf2, "tree copied", 1)
	waitSame(t, ma.Dir, mb.Dir)
	verifyClean(t, ca, cb)
	must(os.WriteFile(ma.Path("after-repair"), []byte("live again"), 0o644))
	waitSame(t, ma.Dir, mb.Dir)
	t.Logf("first run: %+v", s.Stats())
}

// TestFilerSyncBootstrapThroughput: the walk of 2000 small files in 20
// directories and 4 files of 3 MiB (as TestFilerSyncRestartMidBootstrap
// replays from the log) into an empty cluster, timed (files/s, MB/s);
// and a sync stopped mid-walk saves no checkpoint, so its next start
// walks again and ends clean.
func TestFilerSyncBootstrapThroughput(t *testing.T) {
	cluster.NeedFUSE(t)
	ca := startShortLogCluster(t)
	ma := ca.MountFiler(nil)
	const dirs = 20
	files, total := writeSyncTree(t, ma.Path(), dirs, 100, 4, 3<<20)
	waitLogTrimmed(t, ca, 0)
	key := checkpointKey(t, ca)

	// The measured walk, into an empty cluster: done when the checkpoint,
	// saved once the walk is complete, appears.
	cc := cluster.Start(t, cluster.Options{Filer: true})
	cAPI := cc.FilerClient().API()
	start := time.Now()
	sc, stopC := runSync(t, ca, cc, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	for !hasCheckpoint(t, cAPI, key) {
		if time.Since(start) > syncWithin {
			t.Fatal("no checkpoint on C: the walk did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	stopC()
	verifyClean(t, ca, cc)
	if st := sc.Stats()[0]; st.Walking || st.Walked < int64(files+dirs) {
		t.Errorf("after the walk: walking %v, %d entries walked; want done, and at least the %d files and %d dirs", st.Walking, st.Walked, files, dirs)
	}
	t.Logf("bootstrap walk: %d files (%d dirs), %.1f MB in %v: %.0f files/s, %.1f MB/s",
		files, dirs, float64(total)/1e6, el.Round(time.Millisecond), float64(files)/el.Seconds(), float64(total)/1e6/el.Seconds())

	// Stopped mid-walk: no checkpoint, so the next start walks again.
	cb := cluster.Start(t, cluster.Options{Filer: true})
	bAPI := cb.FilerClient().API()
	log, buf := logBuffer(t)
	_, stop1 := runSync(t, ca, cb, func(cfg *filersync.Config) { cfg.ActivePassive, cfg.Logger = true, log })
	cluster.WaitFor(t, syncWithin, "the walk under way on B", func() error {
		a, err := bAPI.Lookup(context.Background(), &filerpb.LookupRequest{Parent: 1, Name: "d03"})
		if err != nil {
			return err
		}
		l, err := bAPI.ReadDir(context.Background(), &filerpb.ReadDirRequest{Inode: a.Attr.Inode, Limit: 1024})
		if err != nil || len(l.Entries) < 10 {
			return fmt.Errorf("d03 on B: %v", err)
		}
		return nil
	})
	stop1()
	if strings.Contains(buf.String(), "tree copied") {
		t.Fatal("the walk finished before it could be stopped; nothing tested")
	}
	if hasCheckpoint(t, bAPI, key) {
		t.Fatal("a sync stopped mid-walk saved a checkpoint: its next start would skip the rest of the tree")
	}
	log2, buf2 := logBuffer(t)
	_, _ = runSync(t, ca, cb, func(cfg *filersync.Config) { cfg.ActivePassive, cfg.Logger = true, log2 })
	waitLog(t, buf2, "tree copied", 1)
	if !hasCheckpoint(t, bAPI, key) {
		t.Fatal("no checkpoint after the walk")
	}
	verifyClean(t, ca, cb)
}
