package masterd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/masterd/topology"
	"github.com/kelpfs/kelp/needle"
)

// grpcServer is the Master gRPC service: it decodes, calls the Server's
// operations and encodes; gRPC types go no further.
type grpcServer struct {
	masterpb.UnimplementedMasterServer
	s *Server
}

var _ masterpb.MasterServer = (*grpcServer)(nil)

// grpcError translates an operation error into a gRPC status once.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	var code codes.Code
	switch {
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, topology.ErrBadCount):
		code = codes.InvalidArgument
	case errors.Is(err, topology.ErrVolumeNotFound):
		code = codes.NotFound
	case errors.Is(err, topology.ErrNoFreeSlots), errors.Is(err, topology.ErrUnsatisfiable), errors.Is(err, topology.ErrExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, topology.ErrNoWritableVolume), errors.Is(err, ErrAllocate), errors.Is(err, ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default:
		code = codes.Internal
	}
	return status.Error(code, err.Error())
}

// reportFromHeartbeat turns a heartbeat into a node report. Volumes with a
// replication or ttl that does not parse are left out with a log line.
func reportFromHeartbeat(hb *masterpb.Heartbeat, log *slog.Logger) (topology.NodeReport, error) {
	if hb.GetIp() == "" {
		return topology.NodeReport{}, errors.New("heartbeat: ip is empty")
	}
	if hb.GetPort() == 0 || hb.GetPort() > 65535 {
		return topology.NodeReport{}, fmt.Errorf("heartbeat: port %d out of range", hb.GetPort())
	}
	if hb.GetGrpcPort() > 65535 {
		return topology.NodeReport{}, fmt.Errorf("heartbeat: grpc_port %d out of range", hb.GetGrpcPort())
	}
	url := net.JoinHostPort(hb.GetIp(), strconv.Itoa(int(hb.GetPort())))
	r := topology.NodeReport{
		URL:            url,
		PublicURL:      hb.GetPublicUrl(),
		DataCenter:     hb.GetDataCenter(),
		Rack:           hb.GetRack(),
		MaxVolumeCount: int(hb.GetMaxVolumeCount()),
	}
	if hb.GetGrpcPort() != 0 {
		r.GRPCAddress = net.JoinHostPort(hb.GetIp(), strconv.Itoa(int(hb.GetGrpcPort())))
	}
	for _, v := range hb.GetVolumes() {
		rp, err := needle.ParseReplicaPlacement(v.GetReplication())
		if err != nil {
			log.Warn("heartbeat volume skipped", "server", url, "volume", v.GetId(), "err", err)
			continue
		}
		ttl, err := needle.ParseTTL(v.GetTtl())
		if err != nil {
			log.Warn("heartbeat volume skipped", "server", url, "volume", v.GetId(), "err", err)
			continue
		}
		r.Volumes = append(r.Volumes, topology.VolumeInfo{
			ID:              v.GetId(),
			Size:            v.GetSize(),
			Collection:      v.GetCollection(),
			Replication:     rp,
			TTL:             ttl,
			FileCount:       v.GetFileCount(),
			DeleteCount:     v.GetDeleteCount(),
			DeletedBytes:    v.GetDeletedBytes(),
			ReadOnly:        v.GetReadOnly(),
			Full:            v.GetFull(),
			CompactRevision: v.GetCompactRevision(),
			Version:         v.GetVersion(),
		})
	}
	return r, nil
}

func pbLocation(l topology.Location) *masterpb.Location {
	return &masterpb.Location{Url: l.URL, PublicUrl: l.PublicURL, GrpcAddress: l.GRPCAddress, DataCenter: l.DataCenter, Rack: l.Rack}
}

func pbLocations(ls []topology.Location) []*masterpb.Location {
	out := make([]*masterpb.Location, len(ls))
	for i, l := range ls {
		out[i] = pbLocation(l)
	}
	return out
}

