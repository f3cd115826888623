package filerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/needle"
)

// maxReadDir caps the entries of one ReadDir reply (a request's limit of
// 0, or above it, gets this many and resumes with the last name).
const maxReadDir = 1024

// statFsBlockSize is the block size StatFs reports.
const statFsBlockSize = 4096

// grpcServer is the Filer gRPC service: each handler decodes, makes one
// namespace (or master) call and encodes; errors go through grpcError.
type grpcServer struct {
	filerpb.UnimplementedFilerServer
	s *Server
}

var _ filerpb.FilerServer = (*grpcServer)(nil)

func (g *grpcServer) ns() *meta.Namespace { return g.s.ns }

// Lookup returns the entry name in directory parent.
func (g *grpcServer) Lookup(ctx context.Context, req *filerpb.LookupRequest) (*filerpb.EntryResponse, error) {
	a, err := g.ns().Lookup(ctx, meta.Inode(req.Parent), req.Name)
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.EntryResponse{Name: req.Name, Attr: attrToPB(&a)}, nil
}

// GetAttr returns an inode's attributes.
func (g *grpcServer) GetAttr(ctx context.Context, req *filerpb.GetAttrRequest) (*filerpb.AttrResponse, error) {
	a, err := g.ns().GetAttr(ctx, meta.Inode(req.Inode))
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.AttrResponse{Attr: attrToPB(&a)}, nil
}

// SetAttr changes the attributes the request sets (chmod, chown,
// truncate, utimens).
func (g *grpcServer) SetAttr(ctx context.Context, req *filerpb.SetAttrRequest) (*filerpb.AttrResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	a, err := g.ns().SetAttr(cctx, meta.Inode(req.Inode), meta.SetAttrRequest{
		Mode: req.Mode, Uid: req.Uid, Gid: req.Gid, Size: req.Size,
		Atime: req.AtimeNs, Mtime: req.MtimeNs, AtimeNow: req.AtimeNow, MtimeNow: req.MtimeNow,
	})
	if err != nil {
		return nil, grpcError(err)
	}
	g.wakeGCIfFreed(ch)
	return &filerpb.AttrResponse{Attr: attrToPB(&a), Changed: changedToPB(ch)}, nil
}

// Create makes a regular file, fifo, socket or device node; with open it
// also takes a handle on it (drop it with Release).
func (g *grpcServer) Create(ctx context.Context, req *filerpb.CreateRequest) (*filerpb.EntryResponse, error) {
	if req.Open && req.Lease != "" {
		// Fail before creating anything: a retry under a fresh
		// session must not meet its own file (O_EXCL).
		if err := g.s.locks.Check(req.Lease); err != nil {
			return nil, lockError(err)
		}
	}
	cctx, ch := meta.WithChanges(ctx)
	a, err := g.ns().Create(cctx, meta.Inode(req.Parent), req.Name, meta.CreateRequest{
		Mode: req.Mode, Umask: req.Umask, Uid: req.Uid, Gid: req.Gid, Rdev: req.Rdev, Exclusive: req.Exclusive, Open: req.Open,
	})
	if err != nil {
		return nil, grpcError(err)
	}
	if req.Open {
		// The file exists now, so the create succeeds even if the
		// session ended just since the check: the handle went with
		// it, and the mount takes it back under its next session.
		if err := g.s.keepHandle(ctx, req.Lease, meta.Inode(a.Inode)); err != nil {
			g.s.log.Info("session ended during a create; its handle is released", "session", req.Lease, "ino", a.Inode, "err", err)
			g.s.wakeGC()
		}
	}
	return &filerpb.EntryResponse{Name: req.Name, Attr: attrToPB(&a), Changed: changedToPB(ch)}, nil
}

// Mkdir makes a directory.
func (g *grpcServer) Mkdir(ctx context.Context, req *filerpb.MkdirRequest) (*filerpb.EntryResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	a, err := g.ns().MkdirUmask(cctx, meta.Inode(req.Parent), req.Name, req.Mode, req.Umask, req.Uid, req.Gid)
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.EntryResponse{Name: req.Name, Attr: attrToPB(&a), Changed: changedToPB(ch)}, nil
}

// Symlink makes a symbolic link.
func (g *grpcServer) Symlink(ctx context.Context, req *filerpb.SymlinkRequest) (*filerpb.EntryResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	a, err := g.ns().Symlink(cctx, meta.Inode(req.Parent), req.Name, req.Target, req.Uid, req.Gid)
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.EntryResponse{Name: req.Name, Attr: attrToPB(&a), Changed: changedToPB(ch)}, nil
}

