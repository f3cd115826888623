package mount

import (
	"testing"
	"time"
)

// The mount's clock on its own lease: a record is re-asserted only while
// less than the ttl has passed since the last open or renewal was sent.
func TestLockLeaseLapsed(t *testing.T) {
	const ttl = time.Second
	ls := &lockService{session: "s.1", ttl: ttl}
	if ls.leaseLapsed() {
		t.Fatal("lapsed before any session was opened")
	}
	ls.leaseSent = time.Now()
	if ls.leaseLapsed() {
		t.Fatal("lapsed right after the lease was extended")
	}
	ls.leaseSent = time.Now().Add(-2 * ttl)
	if !ls.leaseLapsed() {
		t.Fatal("not lapsed 2 ttl after the last renewal was sent")
	}

	// Renewals move the clock forward for the live session only.
	sent := time.Now()
	ls.renewed("s.1", sent)
	if ls.leaseSent != sent || ls.leaseLapsed() {
		t.Fatalf("after a renewal of the live session: sent %v, lapsed %v", ls.leaseSent, ls.leaseLapsed())
	}
	ls.renewed("s.1", sent.Add(-time.Millisecond))
	if ls.leaseSent != sent {
		t.Fatal("a renewal sent earlier, answered late, moved the clock back")
	}
	ls.renewed("s.0", sent.Add(time.Millisecond))
	if ls.leaseSent != sent {
		t.Fatal("a renewal of a replaced session moved the clock")
	}
}
