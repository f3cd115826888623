package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kelpfs/kelp/needle"
)

func TestWriteReadDeleteRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	e.allocate(2, "pics", needle.TTL{})
	for _, f := range []string{"1.dat", "1.idx", "pics_2.dat", "pics_2.idx"} {
		if _, err := os.Stat(filepath.Join(e.dir, f)); err != nil {
			t.Fatalf("volume file: %v", err)
		}
	}
	sizes := []int{0, 1, 7, 8, 1024, 100_000}
	for i, size := range sizes {
		for _, vid := range []uint32{1, 2} {
			e.write(vid, uint64(i+1), size)
		}
	}
	full := &needle.Needle{ID: 99, Cookie: 0xdeadbeef, Data: []byte("hello"), Name: []byte("a.txt"),
		Mime: []byte("text/plain"), LastModified: 1700000000, IsManifest: true}
	if _, err := e.store.Write(1, full); err != nil {
		t.Fatal(err)
	}
	if full.AppendAtNs == 0 {
		t.Fatal("Write did not set AppendAtNs")
	}
	for i, size := range sizes {
		for _, vid := range []uint32{1, 2} {
			e.mustRead(vid, uint64(i+1), size)
		}
	}
	got, err := e.store.Read(1, 99, 0xdeadbeef)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Name) != "a.txt" || string(got.Mime) != "text/plain" || got.LastModified != 1700000000 ||
		!got.IsManifest || got.AppendAtNs != full.AppendAtNs || string(got.Data) != "hello" {
		t.Fatalf("read back %+v", got)
	}

	freed, err := e.store.Delete(1, 5, cookieFor(5))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64((&needle.Needle{Data: blob(5, 1024)}).BodySize()); freed != want {
		t.Fatalf("Delete freed %d, want body size %d", freed, want)
	}
	e.mustNotFind(1, 5)
	e.mustRead(2, 5, 1024) // other volume untouched
	if _, err := e.store.Delete(1, 5, cookieFor(5)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := e.store.Delete(1, 12345, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a missing needle: %v, want ErrNotFound", err)
	}
	e.mustNotFind(1, 12345)

	st, err := e.store.VolumeStatus(1)
	if err != nil {
		t.Fatal(err)
	}
	if st.FileCount != uint64(len(sizes)) || st.DeleteCount != 1 || st.DeletedBytes <= 0 || st.Collection != "" || st.Dir != e.dir || st.Version != needle.CurrentVersion {
		t.Fatalf("status %+v", st)
	}
	if fi, _ := os.Stat(filepath.Join(e.dir, "1.dat")); fi.Size() != st.Size {
		t.Fatalf("status size %d, file %d", st.Size, fi.Size())
	}
	if fi, _ := os.Stat(filepath.Join(e.dir, "1.idx")); fi.Size() != int64(len(sizes)+2)*needle.IdxEntrySize {
		t.Fatalf("idx is %d bytes, want %d entries", fi.Size(), len(sizes)+2)
	}
}

func TestCookieMismatch(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	e.write(1, 7, 100)
	if _, err := e.store.Read(1, 7, cookieFor(7)+1); !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("Read with a wrong cookie: %v", err)
	}
	if _, err := e.store.Delete(1, 7, cookieFor(7)+1); !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("Delete with a wrong cookie: %v", err)
	}
	_, err := e.store.Write(1, &needle.Needle{ID: 7, Cookie: cookieFor(7) + 1, Data: []byte("x")})
	if !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("Write over another cookie: %v", err)
	}
	_, err = e.store.Write(1, &needle.Needle{ID: 7, Cookie: cookieFor(7) + 1, Data: blob(7, 100)})
	if !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("Write of the same size over another cookie: %v", err)
	}
	e.mustRead(1, 7, 100)
}

func TestOverwriteAndUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	n := e.write(1, 3, 500)
	size0 := e.vol(1).size.Load()

	again := &needle.Needle{ID: 3, Cookie: cookieFor(3), Data: blob(3, 500)}
	w, err := e.store.Write(1, again)
	if err != nil || !w.Unchanged || w.ETag != needle.ETag(again.Data) {
		t.Fatalf("identical rewrite: %+v err %v", w, err)
	}
	if again.AppendAtNs != n.AppendAtNs {
		t.Fatalf("unchanged write AppendAtNs %d, stored %d", again.AppendAtNs, n.AppendAtNs)
	}
	if e.vol(1).size.Load() != size0 {
		t.Fatal("identical rewrite appended")
	}

	newData := bytes.Repeat([]byte("z"), 500) // same size, different bytes
	w, err = e.store.Write(1, &needle.Needle{ID: 3, Cookie: cookieFor(3), Data: newData})
	if err != nil || w.Unchanged || w.ETag != needle.ETag(newData) {
		t.Fatalf("overwrite: %+v err %v", w, err)
	}
	got, err := e.store.Read(1, 3, cookieFor(3))
	if err != nil || !bytes.Equal(got.Data, newData) {
		t.Fatalf("after overwrite: %v", err)
	}
	if _, err := e.store.Write(1, &needle.Needle{ID: 3, Cookie: cookieFor(3), Data: []byte("short")}); err != nil {
		t.Fatal(err)
	}
	st, _ := e.store.VolumeStatus(1)
	if st.FileCount != 1 || st.DeleteCount != 2 {
		t.Fatalf("status after two overwrites: %+v", st)
	}
	e.reopen()
	got, err = e.store.Read(1, 3, cookieFor(3))
	if err != nil || string(got.Data) != "short" {
		t.Fatalf("after reload: %v %q", err, got.Data)
	}
}

func TestReloadGivesSameState(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "c", needle.TTL{})
	e.allocate(2, "", needle.TTL{})
	live := map[uint64]int{}
	for k := uint64(1); k <= 300; k++ {
		size := int(k*37) % 3000
		e.write(1, k, size)
		live[k] = size
	}
	for k := uint64(1); k <= 300; k += 3 {
		if _, err := e.store.Delete(1, k, cookieFor(k)); err != nil {
			t.Fatal(err)
		}
		delete(live, k)
	}
	for k := uint64(2); k <= 300; k += 10 {
		e.write(1, k, 10) // overwrite
		live[k] = 10
	}
	e.write(2, 1000, 10)
	before := e.store.Status()
	maxKey := e.store.MaxFileKey()
	e.reopen()
	after := e.store.Status()
	if len(before) != len(after) {
		t.Fatalf("%d volumes before, %d after", len(before), len(after))
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("status before %+v\nafter %+v", before[i], after[i])
		}
	}
	if got := e.store.MaxFileKey(); got != maxKey || got != 1000 {
		t.Errorf("MaxFileKey %d after reload, %d before", got, maxKey)
	}
	for k := uint64(1); k <= 300; k++ {
		if size, ok := live[k]; ok {
			e.mustRead(1, k, size)
		} else {
			e.mustNotFind(1, k)
		}
	}
	if e.logs.contains("cutting") || e.logs.contains("dropping") {
		t.Errorf("clean reload logged a repair:\n%s", e.logs)
	}
}

