package locks

import (
	"errors"
	"slices"
	"testing"
)

func TestRangeFromLen(t *testing.T) {
	cases := []struct {
		start, length int64
		want          Range
		bad           bool
	}{
		{0, 0, Range{0, MaxOffset}, false},
		{10, 0, Range{10, MaxOffset}, false},
		{10, 1, Range{10, 10}, false},
		{10, 5, Range{10, 14}, false},
		{10, -5, Range{5, 9}, false},
		{10, -10, Range{0, 9}, false},
		{10, -11, Range{}, true},
		{-1, 5, Range{}, true},
		{-1, 0, Range{}, true},
		{MaxOffset, 1, Range{MaxOffset, MaxOffset}, false},
		{MaxOffset, 2, Range{}, true},
		{1, MaxOffset, Range{1, MaxOffset}, false},
		{2, MaxOffset, Range{}, true},
		{0, MaxOffset, Range{0, MaxOffset - 1}, false},
		{0, -1, Range{}, true},
		{5, -9223372036854775808, Range{}, true},
	}
	for _, c := range cases {
		got, err := RangeFromLen(c.start, c.length)
		if c.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("RangeFromLen(%d, %d) = %v, %v; want ErrInvalid", c.start, c.length, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("RangeFromLen(%d, %d) = %v, %v; want %v", c.start, c.length, got, err, c.want)
		}
	}
}

func TestRangeValidate(t *testing.T) {
	for _, r := range []Range{{-1, 5}, {5, 4}, {-5, -1}} {
		if _, err := NewRange(r.Start, r.End); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewRange(%d, %d) = %v, want ErrInvalid", r.Start, r.End, err)
		}
	}
	for _, r := range []Range{{0, 0}, {0, MaxOffset}, {MaxOffset, MaxOffset}} {
		if _, err := NewRange(r.Start, r.End); err != nil {
			t.Errorf("NewRange(%d, %d) = %v", r.Start, r.End, err)
		}
	}
	if !(Range{0, MaxOffset}).Overlaps(Range{MaxOffset, MaxOffset}) || (Range{0, 4}).Overlaps(Range{5, 9}) {
		t.Error("Overlaps wrong")
	}
	if (Range{0, MaxOffset}).adjacent(Range{0, 0}) || !(Range{0, 4}).adjacent(Range{5, 9}) || !(Range{5, 9}).adjacent(Range{0, 4}) {
		t.Error("adjacent wrong")
	}
}

func fl(typ Type, start, end int64, o Owner) Lock {
	return Lock{Kind: Fcntl, Type: typ, Range: Range{start, end}, Owner: o, Pid: uint32(o.ID)}
}

func mustApply(t *testing.T, tab *Table, l Lock) {
	t.Helper()
	if c, err := tab.Apply(l); err != nil {
		t.Fatalf("Apply(%s) = %v (conflict %s)", l, err, c)
	}
}

func wantLocks(t *testing.T, tab *Table, want ...Lock) {
	t.Helper()
	if got := tab.Locks(); !slices.Equal(got, want) {
		t.Fatalf("locks\n got %v\nwant %v", got, want)
	}
}

