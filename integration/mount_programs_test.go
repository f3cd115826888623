package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// Real programs on a FUSE mount: cp -a, tar, git, SQLite (through Python's
// sqlite3) and rsync, each checked against the same work on a local
// directory with diff -r and a walk of both trees. One cluster and one mount
// (1 MiB chunks, so the larger files span several) serve every subtest,
// each in a directory of its own.
func TestMountPrograms(t *testing.T) {
	c, m := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	// The programs run side by side (they mostly wait on round trips),
	// each in its own directory; the group ends when all have.
	t.Run("group", func(t *testing.T) {
		for _, p := range []struct {
			name string
			fn   func(*testing.T, *cluster.Mount)
		}{{"CpA", testProgCp}, {"Tar", testProgTar}, {"Git", testProgGit}, {"SQLite", testProgSQLite}, {"Rsync", testProgRsync}} {
			t.Run(p.name, func(t *testing.T) {
				t.Parallel()
				p.fn(t, m)
			})
		}
	})
	// Everything the programs left behind reads the same through a second,
	// cold mount of the filer.
	t.Run("SecondMount", func(t *testing.T) {
		m2 := c.MountFiler(nil)
		for _, sub := range []string{"cp", "tar-x", "rsync"} {
			if _, err := os.Stat(m.Path(sub)); err != nil {
				t.Logf("skipping %s: %v (its subtest failed?)", sub, err)
				continue
			}
			compareTrees(t, m.Path(sub), m2.Path(sub), treeChecks{mtime: true, hardLinks: true})
		}
	})
}

// needProgram returns the path of a program the test runs: a skip when it
// is missing outside CI, a failure under CI (which installs it).
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (.ci/run must install it): %v", name, err)
	}
	t.Skipf("skipping: %s not installed", name)
	return ""
}

// progRun runs name with args in dir (when not "") with env added to the
// environment, under a deadline, and fails the test with the combined
// output when it does not exit 0. It returns stdout and stderr combined.
func progRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := progTry(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return out
}

// progTry is progRun without the verdict.
func progTry(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after 60s)", err)
	}
	return string(out), err
}

// diffR runs diff -r (symlinks compared as links) and fails on any
// difference.
func diffR(t *testing.T, a, b string) {
	t.Helper()
	needProgram(t, "diff")
	progRun(t, "", nil, "diff", "-r", "--no-dereference", a, b)
}

// treeFile is what compareTrees keeps of one entry.
type treeFile struct {
	mode   fs.FileMode // type and permission bits
	size   int64       // regular files
	mtime  time.Time
	target string // symlinks
	sum    string // regular files: sha256
	ino    uint64
	nlink  uint64
	isDir  bool
}

// treeChecks picks what compareTrees compares beyond names, types,
// permissions, sizes, content and link targets.
type treeChecks struct {
	mtime     bool // file and symlink mtimes, to the nanosecond
	dirMtime  bool // directory mtimes too
	hardLinks bool // names sharing an inode on one side share one on the other, with the same link count
}

