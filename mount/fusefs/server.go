// Package fusefs serves a mount.FS to the kernel through go-fuse's raw
// API: it decodes each FUSE request, calls the FS and encodes the answer.
// It holds no filesystem state of its own: node ids are the filer's inode
// numbers (the mount root is node 1), so Forget has nothing to do.
//
// Concurrency: go-fuse calls the ops from many goroutines; the FS is safe
// for that. A FUSE interrupt (any signal to the caller) ends only the ops
// that wait for data or buffer space; the others run to their end (see
// opCtx). Mount returns once the kernel has the mount; Unmount (or an
// external umount) ends Serve.
package fusefs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/mount"
)

// Options are how the kernel sees the mount.
type Options struct {
	// AllowOther lets users other than the one mounting use the mount
	// (needs root or user_allow_other in /etc/fuse.conf).
	AllowOther bool
	// FsName is the "device" shown in /proc/mounts; default "kelp".
	FsName string
	// MaxWriteKB is the largest read or write the kernel sends; default
	// 1024 (the most the kernel allows).
	MaxWriteKB int
	// ReadOnly mounts read-only in the kernel as well.
	ReadOnly bool
	// Debug logs every FUSE request.
	Debug bool
	// WritebackCache lets the kernel buffer writes in its page cache and
	// send them later, in larger pieces (FUSE_WRITEBACK_CACHE).
	WritebackCache bool
	// ReadAheadKB is how far the kernel reads ahead of a sequential
	// reader. The kernel caps a FUSE mount at 128 KiB whatever the
	// filesystem asks; as root the mount raises it through sysfs
	// afterwards. 0 leaves the kernel's value.
	ReadAheadKB int
}

// DefaultReadAheadKB: measured on a cold 1 GiB sequential read (2 cores),
// 128 KiB gave ~400 MB/s, 4 MiB ~600, 16 MiB ~780, 32 MiB ~1100.
const DefaultReadAheadKB = 32 << 10

// Mounted is a live mount.
type Mounted struct {
	server *fuse.Server
	dir    string
	done   chan struct{}
}

