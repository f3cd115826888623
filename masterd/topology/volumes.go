package topology

import (
	"fmt"
	"math/rand/v2"
	"sort"
)

// volume is one volume id and the servers holding a replica of it.
type volume struct {
	id    uint32
	key   LayoutKey
	nodes map[string]*node
}

// layout holds the volumes of one LayoutKey and the writable ones, as a
// slice for O(1) random picks plus an index for O(1) removal.
type layout struct {
	key         LayoutKey
	volumes     map[uint32]*volume
	writable    []uint32
	writableIdx map[uint32]int
}

func (l *layout) setWritable(id uint32, w bool) {
	i, ok := l.writableIdx[id]
	switch {
	case w && !ok:
		l.writableIdx[id] = len(l.writable)
		l.writable = append(l.writable, id)
	case !w && ok:
		last := len(l.writable) - 1
		moved := l.writable[last]
		l.writable[i] = moved
		l.writableIdx[moved] = i
		l.writable = l.writable[:last]
		delete(l.writableIdx, id)
	}
}

func (t *Topology) layoutFor(key LayoutKey) *layout {
	l, ok := t.layouts[key]
	if !ok {
		l = &layout{key: key, volumes: make(map[uint32]*volume), writableIdx: make(map[uint32]int)}
		t.layouts[key] = l
	}
	return l
}

// placeVolume records that n holds a replica of id in layout key, moving
// the volume to key's layout if a replica reported a different one (the
// latest report wins). Callers hold t.mu and call refresh afterwards.
func (t *Topology) placeVolume(id uint32, key LayoutKey, n *node) {
	v, ok := t.volumes[id]
	if !ok {
		v = &volume{id: id, key: key, nodes: make(map[string]*node)}
		t.volumes[id] = v
		t.layoutFor(key).volumes[id] = v
	} else if v.key != key {
		t.unlayout(v)
		v.key = key
		t.layoutFor(key).volumes[id] = v
	}
	v.nodes[n.loc.URL] = n
}

// unlayout removes v from its layout, dropping the layout when empty.
func (t *Topology) unlayout(v *volume) {
	l := t.layouts[v.key]
	if l == nil {
		return
	}
	l.setWritable(v.id, false)
	delete(l.volumes, v.id)
	if len(l.volumes) == 0 {
		delete(t.layouts, v.key)
	}
}

// dropReplica removes n's replica of id; the volume disappears with its
// last replica. Callers hold t.mu.
func (t *Topology) dropReplica(n *node, id uint32) {
	delete(n.volumes, id)
	v, ok := t.volumes[id]
	if !ok {
		return
	}
	delete(v.nodes, n.loc.URL)
	if len(v.nodes) == 0 {
		t.unlayout(v)
		delete(t.volumes, id)
		return
	}
	t.refresh(id)
}

// refresh recomputes whether volume id is writable. Callers hold t.mu.
func (t *Topology) refresh(id uint32) {
	v, ok := t.volumes[id]
	if !ok {
		return
	}
	t.layoutFor(v.key).setWritable(id, t.writable(v))
}

func (t *Topology) writable(v *volume) bool {
	if len(v.nodes) < v.key.Replication.CopyCount() {
		return false
	}
	for _, n := range v.nodes {
		rep := n.volumes[v.id]
		if rep == nil || rep.info.ReadOnly || rep.info.Full {
			return false
		}
		if t.cfg.VolumeSizeLimit > 0 && rep.info.Size >= t.cfg.VolumeSizeLimit {
			return false
		}
	}
	return true
}

// WritableVolume is the answer to PickForWrite.
type WritableVolume struct {
	ID       uint32
	Primary  Location   // the replica to write to
	Replicas []Location // every replica, Primary included, sorted by url
}

// PickForWrite picks a random writable volume of the layout. A non-empty
// dataCenter (and rack) restricts the pick to volumes with a replica there,
// and that replica becomes the primary. It fails with ErrNoWritableVolume.
func (t *Topology) PickForWrite(key LayoutKey, dataCenter, rackID string) (WritableVolume, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	l := t.layouts[key]
	if l == nil || len(l.writable) == 0 {
		return WritableVolume{}, fmt.Errorf("%w for %s", ErrNoWritableVolume, key)
	}
	if dataCenter == "" && rackID == "" {
		v := t.volumes[l.writable[rand.IntN(len(l.writable))]]
		reps := locations(v)
		return WritableVolume{ID: v.id, Primary: reps[rand.IntN(len(reps))], Replicas: reps}, nil
	}
	type cand struct {
		v     *volume
		local []Location
	}
	var cands []cand
	for _, id := range l.writable {
		v := t.volumes[id]
		var local []Location
		for _, n := range v.nodes {
			if (dataCenter == "" || n.loc.DataCenter == dataCenter) && (rackID == "" || n.loc.Rack == rackID) {
				local = append(local, n.loc)
			}
		}
		if len(local) > 0 {
			cands = append(cands, cand{v, local})
		}
	}
	if len(cands) == 0 {
		return WritableVolume{}, fmt.Errorf("%w for %s in data center %q rack %q", ErrNoWritableVolume, key, dataCenter, rackID)
	}
	c := cands[rand.IntN(len(cands))]
	return WritableVolume{ID: c.v.id, Primary: c.local[rand.IntN(len(c.local))], Replicas: locations(c.v)}, nil
}

// Lookup returns the live replicas of a volume, sorted by url, or
// ErrVolumeNotFound.
func (t *Topology) Lookup(id uint32) ([]Location, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v, ok := t.volumes[id]
	if !ok {
		return nil, fmt.Errorf("%w: volume %d", ErrVolumeNotFound, id)
	}
	return locations(v), nil
}

// VolumeState describes one volume across its replicas.
type VolumeState struct {
	ID       uint32
	Key      LayoutKey
	Writable bool
	Replicas []Location   // sorted by url
	Infos    []VolumeInfo // one per replica, in Replicas order
}

// Volumes returns every volume held by a live server, sorted by id.
func (t *Topology) Volumes() []VolumeState {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]VolumeState, 0, len(t.volumes))
	for _, v := range t.volumes {
		out = append(out, t.volumeState(v))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Volume returns one volume's state or ErrVolumeNotFound.
func (t *Topology) Volume(id uint32) (VolumeState, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v, ok := t.volumes[id]
	if !ok {
		return VolumeState{}, fmt.Errorf("%w: volume %d", ErrVolumeNotFound, id)
	}
	return t.volumeState(v), nil
}

func (t *Topology) volumeState(v *volume) VolumeState {
	vs := VolumeState{ID: v.id, Key: v.key, Replicas: locations(v)}
	_, vs.Writable = t.layouts[v.key].writableIdx[v.id]
	for _, loc := range vs.Replicas {
		vs.Infos = append(vs.Infos, v.nodes[loc.URL].volumes[v.id].info)
	}
	return vs
}

// MaxVolumeID returns the highest volume id held by a live server, 0 if none.
func (t *Topology) MaxVolumeID() uint32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var max uint32
	for id := range t.volumes {
		if id > max {
			max = id
		}
	}
	return max
}

func locations(v *volume) []Location {
	out := make([]Location, 0, len(v.nodes))
	for _, n := range v.nodes {
		out = append(out, n.loc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL < out[j].URL })
	return out
}