func TestTableSplitMergeUpgrade(t *testing.T) {
	a, b := Owner{"s", 1}, Owner{"s", 2}
	var tab Table

	mustApply(t, &tab, fl(Shared, 0, MaxOffset, a))
	mustApply(t, &tab, fl(Unlock, 10, 19, a)) // split
	wantLocks(t, &tab, fl(Shared, 0, 9, a), fl(Shared, 20, MaxOffset, a))

	mustApply(t, &tab, fl(Exclusive, 5, 24, a)) // upgrade over the hole and both sides
	wantLocks(t, &tab, fl(Shared, 0, 4, a), fl(Exclusive, 5, 24, a), fl(Shared, 25, MaxOffset, a))

	mustApply(t, &tab, fl(Shared, 5, 24, a)) // downgrade: merges into one record
	wantLocks(t, &tab, fl(Shared, 0, MaxOffset, a))

	// b may share, not take exclusively; GetLk reports a's lock with its pid.
	mustApply(t, &tab, fl(Shared, 100, 199, b))
	if c, err := tab.Apply(fl(Exclusive, 150, 150, b)); !errors.Is(err, ErrWouldBlock) || c != fl(Shared, 0, MaxOffset, a) {
		t.Fatalf("conflicting Apply = %s, %v", c, err)
	}
	if c, ok := tab.Test(fl(Exclusive, 1000, 1000, b)); !ok || c.Owner != a || c.Pid != 1 || c.Type != Shared {
		t.Fatalf("Test = %s, %v", c, ok)
	}
	// An owner's own locks never conflict with it.
	if c, ok := tab.Test(fl(Exclusive, 0, MaxOffset, a)); ok && c.Owner == a {
		t.Fatalf("owner conflicts with itself: %s", c)
	}
	// Adjacent same-type ranges merge; different types do not.
	mustApply(t, &tab, fl(Shared, 200, 299, b))
	mustApply(t, &tab, fl(Shared, 50, 99, b))
	wantLocks(t, &tab, fl(Shared, 0, MaxOffset, a), fl(Shared, 50, 299, b))

	// Unlocking what is not held is a no-op; so is an unlock by another owner.
	mustApply(t, &tab, fl(Unlock, 0, MaxOffset, Owner{"other", 9}))
	mustApply(t, &tab, fl(Unlock, 400, 500, b))
	wantLocks(t, &tab, fl(Shared, 0, MaxOffset, a), fl(Shared, 50, 299, b))

	if n := tab.ReleaseOwner(Fcntl, a); n != 1 {
		t.Fatalf("ReleaseOwner removed %d", n)
	}
	mustApply(t, &tab, fl(Exclusive, 0, 49, b))
	wantLocks(t, &tab, fl(Exclusive, 0, 49, b), fl(Shared, 50, 299, b))
	if n := tab.ReleaseSession("s"); n != 2 || tab.Len() != 0 {
		t.Fatalf("ReleaseSession removed %d, %d left", n, tab.Len())
	}
}

func TestTableFlockSeparateFromFcntl(t *testing.T) {
	a, b := Owner{"s", 1}, Owner{"s", 2}
	var tab Table
	mustApply(t, &tab, fl(Exclusive, 0, MaxOffset, a))
	// b's flock does not conflict with a's fcntl lock, and vice versa.
	fb := Lock{Kind: Flock, Type: Exclusive, Owner: b, Range: Range{3, 4}}
	mustApply(t, &tab, fb)
	if _, ok := tab.Test(fl(Exclusive, 0, 0, b)); !ok {
		t.Fatal("fcntl conflict lost")
	}
	if _, ok := tab.Test(Lock{Kind: Flock, Type: Shared, Owner: a}); !ok {
		t.Fatal("flock conflict lost")
	}
	// Conversion in place: b downgrades, a can then share.
	mustApply(t, &tab, Lock{Kind: Flock, Type: Shared, Owner: b})
	mustApply(t, &tab, Lock{Kind: Flock, Type: Shared, Owner: a})
	if _, err := tab.Apply(Lock{Kind: Flock, Type: Exclusive, Owner: b}); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("upgrade with another sharer: %v", err)
	}
	wf := func(typ Type, o Owner) Lock { return Lock{Kind: Flock, Type: typ, Range: WholeFile(), Owner: o} }
	wantLocks(t, &tab, fl(Exclusive, 0, MaxOffset, a), wf(Shared, a), wf(Shared, b))
	mustApply(t, &tab, Lock{Kind: Flock, Type: Unlock, Owner: a})
	mustApply(t, &tab, Lock{Kind: Flock, Type: Exclusive, Owner: b})
	wantLocks(t, &tab, fl(Exclusive, 0, MaxOffset, a), wf(Exclusive, b))
}

func TestTableInvalid(t *testing.T) {
	var tab Table
	o := Owner{"s", 1}
	for _, l := range []Lock{
		fl(Shared, -1, 5, o),
		fl(Shared, 5, 4, o),
		{Kind: Fcntl, Type: 7, Range: Range{0, 1}, Owner: o},
		{Kind: 9, Type: Shared, Range: Range{0, 1}, Owner: o},
		fl(Shared, 0, 1, Owner{"", 1}),
	} {
		if _, err := tab.Apply(l); !errors.Is(err, ErrInvalid) {
			t.Errorf("Apply(%s) = %v, want ErrInvalid", l, err)
		}
	}
	if tab.Len() != 0 {
		t.Fatal("invalid request left a lock")
	}
}