// Mount mounts fsys on dir and serves it until unmounted. It returns once
// the kernel has the mount.
func Mount(fsys *mount.FS, dir string, opts Options) (*Mounted, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("mount point %s is not a directory", dir)
	}
	if opts.FsName == "" {
		opts.FsName = "kelp"
	}
	if opts.MaxWriteKB <= 0 {
		opts.MaxWriteKB = 1024
	}
	mopts := []string{"default_permissions"}
	if opts.ReadOnly {
		mopts = append(mopts, "ro")
	}
	raw := &rawFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), fs: fsys, root: fsys.Root(), guard: newReplyGuard()}
	cfg := fsys.Config()
	raw.entryTimeout, raw.attrTimeout = cfg.EntryTimeout, cfg.AttrTimeout
	// The kernel applies the umask itself unless told not to, POSIX ACLs
	// or not; but a parent's default ACL replaces the umask, which only
	// the filer knows about, so the mount takes the umask along unapplied.
	// Handles opened for writing do direct IO where the kernel still
	// lets them be mapped (mount.FS.EnableDirectWrites).
	extra := uint64(fuse.CAP_DONT_MASK | fuse.CAP_DIRECT_IO_ALLOW_MMAP)
	// The kernel would drop a file's pages whenever a GETATTR shows an
	// mtime other than the one it set itself at its last write, which is
	// after every write the mount commits: the next read of a file just
	// written went through FUSE again. The mount invalidates pages
	// itself when another client changes a file (the change feed, an
	// open that finds it changed, a lock grant), so it does without.
	disabled := uint64(fuse.CAP_AUTO_INVAL_DATA)
	if opts.WritebackCache {
		extra |= fuse.CAP_WRITEBACK_CACHE
		// The kernel does not pass through with a writeback cache.
		disabled |= fuse.CAP_PASSTHROUGH
	}
	server, err := fuse.NewServer(raw, dir, &fuse.MountOptions{
		ExtraCapabilities:    extra,
		DisabledCapabilities: disabled,
		AllowOther:           opts.AllowOther,
		Options:              mopts,
		MaxWrite:             opts.MaxWriteKB << 10,
		MaxReadAhead:         opts.MaxWriteKB << 10,
		FsName:               opts.FsName,
		Name:                 "kelp",
		Debug:                opts.Debug,
		EnableAcl:            true,
		// flock and fcntl locks go to the filer's lock service, so
		// they hold across every mount of the cluster (locks.go).
		EnableLocks:          true,
		EnableSymlinkCaching: true,
		MaxBackground:        64,
		// As root, mount(2) directly; otherwise (or if that fails)
		// go-fuse falls back to fusermount.
		DirectMount:         os.Geteuid() == 0,
		CongestionThreshold: 48,
		DisableXAttrs:       false,
		// Reads answer from memory: writev copies the bytes once;
		// splicing them through a pipe copies twice (and fails
		// outright past the pipe's 1 MiB).
		DisableSplice:        true,
		IgnoreSecurityLabels: false,
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	raw.server = server
	fsys.SetInvalidator(raw)
	m := &Mounted{server: server, dir: dir, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		server.Serve()
	}()
	if err := server.WaitMount(); err != nil {
		_ = server.Unmount()
		<-m.done
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if !opts.WritebackCache && server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0 {
		fsys.SetBacker(raw)
	}
	// Direct writes need mmap of such handles (6.6) and the kernel to
	// drop cached pages of a range after a direct write of it, which
	// kernels with passthrough (protocol 7.40, Linux 6.9) do.
	if ks := server.KernelSettings(); !opts.WritebackCache && ks.Flags64()&fuse.CAP_DIRECT_IO_ALLOW_MMAP != 0 && ks.Minor >= 40 {
		fsys.EnableDirectWrites()
	}
	if opts.ReadAheadKB > 0 {
		// Best effort: not root, or no sysfs, keeps the kernel's value.
		_ = setReadAhead(dir, opts.ReadAheadKB)
	}
	return m, nil
}

// setReadAhead sets the read-ahead of the mount at dir (its backing
// device info in sysfs, named by the mount's device number).
func setReadAhead(dir string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return fmt.Errorf("read-ahead of %s: %w", dir, err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(kb)), 0); err != nil {
		return fmt.Errorf("read-ahead of %s: %w", dir, err)
	}
	return nil
}

// Dir is the mount point.
func (m *Mounted) Dir() string { return m.dir }

// Done is closed when the kernel has let go of the mount.
func (m *Mounted) Done() <-chan struct{} { return m.done }

// Unmount asks the kernel to unmount, retrying for a few seconds while
// the mount is busy, and waits for serving to end.
func (m *Mounted) Unmount() error {
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		select {
		case <-m.done:
			return nil
		default:
		}
		if err = m.server.Unmount(); err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		// Still busy: detach it lazily, so the mount point does not
		// hang once this process is gone; the kernel finishes the
		// unmount when the last user lets go.
		if derr := syscall.Unmount(m.dir, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", m.dir, err, derr)
		}
	}
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("unmount %s: the kernel did not let go within 10s", m.dir)
	}
	return nil
}

// rawFS adapts mount.FS to fuse.RawFileSystem; ops it does not define
// answer ENOSYS (the default).
type rawFS struct {
	fuse.RawFileSystem
	fs                        *mount.FS
	root                      uint64 // the filer inode shown as node 1
	server                    *fuse.Server
	guard                     *replyGuard
	entryTimeout, attrTimeout time.Duration
}

func (r *rawFS) String() string { return "kelp" }

// ino maps a kernel node id to a filer inode.
func (r *rawFS) ino(node uint64) uint64 {
	if node == fuse.FUSE_ROOT_ID {
		return r.root
	}
	return node
}

// node maps a filer inode to a kernel node id.
func (r *rawFS) node(ino uint64) uint64 {
	if ino == r.root {
		return fuse.FUSE_ROOT_ID
	}
	return ino
}

// InvalidateEntry implements mount.Invalidator.
func (r *rawFS) InvalidateEntry(parent uint64, name string) {
	r.guard.invalidate(r.guard.nameKey(parent, name), func() bool {
		return r.server.EntryNotify(r.node(parent), name) != fuse.ENOENT
	})
}

// InvalidateAttr implements mount.Invalidator: a negative offset leaves
// the page cache alone, so no page lock is taken.
func (r *rawFS) InvalidateAttr(ino uint64) {
	r.guard.invalidate(inodeKey(ino), func() bool {
		return r.server.InodeNotify(r.node(ino), -1, 0) != fuse.ENOENT
	})
}

// InvalidateInode implements mount.Invalidator.
func (r *rawFS) InvalidateInode(ino uint64) {
	r.guard.invalidate(inodeKey(ino), func() bool {
		return r.server.InodeNotify(r.node(ino), 0, 0) != fuse.ENOENT
	})
}

