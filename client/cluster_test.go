package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/masterpb"
)

// fakeVolume is a volume server in miniature: blobs in a map, a request
// counter per method, and a switch that makes every request fail.
type fakeVolume struct {
	srv *httptest.Server

	mu    sync.Mutex
	blobs map[string][]byte
	hits  map[string]int // method -> requests
	fail  int            // when not 0, every request gets this status
}

func newFakeVolume(t *testing.T) *fakeVolume {
	t.Helper()
	v := &fakeVolume{blobs: map[string][]byte{}, hits: map[string]int{}}
	v.srv = httptest.NewServer(http.HandlerFunc(v.serve))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *fakeVolume) host() string { return strings.TrimPrefix(v.srv.URL, "http://") }

func (v *fakeVolume) serve(w http.ResponseWriter, r *http.Request) {
	fid := strings.TrimPrefix(r.URL.Path, "/")
	v.mu.Lock()
	v.hits[r.Method]++
	fail := v.fail
	data, ok := v.blobs[fid]
	v.mu.Unlock()
	if fail != 0 {
		writeJSONReply(w, fail, map[string]string{"error": fmt.Sprintf("injected %d", fail)})
		return
	}
	switch r.Method {
	case http.MethodGet:
		if !ok {
			writeJSONReply(w, http.StatusNotFound, map[string]string{"error": "no blob " + fid})
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	case http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeJSONReply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		v.mu.Lock()
		v.blobs[fid] = body
		v.mu.Unlock()
		writeJSONReply(w, http.StatusCreated, map[string]any{"name": r.URL.Query().Get("name"), "size": len(body), "eTag": "e1"})
	case http.MethodDelete:
		if !ok {
			writeJSONReply(w, http.StatusNotFound, map[string]string{"error": "no blob " + fid})
			return
		}
		v.mu.Lock()
		delete(v.blobs, fid)
		v.mu.Unlock()
		writeJSONReply(w, http.StatusAccepted, map[string]any{"size": len(data)})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (v *fakeVolume) put(fid string, data []byte) {
	v.mu.Lock()
	v.blobs[fid] = data
	v.mu.Unlock()
}

func (v *fakeVolume) blob(fid string) ([]byte, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, ok := v.blobs[fid]
	return b, ok
}

func (v *fakeVolume) setFail(code int) {
	v.mu.Lock()
	v.fail = code
	v.mu.Unlock()
}

func (v *fakeVolume) count(method string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hits[method]
}

func newTestCluster(t *testing.T, fm *fakeMaster) *Cluster {
	t.Helper()
	c, err := NewCluster(ClusterConfig{
		Master: MasterClientConfig{Address: startMaster(t, fm), LookupTTL: time.Hour},
		Blobs:  BlobClientConfig{Timeout: 30 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestNewClusterNeedsMaster(t *testing.T) {
	if _, err := NewCluster(ClusterConfig{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewCluster without master: %v, want ErrInvalid", err)
	}
}

func TestClusterWrite(t *testing.T) {
	v1, v2 := newFakeVolume(t), newFakeVolume(t)
	fm := &fakeMaster{}
	fm.setAssign(func(req *masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return &masterpb.AssignResponse{
			Fid: testFid, Count: req.Count,
			Location: &masterpb.Location{Url: v2.host()},
			Replicas: []*masterpb.Location{{Url: v1.host()}, {Url: v2.host()}},
		}, nil
	})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	data := []byte("some file contents")

	fid, res, err := c.Write(ctx, data, WriteOptions{
		Assign: AssignRequest{Replication: "001", Collection: "docs"},
		Upload: UploadOptions{Name: "a.txt", Mime: "text/plain"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if fid != testFid {
		t.Errorf("fid = %q, want %q", fid, testFid)
	}
	if res.Size != int64(len(data)) || res.Name != "a.txt" {
		t.Errorf("result = %+v", res)
	}
	reqs := fm.assigns()
	if len(reqs) != 1 || reqs[0].Replication != "001" || reqs[0].Collection != "docs" || reqs[0].Count != 1 {
		t.Errorf("assign requests = %v", reqs)
	}
	// The upload goes to the assigned location only; forwarding is the volume server's job.
	if got, ok := v2.blob(testFid); !ok || !bytes.Equal(got, data) {
		t.Errorf("assigned volume holds %q, %v; want the data", got, ok)
	}
	if n := v1.count(http.MethodPut); n != 0 {
		t.Errorf("non-assigned replica got %d PUTs", n)
	}

	// The assignment primed the location cache: reading back needs no lookup.
	v1.put(testFid, data)
	got, err := c.Read(ctx, fid)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Read after Write = %q, %v", got, err)
	}
	if n := fm.lookups(); n != 0 {
		t.Errorf("Read after Write asked the master %d times, want 0", n)
	}
}

func TestClusterWriteAssignFails(t *testing.T) {
	fm := &fakeMaster{}
	fm.setAssign(func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return nil, status.Error(codes.ResourceExhausted, "no free volumes")
	})
	c := newTestCluster(t, fm)
	fid, _, err := c.Write(testCtx(t), []byte("x"), WriteOptions{})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "no free volumes") || fid != "" {
		t.Fatalf("Write = %q, %v; want ErrNoSpace", fid, err)
	}
}

func TestClusterWriteUploadFailsInvalidatesCache(t *testing.T) {
	v := newFakeVolume(t)
	v.setFail(http.StatusInsufficientStorage)
	fm := &fakeMaster{}
	fm.setAssign(func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return &masterpb.AssignResponse{
			Fid: testFid, Count: 1,
			Location: &masterpb.Location{Url: v.host()},
			Replicas: []*masterpb.Location{{Url: v.host()}},
		}, nil
	})
	fm.setVolumes(map[uint32][]string{3: {v.host()}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	fid, _, err := c.Write(ctx, []byte("x"), WriteOptions{})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "injected 507") || fid != "" {
		t.Fatalf("Write = %q, %v; want ErrNoSpace with the server's message", fid, err)
	}
	if _, err := c.Master.Lookup(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if n := fm.lookups(); n != 1 {
		t.Errorf("after a failed upload the master saw %d lookups, want 1 (cache dropped)", n)
	}
}

func TestClusterReadFallsBackWhenReplicaDown(t *testing.T) {
	good := newFakeVolume(t)
	data := []byte("replicated bytes")
	good.put(testFid, data)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {deadHost(t), good.host()}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	// Replicas are tried in random order; enough reads make the dead one come first.
	const reads = 32
	for range reads {
		got, err := c.Read(ctx, testFid)
		if err != nil {
			t.Fatalf("Read with one replica down: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("Read = %q, want %q", got, data)
		}
	}
	if n := good.count(http.MethodGet); n != reads {
		t.Errorf("good replica served %d of %d reads", n, reads)
	}
	if n := fm.lookups(); n != 1 {
		t.Errorf("master saw %d lookups, want 1 (successful reads keep the cache)", n)
	}
}

func TestClusterReadFallsBackOn500(t *testing.T) {
	bad, good := newFakeVolume(t), newFakeVolume(t)
	bad.setFail(http.StatusInternalServerError)
	data := []byte("0123456789")
	good.put(testFid, data)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {bad.host(), good.host()}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	const reads = 32
	for i := range reads {
		var got []byte
		var err error
		want := data
		if i%2 == 0 {
			got, err = c.Read(ctx, testFid)
		} else {
			got, err = c.ReadRange(ctx, testFid, 3, 4)
			want = data[3:7]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d with one replica failing = %q, %v; want %q", i, got, err, want)
		}
	}
	// With a random order over 32 reads the failing replica is asked first
	// at least once unless something pins the order.
	if n := bad.count(http.MethodGet); n == 0 {
		t.Errorf("the failing replica was never tried: fallback not exercised")
	}
	if n := good.count(http.MethodGet); n != reads {
		t.Errorf("good replica served %d of %d reads", n, reads)
	}
}

func TestClusterReadAllNotFound(t *testing.T) {
	v1, v2 := newFakeVolume(t), newFakeVolume(t)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {v1.host(), v2.host()}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	_, err := c.Read(ctx, testFid)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read of a missing blob = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "no blob "+testFid) || !strings.Contains(err.Error(), testFid) {
		t.Errorf("error %q lost the servers' message", err)
	}
	// A 404 from one replica may be a replica that missed the write: ask all.
	if v1.count(http.MethodGet) != 1 || v2.count(http.MethodGet) != 1 {
		t.Errorf("replicas asked %d and %d times, want 1 each", v1.count(http.MethodGet), v2.count(http.MethodGet))
	}
}

func TestClusterReadAllDown(t *testing.T) {
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {deadHost(t), deadHost(t)}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	_, err := c.Read(ctx, testFid)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read with every replica down = %v, want ErrUnavailable", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("Read with every replica down claims not found: %v", err)
	}
	// Every replica down: the read asked for fresh locations a bounded
	// number of times, then gave up.
	if n := fm.lookups(); n != 1+readRefreshes {
		t.Errorf("master saw %d lookups, want %d (the first and %d refreshes)", n, 1+readRefreshes, readRefreshes)
	}
	// The failed read dropped the cached locations: the next read asks again.
	_, _ = c.Read(ctx, testFid)
	if n := fm.lookups(); n != 2*(1+readRefreshes) {
		t.Errorf("master saw %d lookups after two reads, want %d", n, 2*(1+readRefreshes))
	}
}

// TestClusterReadRefreshesStaleLocations: the cached locations of a volume
// were looked up while a replica was away and list only one that is now
// down. The read asks the master again and reads from the replica that is
// back, instead of failing with every known replica down.
func TestClusterReadRefreshesStaleLocations(t *testing.T) {
	back := newFakeVolume(t)
	data := []byte("served by the replica that came back")
	back.put(testFid, data)
	gone := deadHost(t)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {gone}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	if _, err := c.Master.Lookup(ctx, 3); err != nil { // cached for an hour
		t.Fatal(err)
	}
	fm.setVolumes(map[uint32][]string{3: {gone, back.host()}})
	got, err := c.Read(ctx, testFid)
	if err != nil {
		t.Fatalf("Read with the cached replica down and another back: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("Read = %q, want %q", got, data)
	}
	if n := fm.lookups(); n != 2 {
		t.Errorf("master saw %d lookups, want 2 (the cached one, one refresh)", n)
	}
	// The fresh answer stays cached: the next read needs no lookup.
	if _, err := c.ReadRange(ctx, testFid, 1, 2); err != nil {
		t.Fatal(err)
	}
	if n := fm.lookups(); n != 2 {
		t.Errorf("master saw %d lookups after a second read, want 2", n)
	}
}

// TestClusterReadWaitsForMasterToListReplica: the only replica the master
// lists is down, and the master learns of the restarted one only at the
// third lookup. The read keeps refreshing (within its bound) until then.
func TestClusterReadWaitsForMasterToListReplica(t *testing.T) {
	back := newFakeVolume(t)
	data := []byte("x")
	back.put(testFid, data)
	gone := deadHost(t)
	fm := &fakeMaster{}
	var mu sync.Mutex
	calls := 0
	fm.setLookup(func(*masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
		mu.Lock()
		calls++
		url := gone
		if calls >= 3 {
			url = back.host()
		}
		mu.Unlock()
		return &masterpb.LookupVolumeResponse{Volumes: []*masterpb.VolumeLocations{
			{VolumeId: 3, Locations: []*masterpb.Location{{Url: url, PublicUrl: url}}}}}, nil
	})
	c := newTestCluster(t, fm)
	got, err := c.Read(testCtx(t), testFid)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Read once the master lists the restarted replica = %q, %v; want %q", got, err, data)
	}
	if n := fm.lookups(); n != 3 {
		t.Errorf("master saw %d lookups, want 3", n)
	}
}

// TestClusterReadRetriesKnownReplicaWhenMasterListsNone: the master lists
// no live replica of the volume (it has not heard from the restarted
// server yet), but the cached replica is back: the read retries it. While
// that replica is still down the read fails as unavailable, never as not
// found because of the master's answer.
func TestClusterReadRetriesKnownReplicaWhenMasterListsNone(t *testing.T) {
	v := newFakeVolume(t)
	data := []byte("known replica")
	v.put(testFid, data)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {v.host()}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	if _, err := c.Master.Lookup(ctx, 3); err != nil {
		t.Fatal(err)
	}
	fm.setVolumes(map[uint32][]string{}) // "volume 3 not found"
	v.setFail(http.StatusServiceUnavailable)
	_, err := c.Read(ctx, testFid)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Fatalf("Read with the replica down and the master listing none = %v, want ErrUnavailable and not ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "volume 3 not found") {
		t.Errorf("error %q does not say the refresh failed", err)
	}
	if n := v.count(http.MethodGet); n != 1+readRefreshes {
		t.Errorf("the known replica was asked %d times, want %d", n, 1+readRefreshes)
	}

	// The replica comes back during the first refresh, before the master
	// has heard from it.
	fm.setVolumes(map[uint32][]string{3: {v.host()}})
	if _, err := c.Master.Lookup(ctx, 3); err != nil {
		t.Fatal(err)
	}
	fm.setLookup(func(*masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
		v.setFail(0)
		return &masterpb.LookupVolumeResponse{Volumes: []*masterpb.VolumeLocations{{VolumeId: 3, Error: "volume 3 not found"}}}, nil
	})
	v.setFail(http.StatusServiceUnavailable)
	got, err := c.Read(ctx, testFid)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Read once the known replica is back = %q, %v; want %q", got, err, data)
	}
}

func TestClusterReadStopsOnInvalid(t *testing.T) {
	v1, v2 := newFakeVolume(t), newFakeVolume(t)
	v1.setFail(http.StatusBadRequest)
	v2.setFail(http.StatusBadRequest)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {v1.host(), v2.host()}})
	c := newTestCluster(t, fm)
	if _, err := c.Read(testCtx(t), testFid); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Read = %v, want ErrInvalid", err)
	}
	if n := v1.count(http.MethodGet) + v2.count(http.MethodGet); n != 1 {
		t.Errorf("a bad request was sent to %d replicas, want 1", n)
	}
}

func TestClusterReadBadFileIDAndUnknownVolume(t *testing.T) {
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	for _, fid := range []string{"", "nonsense", "3,zz", "x,01637037d6"} {
		if _, err := c.Read(ctx, fid); !errors.Is(err, ErrInvalid) {
			t.Errorf("Read(%q) = %v, want ErrInvalid", fid, err)
		}
		if err := c.Delete(ctx, fid); !errors.Is(err, ErrInvalid) {
			t.Errorf("Delete(%q) = %v, want ErrInvalid", fid, err)
		}
	}
	if n := fm.lookups(); n != 0 {
		t.Errorf("bad fids reached the master %d times", n)
	}
	if _, err := c.Read(ctx, testFid); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "volume 3 not found") {
		t.Errorf("Read on an unknown volume = %v, want ErrNotFound", err)
	}
}

func TestClusterDelete(t *testing.T) {
	v1, v2 := newFakeVolume(t), newFakeVolume(t)
	v1.put(testFid, []byte("a"))
	v2.put(testFid, []byte("a"))
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {v1.host(), v2.host()}})
	c := newTestCluster(t, fm)
	if err := c.Delete(testCtx(t), testFid); err != nil {
		t.Fatal(err)
	}
	// One replica gets the request and forwards it itself.
	d1, d2 := v1.count(http.MethodDelete), v2.count(http.MethodDelete)
	if d1+d2 != 1 {
		t.Fatalf("DELETE sent %d+%d times, want once", d1, d2)
	}
	deletedFrom := v1
	if d2 == 1 {
		deletedFrom = v2
	}
	if _, ok := deletedFrom.blob(testFid); ok {
		t.Errorf("blob still on the replica that got the DELETE")
	}
}

func TestClusterDeleteFallsBackWhenReplicaDown(t *testing.T) {
	good := newFakeVolume(t)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {deadHost(t), good.host()}})
	c := newTestCluster(t, fm)
	ctx := testCtx(t)
	for i := range 16 {
		fid := fmt.Sprintf("3,%02x637037d6", i+1)
		good.put(fid, []byte("x"))
		if err := c.Delete(ctx, fid); err != nil {
			t.Fatalf("Delete(%s) with one replica down: %v", fid, err)
		}
		if _, ok := good.blob(fid); ok {
			t.Fatalf("Delete(%s) left the blob on the live replica", fid)
		}
	}
}

func TestClusterDeleteNotFound(t *testing.T) {
	v1, v2 := newFakeVolume(t), newFakeVolume(t)
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {v1.host(), v2.host()}})
	c := newTestCluster(t, fm)
	err := c.Delete(testCtx(t), testFid)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a missing blob = %v, want ErrNotFound", err)
	}
	if n := v1.count(http.MethodDelete) + v2.count(http.MethodDelete); n != 1 {
		t.Errorf("DELETE of a missing blob sent %d times, want 1 (404 is final)", n)
	}
}

func TestClusterDeleteAllDown(t *testing.T) {
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{3: {deadHost(t), deadHost(t)}})
	c := newTestCluster(t, fm)
	if err := c.Delete(testCtx(t), testFid); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Delete with every replica down = %v, want ErrUnavailable", err)
	}
}
