package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// TestMountRandomOps runs one seeded random sequence of file system
// operations on a directory of the mount and on a local directory, and
// compares every result and errno, then both trees byte for byte: through
// the same mount, through a second mount that watched (close-to-open), and
// through a cold third mount. The seed is logged; KELP_RANDOM_SEED replays
// it, KELP_RANDOM_OPS changes the length, KELP_RANDOM_LOG names a file
// that receives the whole history of a failing sequence, and
// KELP_RANDOM_NO_TRUNCATE leaves truncates out (to look past a known
// truncate bug).
//
// Variants: "mixed" keeps several descriptors open at once and mixes every
// operation; "reopen" closes descriptors often and rereads each closed file
// through a fresh open, checking what was persisted.
func TestMountRandomOps(t *testing.T) {
	// The first mount calls its filer in-process, as `kelp server
	// -mount` does; the second over the network.
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true})
	m := c.MountFiler(func(cfg *mount.Config) {
		cfg.ChunkSizeMB = 1
		cfg.FilerConn = c.Filer.Server().Local()
	})
	m2 := c.MountFiler(nil)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KELP_RANDOM_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KELP_RANDOM_SEED=%q: %v", s, err)
		}
		seed = v
	}
	ops := 400
	if s := os.Getenv("KELP_RANDOM_OPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("KELP_RANDOM_OPS=%q: want a positive number", s)
		}
		ops = v
	}
	t.Logf("seed %d, %d operations per variant (replay with KELP_RANDOM_SEED=%d)", seed, ops, seed)
	locals := map[string]string{} // variants that passed: their local trees
	for i, reopen := range []bool{false, true} {
		name := map[bool]string{false: "mixed", true: "reopen"}[reopen]
		local := t.TempDir()
		if t.Run(name, func(t *testing.T) {
			r := newRandRun(t, seed+uint64(i), local, m.Path("random-"+name), reopen)
			r.noTruncate = os.Getenv("KELP_RANDOM_NO_TRUNCATE") != ""
			scanned := false
			for r.n < ops {
				r.step()
				if !scanned && r.n >= ops/2 {
					// Let the second mount look (and cache) halfway.
					scanTreeLoose(m2.Path("random-" + name))
					scanned = true
				}
			}
			r.closeAll()
			t.Logf("%d operations, %d failed with the same errno on both sides", r.n, r.sameErr)
			if !compareTrees(t, local, m.Path("random-"+name), treeChecks{hardLinks: true}) {
				t.FailNow()
			}
			// The second mount learns of the changes through the change
			// log; what it caches may lag until the invalidations land.
			took := compareTreesEventually(t, local, m2.Path("random-"+name), treeChecks{hardLinks: true}, 10*time.Second)
			t.Logf("the second mount agreed after %v", took.Round(time.Millisecond))
		}) {
			locals[name] = local
		}
	}
	t.Run("ColdMount", func(t *testing.T) {
		if len(locals) == 0 {
			t.Skip("no variant passed")
		}
		m3 := c.MountFiler(nil)
		for name, local := range locals {
			compareTrees(t, local, m3.Path("random-"+name), treeChecks{hardLinks: true})
		}
	})
}

// scanTreeLoose reads everything under root, ignoring errors: it only
// fills caches.
func scanTreeLoose(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			_, _ = os.ReadFile(p)
		}
		return nil
	})
}

