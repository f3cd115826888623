package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const testFid = "3,01637037d6"

// recorded is one request as an httptest server saw it.
type recorded struct {
	Method, Path, RawQuery string
	Query                  url.Values
	Header                 http.Header
	Body                   []byte
}

// recorder is an httptest server that records requests and answers them
// with reply.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newRecorder(t *testing.T, reply http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{
			Method: req.Method, Path: req.URL.Path, RawQuery: req.URL.RawQuery,
			Query: req.URL.Query(), Header: req.Header.Clone(), Body: body,
		})
		r.mu.Unlock()
		reply(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

func (r *recorder) only(t *testing.T) recorded {
	t.Helper()
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

func writeJSONReply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func newTestBlobs(t *testing.T) *BlobClient {
	t.Helper()
	b := NewBlobClient(BlobClientConfig{Timeout: 30 * time.Second})
	t.Cleanup(b.Close)
	return b
}

// deadHost returns the address of an HTTP server that has been closed.
func deadHost(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	return host
}

func TestUploadSendsPUT(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSONReply(w, http.StatusCreated, map[string]any{"name": "cat.jpg", "size": 11, "eTag": "abcd1234"})
	})
	b := newTestBlobs(t)
	data := []byte("hello world")
	res, err := b.Upload(context.Background(), rec.host(), testFid, data, UploadOptions{
		Name: "cat & dog.jpg", Mime: "image/jpeg", TTL: "3d", LastModified: 1700000000, Replicate: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res != (UploadResult{Name: "cat.jpg", Size: 11, ETag: "abcd1234"}) {
		t.Errorf("result = %+v", res)
	}
	got := rec.only(t)
	if got.Method != http.MethodPut {
		t.Errorf("method = %s, want PUT", got.Method)
	}
	if got.Path != "/"+testFid {
		t.Errorf("path = %q, want /%s", got.Path, testFid)
	}
	for k, want := range map[string]string{"name": "cat & dog.jpg", "ttl": "3d", "ts": "1700000000", "type": "replicate"} {
		if v := got.Query.Get(k); v != want {
			t.Errorf("query %s = %q, want %q (raw %q)", k, v, want, got.RawQuery)
		}
	}
	if len(got.Query) != 4 {
		t.Errorf("query has extra params: %q", got.RawQuery)
	}
	if ct := got.Header.Get("Content-Type"); ct != "image/jpeg" {
		t.Errorf("Content-Type = %q, want image/jpeg", ct)
	}
	if !bytes.Equal(got.Body, data) {
		t.Errorf("body = %q, want %q", got.Body, data)
	}
	if cl := got.Header.Get("Content-Length"); cl != "" && cl != "11" {
		t.Errorf("Content-Length = %s", cl)
	}
}

func TestUploadWithoutOptions(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSONReply(w, http.StatusOK, map[string]any{"size": 0, "eTag": "00000000"})
	})
	b := newTestBlobs(t)
	res, err := b.Upload(context.Background(), rec.host(), testFid, nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ETag != "00000000" || res.Size != 0 {
		t.Errorf("result = %+v", res)
	}
	got := rec.only(t)
	if got.RawQuery != "" {
		t.Errorf("query = %q, want none", got.RawQuery)
	}
	if ct := got.Header.Get("Content-Type"); ct != "" {
		t.Errorf("Content-Type = %q, want none", ct)
	}
	if len(got.Body) != 0 {
		t.Errorf("body = %q, want empty", got.Body)
	}
}

func TestUploadErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		code int
		want error
	}{
		{http.StatusNotFound, ErrNotFound},
		{http.StatusRequestEntityTooLarge, ErrInvalid},
		{http.StatusBadRequest, ErrInvalid},
		{http.StatusServiceUnavailable, ErrUnavailable},
		{http.StatusBadGateway, ErrUnavailable},
		{http.StatusGatewayTimeout, ErrUnavailable},
		{http.StatusInsufficientStorage, ErrNoSpace},
		{http.StatusForbidden, ErrPermission},
		{http.StatusUnauthorized, ErrPermission},
		{http.StatusConflict, ErrPrecondition},
		{http.StatusInternalServerError, ErrInternal},
		{http.StatusTeapot, ErrInternal},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			msg := fmt.Sprintf("volume 3 says no (%d)", tc.code)
			rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSONReply(w, tc.code, map[string]string{"error": msg})
			})
			b := newTestBlobs(t)
			res, err := b.Upload(context.Background(), rec.host(), testFid, []byte("x"), UploadOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Upload error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), msg) {
				t.Errorf("error %q lost the server's message", err)
			}
			if !strings.Contains(err.Error(), testFid) || !strings.Contains(err.Error(), rec.host()) {
				t.Errorf("error %q does not name the fid and host", err)
			}
			if res != (UploadResult{}) {
				t.Errorf("result with error = %+v", res)
			}
		})
	}
}

