package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/cache"
	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// The mount under faults (issue 4, "Bad input and faults"): a volume
// server down mid-read, a filer restart while mounted, a full cache disk,
// and the whole cluster gone. Every call that might hang runs under a
// liveness bound (cluster.Within), far above what it should take: the
// tests check that calls return, and what they return, never how fast.

// liveness bounds a call that must return; it is not a performance figure.
const liveness = 60 * time.Second

// noChunkCache makes a mount without a chunk cache, so every read of a
// chunk goes to the volume servers; no read-ahead, so each read fetches
// exactly the chunks it covers.
func noChunkCache(cfg *mount.Config) {
	cfg.CacheDir = ""
	cfg.CacheMemoryMB = 0
	cfg.ReadAheadChunks = 0
}

// openDirect opens p with O_DIRECT: the mount answers it with
// FOPEN_DIRECT_IO, so every read reaches the mount instead of the
// kernel's page cache.
func openDirect(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
}

// readRange reads exactly n bytes at off from f, in reads of at most 1 MiB.
func readRange(f *os.File, off int64, n int) ([]byte, error) {
	buf := make([]byte, n)
	for done := 0; done < n; {
		m, err := f.ReadAt(buf[done:min(n, done+1<<20)], off+int64(done))
		done += m
		if err != nil && !(errors.Is(err, io.EOF) && done == n) {
			return buf[:done], err
		}
	}
	return buf, nil
}

// readDirect reads the whole file at p through O_DIRECT.
func readDirect(p string) ([]byte, error) {
	f, err := openDirect(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return readRange(f, 0, int(st.Size()))
}

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: got %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
	}
}

