package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/integration/cluster"
)

type httpAnswer struct {
	code   int
	header http.Header
	body   []byte
}

func httpDo(t *testing.T, method, url string, body io.Reader, hdr ...string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return httpAnswer{resp.StatusCode, resp.Header, b}
}

func httpPut(t *testing.T, url string, data []byte) {
	t.Helper()
	if a := httpDo(t, http.MethodPut, url, bytes.NewReader(data)); a.code != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", url, a.code, a.body)
	}
}

func wantJSONError(t *testing.T, what string, a httpAnswer, code int) {
	t.Helper()
	var e struct{ Error string }
	if a.code != code || json.Unmarshal(a.body, &e) != nil || e.Error == "" {
		t.Fatalf("%s: %d %s, want %d with a JSON error", what, a.code, a.body, code)
	}
}

// Files of 0 bytes, 100 bytes (inline) and 9 MiB (three 4 MiB chunks)
// round-trip through a real master, volume server and filer; ranges across
// chunk boundaries read right; all of it survives a filer restart.
func TestFilerHTTPRoundTrip(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Filer: true})
	ctx := ctxT(t)
	const mib = 1 << 20
	files := map[string][]byte{
		"/data/empty":     {},
		"/data/small.txt": randomBytes(t, 100),
		"/data/big.bin":   randomBytes(t, 9*mib),
	}
	for p, data := range files {
		httpPut(t, c.Filer.URL()+p, data)
	}
	check := func() {
		t.Helper()
		for p, data := range files {
			a := httpDo(t, http.MethodGet, c.Filer.URL()+p, nil)
			if a.code != http.StatusOK || !bytes.Equal(a.body, data) {
				t.Fatalf("GET %s: %d, %d bytes, want %d", p, a.code, len(a.body), len(data))
			}
			if a.header.Get("ETag") == "" || a.header.Get("Last-Modified") == "" {
				t.Fatalf("GET %s: headers %v", p, a.header)
			}
		}
		big := files["/data/big.bin"]
		for _, r := range [][2]int{{4*mib - 10, 4*mib + 10}, {mib, 9*mib - 1}, {8*mib - 1, 8 * mib}, {0, 0}} {
			a := httpDo(t, http.MethodGet, c.Filer.URL()+"/data/big.bin", nil, "Range", fmt.Sprintf("bytes=%d-%d", r[0], r[1]))
			if a.code != http.StatusPartialContent || !bytes.Equal(a.body, big[r[0]:r[1]+1]) {
				t.Fatalf("range %v: %d, %d bytes", r, a.code, len(a.body))
			}
		}
	}
	check()
	ns := c.Filer.Server().Namespace()
	for p, want := range map[string]int{"/data/empty": 0, "/data/small.txt": 0, "/data/big.bin": 3} {
		a, err := ns.Resolve(ctx, p, false)
		if err != nil {
			t.Fatal(err)
		}
		content, err := ns.GetContent(ctx, a.Inode)
		if err != nil || len(content.Chunks) != want {
			t.Fatalf("%s: %d chunks (%v), want %d", p, len(content.Chunks), err, want)
		}
	}
	c.Filer.Restart()
	check()
}

// A directory of 250 files lists in pages of 100 with every name exactly
// once, as JSON shaped like SeaweedFS's and as HTML.
func TestFilerHTTPListing(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Filer: true})
	for i := 0; i < 250; i++ {
		httpPut(t, fmt.Sprintf("%s/many/file-%03d", c.Filer.URL(), i), []byte(fmt.Sprint(i)))
	}
	seen := map[string]int{}
	last := ""
	for page := 0; ; page++ {
		a := httpDo(t, http.MethodGet, c.Filer.URL()+"/many/?limit=100&lastFileName="+last, nil, "Accept", "application/json")
		var l struct {
			Path    string
			Entries []struct {
				FullPath    string
				Mtime       time.Time
				Mode        uint32
				FileSize    int64
				IsDirectory bool
			}
			Limit                 int
			LastFileName          string
			ShouldDisplayLoadMore bool
		}
		if err := json.Unmarshal(a.body, &l); err != nil || a.code != http.StatusOK {
			t.Fatalf("page %d: %d %v %s", page, a.code, err, a.body)
		}
		if l.Path != "/many" || l.Limit != 100 {
			t.Fatalf("page %d: %+v", page, l)
		}
		for _, e := range l.Entries {
			seen[e.FullPath]++
			if e.IsDirectory || e.FileSize == 0 || e.Mode != 0o644 || e.Mtime.IsZero() {
				t.Fatalf("entry %+v", e)
			}
		}
		if !l.ShouldDisplayLoadMore {
			if page != 2 || len(l.Entries) != 50 {
				t.Fatalf("last page is %d with %d entries", page, len(l.Entries))
			}
			break
		}
		last = l.LastFileName
	}
	if len(seen) != 250 {
		t.Fatalf("%d names listed", len(seen))
	}
	for name, n := range seen {
		if n != 1 {
			t.Fatalf("%s listed %d times", name, n)
		}
	}
	a := httpDo(t, http.MethodGet, c.Filer.URL()+"/many/?limit=300", nil)
	for i := 0; i < 250; i++ {
		if !bytes.Contains(a.body, []byte(fmt.Sprintf(`href="/many/file-%03d"`, i))) {
			t.Fatalf("HTML listing lacks file-%03d", i)
		}
	}
}

