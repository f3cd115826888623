package filersync

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("filersync: invalid config")

// Side is one of the two filers kept in step.
type Side struct {
	// Filer is the filer's address as users write it: "host:port" (gRPC
	// on port+10000) or "host:port.grpcPort".
	Filer string
	// Path is the tree kept in step ("/" or "": everything); the other
	// side's Path is where it maps to.
	Path string
	// Exclude lists subtrees of this side (absolute paths) left alone: no
	// event under them is sent to the other side. A rename across the
	// boundary becomes a delete or a create on the other side.
	Exclude []string
	// Debug logs every event applied from this side.
	Debug bool
	// FilerProxy moves this side's chunk bytes through its filer's HTTP
	// API (GET /?blob=, POST /?blob) instead of straight to and from its
	// volume servers, for volume servers the sync cannot reach.
	FilerProxy bool
	// FromTsNs is where to start following this side's change log when no
	// checkpoint exists yet: 0 replays it from the beginning.
	FromTsNs int64
}

// Config configures a Syncer.
type Config struct {
	A, B Side
	// ActivePassive replicates A into B only.
	ActivePassive bool
	// Concurrency is how many events of one direction are applied at
	// once (events on related paths still apply in order); default 16.
	Concurrency int
	// ChunkConcurrency bounds the chunks copied at once per direction,
	// which bounds the memory held by copies to this many chunks;
	// default 8.
	ChunkConcurrency int
	// CheckpointInterval is how often a direction's checkpoint is written
	// to its target; default 1 s.
	CheckpointInterval time.Duration
	// StatusInterval is how often a status line is logged; 0 disables it.
	StatusInterval time.Duration
	// RetryMax caps the back-off between retries (a filer away, an event
	// rejected); default 10 s.
	RetryMax time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer, if set, gets the Prometheus metrics.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config with the defaults; A.Filer and B.Filer
// must still be set.
func DefaultConfig() Config {
	return Config{Concurrency: 16, ChunkConcurrency: 8, CheckpointInterval: time.Second, RetryMax: 10 * time.Second,
		A: Side{Path: "/"}, B: Side{Path: "/"}}
}

// Validate checks the Config and cleans its paths.
func (c *Config) Validate() error {
	for _, s := range []*Side{&c.A, &c.B} {
		if s.Filer == "" {
			return fmt.Errorf("%w: no filer address", ErrConfig)
		}
		p, err := cleanAbs(s.Path)
		if err != nil {
			return fmt.Errorf("%w: path: %v", ErrConfig, err)
		}
		s.Path = p
		for i, x := range s.Exclude {
			if s.Exclude[i], err = cleanAbs(x); err != nil {
				return fmt.Errorf("%w: exclude: %v", ErrConfig, err)
			}
		}
		if s.FromTsNs < 0 {
			return fmt.Errorf("%w: negative start time %d", ErrConfig, s.FromTsNs)
		}
	}
	switch {
	case c.Concurrency <= 0:
		return fmt.Errorf("%w: Concurrency %d", ErrConfig, c.Concurrency)
	case c.ChunkConcurrency <= 0:
		return fmt.Errorf("%w: ChunkConcurrency %d", ErrConfig, c.ChunkConcurrency)
	case c.CheckpointInterval <= 0:
		return fmt.Errorf("%w: CheckpointInterval %v", ErrConfig, c.CheckpointInterval)
	case c.RetryMax <= 0:
		return fmt.Errorf("%w: RetryMax %v", ErrConfig, c.RetryMax)
	case c.StatusInterval < 0:
		return fmt.Errorf("%w: StatusInterval %v", ErrConfig, c.StatusInterval)
	}
	return nil
}

// cleanAbs makes "" mean "/" and requires an absolute path.
func cleanAbs(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is not absolute", p)
	}
	return path.Clean(p), nil
}

// under reports whether p is root or below it.
func under(p, root string) bool {
	return root == "/" || p == root || strings.HasPrefix(p, root) && p[len(root)] == '/'
}

// rebase maps p, under from, to the same place under to.
func rebase(p, from, to string) string {
	rel := strings.TrimPrefix(p, from)
	if from == "/" {
		rel = p
	}
	return path.Join(to, rel)
}
