package filerd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/needle"
)

// httpFakeVolume stands in for a volume server: it keeps PUT bodies in a map
// and serves them with Range. It counts what it serves and fails on demand.
type httpFakeVolume struct {
	mu        sync.Mutex
	blobs     map[string][]byte
	puts      int
	served    int64 // bytes of GET answers
	failPutAt int   // the n-th PUT (1-based) answers 503; 0 never
	failGet   bool
	srv       *httptest.Server
}

func (v *httpFakeVolume) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fid := strings.TrimPrefix(r.URL.Path, "/")
	v.mu.Lock()
	defer v.mu.Unlock()
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		v.puts++
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if v.puts == v.failPutAt {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"injected failure"}`)
			return
		}
		v.blobs[fid] = body
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"size": len(body), "eTag": needle.ETag(body)})
	case http.MethodGet, http.MethodHead:
		if v.failGet {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"injected failure"}`)
			return
		}
		b, ok := v.blobs[fid]
		if !ok {
			http.NotFound(w, r)
			return
		}
		cw := &countingWriter{ResponseWriter: w}
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(b))
		v.served += cw.n
	case http.MethodDelete:
		delete(v.blobs, fid)
		w.WriteHeader(http.StatusAccepted)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (v *httpFakeVolume) stats() (blobs, puts int, served int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.blobs), v.puts, v.served
}

func (v *httpFakeVolume) has(fid string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.blobs[fid]
	return ok
}

// httpFakeMaster assigns increasing keys on volume 1, served by the fake volume.
type httpFakeMaster struct {
	masterpb.UnimplementedMasterServer
	url string
	key atomic.Uint64
}

func (m *httpFakeMaster) loc() *masterpb.Location {
	return &masterpb.Location{Url: m.url, PublicUrl: m.url}
}

func (m *httpFakeMaster) Assign(_ context.Context, req *masterpb.AssignRequest) (*masterpb.AssignResponse, error) {
	n := max(req.Count, 1)
	k := m.key.Add(n) - n + 1
	fid := needle.FileID{VolumeID: 1, Key: k, Cookie: 0x12345678}
	return &masterpb.AssignResponse{Fid: fid.String(), Count: n, Location: m.loc(), Replicas: []*masterpb.Location{m.loc()}}, nil
}

func (m *httpFakeMaster) LookupVolume(_ context.Context, req *masterpb.LookupVolumeRequest) (*masterpb.LookupVolumeResponse, error) {
	resp := &masterpb.LookupVolumeResponse{}
	for _, id := range req.VolumeIds {
		vl := &masterpb.VolumeLocations{VolumeId: id}
		if id == 1 {
			vl.Locations = []*masterpb.Location{m.loc()}
		} else {
			vl.Error = "volume not found"
		}
		resp.Volumes = append(resp.Volumes, vl)
	}
	return resp, nil
}

type httpEnv struct {
	srv    *Server
	vol    *httpFakeVolume
	master *assignLog
	base   string // http://host:port
}

