package filersync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// endpoint is one filer: its gRPC API, its cluster's volumes (through the
// filer) and its signature.
type endpoint struct {
	addr     string
	fc       *client.FilerClient
	api      filerpb.FilerClient
	blobs    blobStore
	sig      int32
	proxied  bool
	maxChunk int64 // the filer's chunk size: the most its blob proxy takes at once

	manifestMu sync.Mutex
	manifests  map[string][]*filerpb.Chunk // resolved manifest blobs (immutable), bounded
}

// rootInode is the namespace's root directory.
const rootInode = 1

// maxManifestCache bounds the resolved manifests kept.
const maxManifestCache = 256

// blobStore reads, writes and deletes whole blobs of one cluster:
// straight from its volume servers, or through its filer's HTTP blob
// proxy. Delete is only for blobs the sync wrote and did not commit; a
// missing blob is an error wrapping client.ErrNotFound.
type blobStore interface {
	Read(ctx context.Context, fid string) ([]byte, error)
	Write(ctx context.Context, data []byte) (fid, etag string, err error)
	Delete(ctx context.Context, fid string) error
	Close() error
}

var (
	_ blobStore = direct{}
	_ blobStore = proxied{}
)

// direct reaches the volume servers, which the filer locates.
type direct struct{ c *client.Cluster }

func (d direct) Read(ctx context.Context, fid string) ([]byte, error) { return d.c.Read(ctx, fid) }
func (d direct) Write(ctx context.Context, data []byte) (string, string, error) {
	fid, res, err := d.c.Write(ctx, data, client.WriteOptions{})
	return fid, res.ETag, err
}
func (d direct) Delete(ctx context.Context, fid string) error { return d.c.Delete(ctx, fid) }
func (d direct) Close() error                                 { return d.c.Close() }

// proxied goes through the filer's HTTP API.
type proxied struct{ *client.FilerBlobs }

func (proxied) Close() error { return nil }

func dialEndpoint(side Side) (*endpoint, error) {
	addr := side.Filer
	gaddr, err := client.GRPCAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("filer %s: %w", addr, err)
	}
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: gaddr})
	if err != nil {
		return nil, fmt.Errorf("filer %s: %w", addr, err)
	}
	e := &endpoint{addr: addr, fc: fc, api: fc.API(), manifests: make(map[string][]*filerpb.Chunk)}
	if side.FilerProxy {
		// The HTTP API is the port users name; a ".grpcPort" suffix
		// only names the gRPC port.
		haddr, _, _ := strings.Cut(addr, ".")
		if h, p, err := net.SplitHostPort(addr); err == nil {
			port, _, _ := strings.Cut(p, ".")
			haddr = net.JoinHostPort(h, port)
		}
		e.blobs, e.proxied = proxied{client.NewFilerBlobs(haddr, nil)}, true
	} else {
		e.blobs = direct{client.NewClusterVia(client.NewFilerVolumes(fc, 0), client.NewBlobClient(client.BlobClientConfig{}))}
	}
	return e, nil
}

// identify asks the filer for its signature.
func (e *endpoint) identify(ctx context.Context) error {
	conf, err := e.api.GetFilerConfiguration(ctx, &filerpb.Empty{})
	if err != nil {
		return fmt.Errorf("filer %s: %w", e.addr, err)
	}
	if conf.Signature == 0 {
		return fmt.Errorf("filer %s has no signature", e.addr)
	}
	e.sig, e.maxChunk = conf.Signature, int64(conf.MaxChunkMb)<<20
	return nil
}

// maxWrite is the largest blob one write may carry; 0 for no limit.
func (e *endpoint) maxWrite() int64 {
	if e.proxied {
		return e.maxChunk
	}
	return 0
}

func (e *endpoint) close() {
	e.blobs.Close()
	e.fc.Close()
}

// notFound reports whether err says a name or inode does not exist.
func notFound(err error) bool {
	return errors.Is(err, client.ErrNotFound) || client.PosixErrno(err) == "ENOENT"
}

// lookup resolves an absolute path to its attributes; client.ErrNotFound
// (wrapped) when any component is missing.
func (e *endpoint) lookup(ctx context.Context, p string) (*filerpb.Attr, error) {
	a, err := e.api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: rootInode})
	if err != nil {
		return nil, err
	}
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		if a.Attr.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return nil, fmt.Errorf("lookup %s: %s is not a directory: %w", p, name, client.ErrNotFound)
		}
		r, err := e.api.Lookup(ctx, &filerpb.LookupRequest{Parent: a.Attr.Inode, Name: name})
		if err != nil {
			return nil, err
		}
		a = &filerpb.AttrResponse{Attr: r.Attr}
	}
	return a.Attr, nil
}

// ensureDir returns the inode of directory p, making it and its missing
// ancestors (mode 0755, root-owned) as mkdir -p does. A non-directory in
// the way is an error.
func (e *endpoint) ensureDir(ctx context.Context, p string) (uint64, error) {
	ino := uint64(rootInode)
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		r, err := e.api.Lookup(ctx, &filerpb.LookupRequest{Parent: ino, Name: name})
		if notFound(err) {
			r, err = e.api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: ino, Name: name, Mode: 0o755})
			if client.PosixErrno(err) == "EEXIST" {
				r, err = e.api.Lookup(ctx, &filerpb.LookupRequest{Parent: ino, Name: name})
			}
		}
		if err != nil {
			return 0, fmt.Errorf("directory %s: %w", p, err)
		}
		if r.Attr.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return 0, fmt.Errorf("directory %s: %s is not a directory", p, name)
		}
		ino = r.Attr.Inode
	}
	return ino, nil
}

// parentOf splits an absolute path into its directory and name.
func parentOf(p string) (dir, name string) {
	return path.Dir(p), path.Base(p)
}

// resolve expands manifest chunks into the data chunks they list.
func (e *endpoint) resolve(ctx context.Context, chunks []*filerpb.Chunk) ([]*filerpb.Chunk, error) {
	var out []*filerpb.Chunk
	for _, c := range chunks {
		if !c.IsManifest {
			out = append(out, c)
			continue
		}
		listed, err := e.manifest(ctx, c.FileId)
		if err != nil {
			return nil, err
		}
		// A manifest's span may have been cut by a truncate: clip.
		end := c.Offset + c.Size
		for _, l := range listed {
			if l.Offset >= end {
				continue
			}
			l = proto.Clone(l).(*filerpb.Chunk)
			if l.Offset+l.Size > end {
				// Only the visible part is kept; the bytes beyond are
				// never read, so the whole blob is still copied.
				l.Size = end - l.Offset
			}
			out = append(out, l)
		}
	}
	return out, nil
}

func (e *endpoint) manifest(ctx context.Context, fid string) ([]*filerpb.Chunk, error) {
	e.manifestMu.Lock()
	if m, ok := e.manifests[fid]; ok {
		e.manifestMu.Unlock()
		return m, nil
	}
	e.manifestMu.Unlock()
	resp, err := e.api.ResolveManifest(ctx, &filerpb.ResolveManifestRequest{FileId: fid})
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", fid, err)
	}
	e.manifestMu.Lock()
	if len(e.manifests) >= maxManifestCache {
		clear(e.manifests)
	}
	e.manifests[fid] = resp.Chunks
	e.manifestMu.Unlock()
	return resp.Chunks, nil
}
