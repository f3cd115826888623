package integration

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kelpfs/kelp/filersync"
	"github.com/kelpfs/kelp/integration/cluster"
)

// appliedTs reads the source timestamps of the events a `kelp filer.sync
// -a.debug` run logged as applied.
var appliedLine = regexp.MustCompile(`filer\.sync: applied\b.*?ts_ns=(\d+)`)

func appliedTs(t *testing.T, out string) map[int64]bool {
	t.Helper()
	ts := map[int64]bool{}
	for _, m := range appliedLine.FindAllStringSubmatch(out, -1) {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			t.Fatalf("applied line with a bad ts_ns %q", m[1])
		}
		ts[n] = true
	}
	return ts
}

// TestFilerSyncKilledMidBootstrap: `kelp filer.sync` killed with SIGKILL
// (no final checkpoint) while it copies a tree of a few thousand files,
// then started again: it resumes from the last checkpoint it saved, so it
// re-applies only the events after it, and the trees end in step with
// every event of the source applied at least once.
func TestFilerSyncKilledMidBootstrap(t *testing.T) {
	p := startSyncPair(t)
	writeSyncTree(t, p.ma.Path(), 20, 100, 2, 2<<20)
	total := countEvents(t, p.a, filerSignature(t, p.b))

	args := []string{"filer.sync", "-a", p.a.Filer.MountAddr(), "-b", p.b.Filer.MountAddr(), "-isActivePassive", "-a.debug", "-statusInterval", "100ms"}
	// One event at a time, so that the kill lands mid-bootstrap.
	first := startKelp(t, append(args, "-concurrency", "1")...)
	cluster.WaitFor(t, syncWithin, "a third of the bootstrap applied and a checkpoint saved", func() error {
		out := first.out.String()
		if n := int64(len(appliedTs(t, out))); n < total/3 {
			return fmt.Errorf("%d of %d events applied", n, total)
		}
		if !savedCheckpoint.MatchString(out) {
			return errors.New("no checkpoint saved yet")
		}
		return nil
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	run1 := appliedTs(t, first.out.String())
	if int64(len(run1)) >= total {
		t.Fatalf("the first run applied all %d events before the kill; the test needs a bigger tree\n%s", total, first.out.String())
	}

	second := startKelp(t, args...)
	waitSame(t, p.ma.Dir, p.mb.Dir)
	verifyClean(t, p.a, p.b)
	// Every event is applied by then; wait for the log lines to catch up.
	var run2 map[int64]bool
	cluster.WaitFor(t, syncWithin, "every event applied", func() error {
		run2 = appliedTs(t, second.out.String())
		union := len(run1)
		for ts := range run2 {
			if !run1[ts] {
				union++
			}
		}
		if int64(union) != total {
			return fmt.Errorf("%d distinct events applied over both runs, the log holds %d", union, total)
		}
		return nil
	})
	second.stop(t, 10*time.Second)

	// The second run starts at the checkpoint the first one saved: nothing
	// it applies is older than that, and what the first applied after it
	// is applied again.
	since := resumedSince(t, second.out.String())
	var again int
	for ts := range run2 {
		if ts <= since {
			t.Errorf("second run applied event %d, at or before its checkpoint %d", ts, since)
		}
		if run1[ts] {
			again++
		}
	}
	for ts := range run1 {
		if ts > since && !run2[ts] {
			t.Errorf("event %d applied by the first run after its checkpoint was not applied again", ts)
		}
	}
	if again >= len(run1) {
		t.Errorf("the second run re-applied all %d events of the first: it did not resume", len(run1))
	}
	t.Logf("log holds %d events; killed after %d applied; restarted from the checkpoint, re-applied %d and applied %d new",
		total, len(run1), again, len(run2)-again)
}

// savedCheckpoint matches a status line whose checkpoint is past the
// beginning of time: one has been saved.
var savedCheckpoint = regexp.MustCompile(`filer\.sync: status\b.*? checkpoint=2\d{3}-`)

// resumedSince reads the position a `kelp filer.sync` run started from.
func resumedSince(t *testing.T, out string) int64 {
	t.Helper()
	m := regexp.MustCompile(`filer\.sync: following\b.*?since_ns=(\d+) .*?checkpoint=true`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the restarted sync did not say it resumed from a checkpoint:\n%s", out)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFilerSyncLinkAfterRestart: a hard link made on A to a file the sync
// copied while it had one name, before the sync restarted (so it no
// longer remembers which of B's files is the copy), is a link on B too,
// found through the link event's other name, not a second copy.
func TestFilerSyncLinkAfterRestart(t *testing.T) {
	p := startSyncPair(t)
	data := randomBytes(t, 300<<10)
	if err := os.WriteFile(p.ma.Path("orig"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p.ma.Path("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, stop := runSync(t, p.a, p.b, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	waitSame(t, p.ma.Dir, p.mb.Dir)
	stop()

	if err := os.Link(p.ma.Path("orig"), p.ma.Path("sub/linked")); err != nil {
		t.Fatal(err)
	}
	_, _ = runSync(t, p.a, p.b, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	waitSame(t, p.ma.Dir, p.mb.Dir) // the tree states include which names share an inode
	var orig, linked syscall.Stat_t
	if err := syscall.Stat(p.mb.Path("orig"), &orig); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(p.mb.Path("sub/linked"), &linked); err != nil {
		t.Fatal(err)
	}
	if orig.Ino != linked.Ino || orig.Nlink != 2 {
		t.Fatalf("on B: orig inode %d (%d links), sub/linked inode %d; want one inode with 2 links", orig.Ino, orig.Nlink, linked.Ino)
	}
	verifyClean(t, p.a, p.b)
}