func TestVolumeLifecycle(t *testing.T) {
	dir2 := t.TempDir()
	e := newEnv(t, func(c *Config) {
		c.Dirs = append(c.Dirs, dir2)
		c.MaxVolumes = []int{1, 2}
	})
	if got := e.store.MaxVolumeCount(); got != 3 {
		t.Fatalf("MaxVolumeCount = %d", got)
	}
	drainChanged(e.store)
	e.allocate(1, "", needle.TTL{})
	waitChanged(t, e.store)
	if st, _ := e.store.VolumeStatus(1); st.Dir != dir2 {
		t.Fatalf("first volume went to %s, want the freest dir %s", st.Dir, dir2)
	}
	if err := e.store.AllocateVolume(1, "", needle.ReplicaPlacement{}, needle.TTL{}, 0); !errors.Is(err, ErrVolumeExists) {
		t.Fatalf("duplicate allocate: %v", err)
	}
	if err := e.store.AllocateVolume(9, "../x", needle.ReplicaPlacement{}, needle.TTL{}, 0); err == nil {
		t.Fatal("collection with a slash accepted")
	}
	rp, _ := needle.ParseReplicaPlacement("010")
	if err := e.store.AllocateVolume(2, "", rp, needle.TTL{}, 1<<20); err != nil {
		t.Fatal(err)
	}
	e.allocate(3, "", needle.TTL{})
	if err := e.store.AllocateVolume(4, "", needle.ReplicaPlacement{}, needle.TTL{}, 0); !errors.Is(err, ErrNoFreeSlot) {
		t.Fatalf("allocate past the limit: %v", err)
	}
	if st, _ := e.store.VolumeStatus(2); st.Replication != rp {
		t.Fatalf("replication %v", st.Replication)
	}
	if !e.hasVolume(3) || e.hasVolume(4) {
		t.Fatal("hasVolume")
	}
	if _, err := e.store.Read(4, 1, 1); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("Read of an unknown volume: %v", err)
	}
	if _, err := e.store.Write(4, &needle.Needle{ID: 1}); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("Write to an unknown volume: %v", err)
	}
	if _, err := e.store.Delete(4, 1, 1); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("Delete in an unknown volume: %v", err)
	}
	if _, err := e.store.VolumeStatus(4); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("VolumeStatus of an unknown volume: %v", err)
	}
	e.write(3, 1, 10)
	drainChanged(e.store)
	if err := e.store.DeleteVolume(3); err != nil {
		t.Fatal(err)
	}
	waitChanged(t, e.store)
	if e.hasVolume(3) {
		t.Fatal("deleted volume still present")
	}
	if m, _ := filepath.Glob(filepath.Join(e.dir, "3.*")); len(m) > 0 {
		t.Fatalf("files left after DeleteVolume: %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(dir2, "3.*")); len(m) > 0 {
		t.Fatalf("files left after DeleteVolume: %v", m)
	}
	if err := e.store.DeleteVolume(3); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("second DeleteVolume: %v", err)
	}
	e.allocate(4, "", needle.TTL{}) // the slot is free again
	st := e.store.Status()
	if len(st) != 3 || st[0].ID != 1 || st[1].ID != 2 || st[2].ID != 4 {
		t.Fatalf("Status: %+v", st)
	}
	e.reopen()
	if got := len(e.store.Status()); got != 3 {
		t.Fatalf("%d volumes after reload", got)
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := e.store.Read(1, 1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := e.store.AllocateVolume(8, "", needle.ReplicaPlacement{}, needle.TTL{}, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Allocate after Close: %v", err)
	}
}

func TestDerivedMaxVolumes(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxVolumes = nil; c.VolumeSizeLimit = 1 << 40 >> 10 })
	if got := e.store.MaxVolumeCount(); got < minDerivedVolumes {
		t.Fatalf("derived MaxVolumeCount %d < %d", got, minDerivedVolumes)
	}
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	e.write(1, 1, 10)
	drainChanged(e.store)
	if err := e.store.MarkReadonly(1, true); err != nil {
		t.Fatal(err)
	}
	waitChanged(t, e.store)
	if _, err := e.store.Write(1, &needle.Needle{ID: 2, Cookie: 1, Data: []byte("x")}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Write to a read-only volume: %v", err)
	}
	if _, err := e.store.Delete(1, 1, cookieFor(1)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Delete in a read-only volume: %v", err)
	}
	e.mustRead(1, 1, 10)
	e.reopen()
	if st, _ := e.store.VolumeStatus(1); !st.ReadOnly {
		t.Fatal("read-only state lost on reload")
	}
	if _, err := e.store.Write(1, &needle.Needle{ID: 2, Cookie: 1}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Write after reload: %v", err)
	}
	if err := e.store.MarkReadonly(1, false); err != nil {
		t.Fatal(err)
	}
	e.write(1, 2, 10)
	e.reopen()
	if st, _ := e.store.VolumeStatus(1); st.ReadOnly {
		t.Fatal("writable state lost on reload")
	}
	if err := e.store.MarkReadonly(7, true); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("MarkReadonly of an unknown volume: %v", err)
	}
}