// scanTree walks root without following symlinks.
func scanTree(root string) (map[string]treeFile, error) {
	out := map[string]treeFile{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		f := treeFile{mode: st.Mode(), mtime: st.ModTime(), ino: sys.Ino, nlink: uint64(sys.Nlink), isDir: st.IsDir()}
		switch {
		case st.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if int64(len(data)) != st.Size() {
				return fmt.Errorf("%s: stat says %d bytes, read %d", p, st.Size(), len(data))
			}
			h := sha256.Sum256(data)
			f.size, f.sum = st.Size(), hex.EncodeToString(h[:])
		case st.Mode()&fs.ModeSymlink != 0:
			if f.target, err = os.Readlink(p); err != nil {
				return err
			}
			if int64(len(f.target)) != st.Size() {
				return fmt.Errorf("symlink %s: size %d, target %q", p, st.Size(), f.target)
			}
		}
		out[rel] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return out, nil
}

// treeDiff lists how the trees under a and b differ in names, types,
// permissions, sizes, contents and symlink targets (and what checks adds).
func treeDiff(a, b string, checks treeChecks) ([]string, error) {
	ta, err := scanTree(a)
	if err != nil {
		return nil, err
	}
	tb, err := scanTree(b)
	if err != nil {
		return nil, err
	}
	var problems []string
	names := make([]string, 0, len(ta))
	for n := range ta {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fa := ta[n]
		fb, ok := tb[n]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: missing in %s", n, b))
			continue
		}
		if fa.mode != fb.mode {
			problems = append(problems, fmt.Sprintf("%s: mode %v vs %v", n, fa.mode, fb.mode))
		}
		if fa.size != fb.size || fa.sum != fb.sum {
			problems = append(problems, fmt.Sprintf("%s: content differs (%d vs %d bytes)", n, fa.size, fb.size))
		}
		if fa.target != fb.target {
			problems = append(problems, fmt.Sprintf("%s: symlink target %q vs %q", n, fa.target, fb.target))
		}
		if checks.mtime && (!fa.isDir || checks.dirMtime) && !fa.mtime.Equal(fb.mtime) {
			problems = append(problems, fmt.Sprintf("%s: mtime %v vs %v", n, fa.mtime.Format(time.RFC3339Nano), fb.mtime.Format(time.RFC3339Nano)))
		}
		if checks.hardLinks && fa.mode.IsRegular() && fa.nlink != fb.nlink {
			problems = append(problems, fmt.Sprintf("%s: nlink %d vs %d", n, fa.nlink, fb.nlink))
		}
	}
	for n := range tb {
		if _, ok := ta[n]; !ok {
			problems = append(problems, fmt.Sprintf("%s: only in %s", n, b))
		}
	}
	if checks.hardLinks {
		// Same inode on one side <=> same inode on the other.
		for _, n1 := range names {
			for _, n2 := range names {
				if n1 >= n2 || !ta[n1].mode.IsRegular() || !ta[n2].mode.IsRegular() {
					continue
				}
				fb1, ok1 := tb[n1]
				fb2, ok2 := tb[n2]
				if !ok1 || !ok2 {
					continue
				}
				if sa, sb := ta[n1].ino == ta[n2].ino, fb1.ino == fb2.ino; sa != sb {
					problems = append(problems, fmt.Sprintf("%s and %s: same inode %v in %s, %v in %s", n1, n2, sa, a, sb, b))
				}
			}
		}
	}
	sort.Strings(problems)
	return problems, nil
}

// compareTrees marks t failed (and goes on) unless treeDiff finds no
// difference; it reports whether the trees agree.
func compareTrees(t *testing.T, a, b string, checks treeChecks) bool {
	t.Helper()
	problems, err := treeDiff(a, b, checks)
	if err != nil {
		t.Error(err)
		return false
	}
	if len(problems) > 0 {
		t.Errorf("trees %s and %s differ:\n  %s", a, b, strings.Join(capLines(problems, 40), "\n  "))
		return false
	}
	return true
}

// capLines keeps the first n lines and says how many it left out.
func capLines(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return append(lines[:n:n], fmt.Sprintf("... and %d more", len(lines)-n))
}

