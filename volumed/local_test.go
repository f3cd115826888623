package volumed

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/client"
)

// An in-process upload stores what a PUT would, answers the same, and
// fails with the errors the HTTP client would return.
func TestLocalBlobs(t *testing.T) {
	s, base := startServer(t, 1<<20)
	lb := s.LocalBlobs()
	ctx := context.Background()
	data := bytes.Repeat([]byte("local blob "), 5000)
	opts := client.UploadOptions{Name: "n.txt", Mime: "text/plain", LastModified: 1700000000}
	got, err := lb.Upload(ctx, fidOf(7, 0x1234), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	viaHTTP, err := client.NewBlobClient(client.BlobClientConfig{}).Upload(ctx, s.Addr(), fidOf(8, 0x1234), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got != viaHTTP {
		t.Fatalf("local upload answered %+v, HTTP %+v", got, viaHTTP)
	}
	a := call(t, http.MethodGet, base+"/"+fidOf(7, 0x1234), nil)
	if a.status != http.StatusOK || a.body != string(data) || a.header.Get("Content-Type") != "text/plain" ||
		!strings.Contains(a.header.Get("Content-Disposition"), "n.txt") || a.header.Get("Etag") != `"`+got.ETag+`"` {
		t.Fatalf("GET of a local upload: %d %v, %d bytes", a.status, a.header, len(a.body))
	}

	// A BlobClient that knows the server as local takes this path.
	bc := client.NewBlobClient(client.BlobClientConfig{Local: map[string]client.LocalBlobs{s.Addr(): lb}})
	if _, err := bc.Upload(ctx, s.Addr(), fidOf(9, 1), []byte("x"), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if a := call(t, http.MethodGet, base+"/"+fidOf(9, 1), nil); a.body != "x" {
		t.Fatalf("GET after a BlobClient's local upload: %d %q", a.status, a.body)
	}

	for _, tc := range []struct {
		what string
		fid  string
		data []byte
		want error
	}{
		{"bad file id", "nonsense", data, client.ErrInvalid},
		{"key 0", fidOf(0, 1), data, client.ErrInvalid},
		{"over the upload limit", fidOf(10, 1), make([]byte, 1<<20+1), client.ErrInvalid},
		{"unknown volume", "9,0b00000001", data, client.ErrNotFound},
		{"another cookie on a stored key", fidOf(7, 0x9999), data, client.ErrPrecondition},
	} {
		if _, err := lb.Upload(ctx, tc.fid, tc.data, client.UploadOptions{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
	}

	// Reads: the same bytes and errors as a GET through the HTTP client.
	viaHTTPClient := client.NewBlobClient(client.BlobClientConfig{})
	for _, tc := range []struct {
		what string
		fid  string
		want error
	}{
		{"stored", fidOf(7, 0x1234), nil},
		{"unknown key", fidOf(99, 0x1234), client.ErrNotFound},
		{"wrong cookie", fidOf(7, 0x9999), client.ErrNotFound},
		{"unknown volume", "9,0b00000001", client.ErrNotFound},
		{"bad file id", "nonsense", client.ErrInvalid},
	} {
		local, lerr := lb.Read(ctx, tc.fid)
		remote, rerr := viaHTTPClient.Get(ctx, s.Addr(), tc.fid)
		if !errors.Is(lerr, tc.want) || !errors.Is(rerr, tc.want) || (tc.want == nil && (!bytes.Equal(local, data) || !bytes.Equal(remote, data))) {
			t.Errorf("read %s: local %d bytes, %v; HTTP %d bytes, %v; want %v", tc.what, len(local), lerr, len(remote), rerr, tc.want)
		}
	}
	// A BlobClient that knows the server as local reads through it,
	// ranges included.
	if got, err := bc.GetRange(ctx, s.Addr(), fidOf(7, 0x1234), 11, 22); err != nil || !bytes.Equal(got, data[11:33]) {
		t.Fatalf("local range read: %q, %v", got, err)
	}
	if _, err := bc.GetRange(ctx, s.Addr(), fidOf(7, 0x1234), int64(len(data)), 1); err == nil {
		t.Fatal("local range read past the end succeeded")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Read(ctx, fidOf(7, 0x1234)); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("read after Close: %v, want ErrUnavailable", err)
	}
	if _, err := lb.Upload(ctx, fidOf(11, 1), data, client.UploadOptions{}); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("upload after Close: %v, want ErrUnavailable", err)
	}
}
