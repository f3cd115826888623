package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kelpfs/kelp/api/masterpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/needle"
	"github.com/kelpfs/kelp/volumed"
)

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Three volume servers in two racks with replication 010: every blob has one
// copy on each rack, and stays readable when a server goes away.
func TestReplication010SurvivesServerLoss(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Volumes: []cluster.VolumeSpec{
		{DataCenter: "dc1", Rack: "r1"}, {DataCenter: "dc1", Rack: "r1"}, {DataCenter: "dc1", Rack: "r2"},
	}})
	cl := c.Client()
	ctx := ctxT(t)
	rackOf := map[string]string{}
	for _, v := range c.Volumes {
		rackOf[v.URL()] = map[bool]string{true: "r2", false: "r1"}[v == c.Volumes[2]]
	}
	blobs := map[string][]byte{}
	for i := 0; i < 50; i++ {
		data := randomBytes(t, 100+i*37)
		fid, res, err := cl.Write(ctx, data, client.WriteOptions{Assign: client.AssignRequest{Replication: "010"}})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if res.Size != int64(len(data)) || res.ETag != needle.ETag(data) {
			t.Fatalf("write %d: answer %+v, want size %d etag %s", i, res, len(data), needle.ETag(data))
		}
		blobs[fid] = data
	}
	for fid, data := range blobs {
		locs := onReplicas(t, ctx, cl, fid, data, 2)
		if rackOf[locs[0].URL] == rackOf[locs[1].URL] {
			t.Fatalf("%s: both replicas on rack %s", fid, rackOf[locs[0].URL])
		}
	}
	// Lose a rack-1 server: every blob still reads from its other replica.
	c.StopVolume(0)
	for fid, data := range blobs {
		got, err := cl.Read(ctx, fid)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after losing %s, read %s: err %v", c.Volumes[0].URL(), fid, err)
		}
	}
}

// Uploads through volume servers' in-process writes (as `kelp server
// -mount` makes them) replicate like HTTP ones: every blob is on both
// replicas of a 001 volume, with the answer an HTTP upload gives.
func TestLocalUploadsReplicate(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Volumes: []cluster.VolumeSpec{{Rack: "r1"}, {Rack: "r1"}}})
	cl := c.Client()
	local := map[string]client.LocalBlobs{}
	for _, v := range c.Volumes {
		local[v.Server().Addr()] = v.Server().LocalBlobs()
	}
	lc := &client.Cluster{Master: cl.Master, Blobs: client.NewBlobClient(client.BlobClientConfig{Local: local})}
	ctx := ctxT(t)
	for i := 0; i < 20; i++ {
		data := randomBytes(t, 1000+i*4099)
		fid, res, err := lc.Write(ctx, data, client.WriteOptions{Assign: client.AssignRequest{Replication: "001"}})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if res.Size != int64(len(data)) || res.ETag != needle.ETag(data) {
			t.Fatalf("write %d: answer %+v, want size %d etag %s", i, res, len(data), needle.ETag(data))
		}
		onReplicas(t, ctx, cl, fid, data, 2)
	}
}

// onReplicas checks that blob fid's volume has n replicas and that each
// holds data, and returns their locations.
func onReplicas(t *testing.T, ctx context.Context, cl *client.Cluster, fid string, data []byte, n int) []client.Location {
	t.Helper()
	f, err := needle.ParseFileID(fid)
	if err != nil {
		t.Fatal(err)
	}
	locs, err := cl.Master.Lookup(ctx, f.VolumeID)
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) != n {
		t.Fatalf("%s: %d replicas, want %d", fid, len(locs), n)
	}
	for _, l := range locs {
		got, err := cl.Blobs.Get(ctx, l.URL, fid)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s on %s: err %v, equal %v", fid, l.URL, err, bytes.Equal(got, data))
		}
	}
	return locs
}

