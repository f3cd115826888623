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
	"github.com/kelpfs/kelp/filerd"
)

// filerFlags maps `kelp filer` flags (also used by `kelp server` with a
// prefix) onto a filerd.Config.
type filerFlags struct {
	port, grpcPort     int
	dir                string
	defaultReplication string
	collection         string
	maxMB              int
	inlineLimit        int
	logRetention       time.Duration
	fsync              bool
	lockSessionTTL     time.Duration
	lockGrace          time.Duration
	handleGrace        time.Duration
}

func (f *filerFlags) register(fs *flag.FlagSet, prefix string) {
	d := filerd.DefaultConfig()
	if prefix == "" {
		fs.StringVar(&f.dir, "dir", "", "directory of the embedded metadata store (required)")
	}
	fs.IntVar(&f.port, prefix+"port", 8888, "HTTP port of the file API")
	fs.IntVar(&f.grpcPort, prefix+"port.grpc", 0, "gRPC port for mounts and filer.sync (default HTTP port + 10000)")
	fs.StringVar(&f.defaultReplication, prefix+"defaultReplication", "", "replication xyz of new blobs (default: the master's)")
	fs.StringVar(&f.collection, prefix+"collection", "", "collection of new blobs")
	fs.IntVar(&f.maxMB, prefix+"maxMB", d.ChunkSizeMB, "HTTP uploads are cut into blobs of this many MiB")
	fs.IntVar(&f.inlineLimit, prefix+"inlineLimit", d.InlineLimit, "files up to this many bytes are kept in the metadata store instead of in blobs")
	fs.DurationVar(&f.logRetention, prefix+"logRetention", d.LogRetention, "how long the metadata change log is kept for subscribers")
	fs.BoolVar(&f.fsync, prefix+"fsync", false, "fsync every metadata commit, so it survives a power cut too (slower; without it a commit survives any process crash)")
	fs.DurationVar(&f.lockSessionTTL, prefix+"lockSessionTTL", d.LockSessionTTL, "lease of a mount's lock session: how long the locks of a dead mount outlive it")
	fs.DurationVar(&f.lockGrace, prefix+"lockGrace", d.LockGrace, "after a restart with mount sessions live, how long mounts have to re-assert their locks (before new ones are granted; only if locks were held) and take back their handles on open files (before unlinked ones are freed); at least -"+prefix+"lockSessionTTL; 0 disables it, and such locks and files are lost")
	fs.DurationVar(&f.handleGrace, prefix+"handleGrace", d.HandleGrace, "how long the open-file handles of a mount whose lease ran out (cut off, stopped, killed) are kept for it to take back when it returns, so files it had open that were unlinked meanwhile are still there; 0 releases them with the lease")
}

func (f *filerFlags) config(ip, masterGRPC string) (filerd.Config, error) {
	cfg := filerd.DefaultConfig()
	if f.dir == "" {
		return cfg, fmt.Errorf("no metadata directory: give -dir")
	}
	gp := f.grpcPort
	if gp == 0 {
		gp = f.port + client.GRPCPortOffset
	}
	cfg.HTTPAddr = net.JoinHostPort(ip, strconv.Itoa(f.port))
	cfg.GRPCAddr = net.JoinHostPort(ip, strconv.Itoa(gp))
	cfg.Dir = f.dir
	cfg.MasterAddr = masterGRPC
	cfg.DefaultReplication = f.defaultReplication
	cfg.Collection = f.collection
	cfg.ChunkSizeMB = f.maxMB
	cfg.InlineLimit = f.inlineLimit
	cfg.LogRetention = f.logRetention
	cfg.Fsync = f.fsync
	cfg.LockSessionTTL = f.lockSessionTTL
	cfg.LockGrace = f.lockGrace
	cfg.HandleGrace = f.handleGrace
	return cfg, cfg.Validate()
}

func runFiler(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("filer", "Starts a filer: the namespace (directories, attributes, chunk lists) in an embedded store,\nits change log, the gRPC API for mounts and the HTTP file API.", stderr)
	var ff filerFlags
	var df daemonFlags
	ff.register(fs, "")
	ip := fs.String("ip", "", "IP address to bind (default: every interface)")
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
	cfg, err := ff.config(*ip, mg)
	if err != nil {
		return err
	}
	cfg.Logger = log
	srv, err := filerd.New(cfg)
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}
