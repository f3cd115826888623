package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// blob returns n bytes determined by fid, so any hit can be checked.
func blob(fid string, n int) []byte {
	var seed [32]byte
	h := fnv.New64a()
	h.Write([]byte(fid))
	binary.LittleEndian.PutUint64(seed[:], h.Sum64())
	binary.LittleEndian.PutUint64(seed[8:], uint64(n))
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func memOnly(budget int64) Config {
	cfg := DefaultConfig()
	cfg.MemoryBytes = budget
	cfg.Logger = quietLogger()
	return cfg
}

// diskOnly has no memory tier, so every hit comes from disk.
func diskOnly(dir string, budget int64) Config {
	cfg := DefaultConfig()
	cfg.MemoryBytes = 0
	cfg.Dir = dir
	cfg.DiskBytes = budget
	cfg.Logger = quietLogger()
	return cfg
}

func mustNew(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkRead asserts a full hit of want at off.
func checkRead(t *testing.T, c *Cache, fid string, want []byte, off, n int) {
	t.Helper()
	p := make([]byte, n)
	got, ok := c.ReadAt(fid, p, int64(off))
	if !ok {
		t.Fatalf("ReadAt(%s, off %d): miss", fid, off)
	}
	wantN := max(0, min(n, len(want)-off))
	if got != wantN {
		t.Fatalf("ReadAt(%s, off %d, len %d) = %d bytes, want %d", fid, off, n, got, wantN)
	}
	if wantN > 0 && !bytes.Equal(p[:got], want[off:off+wantN]) {
		t.Fatalf("ReadAt(%s, off %d, len %d): wrong bytes", fid, off, n)
	}
}

func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range ents {
		if !sub.IsDir() || len(sub.Name()) != 2 {
			continue
		}
		inner, err := os.ReadDir(filepath.Join(dir, sub.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range inner {
			files = append(files, filepath.Join(dir, sub.Name(), f.Name()))
		}
	}
	sort.Strings(files)
	return files
}

// fileOf returns the path of fid's single cache file.
func fileOf(t *testing.T, dir, fid string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, fanout(fid), fmt.Sprintf("%x-*", fid)))
	if len(matches) != 1 {
		t.Fatalf("cache files of %s: %v", fid, matches)
	}
	return matches[0]
}

// openUnder counts this process's open file descriptors on files under dir
// (-1 where /proc is missing).
func openUnder(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, dir+"/") &&
			!strings.HasSuffix(target, "/"+lockName) {
			n++
		}
	}
	return n
}

// Files kept open for reading are closed when evicted, when found corrupt
// and at Close, and their number is bounded.
func TestOpenFilesBounded(t *testing.T) {
	dir := t.TempDir()
	if openUnder(t, dir) < 0 {
		t.Skip("no /proc/self/fd")
	}
	const size = 20 << 10
	c := mustNew(t, diskOnly(dir, (maxOpenFiles+50)*diskCharge(size)))
	blobs := map[string][]byte{}
	for i := range maxOpenFiles + 50 {
		fid := fmt.Sprintf("1,%d", i)
		blobs[fid] = blob(fid, size)
		c.Put(fid, blobs[fid])
	}
	c.flush()
	for fid, want := range blobs {
		checkRead(t, c, fid, want, 100, 4096)
	}
	if n := openUnder(t, dir); n != maxOpenFiles {
		t.Errorf("%d files open, want %d", n, maxOpenFiles)
	}
	// Evict everything: the deleted files must not stay open.
	for i := range maxOpenFiles + 50 {
		fid := fmt.Sprintf("2,%d", i)
		c.Put(fid, blob(fid, size))
	}
	c.flush()
	if n := openUnder(t, dir); n != 0 {
		t.Errorf("%d evicted files still open", n)
	}
	checkRead(t, c, "2,0", blob("2,0", size), 0, 10)
	c.Close()
	if n := openUnder(t, dir); n != 0 {
		t.Errorf("%d files open after Close", n)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfig()
	bad.MemoryBytes = -1
	if err := bad.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative MemoryBytes: %v", err)
	}
	bad = DefaultConfig()
	bad.Dir, bad.WriteQueueBytes = t.TempDir(), 0
	if _, err := New(bad); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no write queue: %v", err)
	}
}

