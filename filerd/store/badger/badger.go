// Package badger is the filer's embedded default store: store.Store on
// github.com/dgraph-io/badger/v4, an LSM key-value store with serializable
// snapshot-isolation transactions. It is the only package that imports
// badger (internal/lint enforces it).
//
// It owns one badger directory and must not know what the keys mean: the
// namespace lives in filerd/meta. Keys are stored behind a one-byte
// namespace prefix, so every key the store.Store contract allows works
// (the empty key and keys starting with badger's reserved "!badger!"
// included), and the store can keep its own format marker beside them.
//
// # Transactions
//
// View runs on a read-only badger transaction (a snapshot). Update runs fn on
// a read-write transaction and commits; when badger reports a conflict (a key
// this transaction read was committed by another one in between), fn runs
// again on a fresh transaction, up to Config.MaxRetries times with a small
// jittered backoff, then Update returns store.ErrConflict. Conflicts are
// tracked per key read (Get, and each key Scan hands to fn), not per range:
// a key inserted into a range another transaction scanned is no conflict
// unless that transaction also read or wrote a key the inserter wrote.
// A write that fails inside fn (too big, ...) makes the whole Update fail
// even if fn ignores the error, so a transaction never commits half of what
// its author meant.
//
// # Durability and disk space
//
// With Config.SyncWrites (the default) a commit is fsynced before Update
// returns. Badger writes its logs and tables through memory maps of sparse
// files, so a disk that fills up would kill the process with SIGBUS rather
// than return ENOSPC. The store therefore refuses commits while the file
// system holding Config.Dir has less than Config.MinFreeBytes available:
// Update fails with ErrNoSpace (which also matches syscall.ENOSPC), while
// View keeps working and Close still has room to flush the memtable.
//
// # Concurrency
//
// Every method is safe for concurrent use; a store.Tx belongs to the
// goroutine running fn. Close waits for running transactions, then stops the
// value-log GC goroutine the Store owns, then closes badger.
package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kelpfs/kelp/filerd/store"
)

// ErrNoSpace: the file system holding the store has less free space than
// Config.MinFreeBytes (or a write failed with ENOSPC). Errors carrying it
// also match syscall.ENOSPC.
var ErrNoSpace = fmt.Errorf("badger: not enough free disk space: %w", store.ErrNoSpace)

// ErrFormat: the directory holds a badger database that is not a Kelp store
// of a version this code reads.
var ErrFormat = errors.New("badger: not a kelp store")

const (
	// Key namespaces: every user key is stored as nsData+key; the store's
	// own records live under nsMeta.
	nsMeta = 0x00
	nsData = 0x01

	// formatVersion is the value of the format marker key.
	formatVersion = "kelp/store/badger v1"

	// maxKeySize is badger's key limit (65000) minus the namespace byte.
	maxKeySize = 65000 - 1

	// ctxCheckEvery is how many keys Scan visits between ctx checks.
	ctxCheckEvery = 64
)

// formatKey is the format marker's key (under nsMeta).
func formatKey() []byte { return []byte{nsMeta, 'f', 'o', 'r', 'm', 'a', 't'} }

