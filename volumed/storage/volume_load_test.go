package storage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

func appendToFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestTornTailsAreCut(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 20; k++ {
		e.write(1, k, 200)
	}
	e.store.Close()
	dat, idx := filepath.Join(e.dir, "1.dat"), filepath.Join(e.dir, "1.idx")
	datSize, idxSize := fileSize(t, dat), fileSize(t, idx)

	// A record torn in the middle (as by a crash during the .dat write),
	// and half an .idx entry.
	torn := (&needle.Needle{ID: 21, Cookie: cookieFor(21), Data: blob(21, 200)}).AppendRecord(nil)
	appendToFile(t, dat, torn[:len(torn)/2])
	appendToFile(t, idx, []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 2})
	e.open()
	if got := fileSize(t, dat); got != datSize {
		t.Fatalf(".dat is %d bytes after load, want %d", got, datSize)
	}
	if got := fileSize(t, idx); got != idxSize {
		t.Fatalf(".idx is %d bytes after load, want %d", got, idxSize)
	}
	if !e.logs.contains("cutting torn data tail") || !e.logs.contains("cutting torn index tail") {
		t.Fatalf("cuts not logged:\n%s", e.logs)
	}
	e.mustNotFind(1, 21)
	for k := uint64(1); k <= 20; k++ {
		e.mustRead(1, k, 200)
	}
	// Writes go on at the repaired end.
	e.write(1, 21, 300)
	e.reopen()
	e.mustRead(1, 21, 300)
}

func TestGarbageTailIsCut(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	e.write(1, 1, 100)
	e.store.Close()
	dat := filepath.Join(e.dir, "1.dat")
	datSize := fileSize(t, dat)
	garbage := blob(99, 4096)
	garbage[12], garbage[13], garbage[14], garbage[15] = 0, 0, 1, 0 // a plausible 256-byte size
	appendToFile(t, dat, garbage)
	e.open()
	if got := fileSize(t, dat); got != datSize {
		t.Fatalf(".dat is %d bytes after load, want %d", got, datSize)
	}
	e.mustRead(1, 1, 100)
	if st, _ := e.store.VolumeStatus(1); st.FileCount != 1 {
		t.Fatalf("garbage indexed: %+v", st)
	}
}

// A crash after the .dat write but before the .idx write leaves complete
// records that no index entry covers: load indexes them.
func TestUnindexedCompleteRecordsAreIndexed(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 10; k++ {
		e.write(1, k, 100)
	}
	if _, err := e.store.Delete(1, 4, cookieFor(4)); err != nil {
		t.Fatal(err)
	}
	e.store.Close()
	idx := filepath.Join(e.dir, "1.idx")
	// Drop the last 4 index entries (needles 8, 9, 10 and the delete of 4).
	if err := os.Truncate(idx, fileSize(t, idx)-4*needle.IdxEntrySize); err != nil {
		t.Fatal(err)
	}
	e.open()
	if !e.logs.contains("indexed records found past the index end") {
		t.Fatalf("recovery not logged:\n%s", e.logs)
	}
	for k := uint64(1); k <= 10; k++ {
		if k == 4 {
			e.mustNotFind(1, k)
			continue
		}
		e.mustRead(1, k, 100)
	}
	if got := fileSize(t, idx); got != 11*needle.IdxEntrySize {
		t.Fatalf(".idx is %d bytes, want 11 entries", got)
	}
	// A missing .idx is rebuilt whole.
	e.store.Close()
	os.Remove(idx)
	e.open()
	for k := uint64(1); k <= 10; k++ {
		if k != 4 {
			e.mustRead(1, k, 100)
		}
	}
	e.mustNotFind(1, 4)
}

// An .idx entry whose record is not in .dat (the .dat was cut behind the
// volume's back) is dropped rather than served.
func TestIndexEntryPastDataIsDropped(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 5; k++ {
		e.write(1, k, 100)
	}
	e.store.Close()
	dat := filepath.Join(e.dir, "1.dat")
	if err := os.Truncate(dat, fileSize(t, dat)-10); err != nil {
		t.Fatal(err)
	}
	e.open()
	if !e.logs.contains("dropping index entry") {
		t.Fatalf("drop not logged:\n%s", e.logs)
	}
	e.mustNotFind(1, 5)
	for k := uint64(1); k <= 4; k++ {
		e.mustRead(1, k, 100)
	}
	if got := fileSize(t, dat); got != 8+4*needle.RecordSize((&needle.Needle{Data: make([]byte, 100)}).BodySize()) {
		t.Fatalf(".dat is %d bytes after load", got)
	}
}

