package filerd

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/api/lockpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/client/wire"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/filerd/store/badger"
	"github.com/kelpfs/kelp/locks"
)

// ErrClosed reports a call on a closed server.
var ErrClosed = errors.New("filerd: server closed")

// signatureKey is the side KV record holding a generated signature.
const signatureKey = "filer.signature"

// Server is a running filer. Create it with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ns      *meta.Namespace
	cluster *client.Cluster // master (assign/lookup) + blob HTTP client

	st       store.Store
	ownStore bool // opened by New, closed by Close

	httpLn  net.Listener
	grpcLn  net.Listener
	grpcMux *wire.Mux // grpcLn, shared by gRPC and the wire
	httpSrv *http.Server
	grpcSrv *grpc.Server
	wireSrv *wire.Server // the unary methods, for wire clients
	local   *localConn   // the same services, in-process (Local)

	gcWake     chan struct{} // buffered(1): a nudge for the GC loop
	gcMu       sync.Mutex    // one GC pass at a time
	trimCutoff atomic.Int64  // the newest cutoff the retention loop trimmed at
	feeds      feedRegistry  // live subscriptions by client signature, for progress reports

	manifests    *manifestCache
	intentMaxAge time.Duration // foldIntentMaxAge; tests shorten it before Serve
	foldWake     chan struct{} // buffered(1): a nudge for the fold loop
	foldMu       sync.Mutex
	foldPending  map[meta.Inode]struct{} // files hinted at, at most foldQueueMax

	locks      *locks.Manager // the lock table: in memory only, leased to mount sessions
	lockMarker lockMarker     // lockLiveKey in the store (locks_grpc.go)
	heldMarker heldMarker     // lockHeldKey in the store (locks_grpc.go)
	locksHeld  bool           // lockHeldKey was set when New opened the store
	locksLive  bool           // lockLiveKey was set when New opened the store
	handles    *handleTable   // file handles held for lock sessions (handles.go)
	// orphansKept: the previous run's open-unlinked files wait for the
	// grace period to end before they are freed (handles.go); only the
	// lock sweep loop touches it after New.
	orphansKept  bool
	orphansUntil time.Time // when they are freed (set by Serve)
	graceUntil   time.Time // end of the lock grace period Serve started (zero: none)

	baseCtx   context.Context // cancelled by Close: loops and subscriptions end
	cancel    context.CancelFunc
	ready     chan struct{}
	closed    chan struct{}
	mu        sync.Mutex // guards serving and goroutine starts against Close
	serving   bool
	loops     sync.WaitGroup // serve loops, GC, retention, subscription senders
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, opens the store (badger in cfg.Dir unless cfg.Store
// is given) and the namespace, prepares the master client (it connects
// lazily) and binds both listeners, so HTTPAddr and GRPCAddr are known
// when it returns. Nothing is served until Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lg = lg.With("component", "filer")
	s := &Server{
		cfg:         cfg,
		log:         lg,
		st:          cfg.Store,
		gcWake:      make(chan struct{}, 1),
		foldWake:    make(chan struct{}, 1),
		foldPending: map[meta.Inode]struct{}{},
		ready:       make(chan struct{}),
		closed:      make(chan struct{}),
	}
	s.manifests = newManifestCache(cfg.ManifestCacheChunks, s.fetchManifest)
	s.intentMaxAge = foldIntentMaxAge
	ok := false
	defer func() {
		if !ok {
			s.release()
		}
	}()
	if s.st == nil {
		bc := badger.DefaultConfig()
		bc.Dir = cfg.Dir
		bc.SyncWrites = cfg.Fsync
		bc.Logger = lg
		st, err := badger.Open(bc)
		if err != nil {
			return nil, fmt.Errorf("filerd: %w", err)
		}
		s.st, s.ownStore = st, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sig, err := s.signature(ctx)
	if err != nil {
		return nil, err
	}
	s.cfg.Signature = sig
	mc := meta.DefaultConfig()
	mc.Logger = lg
	mc.InlineLimit = cfg.InlineLimit
	mc.Signature = sig
	mc.Manifests = s.manifests
	// Mounts may take back the handles that kept them (handles.go):
	// the namespace leaves them until we know.
	mc.KeepOrphans = true
	if cfg.ManifestThreshold > 0 {
		mc.FoldThreshold = cfg.ManifestThreshold
		mc.FoldHint = s.hintFold
	}
	// The cluster client comes first: the namespace may read manifests.
	if s.cluster, err = client.NewCluster(client.ClusterConfig{Master: client.MasterClientConfig{Address: cfg.MasterAddr}}); err != nil {
		return nil, fmt.Errorf("filerd: %w", err)
	}
	if s.ns, err = meta.Open(ctx, s.st, mc); err != nil {
		return nil, fmt.Errorf("filerd: open namespace: %w", err)
	}
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("filerd: listen http %s: %w", cfg.HTTPAddr, err)
	}
	if s.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("filerd: listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	s.grpcMux = wire.NewMux(s.grpcLn)
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.httpSrv = &http.Server{
		Handler:           s.httpHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(lg.Handler(), slog.LevelWarn),
	}
	s.grpcSrv = grpc.NewServer(append(client.TransportServerOptions(), grpc.ChainUnaryInterceptor(signatureInterceptor))...)
	gs := &grpcServer{s: s}
	filerpb.RegisterFilerServer(s.grpcSrv, gs)
	s.handles = newHandleTable(cfg.HandleGrace, time.Now)
	if s.locks, err = newLockManager(lg, s.handles.end); err != nil {
		return nil, err
	}
	if err := s.readLockMarker(ctx); err != nil {
		return nil, err
	}
	s.locksLive, s.locksHeld = s.lockMarker.set, s.heldMarker.set
	if s.locksLive && s.orphanGrace() > 0 {
		s.orphansKept = true // freed when the grace period ends
	} else if freed, err := s.ns.FreeOrphans(ctx); err != nil {
		return nil, fmt.Errorf("filerd: %w", err)
	} else if freed > 0 {
		lg.Info("freed open-unlinked files left by the previous run", "count", freed)
	}
	ls := &locksServer{s: s}
	lockpb.RegisterLocksServer(s.grpcSrv, ls)
	s.local = newLocalConn(s.baseCtx, gs, ls)
	s.wireSrv = wire.NewServer(signatureInterceptor)
	s.wireSrv.RegisterService(&filerpb.Filer_ServiceDesc, gs)
	s.wireSrv.RegisterService(&lockpb.Locks_ServiceDesc, ls)
	ok = true
	return s, nil
}

// signature returns cfg.Signature, or the one kept in the store, or a new
// random one that it keeps there. It reads the store through a namespace
// opened without a signature (which writes no event).
func (s *Server) signature(ctx context.Context) (int32, error) {
	if s.cfg.Signature != 0 {
		return s.cfg.Signature, nil
	}
	ns, err := meta.Open(ctx, s.st, meta.Config{Logger: s.log, KeepOrphans: true})
	if err != nil {
		return 0, fmt.Errorf("filerd: open namespace: %w", err)
	}
	v, err := ns.KVGet(ctx, signatureKey)
	switch {
	case err == nil:
		n, perr := strconv.ParseInt(string(v), 10, 32)
		if perr != nil || n == 0 {
			return 0, fmt.Errorf("filerd: stored signature %q: %w", v, meta.ErrCorrupt)
		}
		return int32(n), nil
	case !errors.Is(err, meta.ErrNotFound):
		return 0, fmt.Errorf("filerd: read signature: %w", err)
	}
	var b [4]byte
	var sig int32
	for sig == 0 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("filerd: generate signature: %w", err)
		}
		sig = int32(binary.BigEndian.Uint32(b[:]) &^ (1 << 31)) // positive, readable in logs
	}
	if err := ns.KVPut(ctx, signatureKey, []byte(strconv.FormatInt(int64(sig), 10))); err != nil {
		return 0, fmt.Errorf("filerd: keep signature: %w", err)
	}
	s.log.Info("generated filer signature", "signature", sig)
	return sig, nil
}