// Config configures a Store. Sizes are bytes.
type Config struct {
	// Dir is the directory holding the database; created if missing.
	// Required unless InMemory.
	Dir string
	// InMemory keeps everything in memory (tests); nothing is persisted and
	// Dir is ignored. Values are then limited to 1 MiB each.
	InMemory bool
	// SyncWrites fsyncs every commit before Update returns, so a committed
	// operation survives a crash or power loss. Default true.
	SyncWrites bool
	// Logger receives badger's log lines: errors at Error, warnings at
	// Warn, the rest at Debug. Default slog.Default().
	Logger *slog.Logger

	// MemTableSize is the size of one memtable; a transaction may write at
	// most about 15% of it (store.ErrTooBig beyond). Default 32 MiB.
	MemTableSize int64
	// NumMemtables is how many memtables may be in memory (one active, the
	// rest waiting to be flushed). Default 3.
	NumMemtables int
	// BlockCacheSize is the cache of decompressed table blocks. Default
	// 128 MiB.
	BlockCacheSize int64
	// IndexCacheSize caps the memory used by table indexes and bloom
	// filters; 0 keeps all of them in memory (fastest). Default 0.
	IndexCacheSize int64
	// ValueLogFileSize is the size of one value-log file. Must be in
	// [1 MiB, 2 GiB). Default 256 MiB.
	ValueLogFileSize int64
	// ValueThreshold: on disk, values of this many bytes or more live in
	// the value log, smaller ones in the LSM tree next to their keys. At
	// most 1 MiB (and 15% of a memtable); 0 means 1 MiB. Default 1 KiB: a small
	// file's inline content and the change-log events that carry it stay
	// out of the tree, so compactions do not rewrite them again and
	// again, and lookups search a smaller tree (fsbench through
	// `kelp server -mount`, 5 alternating runs: create +15%, rename +26%,
	// unlink +21%). Attributes, names and chunk lists of most files stay
	// in the tree. The cost is disk: a deleted small file's content stays
	// in its value-log file until that file is half garbage (GCDiscardRatio)
	// and the GC rewrites it.
	ValueThreshold int64
	// NumCompactors is the number of compaction goroutines (0 or >= 2).
	// Default 2.
	NumCompactors int

	// MinFreeBytes: commits are refused with ErrNoSpace while the file
	// system holding Dir has less than this available. 0 disables the
	// check (not recommended: badger dies with SIGBUS on a full disk).
	// Must be at least 2*MemTableSize when set. Default 256 MiB.
	MinFreeBytes int64
	// GCInterval is how often the value log is garbage collected; 0
	// disables it. Default 5 minutes.
	GCInterval time.Duration
	// GCDiscardRatio: a value-log file is rewritten when at least this
	// fraction of it is garbage. Default 0.5.
	GCDiscardRatio float64
	// MaxRetries is how many times Update runs fn when commits conflict.
	// Default 50.
	MaxRetries int
}

// DefaultConfig returns the defaults, sized for a small server (2 cores,
// tens of GiB of memory). Dir must still be set.
func DefaultConfig() Config {
	return Config{
		SyncWrites:       true,
		MemTableSize:     32 << 20,
		NumMemtables:     3,
		BlockCacheSize:   128 << 20,
		ValueLogFileSize: 256 << 20,
		ValueThreshold:   1 << 10,
		NumCompactors:    2,
		MinFreeBytes:     256 << 20,
		GCInterval:       5 * time.Minute,
		GCDiscardRatio:   0.5,
		MaxRetries:       50,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Dir == "" && !c.InMemory:
		return errors.New("badger: config: Dir is required (or InMemory)")
	case c.MemTableSize < 1<<20:
		return fmt.Errorf("badger: config: MemTableSize %d below 1 MiB", c.MemTableSize)
	case c.NumMemtables < 1:
		return fmt.Errorf("badger: config: NumMemtables %d < 1", c.NumMemtables)
	case c.BlockCacheSize < 0 || c.IndexCacheSize < 0:
		return errors.New("badger: config: negative cache size")
	case c.ValueLogFileSize < 1<<20 || c.ValueLogFileSize >= 2<<30:
		return fmt.Errorf("badger: config: ValueLogFileSize %d outside [1 MiB, 2 GiB)", c.ValueLogFileSize)
	case c.ValueThreshold < 0 || c.ValueThreshold > 1<<20:
		return fmt.Errorf("badger: config: ValueThreshold %d outside [0, 1 MiB]", c.ValueThreshold)
	case c.NumCompactors < 0 || c.NumCompactors == 1:
		return fmt.Errorf("badger: config: NumCompactors %d must be 0 or >= 2", c.NumCompactors)
	case c.MinFreeBytes < 0:
		return fmt.Errorf("badger: config: MinFreeBytes %d < 0", c.MinFreeBytes)
	case c.MinFreeBytes > 0 && c.MinFreeBytes < 2*c.MemTableSize:
		return fmt.Errorf("badger: config: MinFreeBytes %d below 2*MemTableSize (%d): Close needs room to flush",
			c.MinFreeBytes, 2*c.MemTableSize)
	case c.GCInterval < 0:
		return fmt.Errorf("badger: config: GCInterval %v < 0", c.GCInterval)
	case c.GCInterval > 0 && (c.GCDiscardRatio <= 0 || c.GCDiscardRatio >= 1):
		return fmt.Errorf("badger: config: GCDiscardRatio %v outside (0, 1)", c.GCDiscardRatio)
	case c.MaxRetries < 1:
		return fmt.Errorf("badger: config: MaxRetries %d < 1", c.MaxRetries)
	}
	return nil
}