// A write to a volume whose replica is down fails with a clear error
// instead of being stored on fewer copies than asked.
func TestWriteFailsWhenReplicaDown(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Volumes: []cluster.VolumeSpec{{Rack: "r1"}, {Rack: "r1"}}})
	cl := c.Client()
	ctx := ctxT(t)
	a, err := cl.Master.Assign(ctx, client.AssignRequest{Replication: "001"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Replicas) != 2 {
		t.Fatalf("assign gave %d replicas, want 2", len(a.Replicas))
	}
	// Stop the replica that is not the write target.
	other := -1
	for i, v := range c.Volumes {
		if v.URL() != a.Location.URL {
			other = i
			c.StopVolume(i)
		}
	}
	_, err = cl.Blobs.Upload(ctx, a.Location.URL, a.FileID.String(), []byte("hello"), client.UploadOptions{})
	if err == nil {
		t.Fatal("write with a replica down succeeded")
	}
	if !strings.Contains(err.Error(), "replica") {
		t.Fatalf("error does not say a replica is missing: %v", err)
	}
	// The master stops assigning 001 once it notices: one server cannot hold two copies.
	defer func() {
		// With the replica back, a blob only one replica holds (as after a
		// write that reached it but not its peer) deletes cleanly: the
		// replica that never had it counts as done, not as a failure.
		c.RestartVolume(other)
		if _, err := cl.Blobs.Upload(ctx, a.Location.URL, a.FileID.String(), []byte("one copy"), client.UploadOptions{Replicate: true}); err != nil {
			t.Fatal(err)
		}
		if err := cl.Blobs.Delete(ctx, a.Location.URL, a.FileID.String(), false); err != nil {
			t.Fatalf("delete of a blob one replica never got: %v", err)
		}
		if err := cl.Blobs.Delete(ctx, a.Location.URL, a.FileID.String(), false); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("second delete: want not found, got %v", err)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := cl.Master.Assign(ctx, client.AssignRequest{Replication: "001"})
		if err != nil {
			if !errors.Is(err, client.ErrNoSpace) && !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("assign with too few servers: want no-space/unavailable, got %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("master still assigns 001 with one server left")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restarting the master never reissues a file key.
func TestMasterRestartNeverReissuesKeys(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	ctx := ctxT(t)
	seen := map[uint64]bool{}
	assign := func(round int) {
		mc := c.MasterClient()
		for i := 0; i < 200; i++ {
			a, err := mc.Assign(ctx, client.AssignRequest{Count: 3})
			if err != nil {
				t.Fatalf("round %d assign %d: %v", round, i, err)
			}
			for k := a.FileID.Key; k < a.FileID.Key+a.Count; k++ {
				if seen[k] {
					t.Fatalf("round %d: key %d issued twice", round, k)
				}
				seen[k] = true
			}
		}
	}
	assign(0)
	c.RestartMaster()
	assign(1)
	c.RestartMaster()
	assign(2)
}

// The blob HTTP API speaks every URL form and HTTP feature clients expect.
func TestBlobHTTPAPI(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Volume: func(_ int, cfg *volumed.Config) { cfg.MaxUploadBytes = 1 << 20 }})
	ctx := ctxT(t)
	mc := c.MasterClient()
	a, err := mc.Assign(ctx, client.AssignRequest{})
	if err != nil {
		t.Fatal(err)
	}
	host, fid := a.Location.URL, a.FileID
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")

	// Multipart POST, as `curl -F file=@photo.jpg` sends it.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "photo.jpg")
	fw.Write(data)
	mw.Close()
	resp := do(t, http.MethodPost, "http://"+host+"/"+fid.String(), mw.FormDataContentType(), form.Bytes(), nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusCreated || !strings.Contains(body, `"name":"photo.jpg"`) || !strings.Contains(body, `"size":36`) {
		t.Fatalf("multipart upload: %d %s", resp.StatusCode, body)
	}

	keyCookie := needle.FormatKeyCookie(fid.Key, fid.Cookie)
	vol := fmt.Sprint(fid.VolumeID)
	for _, p := range []string{vol + "," + keyCookie, vol + "," + keyCookie + ".jpg", vol + "/" + keyCookie,
		vol + "/" + keyCookie + ".jpg", vol + "/" + keyCookie + "/other.jpg"} {
		resp := do(t, http.MethodGet, "http://"+host+"/"+p, "", nil, nil)
		if got := readBody(t, resp); resp.StatusCode != 200 || got != string(data) {
			t.Fatalf("GET /%s: %d %q", p, resp.StatusCode, got)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "image/jpeg" {
			t.Fatalf("GET /%s: content type %q, want image/jpeg", p, ct)
		}
	}
	url := "http://" + host + "/" + fid.String()
	resp = do(t, http.MethodGet, url, "", nil, map[string]string{"Range": "bytes=10-19"})
	if got := readBody(t, resp); resp.StatusCode != http.StatusPartialContent || got != "abcdefghij" {
		t.Fatalf("single range: %d %q", resp.StatusCode, got)
	}
	resp = do(t, http.MethodGet, url, "", nil, map[string]string{"Range": "bytes=0-1,30-"})
	got := readBody(t, resp)
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") ||
		!strings.Contains(got, "01") || !strings.Contains(got, "uvwxyz") {
		t.Fatalf("multi range: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	resp = do(t, http.MethodGet, url, "", nil, map[string]string{"Range": "bytes=100-200"})
	if readBody(t, resp); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %d", resp.StatusCode)
	}
	resp = do(t, http.MethodHead, url, "", nil, nil)
	readBody(t, resp)
	etag := resp.Header.Get("ETag")
	if etag != `"`+needle.ETag(data)+`"` || resp.Header.Get("Content-Length") != "36" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("HEAD headers: %v", resp.Header)
	}
	resp = do(t, http.MethodGet, url, "", nil, map[string]string{"If-None-Match": etag})
	if readBody(t, resp); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	resp = do(t, http.MethodGet, url, "", nil, map[string]string{"If-Modified-Since": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)})
	if readBody(t, resp); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-Modified-Since: %d", resp.StatusCode)
	}

	// Bad input: each gets a clear status and a message.
	wrongCookie := needle.FileID{VolumeID: fid.VolumeID, Key: fid.Key, Cookie: fid.Cookie ^ 1}
	for _, tc := range []struct {
		method, path string
		body         []byte
		want         int
	}{
		{http.MethodGet, "/" + wrongCookie.String(), nil, http.StatusNotFound},
		{http.MethodGet, "/3,xyz", nil, http.StatusBadRequest},
		{http.MethodGet, "/not-a-fid", nil, http.StatusBadRequest},
		{http.MethodGet, "/9999," + keyCookie, nil, http.StatusNotFound},
		{http.MethodPut, "/" + wrongCookie.String(), []byte("x"), http.StatusConflict},
		{http.MethodPut, "/9999," + keyCookie, []byte("x"), http.StatusNotFound},
		{http.MethodPut, "/" + fid.String() + "?ttl=5q", []byte("x"), http.StatusBadRequest},
		{http.MethodPut, "/" + needle.FileID{VolumeID: fid.VolumeID, Key: fid.Key + 1, Cookie: 7}.String(), make([]byte, 2<<20), http.StatusRequestEntityTooLarge},
		{http.MethodPatch, "/" + fid.String(), nil, http.StatusMethodNotAllowed},
	} {
		resp := do(t, tc.method, "http://"+host+tc.path, "", tc.body, nil)
		body := readBody(t, resp)
		if resp.StatusCode != tc.want || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s: %d %s, want %d with an error message", tc.method, tc.path, resp.StatusCode, body, tc.want)
		}
	}

	// DELETE, then the blob is gone.
	resp = do(t, http.MethodDelete, url, "", nil, nil)
	if readBody(t, resp); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	resp = do(t, http.MethodGet, url, "", nil, nil)
	if readBody(t, resp); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", resp.StatusCode)
	}
}