// Multipart uploads into a directory, mkdir by POST, deletes of files and
// trees; the blobs of deleted files leave the volume servers.
func TestFilerHTTPDirectoriesAndDelete(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Filer: true})
	ctx := ctxT(t)
	base := c.Filer.URL()
	if a := httpDo(t, http.MethodPost, base+"/docs/2024/", nil); a.code != http.StatusCreated {
		t.Fatalf("mkdir: %d %s", a.code, a.body)
	}
	data := randomBytes(t, 5<<20)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "report.pdf")
	fw.Write(data)
	mw.Close()
	if a := httpDo(t, http.MethodPost, base+"/docs/2024/", &buf, "Content-Type", mw.FormDataContentType()); a.code != http.StatusCreated {
		t.Fatalf("multipart: %d %s", a.code, a.body)
	}
	a := httpDo(t, http.MethodGet, base+"/docs/2024/report.pdf", nil)
	if !bytes.Equal(a.body, data) || a.header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("GET report.pdf: %d, %q", a.code, a.header.Get("Content-Type"))
	}
	ns := c.Filer.Server().Namespace()
	attr, err := ns.Resolve(ctx, "/docs/2024/report.pdf", false)
	if err != nil {
		t.Fatal(err)
	}
	content, err := ns.GetContent(ctx, attr.Inode)
	if err != nil || len(content.Chunks) != 2 {
		t.Fatalf("report.pdf: %d chunks, %v", len(content.Chunks), err)
	}
	httpPut(t, base+"/docs/readme", []byte("hello"))

	wantJSONError(t, "DELETE non-empty", httpDo(t, http.MethodDelete, base+"/docs", nil), http.StatusConflict)
	if a := httpDo(t, http.MethodDelete, base+"/docs/readme", nil); a.code != http.StatusNoContent {
		t.Fatalf("DELETE file: %d %s", a.code, a.body)
	}
	if a := httpDo(t, http.MethodDelete, base+"/docs?recursive=true", nil); a.code != http.StatusNoContent {
		t.Fatalf("DELETE recursive: %d %s", a.code, a.body)
	}
	wantJSONError(t, "GET deleted", httpDo(t, http.MethodGet, base+"/docs/2024/report.pdf", nil), http.StatusNotFound)
	cl := c.Client()
	deadline := time.Now().Add(30 * time.Second)
	for _, ch := range content.Chunks {
		for {
			_, err := cl.Read(ctx, ch.FileID)
			if errors.Is(err, client.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("blob %s of a deleted file still reads: %v", ch.FileID, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	es, err := ns.ReadDir(ctx, meta.RootInode, "", 0)
	if err != nil || len(es) != 0 {
		t.Fatalf("root: %v %v", es, err)
	}
}

func TestFilerHTTPBadInput(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Filer: true})
	base := c.Filer.URL()
	httpPut(t, base+"/f", []byte("x"))
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/nope", 404},
		{"GET", "/a/../f", 400},
		{"PUT", "/bad%00name", 400},
		{"PUT", "/" + strings.Repeat("n", 300), 400},
		{"PUT", "/g?mode=8", 400},
		{"PUT", "/g?replication=abc", 400},
		{"GET", "/?limit=x", 400},
		{"DELETE", "/", 400},
		{"PUT", "/f/under", 409},
		{"OPTIONS", "/f", 405},
	} {
		wantJSONError(t, tc.method+" "+tc.path, httpDo(t, tc.method, base+tc.path, strings.NewReader("body")), tc.code)
	}
}

// `kelp server` starts a filer on -filer.port: PUT and GET work as with curl,
// and SIGTERM stops all three daemons cleanly.
func TestServerBinaryFiler(t *testing.T) {
	dir := t.TempDir()
	mp, mg, vp, vg, fp, fg := cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t)
	srv := startKelp(t, "server", "-dir", dir, "-ip", "127.0.0.1",
		"-master.port", fmt.Sprint(mp), "-master.port.grpc", fmt.Sprint(mg),
		"-volume.port", fmt.Sprint(vp), "-volume.port.grpc", fmt.Sprint(vg),
		"-filer.port", fmt.Sprint(fp), "-filer.port.grpc", fmt.Sprint(fg), "-filer.maxMB", "1")
	waitAssign(t, fmt.Sprintf("127.0.0.1:%d", mp))
	base := fmt.Sprintf("http://127.0.0.1:%d", fp)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("filer never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	data := randomBytes(t, 3<<20+17)
	httpPut(t, base+"/bin/blob.dat", data)
	if a := httpDo(t, http.MethodGet, base+"/bin/blob.dat", nil); !bytes.Equal(a.body, data) {
		t.Fatalf("GET: %d, %d bytes", a.code, len(a.body))
	}
	if _, err := exec.LookPath("curl"); err == nil {
		src := filepath.Join(dir, "upload.txt")
		out, err := exec.Command("sh", "-c", fmt.Sprintf("printf 'hello kelp' > %s && curl -sf -F file=@%s %s/bin/ && curl -sf %s/bin/upload.txt", src, src, base, base)).CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), "hello kelp") {
			t.Fatalf("curl: %v\n%s", err, out)
		}
	}
	srv.stop(t, 20*time.Second)
	// The filer's store is under DIR/filer and keeps the file across a restart.
	srv = startKelp(t, "server", "-dir", dir, "-ip", "127.0.0.1",
		"-master.port", fmt.Sprint(mp), "-master.port.grpc", fmt.Sprint(mg),
		"-volume.port", fmt.Sprint(vp), "-volume.port.grpc", fmt.Sprint(vg),
		"-filer.port", fmt.Sprint(fp), "-filer.port.grpc", fmt.Sprint(fg))
	deadline = time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/bin/blob.dat", nil)
		resp, err := http.DefaultClient.Do(req)
		var got []byte
		if err == nil {
			got, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		if err == nil && resp.StatusCode == http.StatusOK && bytes.Equal(got, data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
