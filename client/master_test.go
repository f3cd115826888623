package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/needle"
)

// fakeMaster answers Assign and LookupVolume from replaceable functions and
// records what it was asked.
type fakeMaster struct {
	masterpb.UnimplementedMasterServer

	mu         sync.Mutex
	assignFn   func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error)
	lookupFn   func(*masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error)
	assignReqs []*masterpb.AssignRequest
	lookupReqs []*masterpb.LookupVolumeRequest
}

func (f *fakeMaster) Assign(_ context.Context, req *masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
	f.mu.Lock()
	f.assignReqs = append(f.assignReqs, req)
	fn := f.assignFn
	f.mu.Unlock()
	if fn == nil {
		return nil, status.Error(codes.Unimplemented, "no assign in this test")
	}
	return fn(req)
}

func (f *fakeMaster) LookupVolume(_ context.Context, req *masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
	f.mu.Lock()
	f.lookupReqs = append(f.lookupReqs, req)
	fn := f.lookupFn
	f.mu.Unlock()
	if fn == nil {
		return nil, status.Error(codes.Unimplemented, "no lookup in this test")
	}
	return fn(req)
}

func (f *fakeMaster) setAssign(fn func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error)) {
	f.mu.Lock()
	f.assignFn = fn
	f.mu.Unlock()
}

func (f *fakeMaster) setLookup(fn func(*masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error)) {
	f.mu.Lock()
	f.lookupFn = fn
	f.mu.Unlock()
}

// setVolumes makes LookupVolume answer from vols (volume id -> blob URLs);
// unknown volumes get an entry with Error set, as a master does.
func (f *fakeMaster) setVolumes(vols map[uint32][]string) {
	f.setLookup(func(req *masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
		resp := &masterpb.LookupVolumeResponse{}
		for _, vid := range req.VolumeIds {
			urls, ok := vols[vid]
			if !ok {
				resp.Volumes = append(resp.Volumes, &masterpb.VolumeLocations{VolumeId: vid, Error: fmt.Sprintf("volume %d not found", vid)})
				continue
			}
			vl := &masterpb.VolumeLocations{VolumeId: vid}
			for _, u := range urls {
				vl.Locations = append(vl.Locations, &masterpb.Location{Url: u, PublicUrl: u})
			}
			resp.Volumes = append(resp.Volumes, vl)
		}
		return resp, nil
	})
}

func (f *fakeMaster) assigns() []*masterpb.AssignRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*masterpb.AssignRequest(nil), f.assignReqs...)
}

func (f *fakeMaster) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lookupReqs)
}

