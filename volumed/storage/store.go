package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// DefaultVolumeSizeLimit is the VolumeSizeLimit used when Config leaves it 0.
const DefaultVolumeSizeLimit = 30 << 30

// minDerivedVolumes is the least MaxVolumes derived from free disk space.
const minDerivedVolumes = 8

// Config configures a Store.
type Config struct {
	// Dirs are the data directories, one location each; created if missing.
	Dirs []string
	// MaxVolumes is the maximum volume count per directory (len(Dirs)
	// entries, or empty). 0 derives it from the free disk space divided by
	// VolumeSizeLimit, plus the volumes present, at least 8.
	MaxVolumes []int
	// VolumeSizeLimit is the .dat size at which a volume rejects writes with
	// ErrVolumeFull. 0 means DefaultVolumeSizeLimit; at most
	// needle.MaxVolumeOffset (32 GiB).
	VolumeSizeLimit int64
	// Fsync makes every write and delete fsync .dat and .idx before it
	// returns (concurrent writers share one fsync).
	Fsync bool
	// Logger receives load repairs, corruption and failures; nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock for append times and TTLs; nil means time.Now.
	Now func() time.Time
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Dirs) == 0 {
		return errors.New("storage: config: no data directory")
	}
	if len(c.MaxVolumes) != 0 && len(c.MaxVolumes) != len(c.Dirs) {
		return fmt.Errorf("storage: config: %d max volume counts for %d directories", len(c.MaxVolumes), len(c.Dirs))
	}
	for i, m := range c.MaxVolumes {
		if m < 0 {
			return fmt.Errorf("storage: config: negative max volume count %d for %s", m, c.Dirs[i])
		}
	}
	if c.VolumeSizeLimit < 0 || c.VolumeSizeLimit > needle.MaxVolumeOffset {
		return fmt.Errorf("storage: config: volume size limit %d outside [0, %d]", c.VolumeSizeLimit, needle.MaxVolumeOffset)
	}
	if c.VolumeSizeLimit != 0 && c.VolumeSizeLimit < 1024 {
		return fmt.Errorf("storage: config: volume size limit %d is below 1024 bytes", c.VolumeSizeLimit)
	}
	seen := map[string]bool{}
	for _, d := range c.Dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("storage: config: directory %s: %w", d, err)
		}
		if seen[abs] {
			return fmt.Errorf("storage: config: directory %s listed twice", d)
		}
		seen[abs] = true
	}
	return nil
}

// VolumeStatus describes one volume for heartbeats and status pages.
type VolumeStatus struct {
	ID          uint32
	Collection  string
	Replication needle.ReplicaPlacement
	TTL         needle.TTL
	// Size is the .dat length in bytes.
	Size int64
	// FileCount is the number of live needles.
	FileCount uint64
	// DeleteCount is the number of needles deleted or overwritten since
	// the last compaction.
	DeleteCount uint64
	// DeletedBytes is the .dat bytes a compaction would reclaim: dead
	// records and deletion records.
	DeletedBytes int64
	ReadOnly     bool
	// Full is true once the volume refused a write for lack of room (the
	// record would take the .dat past VolumeSizeLimit) or its Size reached
	// VolumeSizeLimit; the master should stop assigning writes to it. A
	// compaction that brings Size back under the limit clears it. Changed
	// fires whenever it flips.
	Full            bool
	CompactRevision uint16
	Version         uint8
	// Dir is the data directory holding the volume.
	Dir string
}

// Store holds the volumes of a volume server across its data directories.
// All methods are safe for concurrent use.
type Store struct {
	log  *slog.Logger
	now  func() time.Time
	opts volumeOptions

	mu   sync.Mutex // serializes volume lifecycle changes; guards locs' volume sets
	locs []*location

	// vols maps id -> volume; replaced whole (copy on write) under mu, so
	// the needle paths look volumes up without a lock.
	vols    atomic.Pointer[map[uint32]*volume]
	changed chan struct{}
	closed  atomic.Bool
}

// NewStore opens (creating if needed) every data directory and loads every
// volume found in them. A directory that cannot be created or written is an
// error naming it; a volume that fails to load is logged and skipped.
func NewStore(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.VolumeSizeLimit == 0 {
		cfg.VolumeSizeLimit = DefaultVolumeSizeLimit
	}
	s := &Store{log: cfg.Logger, now: cfg.Now, changed: make(chan struct{}, 1)}
	s.opts = volumeOptions{log: cfg.Logger, now: cfg.Now, sizeLimit: cfg.VolumeSizeLimit, fsync: cfg.Fsync, notify: s.notify}
	all := map[uint32]*volume{}
	for i, dir := range cfg.Dirs {
		dir = filepath.Clean(dir)
		if err := prepareDir(dir); err != nil {
			s.closeVolumes(all)
			return nil, err
		}
		l := &location{dir: dir, volumes: map[uint32]*volume{}}
		err := l.loadVolumes(s.opts, func(id uint32) bool { _, ok := all[id]; return ok })
		if err != nil {
			s.closeVolumes(all)
			return nil, err
		}
		for id, v := range l.volumes {
			all[id] = v
		}
		if len(cfg.MaxVolumes) > 0 && cfg.MaxVolumes[i] > 0 {
			l.maxVolumes = cfg.MaxVolumes[i]
		} else {
			l.maxVolumes = len(l.volumes) + minDerivedVolumes
			if free, err := freeBytes(dir); err == nil {
				l.maxVolumes = max(len(l.volumes)+int(free/cfg.VolumeSizeLimit), minDerivedVolumes)
			}
		}
		s.locs = append(s.locs, l)
		s.log.Info("volume directory loaded", "dir", dir, "volumes", len(l.volumes), "max_volumes", l.maxVolumes)
	}
	s.vols.Store(&all)
	return s, nil
}

