package mount

import (
	"context"
	"syscall"
)

// Lseek whence values the kernel forwards.
const (
	SeekData = 3
	SeekHole = 4
)

// Lseek finds the next data (SeekData) or hole (SeekHole) at or after
// off; ENXIO past the end, or when no data follows off.
func (fs *FS) Lseek(ctx context.Context, fh uint64, off int64, whence uint32) (int64, syscall.Errno) {
	h := fs.handle(fh)
	if h == nil {
		return 0, syscall.EBADF
	}
	f := h.f
	if errno := f.reload(ctx, false); errno != 0 {
		return 0, errno
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= f.size {
		return 0, syscall.ENXIO
	}
	data := f.dataSpansLocked()
	switch whence {
	case SeekData:
		for _, s := range data {
			if s.end > off {
				return max(s.start, off), 0
			}
		}
		return 0, syscall.ENXIO
	case SeekHole:
		pos := off
		for _, s := range data {
			if s.start > pos {
				break
			}
			if s.end > pos {
				pos = s.end
			}
		}
		return min(pos, f.size), 0
	}
	return 0, syscall.EINVAL
}

// dataSpansLocked lists the file's written ranges, sorted and merged.
func (f *file) dataSpansLocked() []span {
	var out []span
	if n := int64(len(f.inline)); n > 0 {
		out = addSpan(out, span{0, n})
	}
	for _, iv := range f.intervalsLocked() {
		out = addSpan(out, span{iv.Start, iv.Stop})
	}
	cs := f.fs.cfg.chunkSize()
	for _, s := range f.dirty {
		for _, r := range s.runs {
			out = addSpan(out, span{s.idx*cs + r.start, s.idx*cs + r.end})
		}
	}
	for i := range out {
		out[i].end = min(out[i].end, f.size)
	}
	return out
}

// Fallocate modes fallocate(2) passes.
const (
	FallocKeepSize  = 0x1
	FallocPunchHole = 0x2
	FallocZeroRange = 0x10
)

// Fallocate reserves (mode 0 or KeepSize: the size grows unless
// KeepSize; chunks are written lazily, so nothing else is reserved),
// punches a hole (PunchHole|KeepSize: the range reads as zeros) or zeroes
// a range (ZeroRange, with or without KeepSize: as a punch, and the size
// grows to cover the range unless KeepSize). Holes and zeroed ranges are
// written as zeros, so SEEK_HOLE reports them as data, which POSIX
// allows.
func (fs *FS) Fallocate(ctx context.Context, fh uint64, mode uint32, off, length int64) syscall.Errno {
	if fs.cfg.ReadOnly {
		return syscall.EROFS
	}
	h := fs.handle(fh)
	if h == nil {
		return syscall.EBADF
	}
	if off < 0 || length <= 0 {
		return syscall.EINVAL
	}
	f := h.f
	switch mode {
	case 0, FallocKeepSize:
		if mode == FallocKeepSize {
			return 0
		}
		f.truncMu.RLock()
		defer f.truncMu.RUnlock()
		f.mu.Lock()
		if off+length > f.size {
			f.size = off + length
			f.metaDirty = true
			f.fs.images.resized(f.ino, 0, f.size)
		}
		f.mu.Unlock()
		return 0
	case FallocPunchHole | FallocKeepSize, FallocZeroRange, FallocZeroRange | FallocKeepSize:
		f.mu.Lock()
		end := off + length
		if mode != FallocZeroRange {
			end = min(end, f.size)
		}
		f.mu.Unlock()
		if end <= off {
			return 0 // all past the end: nothing to zero
		}
		zeros := make([]byte, min(end-off, 1<<20))
		for pos := off; pos < end; {
			n := min(int64(len(zeros)), end-pos)
			if errno := f.write(ctx, zeros[:n], pos); errno != 0 {
				return errno
			}
			pos += n
		}
		return 0
	}
	return syscall.EOPNOTSUPP
}

// CopyFileRange copies length bytes from one open file to another through
// the mount's buffers (chunks are immutable, so a server-side copy would
// need shared-chunk accounting the filer does not have yet).
func (fs *FS) CopyFileRange(ctx context.Context, fhIn uint64, offIn int64, fhOut uint64, offOut int64, length int64) (int64, syscall.Errno) {
	in, out := fs.handle(fhIn), fs.handle(fhOut)
	if in == nil || out == nil {
		return 0, syscall.EBADF
	}
	if fs.cfg.ReadOnly {
		return 0, syscall.EROFS
	}
	buf := make([]byte, min(length, 1<<20))
	var done int64
	for done < length {
		n, errno := fs.Read(ctx, fhIn, buf[:min(int64(len(buf)), length-done)], offIn+done)
		if errno != 0 {
			return done, errno
		}
		if n == 0 {
			break
		}
		if errno := out.f.write(ctx, buf[:n], offOut+done); errno != 0 {
			return done, errno
		}
		done += int64(n)
	}
	return done, 0
}
