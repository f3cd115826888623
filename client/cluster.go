package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// Cluster combines a VolumeDirectory and a BlobClient into whole-blob
// operations: write (assign + upload), read with replica fallback, delete.
type Cluster struct {
	// Master is set when the cluster was reached through its master.
	Master *MasterClient
	// Directory assigns and looks up volumes; nil means Master.
	Directory VolumeDirectory
	Blobs     *BlobClient
}

// NewClusterVia combines dir and blobs, for a client that reaches volumes
// through something other than the master (a filer).
func NewClusterVia(dir VolumeDirectory, blobs *BlobClient) *Cluster {
	return &Cluster{Directory: dir, Blobs: blobs}
}

func (c *Cluster) dir() VolumeDirectory {
	if c.Directory != nil {
		return c.Directory
	}
	return c.Master
}

// ClusterConfig configures a Cluster.
type ClusterConfig struct {
	Master MasterClientConfig
	Blobs  BlobClientConfig
}

// NewCluster connects to the master named in cfg.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	m, err := NewMasterClient(cfg.Master)
	if err != nil {
		return nil, err
	}
	return &Cluster{Master: m, Blobs: NewBlobClient(cfg.Blobs)}, nil
}

// Close releases the blob client and the master client, if any.
func (c *Cluster) Close() error {
	c.Blobs.Close()
	if c.Master != nil {
		return c.Master.Close()
	}
	return nil
}

// WriteOptions choose where a blob goes and its metadata.
type WriteOptions struct {
	Assign AssignRequest
	Upload UploadOptions
}

// Write assigns a file id and stores data under it on every replica.
func (c *Cluster) Write(ctx context.Context, data []byte, opts WriteOptions) (string, UploadResult, error) {
	a, err := c.dir().Assign(ctx, opts.Assign)
	if err != nil {
		return "", UploadResult{}, err
	}
	fid := a.FileID.String()
	res, err := c.Blobs.Upload(ctx, a.Location.URL, fid, data, opts.Upload)
	if err != nil {
		c.dir().Invalidate(a.FileID.VolumeID)
		return "", UploadResult{}, err
	}
	return fid, res, nil
}

// locations resolves the replicas of fid's volume.
func (c *Cluster) locations(ctx context.Context, fid string) ([]Location, uint32, error) {
	vid, err := volumeOf(fid)
	if err != nil {
		return nil, 0, err
	}
	locs, err := c.dir().Lookup(ctx, vid)
	if err != nil {
		return nil, vid, err
	}
	return locs, vid, nil
}

// Read returns blob fid from the first replica that answers. A replica that
// is down or fails is skipped. If every known replica is down, the
// locations may be stale (cached while a server was away): Read asks the
// directory again and tries what it answers, up to readRefreshes times,
// pausing before all but the first so a restarted server's first heartbeat
// can reach the master. If every replica still fails the errors of the last
// round are returned (ErrNotFound only if some replica said the blob does
// not exist).
func (c *Cluster) Read(ctx context.Context, fid string) ([]byte, error) {
	return c.readFrom(ctx, fid, func(host string) ([]byte, error) { return c.Blobs.Get(ctx, host, fid) })
}

// ReadRange is Read for length bytes from offset.
func (c *Cluster) ReadRange(ctx context.Context, fid string, offset, length int64) ([]byte, error) {
	return c.readFrom(ctx, fid, func(host string) ([]byte, error) { return c.Blobs.GetRange(ctx, host, fid, offset, length) })
}

// A read that finds every known replica down refreshes the volume's
// locations readRefreshes times: at once (the cached answer may predate a
// replica coming back), then after readRefreshPause, doubling. A volume
// that stays down fails after these pauses (0.6s in all), far inside any
// read's timeout.
const (
	readRefreshes    = 3
	readRefreshPause = 200 * time.Millisecond
)

func (c *Cluster) readFrom(ctx context.Context, fid string, get func(host string) ([]byte, error)) ([]byte, error) {
	locs, vid, err := c.locations(ctx, fid)
	if err != nil {
		return nil, err
	}
	var pause time.Duration
	var lookupErr error // of the last refresh, if it failed
	for refresh := 0; ; refresh++ {
		data, errs := tryReplicas(ctx, locs, get)
		if errs == nil {
			return data, nil
		}
		c.dir().Invalidate(vid)
		failed := fmt.Errorf("read %s: every replica failed: %w", fid, errors.Join(errs...))
		if lookupErr != nil {
			// Only context: the replicas' errors say what failed, and a
			// directory listing no live replica must not make this a
			// not-found.
			failed = fmt.Errorf("%w (refreshing their locations failed: %v)", failed, lookupErr)
		}
		if refresh == readRefreshes || !someDown(errs) || ctx.Err() != nil {
			return nil, failed
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, failed
			}
		}
		pause = max(readRefreshPause, 2*pause)
		// Without a fresh answer (the directory is unreachable, or lists no
		// live replica yet) the known replicas are tried again: one may be
		// back before the master has heard from it.
		var fresh []Location
		if fresh, lookupErr = c.dir().Lookup(ctx, vid); lookupErr == nil {
			locs = fresh
		}
	}
}

// tryReplicas reads from the replicas in locs until one answers, returning
// its data, or the errors of those tried (never empty then).
func tryReplicas(ctx context.Context, locs []Location, get func(host string) ([]byte, error)) ([]byte, []error) {
	var errs []error
	var data []byte
	ok := false
	rotated(locs, func(l Location) bool {
		var err error
		if data, err = get(l.URL); err == nil {
			ok = true
			return false
		}
		errs = append(errs, err)
		return IsRetryable(err) && ctx.Err() == nil
	})
	if ok {
		return data, nil
	}
	if len(errs) == 0 { // no locations: cannot happen with a directory's answer
		errs = append(errs, fmt.Errorf("no replica known: %w", ErrUnavailable))
	}
	return nil, errs
}

// someDown reports whether a failed round over the replicas is worth
// repeating with fresh locations: some replica was down, and none gave an
// answer that another replica could not change.
func someDown(errs []error) bool {
	down := false
	for _, err := range errs {
		if !IsRetryable(err) {
			return false
		}
		down = down || errors.Is(err, ErrUnavailable)
	}
	return down
}

// Delete removes blob fid from every replica (the volume server that gets the
// request forwards it to the others).
func (c *Cluster) Delete(ctx context.Context, fid string) error {
	locs, vid, err := c.locations(ctx, fid)
	if err != nil {
		return err
	}
	var errs []error
	deleted := false
	rotated(locs, func(l Location) bool {
		err := c.Blobs.Delete(ctx, l.URL, fid, false)
		if err == nil {
			deleted = true
			return false
		}
		errs = append(errs, err)
		return IsRetryable(err) && !errors.Is(err, ErrNotFound)
	})
	if deleted {
		return nil
	}
	c.dir().Invalidate(vid)
	return fmt.Errorf("delete %s: %w", fid, errors.Join(errs...))
}

func volumeOf(fid string) (uint32, error) {
	f, err := needle.ParseFileID(fid)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return f.VolumeID, nil
}
