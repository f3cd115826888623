package masterd

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// MaxVolumeSizeLimitMB is the largest volume size limit: needle offsets
// are stored divided by 8 in 32 bits, so a volume cannot exceed 32 GiB.
const MaxVolumeSizeLimitMB = 30 * 1024

// Config configures a master.
type Config struct {
	// HTTPAddr is the listen address of the HTTP API, e.g. ":9333"
	// (tests use "127.0.0.1:0").
	HTTPAddr string
	// GRPCAddr is the listen address of the gRPC API, e.g. ":19333".
	GRPCAddr string
	// MetaDir holds the sequencer state (file keys, volume ids). Required.
	MetaDir string
	// VolumeSizeLimitMB is the size at which a volume counts as full and is
	// no longer assigned; volume servers learn it from heartbeat replies.
	VolumeSizeLimitMB uint64
	// DefaultReplication is used when a request gives none, e.g. "000".
	DefaultReplication string
	// GarbageThreshold is the share of deleted bytes above which vacuum
	// compacts a volume, in (0, 1).
	GarbageThreshold float64
	// VacuumInterval is how often the master vacuums on its own; 0
	// disables the loop (vacuum by hand still works).
	VacuumInterval time.Duration
	// NodeTimeout is how long a volume server may stay silent before it is
	// dropped and its volumes become unwritable.
	NodeTimeout time.Duration
	// GrowCount maps a copy count to the number of volumes one automatic
	// growth creates; fewer are created if slots run short, at least one.
	// Copy counts missing from the map grow one volume.
	GrowCount map[int]int
	// KeyStep is how many file keys the sequencer reserves per disk write;
	// 0 means topology.DefaultKeyStep.
	KeyStep uint64
	// AllocateTimeout bounds each call to a volume server (allocate,
	// vacuum check); vacuum itself gets ten times as long.
	AllocateTimeout time.Duration
	// Logger receives structured logs; nil means discard.
	Logger *slog.Logger
	// Now is the clock for heartbeats and node expiry; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults: HTTP on :9333, gRPC on :19333, 30000
// MB volumes, replication 000, garbage threshold 0.3, vacuum every 15
// minutes, nodes dropped after 10 s of silence, SeaweedFS's growth counts.
// MetaDir must still be set.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:           ":9333",
		GRPCAddr:           ":19333",
		VolumeSizeLimitMB:  30000,
		DefaultReplication: "000",
		GarbageThreshold:   0.3,
		VacuumInterval:     15 * time.Minute,
		NodeTimeout:        10 * time.Second,
		GrowCount:          map[int]int{1: 7, 2: 6, 3: 3},
		AllocateTimeout:    30 * time.Second,
		Logger:             slog.Default(),
	}
}

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("masterd: invalid config")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.HTTPAddr == "":
		return fmt.Errorf("%w: HTTPAddr is empty", ErrConfig)
	case c.GRPCAddr == "":
		return fmt.Errorf("%w: GRPCAddr is empty", ErrConfig)
	case c.MetaDir == "":
		return fmt.Errorf("%w: MetaDir is empty", ErrConfig)
	case c.VolumeSizeLimitMB == 0 || c.VolumeSizeLimitMB > MaxVolumeSizeLimitMB:
		return fmt.Errorf("%w: VolumeSizeLimitMB %d not in 1..%d", ErrConfig, c.VolumeSizeLimitMB, MaxVolumeSizeLimitMB)
	case !(c.GarbageThreshold > 0 && c.GarbageThreshold < 1):
		return fmt.Errorf("%w: GarbageThreshold %v not in (0, 1)", ErrConfig, c.GarbageThreshold)
	case c.VacuumInterval < 0:
		return fmt.Errorf("%w: VacuumInterval %v is negative", ErrConfig, c.VacuumInterval)
	case c.NodeTimeout <= 0:
		return fmt.Errorf("%w: NodeTimeout %v must be positive", ErrConfig, c.NodeTimeout)
	case c.AllocateTimeout < 0:
		return fmt.Errorf("%w: AllocateTimeout %v is negative", ErrConfig, c.AllocateTimeout)
	}
	if _, err := needle.ParseReplicaPlacement(c.DefaultReplication); err != nil {
		return fmt.Errorf("%w: DefaultReplication: %v", ErrConfig, err)
	}
	for copies, n := range c.GrowCount {
		if copies < 1 || n < 1 {
			return fmt.Errorf("%w: GrowCount[%d] = %d: copy counts and volume counts must be at least 1", ErrConfig, copies, n)
		}
	}
	return nil
}

func (c Config) growCount(copies int) int {
	if n, ok := c.GrowCount[copies]; ok && n > 0 {
		return n
	}
	return 1
}

func (c Config) volumeSizeLimit() uint64 { return c.VolumeSizeLimitMB * 1024 * 1024 }
