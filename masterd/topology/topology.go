package topology

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// Sentinel errors. Messages returned wrap one of these with the details.
var (
	// ErrBadReport reports a node report without a url or with a negative
	// volume count.
	ErrBadReport = errors.New("topology: bad node report")
	// ErrNoFreeSlots reports that no server has a free volume slot.
	ErrNoFreeSlots = errors.New("topology: no free volume slots")
	// ErrUnsatisfiable reports that the servers with free slots cannot
	// satisfy a replication string (too few data centers, racks or servers).
	ErrUnsatisfiable = errors.New("topology: cannot place volume")
	// ErrNoWritableVolume reports that a layout has no writable volume.
	ErrNoWritableVolume = errors.New("topology: no writable volume")
	// ErrVolumeNotFound reports a volume no live server holds.
	ErrVolumeNotFound = errors.New("topology: volume not found")
	// ErrNodeNotFound reports a server that is not registered.
	ErrNodeNotFound = errors.New("topology: volume server not found")
)

// Names used for servers that report no data center or rack.
const (
	DefaultDataCenter = "DefaultDataCenter"
	DefaultRack       = "DefaultRack"
)

// DefaultPendingGrace is used when Config.PendingGrace is zero.
const DefaultPendingGrace = 10 * time.Second

// Config configures a Topology.
type Config struct {
	// VolumeSizeLimit is the size in bytes at which a volume counts as full
	// and is no longer assigned. 0 means no limit.
	VolumeSizeLimit uint64
	// NodeTimeout is how long a server may go without a report before
	// Expire removes it. 0 means servers never expire.
	NodeTimeout time.Duration
	// PendingGrace is how long a volume added by RegisterVolume survives
	// reports from its server that do not list it yet (a report built
	// before the allocation finished). 0 means DefaultPendingGrace.
	PendingGrace time.Duration
}

// Location says where one replica lives.
type Location struct {
	URL         string // ip:port of the blob API; the server's identity
	PublicURL   string // host:port clients should use
	GRPCAddress string // ip:port of the admin gRPC API
	DataCenter  string
	Rack        string
}

// LayoutKey groups volumes that may receive the same writes.
type LayoutKey struct {
	Collection  string
	Replication needle.ReplicaPlacement
	TTL         needle.TTL
}

// String describes the key for error messages.
func (k LayoutKey) String() string {
	return fmt.Sprintf("collection %q replication %s ttl %q", k.Collection, k.Replication, k.TTL)
}

// VolumeInfo is one replica of a volume as its server reports it.
type VolumeInfo struct {
	ID              uint32
	Size            uint64 // bytes in .dat
	Collection      string
	Replication     needle.ReplicaPlacement
	TTL             needle.TTL
	FileCount       uint64
	DeleteCount     uint64
	DeletedBytes    uint64
	ReadOnly        bool
	Full            bool // the volume server refuses writes for size
	CompactRevision uint32
	Version         uint32
}

// Key returns the layout the volume belongs to.
func (v VolumeInfo) Key() LayoutKey {
	return LayoutKey{Collection: v.Collection, Replication: v.Replication, TTL: v.TTL}
}

// NodeReport is a full report of one server: every call replaces what the
// topology knew about the server.
type NodeReport struct {
	URL            string // ip:port; required
	PublicURL      string // defaults to URL
	GRPCAddress    string
	DataCenter     string // defaults to DefaultDataCenter
	Rack           string // defaults to DefaultRack
	MaxVolumeCount int
	Volumes        []VolumeInfo
}

// Change says what a report changed.
type Change struct {
	Joined  bool     // the server was not registered before
	Moved   bool     // the server changed data center, rack or addresses
	Added   []uint32 // volumes the server holds now and did not before, sorted
	Removed []uint32 // volumes the server no longer holds, sorted
}

type replica struct {
	info         VolumeInfo
	pendingUntil time.Time // set by RegisterVolume until a report lists it
}

type node struct {
	loc        Location
	maxVolumes int
	volumes    map[uint32]*replica
	lastSeen   time.Time
}

func (n *node) free() int {
	if f := n.maxVolumes - len(n.volumes); f > 0 {
		return f
	}
	return 0
}

type rack struct {
	id    string
	nodes map[string]*node
}

type dataCenter struct {
	id    string
	racks map[string]*rack
}

// Topology is the cluster model. The zero value is not usable; call New.
type Topology struct {
	cfg Config

	mu      sync.RWMutex
	dcs     map[string]*dataCenter
	nodes   map[string]*node // by url
	volumes map[uint32]*volume
	layouts map[LayoutKey]*layout
}

// New returns an empty topology.
func New(cfg Config) *Topology {
	if cfg.PendingGrace <= 0 {
		cfg.PendingGrace = DefaultPendingGrace
	}
	return &Topology{
		cfg:     cfg,
		dcs:     make(map[string]*dataCenter),
		nodes:   make(map[string]*node),
		volumes: make(map[uint32]*volume),
		layouts: make(map[LayoutKey]*layout),
	}
}

