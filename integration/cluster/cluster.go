// Package cluster is the integration test harness: it starts whole Kelp
// clusters in one process (master, volume servers and optionally a filer on 127.0.0.1 with
// ports chosen by the kernel), stops and restarts their parts on the same
// addresses and data, and hands out clients. Everything it starts stops by
// itself through t.Cleanup.
//
// A Cluster is not safe for concurrent Stop/Restart calls; the servers it
// runs are.
package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd"
	"github.com/kelpfs/kelp/masterd"
	"github.com/kelpfs/kelp/volumed"
)

// VolumeSpec places one volume server.
type VolumeSpec struct {
	DataCenter string
	Rack       string
	MaxVolumes int // 0 means 8
}

// Options shape a cluster.
type Options struct {
	// Volumes lists the volume servers; empty means one.
	Volumes []VolumeSpec
	// Master adjusts the master's config before it starts.
	Master func(*masterd.Config)
	// Volume adjusts each volume server's config before it starts.
	Volume func(i int, cfg *volumed.Config)
	// Filer starts a filer (badger store under the cluster's directory)
	// after the volume servers.
	Filer bool
	// FilerConfig adjusts the filer's config before it starts.
	FilerConfig func(*filerd.Config)
	// Logs shows daemon logs in the test output (default: discarded unless
	// KELP_TEST_LOGS is set).
	Logs bool
}

// Cluster is a running in-process cluster.
type Cluster struct {
	t       testing.TB
	dir     string
	opts    Options
	log     *slog.Logger
	Master  *Master
	Volumes []*Volume
	// Filer is the filer when Options.Filer is set, else nil.
	Filer *Filer
}

// Master is the cluster's master with its fixed addresses.
type Master struct {
	cfg    masterd.Config
	srv    *masterd.Server
	cancel context.CancelFunc
	done   chan error
}

// Volume is one volume server with its fixed addresses.
type Volume struct {
	cfg    volumed.Config
	srv    *volumed.Server
	cancel context.CancelFunc
	done   chan error
}

// Start starts a master and the volume servers, and waits until every volume
// server has reported to the master.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if len(opts.Volumes) == 0 {
		opts.Volumes = []VolumeSpec{{}}
	}
	c := &Cluster{t: t, dir: t.TempDir(), opts: opts, log: testLogger(t, opts.Logs)}
	mcfg := masterd.DefaultConfig()
	mcfg.HTTPAddr, mcfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	mcfg.MetaDir = filepath.Join(c.dir, "master")
	mcfg.NodeTimeout = 2 * time.Second
	mcfg.VacuumInterval = 0
	mcfg.Logger = c.log
	if opts.Master != nil {
		opts.Master(&mcfg)
	}
	c.Master = &Master{cfg: mcfg}
	c.startMaster()
	for i, spec := range opts.Volumes {
		vcfg := volumed.DefaultConfig()
		vcfg.HTTPAddr, vcfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
		vcfg.Dirs = []string{filepath.Join(c.dir, fmt.Sprintf("volume%d", i))}
		max := spec.MaxVolumes
		if max == 0 {
			max = 8
		}
		vcfg.MaxVolumes = []int{max}
		vcfg.MasterAddr = c.Master.GRPCAddr()
		if spec.DataCenter != "" {
			vcfg.DataCenter = spec.DataCenter
		}
		if spec.Rack != "" {
			vcfg.Rack = spec.Rack
		}
		vcfg.HeartbeatInterval = 200 * time.Millisecond
		vcfg.Logger = c.log.With("volume", i)
		if opts.Volume != nil {
			opts.Volume(i, &vcfg)
		}
		v := &Volume{cfg: vcfg}
		c.Volumes = append(c.Volumes, v)
		c.startVolume(v)
	}
	c.WaitNodes(len(c.Volumes))
	if opts.Filer {
		fcfg := filerd.DefaultConfig()
		fcfg.HTTPAddr, fcfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
		fcfg.Dir = filepath.Join(c.dir, "filer")
		fcfg.MasterAddr = c.Master.GRPCAddr()
		fcfg.Logger = c.log.With("filer", 0)
		if opts.FilerConfig != nil {
			opts.FilerConfig(&fcfg)
		}
		c.Filer = &Filer{c: c, cfg: fcfg}
		c.Filer.start()
	}
	return c
}

