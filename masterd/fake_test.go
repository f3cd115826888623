package masterd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/api/volumepb"
)

// fakeVolume is a volume server for tests: it records allocations and
// vacuums on its own gRPC listener and keeps a heartbeat stream open to a
// master, reporting its volumes.
type fakeVolume struct {
	volumepb.UnimplementedVolumeServer
	t          *testing.T
	dc, rack   string
	max        uint32
	httpLn     net.Listener // reserves the blob API port; never served
	grpcLn     net.Listener
	srv        *grpc.Server
	silent     atomic.Bool // keep the stream open but send nothing
	heartbeats atomic.Int64

	mu        sync.Mutex
	vols      map[uint32]*masterpb.VolumeInfo
	garbage   map[uint32]float64
	vacuumed  []uint32
	allocErr  error
	maxKey    uint64
	sizeLimit uint64 // from the last heartbeat response

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newFake(t *testing.T, dc, rack string, max uint32) *fakeVolume {
	t.Helper()
	f := &fakeVolume{t: t, dc: dc, rack: rack, max: max,
		vols: map[uint32]*masterpb.VolumeInfo{}, garbage: map[uint32]float64{}, kick: make(chan struct{}, 1)}
	var err error
	if f.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if f.grpcLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	f.srv = grpc.NewServer()
	volumepb.RegisterVolumeServer(f.srv, f)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = f.srv.Serve(f.grpcLn)
	}()
	t.Cleanup(func() {
		f.disconnect()
		f.srv.Stop()
		<-served
		f.httpLn.Close()
	})
	return f
}

func (f *fakeVolume) port() int     { return f.httpLn.Addr().(*net.TCPAddr).Port }
func (f *fakeVolume) grpcPort() int { return f.grpcLn.Addr().(*net.TCPAddr).Port }
func (f *fakeVolume) url() string   { return "127.0.0.1:" + strconv.Itoa(f.port()) }
func (f *fakeVolume) publicURL() string {
	return "localhost:" + strconv.Itoa(f.port())
}

func (f *fakeVolume) AllocateVolume(ctx context.Context, req *volumepb.AllocateVolumeRequest) (*volumepb.AllocateVolumeResponse, error) {
	f.mu.Lock()
	if f.allocErr != nil {
		f.mu.Unlock()
		return nil, f.allocErr
	}
	if _, ok := f.vols[req.GetVolumeId()]; ok {
		f.mu.Unlock()
		return nil, fmt.Errorf("volume %d exists", req.GetVolumeId())
	}
	f.vols[req.GetVolumeId()] = &masterpb.VolumeInfo{Id: req.GetVolumeId(), Collection: req.GetCollection(),
		Replication: req.GetReplication(), Ttl: req.GetTtl(), Version: 1}
	f.mu.Unlock()
	f.poke()
	return &volumepb.AllocateVolumeResponse{}, nil
}

func (f *fakeVolume) DeleteVolume(ctx context.Context, req *volumepb.DeleteVolumeRequest) (*volumepb.DeleteVolumeResponse, error) {
	f.mu.Lock()
	delete(f.vols, req.GetVolumeId())
	f.mu.Unlock()
	f.poke()
	return &volumepb.DeleteVolumeResponse{}, nil
}

func (f *fakeVolume) VacuumCheck(ctx context.Context, req *volumepb.VacuumCheckRequest) (*volumepb.VacuumCheckResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[req.GetVolumeId()]; !ok {
		return nil, fmt.Errorf("volume %d not found", req.GetVolumeId())
	}
	return &volumepb.VacuumCheckResponse{GarbageRatio: f.garbage[req.GetVolumeId()]}, nil
}

func (f *fakeVolume) Vacuum(ctx context.Context, req *volumepb.VacuumVolumeRequest) (*volumepb.VacuumVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vacuumed = append(f.vacuumed, req.GetVolumeId())
	f.garbage[req.GetVolumeId()] = 0
	return &volumepb.VacuumVolumeResponse{ReclaimedBytes: 100}, nil
}

// poke asks the heartbeat loop to report now.
func (f *fakeVolume) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *fakeVolume) volumeIDs() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []uint32
	for id := range f.vols {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (f *fakeVolume) vacuumedIDs() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint32(nil), f.vacuumed...)
}

