package mount

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
)

// Xattr flags, as setxattr(2) numbers them.
const (
	XattrCreate  = 1
	XattrReplace = 2
)

// GetXattr returns the value of xattr name of ino (ENODATA if unset).
// Absent names are remembered for AttrTimeout (until this mount or, via
// the change log, another client changes the inode): the kernel asks for
// security.capability before every write.
func (fs *FS) GetXattr(ctx context.Context, ino uint64, name string) ([]byte, syscall.Errno) {
	if fs.xattrs.absent(ino, name) {
		return nil, syscall.ENODATA
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.GetXattrResponse, error) {
		return fs.api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: ino, Name: name})
	})
	if err != nil {
		errno := toErrno(err)
		if errno == syscall.ENODATA {
			fs.xattrs.remember(ino, name, fs.cfg.AttrTimeout)
		}
		return nil, errno
	}
	return resp.Value, 0
}

// capabilityXattr holds file capabilities; the kernel reads it before
// every write to a file.
const capabilityXattr = "security.capability"

// xattrMisses remembers xattr names an inode does not have.
type xattrMisses struct {
	mu sync.Mutex
	m  map[uint64]map[string]time.Time
	n  int
}

// maxXattrMisses bounds the memory of the negative cache.
const maxXattrMisses = 1 << 16

func (x *xattrMisses) absent(ino uint64, name string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	exp, ok := x.m[ino][name]
	return ok && time.Now().Before(exp)
}

func (x *xattrMisses) remember(ino uint64, name string, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil || x.n >= maxXattrMisses {
		x.m, x.n = make(map[uint64]map[string]time.Time), 0
	}
	names := x.m[ino]
	if names == nil {
		names = make(map[string]time.Time, 1)
		x.m[ino] = names
	}
	names[name] = time.Now().Add(ttl)
	x.n++
}

// forget drops what is remembered of ino.
func (x *xattrMisses) forget(ino uint64) {
	x.mu.Lock()
	delete(x.m, ino)
	x.mu.Unlock()
}

// SetXattr sets xattr name of ino (flags: XattrCreate, XattrReplace).
func (fs *FS) SetXattr(ctx context.Context, ino uint64, name string, value []byte, flags uint32) syscall.Errno {
	if e := fs.writable(); e != 0 {
		return e
	}
	fs.xattrs.forget(ino)
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ChangeResponse, error) {
		return fs.api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: ino, Name: name, Value: value, Flags: flags})
	})
	if err != nil {
		return fs.failed(err, nil, ino)
	}
	fs.changed(resp.Changed, resp.Removed)
	return 0
}

// ListXattr returns the names of ino's xattrs.
func (fs *FS) ListXattr(ctx context.Context, ino uint64) ([]string, syscall.Errno) {
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ListXattrResponse, error) {
		return fs.api.ListXattr(ctx, &filerpb.ListXattrRequest{Inode: ino})
	})
	if err != nil {
		return nil, toErrno(err)
	}
	return resp.Names, 0
}

// RemoveXattr removes xattr name of ino (ENODATA if unset).
func (fs *FS) RemoveXattr(ctx context.Context, ino uint64, name string) syscall.Errno {
	if e := fs.writable(); e != 0 {
		return e
	}
	fs.xattrs.forget(ino)
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ChangeResponse, error) {
		return fs.api.RemoveXattr(ctx, &filerpb.RemoveXattrRequest{Inode: ino, Name: name})
	})
	if err != nil {
		return fs.failed(err, nil, ino)
	}
	fs.changed(resp.Changed, resp.Removed)
	return 0
}
