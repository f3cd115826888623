package filerd

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/needle"
)

// Config configures a filer.
type Config struct {
	// HTTPAddr is the listen address of the HTTP file API, e.g. ":8888"
	// (tests use "127.0.0.1:0").
	HTTPAddr string
	// GRPCAddr is the listen address of the gRPC API, e.g. ":18888".
	GRPCAddr string
	// Dir is the directory of the embedded badger store. Required unless
	// Store is set.
	Dir string
	// Fsync makes the embedded store fsync every commit, so a committed
	// operation also survives a power cut. Without it (the default) a
	// commit survives the crash of any process, since the OS holds it,
	// but not a power cut: the same trade as the volume servers' -fsync,
	// and what lets metadata operations run at memory speed.
	Fsync bool
	// Store, if set, is used instead of opening badger in Dir (tests, other
	// store implementations). The server does not close a store it did not
	// open.
	Store store.Store
	// MasterAddr is the master's gRPC address (host:port). Required.
	MasterAddr string
	// Signature is this filer's id, recorded in every change-log event for
	// filer.sync's loop prevention. 0 generates one on first start and
	// keeps it in the store (side KV key "filer.signature").
	Signature int32
	// DefaultReplication is used for assignments that name none; "" leaves
	// the choice to the master.
	DefaultReplication string
	// Collection is used for assignments that name none.
	Collection string
	// ChunkSizeMB is the size of the blobs HTTP uploads are cut into.
	ChunkSizeMB int
	// InlineLimit is the largest file (bytes) kept inline in its inode
	// instead of in blobs; 0 disables inline content.
	InlineLimit int
	// LogRetention is how long change-log events are kept; a subscriber
	// asking for older ones gets an explicit error.
	LogRetention time.Duration
	// GCInterval is how often queued chunk deletions are sent to the
	// volume servers.
	GCInterval time.Duration
	// SubscriberTimeout is how long one event may wait to be sent to a
	// subscriber before the subscription is ended as too slow.
	SubscriberTimeout time.Duration
	// ManifestThreshold is the number of data chunks above which a file
	// has its oldest chunks folded into manifest chunks (blobs listing
	// them), ManifestBatch at a time, so its entry and its change-log
	// events stay small. 0 disables folding.
	ManifestThreshold int
	// ManifestBatch is how many chunks one manifest blob lists; at least
	// 2 and at most ManifestThreshold.
	ManifestBatch int
	// ManifestCacheChunks bounds the manifest cache (manifest blobs are
	// immutable, cached by file id) by the chunks they list, in total.
	ManifestCacheChunks int
	// LockSessionTTL is the longest lease the lock service grants a mount
	// session, and the lease of one that asks for none; mounts renew every
	// third of it. It is how long the locks of a dead mount outlive it.
	LockSessionTTL time.Duration
	// LockGrace is the lock service's grace period after a start that
	// follows a stop or crash with lock sessions live (the lock table is
	// kept in memory only; the store's side KV record "filer.locks.live"
	// marks that sessions may be live, "filer.locks.held" that locks may
	// be held). Until it ends, mounts re-assert the locks they held and no
	// new lock is granted; it runs only if locks may have been held. After
	// a start with sessions live, the open-unlinked files of the previous
	// run are kept this long (or HandleGrace, if longer) while mounts take
	// back their handles on them (handles.go). A filer that starts for
	// the first time, or after a stop with no session left, has none. It
	// must outlast LockSessionTTL, so that every live mount notices the
	// restart at its next renewal and re-asserts in time; 0 disables it (a
	// cluster that accepts losing locks on restart).
	LockGrace time.Duration
	// HandleGrace is how long the file handles of a mount session whose
	// lease ran out (the mount was cut off, stopped or killed) are kept
	// before they are released: a mount that comes back within it opens a
	// fresh session and takes them back, so the files it had open and
	// someone unlinked are still there. A mount that closed its session
	// (unmounted) releases its handles at once. 0 releases them with the
	// lease.
	HandleGrace time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: HTTP on :8888, gRPC on :18888, 4 MB
// chunks, 2 KiB inline limit, 7 days of change log, GC every second,
// subscribers dropped after 30 s without progress, files of more than 1000
// chunks folded 1000 at a time into manifests, a manifest cache of 128 Ki
// chunks (about 13 MB), lock sessions leased for 10 s, a lock grace
// period of 15 s after a restart with live lock sessions, and the file
// handles of a lapsed session kept 5 minutes. Dir (or Store) and
// MasterAddr must still be set.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:            ":8888",
		GRPCAddr:            ":18888",
		ChunkSizeMB:         4,
		InlineLimit:         4096,
		LogRetention:        7 * 24 * time.Hour,
		GCInterval:          time.Second,
		SubscriberTimeout:   30 * time.Second,
		ManifestThreshold:   1000,
		ManifestBatch:       1000,
		ManifestCacheChunks: 128 << 10,
		LockSessionTTL:      DefaultLockSessionTTL,
		LockGrace:           DefaultLockSessionTTL + 5*time.Second,
		HandleGrace:         5 * time.Minute,
		Logger:              slog.Default(),
	}
}

