package volumed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kelpfs/kelp/needle"
	"github.com/kelpfs/kelp/volumed/storage"
)

// startServer runs a volume server with one empty volume (id 1, no
// replication) and no master, and returns it with its blob API base URL.
func startServer(t *testing.T, maxUpload int64) (*Server, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.MasterAddr = "127.0.0.1:1" // nothing there: heartbeats fail, which the blob API does not need
	cfg.Dirs = []string{t.TempDir()}
	cfg.MaxVolumes = []int{4}
	cfg.MaxUploadBytes = maxUpload
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store().AllocateVolume(1, "", needle.ReplicaPlacement{}, needle.TTL{}, 0); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	base := "http://" + s.Addr()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("blob API not answering: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, base
}

type answer struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, method, url string, body io.Reader, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// wantError checks a JSON error answer.
func wantError(t *testing.T, what string, a answer, status int) {
	t.Helper()
	var e struct{ Error string }
	if a.status != status || a.header.Get("Content-Type") != "application/json" ||
		json.Unmarshal([]byte(a.body), &e) != nil || e.Error == "" {
		t.Fatalf("%s: %d %s %q, want %d with a JSON error", what, a.status, a.header.Get("Content-Type"), a.body, status)
	}
}

func fidOf(key uint64, cookie uint32) string {
	return needle.FileID{VolumeID: 1, Key: key, Cookie: cookie}.String()
}

func TestHTTPBlobAPI(t *testing.T) {
	s, base := startServer(t, 1<<20)
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	fid := fidOf(7, 0x1234)
	url := base + "/" + fid

	a := call(t, http.MethodPut, url+"?name=notes.txt&ts=1700000000", bytes.NewReader(data), "Content-Type", "text/x-notes")
	if a.status != http.StatusCreated || a.body != `{"eTag":"`+needle.ETag(data)+`","name":"notes.txt","size":36}`+"\n" {
		t.Fatalf("PUT: %d %q", a.status, a.body)
	}
	n, err := s.Store().Read(1, 7, 0x1234)
	if err != nil || !bytes.Equal(n.Data, data) || string(n.Name) != "notes.txt" || string(n.Mime) != "text/x-notes" || n.LastModified != 1700000000 {
		t.Fatalf("stored %+v, %v", n, err)
	}

	a = call(t, http.MethodGet, url, nil)
	if a.status != 200 || a.body != string(data) {
		t.Fatalf("GET: %d %q", a.status, a.body)
	}
	lastMod := time.Unix(1700000000, 0).UTC().Format(http.TimeFormat)
	for k, v := range map[string]string{
		"Etag": `"` + needle.ETag(data) + `"`, "Accept-Ranges": "bytes", "Last-Modified": lastMod,
		"Content-Type": "text/x-notes", "Content-Disposition": `inline; filename=notes.txt`, "Content-Length": "36",
		"Server": "kelp",
	} {
		if got := a.header.Get(k); got != v {
			t.Errorf("GET header %s: %q, want %q", k, got, v)
		}
	}
	a = call(t, http.MethodHead, url, nil)
	if a.status != 200 || a.body != "" || a.header.Get("Content-Length") != "36" || a.header.Get("Etag") == "" {
		t.Fatalf("HEAD: %d %q %v", a.status, a.body, a.header)
	}

	a = call(t, http.MethodGet, url, nil, "Range", "bytes=10-19")
	if a.status != 206 || a.body != "abcdefghij" || a.header.Get("Content-Range") != "bytes 10-19/36" || a.header.Get("Content-Length") != "10" {
		t.Fatalf("single range: %d %q %v", a.status, a.body, a.header)
	}
	a = call(t, http.MethodHead, url, nil, "Range", "bytes=10-19")
	if a.status != 206 || a.body != "" || a.header.Get("Content-Length") != "10" {
		t.Fatalf("HEAD with range: %d %q %v", a.status, a.body, a.header)
	}
	a = call(t, http.MethodGet, url, nil, "Range", "bytes=0-1,30-")
	mt, params, _ := mime.ParseMediaType(a.header.Get("Content-Type"))
	if a.status != 206 || mt != "multipart/byteranges" {
		t.Fatalf("multi range: %d %v", a.status, a.header)
	}
	mr := multipart.NewReader(strings.NewReader(a.body), params["boundary"])
	for _, want := range []string{"01", "uvwxyz"} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(p); string(b) != want || p.Header.Get("Content-Type") != "text/x-notes" {
			t.Fatalf("multi range part %q %v, want %q", b, p.Header, want)
		}
	}
	a = call(t, http.MethodGet, url, nil, "Range", "bytes=100-200")
	wantError(t, "range past the end", a, http.StatusRequestedRangeNotSatisfiable)
	if a.header.Get("Content-Range") != "bytes */36" {
		t.Fatalf("416 Content-Range %q", a.header.Get("Content-Range"))
	}
	if a = call(t, http.MethodGet, url, nil, "Range", "bytes=oops"); a.status != 200 || a.body != string(data) {
		t.Fatalf("malformed range: %d %q", a.status, a.body)
	}

	etag := `"` + needle.ETag(data) + `"`
	a = call(t, http.MethodGet, url, nil, "If-None-Match", `"x", `+etag)
	if a.status != 304 || a.body != "" || a.header.Get("Etag") != etag || a.header.Get("Content-Type") != "" {
		t.Fatalf("If-None-Match: %d %q %v", a.status, a.body, a.header)
	}
	if a = call(t, http.MethodGet, url, nil, "If-Modified-Since", lastMod); a.status != 304 {
		t.Fatalf("If-Modified-Since: %d", a.status)
	}
	wantError(t, "If-Match", call(t, http.MethodGet, url, nil, "If-Match", `"other"`), http.StatusPreconditionFailed)
	wantError(t, "If-Unmodified-Since", call(t, http.MethodGet, url, nil,
		"If-Unmodified-Since", time.Unix(1600000000, 0).UTC().Format(http.TimeFormat)), http.StatusPreconditionFailed)

	// Content type by URL extension and by stored name; name from the URL.
	jpg := []byte{0xff, 0xd8, 0xff}
	if a = call(t, http.MethodPut, base+"/"+fidOf(8, 1), bytes.NewReader(jpg)); a.status != 201 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	for path, want := range map[string][2]string{
		"/" + fidOf(8, 1):                                 {"application/octet-stream", ""},
		"/" + fidOf(8, 1) + ".jpg":                        {"image/jpeg", ""},
		"/1/" + needle.FormatKeyCookie(8, 1) + "/a b.png": {"image/png", `inline; filename="a b.png"`},
	} {
		a := call(t, http.MethodGet, base+path, nil)
		if a.status != 200 || a.header.Get("Content-Type") != want[0] || a.header.Get("Content-Disposition") != want[1] {
			t.Errorf("GET %s: %d type %q disposition %q, want %q", path, a.status, a.header.Get("Content-Type"),
				a.header.Get("Content-Disposition"), want)
		}
	}
	if a = call(t, http.MethodPut, base+"/"+fidOf(9, 1)+"?name=pic.gif", bytes.NewReader(jpg)); a.status != 201 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	if a = call(t, http.MethodGet, base+"/"+fidOf(9, 1), nil); a.header.Get("Content-Type") != "image/gif" {
		t.Errorf("type by stored name: %q", a.header.Get("Content-Type"))
	}

	// Errors.
	wantError(t, "wrong cookie GET", call(t, http.MethodGet, base+"/"+fidOf(7, 0x9999), nil), 404)
	wantError(t, "wrong cookie PUT", call(t, http.MethodPut, base+"/"+fidOf(7, 0x9999), strings.NewReader("x")), 409)
	wantError(t, "bad fid", call(t, http.MethodGet, base+"/1,xyz", nil), 400)
	wantError(t, "no volume", call(t, http.MethodGet, base+"/77,"+needle.FormatKeyCookie(7, 1), nil), 404)
	wantError(t, "key 0", call(t, http.MethodPut, base+"/"+fidOf(0, 1), strings.NewReader("x")), 400)
	wantError(t, "bad ttl", call(t, http.MethodPut, url+"?ttl=5q", strings.NewReader("x")), 400)
	wantError(t, "bad ts", call(t, http.MethodPut, url+"?ts=soon", strings.NewReader("x")), 400)
	wantError(t, "root", call(t, http.MethodGet, base+"/", nil), 404)
	a = call(t, http.MethodPatch, url, strings.NewReader("x"))
	wantError(t, "PATCH", a, 405)
	if a.header.Get("Allow") != "GET, HEAD, POST, PUT, DELETE" {
		t.Errorf("Allow %q", a.header.Get("Allow"))
	}

	var st struct {
		URL     string
		Volumes []struct {
			ID        uint32
			FileCount uint64
		}
	}
	a = call(t, http.MethodGet, base+"/status", nil)
	if err := json.Unmarshal([]byte(a.body), &st); err != nil || st.URL != s.Addr() || len(st.Volumes) != 1 || st.Volumes[0].FileCount != 3 {
		t.Fatalf("status: %s (%v)", a.body, err)
	}

	a = call(t, http.MethodDelete, url, nil)
	if a.status != http.StatusAccepted || a.body != "{\"size\":"+fmt.Sprint(n.BodySize())+"}\n" {
		t.Fatalf("DELETE: %d %q", a.status, a.body)
	}
	wantError(t, "GET after DELETE", call(t, http.MethodGet, url, nil), 404)
	wantError(t, "DELETE again", call(t, http.MethodDelete, url, nil), 404)
}