// compareTreesEventually is compareTrees retried until the trees agree or
// the deadline passes; it returns how long agreement took.
func compareTreesEventually(t *testing.T, a, b string, checks treeChecks, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		problems, err := treeDiff(a, b, checks)
		if err == nil && len(problems) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			if err != nil {
				t.Fatalf("after %v: %v", within, err)
			}
			t.Fatalf("after %v, trees %s and %s still differ:\n  %s", within, a, b, strings.Join(capLines(problems, 40), "\n  "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	randSlots  = 6       // descriptors open at once, per side
	randChunk  = 1 << 20 // the mount's chunk size in this test
	randMaxOff = 5 << 20
)

// randSide is one of the two directories the sequence runs on.
type randSide struct {
	root  string
	fds   [randSlots]int
	paths [randSlots]string // what each descriptor was opened as
	read  []byte            // the last read's bytes, to report differences
}

func (s *randSide) p(rel string) string { return filepath.Join(s.root, rel) }

// randRun is the state of one random sequence.
type randRun struct {
	t             *testing.T
	rng           *rand.Rand
	reopen        bool
	noTruncate    bool // KELP_RANDOM_NO_TRUNCATE: leave truncate and ftruncate out
	local, remote *randSide
	n, sameErr    int
	hist          []string
	buf           []byte
	readBase      int64 // file offset of the current read, for firstDiff
}

func newRandRun(t *testing.T, seed uint64, local, remote string, reopen bool) *randRun {
	t.Helper()
	if err := os.Mkdir(remote, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(local, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &randRun{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), reopen: reopen,
		local: &randSide{root: local}, remote: &randSide{root: remote}}
	for _, s := range []*randSide{r.local, r.remote} {
		for i := range s.fds {
			s.fds[i] = -1
		}
	}
	t.Cleanup(func() {
		for _, s := range []*randSide{r.local, r.remote} {
			for i, fd := range s.fds {
				if fd >= 0 {
					syscall.Close(fd)
					s.fds[i] = -1
				}
			}
		}
	})
	return r
}

// errName is how an error compares: its errno, or its text.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return fmt.Sprintf("errno %d (%v)", int(e), e)
	}
	return "error " + err.Error()
}

// both runs f on each side and fails the test unless the results and
// errors agree.
func (r *randRun) both(desc string, f func(s *randSide) (string, error)) bool {
	r.t.Helper()
	r.n++
	lv, lerr := f(r.local)
	rv, rerr := f(r.remote)
	res := lv
	if lerr != nil {
		res = errName(lerr)
		if errName(lerr) == errName(rerr) {
			r.sameErr++
		}
	}
	r.hist = append(r.hist, fmt.Sprintf("#%d %s -> %s", r.n, desc, res))
	if errName(lerr) == errName(rerr) && lv == rv {
		return lerr == nil
	}
	detail := ""
	if lv != rv && r.local.read != nil && r.remote.read != nil {
		detail = firstDiff(r.local.read, r.remote.read, r.readBase)
	}
	if f := os.Getenv("KELP_RANDOM_LOG"); f != "" {
		if err := os.WriteFile(f, []byte(strings.Join(r.hist, "\n")+"\n"), 0o644); err != nil {
			r.t.Logf("writing the history to %s: %v", f, err)
		}
	}
	tail := r.hist
	if len(tail) > 40 {
		tail = tail[len(tail)-40:]
	}
	r.t.Fatalf("operation #%d differs: %s\n  local: %q %s\n  mount: %q %s\n  %s\nlast operations:\n  %s",
		r.n, desc, lv, errName(lerr), rv, errName(rerr), detail, strings.Join(tail, "\n  "))
	return false
}

// firstDiff describes where b (the mount's bytes, read at file offset
// base) differs from a (the local ones): up to five differing ranges in
// file offsets, each saying whether the mount returned zeros there.
func firstDiff(a, b []byte, base int64) string {
	var ranges []string
	total := 0
	for i := 0; i < min(len(a), len(b)); {
		if a[i] == b[i] {
			i++
			continue
		}
		j := i
		for j < min(len(a), len(b)) && a[j] != b[j] {
			j++
		}
		// Merge gaps of a few equal bytes (random data agrees by chance).
		for j+16 < min(len(a), len(b)) && !bytes.Equal(a[j:j+16], b[j:j+16]) {
			j++
			for j < min(len(a), len(b)) && a[j] != b[j] {
				j++
			}
		}
		total++
		if len(ranges) < 5 {
			zeros := !slices.ContainsFunc(b[i:j], func(c byte) bool { return c != 0 })
			ranges = append(ranges, fmt.Sprintf("[%d, %d) (chunk %d +%d, %d bytes, mount has zeros: %v)",
				base+int64(i), base+int64(j), (base+int64(i))/randChunk, (base+int64(i))%randChunk, j-i, zeros))
		}
		i = j
	}
	return fmt.Sprintf("lengths %d/%d, %d differing ranges: %s", len(a), len(b), total, strings.Join(ranges, ", "))
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes sha %x", len(b), h[:6])
}

// data returns n pseudo-random bytes from the sequence's generator.
func (r *randRun) data(n int) []byte {
	if cap(r.buf) < n {
		r.buf = make([]byte, n+8)
	}
	b := r.buf[:n+8]
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b[:n]
}

// size picks a write or read length: mostly small, sometimes a chunk or
// more.
func (r *randRun) size() int {
	switch p := r.rng.IntN(100); {
	case p < 80:
		return r.rng.IntN(64 << 10)
	case p < 96:
		return r.rng.IntN(5 * randChunk / 4)
	default:
		return randChunk + r.rng.IntN(3*randChunk/2)
	}
}

// offset picks a file offset, often near a chunk boundary.
func (r *randRun) offset() int64 {
	if r.rng.IntN(3) == 0 {
		return max(0, int64(1+r.rng.IntN(4))*randChunk+int64(r.rng.IntN(10000))-5000)
	}
	return r.rng.Int64N(randMaxOff)
}

var (
	randDirNames  = []string{"d0", "d1", "d2"}
	randLeafNames = []string{"d0", "d1", "d2", "f0", "f1", "f2", "f3", "f4"}
)

// entries lists the local tree's entries ("" is the root) of a kind:
// 'd' directories (with the root), 'f' regular files, 'l' symlinks, 0 any.
func (r *randRun) entries(kind byte) []string {
	var out []string
	if kind == 'd' {
		out = append(out, "")
	}
	_ = filepath.WalkDir(r.local.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == r.local.root {
			return nil
		}
		rel, _ := filepath.Rel(r.local.root, p)
		switch {
		case kind == 0,
			kind == 'd' && d.IsDir(),
			kind == 'f' && d.Type().IsRegular(),
			kind == 'l' && d.Type()&fs.ModeSymlink != 0:
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// path picks a path: an existing entry of kind (when any and the dice
// say so), or a new name under an existing directory, or a random path
// that may not resolve.
func (r *randRun) path(kind byte, existing int) string {
	if r.rng.IntN(100) < existing {
		if es := r.entries(kind); len(es) > 0 && !(kind == 'd' && len(es) == 1) {
			e := es[r.rng.IntN(len(es))]
			if e != "" || kind != 'd' {
				return e
			}
		}
	}
	leaf := randLeafNames[r.rng.IntN(len(randLeafNames))]
	if r.rng.IntN(100) < 65 {
		dirs := r.entries('d')
		return filepath.Join(dirs[r.rng.IntN(len(dirs))], leaf)
	}
	var parts []string
	for i := r.rng.IntN(3); i > 0; i-- {
		parts = append(parts, randDirNames[r.rng.IntN(len(randDirNames))])
	}
	return filepath.Join(append(parts, leaf)...)
}

func (r *randRun) openSlots() []int {
	var out []int
	for i, fd := range r.local.fds {
		if fd >= 0 {
			out = append(out, i)
		}
	}
	return out
}

func (r *randRun) freeSlot() int {
	for i, fd := range r.local.fds {
		if fd < 0 {
			return i
		}
	}
	return -1
}

var fileModes = []uint32{0o644, 0o600, 0o755, 0o640, 0o444, 0o700, 0o664}

// step runs one random operation.
func (r *randRun) step() {
	type op struct {
		w  int
		fn func()
	}
	fdw := 1 + len(r.openSlots())/2 // weigh descriptor ops up when several are open
	closeW := 5
	if r.reopen {
		closeW = 14
	}
	truncW := 3
	if r.noTruncate {
		truncW = 0
	}
	ops := []op{
		{9, r.opOpen},
		{closeW, r.opClose},
		{3 * fdw, r.opCloseReopen},
		{14 * fdw, r.opPwrite},
		{6 * fdw, r.opWrite},
		{10 * fdw, r.opPread},
		{2 * fdw, r.opSeekEnd},
		{truncW * fdw, r.opFtruncate},
		{3 * fdw, r.opFsync},
		{3 * fdw, r.opFstat},
		{5, r.opCreateWrite},
		{5, r.opReadFile},
		{truncW, r.opTruncate},
		{4, r.opStat},
		{3, r.opReaddir},
		{5, r.opMkdir},
		{3, r.opRmdir},
		{5, r.opUnlink},
		{7, r.opRename},
		{3, r.opLink},
		{3, r.opSymlink},
		{2, r.opReadlink},
		{3, r.opChmod},
	}
	total := 0
	for _, o := range ops {
		total += o.w
	}
	x := r.rng.IntN(total)
	for _, o := range ops {
		if x < o.w {
			o.fn()
			return
		}
		x -= o.w
	}
}

// slot picks an open descriptor slot, opening one when none is.
func (r *randRun) slot() (int, bool) {
	s := r.openSlots()
	if len(s) == 0 {
		r.opOpen()
		return 0, false
	}
	return s[r.rng.IntN(len(s))], true
}

func (r *randRun) opOpen() {
	slot := r.freeSlot()
	if slot < 0 {
		r.opClose()
		slot = r.freeSlot()
	}
	p := r.path('f', 60)
	flags := syscall.O_RDWR
	var names []string
	if r.rng.IntN(10) == 0 {
		flags, names = syscall.O_RDONLY, append(names, "O_RDONLY")
	}
	if r.rng.IntN(10) < 7 {
		flags |= syscall.O_CREAT
		names = append(names, "O_CREAT")
		if r.rng.IntN(10) == 0 {
			flags |= syscall.O_EXCL
			names = append(names, "O_EXCL")
		}
	}
	if r.rng.IntN(100) < 15 {
		flags |= syscall.O_TRUNC
		names = append(names, "O_TRUNC")
	}
	if r.rng.IntN(100) < 15 {
		flags |= syscall.O_APPEND
		names = append(names, "O_APPEND")
	}
	mode := fileModes[r.rng.IntN(len(fileModes))]
	r.both(fmt.Sprintf("open(%s, %s, %o) as slot %d", p, names, mode, slot), func(s *randSide) (string, error) {
		fd, err := syscall.Open(s.p(p), flags|syscall.O_CLOEXEC, mode)
		if err != nil {
			return "", err
		}
		s.fds[slot], s.paths[slot] = fd, p
		return "", nil
	})
}

func (r *randRun) closeSlot(slot int) {
	p := r.local.paths[slot]
	r.both(fmt.Sprintf("close(slot %d: %s)", slot, p), func(s *randSide) (string, error) {
		fd := s.fds[slot]
		s.fds[slot] = -1
		return "", syscall.Close(fd)
	})
	if r.reopen {
		r.readWhole(p)
	}
}

func (r *randRun) opClose() {
	if s := r.openSlots(); len(s) > 0 {
		r.closeSlot(s[r.rng.IntN(len(s))])
	}
}

// closeAll closes every descriptor (end of the sequence).
func (r *randRun) closeAll() {
	for _, slot := range r.openSlots() {
		r.closeSlot(slot)
	}
}

// opCloseReopen closes a descriptor, opens its path again and reads it
// whole.
func (r *randRun) opCloseReopen() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	p := r.local.paths[slot]
	r.closeSlot(slot)
	r.both(fmt.Sprintf("reopen(%s) as slot %d", p, slot), func(s *randSide) (string, error) {
		fd, err := syscall.Open(s.p(p), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		s.fds[slot], s.paths[slot] = fd, p
		return "", nil
	})
	if r.local.fds[slot] >= 0 {
		r.readFd(slot, 0, randMaxOff+3*randChunk)
	}
}

func (r *randRun) opPwrite() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	off, data := r.offset(), r.data(r.size())
	r.both(fmt.Sprintf("pwrite(slot %d, off %d, %s)", slot, off, digest(data)), func(s *randSide) (string, error) {
		n, err := syscall.Pwrite(s.fds[slot], data, off)
		return strconv.Itoa(n), err
	})
}

func (r *randRun) opWrite() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	data := r.data(r.rng.IntN(200 << 10))
	r.both(fmt.Sprintf("write(slot %d, %s)", slot, digest(data)), func(s *randSide) (string, error) {
		n, err := syscall.Write(s.fds[slot], data)
		if err != nil {
			return "", err
		}
		pos, err := syscall.Seek(s.fds[slot], 0, 1)
		return fmt.Sprintf("%d, now at %d", n, pos), err
	})
}

func (r *randRun) readFd(slot int, off int64, n int) {
	r.readBase = off
	r.both(fmt.Sprintf("pread(slot %d, off %d, len %d)", slot, off, n), func(s *randSide) (string, error) {
		buf := make([]byte, n)
		got := 0
		for got < n { // pread may return less than asked before EOF
			k, err := syscall.Pread(s.fds[slot], buf[got:], off+int64(got))
			if err != nil {
				s.read = nil
				return "", err
			}
			if k == 0 {
				break
			}
			got += k
		}
		s.read = buf[:got]
		return digest(buf[:got]), nil
	})
	r.local.read, r.remote.read = nil, nil
}

func (r *randRun) opPread() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	r.readFd(slot, r.offset(), r.size())
}

func (r *randRun) opSeekEnd() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	r.both(fmt.Sprintf("lseek(slot %d, 0, SEEK_END)", slot), func(s *randSide) (string, error) {
		pos, err := syscall.Seek(s.fds[slot], 0, 2)
		var st syscall.Stat_t
		if err == nil && syscall.Fstat(s.fds[slot], &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			// A directory's offsets are the file system's own cookies
			// (ext4 answers SEEK_END with the largest hash).
			return "a directory offset", nil
		}
		return strconv.FormatInt(pos, 10), err
	})
}

