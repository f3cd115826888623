package cluster

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/mount"
)

// LockCut is a mount's connection to the filer (mount.Config.FilerConn)
// on which the lock service can be cut off, as if the network between
// the mount and the filer dropped those calls: while cut, every lock
// call (renewals included) hangs until its deadline and fails as
// unreachable. The mount's other filer calls go through. It is how a test
// lets a live mount's lease run out at the filer.
type LockCut struct {
	conn *grpc.ClientConn
	mu   sync.Mutex
	// healed is closed when the cut ends; nil while not cut.
	healed chan struct{}
}

var _ grpc.ClientConnInterface = (*LockCut)(nil)

// lockMethods prefixes the lock service's method names.
var lockMethods = "/" + lockpb.Locks_ServiceDesc.ServiceName + "/"

// MountFilerLockCut mounts the cluster's filer as MountFiler does, over a
// connection whose lock calls the returned LockCut can cut off.
func (c *Cluster) MountFilerLockCut(adjust func(*mount.Config)) (*Mount, *LockCut) {
	c.t.Helper()
	if c.Filer == nil {
		c.t.Fatal("MountFilerLockCut: the cluster has no filer (set Options.Filer)")
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true))}, client.TransportDialOptions()...)
	conn, err := grpc.NewClient(c.Filer.GRPCAddr(), opts...)
	if err != nil {
		c.t.Fatalf("filer connection: %v", err)
	}
	// Registered before the mount's cleanup, so it runs after it.
	c.t.Cleanup(func() { conn.Close() })
	lc := &LockCut{conn: conn}
	m := c.MountFiler(func(cfg *mount.Config) {
		cfg.FilerConn = lc
		if adjust != nil {
			adjust(cfg)
		}
	})
	c.t.Cleanup(lc.Heal) // a mount cut off cannot close its session
	return m, lc
}

// Cut cuts the lock calls off until Heal.
func (lc *LockCut) Cut() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.healed == nil {
		lc.healed = make(chan struct{})
	}
}

// Heal lets lock calls through again, those waiting in the cut included
// (as a retransmission would get through once the network is back).
func (lc *LockCut) Heal() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.healed != nil {
		close(lc.healed)
		lc.healed = nil
	}
}

// pass waits while lock calls are cut off, until the cut heals (nil) or
// ctx ends (an Unavailable error). Other methods pass at once.
func (lc *LockCut) pass(ctx context.Context, method string) error {
	if !strings.HasPrefix(method, lockMethods) {
		return nil
	}
	lc.mu.Lock()
	healed := lc.healed
	lc.mu.Unlock()
	if healed == nil {
		return nil
	}
	select {
	case <-healed:
		return nil
	case <-ctx.Done():
		return status.Errorf(codes.Unavailable, "lock service cut off by the test: %v", ctx.Err())
	}
}

// Invoke implements grpc.ClientConnInterface.
func (lc *LockCut) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if err := lc.pass(ctx, method); err != nil {
		return err
	}
	return lc.conn.Invoke(ctx, method, args, reply, opts...)
}

// NewStream implements grpc.ClientConnInterface.
func (lc *LockCut) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if err := lc.pass(ctx, method); err != nil {
		return nil, err
	}
	return lc.conn.NewStream(ctx, desc, method, opts...)
}
