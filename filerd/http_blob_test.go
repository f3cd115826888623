package filerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// assignLog is httpFakeMaster keeping the Assign requests it answers.
type assignLog struct {
	*httpFakeMaster
	mu   sync.Mutex
	reqs []*masterpb.AssignRequest
}

func (m *assignLog) Assign(ctx context.Context, req *masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
	m.mu.Lock()
	m.reqs = append(m.reqs, req)
	m.mu.Unlock()
	return m.httpFakeMaster.Assign(ctx, req)
}

func (m *assignLog) last(t *testing.T) *masterpb.AssignRequest {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.reqs) == 0 {
		t.Fatal("no Assign request")
	}
	return m.reqs[len(m.reqs)-1]
}

// postBlob writes data through POST /?blob and checks the answer.
func postBlob(t *testing.T, e *httpEnv, data []byte) blobResult {
	t.Helper()
	a := e.do(t, http.MethodPost, "/?blob", bytes.NewReader(data), "Content-Type", "application/octet-stream")
	if a.code != http.StatusCreated {
		t.Fatalf("POST /?blob: %d %s", a.code, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("POST /?blob: Content-Type %q", ct)
	}
	var res blobResult
	if err := json.Unmarshal(a.body, &res); err != nil {
		t.Fatalf("POST /?blob: answer %q: %v", a.body, err)
	}
	if _, err := needle.ParseFileID(res.FileID); err != nil || res.Size != int64(len(data)) || res.ETag != needle.ETag(data) {
		t.Fatalf("POST /?blob of %d bytes: answer %+v", len(data), res)
	}
	return res
}

// TestHTTPBlobRoundTrip: a blob POSTed is in the cluster under the fid the
// answer names, placed with the filer's defaults, and GET /?blob=<fid>
// serves its bytes with the volume servers' ETag.
func TestHTTPBlobRoundTrip(t *testing.T) {
	e := startHTTP(t, func(c *Config) {
		c.DefaultReplication = "001"
		c.Collection = "sync"
	})
	for _, size := range []int{0, 1, 5000, 1 << 20} {
		data := randBytes(t, size)
		res := postBlob(t, e, data)
		if req := e.master.last(t); req.Replication != "001" || req.Collection != "sync" {
			t.Fatalf("assign %+v, want the filer's replication 001 and collection sync", req)
		}
		if !e.vol.has(res.FileID) {
			t.Fatalf("blob %s is not on the volume server", res.FileID)
		}
		g := e.do(t, http.MethodGet, "/?blob="+res.FileID, nil)
		if g.code != http.StatusOK || !bytes.Equal(g.body, data) {
			t.Fatalf("GET /?blob=%s: %d, %d bytes, want %d", res.FileID, g.code, len(g.body), size)
		}
		if ct := g.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Fatalf("GET: Content-Type %q", ct)
		}
		if et := g.header.Get("ETag"); et != `"`+needle.ETag(data)+`"` {
			t.Fatalf("GET: ETag %s, want %q", et, needle.ETag(data))
		}
		if cl := g.header.Get("Content-Length"); cl != strconv.Itoa(size) {
			t.Fatalf("GET: Content-Length %q, want %d", cl, size)
		}
		h := e.do(t, http.MethodHead, "/?blob="+res.FileID, nil)
		if h.code != http.StatusOK || len(h.body) != 0 || h.header.Get("Content-Length") != strconv.Itoa(size) {
			t.Fatalf("HEAD: %d, %d bytes, Content-Length %q", h.code, len(h.body), h.header.Get("Content-Length"))
		}
	}

	// The overrides a PUT takes apply, and a conditional GET is answered.
	data := randBytes(t, 3000)
	a := e.do(t, http.MethodPost, "/?blob&collection=other&replication=010", bytes.NewReader(data))
	if a.code != http.StatusCreated {
		t.Fatalf("POST with overrides: %d %s", a.code, a.body)
	}
	if req := e.master.last(t); req.Replication != "010" || req.Collection != "other" {
		t.Fatalf("assign %+v, want the request's replication and collection", req)
	}
	var res blobResult
	if err := json.Unmarshal(a.body, &res); err != nil {
		t.Fatal(err)
	}
	etag := `"` + needle.ETag(data) + `"`
	if c := e.do(t, http.MethodGet, "/?blob="+res.FileID, nil, "If-None-Match", etag); c.code != http.StatusNotModified {
		t.Fatalf("GET If-None-Match: %d", c.code)
	}
	if r := e.do(t, http.MethodGet, "/?blob="+res.FileID, nil, "Range", "bytes=10-19"); r.code != http.StatusPartialContent || !bytes.Equal(r.body, data[10:20]) {
		t.Fatalf("GET Range: %d %q", r.code, r.body)
	}
}

