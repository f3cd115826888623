package masterd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/masterd/topology"
)

// ErrClosed reports a call on a closed server.
var ErrClosed = errors.New("masterd: server closed")

// Server is a running master. Create it with New.
type Server struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	topo *topology.Topology
	seq  *topology.Sequencer

	httpLn  net.Listener
	grpcLn  net.Listener
	httpSrv *http.Server
	grpcSrv *grpc.Server
	volumes *volumeClients

	growMu   sync.Mutex // serialises volume growth (placement + allocation + registration)
	vacuumMu sync.Mutex // one vacuum run at a time

	nodesMu sync.Mutex        // orders topology updates with stream ownership
	owners  map[string]uint64 // node url -> heartbeat stream session that owns it
	session uint64            // last session number handed out

	baseCtx   context.Context // cancelled by Close; for work the loops start
	cancel    context.CancelFunc
	ready     chan struct{}
	closed    chan struct{} // closed by Close
	mu        sync.Mutex    // guards serving and the start of loops against Close
	serving   bool
	loops     sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, opens the sequencer in cfg.MetaDir and binds both
// listeners, so HTTPAddr and GRPCAddr are known when it returns. Nothing is
// served until Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "master")
	seq, err := topology.OpenSequencer(cfg.MetaDir, cfg.KeyStep)
	if err != nil {
		return nil, fmt.Errorf("masterd: %w", err)
	}
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("masterd: listen http %s: %w", cfg.HTTPAddr, err)
	}
	grpcLn, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		httpLn.Close()
		return nil, fmt.Errorf("masterd: listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{
		cfg: cfg,
		log: log,
		now: now,
		topo: topology.New(topology.Config{
			VolumeSizeLimit: cfg.volumeSizeLimit(),
			NodeTimeout:     cfg.NodeTimeout,
			PendingGrace:    cfg.NodeTimeout,
		}),
		seq:     seq,
		httpLn:  httpLn,
		grpcLn:  grpcLn,
		grpcSrv: grpc.NewServer(client.TransportServerOptions()...),
		volumes: newVolumeClients(),
		owners:  make(map[string]uint64),
		ready:   make(chan struct{}),
		closed:  make(chan struct{}),
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.httpSrv = &http.Server{
		Handler:           s.httpHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	masterpb.RegisterMasterServer(s.grpcSrv, &grpcServer{s: s})
	return s, nil
}

// HTTPAddr returns the bound HTTP address (host:port).
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// GRPCAddr returns the bound gRPC address (host:port).
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// Ready is closed once Serve is serving both APIs.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve serves HTTP and gRPC and runs the node expiry and vacuum loops
// until ctx is done or Close is called; then it closes the server. It
// returns nil on a clean stop and an error if a listener fails. Serve may
// be called once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return ErrClosed
	default:
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("masterd: Serve called twice")
	}
	s.serving = true
	errc := make(chan error, 2)
	s.loops.Add(4)
	go func() {
		defer s.loops.Done()
		if err := s.grpcSrv.Serve(s.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("masterd: grpc: %w", err)
		}
	}()
	go func() {
		defer s.loops.Done()
		if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("masterd: http: %w", err)
		}
	}()
	go func() {
		defer s.loops.Done()
		s.expireLoop()
	}()
	go func() {
		defer s.loops.Done()
		s.vacuumLoop()
	}()
	s.mu.Unlock()

	s.log.Info("master serving", "http", s.HTTPAddr(), "grpc", s.GRPCAddr(), "meta_dir", s.cfg.MetaDir,
		"volume_size_limit_mb", s.cfg.VolumeSizeLimitMB, "default_replication", s.cfg.DefaultReplication)
	close(s.ready)

	var err error
	select {
	case <-ctx.Done():
	case <-s.closed:
	case err = <-errc:
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the server; it is idempotent and safe to call concurrently
// with Serve. Order: mark closed and cancel the loops' work, stop HTTP (in-flight
// requests get a few seconds), stop gRPC (heartbeat streams end, which
// drops their nodes), wait for every goroutine Serve started, then close
// the connections to volume servers. The sequencer needs no closing: every
// reservation is on disk before it is handed out.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closed)
		s.mu.Unlock()
		s.cancel()

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			s.httpSrv.Close()
		}
		cancel()
		s.httpLn.Close() // if Serve never ran
		s.grpcSrv.Stop()
		s.grpcLn.Close()
		s.loops.Wait()
		s.closeErr = s.volumes.close()
		s.log.Info("master stopped")
	})
	return s.closeErr
}

// leader is the address the master reports as the cluster's leader.
func (s *Server) leader() string { return s.HTTPAddr() }