// makeSourceTree builds a tree exercising what copy programs preserve:
// nested directories, files of several sizes (empty, inline, one chunk,
// several 1 MiB chunks with a ragged end), names with spaces and UTF-8,
// relative, dangling and directory symlinks, a hard link, unusual modes and
// past mtimes (directories last, so creating their contents does not bump
// them). The content is the same on every call.
func makeSourceTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	dirs := []string{"", "a", "a/b", "a/b/c", "empty dir", "ünï"}
	for _, d := range dirs {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	files := []struct {
		name string
		size int
		mode os.FileMode
	}{
		{"empty", 0, 0o644},
		{"small.txt", 13, 0o644},
		{"a/inline", 3000, 0o600},
		{"a/b/seventy-k", 70 << 10, 0o640},
		{"a/b/c/one-chunk", 1 << 20, 0o644},
		{"a/b/c/multi", 2<<20 + 512<<10 + 123, 0o755},
		{"ünï/naïve file", 5000, 0o444},
		{"a/exec.sh", 40, 0o755},
	}
	stamp := func(i int) []unix.Timespec {
		mt := time.Date(2019, 3, 4, 5, 6, 7, 123456789+i*1000, time.UTC).Add(time.Duration(i) * time.Hour)
		ts := unix.NsecToTimespec(mt.UnixNano())
		return []unix.Timespec{ts, ts}
	}
	for i, f := range files {
		data := make([]byte, f.size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		switch f.name {
		case "small.txt":
			data = []byte("hello, kelp!\n")
		case "a/exec.sh":
			data = []byte("#!/bin/sh\necho kelp\n" + strings.Repeat("#", 20))
		}
		p := filepath.Join(root, f.name)
		must(os.WriteFile(p, data, 0o600))
		must(os.Chmod(p, f.mode))
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, stamp(i), 0))
	}
	must(os.Link(filepath.Join(root, "a/b/seventy-k"), filepath.Join(root, "hardlink-to-70k")))
	for i, l := range [][2]string{
		{"a/b/c/multi", "link-to-multi"},
		{"../../small.txt", "a/b/up-link"},
		{"does/not/exist", "dangling"},
		{"a/b", "dir-link"},
	} {
		p := filepath.Join(root, l[1])
		must(os.Symlink(l[0], p))
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, stamp(len(files)+i), unix.AT_SYMLINK_NOFOLLOW))
	}
	must(os.Chmod(filepath.Join(root, "a/b/c"), 0o700))
	must(os.Chmod(filepath.Join(root, "ünï"), 0o750))
	for i := len(dirs) - 1; i >= 0; i-- {
		mt := time.Date(2018, 1, 2, 3, 4, 5, 600000000+i, time.UTC)
		must(os.Chtimes(filepath.Join(root, dirs[i]), mt, mt))
	}
}

func testProgCp(t *testing.T, m *cluster.Mount) {
	needProgram(t, "cp")
	src := filepath.Join(t.TempDir(), "src")
	makeSourceTree(t, src)
	dst := m.Path("cp")
	progRun(t, "", nil, "cp", "-a", src, dst)
	diffR(t, src, dst)
	compareTrees(t, src, dst, treeChecks{mtime: true, dirMtime: true, hardLinks: true})

	back := filepath.Join(t.TempDir(), "back")
	progRun(t, "", nil, "cp", "-a", dst, back)
	diffR(t, dst, back)
	compareTrees(t, src, back, treeChecks{mtime: true, dirMtime: true, hardLinks: true})

	// cp onto an existing copy overwrites in place (O_TRUNC) and must
	// leave the same tree.
	progRun(t, "", nil, "cp", "-a", "-T", src, dst)
	compareTrees(t, src, dst, treeChecks{mtime: true, dirMtime: true, hardLinks: true})
}