// A truncated upload (the client promises more bytes than it sends) stores
// nothing.
func TestTruncatedUploadStoresNothing(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	ctx := ctxT(t)
	a, err := c.MasterClient().Assign(ctx, client.AssignRequest{})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + a.Location.URL + "/" + a.FileID.String()
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, url, pr)
	req.ContentLength = 1000
	go func() {
		pw.Write(make([]byte, 100))
		pw.CloseWithError(errors.New("client went away"))
	}()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		readBody(t, resp)
		if resp.StatusCode < 400 {
			t.Fatalf("truncated upload answered %d", resp.StatusCode)
		}
	}
	resp := do(t, http.MethodGet, url, "", nil, nil)
	if readBody(t, resp); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after truncated upload: %d, want 404", resp.StatusCode)
	}
}

// Vacuum reclaims the space of deleted blobs and keeps the live ones.
func TestVacuumThroughMaster(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	cl := c.Client()
	ctx := ctxT(t)
	keep := map[string][]byte{}
	var drop []string
	for i := 0; i < 200; i++ {
		data := randomBytes(t, 2000)
		fid, _, err := cl.Write(ctx, data, client.WriteOptions{Assign: client.AssignRequest{Collection: "vac"}})
		if err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			keep[fid] = data
		} else {
			drop = append(drop, fid)
		}
	}
	for _, fid := range drop {
		if err := cl.Delete(ctx, fid); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cl.Master.API().Vacuum(ctx, &masterpb.VacuumRequest{GarbageThreshold: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.CompactedVolumeIds) == 0 {
		t.Fatal("vacuum compacted nothing though 3/4 of the bytes are garbage")
	}
	for fid, data := range keep {
		got, err := cl.Read(ctx, fid)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after vacuum %s: %v", fid, err)
		}
	}
	for _, fid := range drop[:10] {
		if _, err := cl.Read(ctx, fid); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("deleted %s after vacuum: %v", fid, err)
		}
	}
	for _, st := range c.Volumes[0].Server().Store().Status() {
		if st.Collection == "vac" && st.DeletedBytes != 0 {
			t.Fatalf("volume %d still holds %d deleted bytes after vacuum", st.ID, st.DeletedBytes)
		}
	}
}

func do(t testing.TB, method, url, ctype string, body []byte, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A client writing to a file id of its own choosing with a huge key cannot
// exhaust the master's key space, before or after a master restart.
func TestForeignHugeKeyDoesNotExhaustKeys(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	ctx := ctxT(t)
	mc := c.MasterClient()
	a, err := mc.Assign(ctx, client.AssignRequest{})
	if err != nil {
		t.Fatal(err)
	}
	huge := needle.FileID{VolumeID: a.FileID.VolumeID, Key: 1<<64 - 2, Cookie: 0x12345678}
	resp := do(t, http.MethodPut, "http://"+a.Location.URL+"/"+huge.String(), "", []byte("mine"), nil)
	if readBody(t, resp); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT to a chosen fid: %d", resp.StatusCode)
	}
	for round := 0; round < 2; round++ {
		// Let heartbeats carry the huge key to the master.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			b, err := mc.Assign(ctx, client.AssignRequest{})
			if err != nil {
				t.Fatalf("round %d: assign after a foreign huge key: %v", round, err)
			}
			if b.FileID.Key > 1<<52 {
				t.Fatalf("round %d: master issued key %d", round, b.FileID.Key)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.RestartMaster()
		mc = c.MasterClient()
	}
}