// TestMountFaultVolumeDown: a volume server stopped in the middle of a
// read. With replication 001 (two copies on one rack) the other replica
// serves the rest of the read, whichever server is down. With 000, a read
// of a chunk whose only holder is down fails with EIO (it does not hang
// and does not claim the file is missing), and reads again once the
// server is back.
func TestMountFaultVolumeDown(t *testing.T) {
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true, Volumes: []cluster.VolumeSpec{{Rack: "r1"}, {Rack: "r1"}}})
	writer := c.MountFiler(func(cfg *mount.Config) { cfg.ChunkSizeMB = 1; cfg.Replication = "001" })
	data := randomBytes(t, 6<<20+12345)
	if err := os.WriteFile(writer.Path("replicated"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	chunks := c.FileChunks("/replicated")
	if len(chunks) < 6 {
		t.Fatalf("a 6 MiB file in 1 MiB chunks has %d chunks", len(chunks))
	}
	for _, ch := range chunks {
		if h := c.VolumesHolding(ch.FileId); !slices.Equal(h, []int{0, 1}) {
			t.Fatalf("chunk %s with replication 001 is on volume servers %v, want [0 1]", ch.FileId, h)
		}
	}

	// A second mount without a chunk cache reads from the volume servers.
	reader := c.MountFiler(noChunkCache)
	f, err := openDirect(reader.Path("replicated"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	half := len(data) / 2
	got, err := readRange(f, 0, half)
	if err != nil {
		t.Fatalf("first half: %v", err)
	}
	sameBytes(t, "first half", got, data[:half])

	c.StopVolume(0)
	var rest []byte
	if err := cluster.Within(t, liveness, "read with volume server 0 down", func() error {
		var err error
		rest, err = readRange(f, int64(half), len(data)-half)
		return err
	}); err != nil {
		t.Fatalf("second half with volume server 0 down: %v (its replica should serve it)", err)
	}
	sameBytes(t, "second half with volume server 0 down", rest, data[half:])

	// The other way round: every chunk from server 0 alone.
	c.RestartVolume(0)
	c.StopVolume(1)
	var all []byte
	if err := cluster.Within(t, liveness, "read with volume server 1 down", func() error {
		var err error
		all, err = readRange(f, 0, len(data))
		return err
	}); err != nil {
		t.Fatalf("whole file with volume server 1 down: %v", err)
	}
	sameBytes(t, "whole file with volume server 1 down", all, data)
	c.RestartVolume(1)

	// Replication 000: one copy. Stop the server holding a chunk in the
	// middle of the file and read that chunk.
	single := c.MountFiler(func(cfg *mount.Config) { cfg.ChunkSizeMB = 1; cfg.Replication = "000" })
	data = randomBytes(t, 4<<20+777)
	if err := os.WriteFile(single.Path("single"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	chunks = c.FileChunks("/single")
	k := len(chunks) / 2
	ch := chunks[k]
	holders := c.VolumesHolding(ch.FileId)
	if len(holders) != 1 {
		t.Fatalf("chunk %s with replication 000 is on volume servers %v, want one", ch.FileId, holders)
	}
	victim := holders[0]
	g, err := openDirect(reader.Path("single"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	got, err = readRange(g, 0, int(ch.Offset)) // the chunks before it, with everything up
	if err != nil {
		t.Fatalf("read before the stop: %v", err)
	}
	sameBytes(t, "chunks before the stop", got, data[:ch.Offset])
	c.StopVolume(victim)
	err = cluster.Within(t, liveness, "read of a chunk whose only holder is down", func() error {
		_, err := readRange(g, ch.Offset, int(ch.Size))
		return err
	})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of chunk %s with its only volume server (%d) down: got %v, want EIO", ch.FileId, victim, err)
	}
	c.RestartVolume(victim)
	cluster.WaitFor(t, 30*time.Second, "read after the volume server came back", func() error {
		got, err := readRange(g, 0, len(data))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return errors.New("content differs")
		}
		return nil
	})
}

// opResult is what one operation run during a fault returned.
type opResult struct {
	name string
	err  error
}

// runningOps are operations started by startOps.
type runningOps struct {
	names   []string
	results chan opResult
}

// startOps runs each op on its own goroutine.
func startOps(ops map[string]func() error) *runningOps {
	r := &runningOps{results: make(chan opResult, len(ops))}
	for name, op := range ops {
		r.names = append(r.names, name)
		go func() { r.results <- opResult{name, op()} }()
	}
	return r
}

// collect waits for the results of every op not in have (failing the test,
// naming the ops still running, if they do not all return within
// liveness) and returns the errors by op name.
func (r *runningOps) collect(t *testing.T, what string, have map[string]error) map[string]error {
	t.Helper()
	errs := map[string]error{}
	deadline := time.After(liveness)
	for len(errs)+len(have) < len(r.names) {
		select {
		case res := <-r.results:
			errs[res.name] = res.err
		case <-deadline:
			var hung []string
			for _, n := range r.names {
				if _, ok := errs[n]; !ok {
					if _, ok := have[n]; !ok {
						hung = append(hung, n)
					}
				}
			}
			t.Fatalf("%s: %v did not return within %s (hung); the others returned %v", what, hung, liveness, errs)
		}
	}
	return errs
}

// TestMountFaultFilerRestart: the filer stops and comes back on the same
// ports and store while a mount is up. Operations issued during a short
// outage wait for it and succeed; afterwards everything works and what
// was written before is intact; the change-log watcher resumes (a change
// made by another client reaches a kernel that caches attributes for an
// hour). With a short OpTimeout and a longer outage, operations fail with
// EIO instead of hanging, and the same mount works again once the filer
// is back.
func TestMountFaultFilerRestart(t *testing.T) {
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true})
	m := c.MountFiler(func(cfg *mount.Config) {
		cfg.ChunkSizeMB = 1
		cfg.EntryTimeout, cfg.AttrTimeout = time.Hour, time.Hour // only the watcher refreshes the kernel
	})
	before := map[string][]byte{"a": randomBytes(t, 100<<10), "b": randomBytes(t, 3000), "dir/c": randomBytes(t, 2<<20+5)}
	if err := os.Mkdir(m.Path("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range before {
		if err := os.WriteFile(m.Path(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stA, err := os.Stat(m.Path("a")) // the kernel now caches a's attributes
	if err != nil || stA.Mode().Perm() != 0o644 {
		t.Fatalf("stat a: %v %v", stA, err)
	}
	// Made by another client: the mount has never looked it up.
	httpPut(t, c.Filer.URL()+"/outside", []byte("made over http"))

	// A short outage: what is issued during it waits and then succeeds.
	c.Filer.Stop()
	during := randomBytes(t, 1<<20+99)
	ops := map[string]func() error{
		"stat outside": func() error {
			st, err := os.Stat(m.Path("outside"))
			if err == nil && st.Size() != int64(len("made over http")) {
				err = fmt.Errorf("size %d", st.Size())
			}
			return err
		},
		"create and write during": func() error { return os.WriteFile(m.Path("during"), during, 0o644) },
		"mkdir newdir":            func() error { return os.Mkdir(m.Path("newdir"), 0o755) },
	}
	running := startOps(ops)
	outage := time.After(2 * time.Second) // how long the filer stays away, well inside OpTimeout (20s)
	errs := map[string]error{}
wait:
	for {
		select {
		case r := <-running.results:
			if r.err != nil {
				t.Fatalf("%s failed during a 2s filer outage (OpTimeout 20s): %v", r.name, r.err)
			}
			errs[r.name] = nil // served without the filer (from a cache): fine
		case <-outage:
			break wait
		}
	}
	c.Filer.Start()
	for name, err := range running.collect(t, "operations issued during the outage", errs) {
		if err != nil {
			t.Errorf("%s, issued during a short filer outage: %v after the filer came back", name, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// After the restart: the usual operations work.
	got, err := os.ReadFile(m.Path("during"))
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "file written across the outage", got, during)
	after := randomBytes(t, 1<<20+3)
	if err := os.WriteFile(m.Path("after"), after, 0o644); err != nil {
		t.Fatalf("create after restart: %v", err)
	}
	if err := os.Rename(m.Path("after"), m.Path("dir", "after2")); err != nil {
		t.Fatalf("rename after restart: %v", err)
	}
	if got, err := os.ReadFile(m.Path("dir", "after2")); err != nil {
		t.Fatal(err)
	} else {
		sameBytes(t, "file written after the restart", got, after)
	}
	names := func(dir string) []string {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("readdir %s: %v", dir, err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if n, want := names(m.Dir), []string{"a", "b", "dir", "during", "newdir", "outside"}; !slices.Equal(n, want) {
		t.Fatalf("root lists %v, want %v", n, want)
	}
	if n, want := names(m.Path("dir")), []string{"after2", "c"}; !slices.Equal(n, want) {
		t.Fatalf("dir lists %v, want %v", n, want)
	}
	// What was written before the outage is intact, read through a mount
	// that has no cache of it.
	fresh := c.MountFiler(noChunkCache)
	for name, data := range before {
		got, err := readDirect(fresh.Path(name))
		if err != nil {
			t.Fatalf("read %s after the restart: %v", name, err)
		}
		sameBytes(t, name+" after the restart", got, data)
	}

	// The watcher resumed: a chmod by another client reaches a kernel
	// that would otherwise keep a's attributes for an hour.
	fc := c.FilerClient()
	ino := c.FilerEntry(fc, "/a").Inode
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_, err = fc.API().SetAttr(ctx, &filerpb.SetAttrRequest{Inode: ino, Mode: proto.Uint32(0o600)})
	cancel()
	if err != nil {
		t.Fatalf("chmod through the filer: %v", err)
	}
	cluster.WaitFor(t, 30*time.Second, "the mount sees a chmod made through the filer after its restart", func() error {
		st, err := os.Stat(m.Path("a"))
		if err != nil {
			return err
		}
		if st.Mode().Perm() != 0o600 {
			return fmt.Errorf("mode %v", st.Mode())
		}
		return nil
	})

	// A short OpTimeout and a filer that stays away longer: operations
	// fail with EIO rather than wait; the mount recovers by itself.
	short := c.MountFiler(func(cfg *mount.Config) { cfg.OpTimeout = 3 * time.Second })
	if err := os.WriteFile(short.Path("short-before"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Filer.Stop()
	ops = map[string]func() error{
		"open for reading": func() error {
			f, err := os.Open(short.Path("short-before"))
			if err == nil {
				f.Close()
			}
			return err
		},
		"create":  func() error { return os.WriteFile(short.Path("short-new"), []byte("x"), 0o644) },
		"mkdir":   func() error { return os.Mkdir(short.Path("short-dir"), 0o755) },
		"readdir": func() error { _, err := os.ReadDir(short.Dir); return err },
	}
	for name, err := range startOps(ops).collect(t, "operations during a long filer outage", nil) {
		if name == "readdir" && err == nil {
			continue // a listing the mount still trusts may be served from its cache
		}
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%s with the filer away past OpTimeout: got %v, want EIO", name, err)
		}
	}
	c.Filer.Start()
	cluster.WaitFor(t, liveness, "the short-timeout mount works again after the filer came back", func() error {
		return os.WriteFile(short.Path("short-after"), []byte("after"), 0o644)
	})
	for name, want := range map[string]string{"short-before": "before", "short-after": "after"} {
		if got, err := os.ReadFile(short.Path(name)); err != nil || string(got) != want {
			t.Fatalf("read %s after the long outage: %q %v", name, got, err)
		}
	}
}

// TestMountFaultFullCacheDisk: the chunk cache's directory is a tmpfs of
// 8 MiB while the cache may use 64 MiB. Files totalling 4.5 times the disk
// are written and read back correct, the mount stays responsive, and the
// cache files left on the full disk are sound: opened by a cache of their
// own, every one that is served matches the chunk it stands for and none
// is corrupt; a fresh mount on the same cache directory reads everything
// correctly.
func TestMountFaultFullCacheDisk(t *testing.T) {
	cluster.NeedFUSE(t)
	const diskMB = 8
	cacheDir := cluster.Tmpfs(t, diskMB)
	c := cluster.Start(t, cluster.Options{Filer: true})
	cfgFn := func(cfg *mount.Config) {
		cfg.ChunkSizeMB = 1
		cfg.CacheDir = cacheDir
		cfg.CacheCapacityMB = 64
		cfg.CacheMemoryMB = 0 // every hit comes from the full disk
	}
	m := c.MountFiler(cfgFn)
	want := map[string][]byte{}
	var total int
	for i := 0; total < 36<<20; i++ {
		name := fmt.Sprintf("f%02d", i)
		data := randomBytes(t, 3<<20+i*1000)
		want[name] = data
		total += len(data)
		if err := os.WriteFile(m.Path(name), data, 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		// Read an earlier file back while the disk is filling.
		prev := fmt.Sprintf("f%02d", i/2)
		got, err := cluster.Within(t, liveness, "read "+prev, func() readAnswer { b, err := readDirect(m.Path(prev)); return readAnswer{b, err} }).unpack()
		if err != nil {
			t.Fatalf("read %s while the cache disk fills: %v", prev, err)
		}
		sameBytes(t, prev+" while the cache disk fills", got, want[prev])
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(cacheDir, &fs); err == nil {
		t.Logf("cache tmpfs after %d MiB written: %d of %d KiB free", total>>20, fs.Bavail*uint64(fs.Bsize)>>10, fs.Blocks*uint64(fs.Bsize)>>10)
	}
	for pass := 0; pass < 2; pass++ {
		for name, data := range want {
			got, err := cluster.Within(t, liveness, "read "+name, func() readAnswer { b, err := readDirect(m.Path(name)); return readAnswer{b, err} }).unpack()
			if err != nil {
				t.Fatalf("pass %d: read %s: %v", pass, name, err)
			}
			sameBytes(t, fmt.Sprintf("pass %d: %s", pass, name), got, data)
		}
		ents, err := cluster.Within(t, liveness, "readdir", func() dirAnswer { e, err := os.ReadDir(m.Dir); return dirAnswer{e, err} }).unpack()
		if err != nil || len(ents) != len(want) {
			t.Fatalf("readdir with a full cache disk: %d entries, %v", len(ents), err)
		}
	}
	chunksOf := map[string][]*filerpb.Chunk{}
	for name := range want {
		chunksOf[name] = c.FileChunks("/" + name)
	}
	m.Unmount()

	// The files the mount left in its cache directory, checked by a cache
	// of our own: everything it serves is the chunk's exact bytes.
	cc, err := cache.New(cache.Config{Dir: cacheDir, DiskBytes: 64 << 20, WriteQueueBytes: 1 << 20})
	if err != nil {
		t.Fatalf("reopen the cache directory: %v", err)
	}
	hits := 0
	for name, chunks := range chunksOf {
		for _, ch := range chunks {
			b, ok := cc.Get(ch.FileId)
			if !ok {
				continue
			}
			hits++
			sameBytes(t, fmt.Sprintf("cached chunk %s of %s", ch.FileId, name), b, want[name][ch.Offset:ch.Offset+ch.Size])
		}
	}
	st := cc.Stats()
	if err := cc.Close(); err != nil {
		t.Fatalf("close the reopened cache: %v", err)
	}
	t.Logf("reopened cache: %d chunks cached, %+v", hits, st)
	if hits == 0 {
		t.Fatal("the full cache disk holds no chunk at all: the cache gave up instead of shrinking")
	}
	if st.CorruptFiles != 0 || st.DiskReadErrors != 0 {
		t.Fatalf("the cache left %d corrupt and %d unreadable files on the full disk", st.CorruptFiles, st.DiskReadErrors)
	}

	// A fresh mount on the same cache directory reads everything right.
	m2 := c.MountFiler(cfgFn)
	for name, data := range want {
		got, err := readDirect(m2.Path(name))
		if err != nil {
			t.Fatalf("read %s through a fresh mount on the old cache: %v", name, err)
		}
		sameBytes(t, name+" through a fresh mount on the old cache", got, data)
	}
}

type readAnswer struct {
	b   []byte
	err error
}

func (a readAnswer) unpack() ([]byte, error) { return a.b, a.err }

type dirAnswer struct {
	e   []os.DirEntry
	err error
}

func (a dirAnswer) unpack() ([]os.DirEntry, error) { return a.e, a.err }

// TestMountFaultClusterGone: the whole cluster (filer, volume servers,
// master) goes away under a mount. Lookups, opens, reads, writes and
// fsync return errors instead of hanging, close reports the lost write,
// and the mount unmounts; the mount point is an ordinary directory again.
func TestMountFaultClusterGone(t *testing.T) {
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true})
	m := c.MountFiler(func(cfg *mount.Config) {
		cfg.ChunkSizeMB = 1
		cfg.OpTimeout = 3 * time.Second
		noChunkCache(cfg)
	})
	data := randomBytes(t, 3<<20)
	if err := os.WriteFile(m.Path("f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	fr, err := openDirect(m.Path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	fw, err := os.OpenFile(m.Path("w"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	if _, err := fw.Write([]byte("unflushed")); err != nil {
		t.Fatal(err)
	}

	c.StopAll()
	// Six chunks' worth of unflushed data for fsync to try to store.
	big := randomBytes(t, 6<<20)
	ops := map[string]func() error{
		"stat of an unknown name": func() error { _, err := os.Stat(m.Path("nothere")); return err },
		"read":                    func() error { _, err := readRange(fr, 1<<20, 1<<20); return err },
		"open":                    func() error { _, err := readDirect(m.Path("f")); return err },
		"write and fsync": func() error {
			if _, err := fw.Write(big); err != nil {
				return err
			}
			return fw.Sync()
		},
		"create": func() error { return os.WriteFile(m.Path("new"), []byte("x"), 0o644) },
		"mkdir":  func() error { return os.Mkdir(m.Path("d"), 0o755) },
	}
	for name, err := range startOps(ops).collect(t, "operations on a mount whose cluster is gone", nil) {
		if err == nil {
			t.Errorf("%s succeeded with the whole cluster gone", name)
		} else if name != "stat of an unknown name" && !errors.Is(err, syscall.EIO) {
			t.Errorf("%s with the whole cluster gone: got %v, want EIO", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if err := cluster.Within(t, liveness, "close of the written file", fw.Close); !errors.Is(err, syscall.EIO) {
		t.Errorf("close of a file whose data could not be stored: got %v, want EIO", err)
	}
	if err := cluster.Within(t, liveness, "close of the read file", fr.Close); err != nil {
		t.Errorf("close of a file only read: %v", err)
	}
	err = cluster.Within(t, liveness, "unmount", m.TryUnmount)
	t.Logf("unmount with the cluster gone: %v", err)
	if cluster.Mounted(t, m.Dir) {
		t.Fatalf("%s is still a mount point after unmount", m.Dir)
	}
	if _, err := cluster.Within(t, liveness, "stat of the old mount point", func() dirAnswer {
		e, err := os.ReadDir(m.Dir)
		return dirAnswer{e, err}
	}).unpack(); err != nil {
		t.Fatalf("the old mount point: %v", err)
	}
}

// TestMountFaultWriteVolumeDown: chunk uploads fail because the only
// volume server is down. fsync reports EIO; once the server is back, the
// data still held by the mount must either reach the cluster whole (close
// then succeeds and another mount reads exactly what was written) or close
// must report EIO too: an error is never dropped silently, and the file
// never commits with holes where the failed chunks were.
func TestMountFaultWriteVolumeDown(t *testing.T) {
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true})
	m := c.MountFiler(func(cfg *mount.Config) { cfg.ChunkSizeMB = 1; cfg.OpTimeout = 3 * time.Second })
	f, err := os.OpenFile(m.Path("w"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c.StopVolume(0)
	data := randomBytes(t, 2<<20+100)
	err = cluster.Within(t, liveness, "write and fsync with the volume server down", func() error {
		if _, err := f.Write(data); err != nil {
			return err
		}
		return f.Sync()
	})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("write and fsync with the only volume server down: got %v, want EIO", err)
	}
	c.RestartVolume(0)
	closeErr := cluster.Within(t, liveness, "close after the volume server came back", f.Close)
	t.Logf("close after the volume server came back: %v", closeErr)
	got, err := readDirect(c.MountFiler(noChunkCache).Path("w"))
	if err != nil {
		t.Fatalf("read through another mount: %v", err)
	}
	if closeErr == nil && !bytes.Equal(got, data) {
		zeros := bytes.Count(got, []byte{0})
		t.Fatalf("close succeeded after fsync failed, but another mount reads %d bytes (want %d) of which %d are zero: the chunks whose upload failed were dropped and the file committed with holes",
			len(got), len(data), zeros)
	} else if len(got) == len(data) && !bytes.Equal(got, data) {
		t.Fatalf("close failed (%v), yet the filer lists a file of the full size with other content", closeErr)
	}
}
