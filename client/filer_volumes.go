package client

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/needle"
)

// FilerVolumes is a VolumeDirectory that asks a filer, which passes assign
// and lookup through to its master: a mount needs only its filer's
// address. Locations are cached for a time-to-live. Safe for concurrent
// use.
type FilerVolumes struct {
	api  filerpb.FilerClient
	locs *locationCache
}

// NewFilerVolumes asks filer for volumes, caching locations for ttl (0
// means 10s).
func NewFilerVolumes(filer *FilerClient, ttl time.Duration) *FilerVolumes {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return &FilerVolumes{api: filer.API(), locs: newLocationCache(ttl)}
}

// Assign reserves req.Count file keys through the filer.
func (f *FilerVolumes) Assign(ctx context.Context, req AssignRequest) (Assignment, error) {
	if req.Count == 0 {
		req.Count = 1
	}
	resp, err := f.api.AssignVolume(ctx, &filerpb.AssignVolumeRequest{Count: req.Count, Replication: req.Replication,
		Collection: req.Collection, Ttl: req.TTL, DataCenter: req.DataCenter})
	if err != nil {
		return Assignment{}, fmt.Errorf("assign through filer: %w", err)
	}
	fid, err := needle.ParseFileID(resp.FileId)
	if err != nil {
		return Assignment{}, fmt.Errorf("assign through filer: %w: %w", ErrInternal, err)
	}
	a := Assignment{FileID: fid, Count: resp.Count, Location: filerLocation(resp.Location)}
	for _, r := range resp.Replicas {
		a.Replicas = append(a.Replicas, filerLocation(r))
	}
	if len(a.Replicas) > 0 {
		f.locs.store(fid.VolumeID, slices.Clone(a.Replicas))
	}
	return a, nil
}

// Lookup returns the replicas of volume vid, from the cache when fresh.
func (f *FilerVolumes) Lookup(ctx context.Context, vid uint32) ([]Location, error) {
	if locs, ok := f.locs.get(vid); ok {
		return locs, nil
	}
	resp, err := f.api.LookupVolume(ctx, &filerpb.LookupVolumeRequest{VolumeIds: []uint32{vid}})
	if err != nil {
		return nil, fmt.Errorf("lookup volume %d through filer: %w", vid, err)
	}
	for _, v := range resp.Volumes {
		if v.VolumeId == vid {
			return f.locs.answer(vid, v.Error, len(v.Locations), func(i int) Location { return filerLocation(v.Locations[i]) })
		}
	}
	return nil, fmt.Errorf("lookup volume %d: %w", vid, ErrNotFound)
}

// Invalidate forgets the cached locations of vid.
func (f *FilerVolumes) Invalidate(vid uint32) { f.locs.invalidate(vid) }

func filerLocation(l *filerpb.Location) Location {
	if l == nil {
		return Location{}
	}
	return Location{URL: l.Url, PublicURL: l.PublicUrl}
}