func TestReadAtSemantics(t *testing.T) {
	for name, cfg := range map[string]Config{
		"memory":      memOnly(1 << 20),
		"disk range":  diskOnly(t.TempDir(), 1<<20),
		"disk+memory": func() Config { c := diskOnly(t.TempDir(), 1<<20); c.MemoryBytes = 1 << 20; return c }(),
	} {
		t.Run(name, func(t *testing.T) {
			c := mustNew(t, cfg)
			data := blob("1,a", 3*blockSize+100)
			c.Put("1,a", data)
			c.flush()
			// Reset the memory copy so the disk tier answers first time.
			if c.mem != nil && c.disk != nil {
				c.mem.remove("1,a")
			}
			for _, r := range [][2]int{{0, 4096}, {0, len(data)}, {0, len(data) + 10}, {blockSize, blockSize},
				{blockSize - 1, 2}, {5, 3 * blockSize}, {len(data) - 3, 10}, {len(data), 10}, {len(data) + 5, 10},
				{2*blockSize + 7, 4096}, {0, 0}} {
				checkRead(t, c, "1,a", data, r[0], r[1])
			}
			if _, ok := c.ReadAt("1,a", make([]byte, 1), -1); ok {
				t.Error("negative offset hit")
			}
			if _, ok := c.ReadAt("1,b", make([]byte, 1), 0); ok {
				t.Error("unknown fid hit")
			}
			if b, ok := c.Get("1,a"); !ok || !bytes.Equal(b, data) {
				t.Error("Get mismatch")
			}
			if !c.Contains("1,a") || c.Contains("1,b") {
				t.Error("Contains wrong")
			}
			c.Put("1,empty", nil)
			c.flush()
			if n, ok := c.ReadAt("1,empty", make([]byte, 4), 0); !ok || n != 0 {
				t.Errorf("empty blob: %d %v", n, ok)
			}
		})
	}
}

func TestMemoryBudgetAndEvictionOrder(t *testing.T) {
	const size = 1000
	charge := memCharge("1,a", make([]byte, size))
	c := mustNew(t, memOnly(3*charge))
	for _, fid := range []string{"1,a", "1,b", "1,c"} {
		c.Put(fid, blob(fid, size))
	}
	checkRead(t, c, "1,a", blob("1,a", size), 0, 10) // a is now the most recent
	c.Put("1,d", blob("1,d", size))                  // evicts b, the least recent
	for fid, want := range map[string]bool{"1,a": true, "1,b": false, "1,c": true, "1,d": true} {
		if got := c.Contains(fid); got != want {
			t.Errorf("Contains(%s) = %v, want %v", fid, got, want)
		}
	}
	if s := c.Stats(); s.MemoryBytes > 3*charge || s.MemoryEntries != 3 {
		t.Errorf("memory %d bytes in %d entries, budget %d", s.MemoryBytes, s.MemoryEntries, 3*charge)
	}
	// A blob over the whole budget is not kept and evicts nothing.
	c.Put("1,huge", make([]byte, 3*charge))
	if c.Contains("1,huge") || c.Stats().MemoryEntries != 3 {
		t.Error("blob over budget kept or evicted others")
	}
	// Many puts never exceed the budget.
	for i := range 100 {
		c.Put(fmt.Sprintf("2,%d", i), make([]byte, 100+i*37))
		if s := c.Stats(); s.MemoryBytes > 3*charge {
			t.Fatalf("memory %d over budget %d", s.MemoryBytes, 3*charge)
		}
	}
	s := c.Stats()
	if s.MemoryHits != 1 {
		t.Errorf("MemoryHits = %d, want 1", s.MemoryHits)
	}
}

func TestDiskBudgetAndEvictionOrder(t *testing.T) {
	dir := t.TempDir()
	const size = 20 << 10
	charge := diskCharge(size)
	c := mustNew(t, diskOnly(dir, 3*charge))
	for _, fid := range []string{"1,a", "1,b", "1,c"} {
		c.Put(fid, blob(fid, size))
		c.flush()
	}
	checkRead(t, c, "1,a", blob("1,a", size), 100, 10)
	c.Put("1,d", blob("1,d", size))
	c.flush()
	for fid, want := range map[string]bool{"1,a": true, "1,b": false, "1,c": true, "1,d": true} {
		if got := c.Contains(fid); got != want {
			t.Errorf("Contains(%s) = %v, want %v", fid, got, want)
		}
	}
	if files := cacheFiles(t, dir); len(files) != 3 {
		t.Errorf("%d files on disk, want 3: %v", len(files), files)
	}
	// Mixed sizes: the budget holds after every write.
	for i := range 40 {
		c.Put(fmt.Sprintf("2,%d", i), blob("x", 1+i*1500))
		c.flush()
		s := c.Stats()
		if s.DiskBytes > 3*charge {
			t.Fatalf("disk %d over budget %d", s.DiskBytes, 3*charge)
		}
		var onDisk int64
		for _, f := range cacheFiles(t, dir) {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			onDisk += (st.Size() + diskUnit - 1) &^ (diskUnit - 1)
		}
		if onDisk != s.DiskBytes {
			t.Fatalf("files on disk take %d, index says %d", onDisk, s.DiskBytes)
		}
	}
	// A blob larger than the disk budget is never written.
	c.Put("3,big", make([]byte, 4*charge))
	c.flush()
	if c.Contains("3,big") {
		t.Error("blob over disk budget stored")
	}
}

