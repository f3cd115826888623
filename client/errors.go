package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error sentinels shared by every client call. Errors returned by this
// package wrap one of them, with the server's message as context.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalid      = errors.New("invalid argument")
	ErrUnavailable  = errors.New("unavailable")
	ErrNoSpace      = errors.New("no space")
	ErrPermission   = errors.New("permission denied")
	ErrPrecondition = errors.New("failed precondition")
	ErrTimeout      = errors.New("timed out")
	ErrCanceled     = errors.New("canceled")
	ErrInternal     = errors.New("internal error")
)

// codeOf maps sentinels to gRPC codes (servers use it through ToStatus).
var codeOf = []struct {
	err  error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrExists, codes.AlreadyExists},
	{ErrInvalid, codes.InvalidArgument},
	{ErrUnavailable, codes.Unavailable},
	{ErrNoSpace, codes.ResourceExhausted},
	{ErrPermission, codes.PermissionDenied},
	{ErrPrecondition, codes.FailedPrecondition},
	{ErrTimeout, codes.DeadlineExceeded},
	{ErrCanceled, codes.Canceled},
	{ErrInternal, codes.Internal},
}

// sentinelOf maps gRPC codes back to sentinels (clients use it through FromStatus).
var sentinelOf = map[codes.Code]error{
	codes.NotFound:           ErrNotFound,
	codes.AlreadyExists:      ErrExists,
	codes.InvalidArgument:    ErrInvalid,
	codes.OutOfRange:         ErrInvalid,
	codes.Unavailable:        ErrUnavailable,
	codes.ResourceExhausted:  ErrNoSpace,
	codes.PermissionDenied:   ErrPermission,
	codes.Unauthenticated:    ErrPermission,
	codes.FailedPrecondition: ErrPrecondition,
	codes.Aborted:            ErrPrecondition,
	codes.DeadlineExceeded:   ErrTimeout,
	codes.Canceled:           ErrCanceled,
	codes.Internal:           ErrInternal,
	codes.Unknown:            ErrInternal,
	codes.DataLoss:           ErrInternal,
	codes.Unimplemented:      ErrInternal,
}

// ToStatus turns an error wrapping one of this package's sentinels (or a
// context error) into a gRPC status error carrying its message. Other errors
// become codes.Internal.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	for _, m := range codeOf {
		if errors.Is(err, m.err) {
			return status.Error(m.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// FromStatus turns a gRPC error into an error wrapping the matching sentinel,
// keeping the server's message. what names the call for context.
func FromStatus(what string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	sentinel, known := sentinelOf[st.Code()]
	if !known {
		sentinel = ErrInternal
	}
	return &statusError{what: what, msg: st.Message(), sentinel: sentinel}
}

type statusError struct {
	what, msg string
	sentinel  error
}

func (e *statusError) Error() string { return e.what + ": " + e.msg }
func (e *statusError) Unwrap() error { return e.sentinel }