func testProgTar(t *testing.T, m *cluster.Mount) {
	needProgram(t, "tar")
	needProgram(t, "xz")
	src := filepath.Join(t.TempDir(), "src")
	makeSourceTree(t, src)
	// The tree on the mount, made by this process rather than a program.
	tree := m.Path("tar-tree")
	makeSourceTree(t, tree)
	compareTrees(t, src, tree, treeChecks{mtime: true, dirMtime: true, hardLinks: true})

	// tar the tree on the mount into a local tarball, extract it onto the
	// mount elsewhere. The POSIX (pax) format keeps sub-second times.
	local := t.TempDir()
	tarball := filepath.Join(local, "tree.tar")
	progRun(t, "", nil, "tar", "--format=posix", "-C", tree, "-cf", tarball, ".")
	list := progRun(t, "", nil, "tar", "-tvf", tarball)
	if !strings.Contains(list, "link to ./a/b/seventy-k") && !strings.Contains(list, "link to ./hardlink-to-70k") {
		t.Errorf("tar did not record the hard link (same inode on the mount?):\n%s", list)
	}
	x := m.Path("tar-x")
	if err := os.Mkdir(x, 0o755); err != nil {
		t.Fatal(err)
	}
	progRun(t, "", nil, "tar", "-C", x, "-xpf", tarball)
	diffR(t, tree, x)
	compareTrees(t, src, x, treeChecks{mtime: true, dirMtime: true, hardLinks: true})

	// A compressed tarball created on the mount, extracted locally.
	onMount := m.Path("tree.tar.xz")
	progRun(t, "", nil, "tar", "--format=posix", "-C", src, "-cJf", onMount, ".")
	st, err := os.Stat(onMount)
	if err != nil || st.Size() == 0 {
		t.Fatalf("tarball on the mount: %v", err)
	}
	progRun(t, "", nil, "xz", "-t", onMount)
	out := filepath.Join(local, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	progRun(t, "", nil, "tar", "-C", out, "-xpJf", onMount)
	diffR(t, src, out)
	compareTrees(t, src, out, treeChecks{mtime: true, dirMtime: true, hardLinks: true})
	// tar -d compares the archive with the tree it came from.
	if out, err := progTry("", nil, "tar", "-C", x, "-df", tarball); err != nil {
		t.Errorf("tar -d finds the extracted tree differs from the tarball: %v\n%s", err, out)
	}
}

func testProgGit(t *testing.T, m *cluster.Mount) {
	git := needProgram(t, "git")
	home := t.TempDir()
	env := []string{"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + filepath.Join(home, "gitconfig"),
		"GIT_AUTHOR_NAME=Kelp Test", "GIT_AUTHOR_EMAIL=kelp@example.com",
		"GIT_COMMITTER_NAME=Kelp Test", "GIT_COMMITTER_EMAIL=kelp@example.com", "LC_ALL=C"}
	repo := m.Path("repo")
	g := func(args ...string) string {
		t.Helper()
		return progRun(t, repo, env, git, args...)
	}
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	g("init", "-q", "-b", "main")
	write := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]byte{}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("src/pkg%d/file%d.go", i%4, i)
		want[name] = []byte(fmt.Sprintf("package pkg%d\n\n// File %d.\nvar X%d = %d\n", i%4, i, i, i*i))
	}
	want["README"] = []byte("kelp on kelp\n")
	want["blob.bin"] = randomBytes(t, 1<<20+300<<10)
	for n, d := range want {
		write(n, d)
	}
	g("add", "-A")
	g("commit", "-q", "-m", "first")

	want["README"] = []byte("kelp on kelp, second edition\n")
	want["src/pkg1/file1.go"] = append(want["src/pkg1/file1.go"], "var Y = 2\n"...)
	delete(want, "src/pkg2/file2.go")
	want["new/dir/new.txt"] = []byte("new file\n")
	for _, n := range []string{"README", "src/pkg1/file1.go", "new/dir/new.txt"} {
		write(n, want[n])
	}
	if err := os.Remove(filepath.Join(repo, "src/pkg2/file2.go")); err != nil {
		t.Fatal(err)
	}
	g("add", "-A")
	g("commit", "-q", "-m", "second")

	check := func() {
		t.Helper()
		log := strings.Split(strings.TrimSpace(g("log", "--oneline")), "\n")
		if len(log) != 2 || !strings.HasSuffix(log[0], " second") || !strings.HasSuffix(log[1], " first") {
			t.Fatalf("git log --oneline: %q", log)
		}
		if st := g("status", "--porcelain"); st != "" {
			t.Fatalf("git status --porcelain not empty:\n%s", st)
		}
		g("fsck", "--full", "--strict")
		if got := g("show", "HEAD:README"); got != string(want["README"]) {
			t.Fatalf("git show HEAD:README = %q", got)
		}
		if got := g("show", "HEAD~1:README"); got != "kelp on kelp\n" {
			t.Fatalf("git show HEAD~1:README = %q", got)
		}
		stat := g("diff", "--stat", "HEAD~1", "HEAD")
		if !strings.Contains(stat, "4 files changed") {
			t.Fatalf("git diff --stat HEAD~1 HEAD:\n%s", stat)
		}
	}
	check()
	// gc packs the loose objects (writes, renames, deletes); everything
	// must still check out.
	g("gc", "-q", "--prune=now")
	check()
	if packs, _ := filepath.Glob(filepath.Join(repo, ".git/objects/pack/*.pack")); len(packs) == 0 {
		t.Fatal("git gc left no pack")
	}

	// A clone from the mount to local disk has the same work tree.
	clone := filepath.Join(t.TempDir(), "clone")
	progRun(t, "", env, git, "clone", "-q", repo, clone)
	for n, d := range want {
		got, err := os.ReadFile(filepath.Join(clone, n))
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("clone %s: %v (%d bytes, want %d)", n, err, len(got), len(d))
		}
	}
	// And a clone onto the mount from local disk passes fsck.
	back := m.Path("repo-clone")
	progRun(t, "", env, git, "clone", "-q", "--no-local", clone, back)
	progRun(t, back, env, git, "fsck", "--full", "--strict")
	if st := progRun(t, back, env, git, "status", "--porcelain"); st != "" {
		t.Fatalf("git status in the clone on the mount:\n%s", st)
	}
}