func TestRestartRecovery(t *testing.T) {
	dir := t.TempDir()
	const size = 10 << 10
	charge := diskCharge(size)
	cfg := diskOnly(dir, 10*charge)
	c := mustNew(t, cfg)
	fids := []string{"3,01637037d6", "3,01637037d7", "4,ab", "5,cd", "6,ef"}
	for _, fid := range fids {
		c.Put(fid, blob(fid, size))
	}
	// Close drains the queue: no flush needed for a restart to see them.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := c.ReadAt(fids[0], make([]byte, 1), 0); ok {
		t.Error("hit after Close")
	}

	c2 := mustNew(t, cfg)
	for _, fid := range fids {
		checkRead(t, c2, fid, blob(fid, size), 0, size)
		checkRead(t, c2, fid, blob(fid, size), 1234, 4096)
	}
	if s := c2.Stats(); s.DiskEntries != len(fids) || s.DiskBytes != int64(len(fids))*charge || s.CorruptFiles != 0 {
		t.Errorf("after restart: %+v", s)
	}
	c2.Close()

	// Give the files a known use order, then reopen with room for two:
	// the two most recent stay, the rest are evicted and removed.
	base := time.Now().Add(-time.Hour)
	for i, fid := range fids {
		ts := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(fileOf(t, dir, fid), ts, ts); err != nil {
			t.Fatal(err)
		}
	}
	cfg.DiskBytes = 2 * charge
	c3 := mustNew(t, cfg)
	for i, fid := range fids {
		if got, want := c3.Contains(fid), i >= 3; got != want {
			t.Errorf("after shrinking restart Contains(%s) = %v, want %v", fid, got, want)
		}
	}
	if files := cacheFiles(t, dir); len(files) != 2 {
		t.Errorf("files left: %v", files)
	}
	checkRead(t, c3, fids[4], blob(fids[4], size), 0, size)
	// New writes get fresh names (generations continue past the old ones).
	c3.Put("7,new", blob("7,new", size))
	c3.flush()
	checkRead(t, c3, "7,new", blob("7,new", size), 0, size)
}

func TestLockConflict(t *testing.T) {
	dir := t.TempDir()
	c := mustNew(t, diskOnly(dir, 1<<20))
	_, err := New(diskOnly(dir, 1<<20))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second New on a locked dir: %v", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("error does not name the holder: %v", err)
	}
	c.Close()
	c2, err := New(diskOnly(dir, 1<<20))
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	c2.Close()
}