// TestHTTPBlobReadsFileChunks: the chunks of a file written by PUT read
// back by fid (what filer.sync fetches through the proxy).
func TestHTTPBlobReadsFileChunks(t *testing.T) {
	e := startHTTP(t, nil)
	data := randBytes(t, 2<<20+100)
	e.put(t, "/f.bin", data)
	c, err := e.srv.Namespace().GetContent(context.Background(), mustResolve(t, e, "/f.bin").Inode)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Chunks) != 3 {
		t.Fatalf("%d chunks, want 3", len(c.Chunks))
	}
	for _, ch := range c.Chunks {
		g := e.do(t, http.MethodGet, "/?blob="+ch.FileID, nil)
		if g.code != http.StatusOK || !bytes.Equal(g.body, data[ch.Offset:ch.Offset+ch.Size]) {
			t.Fatalf("chunk %s at %d: %d, %d bytes", ch.FileID, ch.Offset, g.code, len(g.body))
		}
		if et := g.header.Get("ETag"); et != `"`+ch.ETag+`"` {
			t.Fatalf("chunk %s: ETag %s, the chunk records %q", ch.FileID, et, ch.ETag)
		}
	}
}

func TestHTTPBlobErrors(t *testing.T) {
	e := startHTTP(t, nil) // 1 MiB chunks
	e.put(t, "/file", []byte("x"))
	missingKey := needle.FileID{VolumeID: 1, Key: 1 << 40, Cookie: 0x12345678}.String()
	missingVolume := needle.FileID{VolumeID: 9, Key: 1, Cookie: 0x12345678}.String()
	_, putsBefore, _ := e.vol.stats()
	for _, tc := range []struct {
		method, path string
		body         io.Reader
		code         int
	}{
		{"GET", "/?blob=" + missingKey, nil, 404},
		{"GET", "/?blob=" + missingVolume, nil, 404},
		{"HEAD", "/?blob=" + missingKey, nil, 404},
		{"GET", "/?blob", nil, 400},
		{"GET", "/?blob=", nil, 400},
		{"GET", "/?blob=nonsense", nil, 400},
		{"GET", "/?blob=3", nil, 400},
		{"GET", "/?blob=3,zz12345678", nil, 400},
		{"GET", "/?blob=x,0112345678", nil, 400},
		{"POST", "/?blob=1,0112345678", strings.NewReader("x"), 400},
		{"POST", "/?blob&replication=9z", strings.NewReader("x"), 400},
		{"POST", "/?blob&ttl=forever", strings.NewReader("x"), 400},
		{"PUT", "/?blob", strings.NewReader("x"), 405},
		{"DELETE", "/?blob=" + missingVolume, nil, 404},
		{"DELETE", "/?blob", nil, 400},
		{"DELETE", "/?blob=nonsense", nil, 400},
		{"PATCH", "/?blob", nil, 405},
		{"POST", "/?blob", bytes.NewReader(make([]byte, 1<<20+1)), 413},
		// No Content-Length: the body is cut off at the chunk size.
		{"POST", "/?blob", io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), strings.NewReader("!")), 413},
	} {
		what := tc.method + " " + tc.path
		if tc.method == "HEAD" {
			if a := e.do(t, tc.method, tc.path, nil); a.code != tc.code {
				t.Fatalf("%s: %d, want %d", what, a.code, tc.code)
			}
			continue
		}
		a := e.do(t, tc.method, tc.path, tc.body)
		wantError(t, what, a, tc.code)
		if tc.code == 405 && a.header.Get("Allow") != "GET, HEAD, POST, DELETE" {
			t.Fatalf("%s: Allow %q", what, a.header.Get("Allow"))
		}
	}
	if _, puts, _ := e.vol.stats(); puts != putsBefore {
		t.Fatalf("refused requests wrote %d blobs", puts-putsBefore)
	}
	// A whole chunk is not too large.
	postBlob(t, e, randBytes(t, 1<<20))

	// Volume servers failing: 503, as for file requests.
	e.vol.mu.Lock()
	e.vol.failGet = true
	e.vol.failPutAt = e.vol.puts + 1
	e.vol.mu.Unlock()
	fid := needle.FileID{VolumeID: 1, Key: 1, Cookie: 0x12345678}.String()
	wantError(t, "GET with a failing volume server", e.do(t, http.MethodGet, "/?blob="+fid, nil), http.StatusServiceUnavailable)
	wantError(t, "POST with a failing volume server", e.do(t, http.MethodPost, "/?blob", strings.NewReader("x")), http.StatusServiceUnavailable)
}

