package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/volumed"
)

// volumeFlags maps `kelp volume` flags (also used by `kelp server` with a
// prefix) onto a volumed.Config.
type volumeFlags struct {
	dirs, max         string
	port, grpcPort    int
	publicURL         string
	dataCenter, rack  string
	pulse             time.Duration
	fsync             bool
	maxUploadMB       int64
	volumeSizeLimitMB int64
}

func (v *volumeFlags) register(fs *flag.FlagSet, prefix string) {
	d := volumed.DefaultConfig()
	if prefix == "" {
		fs.StringVar(&v.dirs, "dir", "", "comma-separated directories that hold the volumes (required)")
	}
	fs.StringVar(&v.max, prefix+"max", "0", "maximum number of volumes per directory, comma-separated (0: derived from free disk space)")
	fs.IntVar(&v.port, prefix+"port", 8080, "HTTP port of the blob API")
	fs.IntVar(&v.grpcPort, prefix+"port.grpc", 0, "gRPC port of the admin API (default HTTP port + 10000)")
	fs.StringVar(&v.publicURL, prefix+"publicUrl", "", "host:port clients should use to reach this server (default ip:port)")
	fs.StringVar(&v.dataCenter, prefix+"dataCenter", d.DataCenter, "data center this server is in")
	fs.StringVar(&v.rack, prefix+"rack", d.Rack, "rack this server is in")
	fs.DurationVar(&v.pulse, prefix+"pulse", d.HeartbeatInterval, "heartbeat interval to the master")
	fs.BoolVar(&v.fsync, prefix+"fsync", false, "fsync every write before acknowledging it (survives power loss, slower)")
	fs.Int64Var(&v.maxUploadMB, prefix+"maxUploadMB", d.MaxUploadBytes>>20, "largest accepted blob in MiB")
	fs.Int64Var(&v.volumeSizeLimitMB, prefix+"volumeSizeLimitMB", d.VolumeSizeLimit>>20, "hard size limit of one volume in MiB (the master stops assigning earlier)")
}

func (v *volumeFlags) config(ip, masterGRPC string) (volumed.Config, error) {
	cfg := volumed.DefaultConfig()
	for _, d := range strings.Split(v.dirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			cfg.Dirs = append(cfg.Dirs, d)
		}
	}
	if len(cfg.Dirs) == 0 {
		return cfg, fmt.Errorf("no volume directory: give -dir")
	}
	maxes := strings.Split(v.max, ",")
	if len(maxes) != 1 && len(maxes) != len(cfg.Dirs) {
		return cfg, fmt.Errorf("-max has %d values for %d directories", len(maxes), len(cfg.Dirs))
	}
	for i := range cfg.Dirs {
		m := maxes[0]
		if len(maxes) > 1 {
			m = maxes[i]
		}
		n, err := strconv.Atoi(strings.TrimSpace(m))
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("bad -max %q: want a count >= 0", m)
		}
		cfg.MaxVolumes = append(cfg.MaxVolumes, n)
	}
	gp := v.grpcPort
	if gp == 0 {
		gp = v.port + client.GRPCPortOffset
	}
	cfg.IP = ip
	// An empty ip listens on every interface.
	cfg.HTTPAddr = net.JoinHostPort(ip, strconv.Itoa(v.port))
	cfg.GRPCAddr = net.JoinHostPort(ip, strconv.Itoa(gp))
	cfg.PublicURL = v.publicURL
	cfg.MasterAddr = masterGRPC
	cfg.DataCenter, cfg.Rack = v.dataCenter, v.rack
	cfg.HeartbeatInterval = v.pulse
	cfg.Fsync = v.fsync
	cfg.MaxUploadBytes = v.maxUploadMB << 20
	cfg.VolumeSizeLimit = v.volumeSizeLimitMB << 20
	return cfg, cfg.Validate()
}

func runVolume(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("volume", "Starts a volume server that stores blobs in needle volumes and reports to a master.", stderr)
	var vf volumeFlags
	var df daemonFlags
	vf.register(fs, "")
	ip := fs.String("ip", "", "IP address to bind and advertise (default: every interface, advertised as 127.0.0.1)")
	master := fs.String("master", "localhost:9333", "master address host:port (gRPC at port+10000, or host:port.grpcPort)")
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, stopDebug, err := df.start(ctx, stderr)
	if err != nil {
		return err
	}
	defer stopDebug()
	mg, err := client.GRPCAddress(*master)
	if err != nil {
		return fmt.Errorf("-master: %w", err)
	}
	cfg, err := vf.config(*ip, mg)
	if err != nil {
		return err
	}
	cfg.Logger = log
	srv, err := volumed.New(cfg)
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}
