package integration

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/filersync"
	"github.com/kelpfs/kelp/integration/cluster"
)

// filer.sync topologies and flags: one source into two targets, the
// -concurrency setting, -a.fromTsMs, -b.path and -b.excludePaths in the
// B->A direction, and `kelp filer.sync.verify`'s exit code.

// waitVerified polls Verify between a and b until it reports them clean.
func waitVerified(t *testing.T, a, b filersync.VerifySide) {
	t.Helper()
	cluster.WaitFor(t, syncWithin, fmt.Sprintf("%s and %s verified clean", a.Path, b.Path), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := filersync.Verify(ctx, a, b, filersync.VerifyOptions{})
		if err != nil {
			return err
		}
		if !rep.Clean() {
			return fmt.Errorf("missing %v, extra %v, differing %v", rep.Missing, rep.Extra, rep.Differ)
		}
		return nil
	})
}

// wholeTree is the whole namespace of c's filer, for Verify.
func wholeTree(c *cluster.Cluster) filersync.VerifySide {
	return filersync.VerifySide{Filer: c.FilerClient().API(), Path: "/"}
}

// churn makes changes of every kind on a mount: a varied tree, then
// renames of files and directories (one over an existing file), deletes
// of a file and of a directory with contents, overwrites, a chmod, xattr
// changes and hard links.
func churn(t *testing.T, m *cluster.Mount, tag string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	makeTree(t, m.Path(), tag)
	for d := range 4 {
		dir := m.Path(fmt.Sprintf("many%d", d))
		must(os.MkdirAll(filepath.Join(dir, "in"), 0o755))
		for f := range 15 {
			must(os.WriteFile(filepath.Join(dir, "in", fmt.Sprintf("f%02d", f)), []byte(fmt.Sprintf("%s %d %d", tag, d, f)), 0o644))
		}
	}
	must(os.Rename(m.Path("dir", "sub"), m.Path("sub-moved")))
	must(os.Rename(m.Path("many0"), m.Path("many1", "many0-inside")))
	must(os.Rename(m.Path("many2", "in", "f00"), m.Path("many2", "in", "f01"))) // over an existing file
	must(os.Rename(m.Path("small"), m.Path("small-renamed")))
	must(os.Remove(m.Path("dir", "fifo")))
	must(os.RemoveAll(m.Path("many3")))
	must(os.WriteFile(m.Path("many1", "in", "f05"), randomBytes(t, 400<<10), 0o600))
	must(os.Truncate(m.Path("dir", "chunk"), 10))
	must(os.Chmod(m.Path("sub-moved"), 0o711))
	must(unix.Setxattr(m.Path("small-renamed"), "user.x", []byte("1"), 0))
	must(unix.Removexattr(m.Path("dir", "chunk"), "user.tag"))
	must(os.Link(m.Path("many1", "in", "f05"), m.Path("many2", "f05-link")))
	must(os.Mkdir(m.Path("many3"), 0o755)) // the name again, after its delete
	must(os.WriteFile(m.Path("many3", "again"), []byte("made after the delete"), 0o644))
}

// appliedBy is the a->b count of each Syncer, by the name given.
func appliedBy(syncs map[string]*filersync.Syncer) map[string]int64 {
	out := map[string]int64{}
	for name, s := range syncs {
		for _, d := range s.Stats() {
			if d.Name == "a->b" {
				out[name] = d.Applied
			}
		}
	}
	return out
}

// TestFilerSyncFanOut: A -> B and A -> C at once, two active-passive
// syncs. Live changes on A of every kind (renames of files and
// directories, deletes, overwrites, links) reach both, Verify finds each
// clean, and each direction applied exactly the events A's log holds for
// it, once each.
func TestFilerSyncFanOut(t *testing.T) {
	cluster.NeedFUSE(t)
	ca, cb, cc := cluster.Start(t, cluster.Options{Filer: true}), cluster.Start(t, cluster.Options{Filer: true}),
		cluster.Start(t, cluster.Options{Filer: true})
	ma := ca.MountFiler(nil)
	passive := func(cfg *filersync.Config) { cfg.ActivePassive = true }
	ab, _ := runSync(t, ca, cb, passive)
	ac, _ := runSync(t, ca, cc, passive)

	churn(t, ma, "fan")
	waitVerified(t, wholeTree(ca), wholeTree(cb))
	waitVerified(t, wholeTree(ca), wholeTree(cc))
	time.Sleep(time.Second) // let the counters settle

	want := map[string]int64{"A->B": countEvents(t, ca, filerSignature(t, cb)), "A->C": countEvents(t, ca, filerSignature(t, cc))}
	got := appliedBy(map[string]*filersync.Syncer{"A->B": ab, "A->C": ac})
	t.Logf("events applied per direction %v, events A's log has for each target %v", got, want)
	for k, w := range want {
		if got[k] != w || w < 50 {
			t.Errorf("%s applied %d events, want %d (each once)", k, got[k], w)
		}
	}
}