// Link adds a hard link.
func (g *grpcServer) Link(ctx context.Context, req *filerpb.LinkRequest) (*filerpb.EntryResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	a, err := g.ns().Link(cctx, meta.Inode(req.Inode), meta.Inode(req.NewParent), req.NewName)
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.EntryResponse{Name: req.NewName, Attr: attrToPB(&a), Changed: changedToPB(ch)}, nil
}

// wakeGCIfFreed wakes the chunk GC when a mutation queued chunks for
// deletion (each wake scans the queue: not worth it after every call).
func (g *grpcServer) wakeGCIfFreed(ch *meta.Changes) {
	if ch.Freed() > 0 {
		g.s.wakeGC()
	}
}

// Unlink removes a name that is not a directory.
func (g *grpcServer) Unlink(ctx context.Context, req *filerpb.UnlinkRequest) (*filerpb.ChangeResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	if err := g.ns().Unlink(cctx, meta.Inode(req.Parent), req.Name); err != nil {
		return nil, grpcError(err)
	}
	g.wakeGCIfFreed(ch)
	return changeResponse(ch), nil
}

// Rmdir removes an empty directory.
func (g *grpcServer) Rmdir(ctx context.Context, req *filerpb.RmdirRequest) (*filerpb.ChangeResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	if err := g.ns().Rmdir(cctx, meta.Inode(req.Parent), req.Name); err != nil {
		return nil, grpcError(err)
	}
	return changeResponse(ch), nil
}

// Rename moves a name (RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2).
func (g *grpcServer) Rename(ctx context.Context, req *filerpb.RenameRequest) (*filerpb.ChangeResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	err := g.ns().Rename(cctx, meta.Inode(req.OldParent), req.OldName, meta.Inode(req.NewParent), req.NewName,
		meta.RenameFlags(req.Flags))
	if err != nil {
		return nil, grpcError(err)
	}
	g.wakeGCIfFreed(ch)
	return changeResponse(ch), nil
}

// Readlink returns a symlink's target.
func (g *grpcServer) Readlink(ctx context.Context, req *filerpb.ReadlinkRequest) (*filerpb.ReadlinkResponse, error) {
	t, err := g.ns().Readlink(ctx, meta.Inode(req.Inode))
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.ReadlinkResponse{Target: t}, nil
}

// ReadDir lists a directory from after the cookie name, at most
// min(limit, maxReadDir) entries; eof says nothing follows.
func (g *grpcServer) ReadDir(ctx context.Context, req *filerpb.ReadDirRequest) (*filerpb.ReadDirResponse, error) {
	limit := int(req.Limit)
	if limit <= 0 || limit > maxReadDir {
		limit = maxReadDir
	}
	dir := meta.Inode(req.Inode)
	resp := &filerpb.ReadDirResponse{}
	if req.WithAttrs {
		es, err := g.ns().ReadDirPlus(ctx, dir, req.After, limit)
		if err != nil {
			return nil, grpcError(err)
		}
		for i := range es {
			resp.Entries = append(resp.Entries, &filerpb.DirEntry{Name: es[i].Name, Inode: uint64(es[i].Inode),
				Type: es[i].Type.Mode(), Attr: attrToPB(&es[i].Attr)})
		}
	} else {
		es, err := g.ns().ReadDir(ctx, dir, req.After, limit)
		if err != nil {
			return nil, grpcError(err)
		}
		for _, e := range es {
			resp.Entries = append(resp.Entries, &filerpb.DirEntry{Name: e.Name, Inode: uint64(e.Inode), Type: e.Type.Mode()})
		}
	}
	resp.Eof = len(resp.Entries) < limit
	return resp, nil
}

// GetXattr returns an extended attribute's value.
func (g *grpcServer) GetXattr(ctx context.Context, req *filerpb.GetXattrRequest) (*filerpb.GetXattrResponse, error) {
	v, err := g.ns().GetXattr(ctx, meta.Inode(req.Inode), req.Name)
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.GetXattrResponse{Value: v}, nil
}