// startMaster serves fm on 127.0.0.1:0 and returns its address; the server
// stops when the test ends.
func startMaster(t *testing.T, fm *fakeMaster) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	masterpb.RegisterMasterServer(srv, fm)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// fakeClock is a settable clock for the location cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestMaster starts fm and returns a client for it using clk (if not nil).
func newTestMaster(t *testing.T, fm *fakeMaster, ttl time.Duration, clk *fakeClock) *MasterClient {
	t.Helper()
	mc, err := NewMasterClient(MasterClientConfig{Address: startMaster(t, fm), LookupTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Close() })
	if clk != nil {
		mc.locs.now = clk.Now
	}
	return mc
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNewMasterClientNeedsAddress(t *testing.T) {
	if _, err := NewMasterClient(MasterClientConfig{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewMasterClient without address: %v, want ErrInvalid", err)
	}
}

func TestAssignMapsFields(t *testing.T) {
	fm := &fakeMaster{}
	loc := func(i int) *masterpb.Location {
		return &masterpb.Location{
			Url:         fmt.Sprintf("10.0.0.%d:8080", i),
			PublicUrl:   fmt.Sprintf("pub%d.example:80", i),
			GrpcAddress: fmt.Sprintf("10.0.0.%d:18080", i),
			DataCenter:  fmt.Sprintf("dc%d", i),
			Rack:        fmt.Sprintf("rack%d", i),
		}
	}
	fm.setAssign(func(req *masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return &masterpb.AssignResponse{
			Fid:      "3,01637037d6",
			Count:    req.Count,
			Location: loc(2),
			Replicas: []*masterpb.Location{loc(1), loc(2)},
		}, nil
	})
	mc := newTestMaster(t, fm, 0, nil)
	ctx := testCtx(t)

	a, err := mc.Assign(ctx, AssignRequest{
		Count: 5, Replication: "010", Collection: "photos", TTL: "3d", DataCenter: "dc1", Rack: "rack9",
	})
	if err != nil {
		t.Fatal(err)
	}
	reqs := fm.assigns()
	if len(reqs) != 1 {
		t.Fatalf("master got %d assign calls, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Count != 5 || r.Replication != "010" || r.Collection != "photos" || r.Ttl != "3d" || r.DataCenter != "dc1" || r.Rack != "rack9" {
		t.Errorf("master got request %v", r)
	}

	if want := (needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}); a.FileID != want {
		t.Errorf("FileID = %+v, want %+v", a.FileID, want)
	}
	if a.Count != 5 {
		t.Errorf("Count = %d, want 5", a.Count)
	}
	want2 := Location{URL: "10.0.0.2:8080", PublicURL: "pub2.example:80", GRPCAddress: "10.0.0.2:18080", DataCenter: "dc2", Rack: "rack2"}
	if a.Location != want2 {
		t.Errorf("Location = %+v, want %+v", a.Location, want2)
	}
	if len(a.Replicas) != 2 || a.Replicas[0].URL != "10.0.0.1:8080" || a.Replicas[0].Rack != "rack1" || a.Replicas[1] != want2 {
		t.Errorf("Replicas = %+v", a.Replicas)
	}

	// Count 0 means one key.
	if _, err := mc.Assign(ctx, AssignRequest{}); err != nil {
		t.Fatal(err)
	}
	if reqs := fm.assigns(); reqs[1].Count != 1 {
		t.Errorf("Count 0 sent as %d, want 1", reqs[1].Count)
	}
}

func TestAssignPrimesLookupCache(t *testing.T) {
	fm := &fakeMaster{}
	fm.setAssign(func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return &masterpb.AssignResponse{
			Fid: "7,0a00000001", Count: 1,
			Location: &masterpb.Location{Url: "a:1"},
			Replicas: []*masterpb.Location{{Url: "a:1"}, {Url: "b:2"}},
		}, nil
	})
	fm.setVolumes(map[uint32][]string{7: {"stale:1"}})
	mc := newTestMaster(t, fm, time.Minute, newFakeClock())
	ctx := testCtx(t)

	a, err := mc.Assign(ctx, AssignRequest{})
	if err != nil {
		t.Fatal(err)
	}
	a.Replicas[0].URL = "mutated:0" // must not reach the cache

	locs, err := mc.Lookup(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if n := fm.lookups(); n != 0 {
		t.Errorf("Lookup after Assign asked the master %d times, want 0", n)
	}
	if len(locs) != 2 || locs[0].URL != "a:1" || locs[1].URL != "b:2" {
		t.Errorf("Lookup after Assign = %+v, want the assigned replicas", locs)
	}
}

func TestAssignErrorsMapToSentinels(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		want error
	}{
		{codes.ResourceExhausted, ErrNoSpace},
		{codes.InvalidArgument, ErrInvalid},
		{codes.Unavailable, ErrUnavailable},
		{codes.NotFound, ErrNotFound},
		{codes.FailedPrecondition, ErrPrecondition},
		{codes.PermissionDenied, ErrPermission},
		{codes.Internal, ErrInternal},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			fm := &fakeMaster{}
			msg := fmt.Sprintf("master says %v for collection x", tc.code)
			fm.setAssign(func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
				return nil, status.Error(tc.code, msg)
			})
			mc := newTestMaster(t, fm, 0, nil)
			_, err := mc.Assign(testCtx(t), AssignRequest{Collection: "x"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Assign error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), msg) || !strings.HasPrefix(err.Error(), "assign: ") {
				t.Errorf("error %q lost the server's message %q", err, msg)
			}
		})
	}
}