func (r *randRun) opFtruncate() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	size := r.offset()
	if r.rng.IntN(4) == 0 {
		size = int64(r.rng.IntN(5000))
	}
	r.both(fmt.Sprintf("ftruncate(slot %d, %d)", slot, size), func(s *randSide) (string, error) {
		return "", syscall.Ftruncate(s.fds[slot], size)
	})
}

func (r *randRun) opFsync() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	r.both(fmt.Sprintf("fsync(slot %d)", slot), func(s *randSide) (string, error) {
		return "", syscall.Fsync(s.fds[slot])
	})
}

func statString(st *syscall.Stat_t) string {
	mode := st.Mode
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return fmt.Sprintf("dir %o", mode) // sizes and link counts of directories are the file system's own
	case syscall.S_IFLNK:
		return fmt.Sprintf("symlink %o size %d", mode, st.Size)
	}
	return fmt.Sprintf("mode %o size %d nlink %d", mode, st.Size, st.Nlink)
}

func (r *randRun) opFstat() {
	slot, ok := r.slot()
	if !ok {
		return
	}
	r.both(fmt.Sprintf("fstat(slot %d)", slot), func(s *randSide) (string, error) {
		var st syscall.Stat_t
		if err := syscall.Fstat(s.fds[slot], &st); err != nil {
			return "", err
		}
		return statString(&st), nil
	})
}

