package volumed

import (
	"context"
	"errors"
	"net"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/volumepb"
	"github.com/kelpfs/kelp/needle"
	"github.com/kelpfs/kelp/volumed/storage"
)

// grpcServer is the admin API: it decodes, calls the store and encodes.
type grpcServer struct {
	volumepb.UnimplementedVolumeServer
	s *Server
}

func (g *grpcServer) AllocateVolume(_ context.Context, req *volumepb.AllocateVolumeRequest) (*volumepb.AllocateVolumeResponse, error) {
	rp, err := needle.ParseReplicaPlacement(req.Replication)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ttl, err := needle.ParseTTL(req.Ttl)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := g.s.store.AllocateVolume(req.VolumeId, req.Collection, rp, ttl, int64(req.Preallocate)); err != nil {
		return nil, storageStatus(err)
	}
	return &volumepb.AllocateVolumeResponse{}, nil
}

func (g *grpcServer) DeleteVolume(_ context.Context, req *volumepb.DeleteVolumeRequest) (*volumepb.DeleteVolumeResponse, error) {
	if err := g.s.store.DeleteVolume(req.VolumeId); err != nil {
		return nil, storageStatus(err)
	}
	g.s.log.Info("deleted volume", "volume", req.VolumeId)
	return &volumepb.DeleteVolumeResponse{}, nil
}

func (g *grpcServer) MarkReadonly(_ context.Context, req *volumepb.MarkReadonlyRequest) (*volumepb.MarkReadonlyResponse, error) {
	if err := g.s.store.MarkReadonly(req.VolumeId, req.ReadOnly); err != nil {
		return nil, storageStatus(err)
	}
	return &volumepb.MarkReadonlyResponse{}, nil
}

func (g *grpcServer) VolumeStatus(_ context.Context, req *volumepb.VolumeStatusRequest) (*volumepb.VolumeStatusResponse, error) {
	v, err := g.s.store.VolumeStatus(req.VolumeId)
	if err != nil {
		return nil, storageStatus(err)
	}
	return &volumepb.VolumeStatusResponse{
		VolumeId: v.ID, Size: uint64(v.Size), FileCount: v.FileCount, DeleteCount: v.DeleteCount,
		DeletedBytes: uint64(v.DeletedBytes), ReadOnly: v.ReadOnly, CompactRevision: uint32(v.CompactRevision),
		Collection: v.Collection, Replication: v.Replication.String(), Ttl: v.TTL.String(),
	}, nil
}

func (g *grpcServer) VacuumCheck(_ context.Context, req *volumepb.VacuumCheckRequest) (*volumepb.VacuumCheckResponse, error) {
	r, err := g.s.store.VacuumCheck(req.VolumeId)
	if err != nil {
		return nil, storageStatus(err)
	}
	return &volumepb.VacuumCheckResponse{GarbageRatio: r}, nil
}

func (g *grpcServer) Vacuum(ctx context.Context, req *volumepb.VacuumVolumeRequest) (*volumepb.VacuumVolumeResponse, error) {
	n, err := g.s.store.VacuumContext(ctx, req.VolumeId)
	if err != nil {
		return nil, storageStatus(err)
	}
	g.s.log.Info("vacuumed volume", "volume", req.VolumeId, "reclaimedBytes", n)
	return &volumepb.VacuumVolumeResponse{ReclaimedBytes: uint64(n)}, nil
}

// storageStatus maps store errors to gRPC codes.
func storageStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, storage.ErrVolumeNotFound), errors.Is(err, storage.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, storage.ErrVolumeExists):
		code = codes.AlreadyExists
	case errors.Is(err, storage.ErrNoFreeSlot), errors.Is(err, storage.ErrVolumeFull):
		code = codes.ResourceExhausted
	case errors.Is(err, storage.ErrReadOnly):
		code = codes.FailedPrecondition
	case errors.Is(err, storage.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, storage.ErrBadNeedle), errors.Is(err, needle.ErrBadCollection):
		code = codes.InvalidArgument
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func portOf(hostport string) uint32 {
	_, p, _ := net.SplitHostPort(hostport)
	n, _ := strconv.Atoi(p)
	return uint32(n)
}
