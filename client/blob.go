package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// BlobClientConfig configures a BlobClient.
type BlobClientConfig struct {
	// MaxConnsPerHost bounds open connections to one volume server; 0 means 64.
	MaxConnsPerHost int
	// Timeout bounds one request; 0 means 60s.
	Timeout time.Duration
	// Local maps the address (host:port) of a volume server running in
	// the same process to its in-process reads and writes: they skip
	// HTTP and the loopback socket (two copies of every byte).
	Local map[string]LocalBlobs
}

// LocalBlobs is a volume server in the same process (volumed's
// LocalBlobs). Upload behaves as BlobClient.Upload to its address, and
// Read as BlobClient.Get (the caller owns the bytes), errors included
// (see StatusError).
type LocalBlobs interface {
	Upload(ctx context.Context, fid string, data []byte, opts UploadOptions) (UploadResult, error)
	Read(ctx context.Context, fid string) ([]byte, error)
}

// StatusError is the error of a blob request that the volume server
// answered with HTTP status code and message msg.
func StatusError(what string, code int, msg string) error {
	return httpError(what, code, msg, nil)
}

// BlobClient moves blob bytes to and from volume servers over HTTP/1.1
// keep-alive connections. It uses fasthttp, whose client runs a request on
// the caller's goroutine without the per-connection reader and writer
// goroutines of net/http: for small blobs that is a fifth more requests per
// second on the same cores. A context's deadline bounds a request; its
// cancellation is seen before a request starts, not while it runs (the
// Timeout bounds that). Safe for concurrent use.
type BlobClient struct {
	fc      *fasthttp.Client
	timeout time.Duration
	local   map[string]LocalBlobs
}

// NewBlobClient returns a client with its own connection pool.
func NewBlobClient(cfg BlobClientConfig) *BlobClient {
	if cfg.MaxConnsPerHost <= 0 {
		cfg.MaxConnsPerHost = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	fc := &fasthttp.Client{
		Name:                          "kelp",
		MaxConnsPerHost:               cfg.MaxConnsPerHost,
		MaxConnWaitTimeout:            cfg.Timeout,
		MaxIdleConnDuration:           90 * time.Second,
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
	}
	return &BlobClient{fc: fc, timeout: cfg.Timeout, local: cfg.Local}
}

// Close drops idle connections.
func (b *BlobClient) Close() { b.fc.CloseIdleConnections() }

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

// do runs one request within ctx's deadline and the client's timeout.
func (b *BlobClient) do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(b.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := b.fc.DoDeadline(req, resp, deadline)
	if errors.Is(err, fasthttp.ErrTimeout) && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// transportError wraps a failure to get any answer from host.
func transportError(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %v", what, ErrUnavailable, err)
}

// Upload stores data as fid on the volume server at host (host:port) with a
// raw PUT. It returns once the server and, unless opts.Replicate, every
// replica of the volume hold the bytes.
func (b *BlobClient) Upload(ctx context.Context, host, fid string, data []byte, opts UploadOptions) (UploadResult, error) {
	if l := b.local[host]; l != nil {
		if err := ctx.Err(); err != nil {
			return UploadResult{}, fmt.Errorf("upload %s to %s: %w", fid, host, err)
		}
		return l.Upload(ctx, fid, data, opts)
	}
	what := "upload " + fid + " to " + host
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
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPut)
	req.SetRequestURI(u)
	req.Header.SetNoDefaultContentType(true)
	if opts.Mime != "" {
		req.Header.SetContentType(opts.Mime)
	}
	req.SetBodyRaw(data)
	if err := b.do(ctx, req, resp); err != nil {
		return UploadResult{}, transportError(what, err)
	}
	body := resp.Body()
	var res UploadResult
	if code := resp.StatusCode(); code != http.StatusCreated && code != http.StatusOK {
		_ = json.Unmarshal(body, &res)
		return UploadResult{}, httpError(what, code, res.Error, body)
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return UploadResult{}, fmt.Errorf("%s: bad answer %q: %w", what, body, ErrInternal)
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
	what := "read " + fid + " from " + host
	if l := b.local[host]; l != nil {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		buf, err := l.Read(ctx, fid)
		if err != nil || offset < 0 {
			return buf, err
		}
		if offset >= int64(len(buf)) {
			return nil, StatusError(what, http.StatusRequestedRangeNotSatisfiable,
				fmt.Sprintf("range offset %d is past the blob's %d bytes", offset, len(buf)))
		}
		return buf[offset:min(offset+length, int64(len(buf)))], nil
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + host + "/" + fid)
	if offset >= 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-"+strconv.FormatInt(offset+length-1, 10))
	}
	if err := b.do(ctx, req, resp); err != nil {
		return nil, transportError(what, err)
	}
	code := resp.StatusCode()
	if code != http.StatusOK && code != http.StatusPartialContent {
		return nil, httpError(what, code, "", resp.Body())
	}
	// The response's buffer goes back to a pool: copy the bytes out.
	buf := append([]byte(nil), resp.Body()...)
	if offset >= 0 && code == http.StatusOK {
		// The server ignored Range and sent the whole blob: cut the range out.
		if offset >= int64(len(buf)) {
			return nil, fmt.Errorf("%s: %w: range offset %d is past the blob's %d bytes", what, ErrInvalid, offset, len(buf))
		}
		buf = buf[offset:min(offset+length, int64(len(buf)))]
	}
	return buf, nil
}

// Delete removes blob fid from host (and, unless replicate, from the other
// replicas of its volume).
func (b *BlobClient) Delete(ctx context.Context, host, fid string, replicate bool) error {
	what := "delete " + fid + " on " + host
	u := "http://" + host + "/" + fid
	if replicate {
		u += "?type=replicate"
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodDelete)
	req.SetRequestURI(u)
	if err := b.do(ctx, req, resp); err != nil {
		return transportError(what, err)
	}
	switch code := resp.StatusCode(); code {
	case http.StatusOK, http.StatusAccepted, http.StatusNoContent:
		return nil
	default:
		return httpError(what, code, "", resp.Body())
	}
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

// IsRetryable reports whether another replica might succeed where err failed.
func IsRetryable(err error) bool {
	return err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrPermission) && !errors.Is(err, context.Canceled)
}
