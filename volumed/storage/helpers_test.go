package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// logBuffer collects log lines so tests can assert that something was logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) contains(s string) bool { return bytes.Contains([]byte(l.String()), []byte(s)) }

// fakeClock is an injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testEnv struct {
	t     *testing.T
	dir   string
	logs  *logBuffer
	cfg   Config
	store *Store
}

// newEnv opens a store on a fresh directory; mod adjusts the config.
func newEnv(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), logs: &logBuffer{}}
	e.cfg = Config{
		Dirs:            []string{e.dir},
		MaxVolumes:      []int{10},
		VolumeSizeLimit: 64 << 20,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&e.cfg)
	}
	e.open()
	t.Cleanup(func() { e.store.Close() })
	return e
}

func (e *testEnv) open() {
	e.t.Helper()
	s, err := NewStore(e.cfg)
	if err != nil {
		e.t.Fatalf("NewStore: %v", err)
	}
	e.store = s
}

// reopen closes the store and loads it again from disk.
func (e *testEnv) reopen() {
	e.t.Helper()
	if err := e.store.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	e.open()
}

func (e *testEnv) allocate(id uint32, collection string, ttl needle.TTL) {
	e.t.Helper()
	if err := e.store.AllocateVolume(id, collection, needle.ReplicaPlacement{}, ttl, 0); err != nil {
		e.t.Fatalf("AllocateVolume(%d): %v", id, err)
	}
}

// hasVolume reports whether the store holds volume id.
func (e *testEnv) hasVolume(id uint32) bool {
	_, err := e.store.VolumeStatus(id)
	return err == nil
}

func (e *testEnv) vol(id uint32) *volume {
	e.t.Helper()
	v, err := e.store.volume(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// blob returns deterministic data for key.
func blob(key uint64, size int) []byte {
	b := make([]byte, size)
	x := key*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func cookieFor(key uint64) uint32 { return uint32(key*0x9E3779B1) | 1 }

func (e *testEnv) write(vid uint32, key uint64, size int) *needle.Needle {
	e.t.Helper()
	n := &needle.Needle{ID: key, Cookie: cookieFor(key), Data: blob(key, size)}
	if _, err := e.store.Write(vid, n); err != nil {
		e.t.Fatalf("Write(%d, %d): %v", vid, key, err)
	}
	return n
}

// mustRead reads key and checks its data against blob(key, size).
func (e *testEnv) mustRead(vid uint32, key uint64, size int) {
	e.t.Helper()
	if err := checkRead(e.store, vid, key, size); err != nil {
		e.t.Fatal(err)
	}
}

func checkRead(s *Store, vid uint32, key uint64, size int) error {
	n, err := s.Read(vid, key, cookieFor(key))
	if err != nil {
		return fmt.Errorf("Read(%d, %d): %w", vid, key, err)
	}
	if n.ID != key || n.Cookie != cookieFor(key) || !bytes.Equal(n.Data, blob(key, size)) {
		return fmt.Errorf("Read(%d, %d): wrong needle: id %d cookie %x, %d data bytes", vid, key, n.ID, n.Cookie, len(n.Data))
	}
	return nil
}

func (e *testEnv) mustNotFind(vid uint32, key uint64) {
	e.t.Helper()
	if n, err := e.store.Read(vid, key, cookieFor(key)); !errors.Is(err, ErrNotFound) {
		e.t.Fatalf("Read(%d, %d) = %v, %v; want ErrNotFound", vid, key, n, err)
	}
}

// waitChanged waits for a Changed signal.
func waitChanged(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-s.Changed():
	case <-ctx.Done():
		t.Fatal("no Changed signal")
	}
}

// drainChanged empties the Changed channel.
func drainChanged(s *Store) {
	select {
	case <-s.Changed():
	default:
	}
}

// atomicCounter hands out increasing keys to parallel benchmark goroutines.
type atomicCounter struct{ n atomic.Uint64 }

func (c *atomicCounter) add() uint64 { return c.n.Add(1) }