func TestUploadPlainTextError(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "volume is read only", http.StatusConflict)
	})
	_, err := newTestBlobs(t).Upload(context.Background(), rec.host(), testFid, []byte("x"), UploadOptions{})
	if !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), "volume is read only") {
		t.Fatalf("Upload error = %v", err)
	}
}

func TestUploadBadAnswer(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "<html>surprise</html>")
	})
	_, err := newTestBlobs(t).Upload(context.Background(), rec.host(), testFid, []byte("x"), UploadOptions{})
	if !errors.Is(err, ErrInternal) {
		t.Fatalf("Upload with a non-JSON answer: %v, want ErrInternal", err)
	}
}

func TestUploadServerDown(t *testing.T) {
	_, err := newTestBlobs(t).Upload(context.Background(), deadHost(t), testFid, []byte("x"), UploadOptions{})
	if !errors.Is(err, ErrUnavailable) || !IsRetryable(err) {
		t.Fatalf("Upload to a dead server: %v, want retryable ErrUnavailable", err)
	}
}

func TestUploadCanceled(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSONReply(w, http.StatusCreated, map[string]any{"size": 1})
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestBlobs(t).Upload(ctx, rec.host(), testFid, []byte("x"), UploadOptions{})
	if err == nil {
		t.Fatal("Upload with a canceled context succeeded")
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("server got %d requests after cancel", n)
	}
}

func TestGet(t *testing.T) {
	data := []byte("the quick brown fox")
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
	})
	got, err := newTestBlobs(t).Get(context.Background(), rec.host(), testFid)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("Get = %q, want %q", got, data)
	}
	req := rec.only(t)
	if req.Method != http.MethodGet || req.Path != "/"+testFid {
		t.Errorf("request %s %s", req.Method, req.Path)
	}
	if rg := req.Header.Get("Range"); rg != "" {
		t.Errorf("whole-blob Get sent Range %q", rg)
	}
}

func TestGetChunkedAndEmpty(t *testing.T) {
	parts := [][]byte{[]byte("part one, "), []byte("part two")}
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/1,0100000001" {
			w.WriteHeader(http.StatusOK) // empty blob
			return
		}
		for _, p := range parts { // no Content-Length: chunked
			_, _ = w.Write(p)
			w.(http.Flusher).Flush()
		}
	})
	b := newTestBlobs(t)
	got, err := b.Get(context.Background(), rec.host(), testFid)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Join(parts, nil); !bytes.Equal(got, want) {
		t.Errorf("chunked Get = %q, want %q", got, want)
	}
	got, err = b.Get(context.Background(), rec.host(), "1,0100000001")
	if err != nil || len(got) != 0 {
		t.Errorf("empty Get = %q, %v", got, err)
	}
}

// serveBlob answers like a volume server: ranges through http.ServeContent.
func serveBlob(data []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
}

func TestGetRange(t *testing.T) {
	data := []byte("0123456789")
	rec := newRecorder(t, serveBlob(data))
	b := newTestBlobs(t)
	ctx := context.Background()
	for _, tc := range []struct {
		off, n    int64
		wantRange string
		want      string
	}{
		{2, 4, "bytes=2-5", "2345"},
		{0, 1, "bytes=0-0", "0"},
		{9, 1, "bytes=9-9", "9"},
		{7, 100, "bytes=7-106", "789"}, // past the end: the server clips
		{3, math.MaxInt64, fmt.Sprintf("bytes=3-%d", int64(math.MaxInt64-1)), "3456789"},
	} {
		before := len(rec.requests())
		got, err := b.GetRange(ctx, rec.host(), testFid, tc.off, tc.n)
		if err != nil {
			t.Errorf("GetRange(%d, %d): %v", tc.off, tc.n, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("GetRange(%d, %d) = %q, want %q", tc.off, tc.n, got, tc.want)
		}
		reqs := rec.requests()
		if len(reqs) != before+1 {
			t.Fatalf("GetRange made %d requests", len(reqs)-before)
		}
		if rg := reqs[before].Header.Get("Range"); rg != tc.wantRange {
			t.Errorf("GetRange(%d, %d) sent Range %q, want %q", tc.off, tc.n, rg, tc.wantRange)
		}
	}
}

func TestGetRangeStatus206Accepted(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "bytes=4-6" {
			http.Error(w, "unexpected range "+r.Header.Get("Range"), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Range", "bytes 4-6/10")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "456")
	})
	got, err := newTestBlobs(t).GetRange(context.Background(), rec.host(), testFid, 4, 3)
	if err != nil || string(got) != "456" {
		t.Fatalf("GetRange = %q, %v", got, err)
	}
}

func TestGetRangeServerIgnoresRange(t *testing.T) {
	data := []byte("0123456789")
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(data) // 200 with the whole blob
	})
	b := newTestBlobs(t)
	got, err := b.GetRange(context.Background(), rec.host(), testFid, 2, 3)
	if err != nil || string(got) != "234" {
		t.Fatalf("GetRange against a server without ranges = %q, %v; want \"234\"", got, err)
	}
	got, err = b.GetRange(context.Background(), rec.host(), testFid, 8, 10)
	if err != nil || string(got) != "89" {
		t.Fatalf("GetRange past the end = %q, %v; want \"89\"", got, err)
	}
	if _, err := b.GetRange(context.Background(), rec.host(), testFid, 10, 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("GetRange at the end = %v, want ErrInvalid", err)
	}
}