func TestHTTPMultipartUpload(t *testing.T) {
	s, base := startServer(t, 1000)
	form := func(fields map[string]string, file string, data []byte, ctype string) (*bytes.Buffer, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for k, v := range fields {
			mw.WriteField(k, v)
		}
		h := map[string][]string{"Content-Disposition": {`form-data; name="file"; filename="` + file + `"`}}
		if ctype != "" {
			h["Content-Type"] = []string{ctype}
		}
		w, _ := mw.CreatePart(h)
		w.Write(data)
		mw.Close()
		return &b, mw.FormDataContentType()
	}
	// Exactly the limit of file data, with the form's overhead on top.
	data := bytes.Repeat([]byte("k"), 1000)
	body, ctype := form(map[string]string{"comment": "first a field"}, "photo.jpg", data, "image/jpeg")
	a := call(t, http.MethodPost, base+"/"+fidOf(1, 1), body, "Content-Type", ctype)
	if a.status != 201 || !strings.Contains(a.body, `"name":"photo.jpg"`) || !strings.Contains(a.body, `"size":1000`) {
		t.Fatalf("multipart POST: %d %s", a.status, a.body)
	}
	n, err := s.Store().Read(1, 1, 1)
	if err != nil || !bytes.Equal(n.Data, data) || string(n.Name) != "photo.jpg" || string(n.Mime) != "image/jpeg" {
		t.Fatalf("stored %+v, %v", n, err)
	}
	// The name parameter wins over the file name; octet-stream is no type.
	body, ctype = form(nil, "photo.jpg", []byte("abc"), "application/octet-stream")
	if a = call(t, http.MethodPost, base+"/"+fidOf(2, 1)+"?name=given.txt", body, "Content-Type", ctype); a.status != 201 {
		t.Fatalf("multipart POST: %d %s", a.status, a.body)
	}
	if n, err = s.Store().Read(1, 2, 1); err != nil || string(n.Name) != "given.txt" || len(n.Mime) != 0 || string(n.Data) != "abc" {
		t.Fatalf("stored %+v, %v", n, err)
	}
	body, ctype = form(nil, "big.bin", bytes.Repeat([]byte("k"), 1001), "")
	wantError(t, "file over the limit", call(t, http.MethodPost, base+"/"+fidOf(3, 1), body, "Content-Type", ctype), 413)
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("comment", "no file")
	mw.Close()
	wantError(t, "no file part", call(t, http.MethodPost, base+"/"+fidOf(3, 1), &b, "Content-Type", mw.FormDataContentType()), 400)
	wantError(t, "broken form", call(t, http.MethodPost, base+"/"+fidOf(3, 1), strings.NewReader("garbage"),
		"Content-Type", "multipart/form-data; boundary=xyz"), 400)
	if _, err := s.Store().Read(1, 3, 1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused uploads stored something: %v", err)
	}
	// A PUT of a multipart body is stored raw.
	body, ctype = form(nil, "f", []byte("abc"), "")
	raw := body.Bytes()
	if a = call(t, http.MethodPut, base+"/"+fidOf(4, 1), bytes.NewReader(raw), "Content-Type", ctype); a.status != 201 {
		t.Fatalf("PUT of a form: %d %s", a.status, a.body)
	}
	if n, err = s.Store().Read(1, 4, 1); err != nil || !bytes.Equal(n.Data, raw) || len(n.Mime) != 0 {
		t.Fatalf("stored %+v, %v", n, err)
	}
}