// A server that uses ToStatus on its own sentinel-wrapping error reaches the
// client as that sentinel: the full path the daemons use.
func TestAssignServerSideToStatus(t *testing.T) {
	fm := &fakeMaster{}
	fm.setAssign(func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return nil, ToStatus(fmt.Errorf("no writable volume for replication 002: %w", ErrNoSpace))
	})
	mc := newTestMaster(t, fm, 0, nil)
	_, err := mc.Assign(testCtx(t), AssignRequest{Replication: "002"})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "no writable volume for replication 002") {
		t.Fatalf("Assign error %v", err)
	}
}

func TestAssignBadFileIDFromMaster(t *testing.T) {
	fm := &fakeMaster{}
	fm.setAssign(func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return &masterpb.AssignResponse{Fid: "not-a-fid", Count: 1}, nil
	})
	mc := newTestMaster(t, fm, 0, nil)
	_, err := mc.Assign(testCtx(t), AssignRequest{})
	if !errors.Is(err, ErrInternal) || !errors.Is(err, needle.ErrBadFileID) {
		t.Fatalf("Assign with a bad fid from the master: %v, want ErrInternal and needle.ErrBadFileID", err)
	}
}

func TestAssignCanceledContext(t *testing.T) {
	fm := &fakeMaster{}
	fm.setAssign(func(*masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
		return &masterpb.AssignResponse{Fid: "1,0100000001"}, nil
	})
	mc := newTestMaster(t, fm, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := mc.Assign(ctx, AssignRequest{}); !errors.Is(err, ErrCanceled) {
		t.Fatalf("Assign with canceled ctx: %v, want ErrCanceled", err)
	}
}

func TestMasterDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	mc, err := NewMasterClient(MasterClientConfig{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if _, err := mc.Assign(testCtx(t), AssignRequest{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Assign to a dead master: %v, want ErrUnavailable", err)
	}
	if _, err := mc.Lookup(testCtx(t), 1); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lookup on a dead master: %v, want ErrUnavailable", err)
	}
}

func TestLookupCaches(t *testing.T) {
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{4: {"h1:8080", "h2:8080"}})
	clk := newFakeClock()
	const ttl = 30 * time.Second
	mc := newTestMaster(t, fm, ttl, clk)
	ctx := testCtx(t)

	lookup := func(wantCalls int) {
		t.Helper()
		locs, err := mc.Lookup(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(locs) != 2 || locs[0].URL != "h1:8080" || locs[1].URL != "h2:8080" || locs[0].PublicURL != "h1:8080" {
			t.Fatalf("Lookup = %+v", locs)
		}
		if n := fm.lookups(); n != wantCalls {
			t.Fatalf("master saw %d lookups, want %d", n, wantCalls)
		}
	}

	lookup(1)
	if req := fm.lookupReqs[0]; len(req.VolumeIds) != 1 || req.VolumeIds[0] != 4 {
		t.Errorf("lookup request %v, want volume 4", req)
	}
	lookup(1) // cached
	clk.Advance(ttl - time.Nanosecond)
	lookup(1) // still fresh
	clk.Advance(time.Nanosecond)
	lookup(2) // expired: asks again
	lookup(2) // and caches the new answer
	mc.Invalidate(4)
	lookup(3)
	lookup(3)
	mc.Invalidate(99) // unrelated volume: no effect
	lookup(3)
}

func TestLookupSeesNewLocationsAfterInvalidate(t *testing.T) {
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{4: {"old:1"}})
	mc := newTestMaster(t, fm, time.Hour, newFakeClock())
	ctx := testCtx(t)
	if locs, err := mc.Lookup(ctx, 4); err != nil || locs[0].URL != "old:1" {
		t.Fatalf("Lookup = %v, %v", locs, err)
	}
	fm.setVolumes(map[uint32][]string{4: {"new:1"}})
	if locs, err := mc.Lookup(ctx, 4); err != nil || locs[0].URL != "old:1" {
		t.Fatalf("cached Lookup = %v, %v; want old:1", locs, err)
	}
	mc.Invalidate(4)
	if locs, err := mc.Lookup(ctx, 4); err != nil || locs[0].URL != "new:1" {
		t.Fatalf("Lookup after Invalidate = %v, %v; want new:1", locs, err)
	}
}

func TestLookupReturnsACopy(t *testing.T) {
	fm := &fakeMaster{}
	fm.setVolumes(map[uint32][]string{4: {"h1:1", "h2:1"}})
	mc := newTestMaster(t, fm, time.Hour, newFakeClock())
	ctx := testCtx(t)
	for range 2 { // the first answer comes from the master, the second from the cache
		locs, err := mc.Lookup(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if locs[0].URL != "h1:1" {
			t.Fatalf("cache corrupted by a caller: %+v", locs)
		}
		locs[0].URL = "scribbled:0"
	}
	locs, err := mc.Lookup(ctx, 4)
	if err != nil || locs[0].URL != "h1:1" {
		t.Fatalf("cache corrupted by a caller: %+v, %v", locs, err)
	}
}

func TestLookupUnknownVolume(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resp    *masterpb.LookupVolumeResponse
		err     error
		wantMsg string
	}{
		{"error field", &masterpb.LookupVolumeResponse{Volumes: []*masterpb.VolumeLocations{{VolumeId: 9, Error: "volume 9 is not known"}}}, nil, "volume 9 is not known"},
		{"no locations", &masterpb.LookupVolumeResponse{Volumes: []*masterpb.VolumeLocations{{VolumeId: 9}}}, nil, "no live replica"},
		{"missing from answer", &masterpb.LookupVolumeResponse{Volumes: []*masterpb.VolumeLocations{{VolumeId: 8, Locations: []*masterpb.Location{{Url: "x:1"}}}}}, nil, "lookup volume 9"},
		{"empty answer", &masterpb.LookupVolumeResponse{}, nil, "lookup volume 9"},
		{"status NotFound", nil, status.Error(codes.NotFound, "never heard of 9"), "never heard of 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fm := &fakeMaster{}
			fm.setLookup(func(*masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) { return tc.resp, tc.err })
			mc := newTestMaster(t, fm, time.Hour, newFakeClock())
			ctx := testCtx(t)
			for i := 1; i <= 2; i++ {
				locs, err := mc.Lookup(ctx, 9)
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Lookup(9) = %v, %v; want ErrNotFound", locs, err)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("error %q does not contain %q", err, tc.wantMsg)
				}
				if n := fm.lookups(); n != i {
					t.Fatalf("after %d lookups the master saw %d: a failure must not be cached", i, n)
				}
			}
		})
	}
}

func TestLookupOtherErrors(t *testing.T) {
	fm := &fakeMaster{}
	fm.setLookup(func(*masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
		return nil, status.Error(codes.Unavailable, "not the leader")
	})
	mc := newTestMaster(t, fm, time.Hour, newFakeClock())
	_, err := mc.Lookup(testCtx(t), 3)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not the leader") || !strings.Contains(err.Error(), "volume 3") {
		t.Fatalf("Lookup = %v", err)
	}
}

func TestLookupConcurrent(t *testing.T) {
	fm := &fakeMaster{}
	vols := map[uint32][]string{}
	for v := uint32(1); v <= 8; v++ {
		vols[v] = []string{fmt.Sprintf("h%d:1", v)}
	}
	fm.setVolumes(vols)
	mc := newTestMaster(t, fm, time.Hour, newFakeClock())
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				vid := uint32((g+i)%8 + 1)
				locs, err := mc.Lookup(ctx, vid)
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf("h%d:1", vid); len(locs) != 1 || locs[0].URL != want {
					errs <- fmt.Errorf("Lookup(%d) = %+v, want %s", vid, locs, want)
					return
				}
				if i%7 == 0 {
					mc.Invalidate(vid)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