func TestGetRangeInvalidArguments(t *testing.T) {
	rec := newRecorder(t, serveBlob([]byte("abc")))
	b := newTestBlobs(t)
	for _, tc := range []struct{ off, n int64 }{{-1, 1}, {0, 0}, {0, -5}} {
		if _, err := b.GetRange(context.Background(), rec.host(), testFid, tc.off, tc.n); !errors.Is(err, ErrInvalid) {
			t.Errorf("GetRange(%d, %d) = %v, want ErrInvalid", tc.off, tc.n, err)
		}
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("invalid ranges reached the server %d times", n)
	}
}

func TestGetErrors(t *testing.T) {
	for _, tc := range []struct {
		code int
		want error
	}{
		{http.StatusNotFound, ErrNotFound},
		{http.StatusRequestedRangeNotSatisfiable, ErrInvalid},
		{http.StatusServiceUnavailable, ErrUnavailable},
		{http.StatusInternalServerError, ErrInternal},
	} {
		msg := fmt.Sprintf("blob trouble %d", tc.code)
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSONReply(w, tc.code, map[string]string{"error": msg})
		})
		_, err := newTestBlobs(t).Get(context.Background(), rec.host(), testFid)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), msg) {
			t.Errorf("Get with HTTP %d = %v, want %v with %q", tc.code, err, tc.want, msg)
		}
	}
	// A range past the end of a real blob.
	rec := newRecorder(t, serveBlob([]byte("abc")))
	if _, err := newTestBlobs(t).GetRange(context.Background(), rec.host(), testFid, 5, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("GetRange past the end = %v, want ErrInvalid", err)
	}
	if _, err := newTestBlobs(t).Get(context.Background(), deadHost(t), testFid); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get from a dead server = %v, want ErrUnavailable", err)
	}
}

func TestGetTruncatedBody(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "only ten b")
		// Returning early closes the connection: the body is cut short.
	})
	if _, err := newTestBlobs(t).Get(context.Background(), rec.host(), testFid); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with a short body = %v, want ErrUnavailable", err)
	}
}

func TestBlobDelete(t *testing.T) {
	for _, code := range []int{http.StatusOK, http.StatusAccepted, http.StatusNoContent} {
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
		b := newTestBlobs(t)
		if err := b.Delete(context.Background(), rec.host(), testFid, false); err != nil {
			t.Errorf("Delete with HTTP %d: %v", code, err)
		}
		if err := b.Delete(context.Background(), rec.host(), testFid, true); err != nil {
			t.Errorf("Delete with HTTP %d: %v", code, err)
		}
		reqs := rec.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2", len(reqs))
		}
		for _, r := range reqs {
			if r.Method != http.MethodDelete || r.Path != "/"+testFid {
				t.Errorf("request %s %s", r.Method, r.Path)
			}
		}
		if reqs[0].RawQuery != "" {
			t.Errorf("non-replicate delete sent query %q", reqs[0].RawQuery)
		}
		if reqs[1].Query.Get("type") != "replicate" {
			t.Errorf("replicate delete sent query %q", reqs[1].RawQuery)
		}
	}
}

func TestBlobDeleteErrors(t *testing.T) {
	for _, tc := range []struct {
		code int
		want error
	}{
		{http.StatusNotFound, ErrNotFound},
		{http.StatusServiceUnavailable, ErrUnavailable},
		{http.StatusBadRequest, ErrInvalid},
	} {
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSONReply(w, tc.code, map[string]string{"error": "delete refused"})
		})
		err := newTestBlobs(t).Delete(context.Background(), rec.host(), testFid, false)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "delete refused") {
			t.Errorf("Delete with HTTP %d = %v, want %v", tc.code, err, tc.want)
		}
	}
	if err := newTestBlobs(t).Delete(context.Background(), deadHost(t), testFid, false); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Delete on a dead server = %v, want ErrUnavailable", err)
	}
}

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("x: %w", ErrInvalid), false},
		{fmt.Errorf("x: %w", ErrPermission), false},
		{fmt.Errorf("x: %w", context.Canceled), false},
		{fmt.Errorf("x: %w", ErrNotFound), true},
		{fmt.Errorf("x: %w", ErrUnavailable), true},
		{fmt.Errorf("x: %w", ErrInternal), true},
		{fmt.Errorf("x: %w", ErrNoSpace), true},
		{context.DeadlineExceeded, true},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
