package masterd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kelpfs/kelp/api/volumepb"
	"github.com/kelpfs/kelp/masterd/topology"
	"github.com/kelpfs/kelp/needle"
)

// Errors of the master's operations, besides the topology's
// (ErrNoFreeSlots, ErrUnsatisfiable, ErrNoWritableVolume, ErrVolumeNotFound)
// which pass through wrapped.
var (
	// ErrInvalidArgument reports a bad request parameter; the message
	// names it.
	ErrInvalidArgument = errors.New("masterd: invalid argument")
	// ErrAllocate reports a volume server that failed to allocate a volume.
	ErrAllocate = errors.New("masterd: volume allocation failed")
)

// Limits on request parameters.
const (
	// MaxAssignCount is the largest run of keys one assign may reserve.
	MaxAssignCount = 1 << 20
	// MaxGrowCount is the largest number of volumes one grow may create.
	MaxGrowCount = 1000
)

// assignRequest is an assign in transport-neutral form.
type assignRequest struct {
	Count       uint64 // 0 means 1
	Replication string // "" means the default
	Collection  string
	TTL         string
	DataCenter  string
	Rack        string
}

// assignment is the answer: Count keys from FileID.Key on, to be written
// through Location.
type assignment struct {
	FileID   needle.FileID
	Count    uint64
	Location topology.Location
	Replicas []topology.Location
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// layoutKey parses and checks the parameters that select a layout.
func (s *Server) layoutKey(replication, collection, ttl string) (topology.LayoutKey, error) {
	if replication == "" {
		replication = s.cfg.DefaultReplication
	}
	rp, err := needle.ParseReplicaPlacement(replication)
	if err != nil {
		return topology.LayoutKey{}, invalid("replication: %v", err)
	}
	t, err := needle.ParseTTL(ttl)
	if err != nil {
		return topology.LayoutKey{}, invalid("ttl: %v", err)
	}
	if err := checkCollection(collection); err != nil {
		return topology.LayoutKey{}, err
	}
	return topology.LayoutKey{Collection: collection, Replication: rp, TTL: t}, nil
}

// checkCollection applies the rule the volume servers apply too.
func checkCollection(c string) error {
	if err := needle.ValidateCollection(c); err != nil {
		return invalid("collection: %v", err)
	}
	return nil
}

// assign reserves req.Count keys on a writable volume, growing the layout
// when it has none.
func (s *Server) assign(ctx context.Context, req assignRequest) (assignment, error) {
	count := req.Count
	if count == 0 {
		count = 1
	}
	if count > MaxAssignCount {
		return assignment{}, invalid("count %d: at most %d", count, MaxAssignCount)
	}
	key, err := s.layoutKey(req.Replication, req.Collection, req.TTL)
	if err != nil {
		return assignment{}, err
	}
	wv, err := s.topo.PickForWrite(key, req.DataCenter, req.Rack)
	// Two rounds: a volume grown by this call can still be lost before the
	// pick (its server dropped), in which case growing once more may help.
	for round := 0; round < 2 && errors.Is(err, topology.ErrNoWritableVolume); round++ {
		if _, gerr := s.grow(ctx, key, req.DataCenter, req.Rack, 0, true); gerr != nil {
			return assignment{}, fmt.Errorf("no writable volume for %s, and growing one failed: %w", key, gerr)
		}
		wv, err = s.topo.PickForWrite(key, req.DataCenter, req.Rack)
	}
	if err != nil {
		return assignment{}, err
	}
	first, err := s.seq.NextKeys(count)
	if err != nil {
		return assignment{}, fmt.Errorf("masterd: reserve %d keys: %w", count, err)
	}
	return assignment{
		FileID:   needle.FileID{VolumeID: wv.ID, Key: first, Cookie: rand.Uint32()},
		Count:    count,
		Location: wv.Primary,
		Replicas: wv.Replicas,
	}, nil
}

// growVolumes is the manual grow: count volumes (0: the configured growth
// count) for the layout.
func (s *Server) growVolumes(ctx context.Context, count uint64, replication, collection, ttl, dataCenter string) ([]uint32, error) {
	if count > MaxGrowCount {
		return nil, invalid("count %d: at most %d volumes per grow", count, MaxGrowCount)
	}
	key, err := s.layoutKey(replication, collection, ttl)
	if err != nil {
		return nil, err
	}
	return s.grow(ctx, key, dataCenter, "", int(count), false)
}

// grow creates up to count volumes (0: the configured growth count for the
// copy count) for key. With auto set it does nothing if the layout gained
// a writable volume while it waited for the growth lock. Short of slots it
// creates fewer; it fails only if it creates none.
func (s *Server) grow(ctx context.Context, key topology.LayoutKey, dataCenter, rack string, count int, auto bool) ([]uint32, error) {
	s.growMu.Lock()
	defer s.growMu.Unlock()
	if auto {
		if _, err := s.topo.PickForWrite(key, dataCenter, rack); err == nil {
			return nil, nil
		}
	}
	if count <= 0 {
		count = s.cfg.growCount(key.Replication.CopyCount())
	}
	var grown []uint32
	for len(grown) < count {
		if err := ctx.Err(); err != nil {
			if len(grown) > 0 {
				break
			}
			return nil, err
		}
		locs, err := s.topo.PickNodes(topology.PlacementRequest{Replication: key.Replication, DataCenter: dataCenter, Rack: rack})
		if err != nil {
			if len(grown) > 0 {
				s.log.Info("volume growth stopped short", "layout", key.String(), "grown", len(grown), "wanted", count, "reason", err)
				break
			}
			s.log.Warn("volume growth failed", "layout", key.String(), "err", err)
			return nil, err
		}
		vid, err := s.seq.NextVolumeID()
		if err != nil {
			if len(grown) > 0 {
				break
			}
			return nil, fmt.Errorf("masterd: new volume id: %w", err)
		}
		if err := s.allocate(ctx, vid, key, locs); err != nil {
			s.log.Warn("volume allocation failed", "volume", vid, "layout", key.String(), "err", err)
			if len(grown) > 0 {
				break
			}
			return nil, err
		}
		urls := make([]string, len(locs))
		for i, l := range locs {
			urls[i] = l.URL
		}
		info := topology.VolumeInfo{ID: vid, Collection: key.Collection, Replication: key.Replication, TTL: key.TTL}
		if err := s.topo.RegisterVolume(info, urls, s.now()); err != nil {
			s.log.Warn("volume grown on a server that left", "volume", vid, "err", err)
		}
		s.log.Info("volume grown", "volume", vid, "collection", key.Collection,
			"replication", key.Replication.String(), "ttl", key.TTL.String(), "servers", urls)
		grown = append(grown, vid)
	}
	return grown, nil
}

// allocate creates volume vid on every location; on a failure it deletes
// the copies already made (best effort) and reports the failing server.
func (s *Server) allocate(ctx context.Context, vid uint32, key topology.LayoutKey, locs []topology.Location) error {
	req := &volumepb.AllocateVolumeRequest{
		VolumeId:    vid,
		Collection:  key.Collection,
		Replication: key.Replication.String(),
		Ttl:         key.TTL.String(),
	}
	for i, loc := range locs {
		err := s.callVolume(ctx, loc, s.cfg.AllocateTimeout, func(ctx context.Context, c volumepb.VolumeClient) error {
			_, err := c.AllocateVolume(ctx, req)
			return err
		})
		if err != nil {
			for _, done := range locs[:i] {
				derr := s.callVolume(context.WithoutCancel(ctx), done, s.cfg.AllocateTimeout, func(ctx context.Context, c volumepb.VolumeClient) error {
					_, err := c.DeleteVolume(ctx, &volumepb.DeleteVolumeRequest{VolumeId: vid})
					return err
				})
				if derr != nil {
					s.log.Warn("cleanup of partly allocated volume failed", "volume", vid, "server", done.URL, "err", derr)
				}
			}
			return fmt.Errorf("%w: volume %d on %s: %v", ErrAllocate, vid, loc.URL, err)
		}
	}
	return nil
}

// callVolume runs fn against the admin API of the server at loc with a
// timeout (0: none beyond ctx).
func (s *Server) callVolume(ctx context.Context, loc topology.Location, timeout time.Duration, fn func(context.Context, volumepb.VolumeClient) error) error {
	c, err := s.volumes.get(loc.GRPCAddress)
	if err != nil {
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return fn(ctx, c)
}

// vacuum checks every volume (or only vid) and compacts those whose
// garbage ratio on any replica is above threshold (0: the configured one)
// on every live replica. It returns the compacted volume ids. Failures on
// single volumes are logged and skip that volume.
func (s *Server) vacuum(ctx context.Context, threshold float64, vid uint32) ([]uint32, error) {
	if threshold == 0 {
		threshold = s.cfg.GarbageThreshold
	}
	if !(threshold > 0 && threshold <= 1) {
		return nil, invalid("garbageThreshold %v: want a number in (0, 1]", threshold)
	}
	var vols []topology.VolumeState
	if vid != 0 {
		v, err := s.topo.Volume(vid)
		if err != nil {
			return nil, err
		}
		vols = []topology.VolumeState{v}
	} else {
		vols = s.topo.Volumes()
	}
	s.vacuumMu.Lock()
	defer s.vacuumMu.Unlock()
	compacted := []uint32{}
	for _, v := range vols {
		if err := ctx.Err(); err != nil {
			return compacted, err
		}
		ratio, err := s.garbageRatio(ctx, v)
		if err != nil {
			s.log.Warn("vacuum check failed", "volume", v.ID, "err", err)
			continue
		}
		if ratio <= threshold {
			continue
		}
		s.log.Info("vacuum started", "volume", v.ID, "garbage_ratio", ratio, "threshold", threshold)
		var reclaimed uint64
		ok := true
		for _, loc := range v.Replicas {
			err := s.callVolume(ctx, loc, 10*s.cfg.AllocateTimeout, func(ctx context.Context, c volumepb.VolumeClient) error {
				resp, err := c.Vacuum(ctx, &volumepb.VacuumVolumeRequest{VolumeId: v.ID})
				if err == nil {
					reclaimed += resp.GetReclaimedBytes()
				}
				return err
			})
			if err != nil {
				s.log.Warn("vacuum failed", "volume", v.ID, "server", loc.URL, "err", err)
				ok = false
			}
		}
		if ok {
			s.log.Info("vacuum done", "volume", v.ID, "replicas", len(v.Replicas), "reclaimed_bytes", reclaimed)
			compacted = append(compacted, v.ID)
		}
	}
	return compacted, nil
}

// garbageRatio is the highest garbage ratio over v's replicas.
func (s *Server) garbageRatio(ctx context.Context, v topology.VolumeState) (float64, error) {
	var max float64
	for _, loc := range v.Replicas {
		err := s.callVolume(ctx, loc, s.cfg.AllocateTimeout, func(ctx context.Context, c volumepb.VolumeClient) error {
			resp, err := c.VacuumCheck(ctx, &volumepb.VacuumCheckRequest{VolumeId: v.ID})
			if err == nil && resp.GetGarbageRatio() > max {
				max = resp.GetGarbageRatio()
			}
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("replica on %s: %w", loc.URL, err)
		}
	}
	return max, nil
}

// vacuumLoop vacuums every VacuumInterval until Close.
func (s *Server) vacuumLoop() {
	if s.cfg.VacuumInterval <= 0 {
		return
	}
	tick := time.NewTicker(s.cfg.VacuumInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-tick.C:
			compacted, err := s.vacuum(s.baseCtx, 0, 0)
			if err != nil && s.baseCtx.Err() == nil {
				s.log.Warn("vacuum run failed", "err", err)
			} else if len(compacted) > 0 {
				s.log.Info("vacuum run", "compacted", compacted)
			}
		}
	}
}
