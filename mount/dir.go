package mount

import (
	"context"
	"sync"
	"syscall"

	"github.com/kelpfs/kelp/api/filerpb"
)

// DirEntry is one name of a directory listing. Off is the cookie that
// resumes the listing after this entry.
type DirEntry struct {
	Name string
	Ino  uint64
	Mode uint32 // the S_IFMT bits
	Attr *Attr  // with ReadDir's plus set (nil for "." and "..")
	Off  uint64
}

// dirHandle is an open directory: the listing fetched so far, so offsets
// handed to the kernel stay valid while the directory changes.
type dirHandle struct {
	ino     uint64
	mu      sync.Mutex
	entries []DirEntry
	eof     bool
	plus    bool
	since   uint64 // metadata cache version when the listing started
}

// dirPage is how many names one filer call returns.
const dirPage = 1024

// OpenDir opens directory ino for listing.
func (fs *FS) OpenDir(ctx context.Context, ino uint64) (uint64, syscall.Errno) {
	a, errno := fs.GetAttr(ctx, ino)
	if errno != 0 {
		return 0, errno
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return 0, syscall.ENOTDIR
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.nextFh++
	fs.dirs[fs.nextFh] = &dirHandle{ino: ino}
	return fs.nextFh, 0
}

// ReleaseDir closes a directory handle.
func (fs *FS) ReleaseDir(fh uint64) {
	fs.mu.Lock()
	delete(fs.dirs, fh)
	fs.mu.Unlock()
}

// ReadDir lists directory handle fh from cookie off (0 = the start, which
// also refreshes the listing, as rewinddir(3) wants), calling fill for
// each entry until it returns false. With plus, entries carry attributes.
func (fs *FS) ReadDir(ctx context.Context, fh, off uint64, plus bool, fill func(DirEntry) bool) syscall.Errno {
	fs.mu.Lock()
	d := fs.dirs[fh]
	fs.mu.Unlock()
	if d == nil {
		return syscall.EBADF
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 || d.plus != plus {
		d.entries = append(d.entries[:0],
			DirEntry{Name: ".", Ino: d.ino, Mode: syscall.S_IFDIR, Off: 1},
			DirEntry{Name: "..", Ino: d.ino, Mode: syscall.S_IFDIR, Off: 2})
		d.eof, d.plus = false, plus
		d.since = fs.meta.version()
	}
	for i := off; ; i++ {
		for i >= uint64(len(d.entries)) {
			if d.eof {
				return 0
			}
			if errno := fs.fetchDir(ctx, d); errno != 0 {
				return errno
			}
		}
		if !fill(d.entries[i]) {
			return 0
		}
	}
}

// fetchDir appends the next page of the listing to d.
func (fs *FS) fetchDir(ctx context.Context, d *dirHandle) syscall.Errno {
	after := ""
	if n := len(d.entries); n > 2 {
		after = d.entries[n-1].Name
	}
	resp, err := call(fs, ctx, func(ctx context.Context) (*filerpb.ReadDirResponse, error) {
		return fs.api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: d.ino, After: after, Limit: dirPage, WithAttrs: d.plus})
	})
	if err != nil {
		return toErrno(err)
	}
	for _, e := range resp.Entries {
		de := DirEntry{Name: e.Name, Ino: e.Inode, Mode: e.Type, Off: uint64(len(d.entries)) + 1}
		if d.plus && e.Attr != nil {
			a := attrFromPB(e.Attr)
			fs.meta.putAttr(a)
			a = fs.overlay(a)
			de.Attr = &a
		}
		d.entries = append(d.entries, de)
	}
	d.eof = resp.Eof || len(resp.Entries) == 0
	if d.eof {
		// The whole listing: the cache can answer lookups of missing
		// names in this directory too, unless it changed meanwhile.
		names := make(map[string]uint64, len(d.entries)-2)
		for _, e := range d.entries[2:] {
			names[e.Name] = e.Ino
		}
		fs.meta.setListing(d.ino, names, d.since)
	}
	return 0
}
