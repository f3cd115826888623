package volumed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"

	"github.com/kelpfs/kelp/api/volumepb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/volumed/storage"
)

// Config configures a volume server.
type Config struct {
	// HTTPAddr is where the blob API listens, e.g. ":8080" or "127.0.0.1:0".
	HTTPAddr string
	// GRPCAddr is where the admin gRPC API listens.
	GRPCAddr string
	// IP is the address advertised to the master; empty means the HTTP
	// listener's host, or 127.0.0.1 when it listens on every interface.
	IP string
	// PublicURL is the host:port clients should use; empty means IP:port.
	PublicURL string
	// Dirs hold the volumes, one storage location each.
	Dirs []string
	// MaxVolumes is the volume count limit per dir (0: derived from free disk).
	MaxVolumes []int
	// MasterAddr is the master's gRPC address.
	MasterAddr string
	// DataCenter and Rack place this server in the topology.
	DataCenter string
	Rack       string
	// HeartbeatInterval is how often a full report goes to the master.
	HeartbeatInterval time.Duration
	// Fsync makes every write reach the disk before it is acknowledged.
	Fsync bool
	// MaxUploadBytes rejects larger uploads with 413.
	MaxUploadBytes int64
	// VolumeSizeLimit is the hard limit of one volume's .dat in bytes.
	VolumeSizeLimit int64
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the settings `kelp volume` starts with.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:          ":8080",
		GRPCAddr:          ":18080",
		MasterAddr:        "127.0.0.1:19333",
		DataCenter:        "DefaultDataCenter",
		Rack:              "DefaultRack",
		HeartbeatInterval: 5 * time.Second,
		MaxUploadBytes:    256 << 20,
		VolumeSizeLimit:   30 << 30,
	}
}

// Validate reports the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.HTTPAddr == "":
		return errors.New("volume: no HTTP address")
	case c.GRPCAddr == "":
		return errors.New("volume: no gRPC address")
	case len(c.Dirs) == 0:
		return errors.New("volume: no data directory (-dir)")
	case len(c.MaxVolumes) != 0 && len(c.MaxVolumes) != len(c.Dirs):
		return fmt.Errorf("volume: %d max volume counts for %d dirs", len(c.MaxVolumes), len(c.Dirs))
	case c.MasterAddr == "":
		return errors.New("volume: no master address")
	case c.HeartbeatInterval <= 0:
		return errors.New("volume: heartbeat interval must be positive")
	case c.MaxUploadBytes <= 0:
		return errors.New("volume: max upload size must be positive")
	case c.VolumeSizeLimit <= 0:
		return errors.New("volume: volume size limit must be positive")
	}
	for _, n := range c.MaxVolumes {
		if n < 0 {
			return fmt.Errorf("volume: negative max volume count %d", n)
		}
	}
	return nil
}

// Server is a running volume server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  *storage.Store
	master *client.MasterClient
	blobs  *client.BlobClient

	httpLn net.Listener
	grpcLn net.Listener
	httpSv *fasthttp.Server
	grpcSv *grpc.Server

	// lingering counts HTTP connections being closed gracefully.
	lingering lingerSet
	// reqCtx parents the contexts of blob requests' master lookups and
	// peer forwards; Close cancels it.
	reqCtx         context.Context
	cancelRequests context.CancelFunc

	url       string // ip:port advertised to the master
	publicURL string
	grpcPort  uint32

	ready     chan struct{}
	readyOnce sync.Once
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// New opens the volumes in cfg.Dirs and binds both listeners.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "volume")
	store, err := storage.NewStore(storage.Config{
		Dirs: cfg.Dirs, MaxVolumes: cfg.MaxVolumes, VolumeSizeLimit: cfg.VolumeSizeLimit,
		Fsync: cfg.Fsync, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("volume: open store: %w", err)
	}
	s := &Server{cfg: cfg, log: log, store: store, ready: make(chan struct{}), stop: make(chan struct{})}
	s.reqCtx, s.cancelRequests = context.WithCancel(context.Background())
	fail := func(err error) (*Server, error) {
		if s.httpLn != nil {
			s.httpLn.Close()
		}
		if s.grpcLn != nil {
			s.grpcLn.Close()
		}
		if s.master != nil {
			s.master.Close()
		}
		store.Close()
		s.cancelRequests()
		return nil, err
	}
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fail(fmt.Errorf("volume: listen HTTP on %s: %w", cfg.HTTPAddr, err))
	}
	if s.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return fail(fmt.Errorf("volume: listen gRPC on %s: %w", cfg.GRPCAddr, err))
	}
	if s.master, err = client.NewMasterClient(client.MasterClientConfig{Address: cfg.MasterAddr, LookupTTL: 5 * time.Second}); err != nil {
		return fail(fmt.Errorf("volume: %w", err))
	}
	s.blobs = client.NewBlobClient(client.BlobClientConfig{})
	s.url, s.publicURL, s.grpcPort = advertised(cfg, s.httpLn.Addr(), s.grpcLn.Addr())

	s.httpSv = s.newHTTPServer()
	s.grpcSv = grpc.NewServer(append(client.TransportServerOptions(), grpc.MaxRecvMsgSize(16<<20))...)
	volumepb.RegisterVolumeServer(s.grpcSv, &grpcServer{s: s})
	return s, nil
}

