package client

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// VolumeDirectory hands out file ids and says where volumes live: the
// master does, and so does a filer passing the calls through (for a mount
// that knows only its filer).
type VolumeDirectory interface {
	Assign(ctx context.Context, req AssignRequest) (Assignment, error)
	// Lookup returns the replicas of volume vid; callers only read it.
	Lookup(ctx context.Context, vid uint32) ([]Location, error)
	// Invalidate forgets cached locations of vid after a replica failed.
	Invalidate(vid uint32)
}

var (
	_ VolumeDirectory = (*MasterClient)(nil)
	_ VolumeDirectory = (*FilerVolumes)(nil)
)

// locationCache keeps volume locations for a time-to-live. Safe for
// concurrent use.
type locationCache struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.RWMutex
	cache map[uint32]cachedLocations
}

type cachedLocations struct {
	locs    []Location
	expires time.Time
}

func newLocationCache(ttl time.Duration) *locationCache {
	return &locationCache{ttl: ttl, now: time.Now, cache: make(map[uint32]cachedLocations)}
}

func (c *locationCache) get(vid uint32) ([]Location, bool) {
	c.mu.RLock()
	e, ok := c.cache[vid]
	c.mu.RUnlock()
	if ok && c.now().Before(e.expires) {
		return e.locs, true
	}
	return nil, false
}

func (c *locationCache) store(vid uint32, locs []Location) {
	c.mu.Lock()
	c.cache[vid] = cachedLocations{locs: locs, expires: c.now().Add(c.ttl)}
	c.mu.Unlock()
}

func (c *locationCache) invalidate(vid uint32) {
	c.mu.Lock()
	delete(c.cache, vid)
	c.mu.Unlock()
}

// answer turns one volume of a lookup response (master's or filer's) into
// its n locations, caching them, or into the error the answer carries.
func (c *locationCache) answer(vid uint32, errMsg string, n int, loc func(i int) Location) ([]Location, error) {
	if errMsg != "" || n == 0 {
		if errMsg == "" {
			errMsg = "no live replica"
		}
		return nil, fmt.Errorf("lookup volume %d: %s: %w", vid, errMsg, ErrNotFound)
	}
	locs := make([]Location, n)
	for i := range n {
		locs[i] = loc(i)
	}
	c.store(vid, slices.Clone(locs))
	return locs, nil
}
