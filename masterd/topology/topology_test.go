package topology

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kelpfs/kelp/needle"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func rp(t *testing.T, s string) needle.ReplicaPlacement {
	t.Helper()
	r, err := needle.ParseReplicaPlacement(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func vol(id uint32, repl needle.ReplicaPlacement, size uint64) VolumeInfo {
	return VolumeInfo{ID: id, Replication: repl, Size: size}
}

func report(url, dc, rack string, max int, vols ...VolumeInfo) NodeReport {
	return NodeReport{URL: url, GRPCAddress: url + "0", DataCenter: dc, Rack: rack, MaxVolumeCount: max, Volumes: vols}
}

func mustUpdate(t *testing.T, tp *Topology, r NodeReport, now time.Time) Change {
	t.Helper()
	ch, err := tp.UpdateNode(r, now)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func writable(t *testing.T, tp *Topology, key LayoutKey) []uint32 {
	t.Helper()
	for _, l := range tp.Snapshot().Layouts {
		if l.Key == key {
			return l.Writable
		}
	}
	return nil
}

func TestUpdateNodeChanges(t *testing.T) {
	tp := New(Config{VolumeSizeLimit: 100})
	r000 := rp(t, "000")
	ch := mustUpdate(t, tp, report("a:1", "", "", 5, vol(1, r000, 0), vol(2, r000, 0)), t0)
	if !ch.Joined || ch.Moved || !reflect.DeepEqual(ch.Added, []uint32{1, 2}) || len(ch.Removed) != 0 {
		t.Fatalf("first report: %+v", ch)
	}
	n, ok := tp.Node("a:1")
	if !ok || n.DataCenter != DefaultDataCenter || n.Rack != DefaultRack || n.PublicURL != "a:1" || n.FreeSlots != 3 {
		t.Fatalf("node: %+v", n)
	}
	ch = mustUpdate(t, tp, report("a:1", "", "", 5, vol(2, r000, 0), vol(3, r000, 0)), t0.Add(time.Second))
	if ch.Joined || ch.Moved || !reflect.DeepEqual(ch.Added, []uint32{3}) || !reflect.DeepEqual(ch.Removed, []uint32{1}) {
		t.Fatalf("second report: %+v", ch)
	}
	if _, err := tp.Lookup(1); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("lookup of dropped volume: %v", err)
	}
	ch = mustUpdate(t, tp, report("a:1", "dc2", "r9", 5, vol(2, r000, 0), vol(3, r000, 0)), t0.Add(2*time.Second))
	if !ch.Moved {
		t.Fatalf("move not reported: %+v", ch)
	}
	s := tp.Snapshot()
	if len(s.DataCenters) != 1 || s.DataCenters[0].ID != "dc2" || s.DataCenters[0].Racks[0].ID != "r9" {
		t.Fatalf("old data center not cleaned up: %+v", s.DataCenters)
	}
	if s.MaxVolumes != 5 || s.FreeSlots != 3 {
		t.Fatalf("slots: max %d free %d", s.MaxVolumes, s.FreeSlots)
	}
	if _, err := tp.UpdateNode(NodeReport{}, t0); !errors.Is(err, ErrBadReport) {
		t.Fatalf("empty url: %v", err)
	}
	if _, err := tp.UpdateNode(NodeReport{URL: "x:1", MaxVolumeCount: -1}, t0); !errors.Is(err, ErrBadReport) {
		t.Fatalf("negative max: %v", err)
	}
}

func TestWritability(t *testing.T) {
	tp := New(Config{VolumeSizeLimit: 100})
	r001 := rp(t, "001")
	key := LayoutKey{Replication: r001}
	mustUpdate(t, tp, report("a:1", "dc1", "r1", 5, vol(1, r001, 10), vol(2, r001, 10)), t0)
	if got := writable(t, tp, key); len(got) != 0 {
		t.Fatalf("one of two replicas present, writable %v", got)
	}
	mustUpdate(t, tp, report("b:1", "dc1", "r1", 5, vol(1, r001, 10), vol(2, r001, 10)), t0)
	if got := writable(t, tp, key); !reflect.DeepEqual(got, []uint32{1, 2}) {
		t.Fatalf("writable %v", got)
	}
	// Volume 1 full on one replica, volume 2 read-only on one replica.
	ro := vol(2, r001, 10)
	ro.ReadOnly = true
	mustUpdate(t, tp, report("b:1", "dc1", "r1", 5, vol(1, r001, 100), ro), t0)
	if got := writable(t, tp, key); len(got) != 0 {
		t.Fatalf("full and read-only volumes writable: %v", got)
	}
	if _, err := tp.PickForWrite(key, "", ""); !errors.Is(err, ErrNoWritableVolume) {
		t.Fatalf("pick: %v", err)
	}
	mustUpdate(t, tp, report("b:1", "dc1", "r1", 5, vol(1, r001, 99), vol(2, r001, 10)), t0)
	if got := writable(t, tp, key); !reflect.DeepEqual(got, []uint32{1, 2}) {
		t.Fatalf("writable after recovery %v", got)
	}
	// A volume server that reports a volume full (its own, lower limit)
	// takes it out of assignment below the master's limit.
	full := vol(1, r001, 50)
	full.Full = true
	mustUpdate(t, tp, report("b:1", "dc1", "r1", 5, full, vol(2, r001, 10)), t0)
	if got := writable(t, tp, key); !reflect.DeepEqual(got, []uint32{2}) {
		t.Fatalf("writable with volume 1 reported full: %v", got)
	}
	mustUpdate(t, tp, report("b:1", "dc1", "r1", 5, vol(1, r001, 99), vol(2, r001, 10)), t0)
	// A server drops: volumes unwritable, still readable from the other.
	lost, ok := tp.RemoveNode("a:1")
	if !ok || !reflect.DeepEqual(lost, []uint32{1, 2}) {
		t.Fatalf("remove: %v %v", lost, ok)
	}
	if got := writable(t, tp, key); len(got) != 0 {
		t.Fatalf("writable after node loss: %v", got)
	}
	locs, err := tp.Lookup(1)
	if err != nil || len(locs) != 1 || locs[0].URL != "b:1" || locs[0].GRPCAddress != "b:10" {
		t.Fatalf("lookup after node loss: %v %v", locs, err)
	}
	if _, ok := tp.RemoveNode("a:1"); ok {
		t.Fatal("second remove reported true")
	}
	tp.RemoveNode("b:1")
	if _, err := tp.Lookup(1); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("lookup with no replica: %v", err)
	}
	if s := tp.Snapshot(); len(s.Layouts) != 0 || len(s.DataCenters) != 0 {
		t.Fatalf("empty topology not empty: %+v", s)
	}
}

