package topology

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/kelpfs/kelp/needle"
)

// PlacementRequest asks for servers to hold a new volume's replicas.
type PlacementRequest struct {
	Replication needle.ReplicaPlacement
	// DataCenter, if set, is where the first copy (and the copies on other
	// racks and in the same rack) must go.
	DataCenter string
	// Rack, if set, is the rack of the first copy (and its same-rack copies).
	Rack string
}

// freeRack is a rack with its servers that have a free slot.
type freeRack struct {
	id    string
	nodes []*node
}

// freeDC is a data center with its racks that have a server with a free slot.
type freeDC struct {
	id    string
	racks []freeRack
}

func (d freeDC) nodes() []*node {
	var out []*node
	for _, r := range d.racks {
		out = append(out, r.nodes...)
	}
	return out
}

// PickNodes chooses Replication.CopyCount() distinct servers with free
// slots that satisfy the replication string exactly: x copies in x other
// data centers, y copies on y other racks of the first copy's data center,
// z copies on z other servers of the first copy's rack. Among the choices
// that fit, the pick is random. The first location is the first copy. It
// fails with ErrNoFreeSlots or ErrUnsatisfiable and a message saying what is
// missing. PickNodes reserves nothing: callers serialise growth and call
// RegisterVolume before planning the next volume.
func (t *Topology) PickNodes(req PlacementRequest) ([]Location, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()

	rp := req.Replication
	x, y, z := int(rp.DiffDataCenter), int(rp.DiffRack), int(rp.SameRack)

	var dcs []freeDC
	for _, dc := range t.dcs {
		fd := freeDC{id: dc.id}
		for _, rk := range dc.racks {
			fr := freeRack{id: rk.id}
			for _, n := range rk.nodes {
				if n.free() > 0 {
					fr.nodes = append(fr.nodes, n)
				}
			}
			if len(fr.nodes) > 0 {
				sort.Slice(fr.nodes, func(i, j int) bool { return fr.nodes[i].loc.URL < fr.nodes[j].loc.URL })
				fd.racks = append(fd.racks, fr)
			}
		}
		if len(fd.racks) > 0 {
			sort.Slice(fd.racks, func(i, j int) bool { return fd.racks[i].id < fd.racks[j].id })
			dcs = append(dcs, fd)
		}
	}
	sort.Slice(dcs, func(i, j int) bool { return dcs[i].id < dcs[j].id })

	if len(dcs) == 0 {
		if len(t.nodes) == 0 {
			return nil, fmt.Errorf("%w: no volume server has joined", ErrNoFreeSlots)
		}
		if len(t.nodes) == 1 {
			return nil, fmt.Errorf("%w on the only volume server", ErrNoFreeSlots)
		}
		return nil, fmt.Errorf("%w on any of %d volume servers", ErrNoFreeSlots, len(t.nodes))
	}

	// Candidates for the first copy's data center.
	mains := dcs
	if req.DataCenter != "" {
		mains = nil
		for _, d := range dcs {
			if d.id == req.DataCenter {
				mains = []freeDC{d}
			}
		}
		if mains == nil {
			if _, known := t.dcs[req.DataCenter]; !known {
				return nil, fmt.Errorf("%w: data center %s not found", ErrUnsatisfiable, req.DataCenter)
			}
			return nil, fmt.Errorf("%w in data center %s", ErrNoFreeSlots, req.DataCenter)
		}
	}
	if len(dcs) < x+1 {
		return nil, fmt.Errorf("%w: replication %s needs %d data centers with free slots, found %d",
			ErrUnsatisfiable, rp, x+1, len(dcs))
	}

	// A main data center fits when it has y other racks and a main rack
	// with z+1 free servers (the requested rack, if any).
	mainRacks := func(d freeDC) []freeRack {
		var out []freeRack
		for _, r := range d.racks {
			if (req.Rack == "" || r.id == req.Rack) && len(r.nodes) >= z+1 {
				out = append(out, r)
			}
		}
		return out
	}
	var fits []freeDC
	for _, d := range mains {
		if len(d.racks)-1 >= y && len(mainRacks(d)) > 0 {
			fits = append(fits, d)
		}
	}
	if len(fits) == 0 {
		return nil, explainMain(rp, req, mains, y, z)
	}

	main := fits[rand.IntN(len(fits))]
	cands := mainRacks(main)
	mainRack := cands[rand.IntN(len(cands))]

	out := make([]Location, 0, rp.CopyCount())
	for _, i := range rand.Perm(len(mainRack.nodes))[:z+1] {
		out = append(out, mainRack.nodes[i].loc)
	}
	var others []freeRack
	for _, r := range main.racks {
		if r.id != mainRack.id {
			others = append(others, r)
		}
	}
	for _, i := range rand.Perm(len(others))[:y] {
		r := others[i]
		out = append(out, r.nodes[rand.IntN(len(r.nodes))].loc)
	}
	var otherDCs []freeDC
	for _, d := range dcs {
		if d.id != main.id {
			otherDCs = append(otherDCs, d)
		}
	}
	for _, i := range rand.Perm(len(otherDCs))[:x] {
		ns := otherDCs[i].nodes()
		out = append(out, ns[rand.IntN(len(ns))].loc)
	}
	return out, nil
}

// explainMain says why no candidate data center can hold the first copy's
// share of the replicas.
func explainMain(rp needle.ReplicaPlacement, req PlacementRequest, mains []freeDC, y, z int) error {
	where := "in one data center"
	if len(mains) == 1 {
		where = "in data center " + mains[0].id
	}
	if req.Rack != "" {
		for _, d := range mains {
			found := false
			for _, r := range d.racks {
				if r.id == req.Rack {
					found = true
					if len(r.nodes) < z+1 {
						return fmt.Errorf("%w: replication %s needs %d servers with free slots in rack %s, found %d",
							ErrUnsatisfiable, rp, z+1, req.Rack, len(r.nodes))
					}
				}
			}
			if !found && len(mains) == 1 {
				return fmt.Errorf("%w: rack %s has no server with free slots %s", ErrUnsatisfiable, req.Rack, where)
			}
		}
	}
	bestRacks, bestRacksDC := 0, ""
	bestNodes, bestNodesDC := 0, ""
	for _, d := range mains {
		if len(d.racks) > bestRacks {
			bestRacks, bestRacksDC = len(d.racks), d.id
		}
		for _, r := range d.racks {
			if len(r.nodes) > bestNodes {
				bestNodes, bestNodesDC = len(r.nodes), d.id
			}
		}
	}
	if bestRacks < y+1 {
		if len(mains) == 1 {
			return fmt.Errorf("%w: replication %s needs %d racks with free slots %s, found %d",
				ErrUnsatisfiable, rp, y+1, where, bestRacks)
		}
		return fmt.Errorf("%w: replication %s needs %d racks with free slots %s, found at most %d (in %s)",
			ErrUnsatisfiable, rp, y+1, where, bestRacks, bestRacksDC)
	}
	if bestNodes < z+1 {
		if len(mains) == 1 {
			return fmt.Errorf("%w: replication %s needs %d servers with free slots in one rack %s, found at most %d",
				ErrUnsatisfiable, rp, z+1, where, bestNodes)
		}
		return fmt.Errorf("%w: replication %s needs %d servers with free slots in one rack %s, found at most %d (in %s)",
			ErrUnsatisfiable, rp, z+1, where, bestNodes, bestNodesDC)
	}
	// Each condition holds in some data center but never both in one.
	return fmt.Errorf("%w: replication %s needs %d racks with free slots, one of them with %d servers with free slots, %s",
		ErrUnsatisfiable, rp, y+1, z+1, where)
}
