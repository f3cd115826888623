package filersync

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Syncer keeps two filers' trees in step: A into B, and B into A unless
// ActivePassive. Create it with New, Run it until its context ends.
type Syncer struct {
	cfg  Config
	log  *slog.Logger
	a, b *endpoint
	dirs []*replicator
}

// New connects (lazily) to both filers.
func New(cfg Config) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a, err := dialEndpoint(cfg.A)
	if err != nil {
		return nil, fmt.Errorf("filersync: %w", err)
	}
	b, err := dialEndpoint(cfg.B)
	if err != nil {
		a.close()
		return nil, fmt.Errorf("filersync: %w", err)
	}
	s := &Syncer{cfg: cfg, log: log, a: a, b: b}
	s.dirs = append(s.dirs, newReplicator("a->b", a, b, cfg.A, cfg.B, &s.cfg, log))
	if !cfg.ActivePassive {
		s.dirs = append(s.dirs, newReplicator("b->a", b, a, cfg.B, cfg.A, &s.cfg, log))
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(&collector{s: s}); err != nil {
			s.Close()
			return nil, fmt.Errorf("filersync: metrics: %w", err)
		}
	}
	return s, nil
}

// Close disconnects; call it after Run returned.
func (s *Syncer) Close() {
	s.a.close()
	s.b.close()
}

// Run learns both filers' signatures (retrying while one is unreachable)
// and replicates until ctx ends; it returns nil then.
func (s *Syncer) Run(ctx context.Context) error {
	for _, e := range []*endpoint{s.a, s.b} {
		backoff := 100 * time.Millisecond
		for {
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := e.identify(ictx)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("filer.sync: filer unreachable; retrying", "filer", e.addr, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.cfg.RetryMax)
		}
	}
	if s.a.sig == s.b.sig {
		return fmt.Errorf("filersync: %s and %s are the same filer (signature %d)", s.a.addr, s.b.addr, s.a.sig)
	}
	var wg sync.WaitGroup
	for _, r := range s.dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.run(ctx)
		}()
	}
	if s.cfg.StatusInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.statusLoop(ctx)
		}()
	}
	wg.Wait()
	// Events left unfinished are applied again, from their first
	// attempt, after a restart: what they copied goes.
	for _, r := range s.dirs {
		r.copier.discardAll(ctx)
	}
	return nil
}

// DirectionStats is one direction's progress.
type DirectionStats struct {
	Name        string    // "a->b" or "b->a"
	Applied     int64     // events applied
	Retries     int64     // failed attempts retried
	Chunks      int64     // chunks copied
	Bytes       int64     // file bytes committed with copied chunks
	LastApplied time.Time // source time of the last event applied (zero: none yet)
	Checkpoint  time.Time // source time up to which everything is applied and saved
	Pending     int64     // events waiting or being applied
	Walking     bool      // a bootstrap walk of the source's tree is under way
	Walked      int64     // entries bootstrap walks made match the source
}

// Stats reports each direction's progress.
func (s *Syncer) Stats() []DirectionStats {
	out := make([]DirectionStats, 0, len(s.dirs))
	for _, r := range s.dirs {
		st := r.stats
		d := DirectionStats{Name: r.name, Applied: st.applied.Load(), Retries: st.retries.Load(), Chunks: st.chunks.Load(),
			Bytes: st.bytes.Load(), Pending: st.pending.Load(), Walking: st.walking.Load(), Walked: st.walked.Load()}
		if ts := st.lastApplied.Load(); ts > 0 {
			d.LastApplied = time.Unix(0, ts)
		}
		if ts := st.checkpoint.Load(); ts > 0 {
			d.Checkpoint = time.Unix(0, ts)
		}
		out = append(out, d)
	}
	return out
}

func (s *Syncer) statusLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, d := range s.Stats() {
			lag := "-"
			if !d.LastApplied.IsZero() {
				lag = time.Since(d.LastApplied).Round(time.Millisecond).String()
			}
			s.log.Info("filer.sync: status", "direction", d.Name, "applied", d.Applied, "pending", d.Pending,
				"retries", d.Retries, "chunks_copied", d.Chunks, "bytes", d.Bytes, "since_last_applied", lag,
				"checkpoint", d.Checkpoint.UTC().Format(time.RFC3339Nano), "walking", d.Walking, "walked", d.Walked)
		}
	}
}

// collector exports Stats as Prometheus metrics, per direction.
type collector struct{ s *Syncer }

var (
	descLastApplied = prometheus.NewDesc("kelp_filersync_last_applied_timestamp_seconds",
		"Source time of the last event applied.", []string{"direction"}, nil)
	descCheckpoint = prometheus.NewDesc("kelp_filersync_checkpoint_timestamp_seconds",
		"Source time up to which every event is applied and the checkpoint saved.", []string{"direction"}, nil)
	descApplied = prometheus.NewDesc("kelp_filersync_events_applied_total",
		"Events applied.", []string{"direction"}, nil)
	descRetries = prometheus.NewDesc("kelp_filersync_event_retries_total",
		"Failed attempts to apply an event, retried.", []string{"direction"}, nil)
	descChunks = prometheus.NewDesc("kelp_filersync_chunks_copied_total",
		"Chunks copied between the clusters.", []string{"direction"}, nil)
	descPending = prometheus.NewDesc("kelp_filersync_events_pending",
		"Events waiting or being applied.", []string{"direction"}, nil)
	descWalking = prometheus.NewDesc("kelp_filersync_walking",
		"1 while a bootstrap walk of the source's tree is under way.", []string{"direction"}, nil)
	descWalked = prometheus.NewDesc("kelp_filersync_walk_entries_total",
		"Entries bootstrap walks made match the source.", []string{"direction"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastApplied, descCheckpoint, descApplied, descRetries, descChunks, descPending, descWalking, descWalked} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	secs := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	for _, d := range c.s.Stats() {
		ch <- prometheus.MustNewConstMetric(descLastApplied, prometheus.GaugeValue, secs(d.LastApplied), d.Name)
		ch <- prometheus.MustNewConstMetric(descCheckpoint, prometheus.GaugeValue, secs(d.Checkpoint), d.Name)
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.CounterValue, float64(d.Applied), d.Name)
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(d.Retries), d.Name)
		ch <- prometheus.MustNewConstMetric(descChunks, prometheus.CounterValue, float64(d.Chunks), d.Name)
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(d.Pending), d.Name)
		walking := 0.0
		if d.Walking {
			walking = 1
		}
		ch <- prometheus.MustNewConstMetric(descWalking, prometheus.GaugeValue, walking, d.Name)
		ch <- prometheus.MustNewConstMetric(descWalked, prometheus.CounterValue, float64(d.Walked), d.Name)
	}
}
