package masterd

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/masterd/topology"
)

// SendHeartbeat serves one volume server's heartbeat stream. Every message
// is a full report; the server is registered (or refreshed) and answered
// with the master's settings. When the stream ends the server is dropped,
// unless a newer stream from the same server has taken over.
func (g *grpcServer) SendHeartbeat(stream masterpb.Master_SendHeartbeatServer) error {
	s := g.s
	var url string
	var session uint64
	defer func() {
		if url != "" {
			s.dropNode(url, session, "heartbeat stream closed")
		}
	}()
	for {
		hb, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		report, err := reportFromHeartbeat(hb, s.log)
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if url != "" && url != report.URL {
			s.dropNode(url, session, "server changed its address")
		}
		url = report.URL
		session, err = s.updateNode(report, session, hb.GetMaxFileKey())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		err = stream.Send(&masterpb.HeartbeatResponse{
			VolumeSizeLimit: s.cfg.volumeSizeLimit(),
			Leader:          s.leader(),
		})
		if err != nil {
			return err
		}
	}
}

// updateNode applies a report from the stream with the given session (0:
// a new stream) and returns the session that now owns the node.
func (s *Server) updateNode(r topology.NodeReport, session, maxFileKey uint64) (uint64, error) {
	var maxVID uint32
	for _, v := range r.Volumes {
		maxVID = max(maxVID, v.ID)
	}
	// Keys and volume ids first: once the node is in the topology its
	// volumes can be assigned.
	if err := s.seq.SetMax(maxFileKey); errors.Is(err, topology.ErrForeignKey) {
		s.log.Debug("ignoring reported max file key", "server", r.URL, "err", err)
	} else if err != nil {
		s.log.Error("cannot record reported max file key", "server", r.URL, "key", maxFileKey, "err", err)
	}
	if err := s.seq.SetMaxVolumeID(maxVID); err != nil {
		s.log.Error("cannot record reported volume id", "server", r.URL, "volume", maxVID, "err", err)
	}

	s.nodesMu.Lock()
	defer s.nodesMu.Unlock()
	if session == 0 {
		s.session++
		session = s.session
	}
	ch, err := s.topo.UpdateNode(r, s.now())
	if err != nil {
		return session, err
	}
	s.owners[r.URL] = session
	if ch.Joined || ch.Moved {
		n, _ := s.topo.Node(r.URL)
		msg := "volume server joined"
		if !ch.Joined {
			msg = "volume server moved"
		}
		s.log.Info(msg, "server", n.URL, "public_url", n.PublicURL, "grpc", n.GRPCAddress, "data_center", n.DataCenter,
			"rack", n.Rack, "max_volumes", n.MaxVolumes, "volumes", len(n.Volumes))
	}
	if !ch.Joined && (len(ch.Added) > 0 || len(ch.Removed) > 0) {
		s.log.Debug("volume server volumes changed", "server", r.URL, "added", ch.Added, "removed", ch.Removed)
	}
	return session, nil
}

// dropNode removes the node at url if the stream with session still owns it.
func (s *Server) dropNode(url string, session uint64, reason string) {
	s.nodesMu.Lock()
	defer s.nodesMu.Unlock()
	if s.owners[url] != session {
		return
	}
	delete(s.owners, url)
	if vols, ok := s.topo.RemoveNode(url); ok {
		s.log.Info("volume server left", "server", url, "reason", reason, "volumes", len(vols))
	}
}

// expireLoop drops servers silent for longer than NodeTimeout, until Close.
func (s *Server) expireLoop() {
	every := max(s.cfg.NodeTimeout/4, 10*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-tick.C:
			s.nodesMu.Lock()
			for _, url := range s.topo.Expire(s.now()) {
				delete(s.owners, url)
				s.log.Info("volume server left", "server", url, "reason", "no heartbeat within "+s.cfg.NodeTimeout.String())
			}
			s.nodesMu.Unlock()
		}
	}
}