// Store is a store.Store on badger. Open one per directory.
type Store struct {
	db  *badger.DB
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	active  int           // transactions running
	drained chan struct{} // closed when active drops to 0 after Close began

	stopGC chan struct{}
	gcDone chan struct{}

	// roomyUntil (unix ns): the last free-space check found room to
	// spare, so commits before then skip statfs.
	roomyUntil atomic.Int64

	// turns keeps a hot key from starving a writer: attempts share it,
	// and an Update that keeps losing conflicts runs its next attempt
	// alone (a pending Lock also holds back new attempts), so it commits.
	turns sync.RWMutex
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store in cfg.Dir, or an in-memory
// one. It refuses a directory holding a badger database that is not a Kelp
// store (ErrFormat).
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store/badger")
	dir := cfg.Dir
	if cfg.InMemory {
		dir = ""
	}
	opts := badger.DefaultOptions(dir).
		WithInMemory(cfg.InMemory).
		WithSyncWrites(cfg.SyncWrites).
		WithLogger(slogLogger{log}).
		WithMemTableSize(cfg.MemTableSize).
		WithNumMemtables(cfg.NumMemtables).
		WithBlockCacheSize(cfg.BlockCacheSize).
		WithIndexCacheSize(cfg.IndexCacheSize).
		WithValueLogFileSize(cfg.ValueLogFileSize).
		WithNumCompactors(cfg.NumCompactors)
	// Badger wants every inline value to fit in one write batch (15% of a
	// memtable): small memtables need a lower value threshold. In memory
	// there is no value log, and badger takes the threshold for the
	// largest value: ValueThreshold is for disk only.
	threshold := opts.ValueThreshold // badger's largest
	if cfg.ValueThreshold > 0 && !cfg.InMemory {
		threshold = min(threshold, cfg.ValueThreshold)
	}
	opts = opts.WithValueThreshold(min(threshold, 15*cfg.MemTableSize/100))
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("badger: open %q: %w", cfg.Dir, err)
	}
	s := &Store{db: db, cfg: cfg, log: log, stopGC: make(chan struct{}), gcDone: make(chan struct{})}
	if err := s.checkFormat(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if cfg.GCInterval > 0 && !cfg.InMemory {
		go s.gcLoop()
	} else {
		close(s.gcDone)
	}
	return s, nil
}

// checkFormat writes the format marker into a new database and checks it in
// an existing one.
func (s *Store) checkFormat() error {
	return s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey())
		switch {
		case err == nil:
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("badger: read format marker: %w", err)
			}
			if string(v) != formatVersion {
				return fmt.Errorf("%w: format %q, want %q", ErrFormat, v, formatVersion)
			}
			return nil
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("badger: read format marker: %w", err)
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		it.Rewind()
		nonEmpty := it.Valid()
		it.Close()
		if nonEmpty {
			return fmt.Errorf("%w: %q holds data but no format marker", ErrFormat, s.cfg.Dir)
		}
		if s.cfg.MinFreeBytes > 0 && !s.cfg.InMemory {
			if err := s.checkSpace(); err != nil {
				return err
			}
		}
		return txn.Set(formatKey(), []byte(formatVersion))
	})
}

// Close waits for running transactions, stops the value-log GC, then closes
// badger (which flushes the memtable). A second Close returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var wait chan struct{}
	if s.active > 0 {
		s.drained = make(chan struct{})
		wait = s.drained
	}
	s.mu.Unlock()
	if wait != nil {
		<-wait
	}
	close(s.stopGC)
	<-s.gcDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("badger: close: %w", err)
	}
	return nil
}

// enter registers a running transaction, or reports ErrClosed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.active == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// View implements store.Store.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badger: view: %w", err)
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return fn(&tx{txn: txn, ctx: ctx})
}