// StoreCache implements mount.Invalidator. An inode the kernel no longer
// holds (ENOENT) has nothing to store into: that is an error too, so the
// mount does not count the pages as cached.
func (r *rawFS) StoreCache(ino uint64, off int64, data []byte) error {
	if st := r.server.InodeNotifyStoreCache(r.node(ino), off, data); !st.Ok() {
		return fmt.Errorf("store %d bytes of inode %d in the page cache: %w", len(data), ino, syscall.Errno(st))
	}
	return nil
}

// Interrupts. The kernel sends FUSE_INTERRUPT for a request whenever the
// calling thread gets a signal it does not ignore (Go programs get SIGURG
// from their own scheduler all the time), and go-fuse then closes the
// request's cancel channel. An EINTR answered because of it reaches the
// program as a failed system call: SA_RESTART does not restart it. So only
// the ops that may wait long for data or buffer space and whose system
// calls allow EINTR (read, write, fallocate, copy_file_range) honour it,
// and only when they are still waiting interruptGrace after it (waitCtx):
// a read of a regular file never fails with EINTR on a local disk, and
// programs count on that, so a signal must not cut short a read that was
// about to finish; one stuck on a cluster that is gone still ends on
// Ctrl-C, within interruptGrace. Every other op runs to its end, bounded by the mount's
// OpTimeout (opCtx): a namespace change the filer may already have made
// must not be reported as not done (the program would retry or give up,
// and the kernel would keep names the filer no longer has), an open would
// leave the filer's handle behind, and stat, lookup, readlink, readdir and
// the rest have no EINTR in POSIX. The cost: a process killed while such an
// op waits on an unreachable filer exits only after OpTimeout (the kernel
// waits for the answer to a request it has sent), as with close(2) already
// (mount's flush ignores interrupts too).

// opCtx is the context of an op an interrupt does not cut short.
func opCtx(h *fuse.InHeader) *fuse.Context {
	return &fuse.Context{Caller: h.Caller}
}

// interruptGrace is how long an interrupted read or write may still take
// before it ends with EINTR.
const interruptGrace = time.Second

// waitCtx is the context of an op an interrupt ends, with EINTR, if it is
// still running interruptGrace later. Call done when the op returns: it
// stops the goroutine that watches for the interrupt.
func waitCtx(h *fuse.InHeader, cancel <-chan struct{}) (ctx *fuse.Context, done func()) {
	ended, stop := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-cancel:
		case <-stop:
			return
		}
		t := time.NewTimer(interruptGrace)
		defer t.Stop()
		select {
		case <-t.C:
			close(ended)
		case <-stop:
		}
	}()
	return &fuse.Context{Caller: h.Caller, Cancel: ended}, func() { close(stop) }
}

func caller(h *fuse.InHeader) mount.Caller {
	return mount.Caller{Uid: h.Uid, Gid: h.Gid, Pid: h.Pid}
}

func status(e syscall.Errno) fuse.Status { return fuse.Status(e) }

func fillAttr(a *mount.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = (a.Size + 511) / 512
	out.Atime, out.Atimensec = uint64(a.Atime/1e9), uint32(a.Atime%1e9)
	out.Mtime, out.Mtimensec = uint64(a.Mtime/1e9), uint32(a.Mtime%1e9)
	out.Ctime, out.Ctimensec = uint64(a.Ctime/1e9), uint32(a.Ctime%1e9)
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Rdev = a.Rdev
	out.Blksize = 4096
}

// fillEntry answers name in parent with a, computed since guard start;
// if either was invalidated meanwhile the kernel is told not to cache it.
func (r *rawFS) fillEntry(start, parent uint64, name string, a *mount.Attr, out *fuse.EntryOut) {
	out.NodeId = r.node(a.Ino)
	out.Generation = 1
	if r.guard.sending(start, r.guard.nameKey(parent, name), inodeKey(a.Ino)) {
		out.SetEntryTimeout(0)
		out.SetAttrTimeout(0)
	} else {
		out.SetEntryTimeout(r.entryTimeout)
		out.SetAttrTimeout(r.attrTimeout)
	}
	fillAttr(a, &out.Attr)
}

// fillNegative answers that name is not in parent.
func (r *rawFS) fillNegative(start, parent uint64, name string, out *fuse.EntryOut) {
	out.NodeId = 0
	if r.guard.sending(start, r.guard.nameKey(parent, name)) {
		out.SetEntryTimeout(0)
	} else {
		out.SetEntryTimeout(r.entryTimeout)
	}
}

func (r *rawFS) fillAttrOut(a *mount.Attr, out *fuse.AttrOut) {
	out.SetTimeout(r.attrTimeout)
	fillAttr(a, &out.Attr)
}