// SetXattr sets an extended attribute (XATTR_CREATE = 1, XATTR_REPLACE = 2).
func (g *grpcServer) SetXattr(ctx context.Context, req *filerpb.SetXattrRequest) (*filerpb.ChangeResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	if req.Flags&^uint32(meta.XattrCreate|meta.XattrReplace) != 0 {
		return nil, grpcError(fmt.Errorf("setxattr flags %#x: %w", req.Flags, meta.ErrInvalid))
	}
	if err := g.ns().SetXattr(cctx, meta.Inode(req.Inode), req.Name, req.Value, meta.XattrFlags(req.Flags)); err != nil {
		return nil, grpcError(err)
	}
	return changeResponse(ch), nil
}

// ListXattr lists the names of an inode's extended attributes.
func (g *grpcServer) ListXattr(ctx context.Context, req *filerpb.ListXattrRequest) (*filerpb.ListXattrResponse, error) {
	names, err := g.ns().ListXattr(ctx, meta.Inode(req.Inode))
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.ListXattrResponse{Names: names}, nil
}

// RemoveXattr removes an extended attribute.
func (g *grpcServer) RemoveXattr(ctx context.Context, req *filerpb.RemoveXattrRequest) (*filerpb.ChangeResponse, error) {
	cctx, ch := meta.WithChanges(ctx)
	if err := g.ns().RemoveXattr(cctx, meta.Inode(req.Inode), req.Name); err != nil {
		return nil, grpcError(err)
	}
	return changeResponse(ch), nil
}

