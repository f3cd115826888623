package topology

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

// server is "dc/rack/name/free".
type server struct {
	dc, rack, name string
	free           int
}

func build(t *testing.T, servers ...server) *Topology {
	t.Helper()
	tp := New(Config{})
	for _, s := range servers {
		mustUpdate(t, tp, NodeReport{URL: s.name, DataCenter: s.dc, Rack: s.rack, MaxVolumeCount: s.free}, t0)
	}
	return tp
}

// grid is dcs x racks x nodes servers with one free slot each.
func grid(t *testing.T, dcs, racks, nodes int) *Topology {
	var ss []server
	for d := 1; d <= dcs; d++ {
		for r := 1; r <= racks; r++ {
			for n := 1; n <= nodes; n++ {
				ss = append(ss, server{fmt.Sprintf("dc%d", d), fmt.Sprintf("r%d", r), fmt.Sprintf("dc%d-r%d-n%d:80", d, r, n), 1})
			}
		}
	}
	return build(t, ss...)
}

// checkPlacement verifies locs satisfies rp exactly, locs[0] being the
// first copy.
func checkPlacement(t *testing.T, rp needle.ReplicaPlacement, locs []Location) {
	t.Helper()
	if len(locs) != rp.CopyCount() {
		t.Fatalf("%s: %d locations, want %d: %v", rp, len(locs), rp.CopyCount(), locs)
	}
	urls := map[string]bool{}
	for _, l := range locs {
		if urls[l.URL] {
			t.Fatalf("%s: server %s picked twice: %v", rp, l.URL, locs)
		}
		urls[l.URL] = true
	}
	main := locs[0]
	sameRack, otherRacks, otherDCs := 0, map[string]bool{}, map[string]bool{}
	for _, l := range locs[1:] {
		switch {
		case l.DataCenter != main.DataCenter:
			if otherDCs[l.DataCenter] {
				t.Fatalf("%s: two copies in other data center %s: %v", rp, l.DataCenter, locs)
			}
			otherDCs[l.DataCenter] = true
		case l.Rack != main.Rack:
			if otherRacks[l.Rack] {
				t.Fatalf("%s: two copies on other rack %s: %v", rp, l.Rack, locs)
			}
			otherRacks[l.Rack] = true
		default:
			sameRack++
		}
	}
	if len(otherDCs) != int(rp.DiffDataCenter) || len(otherRacks) != int(rp.DiffRack) || sameRack != int(rp.SameRack) {
		t.Fatalf("%s: got %d other dcs, %d other racks, %d same rack: %v", rp, len(otherDCs), len(otherRacks), sameRack, locs)
	}
}

func TestPlacementSuitable(t *testing.T) {
	cases := []struct {
		repl string
		tp   func(*testing.T) *Topology
	}{
		{"000", func(t *testing.T) *Topology { return build(t, server{"dc1", "r1", "a", 1}) }},
		{"001", func(t *testing.T) *Topology {
			return build(t, server{"dc1", "r1", "a", 1}, server{"dc1", "r1", "b", 1}, server{"dc1", "r2", "c", 1})
		}},
		{"010", func(t *testing.T) *Topology {
			return build(t, server{"dc1", "r1", "a", 1}, server{"dc1", "r1", "b", 1}, server{"dc1", "r2", "c", 1})
		}},
		{"100", func(t *testing.T) *Topology {
			return build(t, server{"dc1", "r1", "a", 1}, server{"dc2", "r1", "b", 1})
		}},
		{"200", func(t *testing.T) *Topology {
			return build(t, server{"dc1", "r1", "a", 1}, server{"dc2", "r1", "b", 1}, server{"dc3", "r1", "c", 1})
		}},
		{"110", func(t *testing.T) *Topology {
			return build(t, server{"dc1", "r1", "a", 1}, server{"dc1", "r2", "b", 1}, server{"dc2", "r1", "c", 1})
		}},
		// The only fitting data center must be found among several.
		{"010", func(t *testing.T) *Topology {
			return build(t, server{"dc1", "r1", "a", 3}, server{"dc2", "r1", "b", 1}, server{"dc2", "r2", "c", 1})
		}},
		{"001", func(t *testing.T) *Topology {
			return build(t, server{"dc1", "r1", "a", 3}, server{"dc1", "r2", "b", 1}, server{"dc1", "r2", "c", 1})
		}},
	}
	for _, c := range cases {
		for _, name := range []string{"minimal", "grid"} {
			t.Run(c.repl+"/"+name, func(t *testing.T) {
				r := rp(t, c.repl)
				tp := grid(t, 3, 3, 3)
				if name == "minimal" {
					tp = c.tp(t)
				}
				for i := 0; i < 100; i++ {
					locs, err := tp.PickNodes(PlacementRequest{Replication: r})
					if err != nil {
						t.Fatal(err)
					}
					checkPlacement(t, r, locs)
				}
			})
		}
	}
}

