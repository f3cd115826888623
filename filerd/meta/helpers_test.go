package meta

import (
	"context"
	"errors"
	"sort"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

func newNS(t testing.TB) (*Namespace, context.Context) {
	t.Helper()
	return newNSOn(t, newStore(t))
}

func newNSOn(t testing.TB, st store.Store) (*Namespace, context.Context) {
	t.Helper()
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Signature = 7
	ns, err := Open(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ns, ctx
}

func mustErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mkfile(t testing.TB, ns *Namespace, dir Inode, name string) Attr {
	t.Helper()
	a, err := ns.Create(context.Background(), dir, name, CreateRequest{Mode: 0o644, Exclusive: true})
	ok(t, err)
	return a
}

func mkdir(t testing.TB, ns *Namespace, dir Inode, name string) Attr {
	t.Helper()
	a, err := ns.Mkdir(context.Background(), dir, name, 0o755, 0, 0)
	ok(t, err)
	return a
}

// checkInvariants fails the test unless Check finds the whole store
// consistent (see CheckStore for the invariants).
func checkInvariants(t testing.TB, ns *Namespace) {
	t.Helper()
	r, err := ns.Check(context.Background())
	if err != nil {
		t.Fatalf("invariants: %v", err)
	}
	if !r.Clean() {
		t.Fatalf("invariants: %s", r.String())
	}
}

// allEvents reads the whole log.
func allEvents(t testing.TB, ns *Namespace) []Event {
	t.Helper()
	var evs []Event
	ok(t, ns.ReadLog(context.Background(), 0, 1<<62, func(e Event) bool {
		evs = append(evs, e)
		return true
	}))
	return evs
}

func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}

// wantNoHandles fails if ns holds any handle after what.
func wantNoHandles(t *testing.T, ns *Namespace, what string) {
	t.Helper()
	ns.openMu.Lock()
	held := len(ns.opens)
	ns.openMu.Unlock()
	if held != 0 {
		t.Fatalf("%d handles held after %s", held, what)
	}
}