// opCreateWrite writes a whole file the way most programs do: open with
// O_TRUNC, write, close.
func (r *randRun) opCreateWrite() {
	p := r.path('f', 40)
	data := r.data(r.size())
	r.both(fmt.Sprintf("create+write+close(%s, %s)", p, digest(data)), func(s *randSide) (string, error) {
		fd, err := syscall.Open(s.p(p), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			return "open", err
		}
		for off := 0; off < len(data); {
			n, err := syscall.Write(fd, data[off:min(len(data), off+256<<10)])
			if err != nil {
				syscall.Close(fd)
				return "write", err
			}
			off += n
		}
		return "close", syscall.Close(fd)
	})
}

// readWhole opens p afresh and reads all of it.
func (r *randRun) readWhole(p string) {
	r.readBase = 0
	r.both(fmt.Sprintf("read whole(%s)", p), func(s *randSide) (string, error) {
		b, err := os.ReadFile(s.p(p))
		if err != nil {
			s.read = nil
			return "", err
		}
		s.read = b
		var st syscall.Stat_t
		if err := syscall.Stat(s.p(p), &st); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s, stat %d", digest(b), st.Size), nil
	})
	r.local.read, r.remote.read = nil, nil
}

func (r *randRun) opReadFile() { r.readWhole(r.path('f', 85)) }

