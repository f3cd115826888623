package mount

import (
	"context"
	"errors"
	"syscall"

	"github.com/kelpfs/kelp/client"
)

// errnoNames maps the errno names a filer sends to values.
var errnoNames = map[string]syscall.Errno{
	"ENOENT": syscall.ENOENT, "EEXIST": syscall.EEXIST, "ENOTEMPTY": syscall.ENOTEMPTY,
	"ENOTDIR": syscall.ENOTDIR, "EISDIR": syscall.EISDIR, "ENAMETOOLONG": syscall.ENAMETOOLONG,
	"EINVAL": syscall.EINVAL, "ELOOP": syscall.ELOOP, "ENODATA": syscall.ENODATA, "E2BIG": syscall.E2BIG,
	"EPERM": syscall.EPERM, "EACCES": syscall.EACCES, "EXDEV": syscall.EXDEV, "ESTALE": syscall.ESTALE,
	"EIO": syscall.EIO, "ENOSPC": syscall.ENOSPC, "EFBIG": syscall.EFBIG, "ERANGE": syscall.ERANGE,
	"EBUSY": syscall.EBUSY, "EMLINK": syscall.EMLINK, "EROFS": syscall.EROFS, "ENOTSUP": syscall.ENOTSUP,
	"EOPNOTSUPP": syscall.EOPNOTSUPP, "EAGAIN": syscall.EAGAIN, "EDEADLK": syscall.EDEADLK,
	"EINTR": syscall.EINTR, "EBADF": syscall.EBADF, "ENXIO": syscall.ENXIO, "ENOSYS": syscall.ENOSYS,
}

// toErrno turns an error of a filer or volume call into the errno a
// POSIX program expects: the filer's own errno when it sent one, EINTR
// for an interrupted call, EIO for everything else (a cluster that cannot
// be reached is an I/O error to the application).
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if name := client.PosixErrno(err); name != "" {
		if e, ok := errnoNames[name]; ok {
			return e
		}
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, client.ErrCanceled):
		return syscall.EINTR
	case errors.Is(err, client.ErrNoSpace):
		return syscall.ENOSPC
	}
	return syscall.EIO
}