// errRetry marks a commit that lost a conflict; Update runs fn again.
var errRetry = errors.New("badger: commit conflict")

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("badger: update: %w", err)
		}
		err := s.turn(ctx, fn, attempt > exclusiveAfter)
		if !errors.Is(err, errRetry) {
			return err
		}
		if attempt >= s.cfg.MaxRetries {
			return fmt.Errorf("badger: update: still conflicting after %d attempts: %w", attempt, store.ErrConflict)
		}
		// Back off 50µs..~5ms, growing with the attempt, jittered so
		// that the losers of one conflict do not collide again.
		backoff := time.Duration(min(attempt, 100)) * 50 * time.Microsecond
		backoff = backoff/2 + rand.N(backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("badger: update: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// exclusiveAfter is how many conflicts an Update loses before it runs an
// attempt alone.
const exclusiveAfter = 3

// turn runs one attempt, alone when exclusive is set.
func (s *Store) turn(ctx context.Context, fn func(store.Tx) error, exclusive bool) error {
	if exclusive {
		s.turns.Lock()
		defer s.turns.Unlock()
	} else {
		s.turns.RLock()
		defer s.turns.RUnlock()
	}
	return s.attempt(ctx, fn)
}

// attempt runs fn once on a fresh read-write transaction and commits it.
func (s *Store) attempt(ctx context.Context, fn func(store.Tx) error) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	t := &tx{txn: txn, ctx: ctx, write: true, maxValue: s.maxValue()}
	if err := fn(t); err != nil {
		return err
	}
	if t.err != nil {
		return fmt.Errorf("badger: update: a write failed but fn went on: %w", t.err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badger: update: %w", err)
	}
	if !s.cfg.InMemory && s.cfg.MinFreeBytes > 0 {
		if err := s.checkSpace(); err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		if errors.Is(err, badger.ErrConflict) {
			return errRetry
		}
		return mapErr("commit", err)
	}
	return nil
}

// maxValue is the largest value badger accepts: one value-log file, or the
// value threshold in memory, where there is no value log.
func (s *Store) maxValue() int64 {
	if s.cfg.InMemory {
		return s.db.Opts().ValueThreshold
	}
	return s.cfg.ValueLogFileSize
}

// checkSpace reports ErrNoSpace when the store's file system has less than
// MinFreeBytes available. With spaceSlack more than that free, the answer
// holds for spaceRecheck: a statfs per commit was 3% of a create's CPU,
// and no second of metadata writes comes near the slack.
func (s *Store) checkSpace() error {
	now := time.Now().UnixNano()
	if now < s.roomyUntil.Load() {
		return nil
	}
	free, err := freeBytes(s.cfg.Dir)
	if err != nil {
		return nil // unknown: let badger try
	}
	if free < s.cfg.MinFreeBytes {
		return fmt.Errorf("%w: %d bytes free under %s, %d reserved: %w",
			ErrNoSpace, free, s.cfg.Dir, s.cfg.MinFreeBytes, syscall.ENOSPC)
	}
	if free-s.cfg.MinFreeBytes >= spaceSlack {
		s.roomyUntil.Store(now + int64(spaceRecheck))
	}
	return nil
}

const (
	spaceSlack   = 1 << 30
	spaceRecheck = time.Second
)

// mapErr translates a badger error into the store sentinels.
func mapErr(op string, err error) error {
	switch {
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("badger: %s: %w", op, store.ErrTooBig)
	case errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("badger: %s: %w", op, store.ErrNotFound)
	case errors.Is(err, badger.ErrReadOnlyTxn):
		return fmt.Errorf("badger: %s: %w", op, store.ErrReadOnly)
	case errors.Is(err, badger.ErrDBClosed), errors.Is(err, badger.ErrBlockedWrites):
		return fmt.Errorf("badger: %s: %w", op, store.ErrClosed)
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("badger: %s: %w", op, store.ErrConflict)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("badger: %s: %w: %w", op, ErrNoSpace, err)
	}
	return fmt.Errorf("badger: %s: %w", op, err)
}

// gcLoop runs the value-log GC every GCInterval until Close.
func (s *Store) gcLoop() {
	defer close(s.gcDone)
	tick := time.NewTicker(s.cfg.GCInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-tick.C:
		}
		// A rewrite needs room for the live part of one value-log file.
		if free, err := freeBytes(s.cfg.Dir); err == nil && free < s.cfg.MinFreeBytes+s.cfg.ValueLogFileSize {
			s.log.Warn("skipping value-log GC: disk nearly full", "free", free)
			continue
		}
		for range 16 { // each round rewrites at most one file
			err := s.db.RunValueLogGC(s.cfg.GCDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("value-log GC failed", "err", err)
				}
				break
			}
			select {
			case <-s.stopGC:
				return
			default:
			}
		}
	}
}