func TestVolumeFull(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.VolumeSizeLimit = 64 << 10 })
	e.allocate(1, "", needle.TTL{})
	drainChanged(e.store)
	var k uint64
	var err error
	for k = 1; k < 1000; k++ {
		if _, err = e.store.Write(1, &needle.Needle{ID: k, Cookie: cookieFor(k), Data: blob(k, 1000)}); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrVolumeFull) {
		t.Fatalf("filling the volume ended with %v", err)
	}
	if !strings.Contains(err.Error(), "volume 1") {
		t.Errorf("error does not name the volume: %v", err)
	}
	waitChanged(t, e.store)
	if st, _ := e.store.VolumeStatus(1); st.Size > 64<<10 {
		t.Fatalf("volume grew to %d past its limit", st.Size)
	}
	// Deletes still work on a full volume.
	if _, err := e.store.Delete(1, 1, cookieFor(1)); err != nil {
		t.Fatalf("Delete in a full volume: %v", err)
	}
	// A blob larger than a whole volume.
	if _, err := e.store.Write(1, &needle.Needle{ID: 5000, Cookie: 1, Data: make([]byte, 70<<10)}); !errors.Is(err, ErrVolumeFull) {
		t.Fatalf("oversized blob: %v", err)
	}
	for j := uint64(2); j < k; j++ {
		e.mustRead(1, j, 1000)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plainfile")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(file, "vols")
	_, err := NewStore(Config{Dirs: []string{bad}})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("NewStore on %s: %v (want an error naming it)", bad, err)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(t.TempDir(), "ro")
		os.Mkdir(ro, 0o500)
		_, err := NewStore(Config{Dirs: []string{ro}})
		if err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Fatalf("NewStore on a read-only dir: %v", err)
		}
	}
	for _, cfg := range []Config{
		{},
		{Dirs: []string{"a", "b"}, MaxVolumes: []int{1}},
		{Dirs: []string{"a"}, VolumeSizeLimit: needle.MaxVolumeOffset + 1},
		{Dirs: []string{"a", "./a"}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", cfg)
		}
	}
}

func TestTTLExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(c *Config) { c.Now = clock.now })
	ttl, _ := needle.ParseTTL("5m")
	e.allocate(1, "", ttl)
	e.allocate(2, "", needle.TTL{})
	e.write(1, 1, 100)
	e.write(2, 1, 100)
	own, _ := needle.ParseTTL("1m")
	if _, err := e.store.Write(2, &needle.Needle{ID: 2, Cookie: cookieFor(2), Data: blob(2, 10), TTL: own}); err != nil {
		t.Fatal(err)
	}
	// LastModified sets the base: written now, but modified 4 minutes ago.
	lm := uint64(clock.now().Add(-4 * time.Minute).Unix())
	if _, err := e.store.Write(1, &needle.Needle{ID: 3, Cookie: cookieFor(3), Data: blob(3, 10), LastModified: lm}); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.store.VolumeStatus(1); st.TTL != ttl {
		t.Fatalf("volume TTL %v", st.TTL)
	}

	clock.advance(90 * time.Second)
	e.mustRead(1, 1, 100)
	e.mustNotFind(1, 3) // 5.5 minutes past its LastModified
	e.mustNotFind(2, 2) // its own 1m TTL
	e.mustRead(2, 1, 100)
	if got := e.store.DropExpired(); len(got) != 0 {
		t.Fatalf("DropExpired too early: %v", got)
	}

	clock.advance(3 * time.Minute) // 4.5 min after the last write
	e.mustRead(1, 1, 100)
	if got := e.store.DropExpired(); len(got) != 0 {
		t.Fatalf("DropExpired too early: %v", got)
	}
	clock.advance(time.Minute)
	e.mustNotFind(1, 1)
	e.mustRead(2, 1, 100) // no TTL: never expires

	// Expiry survives a reload (the TTL is in the superblock).
	e.reopen()
	e.mustNotFind(1, 1)
	drainChanged(e.store)
	if got := e.store.DropExpired(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("DropExpired = %v, want [1]", got)
	}
	waitChanged(t, e.store)
	if e.hasVolume(1) || !e.hasVolume(2) {
		t.Fatal("wrong volumes dropped")
	}
	if m, _ := filepath.Glob(filepath.Join(e.dir, "1.*")); len(m) > 0 {
		t.Fatalf("files left by DropExpired: %v", m)
	}

	// An empty TTL volume lives for its TTL from creation.
	e.allocate(3, "", ttl)
	clock.advance(4 * time.Minute)
	if got := e.store.DropExpired(); len(got) != 0 {
		t.Fatalf("empty volume dropped early: %v", got)
	}
	clock.advance(2 * time.Minute)
	if got := e.store.DropExpired(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("DropExpired = %v, want [3]", got)
	}
}

func TestFileNames(t *testing.T) {
	for _, c := range []struct {
		name       string
		collection string
		id         uint32
		ok         bool
	}{
		{"1.dat", "", 1, true},
		{"pics_12.dat", "pics", 12, true},
		{"a_b_3.dat", "a_b", 3, true},
		{"_3.dat", "", 0, false},
		{"x.dat", "", 0, false},
		{"3.idx", "", 0, false},
		{"03.dat", "", 0, false},
		{"99999999999.dat", "", 0, false},
		{"3.dat.tmp", "", 0, false},
	} {
		col, id, ok := parseVolumeFileName(c.name)
		if ok != c.ok || ok && (col != c.collection || id != c.id) {
			t.Errorf("parse %q = %q %d %v", c.name, col, id, ok)
		}
		if ok && volumeBaseName(col, id)+extDat != c.name {
			t.Errorf("base name of %q = %q", c.name, volumeBaseName(col, id))
		}
	}
}