// TestHTTPBlobDelete: DELETE /?blob=<fid> removes a blob written through
// the proxy from its volume server and leaves the others; the blob reads
// 404 after.
func TestHTTPBlobDelete(t *testing.T) {
	e := startHTTP(t, nil)
	gone, kept := postBlob(t, e, randBytes(t, 5000)), postBlob(t, e, randBytes(t, 300))
	blobsBefore, _, _ := e.vol.stats()
	if a := e.do(t, http.MethodDelete, "/?blob="+gone.FileID, nil); a.code != http.StatusNoContent || len(a.body) != 0 {
		t.Fatalf("DELETE /?blob=%s: %d %q", gone.FileID, a.code, a.body)
	}
	if blobs, _, _ := e.vol.stats(); e.vol.has(gone.FileID) || !e.vol.has(kept.FileID) || blobs != blobsBefore-1 {
		t.Fatalf("after DELETE: %d blobs (had %d), deleted one there: %v, the other: %v", blobs, blobsBefore,
			e.vol.has(gone.FileID), e.vol.has(kept.FileID))
	}
	wantError(t, "GET of a deleted blob", e.do(t, http.MethodGet, "/?blob="+gone.FileID, nil), http.StatusNotFound)
	if g := e.do(t, http.MethodGet, "/?blob="+kept.FileID, nil); g.code != http.StatusOK || int64(len(g.body)) != kept.Size {
		t.Fatalf("GET of the blob kept: %d, %d bytes", g.code, len(g.body))
	}
}

// TestHTTPBlobLeavesFilesAlone: without ?blob on the root path every
// request is a file request as before.
func TestHTTPBlobLeavesFilesAlone(t *testing.T) {
	e := startHTTP(t, nil)
	e.put(t, "/blob", []byte("a file named blob"))
	e.put(t, "/d/blob", []byte("another"))
	res := postBlob(t, e, []byte("a blob"))

	type listing struct {
		Path    string
		Entries []struct{ FullPath string }
	}
	for _, tc := range []struct {
		path  string
		hdr   []string
		names []string
	}{
		{"/", []string{"Accept", "application/json"}, []string{"/blob", "/d"}},
		{"/?format=json", nil, []string{"/blob", "/d"}},
		{"/d/?blob=" + res.FileID, []string{"Accept", "application/json"}, []string{"/d/blob"}},
	} {
		a := e.do(t, http.MethodGet, tc.path, nil, tc.hdr...)
		if a.code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", tc.path, a.code, a.body)
		}
		var l listing
		if err := json.Unmarshal(a.body, &l); err != nil {
			t.Fatalf("GET %s: not a JSON listing: %v\n%s", tc.path, err, a.body)
		}
		var got []string
		for _, en := range l.Entries {
			got = append(got, en.FullPath)
		}
		if strings.Join(got, " ") != strings.Join(tc.names, " ") {
			t.Fatalf("GET %s lists %v, want %v", tc.path, got, tc.names)
		}
	}
	if a := e.do(t, http.MethodGet, "/", nil); a.code != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / (HTML): %d %q", a.code, a.header.Get("Content-Type"))
	}
	for path, want := range map[string]string{"/blob": "a file named blob", "/blob?blob=" + res.FileID: "a file named blob", "/d/blob": "another"} {
		if a := e.do(t, http.MethodGet, path, nil); a.code != http.StatusOK || string(a.body) != want {
			t.Fatalf("GET %s: %d %q", path, a.code, a.body)
		}
	}
	// A file PUT whose query says blob is still a file PUT.
	e.put(t, "/d/x?blob", []byte("file"))
	if a := e.do(t, http.MethodGet, "/d/x", nil); string(a.body) != "file" {
		t.Fatalf("GET /d/x: %d %q", a.code, a.body)
	}
}

// TestFilerBlobsAgainstFiler runs client.FilerBlobs against a real filer.
func TestFilerBlobsAgainstFiler(t *testing.T) {
	e := startHTTP(t, nil) // 1 MiB chunks
	fb := client.NewFilerBlobs(e.srv.HTTPAddr(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	data := randBytes(t, 700<<10)
	fid, etag, err := fb.Write(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if etag != needle.ETag(data) || !e.vol.has(fid) {
		t.Fatalf("Write: fid %s etag %s", fid, etag)
	}
	got, err := fb.Read(ctx, fid)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Read: %d bytes, %v", len(got), err)
	}
	missing := needle.FileID{VolumeID: 1, Key: 1 << 40, Cookie: 1}.String()
	if _, err := fb.Read(ctx, missing); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Read of a missing blob: %v, want ErrNotFound", err)
	}
	if _, _, err := fb.Write(ctx, make([]byte, 1<<20+1)); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("Write over the chunk size: %v, want ErrInvalid", err)
	}
	// The connection the 413 may have closed is not needed again.
	if _, _, err := fb.Write(ctx, []byte("after")); err != nil {
		t.Fatalf("Write after a 413: %v", err)
	}
	if err := fb.Delete(ctx, fid); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if e.vol.has(fid) {
		t.Fatalf("Delete: %s is still on the volume server", fid)
	}
	if _, err := fb.Read(ctx, fid); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Read of a deleted blob: %v, want ErrNotFound", err)
	}
	missingVolume := needle.FileID{VolumeID: 9, Key: 1, Cookie: 1}.String()
	if err := fb.Delete(ctx, missingVolume); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Delete in a volume that does not exist: %v, want ErrNotFound", err)
	}
}