// release frees what New acquired, for a New that fails half-way.
func (s *Server) release() {
	if s.httpLn != nil {
		s.httpLn.Close()
	}
	if s.grpcMux != nil {
		s.grpcMux.Close()
	} else if s.grpcLn != nil {
		s.grpcLn.Close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
	if s.ownStore {
		s.st.Close()
	}
}

// HTTPAddr returns the bound HTTP address (host:port).
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// GRPCAddr returns the bound gRPC address (host:port).
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// Ready is closed once Serve is serving both APIs.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Namespace returns the namespace the server serves (for tests and
// in-process tools).
func (s *Server) Namespace() *meta.Namespace { return s.ns }

// Signature returns this filer's signature.
func (s *Server) Signature() int32 { return s.cfg.Signature }

// LapsedHandles returns the file handles kept for mount sessions whose
// lease ran out, until they come back or HandleGrace ends.
func (s *Server) LapsedHandles() int { return s.handles.lapsedCount() }

// Serve serves HTTP and gRPC and runs the chunk GC, change-log retention,
// manifest fold and lock-lease expiry loops until ctx is done or Close is
// called; then it closes the server. Just before serving it starts the
// lock service's grace period (Config.LockGrace), if lock sessions may
// have been live when the filer last stopped (the store held lockLiveKey
// at New). It returns nil on a clean stop and an error if a listener
// fails. Serve may be called once.
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
		return errors.New("filerd: Serve called twice")
	}
	s.serving = true
	switch {
	case s.locksHeld && s.cfg.LockGrace > 0:
		// The lock table starts empty: mounts re-assert what they held
		// before anyone gets a new lock.
		s.graceUntil = time.Now().Add(s.cfg.LockGrace)
		s.locks.StartGrace(s.graceUntil)
		s.log.Info("lock grace period: locks may have been held", "grace", s.cfg.LockGrace)
	case s.locksHeld:
		s.log.Warn("locks may have been held, but LockGrace is 0: no grace period, they are lost")
	default:
		s.log.Info("no locks were held: no lock grace period")
	}
	if s.orphansKept {
		// Mounts take back their handles on open files within the
		// same time (handles.go).
		s.orphansUntil = time.Now().Add(s.orphanGrace())
		s.log.Info("keeping the open-unlinked files of the previous run while mounts take their handles back", "for", s.orphanGrace())
	}
	errc := make(chan error, 3)
	s.loops.Add(7)
	go func() {
		defer s.loops.Done()
		if err := s.grpcSrv.Serve(s.grpcMux.GRPC()); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("filerd: grpc: %w", err)
		}
	}()
	go func() {
		defer s.loops.Done()
		if err := s.wireSrv.Serve(s.grpcMux.Wire()); err != nil {
			errc <- fmt.Errorf("filerd: wire: %w", err)
		}
	}()
	go func() {
		defer s.loops.Done()
		if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("filerd: http: %w", err)
		}
	}()
	go func() {
		defer s.loops.Done()
		s.gcLoop()
	}()
	go func() {
		defer s.loops.Done()
		s.retentionLoop()
	}()
	go func() {
		defer s.loops.Done()
		s.foldLoop()
	}()
	go func() {
		defer s.loops.Done()
		s.lockSweepLoop(lockSweepInterval(s.cfg.LockSessionTTL))
	}()
	s.mu.Unlock()

	s.log.Info("filer serving", "http", s.HTTPAddr(), "grpc", s.GRPCAddr(), "master", s.cfg.MasterAddr,
		"signature", s.cfg.Signature, "dir", s.cfg.Dir)
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

