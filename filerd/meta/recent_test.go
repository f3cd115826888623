package meta

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// TestRecentLog checks the recent log against the full list of events it
// stands for. Some commits are held back and land after later ones, as
// parallel transactions do; reads stop below the oldest held back, as
// ReadLog's callers stop at the watermark. Events are evicted and
// trimmed; a read answers exactly, or says it cannot (only when it starts
// before what the log holds).
func TestRecentLog(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	r := recentLog{limit: 32, from: 100}
	var committed, held []int64
	next := int64(100)
	trimmed := int64(0) // events before it are gone from the full list too
	for step := range 5000 {
		switch op := rng.Intn(20); {
		case op < 10: // a timestamp handed out: commit now or later
			next += 1 + int64(rng.Intn(3))
			if rng.Intn(4) == 0 {
				held = append(held, next)
				continue
			}
			committed = append(committed, next)
			r.add(next, []byte(fmt.Sprint(next)))
		case op < 14 && len(held) > 0: // a held commit lands
			i := rng.Intn(len(held))
			ts := held[i]
			held = slices.Delete(held, i, i+1)
			committed = append(committed, ts)
			r.add(ts, []byte(fmt.Sprint(ts)))
		case op < 15:
			trimmed = max(trimmed, next-int64(rng.Intn(40)))
			r.trim(trimmed)
		default:
			wm := next
			for _, ts := range held {
				wm = min(wm, ts-1)
			}
			since := wm - int64(rng.Intn(60))
			until := since + int64(rng.Intn(60))
			until = min(until, wm)
			got, tss, ok := r.events(since, until, 1+rng.Intn(8))
			if !ok {
				if since >= r.from {
					t.Fatalf("step %d: refused (%d, %d] though it holds all after %d", step, since, until, r.from)
				}
				continue
			}
			var want []string
			for _, ts := range slices.Sorted(slices.Values(committed)) {
				if ts > since && ts <= until && ts >= trimmed {
					want = append(want, fmt.Sprint(ts))
				}
			}
			var gs []string
			for i, b := range got {
				if string(b) != fmt.Sprint(tss[i]) {
					t.Fatalf("step %d: event %q under timestamp %d", step, b, tss[i])
				}
				gs = append(gs, string(b))
			}
			if len(gs) < len(want) { // a bounded read: the oldest first
				want = want[:len(gs)]
			}
			if !slices.Equal(gs, want) {
				t.Fatalf("step %d: (%d, %d] read %v, want %v", step, since, until, gs, want)
			}
		}
		if len(r.ts) > r.limit || !slices.IsSorted(r.ts) || len(r.ts) != len(r.enc) {
			t.Fatalf("step %d: %d events kept (limit %d), sorted %v", step, len(r.ts), r.limit, slices.IsSorted(r.ts))
		}
	}
}
