package volumed

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/kelpfs/kelp/api/masterpb"
)

// heartbeatLoop keeps one stream to the master open, sending a full report
// every HeartbeatInterval and at once when a volume is added, removed or
// changes state. It reconnects with backoff after errors and drops expired
// TTL volumes between reports. It returns when the server stops.
func (s *Server) heartbeatLoop() {
	backoff := 200 * time.Millisecond
	for {
		err := s.heartbeatStream()
		select {
		case <-s.stop:
			return
		default:
		}
		s.log.Warn("heartbeat to master failed; retrying", "master", s.cfg.MasterAddr, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.HeartbeatInterval)
	}
}

func (s *Server) heartbeatStream() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := s.master.API().SendHeartbeat(ctx)
	if err != nil {
		return err
	}
	// The receiver drains the master's answers; it ends with the stream.
	// The master answers a report once it has applied it, so the first
	// answer means this server and its volumes are registered: only then
	// is the server ready (lookups find it).
	var recvErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := stream.Recv(); err != nil {
				recvErr = err
				return
			}
			s.markReady()
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	ticker := time.NewTicker(s.cfg.HeartbeatInterval)
	defer ticker.Stop()
	first := true
	for {
		if dropped := s.store.DropExpired(); len(dropped) > 0 {
			s.log.Info("dropped expired TTL volumes", "volumes", dropped)
		}
		if err := stream.Send(s.report()); err != nil {
			if errors.Is(err, io.EOF) {
				// The real cause comes from Recv.
				<-done
				return recvErr
			}
			return err
		}
		if first {
			s.log.Info("connected to master", "master", s.cfg.MasterAddr)
			first = false
		}
		select {
		case <-s.stop:
			_ = stream.CloseSend()
			return nil
		case <-done:
			return recvErr
		case <-ticker.C:
		case <-s.store.Changed():
		}
	}
}

// report is a full description of this server for the master.
func (s *Server) report() *masterpb.Heartbeat {
	hb := &masterpb.Heartbeat{
		Ip:             hostOf(s.url),
		Port:           portOf(s.url),
		GrpcPort:       s.grpcPort,
		PublicUrl:      s.publicURL,
		DataCenter:     s.cfg.DataCenter,
		Rack:           s.cfg.Rack,
		MaxVolumeCount: uint32(s.store.MaxVolumeCount()),
		MaxFileKey:     s.store.MaxFileKey(),
	}
	for _, v := range s.store.Status() {
		hb.Volumes = append(hb.Volumes, &masterpb.VolumeInfo{
			Id:              v.ID,
			Size:            uint64(v.Size),
			Collection:      v.Collection,
			Replication:     v.Replication.String(),
			Ttl:             v.TTL.String(),
			FileCount:       v.FileCount,
			DeleteCount:     v.DeleteCount,
			DeletedBytes:    uint64(v.DeletedBytes),
			ReadOnly:        v.ReadOnly,
			Full:            v.Full,
			CompactRevision: uint32(v.CompactRevision),
			Version:         uint32(v.Version),
		})
	}
	return hb
}
