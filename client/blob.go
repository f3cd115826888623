package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// BlobClientConfig configures a BlobClient.
type BlobClientConfig struct {
	// MaxConnsPerHost bounds open connections to one volume server; 0 means 64.
	MaxConnsPerHost int
	// Timeout bounds one request; 0 means 60s.
	Timeout time.Duration
}

// BlobClient moves blob bytes to and from volume servers over HTTP
// keep-alive connections. Safe for concurrent use.
type BlobClient struct {
	http *http.Client
	tr   *http.Transport
}

// NewBlobClient returns a client with its own connection pool.
func NewBlobClient(cfg BlobClientConfig) *BlobClient {
	if cfg.MaxConnsPerHost <= 0 {
		cfg.MaxConnsPerHost = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * cfg.MaxConnsPerHost,
		MaxIdleConnsPerHost: cfg.MaxConnsPerHost,
		MaxConnsPerHost:     cfg.MaxConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &BlobClient{http: &http.Client{Transport: tr, Timeout: cfg.Timeout}, tr: tr}
}

// Close drops idle connections.
func (b *BlobClient) Close() { b.tr.CloseIdleConnections() }

// UploadOptions are the blob's optional metadata.
type UploadOptions struct {
	Name         string
	Mime         string
	TTL          string
	LastModified int64 // unix seconds; 0 lets the server choose
	// Replicate marks a copy forwarded by a volume server to a peer replica:
	// the receiver stores it and does not forward it again.
	Replicate bool
}

// UploadResult is the volume server's answer to a write.
type UploadResult struct {
	Name  string `json:"name,omitempty"`
	Size  int64  `json:"size"`
	ETag  string `json:"eTag"`
	Error string `json:"error,omitempty"`
}

// Upload stores data as fid on the volume server at host (host:port) with a
// raw PUT. It returns once the server and, unless opts.Replicate, every
// replica of the volume hold the bytes.
func (b *BlobClient) Upload(ctx context.Context, host, fid string, data []byte, opts UploadOptions) (UploadResult, error) {
	q := url.Values{}
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	if opts.TTL != "" {
		q.Set("ttl", opts.TTL)
	}
	if opts.LastModified != 0 {
		q.Set("ts", strconv.FormatInt(opts.LastModified, 10))
	}
	if opts.Replicate {
		q.Set("type", "replicate")
	}
	u := "http://" + host + "/" + fid
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(data))
	if err != nil {
		return UploadResult{}, fmt.Errorf("upload %s to %s: %w: %v", fid, host, ErrInvalid, err)
	}
	if opts.Mime != "" {
		req.Header.Set("Content-Type", opts.Mime)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return UploadResult{}, fmt.Errorf("upload %s to %s: %w: %v", fid, host, ErrUnavailable, err)
	}
	defer drain(resp.Body)
	var res UploadResult
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(body, &res)
		return UploadResult{}, httpError(fmt.Sprintf("upload %s to %s", fid, host), resp.StatusCode, res.Error, body)
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return UploadResult{}, fmt.Errorf("upload %s to %s: bad answer %q: %w", fid, host, body, ErrInternal)
	}
	return res, nil
}

// Get reads the whole blob fid from host.
func (b *BlobClient) Get(ctx context.Context, host, fid string) ([]byte, error) {
	return b.get(ctx, host, fid, -1, 0)
}

// GetRange reads length bytes of blob fid from offset.
func (b *BlobClient) GetRange(ctx context.Context, host, fid string, offset, length int64) ([]byte, error) {
	if offset < 0 || length <= 0 {
		return nil, fmt.Errorf("read %s: %w: range offset %d length %d", fid, ErrInvalid, offset, length)
	}
	length = min(length, math.MaxInt64-offset) // "to the end" must not overflow offset+length
	return b.get(ctx, host, fid, offset, length)
}

func (b *BlobClient) get(ctx context.Context, host, fid string, offset, length int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/"+fid, nil)
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w: %v", fid, host, ErrInvalid, err)
	}
	if offset >= 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w: %v", fid, host, ErrUnavailable, err)
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, httpError(fmt.Sprintf("read %s from %s", fid, host), resp.StatusCode, "", body)
	}
	var buf []byte
	if resp.ContentLength >= 0 {
		buf = make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, fmt.Errorf("read %s from %s: %w: %v", fid, host, ErrUnavailable, err)
		}
	} else if buf, err = io.ReadAll(resp.Body); err != nil {
		return nil, fmt.Errorf("read %s from %s: %w: %v", fid, host, ErrUnavailable, err)
	}
	if offset >= 0 && resp.StatusCode == http.StatusOK {
		// The server ignored Range and sent the whole blob: cut the range out.
		if offset >= int64(len(buf)) {
			return nil, fmt.Errorf("read %s from %s: %w: range offset %d is past the blob's %d bytes", fid, host, ErrInvalid, offset, len(buf))
		}
		buf = buf[offset:min(offset+length, int64(len(buf)))]
	}
	return buf, nil
}

// Delete removes blob fid from host (and, unless replicate, from the other
// replicas of its volume).
func (b *BlobClient) Delete(ctx context.Context, host, fid string, replicate bool) error {
	u := "http://" + host + "/" + fid
	if replicate {
		u += "?type=replicate"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return fmt.Errorf("delete %s on %s: %w: %v", fid, host, ErrInvalid, err)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return fmt.Errorf("delete %s on %s: %w: %v", fid, host, ErrUnavailable, err)
	}
	defer drain(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted, http.StatusNoContent:
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return httpError(fmt.Sprintf("delete %s on %s", fid, host), resp.StatusCode, "", body)
}

// httpError maps an HTTP status to a sentinel, keeping the server's message.
func httpError(what string, code int, msg string, body []byte) error {
	if msg == "" {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		} else {
			msg = string(bytes.TrimSpace(body))
		}
	}
	var sentinel error
	switch {
	case code == http.StatusNotFound:
		sentinel = ErrNotFound
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusRequestedRangeNotSatisfiable:
		sentinel = ErrInvalid
	case code == http.StatusForbidden || code == http.StatusUnauthorized:
		sentinel = ErrPermission
	case code == http.StatusConflict:
		sentinel = ErrPrecondition
	case code == http.StatusInsufficientStorage:
		sentinel = ErrNoSpace
	case code == http.StatusServiceUnavailable || code == http.StatusBadGateway || code == http.StatusGatewayTimeout:
		sentinel = ErrUnavailable
	default:
		sentinel = ErrInternal
	}
	return fmt.Errorf("%s: HTTP %d %s: %w", what, code, msg, sentinel)
}

func drain(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	_ = r.Close()
}

// IsRetryable reports whether another replica might succeed where err failed.
func IsRetryable(err error) bool {
	return err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrPermission) && !errors.Is(err, context.Canceled)
}