// DefaultLockSessionTTL is the default Config.LockSessionTTL.
const DefaultLockSessionTTL = 10 * time.Second

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("filerd: invalid config")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.HTTPAddr == "":
		return fmt.Errorf("%w: HTTPAddr is empty", ErrConfig)
	case c.GRPCAddr == "":
		return fmt.Errorf("%w: GRPCAddr is empty", ErrConfig)
	case c.Dir == "" && c.Store == nil:
		return fmt.Errorf("%w: Dir is empty and no Store given", ErrConfig)
	case c.MasterAddr == "":
		return fmt.Errorf("%w: MasterAddr is empty", ErrConfig)
	case c.ChunkSizeMB < 1 || c.ChunkSizeMB > 1024:
		return fmt.Errorf("%w: ChunkSizeMB %d not in 1..1024", ErrConfig, c.ChunkSizeMB)
	case c.InlineLimit < 0 || c.InlineLimit > 64<<10:
		return fmt.Errorf("%w: InlineLimit %d not in 0..65536", ErrConfig, c.InlineLimit)
	case c.LogRetention <= 0:
		return fmt.Errorf("%w: LogRetention %v must be positive", ErrConfig, c.LogRetention)
	case c.GCInterval <= 0:
		return fmt.Errorf("%w: GCInterval %v must be positive", ErrConfig, c.GCInterval)
	case c.SubscriberTimeout <= 0:
		return fmt.Errorf("%w: SubscriberTimeout %v must be positive", ErrConfig, c.SubscriberTimeout)
	case c.ManifestThreshold < 0:
		return fmt.Errorf("%w: ManifestThreshold %d is negative", ErrConfig, c.ManifestThreshold)
	case c.ManifestThreshold > 0 && (c.ManifestBatch < 2 || c.ManifestBatch > c.ManifestThreshold):
		return fmt.Errorf("%w: ManifestBatch %d not in 2..ManifestThreshold (%d)", ErrConfig, c.ManifestBatch, c.ManifestThreshold)
	case c.ManifestCacheChunks < 0:
		return fmt.Errorf("%w: ManifestCacheChunks %d is negative", ErrConfig, c.ManifestCacheChunks)
	case c.LockSessionTTL < minLockSessionTTL:
		return fmt.Errorf("%w: LockSessionTTL %v below %v", ErrConfig, c.LockSessionTTL, minLockSessionTTL)
	case c.HandleGrace < 0:
		return fmt.Errorf("%w: HandleGrace %v is negative", ErrConfig, c.HandleGrace)
	case c.LockGrace < 0:
		return fmt.Errorf("%w: LockGrace %v is negative", ErrConfig, c.LockGrace)
	case c.LockGrace > 0 && c.LockGrace < c.LockSessionTTL:
		return fmt.Errorf("%w: LockGrace %v shorter than LockSessionTTL %v (0 disables it)", ErrConfig, c.LockGrace, c.LockSessionTTL)
	}
	if c.DefaultReplication != "" {
		if _, err := needle.ParseReplicaPlacement(c.DefaultReplication); err != nil {
			return fmt.Errorf("%w: DefaultReplication: %v", ErrConfig, err)
		}
	}
	if c.Collection != "" {
		if err := needle.ValidateCollection(c.Collection); err != nil {
			return fmt.Errorf("%w: Collection: %v", ErrConfig, err)
		}
	}
	return nil
}
