package masterd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/masterd/topology"
	"github.com/kelpfs/kelp/needle"
)

func parseFid(t *testing.T, s string) needle.FileID {
	t.Helper()
	fid, err := needle.ParseFileID(s)
	if err != nil {
		t.Fatalf("fid %q: %v", s, err)
	}
	return fid
}

func assignHTTP(t *testing.T, m *Server, query string) assignBody {
	t.Helper()
	var a assignBody
	if code, body := httpGet(t, m, "/dir/assign"+query, &a); code != http.StatusOK {
		t.Fatalf("assign%s: %d %s", query, code, body)
	}
	return a
}

func contains(ids []uint32, id uint32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestAssignGrowsAndFidsParse(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f := newFake(t, "dc1", "r1", 10)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)

	a := assignHTTP(t, m, "")
	fid := parseFid(t, a.Fid)
	if a.Count != 1 || a.URL != f.url() || a.PublicURL != f.publicURL() {
		t.Fatalf("assign: %+v, fake at %s", a, f.url())
	}
	grown := f.volumeIDs()
	if len(grown) != 7 {
		t.Fatalf("automatic growth for one copy made %d volumes, want 7: %v", len(grown), grown)
	}
	if !contains(grown, fid.VolumeID) {
		t.Fatalf("fid volume %d not among the grown volumes %v", fid.VolumeID, grown)
	}
	keys := map[uint64]bool{fid.Key: true}
	c := masterClient(t, m)
	for i := 0; i < 50; i++ {
		resp, err := c.Assign(context.Background(), &masterpb.AssignRequest{})
		if err != nil {
			t.Fatal(err)
		}
		fid := parseFid(t, resp.GetFid())
		if keys[fid.Key] {
			t.Fatalf("key %d issued twice", fid.Key)
		}
		keys[fid.Key] = true
		if !contains(grown, fid.VolumeID) || resp.GetLocation().GetUrl() != f.url() ||
			resp.GetLocation().GetGrpcAddress() != "127.0.0.1:"+strconv.Itoa(f.grpcPort()) || len(resp.GetReplicas()) != 1 {
			t.Fatalf("assign: %v", resp)
		}
	}
	if got := f.volumeIDs(); len(got) != 7 {
		t.Fatalf("assigns with writable volumes grew more: %v", got)
	}
	// The fake learned the size limit from heartbeat replies.
	waitFor(t, "size limit in heartbeat reply", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.sizeLimit == 30000<<20
	})
}

func TestGrowFewerWhenSlotsShort(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f := newFake(t, "", "", 3)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	assignHTTP(t, m, "")
	if got := f.volumeIDs(); len(got) != 3 {
		t.Fatalf("grew %v with 3 slots", got)
	}
	// Slots exhausted: another collection cannot grow.
	code, body := httpGet(t, m, "/dir/assign?collection=other", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no free volume slots") {
		t.Fatalf("assign with no slots: %d %s", code, body)
	}
}

func TestAssignCountReservesRun(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f := newFake(t, "", "", 10)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	a := assignHTTP(t, m, "?count=5")
	if a.Count != 5 {
		t.Fatalf("count %d", a.Count)
	}
	k1 := parseFid(t, a.Fid).Key
	b := assignHTTP(t, m, "")
	if k2 := parseFid(t, b.Fid).Key; k2 < k1+5 {
		t.Fatalf("run of 5 from %d overlaps next key %d", k1, k2)
	}
	resp, err := masterClient(t, m).Assign(context.Background(), &masterpb.AssignRequest{Count: 3})
	if err != nil || resp.GetCount() != 3 {
		t.Fatalf("grpc count 3: %v %v", resp, err)
	}
	k3 := parseFid(t, resp.GetFid()).Key
	c := assignHTTP(t, m, "")
	if k4 := parseFid(t, c.Fid).Key; k4 < k3+3 {
		t.Fatalf("run of 3 from %d overlaps next key %d", k3, k4)
	}
}