// advertised works out the addresses the master and clients should use.
func advertised(cfg Config, httpAddr, grpcAddr net.Addr) (url, public string, grpcPort uint32) {
	host, port, _ := net.SplitHostPort(httpAddr.String())
	_, gport, _ := net.SplitHostPort(grpcAddr.String())
	ip := cfg.IP
	if ip == "" {
		ip = host
		if a := net.ParseIP(host); a == nil || a.IsUnspecified() {
			ip = "127.0.0.1"
		}
	}
	url = net.JoinHostPort(ip, port)
	public = cfg.PublicURL
	if public == "" {
		public = url
	}
	gp, _ := strconv.Atoi(gport)
	return url, public, uint32(gp)
}

// Addr is the blob API's address as advertised (ip:port).
func (s *Server) Addr() string { return s.url }

// GRPCAddr is the admin API's listening address.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// Store exposes the volumes, for tests and tools in this process.
func (s *Server) Store() *storage.Store { return s.store }

// Ready is closed once the server is serving and the master has answered
// its first heartbeat: the master lists the server and its volumes.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve serves until ctx is done or Close is called.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.httpSv.Serve(lingerListener{s.httpLn, &s.lingering}); err != nil {
			errc <- fmt.Errorf("volume: HTTP: %w", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.grpcSv.Serve(s.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("volume: gRPC: %w", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.heartbeatLoop()
	}()
	s.log.Info("volume server serving", "http", s.url, "grpc", s.GRPCAddr(), "master", s.cfg.MasterAddr,
		"dataCenter", s.cfg.DataCenter, "rack", s.cfg.Rack, "dirs", s.cfg.Dirs)
	var err error
	select {
	case <-ctx.Done():
	case <-s.stop:
	case err = <-errc:
	}
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// Close stops the server, in this order: the blob API stops accepting
// connections, closes idle ones and lets requests in flight finish (5
// seconds at most for HTTP and gRPC together; past that, the master lookups
// and peer forwards of blob requests still running are cancelled); then the
// admin gRPC API stops the same way; the heartbeat stream ends; connections
// closing gracefully after a refused upload finish (a second at most); and
// only then are the volumes closed, so no acknowledged write is cut short.
// Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.httpSv.ShutdownWithContext(ctx); err != nil {
			s.cancelRequests()
		}
		stopped := make(chan struct{})
		go func() { s.grpcSv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.grpcSv.Stop()
		}
		// Listeners Serve never reached are still open.
		s.httpLn.Close()
		s.grpcLn.Close()
		s.wg.Wait()
		// A Serve that raced this Close may have started serving after the
		// shutdown above; wait for its connections too.
		// (Its listener is closed already: only a context error matters.)
		if err := s.httpSv.ShutdownWithContext(ctx); ctx.Err() != nil {
			s.log.Warn("blob requests still running at close", "err", err)
		}
		s.lingering.closeAndWait()
		s.cancelRequests()
		s.blobs.Close()
		s.master.Close()
		s.closeErr = s.store.Close()
	})
	return s.closeErr
}

func (s *Server) markReady() { s.readyOnce.Do(func() { close(s.ready) }) }

var _ io.Closer = (*Server)(nil)
