package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// fakeFilerBlobs is a filer's blob proxy: GET /?blob=<fid>, POST /?blob,
// DELETE /?blob=<fid>.
type fakeFilerBlobs struct {
	srv *httptest.Server

	mu     sync.Mutex
	blobs  map[string][]byte
	next   uint64
	answer func(w http.ResponseWriter) bool // if set and true, it answered instead
}

func newFakeFilerBlobs(t *testing.T) *fakeFilerBlobs {
	f := &fakeFilerBlobs{blobs: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFilerBlobs) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":%q}`, msg)
	}
	if f.answer != nil && f.answer(w) {
		return
	}
	q := r.URL.Query()
	if r.URL.Path != "/" || !q.Has("blob") {
		fail(http.StatusBadRequest, "not a blob request: "+r.URL.String())
		return
	}
	switch r.Method {
	case http.MethodGet:
		b, ok := f.blobs[q.Get("blob")]
		if !ok {
			fail(http.StatusNotFound, "read blob: not found")
			return
		}
		w.Header().Set("ETag", `"`+needle.ETag(b)+`"`)
		w.Write(b)
	case http.MethodPost:
		if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
			fail(http.StatusBadRequest, "Content-Type "+ct)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1000))
		if err != nil {
			fail(http.StatusRequestEntityTooLarge, err.Error())
			return
		}
		f.next++
		fid := needle.FileID{VolumeID: 7, Key: f.next, Cookie: 0xabcdef01}.String()
		f.blobs[fid] = b
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"fid": fid, "eTag": needle.ETag(b), "size": len(b)})
	case http.MethodDelete:
		if _, ok := f.blobs[q.Get("blob")]; !ok {
			fail(http.StatusNotFound, "delete blob: not found")
			return
		}
		delete(f.blobs, q.Get("blob"))
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(http.StatusMethodNotAllowed, r.Method)
	}
}

func (f *fakeFilerBlobs) setAnswer(a func(w http.ResponseWriter) bool) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

func TestFilerBlobsRoundTrip(t *testing.T) {
	f := newFakeFilerBlobs(t)
	ctx := context.Background()
	for _, addr := range []string{strings.TrimPrefix(f.srv.URL, "http://"), f.srv.URL, f.srv.URL + "/"} {
		fb := NewFilerBlobs(addr, nil)
		for _, data := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("kelp"), 250)} {
			fid, etag, err := fb.Write(ctx, data)
			if err != nil {
				t.Fatalf("%s: Write %d bytes: %v", addr, len(data), err)
			}
			if etag != needle.ETag(data) {
				t.Fatalf("Write: etag %q, want %q", etag, needle.ETag(data))
			}
			got, err := fb.Read(ctx, fid)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Read %s: %q, %v", fid, got, err)
			}
		}
	}
}