// StatFs reports the cluster's capacity from the master: every volume
// slot holds up to the volume size limit; free space is the free slots
// plus the room left in writable volumes. Files is the namespace's count
// of named inodes.
func (g *grpcServer) StatFs(ctx context.Context, _ *filerpb.StatFsRequest) (*filerpb.StatFsResponse, error) {
	files, err := g.ns().InodeCount(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	cs, err := g.s.cluster.Master.API().ClusterStatus(ctx, &masterpb.ClusterStatusRequest{})
	if err != nil {
		return nil, grpcError(client.FromStatus("cluster status", err))
	}
	limit := cs.VolumeSizeLimit
	free := cs.FreeSlots * limit
	for _, dc := range cs.DataCenters {
		for _, r := range dc.Racks {
			for _, n := range r.Nodes {
				for _, v := range n.Volumes {
					if !v.ReadOnly && !v.Full && v.Size < limit {
						free += limit - v.Size
					}
				}
			}
		}
	}
	total := cs.TotalSlots * limit
	free = min(free, total)
	return &filerpb.StatFsResponse{TotalBytes: total, FreeBytes: free, Files: files, BlockSize: statFsBlockSize}, nil
}

// Open takes a handle on an inode so an unlink keeps it until Release.
func (g *grpcServer) Open(ctx context.Context, req *filerpb.OpenRequest) (*filerpb.AttrResponse, error) {
	ino := meta.Inode(req.Inode)
	if err := g.s.checkLease(req.Lease); err != nil {
		return nil, err
	}
	if err := g.ns().Open(ctx, ino); err != nil {
		return nil, grpcError(err)
	}
	a, err := g.ns().GetAttr(ctx, ino)
	if err != nil {
		// Unlinked and released by another handle in between: the
		// inode is gone, and so is our handle's reason to exist.
		_ = g.ns().Release(ctx, ino)
		if errors.Is(err, meta.ErrNotFound) {
			err = fmt.Errorf("inode %d: %w", ino, meta.ErrStale)
		}
		return nil, grpcError(err)
	}
	if err := g.s.keepHandle(ctx, req.Lease, ino); err != nil {
		g.s.wakeGC()
		return nil, lockError(err)
	}
	return &filerpb.AttrResponse{Attr: attrToPB(&a)}, nil
}

// Reopen takes a handle on each inode under a fresh session (see the
// handles.go comment); inodes that no longer exist are listed as gone,
// and those it could not reopen otherwise as failed, so that one bad
// inode does not keep a mount from its session.
func (g *grpcServer) Reopen(ctx context.Context, req *filerpb.ReopenRequest) (*filerpb.ReopenResponse, error) {
	if req.Session == "" {
		return nil, grpcError(fmt.Errorf("reopen without a session: %w", meta.ErrInvalid))
	}
	if err := g.s.locks.Check(req.Session); err != nil {
		return nil, lockError(err)
	}
	resp := &filerpb.ReopenResponse{}
	for _, v := range req.Inodes {
		ino := meta.Inode(v)
		err := g.ns().Open(ctx, ino)
		switch {
		case errors.Is(err, meta.ErrStale), errors.Is(err, meta.ErrNotFound):
			resp.Gone = append(resp.Gone, v)
			continue
		case err != nil:
			g.s.log.Warn("reopen of a handle failed", "session", req.Session, "ino", v, "err", err)
			resp.Failed = append(resp.Failed, v)
			continue
		}
		if err := g.s.keepHandle(ctx, req.Session, ino); err != nil {
			g.s.wakeGC()
			return nil, lockError(err)
		}
	}
	return resp, nil
}

// Release drops handles taken by Open: req.Inode and each of req.Inodes.
// Every handle is dropped even when freeing one of them fails.
func (g *grpcServer) Release(ctx context.Context, req *filerpb.ReleaseRequest) (*filerpb.Empty, error) {
	var errs []error
	cctx, ch := meta.WithChanges(ctx)
	for _, ino := range append([]uint64{req.Inode}, req.Inodes...) {
		if ino == 0 {
			continue
		}
		if err := g.s.dropHandle(cctx, req.Lease, meta.Inode(ino)); err != nil {
			errs = append(errs, err)
		}
	}
	g.wakeGCIfFreed(ch)
	if err := errors.Join(errs...); err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.Empty{}, nil
}

// OpenContent takes a handle on a regular file (as Open) and returns its
// attributes and expanded content (as GetChunks); on an error it keeps no
// handle.
func (g *grpcServer) OpenContent(ctx context.Context, req *filerpb.OpenRequest) (*filerpb.GetChunksResponse, error) {
	ino := meta.Inode(req.Inode)
	if err := g.s.checkLease(req.Lease); err != nil {
		return nil, err
	}
	c, err := g.ns().OpenContentSince(ctx, ino, req.KnownGeneration)
	if err == nil && !c.Unchanged {
		c.Chunks, err = meta.ExpandChunks(ctx, c.Chunks, g.s.manifests)
		if err != nil {
			err = fmt.Errorf("inode %d: %w", ino, err)
			if rerr := g.ns().Release(context.WithoutCancel(ctx), ino); rerr != nil {
				g.s.log.Warn("release after a failed OpenContent", "ino", uint64(ino), "err", rerr)
			}
		}
	}
	if err != nil {
		g.s.wakeGC() // a failed open may have freed an inode an unlink kept for it
		return nil, grpcError(err)
	}
	if err := g.s.keepHandle(ctx, req.Lease, ino); err != nil {
		g.s.wakeGC()
		return nil, lockError(err)
	}
	return contentToPB(&c), nil
}

// contentToPB is the answer to OpenContent and GetChunks.
func contentToPB(c *meta.Content) *filerpb.GetChunksResponse {
	if c.Unchanged {
		return &filerpb.GetChunksResponse{Attr: attrToPB(&c.Attr), Unchanged: true}
	}
	return &filerpb.GetChunksResponse{Attr: attrToPB(&c.Attr), Chunks: chunksToPB(c.Chunks), Inline: c.Inline}
}

// GetChunks returns a regular file's attributes and content, manifest
// chunks expanded (or, for a client holding the current generation, the
// attributes alone).
func (g *grpcServer) GetChunks(ctx context.Context, req *filerpb.GetChunksRequest) (*filerpb.GetChunksResponse, error) {
	c, err := g.s.contentSince(ctx, meta.Inode(req.Inode), req.KnownGeneration)
	if err != nil {
		return nil, grpcError(err)
	}
	return contentToPB(&c), nil
}

// CommitChunks changes a regular file's content in one transaction with
// one event: inline bytes replace it (no chunks allowed with them),
// replace sets the whole chunk list and the size, otherwise the chunks are
// appended and the size raised to at least size. A non-zero mtime_ns
// becomes the file's mtime.
func (g *grpcServer) CommitChunks(ctx context.Context, req *filerpb.CommitChunksRequest) (*filerpb.AttrResponse, error) {
	chunks, err := chunksFromPB(req.Chunks)
	if err != nil {
		return nil, grpcError(err)
	}
	cr := meta.CommitRequest{Chunks: chunks, Size: req.Size, Replace: req.Replace, Mtime: req.MtimeNs}
	if len(req.Inline) > 0 {
		if len(chunks) > 0 {
			return nil, grpcError(fmt.Errorf("commit: inline content and chunks together: %w", meta.ErrInvalid))
		}
		if req.Size != 0 && req.Size != uint64(len(req.Inline)) {
			return nil, grpcError(fmt.Errorf("commit: size %d with %d inline bytes: %w", req.Size, len(req.Inline), meta.ErrInvalid))
		}
		cr.Inline = req.Inline
	}
	cctx, ch := meta.WithChanges(ctx)
	a, err := g.ns().Commit(cctx, meta.Inode(req.Inode), cr)
	if err != nil {
		return nil, grpcError(err)
	}
	g.wakeGCIfFreed(ch)
	return &filerpb.AttrResponse{Attr: attrToPB(&a)}, nil
}

// ResolveManifest returns the chunks a manifest blob lists, as stored.
func (g *grpcServer) ResolveManifest(ctx context.Context, req *filerpb.ResolveManifestRequest) (*filerpb.ResolveManifestResponse, error) {
	if _, err := needle.ParseFileID(req.FileId); err != nil {
		return nil, grpcError(fmt.Errorf("file id %q: %v: %w", req.FileId, err, meta.ErrInvalid))
	}
	cs, err := g.s.manifests.ReadManifest(ctx, req.FileId)
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.ResolveManifestResponse{Chunks: chunksToPB(cs)}, nil
}

// AssignVolume reserves file ids on the master, with this filer's
// replication and collection where the request names none.
func (g *grpcServer) AssignVolume(ctx context.Context, req *filerpb.AssignVolumeRequest) (*filerpb.AssignVolumeResponse, error) {
	ar := client.AssignRequest{Count: req.Count, Replication: req.Replication, Collection: req.Collection,
		TTL: req.Ttl, DataCenter: req.DataCenter}
	if ar.Replication == "" {
		ar.Replication = g.s.cfg.DefaultReplication
	}
	if ar.Collection == "" {
		ar.Collection = g.s.cfg.Collection
	}
	a, err := g.s.cluster.Master.Assign(ctx, ar)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &filerpb.AssignVolumeResponse{FileId: a.FileID.String(), Count: a.Count, Location: locationToPB(a.Location)}
	for _, r := range a.Replicas {
		resp.Replicas = append(resp.Replicas, locationToPB(r))
	}
	return resp, nil
}

// LookupVolume returns where volumes are served, as the master says.
func (g *grpcServer) LookupVolume(ctx context.Context, req *filerpb.LookupVolumeRequest) (*filerpb.LookupVolumeResponse, error) {
	mr, err := g.s.cluster.Master.API().LookupVolume(ctx, &masterpb.LookupVolumeRequest{VolumeIds: req.VolumeIds})
	if err != nil {
		return nil, grpcError(client.FromStatus("lookup volume", err))
	}
	resp := &filerpb.LookupVolumeResponse{}
	for _, v := range mr.Volumes {
		vl := &filerpb.VolumeLocations{VolumeId: v.VolumeId, Error: v.Error}
		for _, l := range v.Locations {
			vl.Locations = append(vl.Locations, &filerpb.Location{Url: l.Url, PublicUrl: l.PublicUrl})
		}
		resp.Volumes = append(resp.Volumes, vl)
	}
	return resp, nil
}

// SubscribeMetadata streams the change log (feed.go).
func (g *grpcServer) SubscribeMetadata(req *filerpb.SubscribeMetadataRequest, stream filerpb.Filer_SubscribeMetadataServer) error {
	return g.s.subscribe(stream.Context(), req, stream.Send)
}

// KvGet reads a side record; a missing one is found = false.
func (g *grpcServer) KvGet(ctx context.Context, req *filerpb.KvGetRequest) (*filerpb.KvGetResponse, error) {
	v, err := g.ns().KVGet(ctx, string(req.Key))
	if errors.Is(err, meta.ErrNotFound) {
		return &filerpb.KvGetResponse{}, nil
	}
	if err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.KvGetResponse{Value: v, Found: true}, nil
}

// KvPut writes a side record.
func (g *grpcServer) KvPut(ctx context.Context, req *filerpb.KvPutRequest) (*filerpb.Empty, error) {
	if err := g.ns().KVPut(ctx, string(req.Key), req.Value); err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.Empty{}, nil
}

// KvDelete removes a side record; a missing one is no error.
func (g *grpcServer) KvDelete(ctx context.Context, req *filerpb.KvDeleteRequest) (*filerpb.Empty, error) {
	if err := g.ns().KVDelete(ctx, string(req.Key)); err != nil {
		return nil, grpcError(err)
	}
	return &filerpb.Empty{}, nil
}

// GetFilerConfiguration returns this filer's identity and settings.
func (g *grpcServer) GetFilerConfiguration(context.Context, *filerpb.Empty) (*filerpb.FilerConfiguration, error) {
	c := g.s.cfg
	return &filerpb.FilerConfiguration{Signature: c.Signature, Masters: c.MasterAddr, Replication: c.DefaultReplication,
		Collection: c.Collection, MaxChunkMb: uint32(c.ChunkSizeMB)}, nil
}

// attrToPB encodes attributes.
// changedToPB is what the mutations recorded in ch left on the inodes
// they wrote.
func changedToPB(ch *meta.Changes) []*filerpb.Attr {
	as := ch.Attrs()
	if len(as) == 0 {
		return nil
	}
	out := make([]*filerpb.Attr, len(as))
	for i := range as {
		out[i] = attrToPB(&as[i])
	}
	return out
}

func changeResponse(ch *meta.Changes) *filerpb.ChangeResponse {
	resp := &filerpb.ChangeResponse{Changed: changedToPB(ch)}
	for _, ino := range ch.Removed() {
		resp.Removed = append(resp.Removed, uint64(ino))
	}
	return resp
}

func attrToPB(a *meta.Attr) *filerpb.Attr {
	return &filerpb.Attr{Inode: uint64(a.Inode), Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Size: a.Size, Nlink: a.Nlink,
		AtimeNs: a.Atime, MtimeNs: a.Mtime, CtimeNs: a.Ctime, Rdev: a.Rdev, Generation: a.Generation}
}

func chunksToPB(cs []meta.Chunk) []*filerpb.Chunk {
	if len(cs) == 0 {
		return nil
	}
	out := make([]*filerpb.Chunk, len(cs))
	for i, c := range cs {
		out[i] = &filerpb.Chunk{Offset: c.Offset, Size: c.Size, FileId: c.FileID, ModifiedNs: c.ModifiedNs, Etag: c.ETag,
			IsManifest: c.IsManifest}
	}
	return out
}

func chunkFromPB(c *filerpb.Chunk) meta.Chunk {
	return meta.Chunk{Offset: c.GetOffset(), Size: c.GetSize(), FileID: c.GetFileId(), ModifiedNs: c.GetModifiedNs(),
		ETag: c.GetEtag(), IsManifest: c.GetIsManifest()}
}

// chunksFromPB decodes the chunks a client commits; manifest chunks are
// the filer's own and are refused.
func chunksFromPB(cs []*filerpb.Chunk) ([]meta.Chunk, error) {
	out := make([]meta.Chunk, 0, len(cs))
	for _, c := range cs {
		if c == nil {
			return nil, fmt.Errorf("nil chunk: %w", meta.ErrInvalid)
		}
		if c.IsManifest {
			return nil, fmt.Errorf("chunk %s: clients do not commit manifest chunks: %w", c.FileId, meta.ErrInvalid)
		}
		out = append(out, chunkFromPB(c))
	}
	return out, nil
}

// signatureMetadataKey is the request metadata carrying a client's
// signatures (see filer.proto).
const signatureMetadataKey = client.FilerSignatureKey

// signatureInterceptor records the signatures a client sends under
// "kelp-signature" (decimal int32s, several values or comma-separated) in
// the events of the call's namespace changes, before this filer's own.
// A malformed value fails the call with EINVAL; 0 is ignored.
func signatureInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return handler(ctx, req)
	}
	vals := md.Get(signatureMetadataKey)
	if len(vals) == 0 {
		return handler(ctx, req)
	}
	var sigs []int32
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
			if err != nil {
				return nil, grpcError(fmt.Errorf("metadata %s %q: not a decimal int32: %w", signatureMetadataKey, v, meta.ErrInvalid))
			}
			if n != 0 && !slices.Contains(sigs, int32(n)) {
				sigs = append(sigs, int32(n))
			}
		}
	}
	if len(sigs) > 0 {
		ctx = meta.WithSignatures(ctx, sigs)
	}
	return handler(ctx, req)
}

func locationToPB(l client.Location) *filerpb.Location {
	return &filerpb.Location{Url: l.URL, PublicUrl: l.PublicURL}
}

// statusf is a status error without an errno detail.
func statusf(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, format, args...)
}