func TestCorruptByteIsErrCorrupt(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 3; k++ {
		e.write(1, k, 1000)
	}
	v := e.vol(1)
	ent, _ := v.nm.get(2)
	e.store.Close()
	dat := filepath.Join(e.dir, "1.dat")
	f, err := os.OpenFile(dat, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	pos := ent.datOffset() + needle.HeaderSize + 500
	var b [1]byte
	f.ReadAt(b[:], pos)
	b[0] ^= 0x40
	f.WriteAt(b[:], pos)
	f.Close()

	e.open()
	n, err := e.store.Read(1, 2, cookieFor(2))
	if !errors.Is(err, ErrCorrupt) || n != nil {
		t.Fatalf("Read of a corrupt needle = %v, %v; want nil, ErrCorrupt", n, err)
	}
	if !e.logs.contains("corrupt needle") {
		t.Fatalf("corruption not logged:\n%s", e.logs)
	}
	e.mustRead(1, 1, 1000)
	e.mustRead(1, 3, 1000)
	// A corrupt needle can be deleted.
	if _, err := e.store.Delete(1, 3, cookieFor(3)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// Rewriting a corrupt needle with the same content repairs it (it is
	// never taken for "unchanged").
	w, err := e.store.Write(1, &needle.Needle{ID: 2, Cookie: cookieFor(2), Data: blob(2, 1000)})
	if err != nil || w.Unchanged {
		t.Fatalf("rewrite of a corrupt needle: %+v, %v", w, err)
	}
	e.mustRead(1, 2, 1000)
	if _, err := e.store.Write(1, &needle.Needle{ID: 2, Cookie: 5, Data: blob(2, 1000)}); !errors.Is(err, ErrCookieMismatch) {
		t.Fatalf("rewrite with another cookie: %v", err)
	}
}

func TestBadSuperblockSkipsVolume(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	e.allocate(2, "", needle.TTL{})
	e.store.Close()
	os.WriteFile(filepath.Join(e.dir, "1.dat"), []byte{9, 9, 9}, 0o644)
	e.open()
	if e.hasVolume(1) || !e.hasVolume(2) {
		t.Fatal("bad volume loaded or good one skipped")
	}
	if !e.logs.contains("cannot load volume") {
		t.Fatalf("not logged:\n%s", e.logs)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "1.dat")); err != nil {
		t.Fatal("bad volume's files were touched")
	}
	if err := e.store.AllocateVolume(1, "", needle.ReplicaPlacement{}, needle.TTL{}, 0); !errors.Is(err, ErrVolumeExists) {
		t.Fatalf("allocate over the files of an unloadable volume: %v", err)
	}
}

func TestCorruptNeedleSurvivesVacuumAsCorrupt(t *testing.T) {
	e := newEnv(t, nil)
	e.allocate(1, "", needle.TTL{})
	for k := uint64(1); k <= 4; k++ {
		e.write(1, k, 1000)
	}
	ent, _ := e.vol(1).nm.get(2)
	e.store.Close()
	f, err := os.OpenFile(filepath.Join(e.dir, "1.dat"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0xfe}, ent.datOffset()+needle.HeaderSize+10)
	f.Close()
	e.open()
	if _, err := e.store.Delete(1, 1, cookieFor(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Vacuum(1); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := e.store.Read(1, 2, cookieFor(2)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("corrupt needle after vacuum: %v, want ErrCorrupt", err)
		}
		e.mustNotFind(1, 1)
		e.mustRead(1, 3, 1000)
		e.mustRead(1, 4, 1000)
		e.reopen()
	}
	if !e.logs.contains("copying a corrupt needle as is") {
		t.Fatalf("not logged:\n%s", e.logs)
	}
}