func testLogger(t testing.TB, show bool) *slog.Logger {
	if show || os.Getenv("KELP_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func (c *Cluster) startMaster() {
	c.t.Helper()
	m := c.Master
	srv, err := masterd.New(m.cfg)
	if err != nil {
		c.t.Fatalf("start master: %v", err)
	}
	// Pin the kernel-chosen ports so a restart comes back on the same ones.
	m.cfg.HTTPAddr, m.cfg.GRPCAddr = srv.HTTPAddr(), srv.GRPCAddr()
	m.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() { m.done <- srv.Serve(ctx) }()
	c.t.Cleanup(m.stop)
	waitReady(c.t, "master", srv.Ready())
}

func (c *Cluster) startVolume(v *Volume) {
	c.t.Helper()
	srv, err := volumed.New(v.cfg)
	if err != nil {
		c.t.Fatalf("start volume server: %v", err)
	}
	v.cfg.HTTPAddr, v.cfg.GRPCAddr = srv.Addr(), srv.GRPCAddr()
	v.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel, v.done = cancel, make(chan error, 1)
	go func() { v.done <- srv.Serve(ctx) }()
	c.t.Cleanup(v.stop)
	waitReady(c.t, "volume server "+srv.Addr(), srv.Ready())
}

func waitReady(t testing.TB, what string, ready <-chan struct{}) {
	t.Helper()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s not ready after 20s", what)
	}
}

// stop is idempotent: it cancels Serve and waits for it to return.
func (m *Master) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cancel = nil
}

func (v *Volume) stop() {
	if v.cancel == nil {
		return
	}
	v.cancel()
	<-v.done
	v.cancel = nil
}

// HTTPAddr is the master's HTTP address.
func (m *Master) HTTPAddr() string { return m.cfg.HTTPAddr }

// GRPCAddr is the master's gRPC address.
func (m *Master) GRPCAddr() string { return m.cfg.GRPCAddr }

// Server is the running master (nil while stopped).
func (m *Master) Server() *masterd.Server { return m.srv }

// URL is the volume server's blob API address (ip:port).
func (v *Volume) URL() string { return v.cfg.HTTPAddr }

// Server is the running volume server (nil while stopped).
func (v *Volume) Server() *volumed.Server { return v.srv }

// Dir is the volume server's data directory.
func (v *Volume) Dir() string { return v.cfg.Dirs[0] }

// StopMaster stops the master.
func (c *Cluster) StopMaster() { c.Master.stop(); c.Master.srv = nil }

// RestartMaster stops the master and starts it again on the same addresses
// and meta directory, then waits for every running volume server to report.
func (c *Cluster) RestartMaster() {
	c.t.Helper()
	c.StopMaster()
	c.startMaster()
	c.WaitNodes(c.running())
}

// StopVolume stops volume server i cleanly.
func (c *Cluster) StopVolume(i int) { c.Volumes[i].stop(); c.Volumes[i].srv = nil }

// RestartVolume starts volume server i again on its address and data, and
// returns once the master lists it with its volumes, as an operator waits
// for: its Ready means the master answered its first heartbeat (a stale
// entry from before the stop cannot pass for it), and WaitNodes that no
// other running server is missing.
func (c *Cluster) RestartVolume(i int) {
	c.t.Helper()
	c.StopVolume(i)
	c.startVolume(c.Volumes[i])
	c.WaitNodes(c.running())
}

func (c *Cluster) running() int {
	n := 0
	for _, v := range c.Volumes {
		if v.srv != nil {
			n++
		}
	}
	return n
}

