package fusefs

import (
	"testing"
)

func TestReplyGuardAnswerAfterInvalidation(t *testing.T) {
	g := newReplyGuard()
	start := g.start()
	notified := 0
	g.invalidate(inodeKey(42), func() bool { notified++; return true })
	if notified != 1 {
		t.Fatalf("notify ran %d times, want 1", notified)
	}
	if !g.sending(start, inodeKey(42)) {
		t.Fatal("an answer built before an invalidation of its inode was not marked stale")
	}
	if g.sending(g.start(), inodeKey(42)) {
		t.Fatal("an answer built after the invalidation was marked stale")
	}
	if g.sending(start, inodeKey(43), g.nameKey(1, "other")) {
		t.Fatal("an answer about other keys was marked stale")
	}
}

func TestReplyGuardRetriesWhileAnswerInFlight(t *testing.T) {
	g := newReplyGuard()
	key := g.nameKey(1, "f")
	g.sending(g.start(), key)
	calls := 0
	g.invalidate(key, func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("notify ran %d times, want it repeated until the kernel had the entry (3)", calls)
	}
}

func TestReplyGuardNoRetryWithoutRecentAnswer(t *testing.T) {
	g := newReplyGuard()
	calls := 0
	g.invalidate(inodeKey(7), func() bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("notify ran %d times for a key no answer named, want 1", calls)
	}
}

func TestReplyGuardNameKeys(t *testing.T) {
	g := newReplyGuard()
	if g.nameKey(1, "a") == g.nameKey(1, "b") || g.nameKey(1, "a") == g.nameKey(2, "a") {
		t.Fatal("name keys collide for different names")
	}
	if g.nameKey(1, "a") != g.nameKey(1, "a") {
		t.Fatal("name key not stable")
	}
}