func TestHTTPUploadLimit(t *testing.T) {
	const limit = 1000
	s, base := startServer(t, limit)
	if a := call(t, http.MethodPut, base+"/"+fidOf(1, 1), bytes.NewReader(make([]byte, limit))); a.status != 201 {
		t.Fatalf("upload of exactly the limit: %d %s", a.status, a.body)
	}
	// Over the limit but within the multipart slack: read, then refused.
	wantError(t, "limit+1", call(t, http.MethodPut, base+"/"+fidOf(2, 1), bytes.NewReader(make([]byte, limit+1))), 413)
	// Far over: refused before the body is read. The answer must reach the
	// client (not a connection reset while it is still sending), every time.
	big := make([]byte, 4<<20)
	for i := 0; i < 20; i++ {
		wantError(t, "4 MiB upload", call(t, http.MethodPut, base+"/"+fidOf(2, 1), bytes.NewReader(big)), 413)
	}
	// Chunked (no Content-Length): stored within the limit, refused once
	// past it.
	small := bytes.Repeat([]byte("c"), limit)
	if a := call(t, http.MethodPut, base+"/"+fidOf(3, 1), io.MultiReader(bytes.NewReader(small))); a.status != 201 {
		t.Fatalf("chunked upload: %d %s", a.status, a.body)
	}
	if n, err := s.Store().Read(1, 3, 1); err != nil || !bytes.Equal(n.Data, small) {
		t.Fatalf("chunked upload stored %v", err)
	}
	wantError(t, "chunked", call(t, http.MethodPut, base+"/"+fidOf(2, 1), io.MultiReader(bytes.NewReader(big))), 413)
	if _, err := s.Store().Read(1, 2, 1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused uploads stored something: %v", err)
	}
	// The server still works.
	if a := call(t, http.MethodGet, base+"/"+fidOf(1, 1), nil); a.status != 200 || len(a.body) != limit {
		t.Fatalf("GET: %d, %d bytes", a.status, len(a.body))
	}
}

