package client

import (
	"context"
	"errors"
	"fmt"

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
// is down or fails is skipped; if every replica fails the last error is
// returned (ErrNotFound only if some replica said the blob does not exist).
func (c *Cluster) Read(ctx context.Context, fid string) ([]byte, error) {
	return c.readFrom(ctx, fid, func(host string) ([]byte, error) { return c.Blobs.Get(ctx, host, fid) })
}

// ReadRange is Read for length bytes from offset.
func (c *Cluster) ReadRange(ctx context.Context, fid string, offset, length int64) ([]byte, error) {
	return c.readFrom(ctx, fid, func(host string) ([]byte, error) { return c.Blobs.GetRange(ctx, host, fid, offset, length) })
}

func (c *Cluster) readFrom(ctx context.Context, fid string, get func(host string) ([]byte, error)) ([]byte, error) {
	locs, vid, err := c.locations(ctx, fid)
	if err != nil {
		return nil, err
	}
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
	c.dir().Invalidate(vid)
	return nil, fmt.Errorf("read %s: every replica failed: %w", fid, errors.Join(errs...))
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