// TestFilerBlobsDelete: a blob deleted is gone from the filer and reads
// ErrNotFound; deleting it again, or a malformed fid, is an error of its
// kind; other blobs stay.
func TestFilerBlobsDelete(t *testing.T) {
	f := newFakeFilerBlobs(t)
	ctx := context.Background()
	fb := NewFilerBlobs(f.srv.URL, nil)
	gone, _, err := fb.Write(ctx, []byte("to delete"))
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := fb.Write(ctx, []byte("to keep"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fb.Delete(ctx, gone); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := fb.Read(ctx, gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read of a deleted blob: %v, want ErrNotFound", err)
	}
	if got, err := fb.Read(ctx, kept); err != nil || string(got) != "to keep" {
		t.Fatalf("Read of the other blob: %q, %v", got, err)
	}
	if err := fb.Delete(ctx, gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete again: %v, want ErrNotFound", err)
	} else if !strings.Contains(err.Error(), "delete blob: not found") {
		t.Fatalf("error %q lacks the filer's message", err)
	}
	if err := fb.Delete(ctx, "7,zz"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Delete of a malformed fid: %v, want ErrInvalid", err)
	}
	f.setAnswer(func(w http.ResponseWriter) bool {
		http.Error(w, `{"error":"no volume server"}`, http.StatusServiceUnavailable)
		return true
	})
	if err := fb.Delete(ctx, kept); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Delete with the filer's volume servers down: %v, want ErrUnavailable", err)
	}
}

func TestFilerBlobsErrors(t *testing.T) {
	f := newFakeFilerBlobs(t)
	ctx := context.Background()
	fb := NewFilerBlobs(f.srv.URL, nil)

	if _, err := fb.Read(ctx, "7,0100000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read of a missing blob: %v, want ErrNotFound", err)
	} else if !strings.Contains(err.Error(), "read blob: not found") {
		t.Fatalf("error %q lacks the filer's message", err)
	}
	for _, fid := range []string{"", "nonsense", "7", "7,zz", "7,01/../x"} {
		if _, err := fb.Read(ctx, fid); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Read(%q): %v, want ErrInvalid", fid, err)
		}
	}
	if _, _, err := fb.Write(ctx, make([]byte, 1001)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Write over the limit: %v, want ErrInvalid (413)", err)
	}

	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter) bool
		want   error
	}{
		{"503", func(w http.ResponseWriter) bool {
			http.Error(w, `{"error":"no volume server"}`, http.StatusServiceUnavailable)
			return true
		}, ErrUnavailable},
		{"507", func(w http.ResponseWriter) bool {
			http.Error(w, `{"error":"full"}`, http.StatusInsufficientStorage)
			return true
		}, ErrNoSpace},
		{"500", func(w http.ResponseWriter) bool {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}, ErrInternal},
		{"garbage 201", func(w http.ResponseWriter) bool {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, "not json")
			return true
		}, ErrInternal},
		{"201 without a fid", func(w http.ResponseWriter) bool {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"eTag":"00000000","size":1}`)
			return true
		}, ErrInternal},
		{"201 with the wrong size", func(w http.ResponseWriter) bool {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"fid":"7,0100000000","eTag":"00000000","size":2}`)
			return true
		}, ErrInternal},
	} {
		f.setAnswer(tc.answer)
		if _, _, err := fb.Write(ctx, []byte("x")); !errors.Is(err, tc.want) {
			t.Fatalf("%s: Write: %v, want %v", tc.name, err, tc.want)
		}
		if strings.HasPrefix(tc.name, "5") {
			if _, err := fb.Read(ctx, "7,0100000000"); !errors.Is(err, tc.want) {
				t.Fatalf("%s: Read: %v, want %v", tc.name, err, tc.want)
			}
		}
	}
	f.setAnswer(nil)

	// A filer that is not there is unavailable.
	gone := httptest.NewServer(http.NotFoundHandler())
	addr := gone.URL
	gone.Close()
	if _, err := NewFilerBlobs(addr, nil).Read(ctx, "7,0100000000"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read from a closed port: %v, want ErrUnavailable", err)
	}
}

func TestFilerBlobsTimeouts(t *testing.T) {
	f := newFakeFilerBlobs(t)
	release := make(chan struct{})
	defer close(release)
	f.setAnswer(func(http.ResponseWriter) bool { <-release; return true })

	// The caller's context: its own error, not a sentinel of ours.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewFilerBlobs(f.srv.URL, nil).Read(ctx, "7,0100000000"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a canceled context: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := NewFilerBlobs(f.srv.URL, nil).Write(ctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Fatalf("Write past the context's deadline: %v", err)
	}
	// The http.Client's own timeout: ErrTimeout.
	fb := NewFilerBlobs(f.srv.URL, &http.Client{Timeout: 50 * time.Millisecond})
	if _, err := fb.Read(context.Background(), "7,0100000000"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read past the client's timeout: %v, want ErrTimeout", err)
	}
}
