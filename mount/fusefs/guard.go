package fusefs

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// replyGuard closes a race the kernel leaves open. An invalidation of an
// inode the kernel does not hold yet is dropped (ENOENT), and so is one
// of a name it has no dentry for; if a LOOKUP answer carrying the old
// state is on its way at that moment, the kernel then caches that state
// for the whole entry and attribute timeouts. The guard notices both
// orders: an answer built before an invalidation of what it names and
// sent after it goes out with zero timeouts, and an invalidation that
// found nothing while an answer naming the same key was just sent is
// repeated until the kernel has the answer in hand.
//
// Keys (inodes, and parent+name pairs) hash into a fixed table, so it
// takes no memory per inode; a collision only costs a spurious zero
// timeout or retry.
type replyGuard struct {
	seed  maphash.Seed
	seq   atomic.Uint64
	inval [guardSlots]atomic.Uint64 // seq of the last invalidation of a key hashing here
	sent  [guardSlots]atomic.Int64  // unix ns of the last answer naming a key hashing here
}

const (
	guardSlots = 4096
	// An answer reaches the kernel within microseconds of being
	// written; retries stop after guardWindow.
	guardWindow = 50 * time.Millisecond
)

func newReplyGuard() *replyGuard { return &replyGuard{seed: maphash.MakeSeed()} }

func inodeKey(ino uint64) uint64 { return ino }

func (g *replyGuard) nameKey(parent uint64, name string) uint64 {
	var h maphash.Hash
	h.SetSeed(g.seed)
	var b [8]byte
	for i := range b {
		b[i] = byte(parent >> (8 * i))
	}
	h.Write(b[:])
	h.WriteString(name)
	return h.Sum64() | 1<<63 // apart from small inode numbers
}

// start is taken before an answer is computed.
func (g *replyGuard) start() uint64 { return g.seq.Load() }

// sending records that an answer computed since start names keys and
// says whether any of them was invalidated meanwhile (then the answer
// must not be cached by the kernel).
func (g *replyGuard) sending(start uint64, keys ...uint64) (stale bool) {
	now := time.Now().UnixNano()
	for _, k := range keys {
		g.sent[k%guardSlots].Store(now)
	}
	for _, k := range keys {
		if g.inval[k%guardSlots].Load() > start {
			stale = true
		}
	}
	return stale
}

// invalidate runs notify for key, repeating it for a short while if it
// found nothing (ok false) while an answer naming key was just sent.
func (g *replyGuard) invalidate(key uint64, notify func() (ok bool)) {
	s := g.seq.Add(1)
	slot := &g.inval[key%guardSlots]
	for {
		old := slot.Load()
		if old >= s || slot.CompareAndSwap(old, s) {
			break
		}
	}
	if notify() {
		return
	}
	deadline := time.Now().Add(guardWindow)
	for time.Since(time.Unix(0, g.sent[key%guardSlots].Load())) < guardWindow && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
		if notify() {
			return
		}
	}
}
