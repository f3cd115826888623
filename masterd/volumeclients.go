package masterd

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kelpfs/kelp/api/volumepb"
	"github.com/kelpfs/kelp/client"
)

// volumeClients caches one gRPC connection per volume server admin
// address. Connections are lazy (grpc.NewClient dials on first use).
type volumeClients struct {
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newVolumeClients() *volumeClients {
	return &volumeClients{conns: make(map[string]*grpc.ClientConn)}
}

func (p *volumeClients) get(addr string) (volumepb.VolumeClient, error) {
	if addr == "" {
		return nil, errors.New("volume server reported no grpc address")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	cc, ok := p.conns[addr]
	if !ok {
		var err error
		cc, err = grpc.NewClient(addr, append(client.TransportDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			return nil, fmt.Errorf("dial volume server %s: %w", addr, err)
		}
		p.conns[addr] = cc
	}
	return volumepb.NewVolumeClient(cc), nil
}

func (p *volumeClients) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for addr, cc := range p.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", addr, err))
		}
		delete(p.conns, addr)
	}
	return errors.Join(errs...)
}