func TestCorruptionDetected(t *testing.T) {
	type damage struct {
		name string
		at   func(length int64) int64 // offset of the byte to flip; -1 truncates
	}
	damages := []damage{
		{"data first byte", func(n int64) int64 { return dataOffset(n) }},
		{"data last byte", func(n int64) int64 { return fileSize(n) - 1 }},
		{"data middle block", func(n int64) int64 { return dataOffset(n) + n/2 }},
		{"block table", func(n int64) int64 { return headerSize + 1 }},
		{"header length", func(n int64) int64 { return 9 }},
		{"header fid", func(n int64) int64 { return 16 }},
		{"truncated", func(n int64) int64 { return -1 }},
	}
	for _, size := range []int{1000, 3*blockSize + 5, 600 << 10} {
		for _, dmg := range damages {
			for _, restart := range []bool{false, true} {
				t.Run(fmt.Sprintf("%d/%s/restart=%v", size, dmg.name, restart), func(t *testing.T) {
					dir := t.TempDir()
					cfg := diskOnly(dir, 8<<20)
					cfg.MemoryBytes = 8 << 20 // small blobs are promoted: exercises the whole-file path
					c := mustNew(t, cfg)
					const fid = "9,0badc0de"
					data := blob(fid, size)
					c.Put(fid, data)
					c.flush()
					c.mem.remove(fid)
					name := fileOf(t, dir, fid)
					if restart {
						c.Close()
					}
					f, err := os.OpenFile(name, os.O_RDWR, 0)
					if err != nil {
						t.Fatal(err)
					}
					if at := dmg.at(int64(size)); at < 0 {
						err = f.Truncate(fileSize(int64(size)) - 10)
					} else {
						b := []byte{0}
						if _, err = f.ReadAt(b, at); err == nil {
							b[0] ^= 0x10
							_, err = f.WriteAt(b, at)
						}
					}
					f.Close()
					if err != nil {
						t.Fatal(err)
					}
					if restart {
						c = mustNew(t, cfg)
					}
					// Every way of reading misses; none returns bad bytes.
					p := make([]byte, size)
					if n, ok := c.ReadAt(fid, p, 0); ok {
						t.Fatalf("corrupt file served: %d bytes, equal=%v", n, bytes.Equal(p[:n], data[:n]))
					}
					if _, ok := c.Get(fid); ok {
						t.Fatal("corrupt file served by Get")
					}
					if c.Contains(fid) {
						t.Error("corrupt entry still indexed")
					}
					if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("corrupt file not removed: %v", err)
					}
					// The fid can be cached again.
					c.Put(fid, data)
					c.flush()
					c.mem.remove(fid)
					checkRead(t, c, fid, data, 0, size)
				})
			}
		}
	}
}

// A range read checks only the blocks it touches: damage elsewhere in the
// file does not turn a good range into a miss, damage inside it does.
func TestRangeReadChecksTouchedBlocks(t *testing.T) {
	dir := t.TempDir()
	c := mustNew(t, diskOnly(dir, 8<<20))
	const fid = "9,1"
	data := blob(fid, 1<<20)
	c.Put(fid, data)
	c.flush()
	name := fileOf(t, dir, fid)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte{^data[10*blockSize+3]}, dataOffset(int64(len(data)))+10*blockSize+3)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkRead(t, c, fid, data, 2*blockSize, 4096)
	if _, ok := c.ReadAt(fid, make([]byte, 4096), 10*blockSize); ok {
		t.Fatal("damaged block served")
	}
	if c.Stats().CorruptFiles != 1 || c.Contains(fid) {
		t.Errorf("damage not recorded: %+v", c.Stats())
	}
}

func TestTornAndForeignFilesAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg := diskOnly(dir, 1<<20)
	c := mustNew(t, cfg)
	for _, fid := range []string{"1,good", "1,torn", "1,torn2"} {
		c.Put(fid, blob(fid, 5000))
	}
	c.Close()
	// A file cut to a size no blob has is dropped at New; one cut to a
	// plausible size is indexed, then caught by its header on first read.
	torn, torn2 := fileOf(t, dir, "1,torn"), fileOf(t, dir, "1,torn2")
	if err := os.Truncate(torn, 10); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(torn2, 3000); err != nil {
		t.Fatal(err)
	}
	write := func(name string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tmp := write("tmp/0000000000000099")             // a crash mid-write
	badName := write(fanout("1,x") + "/not-a-cache") // not a cache file name
	var good int
	fmt.Sscanf(fanout("1,good"), "%x", &good)
	misplaced := filepath.Join(dir, fmt.Sprintf("%02x", (good+1)%256), filepath.Base(fileOf(t, dir, "1,good")))
	if err := os.Link(fileOf(t, dir, "1,good"), misplaced); err != nil { // a well-formed file in the wrong directory
		t.Fatal(err)
	}
	foreign := write("spill-file") // somebody else's file in Dir
	c2 := mustNew(t, cfg)
	for _, p := range []string{tmp, badName, torn, misplaced} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived New: %v", p, err)
		}
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
	if c2.Contains("1,torn") {
		t.Error("torn file indexed")
	}
	if _, ok := c2.ReadAt("1,torn2", make([]byte, 100), 0); ok {
		t.Error("torn file served")
	}
	if _, err := os.Stat(torn2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("torn file kept after a failed read: %v", err)
	}
	if s := c2.Stats(); s.CorruptFiles != 1 || s.DiskEntries != 1 {
		t.Errorf("stats: %+v", s)
	}
	checkRead(t, c2, "1,good", blob("1,good", 5000), 0, 5000)
}

