package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filersync"
)

// sideFlags are the -a.* or -b.* flags of filer.sync.
type sideFlags struct {
	filer    string
	path     string
	exclude  string
	debug    bool
	proxy    bool
	fromTsMs int64
}

func (s *sideFlags) register(fs *flag.FlagSet, p string) {
	fs.StringVar(&s.filer, p, "", "filer "+strings.ToUpper(p)+" as host:port (gRPC at port+10000) or host:port.grpcPort (required)")
	fs.StringVar(&s.path, p+".path", "/", "the tree of filer "+strings.ToUpper(p)+" kept in step")
	fs.StringVar(&s.exclude, p+".excludePaths", "", "comma-separated subtrees of filer "+strings.ToUpper(p)+" left alone")
	fs.BoolVar(&s.debug, p+".debug", false, "log every event applied from filer "+strings.ToUpper(p))
	fs.BoolVar(&s.proxy, p+".filerProxy", false, "move filer "+strings.ToUpper(p)+"'s chunk bytes through its HTTP API instead of straight to its volume servers (for volume servers this machine cannot reach)")
	fs.Int64Var(&s.fromTsMs, p+".fromTsMs", 0, "without a checkpoint, follow filer "+strings.ToUpper(p)+"'s change log from this time (ms since the epoch; 0 = from the beginning)")
}

func (s *sideFlags) side(name string) (filersync.Side, error) {
	if s.filer == "" {
		return filersync.Side{}, fmt.Errorf("-%s is required: the address of filer %s", name, strings.ToUpper(name))
	}
	if s.fromTsMs < 0 {
		return filersync.Side{}, fmt.Errorf("-%s.fromTsMs %d is negative", name, s.fromTsMs)
	}
	side := filersync.Side{Filer: s.filer, Path: s.path, Debug: s.debug, FilerProxy: s.proxy, FromTsNs: s.fromTsMs * int64(time.Millisecond)}
	for _, x := range strings.Split(s.exclude, ",") {
		if x = strings.TrimSpace(x); x != "" {
			side.Exclude = append(side.Exclude, x)
		}
	}
	return side, nil
}

func runFilerSync(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("filer.sync", "Keeps a tree of filer A and a tree of filer B in step, both ways (or A into B only with\n-isActivePassive), following each filer's change log from a checkpoint kept in the other.", stderr)
	var a, b sideFlags
	var df daemonFlags
	a.register(fs, "a")
	b.register(fs, "b")
	d := filersync.DefaultConfig()
	activePassive := fs.Bool("isActivePassive", false, "replicate A into B only")
	concurrency := fs.Int("concurrency", d.Concurrency, "events applied at once per direction (events on related paths keep their order)")
	chunkConcurrency := fs.Int("chunkConcurrency", d.ChunkConcurrency, "chunks copied at once per direction (bounds the memory copies hold)")
	statusInterval := fs.Duration("statusInterval", 30*time.Second, "how often to log a status line per direction (0: never)")
	metricsAddr := fs.String("metrics.addr", "", "serve Prometheus metrics under /metrics on this address, e.g. 127.0.0.1:9327 (off when empty)")
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := d
	var err error
	if cfg.A, err = a.side("a"); err != nil {
		return err
	}
	if cfg.B, err = b.side("b"); err != nil {
		return err
	}
	cfg.ActivePassive = *activePassive
	cfg.Concurrency, cfg.ChunkConcurrency, cfg.StatusInterval = *concurrency, *chunkConcurrency, *statusInterval
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, stopDebug, err := df.start(ctx, stderr)
	if err != nil {
		return err
	}
	defer stopDebug()
	cfg.Logger = log
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if *metricsAddr != "" {
		stop, err := serveMetrics(ctx, *metricsAddr, reg, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	s, err := filersync.New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Run(ctx)
}

// serveMetrics serves reg under /metrics until ctx ends.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return serveHTTP(ctx, "metrics", "-metrics.addr", addr, mux, log)
}

func runFilerSyncVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("filer.sync.verify", "Walks a tree of filer A and a tree of filer B and lists what is missing on B, extra on B,\nor different (type, size, content by ETag, mode, owner, symlink target, xattrs); exits 1 if\nanything is.", stderr)
	var a, b sideFlags
	var lf logFlags
	for _, s := range []struct {
		f *sideFlags
		p string
	}{{&a, "a"}, {&b, "b"}} {
		fs.StringVar(&s.f.filer, s.p, "", "filer "+strings.ToUpper(s.p)+" as host:port (gRPC at port+10000) or host:port.grpcPort (required)")
		fs.StringVar(&s.f.path, s.p+".path", "/", "the tree of filer "+strings.ToUpper(s.p)+" to compare")
		fs.StringVar(&s.f.exclude, s.p+".excludePaths", "", "comma-separated subtrees of filer "+strings.ToUpper(s.p)+" left out")
	}
	concurrency := fs.Int("concurrency", 8, "directories listed at once")
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	var sides [2]filersync.VerifySide
	for i, s := range []struct {
		f    *sideFlags
		name string
	}{{&a, "a"}, {&b, "b"}} {
		side, err := s.f.side(s.name)
		if err != nil {
			return err
		}
		gaddr, err := client.GRPCAddress(side.Filer)
		if err != nil {
			return fmt.Errorf("-%s: %w", s.name, err)
		}
		fc, err := client.NewFilerClient(client.FilerClientConfig{Address: gaddr})
		if err != nil {
			return fmt.Errorf("-%s: %w", s.name, err)
		}
		defer fc.Close()
		sides[i] = filersync.VerifySide{Filer: fc.API(), Path: side.Path, Exclude: side.Exclude}
	}
	rep, err := filersync.Verify(ctx, sides[0], sides[1], filersync.VerifyOptions{Concurrency: *concurrency, Logger: log})
	for _, p := range rep.Missing {
		fmt.Fprintf(stdout, "missing on B: %s\n", p)
	}
	for _, p := range rep.Extra {
		fmt.Fprintf(stdout, "extra on B: %s\n", p)
	}
	for _, d := range rep.Differ {
		fmt.Fprintf(stdout, "differs: %s: %s\n", d.Path, d.What)
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	fmt.Fprintf(stdout, "compared %d entries: %d missing on B, %d extra on B, %d differing\n",
		rep.Compared, len(rep.Missing), len(rep.Extra), len(rep.Differ))
	if !rep.Clean() {
		return fmt.Errorf("the trees differ")
	}
	return nil
}