func TestReplication010TwoRacks(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f1 := newFake(t, "dc1", "r1", 10)
	f2 := newFake(t, "dc1", "r1", 10)
	f3 := newFake(t, "dc1", "r2", 10)
	fakes := []*fakeVolume{f1, f2, f3}
	for _, f := range fakes {
		f.connect(m.GRPCAddr())
	}
	waitNodes(t, m, fakes...)

	resp, err := masterClient(t, m).Assign(context.Background(), &masterpb.AssignRequest{Replication: "010"})
	if err != nil {
		t.Fatal(err)
	}
	reps := resp.GetReplicas()
	if len(reps) != 2 || reps[0].GetRack() == reps[1].GetRack() {
		t.Fatalf("replicas of a 010 volume: %v", reps)
	}
	// Every grown volume has one copy in each rack.
	holders := map[uint32][]*fakeVolume{}
	for _, f := range fakes {
		for _, id := range f.volumeIDs() {
			holders[id] = append(holders[id], f)
		}
	}
	if len(holders) != 6 {
		t.Fatalf("automatic growth for two copies made %d volumes, want 6", len(holders))
	}
	for id, hs := range holders {
		if len(hs) != 2 || hs[0].rack == hs[1].rack {
			t.Fatalf("volume %d on %d servers, racks not distinct", id, len(hs))
		}
	}
	fid := parseFid(t, resp.GetFid())
	var lk lookupBody
	if code, body := httpGet(t, m, "/dir/lookup?volumeId="+strconv.Itoa(int(fid.VolumeID)), &lk); code != http.StatusOK || len(lk.Locations) != 2 {
		t.Fatalf("lookup: %d %s", code, body)
	}
}