// sqliteScript builds a database in several transactions (one of them
// rolled back), in the journal mode asked for, then reopens it and prints
// the integrity check, row count, journal mode and a checksum of the rows.
const sqliteScript = `
import hashlib, sqlite3, sys
path, mode, phase = sys.argv[1], sys.argv[2], sys.argv[3]
if phase == "build":
    con = sqlite3.connect(path, isolation_level=None)
    got = con.execute("PRAGMA journal_mode=" + mode).fetchone()[0]
    assert got == mode, got
    con.execute("create table t(id integer primary key, name text, val blob)")
    con.execute("create index t_name on t(name)")
    for tx in range(6):
        con.execute("begin")
        for i in range(500):
            n = tx * 500 + i
            con.execute("insert into t values(?, ?, ?)",
                        (n, "name-%d" % n, hashlib.sha256(str(n).encode()).digest() * (1 + n % 23)))
        con.execute("commit")
    con.execute("begin")
    con.execute("delete from t where id < 1500")
    con.execute("rollback")
    con.execute("begin")
    con.execute("update t set name = name || '-u' where id % 7 = 0")
    con.execute("delete from t where id % 97 = 3")
    con.execute("commit")
    con.execute("vacuum") if mode == "delete" else None
    if mode == "wal":
        busy, logged, ckpt = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0 and logged == ckpt, (busy, logged, ckpt)
    con.close()
con = sqlite3.connect(path)
h = hashlib.sha256()
n = 0
for row in con.execute("select id, name, val from t order by id"):
    h.update(repr(row).encode())
    n += 1
names = con.execute("select count(*) from t indexed by t_name where name >= 'name-'").fetchone()[0]
print(con.execute("PRAGMA integrity_check").fetchone()[0], n, names,
      con.execute("PRAGMA journal_mode").fetchone()[0], h.hexdigest())
con.close()
`

func testProgSQLite(t *testing.T, m *cluster.Mount) {
	py := needProgram(t, "python3")
	if out, err := progTry("", nil, py, "-c", "import sqlite3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 has no sqlite3 module: %v\n%s", err, out)
		}
		t.Skipf("python3 has no sqlite3 module: %s", out)
	}
	local := t.TempDir()
	if err := os.Mkdir(m.Path("sqlite"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			ref := strings.TrimSpace(progRun(t, "", nil, py, "-c", sqliteScript, filepath.Join(local, mode+".db"), mode, "build"))
			db := m.Path("sqlite", mode+".db")
			got := strings.TrimSpace(progRun(t, "", nil, py, "-c", sqliteScript, db, mode, "build"))
			f := strings.Fields(got)
			if len(f) != 5 || f[0] != "ok" || f[3] != mode {
				t.Fatalf("on the mount: %q (local: %q)", got, ref)
			}
			if got != ref {
				t.Fatalf("on the mount: %q, locally: %q", got, ref)
			}
			// A fresh process reopens it and finds the same.
			if again := strings.TrimSpace(progRun(t, "", nil, py, "-c", sqliteScript, db, mode, "check")); again != ref {
				t.Fatalf("reopened: %q, want %q", again, ref)
			}
			if mode == "delete" {
				if _, err := os.Stat(db + "-journal"); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("rollback journal left behind: %v", err)
				}
			}
		})
	}
}

