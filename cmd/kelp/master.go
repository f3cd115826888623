package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/masterd"
)

// masterFlags maps `kelp master` flags (also used by `kelp server` with a
// prefix) onto a masterd.Config.
type masterFlags struct {
	port, grpcPort     int
	metaDir            string
	volumeSizeLimitMB  uint64
	defaultReplication string
	garbageThreshold   float64
	vacuumInterval     time.Duration
	nodeTimeout        time.Duration
}

func (m *masterFlags) register(fs *flag.FlagSet, prefix string) {
	d := masterd.DefaultConfig()
	fs.IntVar(&m.port, prefix+"port", 9333, "HTTP port of the master API")
	fs.IntVar(&m.grpcPort, prefix+"port.grpc", 0, "gRPC port (default HTTP port + 10000)")
	if prefix == "" {
		fs.StringVar(&m.metaDir, "mdir", "", "directory for the master's state: file-key and volume-id high-water marks (required)")
	}
	fs.Uint64Var(&m.volumeSizeLimitMB, prefix+"volumeSizeLimitMB", d.VolumeSizeLimitMB, "volumes at this size in MiB are full and no longer assigned")
	fs.StringVar(&m.defaultReplication, prefix+"defaultReplication", d.DefaultReplication, "replication xyz used when an assign gives none (000 001 010 100 200 110)")
	fs.Float64Var(&m.garbageThreshold, prefix+"garbageThreshold", d.GarbageThreshold, "vacuum volumes whose deleted share is above this")
	fs.DurationVar(&m.vacuumInterval, prefix+"vacuumInterval", d.VacuumInterval, "how often to vacuum on its own (0 disables)")
	fs.DurationVar(&m.nodeTimeout, prefix+"nodeTimeout", d.NodeTimeout, "a volume server silent this long is dropped")
}

func (m *masterFlags) config(ip string) (masterd.Config, error) {
	cfg := masterd.DefaultConfig()
	if m.metaDir == "" {
		return cfg, fmt.Errorf("no state directory: give -mdir")
	}
	gp := m.grpcPort
	if gp == 0 {
		gp = m.port + client.GRPCPortOffset
	}
	cfg.HTTPAddr = net.JoinHostPort(ip, strconv.Itoa(m.port))
	cfg.GRPCAddr = net.JoinHostPort(ip, strconv.Itoa(gp))
	cfg.MetaDir = m.metaDir
	cfg.VolumeSizeLimitMB = m.volumeSizeLimitMB
	cfg.DefaultReplication = m.defaultReplication
	cfg.GarbageThreshold = m.garbageThreshold
	cfg.VacuumInterval = m.vacuumInterval
	cfg.NodeTimeout = m.nodeTimeout
	return cfg, cfg.Validate()
}

func runMaster(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("master", "Starts a master: topology, volume placement and file-id assignment.", stderr)
	var mf masterFlags
	var df daemonFlags
	mf.register(fs, "")
	ip := fs.String("ip", "", "IP address to bind (default: every interface)")
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, stopDebug, err := df.start(ctx, stderr)
	if err != nil {
		return err
	}
	defer stopDebug()
	cfg, err := mf.config(*ip)
	if err != nil {
		return err
	}
	cfg.Logger = log
	srv, err := masterd.New(cfg)
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}