// TestFilerSyncConcurrency: the same history replayed from A into B at
// -concurrency 1 and into C at 32, at once: both end as A is (and so the
// same as each other), each having applied every event once. The time
// each took is logged.
func TestFilerSyncConcurrency(t *testing.T) {
	cluster.NeedFUSE(t)
	ca, cb, cc := cluster.Start(t, cluster.Options{Filer: true}), cluster.Start(t, cluster.Options{Filer: true}),
		cluster.Start(t, cluster.Options{Filer: true})
	ma := ca.MountFiler(nil)
	churn(t, ma, "conc") // before the syncs start: a backlog to replay
	history := countEvents(t, ca, filerSignature(t, cb))

	took := map[string]time.Duration{}
	syncs := map[string]*filersync.Syncer{}
	start := time.Now()
	for _, tc := range []struct {
		name string
		dst  *cluster.Cluster
		n    int
	}{{"concurrency 1", cb, 1}, {"concurrency 32", cc, 32}} {
		s, _ := runSync(t, ca, tc.dst, func(cfg *filersync.Config) { cfg.ActivePassive, cfg.Concurrency = true, tc.n })
		syncs[tc.name] = s
	}
	cluster.WaitFor(t, syncWithin, "both replays done", func() error {
		for name, n := range appliedBy(syncs) {
			if n < history {
				return fmt.Errorf("%s: %d of %d events applied", name, n, history)
			}
			if _, ok := took[name]; !ok {
				took[name] = time.Since(start)
			}
		}
		return nil
	})
	waitVerified(t, wholeTree(ca), wholeTree(cb))
	waitVerified(t, wholeTree(ca), wholeTree(cc))
	waitVerified(t, wholeTree(cb), wholeTree(cc))
	// Live changes after the replay, too.
	if err := os.Rename(ma.Path("many1"), ma.Path("many1-live")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ma.Path("many1-live", "in", "f07"), []byte("live"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitVerified(t, wholeTree(ca), wholeTree(cb))
	waitVerified(t, wholeTree(ca), wholeTree(cc))
	time.Sleep(500 * time.Millisecond)
	final := countEvents(t, ca, filerSignature(t, cb))
	got := appliedBy(syncs)
	for name, n := range got {
		if n != final {
			t.Errorf("%s applied %d events, want %d (each once)", name, n, final)
		}
	}
	t.Logf("replay of %d events (both at once, sharing the machine): %v; applied %v", history, took, got)
}

// TestFilerSyncFromTs: `kelp filer.sync -a.fromTsMs T` without a
// checkpoint applies A's events after T and none before: files made
// before T stay off B, a file made before and rewritten after arrives
// with its new content, and so do live changes.
func TestFilerSyncFromTs(t *testing.T) {
	p := startSyncPair(t)
	a, b := p.ma, p.mb
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(a.Path("before-dir"), 0o755))
	must(os.WriteFile(a.Path("before-dir", "f"), []byte("before"), 0o644))
	must(os.WriteFile(a.Path("before"), []byte("before"), 0o644))
	must(os.WriteFile(a.Path("rewritten"), []byte("old content"), 0o644))
	time.Sleep(5 * time.Millisecond)
	from := time.Now().UnixMilli()
	time.Sleep(5 * time.Millisecond)
	must(os.WriteFile(a.Path("after"), []byte("after"), 0o644))
	must(os.WriteFile(a.Path("rewritten"), []byte("new content"), 0o644))
	must(os.MkdirAll(a.Path("after-dir", "sub"), 0o750))

	proc := startKelp(t, "filer.sync", "-a", p.a.Filer.MountAddr(), "-b", p.b.Filer.MountAddr(), "-isActivePassive",
		"-a.fromTsMs", fmt.Sprint(from))
	waitContent := func(name, want string) {
		t.Helper()
		cluster.WaitFor(t, syncWithin, name+" on B", func() error {
			got, err := os.ReadFile(b.Path(name))
			if err != nil || string(got) != want {
				return fmt.Errorf("%q, %v", got, err)
			}
			return nil
		})
	}
	waitContent("after", "after")
	waitContent("rewritten", "new content")
	must(os.WriteFile(a.Path("live"), []byte("live"), 0o644))
	waitContent("live", "live")
	if st, err := os.Stat(b.Path("after-dir", "sub")); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("after-dir/sub on B: %v, %v", st, err)
	}
	for _, name := range []string{"before", "before-dir"} {
		if _, err := os.Lstat(b.Path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s, made before -a.fromTsMs, is on B (%v)", name, err)
		}
	}
	if !strings.Contains(proc.out.String(), fmt.Sprintf("since_ns=%d", from*int64(time.Millisecond))) {
		t.Errorf("no start from %d ms in the log:\n%s", from, proc.out)
	}
	proc.stop(t, 10*time.Second)
}

