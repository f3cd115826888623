package filerd

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// fakeVolume stands in for a volume server's blob DELETE.
type fakeVolume struct {
	srv *httptest.Server

	mu      sync.Mutex
	deleted map[string]int  // fid -> DELETE requests that succeeded
	fail    map[string]bool // fids whose DELETE answers 500
	missing map[string]bool // fids whose DELETE answers 404
}

func newFakeVolume(t *testing.T) *fakeVolume {
	v := &fakeVolume{deleted: map[string]int{}, fail: map[string]bool{}, missing: map[string]bool{}}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fid := strings.TrimPrefix(r.URL.Path, "/")
		if r.Method != http.MethodDelete {
			http.Error(w, `{"error":"method"}`, http.StatusMethodNotAllowed)
			return
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		switch {
		case v.fail[fid]:
			http.Error(w, `{"error":"injected failure"}`, http.StatusInternalServerError)
		case v.missing[fid]:
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		default:
			v.deleted[fid]++
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *fakeVolume) host() string { return strings.TrimPrefix(v.srv.URL, "http://") }

func (v *fakeVolume) setFail(fid string, fail bool) {
	v.mu.Lock()
	v.fail[fid] = fail
	v.mu.Unlock()
}

func (v *fakeVolume) deletions(fid string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.deleted[fid]
}

// fakeMaster answers Assign, LookupVolume and ClusterStatus; volume
// testVolume lives on the fake volume server, every other one is unknown.
type fakeMaster struct {
	masterpb.UnimplementedMasterServer
	volHost string

	mu      sync.Mutex
	nextKey uint64
}

const testVolume = 3

func (m *fakeMaster) Assign(_ context.Context, req *masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextKey++
	fid := needle.FileID{VolumeID: testVolume, Key: m.nextKey, Cookie: 0x1234abcd}
	count := max(req.Count, 1)
	m.nextKey += count - 1
	loc := &masterpb.Location{Url: m.volHost, PublicUrl: m.volHost}
	return &masterpb.AssignResponse{Fid: fid.String(), Count: count, Location: loc, Replicas: []*masterpb.Location{loc}}, nil
}

func (m *fakeMaster) LookupVolume(_ context.Context, req *masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
	resp := &masterpb.LookupVolumeResponse{}
	for _, vid := range req.VolumeIds {
		if vid == testVolume {
			resp.Volumes = append(resp.Volumes, &masterpb.VolumeLocations{VolumeId: vid,
				Locations: []*masterpb.Location{{Url: m.volHost, PublicUrl: m.volHost}}})
		} else {
			resp.Volumes = append(resp.Volumes, &masterpb.VolumeLocations{VolumeId: vid, Error: "volume not found"})
		}
	}
	return resp, nil
}

func (m *fakeMaster) ClusterStatus(context.Context, *masterpb.ClusterStatusRequest) (*masterpb.ClusterStatusResponse, error) {
	return &masterpb.ClusterStatusResponse{
		VolumeSizeLimit: 1000, FreeSlots: 2, TotalSlots: 4,
		DataCenters: []*masterpb.DataCenterInfo{{Id: "dc1", Racks: []*masterpb.RackInfo{{Id: "r1", Nodes: []*masterpb.NodeInfo{{
			Url: m.volHost,
			Volumes: []*masterpb.VolumeInfo{
				{Id: testVolume, Size: 300},        // 700 bytes of room
				{Id: 4, Size: 100, Full: true},     // none
				{Id: 5, Size: 100, ReadOnly: true}, // none
			},
		}}}}}},
	}, nil
}

// testFiler is a filer served in-process with a fake master and volume.
type testFiler struct {
	s      *Server
	vol    *fakeVolume
	master *fakeMaster
	fc     *client.FilerClient
	api    filerpb.FilerClient
	ctx    context.Context
}

func startFakeMaster(t *testing.T, vol *fakeVolume) (*fakeMaster, string) {
	t.Helper()
	m := &fakeMaster{volHost: vol.host()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	masterpb.RegisterMasterServer(gs, m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return m, ln.Addr().String()
}

func testConfig(t *testing.T, masterAddr string) Config {
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Dir = t.TempDir()
	cfg.MasterAddr = masterAddr
	cfg.Logger = nil
	cfg.GCInterval = time.Hour // tests run GC passes themselves unless they test the loop
	return cfg
}

// startFiler runs New and Serve and dials a FilerClient; cleanup closes both.
func startFiler(t *testing.T, tweak func(*Config)) *testFiler {
	t.Helper()
	vol := newFakeVolume(t)
	m, addr := startFakeMaster(t, vol)
	cfg := testConfig(t, addr)
	if tweak != nil {
		tweak(&cfg)
	}
	tf := &testFiler{vol: vol, master: m, ctx: context.Background()}
	tf.s = serve(t, cfg)
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: tf.s.GRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	tf.fc, tf.api = fc, fc.API()
	return tf
}

// serve starts a server from cfg and waits for it to be ready.
func serve(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return s
}

// wantErrno checks a call failed with the errno detail and sentinel.
func wantErrno(t *testing.T, err error, errno string, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", errno)
	}
	if got := client.PosixErrno(err); got != errno {
		t.Fatalf("errno = %q, want %q (err %v)", got, errno, err)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("err %v does not wrap %v", err, sentinel)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