func TestPlacementRandomised(t *testing.T) {
	tp := grid(t, 3, 3, 3)
	for _, repl := range []string{"000", "001", "010", "100", "200", "110"} {
		r := rp(t, repl)
		firsts, all := map[string]bool{}, map[string]bool{}
		for i := 0; i < 300; i++ {
			locs, err := tp.PickNodes(PlacementRequest{Replication: r})
			if err != nil {
				t.Fatal(err)
			}
			firsts[locs[0].URL] = true
			for _, l := range locs {
				all[l.URL] = true
			}
		}
		// 27 servers; a fair random pick over 300 runs reaches far more
		// than 10 of them (a fixed choice reaches CopyCount).
		if len(firsts) < 10 || len(all) < 10 {
			t.Errorf("%s: picks not spread: %d first copies, %d servers", repl, len(firsts), len(all))
		}
	}
}

func TestPlacementPreferred(t *testing.T) {
	tp := grid(t, 3, 2, 2)
	for i := 0; i < 50; i++ {
		locs, err := tp.PickNodes(PlacementRequest{Replication: rp(t, "110"), DataCenter: "dc2"})
		if err != nil {
			t.Fatal(err)
		}
		checkPlacement(t, rp(t, "110"), locs)
		if locs[0].DataCenter != "dc2" || locs[1].DataCenter != "dc2" {
			t.Fatalf("preferred dc not used: %v", locs)
		}
		locs, err = tp.PickNodes(PlacementRequest{Replication: rp(t, "001"), DataCenter: "dc3", Rack: "r2"})
		if err != nil {
			t.Fatal(err)
		}
		checkPlacement(t, rp(t, "001"), locs)
		if locs[0].DataCenter != "dc3" || locs[0].Rack != "r2" {
			t.Fatalf("preferred rack not used: %v", locs)
		}
	}
}