// TestFilerSyncReversePathsAndExcludes: active-active between A's /x and
// B's /y with -b.excludePaths on B's side: what B makes under /y reaches
// A's /x, what B makes under its excluded subtrees or outside /y does
// not; a rename on B across the boundary becomes a delete or a create on
// A (a directory moved in brings its contents); A's changes still reach
// B.
func TestFilerSyncReversePathsAndExcludes(t *testing.T) {
	p := startSyncPair(t)
	a, b := p.ma, p.mb
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(a.Path("x"), 0o755))
	must(os.MkdirAll(b.Path("y", "skip", "d", "e"), 0o755))
	must(os.MkdirAll(b.Path("y", "tmp"), 0o755))
	must(os.WriteFile(b.Path("y", "skip", "d", "e", "deep"), []byte("deep"), 0o644))
	proc := startKelp(t, "filer.sync", "-a", p.a.Filer.MountAddr(), "-b", p.b.Filer.MountAddr(),
		"-a.path", "/x", "-b.path", "/y", "-b.excludePaths", "/y/skip, /y/tmp")
	must(os.WriteFile(b.Path("y", "fromb"), []byte("from b"), 0o644))
	must(os.WriteFile(b.Path("y", "skip", "s"), []byte("excluded"), 0o644))
	must(os.WriteFile(b.Path("y", "tmp", "t"), []byte("excluded too"), 0o644))
	must(os.MkdirAll(b.Path("outside"), 0o755))
	must(os.WriteFile(b.Path("outside", "o"), []byte("outside /y"), 0o644))
	must(os.WriteFile(a.Path("x", "froma"), []byte("from a"), 0o644))

	waitContents(t, a.Path("x"), map[string]string{"/fromb": "from b", "/froma": "from a"})
	cluster.WaitFor(t, syncWithin, "A's file on B", func() error {
		_, err := os.Stat(b.Path("y", "froma"))
		return err
	})

	must(os.Rename(b.Path("y", "fromb"), b.Path("y", "skip", "fromb"))) // out: a delete on A
	must(os.Rename(b.Path("y", "skip", "s"), b.Path("y", "s")))         // in: a create on A
	must(os.Rename(b.Path("y", "skip", "d"), b.Path("y", "d")))         // a directory in, with its contents
	must(os.Rename(b.Path("outside", "o"), b.Path("y", "tmp", "o")))    // from outside into an excluded tree: nothing
	waitContents(t, a.Path("x"), map[string]string{"/froma": "from a", "/s": "excluded", "/d": "dir", "/d/e": "dir", "/d/e/deep": "deep"})
	waitVerified(t, filersync.VerifySide{Filer: p.a.FilerClient().API(), Path: "/x"},
		filersync.VerifySide{Filer: p.b.FilerClient().API(), Path: "/y", Exclude: []string{"/y/skip", "/y/tmp"}})
	for _, name := range []string{"outside", "y"} {
		if _, err := os.Lstat(a.Path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("B's /%s reached A outside /x (%v)", name, err)
		}
	}
	proc.stop(t, 10*time.Second)
}

// TestFilerSyncVerifyBinary: `kelp filer.sync.verify` exits 0 when B is
// in step with A, and 1, naming the file, when B lacks one.
func TestFilerSyncVerifyBinary(t *testing.T) {
	p := startSyncPair(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(p.ma.Path("d", "e"), 0o755))
	must(os.WriteFile(p.ma.Path("d", "e", "victim"), randomBytes(t, 200<<10), 0o644))
	must(os.WriteFile(p.ma.Path("d", "other"), []byte("other"), 0o644))
	_, stop := runSync(t, p.a, p.b, func(cfg *filersync.Config) { cfg.ActivePassive = true })
	waitSame(t, p.ma.Dir, p.mb.Dir)
	stop()

	verify := func() (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, kelpBinary(t), "filer.sync.verify", "-a", p.a.Filer.MountAddr(),
			"-b", p.b.Filer.MountAddr()).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &ee) && ctx.Err() == nil:
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("filer.sync.verify: %v\n%s", err, out)
		return 0, ""
	}
	code, out := verify()
	if code != 0 || !strings.Contains(out, "0 missing on B, 0 extra on B, 0 differing") {
		t.Fatalf("in step: exit %d, want 0:\n%s", code, out)
	}
	must(os.Remove(p.mb.Path("d", "e", "victim")))
	code, out = verify()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || !slices.Contains(lines, "missing on B: /d/e/victim") {
		t.Fatalf("B lacks /d/e/victim: exit %d, want 1 and a line naming it:\n%s", code, out)
	}
	t.Logf("verify with a file missing on B, exit %d:\n%s", code, out)
}