func (f *fakeVolume) setSize(size uint64) {
	f.mu.Lock()
	for _, v := range f.vols {
		v.Size = size
	}
	f.mu.Unlock()
	f.poke()
}

func (f *fakeVolume) setGarbage(id uint32, ratio float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.garbage[id] = ratio
}

func (f *fakeVolume) heartbeat() *masterpb.Heartbeat {
	f.mu.Lock()
	defer f.mu.Unlock()
	hb := &masterpb.Heartbeat{Ip: "127.0.0.1", Port: uint32(f.port()), GrpcPort: uint32(f.grpcPort()),
		PublicUrl: f.publicURL(), DataCenter: f.dc, Rack: f.rack, MaxVolumeCount: f.max, MaxFileKey: f.maxKey}
	for _, v := range f.vols {
		hb.Volumes = append(hb.Volumes, proto.Clone(v).(*masterpb.VolumeInfo))
	}
	return hb
}

// connect opens a heartbeat stream to the master's gRPC address and keeps
// reporting (on every change and every 20 ms) until disconnect.
func (f *fakeVolume) connect(master string) {
	f.t.Helper()
	f.disconnect()
	cc, err := grpc.NewClient(master, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := masterpb.NewMasterClient(cc).SendHeartbeat(ctx)
	if err != nil {
		cancel()
		cc.Close()
		f.t.Fatal(err)
	}
	f.cancel, f.done = cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		defer cc.Close()
		recvDone := make(chan struct{})
		go func() {
			defer close(recvDone)
			for {
				resp, err := stream.Recv()
				if err != nil {
					return
				}
				f.mu.Lock()
				f.sizeLimit = resp.GetVolumeSizeLimit()
				f.mu.Unlock()
			}
		}()
		defer func() { <-recvDone }()
		defer cancel()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if !f.silent.Load() {
				if err := stream.Send(f.heartbeat()); err != nil {
					return
				}
				f.heartbeats.Add(1)
			}
			select {
			case <-ctx.Done():
				return
			case <-f.kick:
			case <-tick.C:
			}
		}
	}(f.done)
}

// disconnect closes the heartbeat stream, as a crashed server would.
func (f *fakeVolume) disconnect() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel, f.done = nil, nil
	}
}

// --- master helpers ---

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testConfig(t *testing.T, dir string) Config {
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.MetaDir = dir
	cfg.VacuumInterval = 0
	cfg.NodeTimeout = 10 * time.Second
	cfg.AllocateTimeout = 10 * time.Second
	cfg.Logger = testLogger(t)
	return cfg
}

// startMaster starts a master and closes it at cleanup (or earlier with
// the returned stop function).
func startMaster(t *testing.T, cfg Config) (*Server, func()) {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- m.Serve(context.Background()) }()
	select {
	case <-m.Ready():
	case err := <-served:
		t.Fatalf("serve: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := m.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if err := <-served; err != nil {
				t.Errorf("serve returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return m, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNodes waits until the master knows exactly the given fakes.
func waitNodes(t *testing.T, m *Server, fakes ...*fakeVolume) {
	t.Helper()
	want := map[string]bool{}
	for _, f := range fakes {
		want[f.url()] = true
	}
	waitFor(t, fmt.Sprintf("%d volume servers", len(fakes)), func() bool {
		snap := m.topo.Snapshot()
		got := 0
		for _, dc := range snap.DataCenters {
			for _, rk := range dc.Racks {
				for _, n := range rk.Nodes {
					if !want[n.URL] {
						return false
					}
					got++
				}
			}
		}
		return got == len(want)
	})
}

func masterClient(t *testing.T, m *Server) masterpb.MasterClient {
	t.Helper()
	cc, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return masterpb.NewMasterClient(cc)
}

// httpDo sends a request and decodes the JSON body into out (if non-nil);
// it returns the status code and the raw body.
func httpDo(t *testing.T, method, rawURL string, form url.Values, out any) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q, body %s", method, rawURL, ct, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, rawURL, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

func httpGet(t *testing.T, m *Server, pathQuery string, out any) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, "http://"+m.HTTPAddr()+pathQuery, nil, out)
}

var errAllocate = errors.New("disk on fire")