func TestPlacementInsufficient(t *testing.T) {
	cases := []struct {
		name    string
		repl    string
		dc      string
		rack    string
		servers []server
		want    error
		msg     string
	}{
		{"empty", "000", "", "", nil, ErrNoFreeSlots, "no free volume slots: no volume server has joined"},
		{"all full", "000", "", "", []server{{"dc1", "r1", "a", 0}, {"dc1", "r2", "b", 0}},
			ErrNoFreeSlots, "no free volume slots on any of 2 volume servers"},
		{"001 one per rack", "001", "", "", []server{{"dc1", "r1", "a", 5}, {"dc1", "r2", "b", 5}},
			ErrUnsatisfiable, "replication 001 needs 2 servers with free slots in one rack in data center dc1, found at most 1"},
		{"001 rack mate full", "001", "", "", []server{{"dc1", "r1", "a", 5}, {"dc1", "r1", "b", 0}},
			ErrUnsatisfiable, "replication 001 needs 2 servers with free slots in one rack in data center dc1, found at most 1"},
		{"010 one rack", "010", "", "", []server{{"dc1", "r1", "a", 5}, {"dc1", "r1", "b", 5}},
			ErrUnsatisfiable, "replication 010 needs 2 racks with free slots in data center dc1, found 1"},
		{"010 other rack full", "010", "", "", []server{{"dc1", "r1", "a", 5}, {"dc1", "r2", "b", 0}},
			ErrUnsatisfiable, "replication 010 needs 2 racks with free slots in data center dc1, found 1"},
		{"010 racks split over dcs", "010", "", "", []server{{"dc1", "r1", "a", 5}, {"dc2", "r2", "b", 5}},
			ErrUnsatisfiable, "replication 010 needs 2 racks with free slots in one data center, found at most 1 (in dc1)"},
		{"100 one dc", "100", "", "", []server{{"dc1", "r1", "a", 5}, {"dc1", "r2", "b", 5}},
			ErrUnsatisfiable, "replication 100 needs 2 data centers with free slots, found 1"},
		{"200 two dcs", "200", "", "", []server{{"dc1", "r1", "a", 5}, {"dc2", "r1", "b", 5}, {"dc3", "r1", "c", 0}},
			ErrUnsatisfiable, "replication 200 needs 3 data centers with free slots, found 2"},
		{"110 one rack per dc", "110", "", "", []server{{"dc1", "r1", "a", 5}, {"dc2", "r1", "b", 5}},
			ErrUnsatisfiable, "replication 110 needs 2 racks with free slots in one data center, found at most 1 (in dc1)"},
		{"110 one dc", "110", "", "", []server{{"dc1", "r1", "a", 5}, {"dc1", "r2", "b", 5}},
			ErrUnsatisfiable, "replication 110 needs 2 data centers with free slots, found 1"},
		{"010 preferred dc lacks racks", "010", "dc2", "", []server{{"dc1", "r1", "a", 5}, {"dc1", "r2", "b", 5}, {"dc2", "r1", "c", 5}},
			ErrUnsatisfiable, "replication 010 needs 2 racks with free slots in data center dc2, found 1"},
		{"unknown dc", "000", "dc9", "", []server{{"dc1", "r1", "a", 5}},
			ErrUnsatisfiable, "data center dc9 not found"},
		{"preferred dc full", "000", "dc2", "", []server{{"dc1", "r1", "a", 5}, {"dc2", "r1", "b", 0}},
			ErrNoFreeSlots, "no free volume slots in data center dc2"},
		{"preferred rack small", "001", "dc1", "r2", []server{{"dc1", "r1", "a", 5}, {"dc1", "r1", "b", 5}, {"dc1", "r2", "c", 5}},
			ErrUnsatisfiable, "replication 001 needs 2 servers with free slots in rack r2, found 1"},
		{"preferred rack missing", "000", "dc1", "r7", []server{{"dc1", "r1", "a", 5}},
			ErrUnsatisfiable, "rack r7 has no server with free slots in data center dc1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp := build(t, c.servers...)
			locs, err := tp.PickNodes(PlacementRequest{Replication: rp(t, c.repl), DataCenter: c.dc, Rack: c.rack})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v %v, want %v", locs, err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("message %q does not say %q", err, c.msg)
			}
		})
	}
}

func TestPlacementUsesRegisteredSlots(t *testing.T) {
	tp := build(t, server{"dc1", "r1", "a", 1}, server{"dc1", "r1", "b", 1})
	r := rp(t, "000")
	locs, err := tp.PickNodes(PlacementRequest{Replication: r})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.RegisterVolume(VolumeInfo{ID: 1, Replication: r}, []string{locs[0].URL}, t0); err != nil {
		t.Fatal(err)
	}
	second, err := tp.PickNodes(PlacementRequest{Replication: r})
	if err != nil {
		t.Fatal(err)
	}
	if second[0].URL == locs[0].URL {
		t.Fatalf("full server %s picked again", locs[0].URL)
	}
	if err := tp.RegisterVolume(VolumeInfo{ID: 2, Replication: r}, []string{second[0].URL}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.PickNodes(PlacementRequest{Replication: r}); !errors.Is(err, ErrNoFreeSlots) {
		t.Fatalf("all slots used: %v", err)
	}
}