// VolumeSizeLimit returns the configured size limit in bytes.
func (t *Topology) VolumeSizeLimit() uint64 { return t.cfg.VolumeSizeLimit }

// UpdateNode registers or refreshes a server from a full report taken at
// now and returns what changed. Volumes the report omits are dropped from
// the server, except those RegisterVolume added less than PendingGrace ago.
func (t *Topology) UpdateNode(r NodeReport, now time.Time) (Change, error) {
	if r.URL == "" {
		return Change{}, fmt.Errorf("%w: empty url", ErrBadReport)
	}
	if r.MaxVolumeCount < 0 {
		return Change{}, fmt.Errorf("%w: server %s: negative max volume count %d", ErrBadReport, r.URL, r.MaxVolumeCount)
	}
	loc := Location{URL: r.URL, PublicURL: r.PublicURL, GRPCAddress: r.GRPCAddress, DataCenter: r.DataCenter, Rack: r.Rack}
	if loc.PublicURL == "" {
		loc.PublicURL = loc.URL
	}
	if loc.DataCenter == "" {
		loc.DataCenter = DefaultDataCenter
	}
	if loc.Rack == "" {
		loc.Rack = DefaultRack
	}

	t.mu.Lock()
	defer t.mu.Unlock()

	var ch Change
	n, ok := t.nodes[r.URL]
	if !ok {
		ch.Joined = true
		n = &node{loc: loc, volumes: make(map[uint32]*replica)}
		t.nodes[r.URL] = n
		t.attach(n)
	} else if n.loc != loc {
		ch.Moved = true
		if n.loc.DataCenter != loc.DataCenter || n.loc.Rack != loc.Rack {
			t.detach(n)
			n.loc = loc
			t.attach(n)
		} else {
			n.loc = loc
		}
	}
	n.maxVolumes = r.MaxVolumeCount
	n.lastSeen = now

	reported := make(map[uint32]bool, len(r.Volumes))
	for _, vi := range r.Volumes {
		reported[vi.ID] = true
		if rep, ok := n.volumes[vi.ID]; ok {
			rep.info = vi
			rep.pendingUntil = time.Time{}
			t.placeVolume(vi.ID, vi.Key(), n)
			continue
		}
		n.volumes[vi.ID] = &replica{info: vi}
		t.placeVolume(vi.ID, vi.Key(), n)
		ch.Added = append(ch.Added, vi.ID)
	}
	for id, rep := range n.volumes {
		if reported[id] || rep.pendingUntil.After(now) {
			continue
		}
		t.dropReplica(n, id)
		ch.Removed = append(ch.Removed, id)
	}
	for id := range n.volumes {
		t.refresh(id)
	}
	sortIDs(ch.Added)
	sortIDs(ch.Removed)
	return ch, nil
}

// RemoveNode drops a server and its replicas. It returns the volumes the
// server held, sorted, and whether the server was registered.
func (t *Topology) RemoveNode(url string) ([]uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removeLocked(url)
}

func (t *Topology) removeLocked(url string) ([]uint32, bool) {
	n, ok := t.nodes[url]
	if !ok {
		return nil, false
	}
	ids := make([]uint32, 0, len(n.volumes))
	for id := range n.volumes {
		ids = append(ids, id)
	}
	for _, id := range ids {
		t.dropReplica(n, id)
	}
	t.detach(n)
	delete(t.nodes, url)
	sortIDs(ids)
	return ids, true
}

// Expire removes every server whose last report is more than NodeTimeout
// before now and returns their urls, sorted.
func (t *Topology) Expire(now time.Time) []string {
	if t.cfg.NodeTimeout <= 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []string
	for url, n := range t.nodes {
		if now.Sub(n.lastSeen) > t.cfg.NodeTimeout {
			gone = append(gone, url)
		}
	}
	sort.Strings(gone)
	for _, url := range gone {
		t.removeLocked(url)
	}
	return gone
}

// RegisterVolume records a volume just allocated on the servers with the
// given urls, so it is writable before their next reports. Servers no
// longer registered are skipped and reported in the error
// (ErrNodeNotFound); the volume is registered on the others.
func (t *Topology) RegisterVolume(vi VolumeInfo, urls []string, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var missing []string
	for _, url := range urls {
		n, ok := t.nodes[url]
		if !ok {
			missing = append(missing, url)
			continue
		}
		if _, ok := n.volumes[vi.ID]; !ok {
			n.volumes[vi.ID] = &replica{info: vi, pendingUntil: now.Add(t.cfg.PendingGrace)}
		}
		t.placeVolume(vi.ID, vi.Key(), n)
	}
	t.refresh(vi.ID)
	if len(missing) > 0 {
		return fmt.Errorf("%w: volume %d not registered on %v", ErrNodeNotFound, vi.ID, missing)
	}
	return nil
}