func TestPickForWrite(t *testing.T) {
	tp := New(Config{})
	r010 := rp(t, "010")
	key := LayoutKey{Collection: "pics", Replication: r010}
	v := func(id uint32) VolumeInfo { return VolumeInfo{ID: id, Collection: "pics", Replication: r010} }
	mustUpdate(t, tp, report("a:1", "dc1", "r1", 5, v(1), v(2)), t0)
	mustUpdate(t, tp, report("b:1", "dc1", "r2", 5, v(1)), t0)
	mustUpdate(t, tp, report("c:1", "dc2", "r1", 5, v(2)), t0)
	seen := map[uint32]bool{}
	for i := 0; i < 200; i++ {
		w, err := tp.PickForWrite(key, "", "")
		if err != nil {
			t.Fatal(err)
		}
		seen[w.ID] = true
		if len(w.Replicas) != 2 {
			t.Fatalf("replicas %v", w.Replicas)
		}
	}
	if !seen[1] || !seen[2] {
		t.Fatalf("pick not random over writable volumes: %v", seen)
	}
	for i := 0; i < 50; i++ {
		w, err := tp.PickForWrite(key, "dc2", "")
		if err != nil {
			t.Fatal(err)
		}
		if w.ID != 2 || w.Primary.URL != "c:1" {
			t.Fatalf("dc2 pick: %+v", w)
		}
		w, err = tp.PickForWrite(key, "dc1", "r2")
		if err != nil || w.ID != 1 || w.Primary.URL != "b:1" {
			t.Fatalf("dc1/r2 pick: %+v %v", w, err)
		}
	}
	if _, err := tp.PickForWrite(key, "dc3", ""); !errors.Is(err, ErrNoWritableVolume) {
		t.Fatalf("unknown dc: %v", err)
	}
	if _, err := tp.PickForWrite(LayoutKey{Replication: r010}, "", ""); !errors.Is(err, ErrNoWritableVolume) {
		t.Fatalf("other collection: %v", err)
	}
}

