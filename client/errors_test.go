package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var allSentinels = []struct {
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

func TestStatusRoundTripEverySentinel(t *testing.T) {
	if len(allSentinels) != len(codeOf) {
		t.Fatalf("test knows %d sentinels, codeOf has %d: add the new one here", len(allSentinels), len(codeOf))
	}
	for _, s := range allSentinels {
		t.Run(s.err.Error(), func(t *testing.T) {
			orig := fmt.Errorf("volume 7 on rack r2: %w", s.err)
			st := ToStatus(orig)
			got, ok := status.FromError(st)
			if !ok {
				t.Fatalf("ToStatus(%v) = %v, not a status error", orig, st)
			}
			if got.Code() != s.code {
				t.Errorf("code = %v, want %v", got.Code(), s.code)
			}
			if got.Message() != orig.Error() {
				t.Errorf("status message = %q, want %q", got.Message(), orig.Error())
			}

			back := FromStatus("grow", st)
			if !errors.Is(back, s.err) {
				t.Errorf("FromStatus(ToStatus(%v)) = %v, does not wrap %v", orig, back, s.err)
			}
			for _, other := range allSentinels {
				if other.err != s.err && errors.Is(back, other.err) {
					t.Errorf("round trip of %v also matches %v", s.err, other.err)
				}
			}
			if want := "grow: " + orig.Error(); back.Error() != want {
				t.Errorf("message = %q, want %q", back.Error(), want)
			}
		})
	}
}

func TestToStatusContextErrors(t *testing.T) {
	for _, tc := range []struct {
		err      error
		code     codes.Code
		sentinel error
	}{
		{context.DeadlineExceeded, codes.DeadlineExceeded, ErrTimeout},
		{fmt.Errorf("assign: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ErrTimeout},
		{context.Canceled, codes.Canceled, ErrCanceled},
		{fmt.Errorf("lookup: %w", context.Canceled), codes.Canceled, ErrCanceled},
	} {
		st := ToStatus(tc.err)
		if c := status.Code(st); c != tc.code {
			t.Errorf("ToStatus(%v) code = %v, want %v", tc.err, c, tc.code)
		}
		if msg := status.Convert(st).Message(); msg != tc.err.Error() {
			t.Errorf("ToStatus(%v) message = %q", tc.err, msg)
		}
		if back := FromStatus("call", st); !errors.Is(back, tc.sentinel) {
			t.Errorf("FromStatus(ToStatus(%v)) = %v, want %v", tc.err, back, tc.sentinel)
		}
	}
}

func TestToStatusUnknownErrorIsInternal(t *testing.T) {
	err := fmt.Errorf("disk said: %w", io.ErrUnexpectedEOF)
	st := ToStatus(err)
	if c := status.Code(st); c != codes.Internal {
		t.Fatalf("code = %v, want Internal", c)
	}
	if msg := status.Convert(st).Message(); msg != err.Error() {
		t.Errorf("message = %q, want %q", msg, err.Error())
	}
	if back := FromStatus("call", st); !errors.Is(back, ErrInternal) {
		t.Errorf("FromStatus = %v, want ErrInternal", back)
	}
}

func TestToStatusPassesStatusThrough(t *testing.T) {
	st := status.Error(codes.NotFound, "no such volume 9")
	if got := ToStatus(st); got != st {
		t.Fatalf("ToStatus(status) = %v, want the same error %v", got, st)
	}
	// A status error that happens to carry a sentinel-like message keeps its own code.
	st2 := status.Error(codes.Aborted, ErrNotFound.Error())
	if got := ToStatus(st2); status.Code(got) != codes.Aborted {
		t.Errorf("ToStatus changed code to %v", status.Code(got))
	}
}

func TestNilErrors(t *testing.T) {
	if err := ToStatus(nil); err != nil {
		t.Errorf("ToStatus(nil) = %v", err)
	}
	if err := FromStatus("x", nil); err != nil {
		t.Errorf("FromStatus(nil) = %v", err)
	}
}

func TestFromStatusOtherCodes(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		want error
	}{
		{codes.OutOfRange, ErrInvalid},
		{codes.Unauthenticated, ErrPermission},
		{codes.Aborted, ErrPrecondition},
		{codes.Unknown, ErrInternal},
		{codes.DataLoss, ErrInternal},
		{codes.Unimplemented, ErrInternal},
		{codes.Code(99), ErrInternal},
	} {
		err := FromStatus("op", status.Error(tc.code, "server words"))
		if !errors.Is(err, tc.want) {
			t.Errorf("FromStatus(%v) = %v, want %v", tc.code, err, tc.want)
		}
		if !strings.Contains(err.Error(), "server words") || !strings.HasPrefix(err.Error(), "op: ") {
			t.Errorf("FromStatus(%v) message = %q", tc.code, err.Error())
		}
	}
}

func TestFromStatusNonStatusError(t *testing.T) {
	err := FromStatus("assign", io.ErrClosedPipe)
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("FromStatus(plain) = %v, lost the cause", err)
	}
	if !strings.HasPrefix(err.Error(), "assign: ") {
		t.Errorf("message = %q, want the call named", err.Error())
	}
}