// startHTTP runs a filer against a fake master (which logs the Assign
// requests it answers) and a fake volume server; chunks are 1 MiB so
// multi-chunk files stay small.
func startHTTP(t *testing.T, mutate func(*Config)) *httpEnv {
	t.Helper()
	vol := &httpFakeVolume{blobs: map[string][]byte{}}
	vol.srv = httptest.NewServer(vol)
	t.Cleanup(vol.srv.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &assignLog{httpFakeMaster: &httpFakeMaster{url: strings.TrimPrefix(vol.srv.URL, "http://")}}
	gs := grpc.NewServer()
	masterpb.RegisterMasterServer(gs, m)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	cfg := DefaultConfig()
	cfg.HTTPAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Dir = t.TempDir()
	cfg.MasterAddr = ln.Addr().String()
	cfg.ChunkSizeMB = 1
	cfg.Logger = nil
	if mutate != nil {
		mutate(&cfg)
	}
	s := serve(t, cfg)
	return &httpEnv{srv: s, vol: vol, master: m, base: "http://" + s.HTTPAddr()}
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func (e *httpEnv) do(t *testing.T, method, path string, body io.Reader, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func (e *httpEnv) put(t *testing.T, path string, data []byte) answer {
	t.Helper()
	a := e.do(t, http.MethodPut, path, bytes.NewReader(data))
	if a.code != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", path, a.code, a.body)
	}
	return a
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// wantError checks a JSON error answer.
func wantError(t *testing.T, what string, a answer, code int) {
	t.Helper()
	if a.code != code {
		t.Fatalf("%s: status %d, want %d (%s)", what, a.code, code, a.body)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("%s: body %q is not a JSON error", what, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
}

func TestHTTPPutGetRoundTrip(t *testing.T) {
	e := startHTTP(t, nil)
	const mib = 1 << 20
	for _, tc := range []struct {
		size, chunks int
	}{{0, 0}, {100, 0}, {4096, 0}, {4097, 1}, {mib, 1}, {mib + 1, 2}, {3*mib + 512*1024, 4}} {
		data := randBytes(t, tc.size)
		path := fmt.Sprintf("/dir/sub/f%d.txt", tc.size)
		_, putsBefore, _ := e.vol.stats()
		a := e.put(t, path, data)
		var res struct {
			Name string
			Size int
			ETag string
		}
		if err := json.Unmarshal(a.body, &res); err != nil || res.Name != fmt.Sprintf("f%d.txt", tc.size) || res.Size != tc.size {
			t.Fatalf("PUT %s: answer %s (%v)", path, a.body, err)
		}
		if _, puts, _ := e.vol.stats(); puts-putsBefore != tc.chunks {
			t.Fatalf("PUT %s: %d blobs written, want %d", path, puts-putsBefore, tc.chunks)
		}
		g := e.do(t, http.MethodGet, path, nil)
		if g.code != http.StatusOK || !bytes.Equal(g.body, data) {
			t.Fatalf("GET %s: %d, %d bytes, equal %v", path, g.code, len(g.body), bytes.Equal(g.body, data))
		}
		etag := g.header.Get("ETag")
		if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' || strings.Trim(etag, `"`) != res.ETag {
			t.Fatalf("GET %s: ETag %q, PUT said %q", path, etag, res.ETag)
		}
		if tc.chunks > 1 && !strings.HasSuffix(etag, fmt.Sprintf(`-%d"`, tc.chunks)) {
			t.Fatalf("GET %s: ETag %q lacks the chunk count", path, etag)
		}
		if g.header.Get("Last-Modified") == "" || !strings.HasPrefix(g.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET %s: headers %v", path, g.header)
		}
		if g.header.Get("Content-Length") != fmt.Sprint(tc.size) {
			t.Fatalf("GET %s: Content-Length %q", path, g.header.Get("Content-Length"))
		}
		h := e.do(t, http.MethodHead, path, nil)
		if h.code != http.StatusOK || len(h.body) != 0 || h.header.Get("Content-Length") != fmt.Sprint(tc.size) {
			t.Fatalf("HEAD %s: %d %v", path, h.code, h.header)
		}
		if c := e.do(t, http.MethodGet, path, nil, "If-None-Match", etag); c.code != http.StatusNotModified {
			t.Fatalf("GET %s If-None-Match: %d", path, c.code)
		}
	}
	// Overwrite a chunked file with a small one and back: each GET sees the newest.
	for _, n := range []int{10, 2*mib + 3, 0} {
		data := randBytes(t, n)
		e.put(t, "/over.bin", data)
		if g := e.do(t, http.MethodGet, "/over.bin", nil); !bytes.Equal(g.body, data) {
			t.Fatalf("overwrite with %d bytes: GET returns %d bytes", n, len(g.body))
		}
	}
	if g := e.do(t, http.MethodGet, "/over.bin", nil); g.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("Content-Type of .bin: %q", g.header.Get("Content-Type"))
	}
	// POST of a raw body stores it like PUT, with the mode asked for.
	data := randBytes(t, 5000)
	a := e.do(t, http.MethodPost, "/raw/posted?mode=600", bytes.NewReader(data))
	if a.code != http.StatusCreated {
		t.Fatalf("POST raw: %d %s", a.code, a.body)
	}
	attr, err := e.srv.Namespace().Resolve(context.Background(), "/raw/posted", false)
	if err != nil || attr.Mode != meta.S_IFREG|0o600 || attr.Size != 5000 {
		t.Fatalf("POSTed file: %+v %v", attr, err)
	}
	if g := e.do(t, http.MethodGet, "/raw/posted", nil); !bytes.Equal(g.body, data) {
		t.Fatal("POSTed raw body reads back different")
	}
}

// A body of unknown length (chunked transfer encoding) streams the same way.
func TestHTTPPutChunkedEncoding(t *testing.T) {
	e := startHTTP(t, nil)
	data := randBytes(t, 2<<20+77)
	pr, pw := io.Pipe()
	go func() {
		for b := data; len(b) > 0; {
			n := min(len(b), 100000)
			pw.Write(b[:n])
			b = b[n:]
		}
		pw.Close()
	}()
	a := e.do(t, http.MethodPut, "/streamed", pr)
	if a.code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", a.code, a.body)
	}
	if g := e.do(t, http.MethodGet, "/streamed", nil); !bytes.Equal(g.body, data) {
		t.Fatalf("GET: %d bytes, equal %v", len(g.body), bytes.Equal(g.body, data))
	}
	// An empty body of unknown length is a 0-byte file.
	a = e.do(t, http.MethodPut, "/empty", io.MultiReader())
	if a.code != http.StatusCreated {
		t.Fatalf("PUT empty: %d %s", a.code, a.body)
	}
	if g := e.do(t, http.MethodGet, "/empty", nil); g.code != http.StatusOK || len(g.body) != 0 {
		t.Fatalf("GET empty: %d %q", g.code, g.body)
	}
}

func TestHTTPRangeReads(t *testing.T) {
	e := startHTTP(t, nil)
	const mib = 1 << 20
	data := randBytes(t, 3*mib-100)
	e.put(t, "/r.bin", data)
	for _, tc := range []struct {
		rng        string
		start, end int // inclusive
	}{
		{"bytes=0-0", 0, 0},
		{"bytes=1048570-1048590", mib - 6, mib + 14},  // across the first boundary
		{"bytes=1048000-2097600", 1048000, 2097600},   // spans a whole chunk
		{"bytes=2097152-", 2 * mib, len(data) - 1},    // the last chunk
		{"bytes=-50", len(data) - 50, len(data) - 1},  // suffix
		{"bytes=5-99999999", 5, len(data) - 1},        // past the end
		{"bytes=2097151-2097152", 2*mib - 1, 2 * mib}, // two bytes, two chunks
		{fmt.Sprintf("bytes=%d-", len(data)-1), len(data) - 1, len(data) - 1},
	} {
		a := e.do(t, http.MethodGet, "/r.bin", nil, "Range", tc.rng)
		if a.code != http.StatusPartialContent || !bytes.Equal(a.body, data[tc.start:tc.end+1]) {
			t.Fatalf("%s: %d, %d bytes, want %d", tc.rng, a.code, len(a.body), tc.end-tc.start+1)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, len(data)); a.header.Get("Content-Range") != want {
			t.Fatalf("%s: Content-Range %q, want %q", tc.rng, a.header.Get("Content-Range"), want)
		}
	}
	// Several ranges come back as multipart/byteranges.
	a := e.do(t, http.MethodGet, "/r.bin", nil, "Range", "bytes=0-9,1048575-1048577")
	if a.code != http.StatusPartialContent || !strings.HasPrefix(a.header.Get("Content-Type"), "multipart/byteranges") ||
		!bytes.Contains(a.body, data[0:10]) || !bytes.Contains(a.body, data[mib-1:mib+2]) {
		t.Fatalf("multi-range: %d %s", a.code, a.header.Get("Content-Type"))
	}
	if a := e.do(t, http.MethodGet, "/r.bin", nil, "Range", fmt.Sprintf("bytes=%d-", len(data))); a.code != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %d", a.code)
	}
	// A small range reads a small part of the blobs, not the whole file.
	_, _, before := e.vol.stats()
	e.do(t, http.MethodGet, "/r.bin", nil, "Range", "bytes=1500000-1500099")
	if _, _, after := e.vol.stats(); after-before > 2*minReadWindow {
		t.Fatalf("a 100-byte range fetched %d bytes from the volume server", after-before)
	}
}

// A file with holes (chunks that do not cover it) reads zeros there, and
// newer chunks hide older ones.
func TestHTTPReadHolesAndOverlaps(t *testing.T) {
	e := startHTTP(t, nil)
	e.put(t, "/h", randBytes(t, 10)) // creates the file
	ctx := context.Background()
	ns := e.srv.Namespace()
	a, err := ns.Resolve(ctx, "/h", false)
	if err != nil {
		t.Fatal(err)
	}
	blob := func(b []byte) string {
		fid, _, err := e.srv.cluster.Write(ctx, b, client.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return fid
	}
	one, two := bytes.Repeat([]byte{1}, 1000), bytes.Repeat([]byte{2}, 100)
	chunks := []meta.Chunk{
		{Offset: 100, Size: 1000, FileID: blob(one), ModifiedNs: 1},
		{Offset: 500, Size: 100, FileID: blob(two), ModifiedNs: 2},
	}
	if _, err := ns.SetChunks(ctx, a.Inode, chunks, 3000); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3000)
	copy(want[100:], one)
	copy(want[500:], two)
	if g := e.do(t, http.MethodGet, "/h", nil); g.code != http.StatusOK || !bytes.Equal(g.body, want) {
		t.Fatalf("GET with holes: %d, %d bytes, equal %v", g.code, len(g.body), bytes.Equal(g.body, want))
	}
	if g := e.do(t, http.MethodGet, "/h", nil, "Range", "bytes=50-649"); !bytes.Equal(g.body, want[50:650]) {
		t.Fatal("range over a hole and an overlap differs")
	}
}

func TestHTTPListing(t *testing.T) {
	e := startHTTP(t, nil)
	for i := 0; i < 250; i++ {
		e.put(t, fmt.Sprintf("/list/f%03d.txt", i), []byte(fmt.Sprint(i)))
	}
	if a := e.do(t, http.MethodPost, "/list/zdir/", nil); a.code != http.StatusCreated {
		t.Fatalf("mkdir: %d %s", a.code, a.body)
	}
	type entry struct {
		FullPath    string
		Mtime       time.Time
		Crtime      time.Time
		Mode        uint32
		FileSize    uint64
		IsDirectory bool
		Mime        string
	}
	type page struct {
		Path                  string
		Entries               []entry
		Limit                 int
		LastFileName          string
		ShouldDisplayLoadMore bool
	}
	seen := map[string]int{}
	last, pages := "", 0
	for {
		a := e.do(t, http.MethodGet, "/list/?limit=100&lastFileName="+last, nil, "Accept", "application/json")
		if a.code != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
			t.Fatalf("listing: %d %s", a.code, a.body)
		}
		var p page
		if err := json.Unmarshal(a.body, &p); err != nil {
			t.Fatalf("listing JSON: %v\n%s", err, a.body)
		}
		pages++
		if p.Path != "/list" || p.Limit != 100 {
			t.Fatalf("listing page: Path %q Limit %d", p.Path, p.Limit)
		}
		for _, en := range p.Entries {
			seen[en.FullPath]++
			if en.Mtime.IsZero() || en.Crtime.IsZero() {
				t.Fatalf("entry %s without times", en.FullPath)
			}
			if en.IsDirectory {
				if fs.FileMode(en.Mode) != fs.ModeDir|0o755 {
					t.Fatalf("dir entry %s: Mode %v", en.FullPath, fs.FileMode(en.Mode))
				}
			} else if fs.FileMode(en.Mode) != 0o644 || en.Mime != "text/plain; charset=utf-8" || en.FileSize == 0 {
				t.Fatalf("file entry %+v", en)
			}
		}
		if len(p.Entries) > 0 && p.LastFileName != strings.TrimPrefix(p.Entries[len(p.Entries)-1].FullPath, "/list/") {
			t.Fatalf("LastFileName %q", p.LastFileName)
		}
		if !p.ShouldDisplayLoadMore {
			if len(p.Entries) != 51 {
				t.Fatalf("last page has %d entries", len(p.Entries))
			}
			break
		}
		if len(p.Entries) != 100 {
			t.Fatalf("page %d has %d entries", pages, len(p.Entries))
		}
		last = p.LastFileName
	}
	if pages != 3 || len(seen) != 251 {
		t.Fatalf("%d pages, %d distinct entries", pages, len(seen))
	}
	for name, n := range seen {
		if n != 1 {
			t.Fatalf("%s listed %d times", name, n)
		}
	}
	if seen["/list/zdir"] != 1 {
		t.Fatal("the directory is not listed")
	}
	// ?pretty and ?format=json give JSON too; the root lists itself as "/".
	for _, q := range []string{"/list?pretty=y&limit=2", "/list/?format=json&limit=2", "/?format=json"} {
		a := e.do(t, http.MethodGet, q, nil)
		var p page
		if err := json.Unmarshal(a.body, &p); err != nil || len(p.Entries) == 0 {
			t.Fatalf("%s: %v %s", q, err, a.body)
		}
	}
	var root page
	json.Unmarshal(e.do(t, http.MethodGet, "/?format=json", nil).body, &root)
	if root.Path != "/" || len(root.Entries) != 1 || root.Entries[0].FullPath != "/list" || !root.Entries[0].IsDirectory {
		t.Fatalf("root listing %+v", root)
	}
	// An empty directory lists [] rather than null.
	if a := e.do(t, http.MethodGet, "/list/zdir/?format=json", nil); !bytes.Contains(a.body, []byte(`"Entries":[]`)) {
		t.Fatalf("empty listing: %s", a.body)
	}
	// HTML for browsers: links to entries and to the next page.
	a := e.do(t, http.MethodGet, "/list/?limit=100", nil)
	body := string(a.body)
	if a.code != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
		t.Fatalf("HTML listing: %d %s", a.code, a.header.Get("Content-Type"))
	}
	for _, want := range []string{`href="/list/f000.txt"`, ">f099.txt<", `next page`, `lastFileName=f099.txt`} {
		if !strings.Contains(body, want) {
			t.Fatalf("HTML listing lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "f100.txt") {
		t.Fatal("HTML listing shows more than the limit")
	}
	// Names are escaped in HTML.
	e.put(t, "/esc/a%3Cb%3E%20c", []byte("x"))
	if b := string(e.do(t, http.MethodGet, "/esc/", nil).body); !strings.Contains(b, "a&lt;b&gt; c") || !strings.Contains(b, `href="/esc/a%3Cb%3E%20c"`) {
		t.Fatalf("escaping:\n%s", b)
	}
}

func multipartBody(t *testing.T, field, fileName string, data []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("note", "ignored"); err != nil {
		t.Fatal(err)
	}
	if fileName != "" {
		fw, err := mw.CreateFormFile(field, fileName)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

func TestHTTPMultipart(t *testing.T) {
	e := startHTTP(t, nil)
	for _, tc := range []struct {
		url, fileName, want string
		size                int
	}{
		{"/up/", "photo.jpg", "/up/photo.jpg", 3000},               // a directory path: the part's own name
		{"/up", "C:\\docs\\x.pdf", "/up/x.pdf", 10},                // an existing directory, a Windows path
		{"/up/named.bin", "other.bin", "/up/named.bin", 1<<20 + 5}, // a file path: that name
		{"/new/deep/dir/", "a.txt", "/new/deep/dir/a.txt", 0},
	} {
		data := randBytes(t, tc.size)
		body, ct := multipartBody(t, "file", tc.fileName, data)
		a := e.do(t, http.MethodPost, tc.url, body, "Content-Type", ct)
		if a.code != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", tc.url, a.code, a.body)
		}
		if g := e.do(t, http.MethodGet, tc.want, nil); g.code != http.StatusOK || !bytes.Equal(g.body, data) {
			t.Fatalf("POST %s: GET %s: %d, equal %v", tc.url, tc.want, g.code, bytes.Equal(g.body, data))
		}
	}
	body, ct := multipartBody(t, "file", "", nil)
	wantError(t, "multipart without a file", e.do(t, http.MethodPost, "/up/", body, "Content-Type", ct), http.StatusBadRequest)
	body, ct = multipartBody(t, "file", "..", []byte("x"))
	wantError(t, "multipart file name ..", e.do(t, http.MethodPost, "/up/", body, "Content-Type", ct), http.StatusBadRequest)
	wantError(t, "broken multipart", e.do(t, http.MethodPost, "/up/", strings.NewReader("garbage"),
		"Content-Type", "multipart/form-data; boundary=xyz"), http.StatusBadRequest)
}

func TestHTTPMkdirAndDelete(t *testing.T) {
	e := startHTTP(t, nil)
	ctx := context.Background()
	ns := e.srv.Namespace()
	if a := e.do(t, http.MethodPost, "/a/b/c/?mode=700", nil); a.code != http.StatusCreated {
		t.Fatalf("mkdir: %d %s", a.code, a.body)
	}
	if a, err := ns.Resolve(ctx, "/a/b/c", false); err != nil || a.Mode != meta.S_IFDIR|0o700 {
		t.Fatalf("/a/b/c: %+v %v", a, err)
	}
	if a, err := ns.Resolve(ctx, "/a/b", false); err != nil || a.Mode != meta.S_IFDIR|0o755 {
		t.Fatalf("/a/b: %+v %v", a, err)
	}
	if a := e.do(t, http.MethodPost, "/a/b/", nil); a.code != http.StatusCreated {
		t.Fatalf("mkdir of an existing directory: %d %s", a.code, a.body)
	}
	e.put(t, "/a/b/c/file", randBytes(t, 3<<20))
	e.put(t, "/a/small", []byte("hi"))

	wantError(t, "DELETE non-empty", e.do(t, http.MethodDelete, "/a", nil), http.StatusConflict)
	wantError(t, "DELETE file/", e.do(t, http.MethodDelete, "/a/small/", nil), http.StatusConflict)
	if a := e.do(t, http.MethodDelete, "/a/small", nil); a.code != http.StatusNoContent {
		t.Fatalf("DELETE file: %d %s", a.code, a.body)
	}
	wantError(t, "GET deleted", e.do(t, http.MethodGet, "/a/small", nil), http.StatusNotFound)
	wantError(t, "DELETE deleted", e.do(t, http.MethodDelete, "/a/small", nil), http.StatusNotFound)
	if a := e.do(t, http.MethodPost, "/a/empty/", nil); a.code != http.StatusCreated {
		t.Fatal(a.code)
	}
	if a := e.do(t, http.MethodDelete, "/a/empty/", nil); a.code != http.StatusNoContent {
		t.Fatalf("DELETE empty dir: %d %s", a.code, a.body)
	}

	// A tree bigger than one delete batch, built straight in the namespace.
	d, err := ns.Resolve(ctx, "/a/b", false)
	if err != nil {
		t.Fatal(err)
	}
	big, err := ns.Mkdir(ctx, d.Inode, "big", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < deleteBatch+50; i++ {
		if _, err := ns.Create(ctx, big.Inode, fmt.Sprintf("n%d", i), meta.CreateRequest{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ns.Symlink(ctx, big.Inode, "link", "/a", 0, 0); err != nil {
		t.Fatal(err)
	}
	if a := e.do(t, http.MethodDelete, "/a?recursive=true", nil); a.code != http.StatusNoContent {
		t.Fatalf("DELETE recursive: %d %s", a.code, a.body)
	}
	wantError(t, "GET after recursive delete", e.do(t, http.MethodGet, "/a/", nil), http.StatusNotFound)
	es, err := ns.ReadDir(ctx, meta.RootInode, "", 0)
	if err != nil || len(es) != 0 {
		t.Fatalf("root after delete: %v %v", es, err)
	}
	wantError(t, "DELETE /", e.do(t, http.MethodDelete, "/", nil), http.StatusBadRequest)
	wantError(t, "DELETE /?recursive=true", e.do(t, http.MethodDelete, "/?recursive=true", nil), http.StatusBadRequest)
}

func TestHTTPBadInput(t *testing.T) {
	e := startHTTP(t, nil)
	e.put(t, "/file", []byte("x"))
	if a := e.do(t, http.MethodPost, "/dir/", nil); a.code != http.StatusCreated {
		t.Fatal(a.code)
	}
	long := strings.Repeat("n", 256)
	for _, tc := range []struct {
		method, path string
		body         string
		code         int
	}{
		{"GET", "/missing", "", 404},
		{"GET", "/dir/missing/deeper", "", 404},
		{"GET", "/a%00b", "", 400},
		{"PUT", "/a%00b", "x", 400},
		{"GET", "/a/../file", "", 400},
		{"PUT", "/a/./b", "x", 400},
		{"PUT", "/" + long, "x", 400},
		{"GET", "/" + long, "", 400},
		{"PUT", "/x?mode=999", "x", 400},
		{"PUT", "/x?mode=17777", "x", 400},
		{"PUT", "/x?replication=9z", "x", 400},
		{"PUT", "/x?ttl=forever", "x", 400},
		{"PUT", "/x?collection=bad/name", "x", 400},
		{"GET", "/dir/?limit=abc", "", 400},
		{"GET", "/dir/?limit=-1", "", 400},
		{"GET", "/dir/?lastFileName=a/b", "", 400},
		{"DELETE", "/dir?recursive=maybe", "", 400},
		{"PUT", "/dir/", "body for a directory path", 400},
		{"PATCH", "/file", "", 405},
		{"PUT", "/dir", "x", 409},
		{"PUT", "/file/child", "x", 409},
		{"POST", "/file/sub/", "", 409},
		{"GET", "/file/", "", 409},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		a := e.do(t, tc.method, tc.path, body)
		wantError(t, tc.method+" "+tc.path, a, tc.code)
		if tc.code == 405 && a.header.Get("Allow") == "" {
			t.Fatal("405 without Allow")
		}
	}
	if _, err := e.srv.Namespace().Resolve(context.Background(), "/x", false); err == nil {
		t.Fatal("a refused PUT created /x")
	}
}

// Failures of the volume servers: a write that fails half-way leaves no
// file and no blob behind; a read that cannot start is a clean 503.
func TestHTTPClusterFailures(t *testing.T) {
	e := startHTTP(t, nil)
	e.vol.mu.Lock()
	e.vol.failPutAt = 3 // the third chunk of the first upload fails
	e.vol.mu.Unlock()
	a := e.do(t, http.MethodPut, "/fail.bin", bytes.NewReader(randBytes(t, 4<<20)))
	wantError(t, "PUT with a failing volume server", a, http.StatusServiceUnavailable)
	if blobs, puts, _ := e.vol.stats(); blobs != 0 || puts != 3 {
		t.Fatalf("after the failed PUT: %d blobs kept, %d PUTs", blobs, puts)
	}
	wantError(t, "GET after a failed PUT", e.do(t, http.MethodGet, "/fail.bin", nil), http.StatusNotFound)

	data := randBytes(t, 2<<20)
	e.put(t, "/ok.bin", data)
	e.vol.mu.Lock()
	e.vol.failGet = true
	e.vol.mu.Unlock()
	wantError(t, "GET with a failing volume server", e.do(t, http.MethodGet, "/ok.bin", nil), http.StatusServiceUnavailable)
	if h := e.do(t, http.MethodHead, "/ok.bin", nil); h.code != http.StatusOK {
		t.Fatalf("HEAD needs no blob: %d", h.code)
	}
	e.vol.mu.Lock()
	e.vol.failGet = false
	e.vol.mu.Unlock()
	if g := e.do(t, http.MethodGet, "/ok.bin", nil); !bytes.Equal(g.body, data) {
		t.Fatal("GET after recovery differs")
	}
}

// Writes racing into the same new directories all succeed, and an
// overwrite frees the blobs it replaced (the GC deletes them).
func TestHTTPConcurrentWrites(t *testing.T) {
	e := startHTTP(t, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/race/x/y/f%d", e.base, i), strings.NewReader(strings.Repeat("z", 3000)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- resp.Status
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	es, err := e.srv.Namespace().ReadDir(context.Background(), mustResolve(t, e, "/race/x/y").Inode, "", 0)
	if err != nil || len(es) != 16 {
		t.Fatalf("%d entries, %v", len(es), err)
	}

	e.put(t, "/gc.bin", randBytes(t, 2<<20+1))
	c, err := e.srv.Namespace().GetContent(context.Background(), mustResolve(t, e, "/gc.bin").Inode)
	if err != nil || len(c.Chunks) != 3 {
		t.Fatalf("content %+v %v", c.Chunks, err)
	}
	e.put(t, "/gc.bin", []byte("small"))
	deadline := time.Now().Add(20 * time.Second)
	for _, ch := range c.Chunks {
		for e.vol.has(ch.FileID) {
			if time.Now().After(deadline) {
				t.Fatalf("blob %s of the overwritten content was never deleted", ch.FileID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func mustResolve(t *testing.T, e *httpEnv, p string) meta.Attr {
	t.Helper()
	a, err := e.srv.Namespace().Resolve(context.Background(), p, false)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestParseHTTPPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		dir  bool
		bad  bool
	}{
		{"/", "/", true, false},
		{"//a//b/", "/a/b", true, false},
		{"/a/b", "/a/b", false, false},
		{"a/b", "", false, true},
		{"/a/..", "", false, true},
		{"/a/./b", "", false, true},
		{"/a\x00", "", false, true},
		{"/" + strings.Repeat("x", 255), "/" + strings.Repeat("x", 255), false, false},
		{"/" + strings.Repeat("x", 256), "", false, true},
		{"/" + strings.Repeat("x/", 2100), "", false, true},
	} {
		p, err := parseHTTPPath(tc.in, 255)
		if (err != nil) != tc.bad {
			t.Fatalf("%q: err %v", tc.in, err)
		}
		if err == nil && (p.String() != tc.want || p.dir != tc.dir) {
			t.Fatalf("%q: %q dir %v", tc.in, p, p.dir)
		}
	}
	for _, tc := range []struct {
		h    string
		want int64
	}{{"", 0}, {"bytes=10-20", 10}, {"bytes=-5", 95}, {"bytes=-500", 0}, {"bytes=200-", 0}, {"bytes=7-,1-2", 7}, {"junk", 0}} {
		if got := rangeStart(tc.h, 100); got != tc.want {
			t.Fatalf("rangeStart(%q) = %d, want %d", tc.h, got, tc.want)
		}
	}
}