func TestExpire(t *testing.T) {
	tp := New(Config{NodeTimeout: 10 * time.Second})
	r000 := rp(t, "000")
	mustUpdate(t, tp, report("a:1", "", "", 5, vol(1, r000, 0)), t0)
	mustUpdate(t, tp, report("b:1", "", "", 5, vol(2, r000, 0)), t0.Add(5*time.Second))
	if gone := tp.Expire(t0.Add(10 * time.Second)); len(gone) != 0 {
		t.Fatalf("expired too early: %v", gone)
	}
	if gone := tp.Expire(t0.Add(11 * time.Second)); !reflect.DeepEqual(gone, []string{"a:1"}) {
		t.Fatalf("expired %v", gone)
	}
	if _, err := tp.Lookup(1); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("volume of expired node: %v", err)
	}
	if _, err := tp.Lookup(2); err != nil {
		t.Fatal(err)
	}
	if gone := New(Config{}).Expire(t0.Add(time.Hour)); gone != nil {
		t.Fatalf("no timeout configured, expired %v", gone)
	}
}

func TestRegisterVolumePendingGrace(t *testing.T) {
	tp := New(Config{PendingGrace: 5 * time.Second})
	r001 := rp(t, "001")
	key := LayoutKey{Replication: r001}
	mustUpdate(t, tp, report("a:1", "", "", 2), t0)
	mustUpdate(t, tp, report("b:1", "", "", 2), t0)
	if err := tp.RegisterVolume(vol(7, r001, 0), []string{"a:1", "b:1"}, t0); err != nil {
		t.Fatal(err)
	}
	if got := writable(t, tp, key); !reflect.DeepEqual(got, []uint32{7}) {
		t.Fatalf("registered volume not writable: %v", got)
	}
	if n, _ := tp.Node("a:1"); n.FreeSlots != 1 {
		t.Fatalf("slot not taken: %+v", n)
	}
	// A stale report (built before the allocation) keeps it within grace.
	ch := mustUpdate(t, tp, report("a:1", "", "", 2), t0.Add(time.Second))
	if len(ch.Removed) != 0 || !reflect.DeepEqual(writable(t, tp, key), []uint32{7}) {
		t.Fatalf("pending volume dropped in grace: %+v", ch)
	}
	// b confirms it: no longer pending there, so b's later omission drops it.
	mustUpdate(t, tp, report("b:1", "", "", 2, vol(7, r001, 0)), t0.Add(time.Second))
	ch = mustUpdate(t, tp, report("b:1", "", "", 2), t0.Add(2*time.Second))
	if !reflect.DeepEqual(ch.Removed, []uint32{7}) {
		t.Fatalf("confirmed volume not dropped: %+v", ch)
	}
	// a never confirms: dropped after grace.
	ch = mustUpdate(t, tp, report("a:1", "", "", 2), t0.Add(6*time.Second))
	if !reflect.DeepEqual(ch.Removed, []uint32{7}) {
		t.Fatalf("pending volume kept after grace: %+v", ch)
	}
	if err := tp.RegisterVolume(vol(8, r001, 0), []string{"a:1", "zz:1"}, t0); !errors.Is(err, ErrNodeNotFound) {
		t.Fatalf("register on unknown node: %v", err)
	}
	if locs, err := tp.Lookup(8); err != nil || len(locs) != 1 {
		t.Fatalf("partial registration: %v %v", locs, err)
	}
}

func TestVolumeChangesLayout(t *testing.T) {
	tp := New(Config{})
	r000 := rp(t, "000")
	mustUpdate(t, tp, report("a:1", "", "", 5, vol(1, r000, 0)), t0)
	moved := vol(1, r000, 0)
	moved.Collection = "c"
	mustUpdate(t, tp, report("a:1", "", "", 5, moved), t0)
	s := tp.Snapshot()
	if len(s.Layouts) != 1 || s.Layouts[0].Key.Collection != "c" || !reflect.DeepEqual(s.Layouts[0].Writable, []uint32{1}) {
		t.Fatalf("layouts %+v", s.Layouts)
	}
	vs, err := tp.Volume(1)
	if err != nil || vs.Key.Collection != "c" || !vs.Writable || len(vs.Infos) != 1 {
		t.Fatalf("volume state %+v %v", vs, err)
	}
	if tp.MaxVolumeID() != 1 {
		t.Fatalf("max volume id %d", tp.MaxVolumeID())
	}
}