// tx is a store.Tx on one badger transaction.
type tx struct {
	txn      *badger.Txn
	ctx      context.Context
	write    bool
	maxValue int64  // the largest value badger takes
	err      error  // first failed write: the commit is refused
	scratch  []byte // nsData+key for lookups
}

func (t *tx) lookupKey(key []byte) []byte {
	t.scratch = append(append(t.scratch[:0], nsData), key...)
	return t.scratch
}

// Get implements store.Tx.
func (t *tx) Get(key []byte) ([]byte, error) {
	item, err := t.txn.Get(t.lookupKey(key))
	if err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, store.ErrNotFound
		}
		return nil, mapErr("get", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, mapErr("get", err)
	}
	return v, nil
}

// Set implements store.Tx.
func (t *tx) Set(key, value []byte) error {
	if !t.write {
		return fmt.Errorf("badger: set: %w", store.ErrReadOnly)
	}
	if len(key) > maxKeySize {
		return t.fail(fmt.Errorf("badger: set: key of %d bytes over %d: %w", len(key), maxKeySize, store.ErrTooBig))
	}
	if int64(len(value)) > t.maxValue {
		return t.fail(fmt.Errorf("badger: set: value of %d bytes over %d: %w", len(value), t.maxValue, store.ErrTooBig))
	}
	// Badger keeps references to key and value until the commit: give it
	// one private buffer holding both.
	buf := make([]byte, 1+len(key)+len(value))
	buf[0] = nsData
	copy(buf[1:], key)
	copy(buf[1+len(key):], value)
	if err := t.txn.Set(buf[:1+len(key):1+len(key)], buf[1+len(key):]); err != nil {
		return t.fail(mapErr("set", err))
	}
	return nil
}

// Delete implements store.Tx.
func (t *tx) Delete(key []byte) error {
	if !t.write {
		return fmt.Errorf("badger: delete: %w", store.ErrReadOnly)
	}
	if len(key) > maxKeySize {
		return t.fail(fmt.Errorf("badger: delete: key of %d bytes over %d: %w", len(key), maxKeySize, store.ErrTooBig))
	}
	k := make([]byte, 1+len(key))
	k[0] = nsData
	copy(k[1:], key)
	if err := t.txn.Delete(k); err != nil {
		return t.fail(mapErr("delete", err))
	}
	return nil
}

func (t *tx) fail(err error) error {
	if t.err == nil {
		t.err = err
	}
	return err
}

// Scan implements store.Tx.
func (t *tx) Scan(prefix, start []byte, fn func(key, value []byte) (bool, error)) error {
	p := make([]byte, 1+len(prefix))
	p[0] = nsData
	copy(p[1:], prefix)
	seek := p
	if bytes.Compare(start, prefix) > 0 {
		seek = append([]byte{nsData}, start...)
	}
	// Values below the value threshold (most of them) sit in the LSM tree
	// next to their keys, so prefetching (which copies every value) does
	// not pay off.
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: p})
	defer it.Close()
	n := 0
	for it.Seek(seek); it.Valid(); it.Next() {
		if n++; n%ctxCheckEvery == 0 {
			if err := t.ctx.Err(); err != nil {
				return fmt.Errorf("badger: scan: %w", err)
			}
		}
		item := it.Item()
		var (
			more  bool
			fnErr error
		)
		err := item.Value(func(v []byte) error {
			more, fnErr = fn(item.Key()[1:], v)
			return nil
		})
		if err != nil {
			return mapErr("scan", err)
		}
		if fnErr != nil {
			return fnErr
		}
		if !more {
			return nil
		}
	}
	return nil
}