func (r *randRun) opTruncate() {
	p := r.path('f', 80)
	size := r.offset()
	r.both(fmt.Sprintf("truncate(%s, %d)", p, size), func(s *randSide) (string, error) {
		return "", syscall.Truncate(s.p(p), size)
	})
}

func (r *randRun) opStat() {
	p := r.path(0, 80)
	r.both(fmt.Sprintf("lstat(%s)", p), func(s *randSide) (string, error) {
		var st syscall.Stat_t
		if err := syscall.Lstat(s.p(p), &st); err != nil {
			return "", err
		}
		return statString(&st), nil
	})
}

func (r *randRun) opReaddir() {
	p := r.path('d', 90)
	r.both(fmt.Sprintf("readdir(%s)", p), func(s *randSide) (string, error) {
		es, err := os.ReadDir(s.p(p))
		if err != nil {
			return "", err
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name()+":"+e.Type().String())
		}
		sort.Strings(names)
		return strings.Join(names, " "), nil
	})
}

func (r *randRun) opMkdir() {
	p := r.path('d', 10)
	mode := []uint32{0o755, 0o700, 0o750, 0o775}[r.rng.IntN(4)]
	r.both(fmt.Sprintf("mkdir(%s, %o)", p, mode), func(s *randSide) (string, error) {
		return "", syscall.Mkdir(s.p(p), mode)
	})
}