func (t *Topology) attach(n *node) {
	dc, ok := t.dcs[n.loc.DataCenter]
	if !ok {
		dc = &dataCenter{id: n.loc.DataCenter, racks: make(map[string]*rack)}
		t.dcs[dc.id] = dc
	}
	rk, ok := dc.racks[n.loc.Rack]
	if !ok {
		rk = &rack{id: n.loc.Rack, nodes: make(map[string]*node)}
		dc.racks[rk.id] = rk
	}
	rk.nodes[n.loc.URL] = n
}

func (t *Topology) detach(n *node) {
	dc := t.dcs[n.loc.DataCenter]
	if dc == nil {
		return
	}
	rk := dc.racks[n.loc.Rack]
	if rk == nil {
		return
	}
	delete(rk.nodes, n.loc.URL)
	if len(rk.nodes) == 0 {
		delete(dc.racks, rk.id)
	}
	if len(dc.racks) == 0 {
		delete(t.dcs, dc.id)
	}
}

// NodeInfo describes one server.
type NodeInfo struct {
	Location
	MaxVolumes int
	FreeSlots  int
	Volumes    []VolumeInfo // sorted by id
	LastSeen   time.Time
}

// RackInfo describes one rack.
type RackInfo struct {
	ID         string
	Nodes      []NodeInfo // sorted by url
	MaxVolumes int
	FreeSlots  int
}

// DataCenterInfo describes one data center.
type DataCenterInfo struct {
	ID         string
	Racks      []RackInfo // sorted by id
	MaxVolumes int
	FreeSlots  int
}

// LayoutInfo describes one volume layout.
type LayoutInfo struct {
	Key      LayoutKey
	Volumes  []uint32 // sorted
	Writable []uint32 // sorted
}

// Snapshot is a copy of the whole topology.
type Snapshot struct {
	DataCenters     []DataCenterInfo // sorted by id
	Layouts         []LayoutInfo     // sorted by collection, replication, ttl
	MaxVolumes      int
	FreeSlots       int
	VolumeSizeLimit uint64
}

// Snapshot returns a copy of the topology.
func (t *Topology) Snapshot() Snapshot {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Snapshot{VolumeSizeLimit: t.cfg.VolumeSizeLimit}
	for _, dc := range t.dcs {
		di := DataCenterInfo{ID: dc.id}
		for _, rk := range dc.racks {
			ri := RackInfo{ID: rk.id}
			for _, n := range rk.nodes {
				ni := nodeInfo(n)
				ri.Nodes = append(ri.Nodes, ni)
				ri.MaxVolumes += ni.MaxVolumes
				ri.FreeSlots += ni.FreeSlots
			}
			sort.Slice(ri.Nodes, func(i, j int) bool { return ri.Nodes[i].URL < ri.Nodes[j].URL })
			di.Racks = append(di.Racks, ri)
			di.MaxVolumes += ri.MaxVolumes
			di.FreeSlots += ri.FreeSlots
		}
		sort.Slice(di.Racks, func(i, j int) bool { return di.Racks[i].ID < di.Racks[j].ID })
		s.DataCenters = append(s.DataCenters, di)
		s.MaxVolumes += di.MaxVolumes
		s.FreeSlots += di.FreeSlots
	}
	sort.Slice(s.DataCenters, func(i, j int) bool { return s.DataCenters[i].ID < s.DataCenters[j].ID })
	for _, l := range t.layouts {
		li := LayoutInfo{Key: l.key}
		for id := range l.volumes {
			li.Volumes = append(li.Volumes, id)
		}
		li.Writable = append(li.Writable, l.writable...)
		sortIDs(li.Volumes)
		sortIDs(li.Writable)
		s.Layouts = append(s.Layouts, li)
	}
	sort.Slice(s.Layouts, func(i, j int) bool { return layoutLess(s.Layouts[i].Key, s.Layouts[j].Key) })
	return s
}

// Node returns one server's description.
func (t *Topology) Node(url string) (NodeInfo, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n, ok := t.nodes[url]
	if !ok {
		return NodeInfo{}, false
	}
	return nodeInfo(n), true
}

func nodeInfo(n *node) NodeInfo {
	ni := NodeInfo{Location: n.loc, MaxVolumes: n.maxVolumes, FreeSlots: n.free(), LastSeen: n.lastSeen}
	for _, rep := range n.volumes {
		ni.Volumes = append(ni.Volumes, rep.info)
	}
	sort.Slice(ni.Volumes, func(i, j int) bool { return ni.Volumes[i].ID < ni.Volumes[j].ID })
	return ni
}

func layoutLess(a, b LayoutKey) bool {
	if a.Collection != b.Collection {
		return a.Collection < b.Collection
	}
	if a.Replication != b.Replication {
		return a.Replication.Byte() < b.Replication.Byte()
	}
	if a.TTL.Duration() != b.TTL.Duration() {
		return a.TTL.Duration() < b.TTL.Duration()
	}
	return a.TTL.String() < b.TTL.String()
}

func sortIDs(ids []uint32) {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
}