func TestInsufficientTopology(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	c := masterClient(t, m)

	// No server at all.
	code, body := httpGet(t, m, "/dir/assign", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no volume server has joined") {
		t.Fatalf("assign on an empty cluster: %d %s", code, body)
	}

	f1 := newFake(t, "dc1", "r1", 10)
	f2 := newFake(t, "dc1", "r1", 10)
	f1.connect(m.GRPCAddr())
	f2.connect(m.GRPCAddr())
	waitNodes(t, m, f1, f2)

	const want010 = "replication 010 needs 2 racks with free slots in data center dc1, found 1"
	var e errorBody
	code, body = httpGet(t, m, "/dir/assign?replication=010", &e)
	if code != http.StatusServiceUnavailable || !strings.Contains(e.Error, want010) {
		t.Fatalf("HTTP assign 010 with one rack: %d %s", code, body)
	}
	_, err := c.Assign(context.Background(), &masterpb.AssignRequest{Replication: "010"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), want010) {
		t.Fatalf("gRPC assign 010 with one rack: %v", err)
	}
	_, err = c.GrowVolume(context.Background(), &masterpb.GrowVolumeRequest{Replication: "100"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "replication 100 needs 2 data centers with free slots, found 1") {
		t.Fatalf("gRPC grow 100 with one data center: %v", err)
	}
	code, body = httpGet(t, m, "/vol/grow?replication=200", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "replication 200 needs 3 data centers") {
		t.Fatalf("HTTP grow 200: %d %s", code, body)
	}
	code, body = httpGet(t, m, "/dir/assign?dataCenter=dc9", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "data center dc9 not found") {
		t.Fatalf("assign in unknown dc: %d %s", code, body)
	}
	if len(f1.volumeIDs())+len(f2.volumeIDs()) != 0 {
		t.Fatal("failed placements allocated volumes")
	}
	// 001 fits (two servers in one rack).
	assignHTTP(t, m, "?replication=001")
}

func TestAllocationFailure(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f := newFake(t, "", "", 10)
	f.mu.Lock()
	f.allocErr = errAllocate
	f.mu.Unlock()
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	code, body := httpGet(t, m, "/dir/assign", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "volume allocation failed") || !strings.Contains(body, "disk on fire") {
		t.Fatalf("assign with failing allocation: %d %s", code, body)
	}
	_, err := masterClient(t, m).Assign(context.Background(), &masterpb.AssignRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC: %v", err)
	}
}

func TestNodeLeaves(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f1 := newFake(t, "dc1", "r1", 20)
	f2 := newFake(t, "dc1", "r1", 20)
	f1.connect(m.GRPCAddr())
	f2.connect(m.GRPCAddr())
	waitNodes(t, m, f1, f2)
	a := assignHTTP(t, m, "?replication=001")
	vid := parseFid(t, a.Fid).VolumeID

	f2.disconnect() // stream closed: f2 is dropped at once
	waitNodes(t, m, f1)

	// The volume is still readable from f1 ...
	var lk lookupBody
	code, body := httpGet(t, m, "/dir/lookup?volumeId="+strconv.Itoa(int(vid)), &lk)
	if code != http.StatusOK || len(lk.Locations) != 1 || lk.Locations[0].URL != f1.url() {
		t.Fatalf("lookup after f2 left: %d %s", code, body)
	}
	// ... but no 001 volume is writable and none can grow.
	code, body = httpGet(t, m, "/dir/assign?replication=001", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "replication 001 needs 2 servers") {
		t.Fatalf("assign 001 with one server: %d %s", code, body)
	}
	// 000 grows on the remaining server.
	b := assignHTTP(t, m, "")
	if b.URL != f1.url() {
		t.Fatalf("000 assigned to %s", b.URL)
	}
	// f2 comes back: its volumes are writable again.
	f2.connect(m.GRPCAddr())
	waitNodes(t, m, f1, f2)
	c := assignHTTP(t, m, "?replication=001")
	if !contains(f2.volumeIDs(), parseFid(t, c.Fid).VolumeID) {
		t.Fatalf("001 assign after rejoin went to %s", c.Fid)
	}
}

func TestNodeTimeout(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.NodeTimeout = 300 * time.Millisecond
	m, _ := startMaster(t, cfg)
	f := newFake(t, "", "", 5)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	assignHTTP(t, m, "")

	f.silent.Store(true) // stream stays open, but no reports
	waitNodes(t, m)
	code, body := httpGet(t, m, "/dir/assign", nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("assign with the only server silent: %d %s", code, body)
	}
	f.silent.Store(false) // reports again on the same stream: rejoins
	waitNodes(t, m, f)
	waitFor(t, "volumes writable again", func() bool {
		code, _ := httpGet(t, m, "/dir/assign", nil)
		return code == http.StatusOK
	})
}

func TestRestartNeverReissuesKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.KeyStep = 20 // cross the persisted ceiling often
	issued := map[uint64]bool{}
	collect := func(m *Server, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			count := i%4 + 1
			a := assignHTTP(t, m, "?count="+strconv.Itoa(count))
			k := parseFid(t, a.Fid).Key
			for j := k; j < k+uint64(count); j++ {
				if issued[j] {
					t.Fatalf("key %d issued twice (after a restart)", j)
				}
				issued[j] = true
			}
		}
	}

	m1, stop1 := startMaster(t, cfg)
	f1 := newFake(t, "", "", 10)
	f1.connect(m1.GRPCAddr())
	waitNodes(t, m1, f1)
	collect(m1, 30)
	oldVolumes := f1.volumeIDs()
	stop1()
	f1.disconnect()

	m2, stop2 := startMaster(t, cfg)
	f1.connect(m2.GRPCAddr())
	waitNodes(t, m2, f1)
	waitFor(t, "f1's volumes registered", func() bool { return len(m2.topo.Volumes()) == len(oldVolumes) })
	collect(m2, 30)
	if got := f1.volumeIDs(); len(got) != len(oldVolumes) {
		t.Fatalf("restarted master grew volumes although f1's are writable: %v -> %v", oldVolumes, got)
	}
	stop2()
	f1.disconnect()

	// Third start without f1: new volumes must not reuse f1's ids.
	m3, _ := startMaster(t, cfg)
	f2 := newFake(t, "", "", 10)
	f2.connect(m3.GRPCAddr())
	waitNodes(t, m3, f2)
	collect(m3, 10)
	for _, id := range f2.volumeIDs() {
		if id <= oldVolumes[len(oldVolumes)-1] {
			t.Fatalf("volume id %d reused; f1 held %v", id, oldVolumes)
		}
	}
}

func TestFullVolumeNotAssigned(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.VolumeSizeLimitMB = 1
	m, _ := startMaster(t, cfg)
	f := newFake(t, "", "", 20)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	assignHTTP(t, m, "")
	full := f.volumeIDs()
	f.setSize(2 << 20) // every volume over the 1 MB limit
	waitFor(t, "volumes reported full", func() bool {
		for _, v := range m.topo.Volumes() {
			if v.Writable {
				return false
			}
		}
		return true
	})
	for i := 0; i < 20; i++ {
		vid := parseFid(t, assignHTTP(t, m, "").Fid).VolumeID
		if contains(full, vid) {
			t.Fatalf("full volume %d assigned", vid)
		}
	}
	if got := f.volumeIDs(); len(got) != 2*len(full) {
		t.Fatalf("growth after volumes filled: %v", got)
	}
}