// Assign reserves req.Count keys (0 means 1) on a writable volume.
func (g *grpcServer) Assign(ctx context.Context, req *masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
	a, err := g.s.assign(ctx, assignRequest{
		Count:       req.GetCount(),
		Replication: req.GetReplication(),
		Collection:  req.GetCollection(),
		TTL:         req.GetTtl(),
		DataCenter:  req.GetDataCenter(),
		Rack:        req.GetRack(),
	})
	if err != nil {
		return nil, grpcError(err)
	}
	return &masterpb.AssignResponse{
		Fid:      a.FileID.String(),
		Count:    a.Count,
		Location: pbLocation(a.Location),
		Replicas: pbLocations(a.Replicas),
	}, nil
}

// LookupVolume answers every requested id; unknown ones carry an error.
func (g *grpcServer) LookupVolume(ctx context.Context, req *masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
	if len(req.GetVolumeIds()) == 0 {
		return nil, grpcError(invalid("volume_ids is empty"))
	}
	resp := &masterpb.LookupVolumeResponse{}
	for _, id := range req.GetVolumeIds() {
		vl := &masterpb.VolumeLocations{VolumeId: id}
		locs, err := g.s.topo.Lookup(id)
		if err != nil {
			vl.Error = err.Error()
		} else {
			vl.Locations = pbLocations(locs)
		}
		resp.Volumes = append(resp.Volumes, vl)
	}
	return resp, nil
}

// GrowVolume creates req.Count volumes (0: the configured growth count).
func (g *grpcServer) GrowVolume(ctx context.Context, req *masterpb.GrowVolumeRequest) (*masterpb.GrowVolumeResponse, error) {
	ids, err := g.s.growVolumes(ctx, uint64(req.GetCount()), req.GetReplication(), req.GetCollection(), req.GetTtl(), req.GetDataCenter())
	if err != nil {
		return nil, grpcError(err)
	}
	return &masterpb.GrowVolumeResponse{VolumeIds: ids}, nil
}

// ClusterStatus describes the topology.
func (g *grpcServer) ClusterStatus(ctx context.Context, req *masterpb.ClusterStatusRequest) (*masterpb.ClusterStatusResponse, error) {
	snap := g.s.topo.Snapshot()
	resp := &masterpb.ClusterStatusResponse{
		Leader:          g.s.leader(),
		IsLeader:        true,
		VolumeSizeLimit: snap.VolumeSizeLimit,
		FreeSlots:       uint64(snap.FreeSlots),
		TotalSlots:      uint64(snap.MaxVolumes),
	}
	for _, dc := range snap.DataCenters {
		d := &masterpb.DataCenterInfo{Id: dc.ID}
		for _, rk := range dc.Racks {
			r := &masterpb.RackInfo{Id: rk.ID}
			for _, n := range rk.Nodes {
				ni := &masterpb.NodeInfo{Url: n.URL, PublicUrl: n.PublicURL, GrpcAddress: n.GRPCAddress, MaxVolumeCount: uint32(n.MaxVolumes)}
				for _, v := range n.Volumes {
					ni.Volumes = append(ni.Volumes, &masterpb.VolumeInfo{
						Id:              v.ID,
						Size:            v.Size,
						Collection:      v.Collection,
						Replication:     v.Replication.String(),
						Ttl:             v.TTL.String(),
						FileCount:       v.FileCount,
						DeleteCount:     v.DeleteCount,
						DeletedBytes:    v.DeletedBytes,
						ReadOnly:        v.ReadOnly,
						Full:            v.Full,
						CompactRevision: v.CompactRevision,
						Version:         v.Version,
					})
				}
				r.Nodes = append(r.Nodes, ni)
			}
			d.Racks = append(d.Racks, r)
		}
		resp.DataCenters = append(resp.DataCenters, d)
	}
	return resp, nil
}

// Vacuum compacts volumes above the garbage threshold.
func (g *grpcServer) Vacuum(ctx context.Context, req *masterpb.VacuumRequest) (*masterpb.VacuumResponse, error) {
	ids, err := g.s.vacuum(ctx, req.GetGarbageThreshold(), req.GetVolumeId())
	if err != nil {
		return nil, grpcError(err)
	}
	return &masterpb.VacuumResponse{CompactedVolumeIds: ids}, nil
}