// A client that promises more body than it sends, then goes away, gets
// nothing stored.
func TestHTTPTruncatedBodyStoresNothing(t *testing.T) {
	s, base := startServer(t, 1<<20)
	for i, req := range []string{
		"PUT /" + fidOf(1, 1) + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("a", 100),
		"POST /" + fidOf(1, 1) + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + strings.Repeat("a", 100) + "\r\n",
		"POST /" + fidOf(1, 1) + " HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 500\r\n\r\n" +
			"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nabc\r\n--b--\r\n",
	} {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		// The server answers with an error or just closes; never 2xx.
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("request %d: truncated upload answered %d", i, resp.StatusCode)
			}
		}
		c.Close()
	}
	wantError(t, "GET after truncated uploads", call(t, http.MethodGet, base+"/"+fidOf(1, 1), nil), 404)
}

// Concurrent clients on keep-alive connections each get their own blob's
// bytes, name and type back: nothing leaks between requests through
// fasthttp's reused buffers.
func TestHTTPConcurrentKeepAlive(t *testing.T) {
	_, base := startServer(t, 1<<20)
	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				key := uint64(w*perWorker + i + 1)
				data := bytes.Repeat([]byte{byte(key)}, 100+int(key))
				name := fmt.Sprintf("f%d.txt", key)
				ctype := fmt.Sprintf("text/x-%d", key)
				url := base + "/" + fidOf(key, uint32(key))
				req, _ := http.NewRequest(http.MethodPut, url+"?name="+name, bytes.NewReader(data))
				req.Header.Set("Content-Type", ctype)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errc <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					errc <- fmt.Errorf("PUT %s: %d", url, resp.StatusCode)
					return
				}
				resp, err = http.Get(url)
				if err != nil {
					errc <- err
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !bytes.Equal(got, data) || resp.Header.Get("Content-Type") != ctype ||
					resp.Header.Get("Content-Disposition") != "inline; filename="+name {
					errc <- fmt.Errorf("GET %s: %d bytes, type %q, disposition %q", url, len(got),
						resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// Close returns with keep-alive connections open and makes Serve return
// nil; the server then refuses connections.
func TestHTTPCloseWithIdleConnections(t *testing.T) {
	s, base := startServer(t, 1<<20)
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for range 2 {
		io.WriteString(c, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The idle connection was closed by the server.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("idle connection still open after Close: %d, %v", n, err)
	}
	if _, err := http.Get(base + "/status"); err == nil {
		t.Fatal("server still answers after Close")
	}
}