func (r *randRun) opRmdir() {
	p := r.path('d', 80)
	if p == "" {
		return
	}
	r.both(fmt.Sprintf("rmdir(%s)", p), func(s *randSide) (string, error) {
		return "", syscall.Rmdir(s.p(p))
	})
}

func (r *randRun) opUnlink() {
	p := r.path(0, 80)
	if p == "" {
		return
	}
	r.both(fmt.Sprintf("unlink(%s)", p), func(s *randSide) (string, error) {
		return "", syscall.Unlink(s.p(p))
	})
}

func (r *randRun) opRename() {
	src := r.path(0, 80)
	var dst string
	if r.rng.IntN(2) == 0 {
		dst = r.path(0, 90) // over an existing entry, often
	} else {
		dst = r.path(0, 0)
	}
	if src == "" || dst == "" {
		return
	}
	r.both(fmt.Sprintf("rename(%s, %s)", src, dst), func(s *randSide) (string, error) {
		return "", syscall.Rename(s.p(src), s.p(dst))
	})
}

func (r *randRun) opLink() {
	src, dst := r.path(0, 85), r.path('f', 10)
	if src == "" {
		return
	}
	r.both(fmt.Sprintf("link(%s, %s)", src, dst), func(s *randSide) (string, error) {
		return "", syscall.Link(s.p(src), s.p(dst))
	})
}

func (r *randRun) opSymlink() {
	p := r.path('l', 10)
	targets := []string{"f0", "f1", "d0", "d0/f1", "nope", "d1/d0/f2"}
	if strings.Contains(p, "/") { // never out of the test's root
		targets = append(targets, "../f0", "../d1", "../d0/f3")
	}
	target := targets[r.rng.IntN(len(targets))]
	r.both(fmt.Sprintf("symlink(%s -> %s)", p, target), func(s *randSide) (string, error) {
		return "", syscall.Symlink(target, s.p(p))
	})
}

func (r *randRun) opReadlink() {
	p := r.path('l', 85)
	r.both(fmt.Sprintf("readlink(%s)", p), func(s *randSide) (string, error) {
		b, err := os.Readlink(s.p(p))
		return b, err
	})
}

func (r *randRun) opChmod() {
	p := r.path(0, 90)
	mode := fileModes[r.rng.IntN(len(fileModes))]
	r.both(fmt.Sprintf("chmod(%s, %o)", p, mode), func(s *randSide) (string, error) {
		return "", syscall.Chmod(s.p(p), mode)
	})
}

