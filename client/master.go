package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/needle"
)

// Location is where one replica of a volume is served.
type Location struct {
	URL         string // host:port of the blob HTTP API
	PublicURL   string
	GRPCAddress string
	DataCenter  string
	Rack        string
}

func locationFromPB(l *masterpb.Location) Location {
	if l == nil {
		return Location{}
	}
	return Location{URL: l.Url, PublicURL: l.PublicUrl, GRPCAddress: l.GrpcAddress, DataCenter: l.DataCenter, Rack: l.Rack}
}

// AssignRequest asks the master for file keys.
type AssignRequest struct {
	Count       uint64 // 0 means 1
	Replication string
	Collection  string
	TTL         string
	DataCenter  string
	Rack        string
}

// Assignment is a reserved run of file keys on one volume.
type Assignment struct {
	FileID   needle.FileID // the first key; FileID with Key+i for i < Count are reserved too
	Count    uint64
	Location Location   // where to write
	Replicas []Location // every replica, the writer included
}

// MasterClientConfig configures a MasterClient.
type MasterClientConfig struct {
	// Address is the master's gRPC address (host:port).
	Address string
	// LookupTTL is how long volume locations stay cached; 0 means 10s.
	LookupTTL time.Duration
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
}

// MasterClient assigns file ids and looks up volume locations, caching the
// locations for LookupTTL. Safe for concurrent use.
type MasterClient struct {
	conn *grpc.ClientConn
	api  masterpb.MasterClient
	locs *locationCache
}

// NewMasterClient connects lazily to the master at cfg.Address.
func NewMasterClient(cfg MasterClientConfig) (*MasterClient, error) {
	if cfg.Address == "" {
		return nil, fmt.Errorf("master client: %w: no master address", ErrInvalid)
	}
	if cfg.LookupTTL <= 0 {
		cfg.LookupTTL = 10 * time.Second
	}
	opts := append(TransportDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("master client for %s: %w", cfg.Address, err)
	}
	return &MasterClient{conn: conn, api: masterpb.NewMasterClient(conn), locs: newLocationCache(cfg.LookupTTL)}, nil
}

// API exposes the raw gRPC client for calls this package does not wrap.
func (m *MasterClient) API() masterpb.MasterClient { return m.api }

// Close releases the connection.
func (m *MasterClient) Close() error { return m.conn.Close() }

// Assign reserves req.Count file keys.
func (m *MasterClient) Assign(ctx context.Context, req AssignRequest) (Assignment, error) {
	if req.Count == 0 {
		req.Count = 1
	}
	resp, err := m.api.Assign(ctx, &masterpb.AssignRequest{
		Count: req.Count, Replication: req.Replication, Collection: req.Collection,
		Ttl: req.TTL, DataCenter: req.DataCenter, Rack: req.Rack,
	})
	if err != nil {
		return Assignment{}, FromStatus("assign", err)
	}
	fid, err := needle.ParseFileID(resp.Fid)
	if err != nil {
		return Assignment{}, fmt.Errorf("assign: master returned %w: %w", ErrInternal, err)
	}
	a := Assignment{FileID: fid, Count: resp.Count, Location: locationFromPB(resp.Location)}
	for _, r := range resp.Replicas {
		a.Replicas = append(a.Replicas, locationFromPB(r))
	}
	if len(a.Replicas) > 0 {
		m.locs.store(fid.VolumeID, slices.Clone(a.Replicas))
	}
	return a, nil
}

// Lookup returns the replicas of a volume, from the cache when fresh.
func (m *MasterClient) Lookup(ctx context.Context, vid uint32) ([]Location, error) {
	locs, err := m.lookup(ctx, vid)
	return slices.Clone(locs), err
}

// lookup is Lookup without the defensive copy: callers in this package only
// read the slice, which may be the cache's own.
func (m *MasterClient) lookup(ctx context.Context, vid uint32) ([]Location, error) {
	if locs, ok := m.locs.get(vid); ok {
		return locs, nil
	}
	resp, err := m.api.LookupVolume(ctx, &masterpb.LookupVolumeRequest{VolumeIds: []uint32{vid}})
	if err != nil {
		return nil, FromStatus(fmt.Sprintf("lookup volume %d", vid), err)
	}
	for _, v := range resp.Volumes {
		if v.VolumeId == vid {
			return m.locs.answer(vid, v.Error, len(v.Locations), func(i int) Location { return locationFromPB(v.Locations[i]) })
		}
	}
	return nil, fmt.Errorf("lookup volume %d: %w", vid, ErrNotFound)
}

// Invalidate forgets the cached locations of a volume, after a replica
// failed to answer.
func (m *MasterClient) Invalidate(vid uint32) { m.locs.invalidate(vid) }

// rotated calls try on each location, starting at a random one so reads
// spread over replicas, until try returns false.
func rotated(locs []Location, try func(Location) bool) {
	if len(locs) == 0 {
		return
	}
	start := rand.IntN(len(locs))
	for i := range locs {
		if !try(locs[(start+i)%len(locs)]) {
			return
		}
	}
}
