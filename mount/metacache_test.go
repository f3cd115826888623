package mount

import (
	"testing"
	"time"
)

func liveCache(t *testing.T, ttl time.Duration) *metaCache {
	t.Helper()
	c := newMetaCache(ttl)
	c.setLive(true)
	return c
}

func TestMetaCacheAttrsOrderedByGeneration(t *testing.T) {
	c := liveCache(t, time.Minute)
	if !c.putAttr(Attr{Ino: 5, Size: 1, Generation: 2}) {
		t.Fatal("first answer for an inode is not reported newer")
	}
	if c.putAttr(Attr{Ino: 5, Size: 9, Generation: 1}) {
		t.Fatal("an older generation was reported newer")
	}
	if a, ok := c.attr(5); !ok || a.Size != 1 {
		t.Fatalf("older answer replaced newer: %+v %v", a, ok)
	}
	if c.putAttr(Attr{Ino: 5, Size: 1, Generation: 2}) {
		t.Fatal("the same generation again was reported newer")
	}
	if !c.putAttr(Attr{Ino: 5, Size: 3, Generation: 3}) {
		t.Fatal("a newer generation was not reported newer")
	}
	if a, _ := c.attr(5); a.Size != 3 {
		t.Fatalf("size %d, want 3", a.Size)
	}
}

func TestMetaCacheInvalidateRefusesOlder(t *testing.T) {
	c := liveCache(t, time.Minute)
	c.putAttr(Attr{Ino: 7, Generation: 4})
	c.invalidateChanged(7)
	if _, ok := c.attr(7); ok {
		t.Fatal("invalidated attributes still answered")
	}
	c.putAttr(Attr{Ino: 7, Generation: 4}) // a late answer from before the change
	if _, ok := c.attr(7); ok {
		t.Fatal("an answer as old as the invalidated one was accepted")
	}
	c.putAttr(Attr{Ino: 7, Generation: 5})
	if _, ok := c.attr(7); !ok {
		t.Fatal("the newer answer was refused")
	}
	c.invalidate(7, goneGen)
	c.putAttr(Attr{Ino: 7, Generation: 6})
	if _, ok := c.attr(7); ok {
		t.Fatal("a removed inode came back")
	}
}

func TestMetaCacheNotTrustedWhileWatcherDown(t *testing.T) {
	c := liveCache(t, time.Minute)
	c.putAttr(Attr{Ino: 3, Generation: 1})
	c.newDir(2)
	c.setLive(false)
	if _, ok := c.attr(3); ok {
		t.Fatal("attributes answered while the change log was not followed")
	}
	if _, known := c.lookup(2, "x"); known {
		t.Fatal("listing answered while the change log was not followed")
	}
	c.setLive(true)
	if _, ok := c.attr(3); !ok {
		t.Fatal("attributes not answered once live again")
	}
}

func TestMetaCacheTTL(t *testing.T) {
	c := liveCache(t, 20*time.Millisecond)
	c.putAttr(Attr{Ino: 3, Generation: 1})
	c.newDir(2)
	time.Sleep(40 * time.Millisecond)
	if _, ok := c.attr(3); ok {
		t.Fatal("attributes older than the TTL answered")
	}
	if _, known := c.lookup(2, "x"); known {
		t.Fatal("a listing older than the TTL answered a missing name")
	}
}

func TestMetaCacheListings(t *testing.T) {
	c := liveCache(t, time.Minute)
	c.newDir(10)
	if ino, known := c.lookup(10, "a"); !known || ino != 0 {
		t.Fatalf("a new directory is empty: got %d %v", ino, known)
	}
	c.named(10, "a", 11)
	if ino, known := c.lookup(10, "a"); !known || ino != 11 {
		t.Fatalf("named: got %d %v", ino, known)
	}
	c.renamed(10, "a", 10, "b", false)
	if ino, known := c.lookup(10, "a"); !known || ino != 0 {
		t.Fatalf("old name after rename: %d %v", ino, known)
	}
	if ino, _ := c.lookup(10, "b"); ino != 11 {
		t.Fatalf("new name after rename: %d", ino)
	}
	// A rename of a name the cache does not know leaves the target
	// directory incomplete: missing names are asked again.
	c.newDir(20)
	c.renamed(30, "unknown", 20, "c", false)
	if _, known := c.lookup(20, "zzz"); known {
		t.Fatal("directory still complete after an unknown name moved in")
	}
	c.named(10, "x", 12)
	c.named(10, "y", 13)
	c.renamed(10, "x", 10, "y", true)
	if x, _ := c.lookup(10, "x"); x != 13 {
		t.Fatalf("exchange: x is %d, want 13", x)
	}
	if y, _ := c.lookup(10, "y"); y != 12 {
		t.Fatalf("exchange: y is %d, want 12", y)
	}
}

func TestMetaCacheLookupRacingChange(t *testing.T) {
	c := liveCache(t, time.Minute)
	since := c.version()
	c.named(1, "f", 0) // the directory changed while the lookup was in flight
	c.learnName(1, "f", 99, since)
	if ino, _ := c.lookup(1, "f"); ino == 99 {
		t.Fatal("a lookup answer older than a change of the directory was kept")
	}
	since = c.version()
	c.learnName(1, "f", 99, since)
	if ino, known := c.lookup(1, "f"); !known || ino != 99 {
		t.Fatalf("a current lookup answer was not kept: %d %v", ino, known)
	}
	since = c.version()
	c.forgetDir(1)
	c.setListing(1, map[string]uint64{"g": 5}, since)
	if _, known := c.lookup(1, "zzz"); known {
		t.Fatal("a listing read before the directory was forgotten was installed")
	}
}

func TestMetaCacheDisabled(t *testing.T) {
	c := newMetaCache(0)
	c.setLive(true)
	c.putAttr(Attr{Ino: 1, Generation: 1})
	c.newDir(1)
	if _, ok := c.attr(1); ok {
		t.Fatal("a disabled cache answered")
	}
	if _, known := c.lookup(1, "x"); known {
		t.Fatal("a disabled cache answered a lookup")
	}
}

func TestMetaCacheBusyDirectoryAsksFiler(t *testing.T) {
	c := liveCache(t, time.Minute)
	c.newDir(4)
	c.named(4, "a", 8)
	done := c.changing(4, 4)
	if _, known := c.lookup(4, "a"); known {
		t.Fatal("a directory with a change in flight answered from the cache")
	}
	done()
	if ino, known := c.lookup(4, "a"); !known || ino != 8 {
		t.Fatalf("after the change: %d %v", ino, known)
	}
}
