package filerd

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/filerd/store"
)

// errorTable is the one translation of namespace and store errors to a
// gRPC code and an errno name (carried in a filerpb.PosixError detail).
// The first matching row wins, so meta's sentinels come before the store
// errors they may wrap.
var errorTable = []struct {
	err   error
	code  codes.Code
	errno string
}{
	{meta.ErrNotFound, codes.NotFound, "ENOENT"},
	{meta.ErrExists, codes.AlreadyExists, "EEXIST"},
	{meta.ErrNotEmpty, codes.FailedPrecondition, "ENOTEMPTY"},
	{meta.ErrNotDir, codes.FailedPrecondition, "ENOTDIR"},
	{meta.ErrIsDir, codes.FailedPrecondition, "EISDIR"},
	{meta.ErrNameTooLong, codes.InvalidArgument, "ENAMETOOLONG"},
	{meta.ErrInvalid, codes.InvalidArgument, "EINVAL"},
	{meta.ErrLoop, codes.InvalidArgument, "ELOOP"},
	{meta.ErrNoAttr, codes.NotFound, "ENODATA"},
	{meta.ErrXattrTooBig, codes.InvalidArgument, "E2BIG"},
	{meta.ErrPermission, codes.PermissionDenied, "EPERM"},
	{meta.ErrCrossDevice, codes.InvalidArgument, "EXDEV"},
	{meta.ErrStale, codes.NotFound, "ESTALE"},
	{meta.ErrCorrupt, codes.DataLoss, "EIO"},
	{meta.ErrLogTrimmed, codes.FailedPrecondition, ""},
	{store.ErrNoSpace, codes.ResourceExhausted, "ENOSPC"},
	{store.ErrTooBig, codes.InvalidArgument, "E2BIG"},
	{store.ErrConflict, codes.Aborted, "EIO"},
	{store.ErrClosed, codes.Unavailable, "EIO"},
	{store.ErrReadOnly, codes.Internal, "EIO"},
	{context.Canceled, codes.Canceled, ""},
	{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
	{ErrClosed, codes.Unavailable, "EIO"},
}

// grpcError turns an error of an operation into a gRPC status error: a
// row of errorTable (with its errno as a PosixError detail), else a client
// error from a call passed through to the master (client.ToStatus), else
// Internal with EIO.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return withErrno(row.code, err.Error(), row.errno)
		}
	}
	if isClientError(err) {
		return client.ToStatus(err)
	}
	return withErrno(codes.Internal, err.Error(), "EIO")
}

// withErrno builds a status error with an optional errno detail.
func withErrno(code codes.Code, msg, errno string) error {
	st := status.New(code, msg)
	if errno == "" {
		return st.Err()
	}
	if d, err := st.WithDetails(&filerpb.PosixError{Errno: errno}); err == nil {
		st = d
	}
	return st.Err()
}

func isClientError(err error) bool {
	for _, e := range []error{client.ErrNotFound, client.ErrExists, client.ErrInvalid, client.ErrUnavailable,
		client.ErrNoSpace, client.ErrPermission, client.ErrPrecondition, client.ErrTimeout, client.ErrCanceled,
		client.ErrInternal} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