func TestHTTPShapes(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f := newFake(t, "dc1", "rack1", 20)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	base := "http://" + m.HTTPAddr()

	var raw map[string]any
	code, body := httpGet(t, m, "/dir/assign", &raw)
	if code != http.StatusOK || len(raw) != 4 || raw["count"] != 1.0 || raw["url"] != f.url() || raw["publicUrl"] != f.publicURL() {
		t.Fatalf("assign body: %s", body)
	}
	fid := parseFid(t, raw["fid"].(string))
	// POST with a form body.
	var a assignBody
	if code, body := httpDo(t, http.MethodPost, base+"/dir/assign", url.Values{"count": {"2"}}, &a); code != http.StatusOK || a.Count != 2 {
		t.Fatalf("POST assign: %d %s", code, body)
	}

	vid := strconv.Itoa(int(fid.VolumeID))
	for _, q := range []string{vid, fid.String()} {
		var lk struct {
			VolumeID  string `json:"volumeId"`
			Locations []struct {
				URL       string `json:"url"`
				PublicURL string `json:"publicUrl"`
			} `json:"locations"`
		}
		code, body := httpGet(t, m, "/dir/lookup?volumeId="+url.QueryEscape(q), &lk)
		if code != http.StatusOK || lk.VolumeID != vid || len(lk.Locations) != 1 ||
			lk.Locations[0].URL != f.url() || lk.Locations[0].PublicURL != f.publicURL() {
			t.Fatalf("lookup %s: %d %s", q, code, body)
		}
	}
	var nf map[string]string
	code, body = httpGet(t, m, "/dir/lookup?volumeId=999", &nf)
	if code != http.StatusNotFound || nf["volumeId"] != "999" || !strings.Contains(nf["error"], "not found") {
		t.Fatalf("unknown volume: %d %s", code, body)
	}

	var g growBody
	code, body = httpGet(t, m, "/vol/grow?count=2&collection=photos&replication=000", &g)
	if code != http.StatusOK || g.Count != 2 || len(g.VolumeIDs) != 2 {
		t.Fatalf("grow: %d %s", code, body)
	}
	ga := assignHTTP(t, m, "?collection=photos")
	if !contains(g.VolumeIDs, parseFid(t, ga.Fid).VolumeID) {
		t.Fatalf("photos assign %s not on grown volumes %v", ga.Fid, g.VolumeIDs)
	}

	var cs map[string]any
	code, body = httpGet(t, m, "/cluster/status", &cs)
	if code != http.StatusOK || cs["IsLeader"] != true || cs["Leader"] != m.HTTPAddr() {
		t.Fatalf("cluster status: %s", body)
	}
	if peers, ok := cs["Peers"].([]any); !ok || len(peers) != 0 {
		t.Fatalf("cluster status peers: %s", body)
	}

	var ds dirStatusBody
	code, body = httpGet(t, m, "/dir/status", &ds)
	if code != http.StatusOK || len(ds.Topology.DataCenters) != 1 {
		t.Fatalf("dir status: %s", body)
	}
	dc := ds.Topology.DataCenters[0]
	if dc.ID != "dc1" || len(dc.Racks) != 1 || dc.Racks[0].ID != "rack1" || len(dc.Racks[0].DataNodes) != 1 {
		t.Fatalf("dir status topology: %s", body)
	}
	dn := dc.Racks[0].DataNodes[0]
	if dn.URL != f.url() || dn.Max != 20 || dn.Volumes != 9 || dn.Free != 11 || ds.Topology.Free != 11 || len(ds.Topology.Layouts) != 2 {
		t.Fatalf("dir status node: %s", body)
	}

	var vb vacuumBody
	if code, body := httpGet(t, m, "/vol/vacuum", &vb); code != http.StatusOK || vb.Compacted == nil || len(vb.Compacted) != 0 {
		t.Fatalf("vacuum with no garbage: %d %s", code, body)
	}

	for _, c := range []struct{ method, path string }{
		{http.MethodDelete, "/dir/assign"}, {http.MethodPut, "/dir/lookup?volumeId=1"},
		{http.MethodPost, "/cluster/status"}, {http.MethodPost, "/dir/status"}, {http.MethodDelete, "/vol/grow"},
	} {
		var e errorBody
		code, body := httpDo(t, c.method, base+c.path, nil, &e)
		if code != http.StatusMethodNotAllowed || !strings.Contains(e.Error, c.method) {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	if code, body := httpGet(t, m, "/nope", nil); code != http.StatusNotFound {
		t.Fatalf("unknown path: %d %s", code, body)
	}
}

func TestBadParams(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f := newFake(t, "", "", 20)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	for _, c := range []struct{ path, names string }{
		{"/dir/assign?count=abc", "count"},
		{"/dir/assign?count=-1", "count"},
		{"/dir/assign?count=99999999999", "count"},
		{"/dir/assign?replication=9", "replication"},
		{"/dir/assign?replication=0000", "replication"},
		{"/dir/assign?replication=300", "replication"},
		{"/dir/assign?ttl=5x", "ttl"},
		{"/dir/assign?ttl=999d", "ttl"},
		{"/dir/assign?collection=a/b", "collection"},
		{"/dir/assign?collection=..", "collection"},
		{"/dir/assign?collection=-x", "collection"},
		{"/dir/assign?collection=.x", "collection"},
		{"/dir/lookup", "volumeId"},
		{"/dir/lookup?volumeId=abc", "volumeId"},
		{"/dir/lookup?volumeId=3,zz", "volumeId"},
		{"/vol/grow?count=x", "count"},
		{"/vol/grow?count=5000", "count"},
		{"/vol/grow?replication=01", "replication"},
		{"/vol/vacuum?garbageThreshold=2", "garbageThreshold"},
		{"/vol/vacuum?garbageThreshold=abc", "garbageThreshold"},
		{"/vol/vacuum?volumeId=x", "volumeId"},
		{"/dir/assign?count=%zz", "bad request parameters"},
	} {
		var e errorBody
		code, body := httpGet(t, m, c.path, &e)
		if code != http.StatusBadRequest || !strings.Contains(e.Error, c.names) {
			t.Errorf("%s: %d %s, want 400 naming %s", c.path, code, body, c.names)
		}
	}
	if got := f.volumeIDs(); len(got) != 0 {
		t.Fatalf("bad requests grew volumes: %v", got)
	}

	cl := masterClient(t, m)
	ctx := context.Background()
	if _, err := cl.Assign(ctx, &masterpb.AssignRequest{Replication: "xx"}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "replication") {
		t.Errorf("gRPC bad replication: %v", err)
	}
	if _, err := cl.Assign(ctx, &masterpb.AssignRequest{Ttl: "1q"}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("gRPC bad ttl: %v", err)
	}
	if _, err := cl.Assign(ctx, &masterpb.AssignRequest{Count: MaxAssignCount + 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC bad count: %v", err)
	}
	if _, err := cl.LookupVolume(ctx, &masterpb.LookupVolumeRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC empty lookup: %v", err)
	}
	if _, err := cl.Vacuum(ctx, &masterpb.VacuumRequest{GarbageThreshold: 2}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC bad threshold: %v", err)
	}
	if _, err := cl.Vacuum(ctx, &masterpb.VacuumRequest{VolumeId: 77}); status.Code(err) != codes.NotFound {
		t.Errorf("gRPC vacuum of unknown volume: %v", err)
	}
	resp, err := cl.LookupVolume(ctx, &masterpb.LookupVolumeRequest{VolumeIds: []uint32{77}})
	if err != nil || len(resp.GetVolumes()) != 1 || !strings.Contains(resp.GetVolumes()[0].GetError(), "not found") {
		t.Errorf("gRPC lookup of unknown volume: %v %v", resp, err)
	}
}

func TestVacuum(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f1 := newFake(t, "", "", 20)
	f2 := newFake(t, "", "", 20)
	f1.connect(m.GRPCAddr())
	f2.connect(m.GRPCAddr())
	waitNodes(t, m, f1, f2)
	var g growBody
	if code, body := httpGet(t, m, "/vol/grow?count=3&replication=001", &g); code != http.StatusOK || g.Count != 3 {
		t.Fatalf("grow: %d %s", code, body)
	}
	dirty, clean := g.VolumeIDs[0], g.VolumeIDs[1]
	f1.setGarbage(dirty, 0.5) // only one replica reports garbage
	f1.setGarbage(clean, 0.1)
	f2.setGarbage(clean, 0.2)

	var vb vacuumBody
	if code, body := httpGet(t, m, "/vol/vacuum", &vb); code != http.StatusOK || len(vb.Compacted) != 1 || vb.Compacted[0] != dirty {
		t.Fatalf("vacuum at the default threshold 0.3: %d %s", code, body)
	}
	for _, f := range []*fakeVolume{f1, f2} {
		if got := f.vacuumedIDs(); len(got) != 1 || got[0] != dirty {
			t.Fatalf("replica %s vacuumed %v, want [%d]", f.url(), got, dirty)
		}
	}
	// A lower threshold catches the other, and gRPC works the same.
	resp, err := masterClient(t, m).Vacuum(context.Background(), &masterpb.VacuumRequest{GarbageThreshold: 0.15})
	if err != nil || len(resp.GetCompactedVolumeIds()) != 1 || resp.GetCompactedVolumeIds()[0] != clean {
		t.Fatalf("gRPC vacuum at 0.15: %v %v", resp, err)
	}
	if code, body := httpGet(t, m, "/vol/vacuum?garbageThreshold=0.01&volumeId="+strconv.Itoa(int(dirty)), &vb); code != http.StatusOK || len(vb.Compacted) != 0 {
		t.Fatalf("vacuum of an already compacted volume: %d %s", code, body)
	}
}

func TestVacuumLoop(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.VacuumInterval = 20 * time.Millisecond
	m, _ := startMaster(t, cfg)
	f := newFake(t, "", "", 20)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	vid := parseFid(t, assignHTTP(t, m, "").Fid).VolumeID
	f.setGarbage(vid, 0.9)
	waitFor(t, "the vacuum loop to compact the volume", func() bool { return contains(f.vacuumedIDs(), vid) })
}

func TestClusterStatusGRPC(t *testing.T) {
	m, _ := startMaster(t, testConfig(t, t.TempDir()))
	f := newFake(t, "dcX", "rY", 4)
	f.connect(m.GRPCAddr())
	waitNodes(t, m, f)
	assignHTTP(t, m, "")
	resp, err := masterClient(t, m).ClusterStatus(context.Background(), &masterpb.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetIsLeader() || resp.GetTotalSlots() != 4 || resp.GetFreeSlots() != 0 || len(resp.GetDataCenters()) != 1 {
		t.Fatalf("status: %v", resp)
	}
	rk := resp.GetDataCenters()[0].GetRacks()[0]
	if resp.GetDataCenters()[0].GetId() != "dcX" || rk.GetId() != "rY" || len(rk.GetNodes()[0].GetVolumes()) != 4 {
		t.Fatalf("status topology: %v", resp)
	}
}

func TestConfigAndLifecycle(t *testing.T) {
	good := testConfig(t, t.TempDir())
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no meta dir":     func(c *Config) { c.MetaDir = "" },
		"size limit":      func(c *Config) { c.VolumeSizeLimitMB = MaxVolumeSizeLimitMB + 1 },
		"replication":     func(c *Config) { c.DefaultReplication = "abc" },
		"threshold":       func(c *Config) { c.GarbageThreshold = 1.5 },
		"node timeout":    func(c *Config) { c.NodeTimeout = 0 },
		"vacuum interval": func(c *Config) { c.VacuumInterval = -time.Second },
		"grow count":      func(c *Config) { c.GrowCount = map[int]int{1: 0} },
		"http addr":       func(c *Config) { c.HTTPAddr = "" },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}

	// Close before Serve releases the ports; Serve after Close fails.
	m, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := m.Serve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("serve after close: %v", err)
	}

	// Cancelling Serve's context stops it cleanly.
	m, err = New(good)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	<-m.Ready()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after cancel: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkAssignHTTP(b *testing.B) {
	cfg := DefaultConfig()
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.MetaDir, cfg.VacuumInterval, cfg.Logger = "127.0.0.1:0", "127.0.0.1:0", b.TempDir(), 0, nil
	m, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	go m.Serve(context.Background())
	defer m.Close()
	<-m.Ready()
	// Register a server with writable volumes directly; no growth in the loop.
	for id := uint32(1); id <= 7; id++ {
		if err := m.seq.SetMaxVolumeID(id); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := m.updateNode(benchReport(), 0, 0); err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	u := "http://" + m.HTTPAddr() + "/dir/assign"
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(u)
			if err != nil {
				b.Error(err)
				return
			}
			var a assignBody
			err = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Errorf("assign: %d %v", resp.StatusCode, err)
				return
			}
		}
	})
}

func benchReport() topology.NodeReport {
	r := topology.NodeReport{URL: "127.0.0.1:1", GRPCAddress: "127.0.0.1:2", MaxVolumeCount: 10}
	for id := uint32(1); id <= 7; id++ {
		r.Volumes = append(r.Volumes, topology.VolumeInfo{ID: id})
	}
	return r
}