func testProgRsync(t *testing.T, m *cluster.Mount) {
	needProgram(t, "rsync")
	src := filepath.Join(t.TempDir(), "src")
	makeSourceTree(t, src)
	dst := m.Path("rsync")
	rsync := func(args ...string) []string {
		t.Helper()
		out := progRun(t, "", nil, "rsync", append([]string{"-aH", "--itemize-changes"}, args...)...)
		var changed []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.SplitN(line, " ", 2); len(f) == 2 {
				changed = append(changed, f[1])
			}
		}
		sort.Strings(changed)
		return changed
	}
	rsync(src+"/", dst+"/")
	diffR(t, src, dst)
	compareTrees(t, src, dst, treeChecks{mtime: true, dirMtime: true, hardLinks: true})

	// Nothing changed: rsync finds every size and mtime equal on the mount.
	if again := rsync(src+"/", dst+"/"); len(again) != 0 {
		t.Fatalf("second rsync with no changes transferred %q", again)
	}
	// Change a few files: exactly those are sent (into temporary files
	// renamed over the old ones).
	mt := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"small.txt", []byte("changed\n")},
		{"a/b/c/multi", randomBytes(t, 1<<20+77)},
		{"a/inline", randomBytes(t, 3000)},
	} {
		p := filepath.Join(src, c.name)
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(src, "a"), mt, mt); err != nil { // writing bumped them
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(src, "a/b/c"), mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, mt, mt); err != nil {
		t.Fatal(err)
	}
	changed := rsync(src+"/", dst+"/")
	var files []string
	for _, c := range changed {
		if !strings.HasSuffix(c, "/") {
			files = append(files, c)
		}
	}
	if want := []string{"a/b/c/multi", "a/inline", "small.txt"}; fmt.Sprint(files) != fmt.Sprint(want) {
		t.Fatalf("second rsync sent %q (all changes %q), want %q", files, changed, want)
	}
	diffR(t, src, dst)
	compareTrees(t, src, dst, treeChecks{mtime: true, dirMtime: true, hardLinks: true})

	// From the mount back to a local directory with extras: --delete
	// removes them.
	back := filepath.Join(t.TempDir(), "back")
	if err := os.MkdirAll(filepath.Join(back, "extra-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(back, "extra-file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rsync("--delete", dst+"/", back+"/")
	diffR(t, dst, back)
	compareTrees(t, src, back, treeChecks{mtime: true, dirMtime: true, hardLinks: true})
}

// TestMountProgCpPreserveSyscalls replays, one system call at a time, how
// cp -a (and cp -p, install -p, mv across file systems) preserves a file's
// times and mode: times set on the open descriptor after the last write
// and before close, and the mode set through the POSIX access ACL xattr
// (coreutils' copy_acl writes system.posix_acl_access even when the ACL is
// just the mode bits).
func TestMountProgCpPreserveSyscalls(t *testing.T) {
	_, m := mountCluster(t, nil)
	t.Run("FutimensBeforeClose", func(t *testing.T) {
		p := m.Path("futimens")
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		want := time.Date(2019, 3, 4, 5, 6, 7, 123456789, time.UTC)
		ts := unix.NsecToTimespec(want.UnixNano())
		if err := unix.UtimesNanoAt(int(f.Fd()), "", []unix.Timespec{ts, ts}, unix.AT_EMPTY_PATH); err != nil {
			t.Fatalf("futimens: %v", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		before := time.Unix(st.Mtim.Unix())
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		after, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !before.Equal(want) || !after.ModTime().Equal(want) {
			t.Fatalf("mtime set by futimens between write and close: fstat before close %v, stat after close %v, want %v",
				before, after.ModTime(), want)
		}
	})
	t.Run("AccessACLSetsMode", func(t *testing.T) {
		p := m.Path("acl")
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		// user::rw- group::r-- other::r--, the ACL that is mode 0644.
		acl := []byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, 0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff}
		if err := unix.Setxattr(p, "system.posix_acl_access", acl, 0); err != nil {
			t.Fatalf("setxattr system.posix_acl_access: %v", err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("mode after setting an access ACL equal to 0644: %v", st.Mode())
		}
		buf := make([]byte, 256)
		n, err := unix.Listxattr(p, buf)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(buf[:n]), "system.posix_acl_access") {
			t.Errorf("an ACL equivalent to the mode is kept as an xattr (ls shows '+'); local file systems drop it: %q", buf[:n])
		}
	})
}