// TestTTLNeedleCannotOutliveVolume: a TTL volume is dropped whole at its
// newest append plus its TTL, so no needle in it may still be readable then.
func TestTTLNeedleCannotOutliveVolume(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(c *Config) { c.Now = clock.now })
	ttl, _ := needle.ParseTTL("5m")
	long, _ := needle.ParseTTL("1h")
	short, _ := needle.ParseTTL("3m")
	e.allocate(1, "", ttl)
	e.allocate(2, "", needle.TTL{})
	put := func(vid uint32, key uint64, ttl needle.TTL, lm time.Time) error {
		n := &needle.Needle{ID: key, Cookie: cookieFor(key), Data: blob(key, 10), TTL: ttl}
		if !lm.IsZero() {
			n.LastModified = uint64(lm.Unix())
		}
		_, err := e.store.Write(vid, n)
		return err
	}
	now := clock.now()
	if err := put(1, 1, long, time.Time{}); !errors.Is(err, ErrBadNeedle) || !strings.Contains(err.Error(), "TTL 1h is longer than the volume's TTL 5m") {
		t.Fatalf("needle TTL longer than the volume's: %v", err)
	}
	if err := put(1, 2, needle.TTL{}, now.Add(2*time.Minute)); !errors.Is(err, ErrBadNeedle) || !strings.Contains(err.Error(), "ahead of the server clock") {
		t.Fatalf("LastModified 2 minutes ahead: %v", err)
	}
	if err := put(1, 3, ttl, time.Time{}); err != nil {
		t.Fatalf("needle TTL equal to the volume's: %v", err)
	}
	if err := put(1, 4, short, now.Add(50*time.Second)); err != nil {
		t.Fatalf("shorter TTL, LastModified 50s ahead: %v", err)
	}
	if err := put(1, 5, needle.TTL{}, now.Add(30*time.Second)); err != nil {
		t.Fatalf("LastModified 30s ahead: %v", err)
	}
	// A volume without TTL is never dropped: anything goes.
	if err := put(2, 1, long, now.Add(time.Hour)); err != nil {
		t.Fatalf("non-TTL volume: %v", err)
	}
	e.mustNotFind(1, 1)
	e.mustNotFind(1, 2)

	clock.advance(5*time.Minute - time.Second)
	e.mustRead(1, 3, 10)
	e.mustRead(1, 5, 10)
	if got := e.store.DropExpired(); len(got) != 0 {
		t.Fatalf("DropExpired too early: %v", got)
	}
	// The volume's drop time: key 5 counts its 5m from LastModified, 30s
	// later, but must not outlive the volume.
	clock.advance(time.Second)
	for k := uint64(3); k <= 5; k++ {
		e.mustNotFind(1, k)
	}
	if got := e.store.DropExpired(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("DropExpired = %v, want [1]", got)
	}
	e.mustRead(2, 1, 10)
}

// TestVolumeFullStatus: VolumeStatus.Full is set by a write refused for
// size and by a size at the limit, survives a reload in the second case, is
// cleared by a compaction, and each flip signals Changed.
func TestVolumeFullStatus(t *testing.T) {
	const limit = 64 << 10
	e := newEnv(t, func(c *Config) { c.VolumeSizeLimit = limit })
	e.allocate(1, "", needle.TTL{})
	if st, _ := e.store.VolumeStatus(1); st.Full {
		t.Fatal("empty volume reported full")
	}
	drainChanged(e.store)
	var k uint64
	for k = 1; ; k++ {
		_, err := e.store.Write(1, &needle.Needle{ID: k, Cookie: cookieFor(k), Data: blob(k, 1000)})
		if errors.Is(err, ErrVolumeFull) {
			break
		}
		if err != nil || k > 1000 {
			t.Fatalf("filling the volume: %v after %d needles", err, k)
		}
		if st, _ := e.store.VolumeStatus(1); st.Full {
			t.Fatalf("Full after %d accepted writes, size %d", k, st.Size)
		}
	}
	waitChanged(t, e.store)
	st, _ := e.store.VolumeStatus(1)
	if !st.Full || st.Size >= limit {
		t.Fatalf("after a write refused for size: %+v", st)
	}
	if all := e.store.Status(); len(all) != 1 || !all[0].Full {
		t.Fatalf("Status: %+v", all)
	}
	// Deletions may take the volume past its limit.
	for j := uint64(1); st.Size < limit; j++ {
		if j >= k {
			t.Fatalf("deleted everything, size still %d", st.Size)
		}
		if _, err := e.store.Delete(1, j, cookieFor(j)); err != nil {
			t.Fatal(err)
		}
		st, _ = e.store.VolumeStatus(1)
	}
	e.reopen()
	if st, _ := e.store.VolumeStatus(1); !st.Full {
		t.Fatalf("volume at its limit not full after reload: %+v", st)
	}
	drainChanged(e.store)
	if _, err := e.store.Vacuum(1); err != nil {
		t.Fatal(err)
	}
	waitChanged(t, e.store)
	if st, _ := e.store.VolumeStatus(1); st.Full || st.Size >= limit {
		t.Fatalf("after compaction: %+v", st)
	}
	e.write(1, k, 1000)
}