// goOwned starts fn as a goroutine Close waits for; it reports false (and
// does not start it) once Close has begun.
func (s *Server) goOwned(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return false
	default:
	}
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		fn()
	}()
	return true
}

// Close stops the server; it is idempotent and safe to call concurrently
// with Serve. Order: mark closed and cancel the base context (the GC,
// retention, fold and lock expiry loops stop, subscriptions end their
// streams cleanly, blocked SetLkw calls return UNAVAILABLE), stop
// HTTP (in-flight requests get a few seconds), stop gRPC (graceful for a
// few seconds, then every stream is cut) and the wire (the same), wait
// for every goroutine the
// server started, then close the master and blob clients and, if New
// opened it, the store. The namespace holds nothing to close.
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
		stopped, wireStopped := make(chan struct{}), make(chan struct{})
		go func() {
			s.grpcSrv.GracefulStop()
			close(stopped)
		}()
		go func() {
			s.wireSrv.Close(5 * time.Second)
			close(wireStopped)
		}()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.grpcSrv.Stop()
			<-stopped
		}
		<-wireStopped
		s.grpcMux.Close()
		s.local.close(5 * time.Second)
		s.loops.Wait()
		var errs []error
		if err := s.cluster.Close(); err != nil {
			errs = append(errs, fmt.Errorf("filerd: close master client: %w", err))
		}
		if s.ownStore {
			if err := s.st.Close(); err != nil {
				errs = append(errs, fmt.Errorf("filerd: close store: %w", err))
			}
		}
		s.closeErr = errors.Join(errs...)
		s.log.Info("filer stopped")
	})
	return s.closeErr
}