func (s *Store) closeVolumes(m map[uint32]*volume) {
	for _, v := range m {
		v.close()
	}
}

// notify signals Changed without blocking.
func (s *Store) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// publish rebuilds the lock-free id -> volume map. Called with s.mu held.
func (s *Store) publish() {
	m := map[uint32]*volume{}
	for _, l := range s.locs {
		for id, v := range l.volumes {
			m[id] = v
		}
	}
	s.vols.Store(&m)
}

// volume looks a volume up.
func (s *Store) volume(id uint32) (*volume, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	v := (*s.vols.Load())[id]
	if v == nil {
		return nil, fmt.Errorf("storage: volume %d: %w", id, ErrVolumeNotFound)
	}
	return v, nil
}

// AllocateVolume creates an empty volume in the location with the most free
// slots. preallocate > 0 reserves that many bytes of disk for the .dat where
// the platform can (without changing its size).
func (s *Store) AllocateVolume(id uint32, collection string, rp needle.ReplicaPlacement, ttl needle.TTL, preallocate int64) error {
	if err := needle.ValidateCollection(collection); err != nil {
		return fmt.Errorf("storage: allocate volume %d: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if _, ok := (*s.vols.Load())[id]; ok {
		return fmt.Errorf("storage: volume %d: %w", id, ErrVolumeExists)
	}
	var best *location
	for _, l := range s.locs {
		if l.free() > 0 && (best == nil || l.free() > best.free()) {
			best = l
		}
	}
	if best == nil {
		return fmt.Errorf("storage: volume %d: all %d volume slots are taken: %w", id, s.maxVolumeCountLocked(), ErrNoFreeSlot)
	}
	v, err := createVolume(best.dir, collection, id, rp, ttl, min(preallocate, s.opts.sizeLimit), s.opts)
	if err != nil {
		return err
	}
	best.volumes[id] = v
	s.publish()
	s.log.Info("volume allocated", "volume", id, "collection", collection, "replication", rp.String(), "ttl", ttl.String(), "dir", best.dir)
	s.notify()
	return nil
}

// DeleteVolume closes a volume and removes its files.
func (s *Store) DeleteVolume(id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, l, err := s.find(id)
	if err != nil {
		return err
	}
	return s.dropLocked(v, l, false)
}

// dropLocked removes a volume from the store, closes it (unless already
// closed) and deletes its files. Called with s.mu held.
func (s *Store) dropLocked(v *volume, l *location, alreadyClosed bool) error {
	delete(l.volumes, v.id)
	s.publish()
	if !alreadyClosed {
		v.close()
	}
	err := v.removeFiles()
	s.log.Info("volume deleted", "volume", v.id, "dir", v.dir, "err", err)
	s.notify()
	return err
}

// find returns the volume and its location. Called with s.mu held.
func (s *Store) find(id uint32) (*volume, *location, error) {
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	for _, l := range s.locs {
		if v, ok := l.volumes[id]; ok {
			return v, l, nil
		}
	}
	return nil, nil, fmt.Errorf("storage: volume %d: %w", id, ErrVolumeNotFound)
}

// MarkReadonly persists the volume's read-only state (a .ro marker file).
// A read-only volume rejects writes and deletes with ErrReadOnly.
func (s *Store) MarkReadonly(id uint32, readOnly bool) error {
	v, err := s.volume(id)
	if err != nil {
		return err
	}
	if v.readOnly.Load() == readOnly {
		return nil
	}
	if err := v.setReadOnly(readOnly); err != nil {
		return err
	}
	s.log.Info("volume read-only state changed", "volume", id, "read_only", readOnly)
	s.notify()
	return nil
}

// Written is what a Write did.
type Written struct {
	// Unchanged: the volume already held exactly this needle, and
	// nothing was appended.
	Unchanged bool
	// ETag is the needle data's ETag (needle.ETag).
	ETag string
}

// Write appends n to volume vid and sets n.AppendAtNs. If the volume already
// holds n.ID with the same cookie and identical content, nothing is appended
// and Unchanged is set. An existing n.ID with another cookie gives
// ErrCookieMismatch. A failed write leaves nothing behind that could later
// read as data.
func (s *Store) Write(vid uint32, n *needle.Needle) (Written, error) {
	v, err := s.volume(vid)
	if err != nil {
		return Written{}, err
	}
	return v.write(n)
}

// Read returns needle id of volume vid after verifying its CRC, cookie and
// TTL. Absent, deleted and expired needles give ErrNotFound, a wrong cookie
// ErrCookieMismatch, a damaged record ErrCorrupt (and a log line). The
// returned needle owns its bytes.
func (s *Store) Read(vid uint32, id uint64, cookie uint32) (*needle.Needle, error) {
	v, err := s.volume(vid)
	if err != nil {
		return nil, err
	}
	return v.read(id, cookie)
}

// Delete appends a deletion record for needle id (the cookie must match) and
// returns the deleted needle's body size (the size field of its header).
// Deleting an absent needle gives ErrNotFound.
func (s *Store) Delete(vid uint32, id uint64, cookie uint32) (freed int64, err error) {
	v, err := s.volume(vid)
	if err != nil {
		return 0, err
	}
	return v.delete(id, cookie)
}

// Status reports every volume, sorted by id.
func (s *Store) Status() []VolumeStatus {
	if s.closed.Load() {
		return nil
	}
	m := *s.vols.Load()
	out := make([]VolumeStatus, 0, len(m))
	for _, v := range m {
		out = append(out, v.status())
	}
	slices.SortFunc(out, func(a, b VolumeStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// VolumeStatus reports one volume.
func (s *Store) VolumeStatus(id uint32) (VolumeStatus, error) {
	v, err := s.volume(id)
	if err != nil {
		return VolumeStatus{}, err
	}
	return v.status(), nil
}

// MaxVolumeCount is the number of volumes the store may hold, summed over
// its locations.
func (s *Store) MaxVolumeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxVolumeCountLocked()
}

func (s *Store) maxVolumeCountLocked() int {
	n := 0
	for _, l := range s.locs {
		n += l.maxVolumes
	}
	return n
}

// MaxFileKey is the highest needle key stored in any volume: live, deleted
// or overwritten ones since load, and after a restart those still in an
// .idx (a compaction forgets deleted keys of that volume on disk).
func (s *Store) MaxFileKey() uint64 {
	if s.closed.Load() {
		return 0
	}
	var k uint64
	for _, v := range *s.vols.Load() {
		k = max(k, v.maxKey.Load())
	}
	return k
}

// Changed receives a value (non-blocking send, buffer 1) when a volume is
// added, removed, marked read-only or writable, becomes full or stops being
// full, or fails, so the heartbeat can report at once.
func (s *Store) Changed() <-chan struct{} { return s.changed }

// VacuumCheck returns the share of the volume's .dat that a compaction
// would reclaim: DeletedBytes / Size.
func (s *Store) VacuumCheck(id uint32) (garbageRatio float64, err error) {
	v, err := s.volume(id)
	if err != nil {
		return 0, err
	}
	st := v.status()
	if st.Size <= needle.SuperBlockSize {
		return 0, nil
	}
	return float64(st.DeletedBytes) / float64(st.Size), nil
}

// Vacuum is VacuumContext with context.Background().
func (s *Store) Vacuum(id uint32) (reclaimedBytes int64, err error) {
	return s.VacuumContext(context.Background(), id)
}

// VacuumContext compacts the volume: it rewrites it without deleted,
// overwritten and expired needles while reads and writes continue, and
// commits crash-safely (see volume_vacuum.go). It returns the bytes
// reclaimed. A read-only volume is compacted too. ctx is checked between
// needles while copying (the long phase) and once more before the short
// catch-up and commit; once cancelled, the compaction removes its files,
// leaves the volume untouched and returns an error wrapping ctx.Err().
func (s *Store) VacuumContext(ctx context.Context, id uint32) (reclaimedBytes int64, err error) {
	v, err := s.volume(id)
	if err != nil {
		return 0, err
	}
	return v.vacuum(ctx)
}

// DropExpired deletes every TTL volume whose newest write is older than its
// TTL, so every needle in it has expired (a needle on a TTL volume expires
// at the latest at its append time plus the volume's TTL; Write refuses
// needles that could outlive it), and returns their ids.
func (s *Store) DropExpired() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	now := s.now()
	var dropped []uint32
	for _, l := range s.locs {
		for _, v := range l.volumes {
			if !v.closeIfExpired(now) {
				continue
			}
			s.log.Info("dropping expired TTL volume", "volume", v.id, "ttl", v.ttl.String(),
				"last_write", time.Unix(0, v.lastAppendNs.Load()).UTC())
			s.dropLocked(v, l, true)
			dropped = append(dropped, v.id)
		}
	}
	slices.Sort(dropped)
	return dropped
}

// Close closes every volume. In-flight reads finish on their open files;
// later calls get ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.locs {
		for _, v := range l.volumes {
			v.close()
		}
	}
	return nil
}

var _ io.Closer = (*Store)(nil)
