package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kelpfs/kelp/needle"
)

// filerBlobTimeout bounds one request of a FilerBlobs made without an
// http.Client: the filer passes a blob to or from a volume server within it.
const filerBlobTimeout = 60 * time.Second

// FilerBlobs reads, writes and deletes blobs by file id through a filer's
// HTTP blob proxy (GET /?blob=<fid>, POST /?blob, DELETE /?blob=<fid>), for
// a client that reaches the filer but not the volume servers behind it. A write is placed by the filer's
// default replication and collection, and must fit in one of its chunks.
// Safe for concurrent use.
type FilerBlobs struct {
	base string // "http://host:port/"
	hc   *http.Client
}

// NewFilerBlobs returns a client of the filer whose HTTP API listens at
// httpAddr ("host:port"; "http://host:port" is taken as well). A nil hc
// means a client of its own, with a 60 s bound on each request and a pool
// of keep-alive connections to the filer.
func NewFilerBlobs(httpAddr string, hc *http.Client) *FilerBlobs {
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		hc = &http.Client{Transport: t, Timeout: filerBlobTimeout}
	}
	base := strings.TrimSuffix(httpAddr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &FilerBlobs{base: base + "/", hc: hc}
}

// Read returns the bytes of blob fid. A blob that does not exist is an
// error wrapping ErrNotFound; a malformed fid one wrapping ErrInvalid.
func (f *FilerBlobs) Read(ctx context.Context, fid string) ([]byte, error) {
	what := "read " + fid + " through filer " + f.base
	if _, err := needle.ParseFileID(fid); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrInvalid, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+"?blob="+url.QueryEscape(fid), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrInvalid, err)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, f.transportError(ctx, what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, f.transportError(ctx, what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, httpError(what, resp.StatusCode, "", body)
	}
	return body, nil
}

// Write stores data as a new blob in the filer's cluster and returns its
// file id and ETag. Data longer than the filer's chunk size is refused
// (ErrInvalid).
func (f *FilerBlobs) Write(ctx context.Context, data []byte) (fid, etag string, err error) {
	what := fmt.Sprintf("write %d bytes through filer %s", len(data), f.base)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.base+"?blob", bytes.NewReader(data))
	if err != nil {
		return "", "", fmt.Errorf("%s: %w: %v", what, ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := f.hc.Do(req)
	if err != nil {
		return "", "", f.transportError(ctx, what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", f.transportError(ctx, what, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", "", httpError(what, resp.StatusCode, "", body)
	}
	var res struct {
		FileID string `json:"fid"`
		ETag   string `json:"eTag"`
		Size   int64  `json:"size"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return "", "", fmt.Errorf("%s: bad answer %q: %w", what, body, ErrInternal)
	}
	if _, perr := needle.ParseFileID(res.FileID); perr != nil || res.Size != int64(len(data)) {
		return "", "", fmt.Errorf("%s: bad answer %q: %w", what, body, ErrInternal)
	}
	return res.FileID, res.ETag, nil
}

// Delete removes blob fid from its volume servers. Only for a blob the
// caller wrote and no entry names: a file's chunks are the filer's to
// delete. A blob that does not exist is an error wrapping ErrNotFound; a
// malformed fid one wrapping ErrInvalid.
func (f *FilerBlobs) Delete(ctx context.Context, fid string) error {
	what := "delete " + fid + " through filer " + f.base
	if _, err := needle.ParseFileID(fid); err != nil {
		return fmt.Errorf("%s: %w: %v", what, ErrInvalid, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, f.base+"?blob="+url.QueryEscape(fid), nil)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", what, ErrInvalid, err)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return f.transportError(ctx, what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return f.transportError(ctx, what, err)
	}
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return httpError(what, resp.StatusCode, "", body)
	}
	return nil
}

// transportError is transportError, but a request that ran out of the
// http.Client's own time, not ctx's, wraps ErrTimeout.
func (f *FilerBlobs) transportError(ctx context.Context, what string, err error) error {
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %v", what, ErrTimeout, err)
	}
	return transportError(what, err)
}