func TestConcurrentUse(t *testing.T) {
	for name, cfg := range map[string]Config{
		"memory": memOnly(256 << 10),
		"disk":   diskOnly(t.TempDir(), 512<<10),
		"both":   func() Config { c := diskOnly(t.TempDir(), 512<<10); c.MemoryBytes = 128 << 10; return c }(),
	} {
		t.Run(name, func(t *testing.T) {
			c := mustNew(t, cfg)
			sizes := []int{100, 4096, 20000, 70000, 200000}
			blobs := map[string][]byte{}
			for i := range 40 {
				fid := fmt.Sprintf("%d,%x", i%5, i)
				blobs[fid] = blob(fid, sizes[i%len(sizes)])
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failures []string
			for g := range 8 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 1))
					p := make([]byte, 64<<10)
					for range 300 {
						i := r.IntN(40)
						fid := fmt.Sprintf("%d,%x", i%5, i)
						want := blobs[fid]
						switch r.IntN(4) {
						case 0:
							c.Put(fid, want)
						case 1:
							if b, ok := c.Get(fid); ok && !bytes.Equal(b, want) {
								mu.Lock()
								failures = append(failures, "Get "+fid)
								mu.Unlock()
							}
						default:
							off := r.IntN(len(want) + 10)
							n, ok := c.ReadAt(fid, p[:r.IntN(len(p))+1], int64(off))
							if ok && (off < len(want) && !bytes.Equal(p[:n], want[off:off+n]) ||
								n != max(0, min(len(want)-off, n))) {
								mu.Lock()
								failures = append(failures, fmt.Sprintf("ReadAt %s off %d n %d", fid, off, n))
								mu.Unlock()
							}
						}
						c.Contains(fid)
						c.Stats()
					}
				})
			}
			wg.Wait()
			c.flush()
			if len(failures) > 0 {
				t.Fatalf("%d bad reads, first: %s", len(failures), failures[0])
			}
			s := c.Stats()
			if s.MemoryBytes > cfg.MemoryBytes || s.DiskBytes > max(cfg.DiskBytes, 0) {
				t.Errorf("over budget: %+v", s)
			}
			if s.CorruptFiles != 0 || s.DiskReadErrors != 0 || s.DiskWriteErrors != 0 {
				t.Errorf("errors: %+v", s)
			}
			if cfg.Dir != "" && s.DiskWrites == 0 {
				t.Error("nothing written to disk")
			}
			c.Close()
			if cfg.Dir != "" && openUnder(t, cfg.Dir) > 0 {
				t.Error("files left open after Close")
			}
		})
	}
}

// A reader racing with the eviction of the file it reads misses cleanly.
func TestReadRacingEviction(t *testing.T) {
	dir := t.TempDir()
	c := mustNew(t, diskOnly(dir, 3*diskCharge(300<<10)))
	blobs := make([][]byte, 7)
	for i := range blobs {
		blobs[i] = blob(fmt.Sprintf("1,%d", i), 300<<10)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Put(fmt.Sprintf("1,%d", i%7), blobs[i%7])
			c.flush()
		}
	})
	p := make([]byte, 4096)
	for i := range 3000 {
		fid := fmt.Sprintf("1,%d", i%7)
		want := blobs[i%7]
		off := (i * 7919) % (300 << 10)
		if n, ok := c.ReadAt(fid, p, int64(off)); ok && !bytes.Equal(p[:n], want[off:off+n]) {
			t.Fatalf("bad bytes for %s at %d", fid, off)
		}
	}
	close(stop)
	wg.Wait()
	if s := c.Stats(); s.CorruptFiles != 0 || s.DiskReadErrors != 0 {
		t.Errorf("eviction races counted as errors: %+v", s)
	}
	c.Close()
	if openUnder(t, dir) > 0 {
		t.Error("files left open after Close")
	}
}

func TestPrefetchPromotesDiskBlob(t *testing.T) {
	cfg := diskOnly(t.TempDir(), 1<<20)
	cfg.MemoryBytes = 1 << 20
	c := mustNew(t, cfg)
	data := blob("3,c", 300<<10) // above promoteMax: a range read would leave it on disk
	c.Put("3,c", data)
	c.flush()
	c.mem.remove("3,c")
	c.Prefetch("3,c")
	b, ok := c.mem.get("3,c")
	if !ok || !bytes.Equal(b, data) {
		t.Fatalf("Prefetch did not bring the disk blob into memory (ok %v)", ok)
	}
	c.Prefetch("9,none") // unknown blobs are ignored
}