// TestMountRandomTruncateThenWrite is the smallest sequence the random
// test found losing data (seed 1795335934965826669, operation #355): on one
// descriptor, write the head of a file, grow (or shrink) it with
// ftruncate, write elsewhere, read the file back.
func TestMountRandomTruncateThenWrite(t *testing.T) {
	c, m := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	for _, tc := range []struct {
		name          string
		headLen, size int64
		off, len      int64
		closeFirst    bool
	}{
		{"grow/write-across-chunk-boundary", 159639, 3064416, 1048477, 35260, false},
		{"grow/write-in-chunk-1", 100, 3 << 20, 1<<20 + 10, 100, false},
		{"grow/write-in-chunk-0", 100, 3 << 20, 4096, 100, false},
		{"grow/write-after-head-in-same-chunk", 100, 1 << 19, 200, 100, false},
		{"grow/reopen-before-truncate", 100, 3 << 20, 1<<20 + 10, 100, true},
		{"shrink/write-in-chunk-0", 2<<20 + 500<<10, 2<<20 + 300<<10, 63080, 48758, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := m.Path(strings.ReplaceAll(tc.name, "/", "-"))
			head, tail := randomBytes(t, int(tc.headLen)), randomBytes(t, int(tc.len))
			want := make([]byte, max(tc.size, tc.off+tc.len))
			copy(want, head[:min(len(head), int(tc.size))])
			copy(want[tc.off:], tail)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(head, 0); err != nil {
				t.Fatal(err)
			}
			if tc.closeFirst {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				if f, err = os.OpenFile(p, os.O_RDWR, 0); err != nil {
					t.Fatal(err)
				}
				defer f.Close()
			}
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(tail, tc.off); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			if n, err := f.ReadAt(got, 0); n != len(want) {
				t.Fatalf("read %d of %d bytes: %v", n, len(want), err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("read through the writing descriptor: %s", firstDiff(want, got, 0))
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			for _, mm := range []*cluster.Mount{m, c.MountFiler(nil)} {
				got, err := os.ReadFile(mm.Path(filepath.Base(p)))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("after close, on %s: %s", mm.Dir, firstDiff(want, got, 0))
				}
			}
		})
	}
}

// TestMountRandomSignalsDuringClose is the reproducer of the random test's
// occasional EIO from close (the mount logged "commit failed ... context
// canceled"): a signal reaching a thread blocked in close(2) on the mount
// makes the kernel send FUSE_INTERRUPT for the FLUSH, and the mount fails
// the flush. Any program receiving signals (Go's runtime preempts with
// SIGURG; timers, SIGCHLD) can see it. Here another goroutine keeps
// signalling the writing thread; every close must still succeed and the
// data must be there.
func TestMountRandomSignalsDuringClose(t *testing.T) {
	_, m := mountCluster(t, func(cfg *mount.Config) { cfg.ChunkSizeMB = 1 })
	data := randomBytes(t, 700<<10)
	tid := make(chan int)
	stop := make(chan struct{})
	var errs []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		for i := 0; i < 30; i++ {
			p := m.Path(fmt.Sprintf("sig%d", i))
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				errs = append(errs, fmt.Sprintf("open %d: %v", i, err))
				continue
			}
			if _, err := f.Write(data); err != nil {
				errs = append(errs, fmt.Sprintf("write %d: %v", i, err))
			}
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Sprintf("close %d: %v", i, err))
			}
		}
	}()
	id := <-tid
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-done:
				return
			default:
			}
			_ = unix.Tgkill(os.Getpid(), id, unix.SIGURG)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	<-done
	close(stop)
	if len(errs) > 0 {
		t.Errorf("with signals arriving (SIGURG, as Go's scheduler sends), %d of 30 create/write/close failed:\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	for i := 0; i < 30; i++ {
		got, err := os.ReadFile(m.Path(fmt.Sprintf("sig%d", i)))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("sig%d: %d bytes, %v", i, len(got), err)
		}
	}
}