// WaitNodes waits until the master's topology holds exactly n volume servers.
func (c *Cluster) WaitNodes(n int) {
	c.t.Helper()
	mc := c.MasterClient()
	deadline := time.Now().Add(20 * time.Second)
	var got int
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := mc.API().ClusterStatus(ctx, &masterpb.ClusterStatusRequest{})
		cancel()
		if err == nil {
			got = 0
			for _, dc := range st.DataCenters {
				for _, r := range dc.Racks {
					got += len(r.Nodes)
				}
			}
			if got == n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("master sees %d volume servers, want %d", got, n)
}

// MasterClient returns a new master client, closed at the end of the test.
func (c *Cluster) MasterClient() *client.MasterClient {
	c.t.Helper()
	mc, err := client.NewMasterClient(client.MasterClientConfig{Address: c.Master.GRPCAddr()})
	if err != nil {
		c.t.Fatalf("master client: %v", err)
	}
	c.t.Cleanup(func() { mc.Close() })
	return mc
}

// Client returns a new whole-cluster client, closed at the end of the test.
func (c *Cluster) Client() *client.Cluster {
	c.t.Helper()
	cl, err := client.NewCluster(client.ClusterConfig{Master: client.MasterClientConfig{Address: c.Master.GRPCAddr(), LookupTTL: time.Second}})
	if err != nil {
		c.t.Fatalf("cluster client: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// for a daemon started later (a real binary) to bind. It is chosen below
// the kernel's ephemeral range: a port taken from that range (listen on
// :0, close) could be handed to any outgoing connection, the cluster's own
// included, before the daemon binds it ("address already in use"). Ports
// are not handed out twice by one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := fixedPortRange()
	for range 1000 {
		p := lo + rand.IntN(hi-lo)
		if _, dup := handedOut.LoadOrStore(p, true); dup {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatalf("free port: none free in %d..%d", lo, hi)
	return 0
}

// handedOut holds the ports FreePort returned in this test binary.
var handedOut sync.Map

// fixedPortRange is where FreePort picks: from 12000 up to the start of
// the ephemeral range (ip_local_port_range; 32768 if unreadable).
func fixedPortRange() (lo, hi int) {
	lo, hi = 12000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var eLo, eHi int
		if n, _ := fmt.Sscan(string(b), &eLo, &eHi); n == 2 && eLo > lo+1000 {
			hi = eLo
		}
	}
	return lo, hi
}

// Filer is the cluster's filer with its fixed addresses and store directory.
type Filer struct {
	c       *Cluster
	cfg     filerd.Config
	srv     *filerd.Server
	cancel  context.CancelFunc
	done    chan error
	cleanup bool // stop is registered with t.Cleanup
}

func (f *Filer) start() {
	t := f.c.t
	t.Helper()
	srv, err := filerd.New(f.cfg)
	if err != nil {
		t.Fatalf("start filer: %v", err)
	}
	f.cfg.HTTPAddr, f.cfg.GRPCAddr = srv.HTTPAddr(), srv.GRPCAddr()
	f.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- srv.Serve(ctx) }()
	if !f.cleanup {
		// Once, at the first start: a restarted filer still stops
		// where the first one would, after the mounts made since.
		f.cleanup = true
		t.Cleanup(f.stop)
	}
	waitReady(t, "filer", srv.Ready())
}

func (f *Filer) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	if err := <-f.done; err != nil {
		f.c.t.Errorf("filer stopped with %v", err)
	}
	f.cancel = nil
}

// HTTPAddr is the filer's HTTP file API address (ip:port).
func (f *Filer) HTTPAddr() string { return f.cfg.HTTPAddr }

// URL is "http://" + HTTPAddr.
func (f *Filer) URL() string { return "http://" + f.cfg.HTTPAddr }

// GRPCAddr is the filer's gRPC address.
func (f *Filer) GRPCAddr() string { return f.cfg.GRPCAddr }

// Dir is the filer's store directory.
func (f *Filer) Dir() string { return f.cfg.Dir }

// Server is the running filer (nil while stopped).
func (f *Filer) Server() *filerd.Server { return f.srv }

// Stop stops the filer cleanly (idempotent).
func (f *Filer) Stop() { f.stop(); f.srv = nil }

// Restart stops the filer and starts it again on the same addresses and store.
func (f *Filer) Restart() {
	f.c.t.Helper()
	f.Stop()
	f.start()
}

// MountAddr is the filer's address as a mount takes it:
// "host:httpPort.grpcPort".
func (f *Filer) MountAddr() string {
	host, hp, _ := net.SplitHostPort(f.cfg.HTTPAddr)
	_, gp, _ := net.SplitHostPort(f.cfg.GRPCAddr)
	return net.JoinHostPort(host, hp+"."+gp)
}
