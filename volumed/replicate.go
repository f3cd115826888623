package volumed

import (
	"context"
	"errors"
	"fmt"

	"github.com/kelpfs/kelp/client"
)

// errReplicasMissing means fewer replicas are live than the volume's
// replication asks for; the write is refused rather than under-replicated.
var errReplicasMissing = errors.New("volume: replicas missing")

// peersFor returns the blob API addresses of the other replicas of vid that
// a write or delete must reach, or none for a forwarded request or a volume
// without copies. It fails when the master knows fewer live replicas than
// the volume's replication string requires.
func (s *Server) peersFor(ctx context.Context, vid uint32, forwarded bool) ([]string, error) {
	if forwarded {
		return nil, nil
	}
	st, err := s.store.VolumeStatus(vid)
	if err != nil {
		return nil, err
	}
	copies := st.Replication.CopyCount()
	if copies == 1 {
		return nil, nil
	}
	locs, err := s.master.Lookup(ctx, vid)
	if err != nil {
		return nil, fmt.Errorf("%w: volume %d: looking up its replicas: %v", errReplicasMissing, vid, err)
	}
	peers := make([]string, 0, copies-1)
	for _, l := range locs {
		if l.URL != s.url {
			peers = append(peers, l.URL)
		}
	}
	if len(peers) < copies-1 {
		s.master.Invalidate(vid)
		return nil, fmt.Errorf("%w: volume %d has replication %s (%d copies) but only %d live replicas",
			errReplicasMissing, vid, st.Replication, copies, len(peers)+1)
	}
	return peers, nil
}

// forwardWrite stores the same needle on a peer replica.
func (s *Server) forwardWrite(ctx context.Context, peer string, up *upload) error {
	_, err := s.blobs.Upload(ctx, peer, up.fid.String(), up.n.Data, client.UploadOptions{
		Name:         string(up.n.Name),
		Mime:         string(up.n.Mime),
		TTL:          up.n.TTL.String(),
		LastModified: int64(up.n.LastModified),
		Replicate:    true,
	})
	if err != nil {
		s.master.Invalidate(up.fid.VolumeID)
	}
	return err
}
