package volumed

import (
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
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
	"github.com/kelpfs/kelp/volumed/storage"
)

// The blob API runs on fasthttp: one worker goroutine per connection from a
// pool, pooled request contexts, no header maps. The price is its rule that
// a RequestCtx and every []byte taken from it (path, query, headers, body)
// are valid only until the handler returns. Here:
//   - the body of a raw upload becomes the needle's Data without a copy:
//     storage.Store.Write encodes it into the volume's record buffer before
//     it returns, and the peer forwards (client.BlobClient, which runs a
//     request on the caller's goroutine) are all waited for before the
//     handler returns;
//   - a needle's name and mime type are copied into new slices;
//   - a read's answer body is the needle's own buffer (Store.Read returns
//     fresh memory), handed over with SetBodyRaw.

const (
	// httpReadTimeout bounds reading one request (header and a body of up
	// to slowBodySize) and, for a keep-alive connection, starts at its
	// first byte.
	httpReadTimeout = 30 * time.Second
	// httpIdleTimeout closes keep-alive connections idle this long; longer
	// than client.BlobClient keeps idle connections (90s), so a client does
	// not send on a connection the server is closing.
	httpIdleTimeout = 2 * time.Minute
	// httpReadBufferSize is the per-connection read buffer, which also
	// bounds the request header (431 above it).
	httpReadBufferSize = 16 << 10
	// uploadSlack is what a multipart upload may carry on top of
	// Config.MaxUploadBytes of file data (boundaries, part headers, other
	// fields).
	uploadSlack = 64 << 10
	// slowBodySize and minUploadRate: a body larger than slowBodySize (or
	// chunked) gets httpReadTimeout plus one second per minUploadRate bytes.
	slowBodySize  = 1 << 20
	minUploadRate = 256 << 10
	// forwardTimeout bounds the master lookup and peer forwards of one
	// write or delete: fasthttp's RequestCtx is not a context that ends
	// when the client goes away.
	forwardTimeout = 30 * time.Second
	// lingerTimeout and lingerBytes bound how long and how much of a refused
	// request body is read and dropped before closing its connection.
	lingerTimeout = time.Second
	lingerBytes   = 64 << 20
)

// errTooLarge means an upload's data is over Config.MaxUploadBytes.
var errTooLarge = errors.New("volume: upload too large")

// newHTTPServer configures the blob API server.
func (s *Server) newHTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      s.handleHTTP,
		ErrorHandler:                 s.handleRequestError,
		HeaderReceived:               s.requestConfig,
		Name:                         "kelp",
		ReadTimeout:                  httpReadTimeout,
		IdleTimeout:                  httpIdleTimeout,
		ReadBufferSize:               httpReadBufferSize,
		MaxRequestBodySize:           maxRequestBody(s.cfg.MaxUploadBytes),
		DisablePreParseMultipartForm: true, // parseUpload reads the form from the body
		ReduceMemoryUsage:            false,
		CloseOnShutdown:              true, // answers during Close say Connection: close
		Logger:                       fasthttpLogger{s.log},
	}
}

// maxRequestBody is fasthttp's body limit for an upload limit: the limit
// plus multipart slack, within an int.
func maxRequestBody(maxUpload int64) int {
	if maxUpload > int64(^uint(0)>>1)-uploadSlack {
		return int(^uint(0) >> 1)
	}
	return int(maxUpload + uploadSlack)
}

// requestConfig gives large and chunked request bodies more time to arrive
// than httpReadTimeout.
func (s *Server) requestConfig(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	cl := int64(h.ContentLength()) // -1: chunked; -2: no body
	if cl == -1 {
		cl = s.cfg.MaxUploadBytes
	}
	if cl <= slowBodySize {
		return fasthttp.RequestConfig{}
	}
	cl = min(cl, int64(maxRequestBody(s.cfg.MaxUploadBytes)))
	return fasthttp.RequestConfig{ReadTimeout: httpReadTimeout + time.Duration(cl/minUploadRate)*time.Second}
}

// fasthttpLogger sends fasthttp's log lines to slog at warn level.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn("http: " + fmt.Sprintf(format, args...))
}

// handleHTTP routes the blob API: GET/HEAD/POST/PUT/DELETE on every blob
// URL form, and /status.
func (s *Server) handleHTTP(ctx *fasthttp.RequestCtx) {
	defer s.recoverPanic(ctx)
	switch string(ctx.Path()) {
	case "/status":
		s.handleStatus(ctx)
		return
	case "/", "/favicon.ico":
		writeError(ctx, fasthttp.StatusNotFound, "no blob here: use /<volume>,<key><cookie>")
		return
	}
	switch {
	case ctx.IsGet(), ctx.IsHead():
		s.handleRead(ctx)
	case ctx.IsPost(), ctx.IsPut():
		s.handleWrite(ctx)
	case ctx.IsDelete():
		s.handleDelete(ctx)
	default:
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST, PUT, DELETE")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" not allowed")
	}
}

// recoverPanic answers 500 and logs a handler's panic rather than letting
// it end the process (net/http did the same; fasthttp does not).
func (s *Server) recoverPanic(ctx *fasthttp.RequestCtx) {
	p := recover()
	if p == nil {
		return
	}
	s.log.Error("panic serving a blob request", "method", string(ctx.Method()), "path", string(ctx.Path()),
		"panic", p, "stack", string(debug.Stack()))
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	writeError(ctx, fasthttp.StatusInternalServerError, "internal error")
}

// handleRequestError answers a request fasthttp could not read (the handler
// is not called, so nothing is stored). A refused body is drained before
// the connection closes so that the client gets to read the 413.
func (s *Server) handleRequestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		if c, ok := ctx.Conn().(*lingerConn); ok {
			c.lingerOnClose()
		}
		msg := fmt.Sprintf("upload is over the %d byte limit", s.cfg.MaxUploadBytes)
		if cl := ctx.Request.Header.ContentLength(); cl > 0 {
			msg = fmt.Sprintf("upload of %d bytes is over the %d byte limit", cl, s.cfg.MaxUploadBytes)
		}
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, msg)
	case errors.As(err, &small):
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request header too large")
	case errors.As(err, &netErr) && netErr.Timeout():
		writeError(ctx, fasthttp.StatusRequestTimeout, "request timeout")
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "bad request: "+err.Error())
	}
}

func (s *Server) handleStatus(ctx *fasthttp.RequestCtx) {
	type vol struct {
		ID           uint32 `json:"id"`
		Collection   string `json:"collection,omitempty"`
		Replication  string `json:"replication"`
		TTL          string `json:"ttl,omitempty"`
		Size         int64  `json:"size"`
		FileCount    uint64 `json:"fileCount"`
		DeleteCount  uint64 `json:"deleteCount"`
		DeletedBytes int64  `json:"deletedBytes"`
		ReadOnly     bool   `json:"readOnly"`
	}
	out := struct {
		URL        string `json:"url"`
		MaxVolumes int    `json:"maxVolumes"`
		Volumes    []vol  `json:"volumes"`
	}{URL: s.url, MaxVolumes: s.store.MaxVolumeCount(), Volumes: []vol{}}
	for _, v := range s.store.Status() {
		out.Volumes = append(out.Volumes, vol{v.ID, v.Collection, v.Replication.String(), v.TTL.String(),
			v.Size, v.FileCount, v.DeleteCount, v.DeletedBytes, v.ReadOnly})
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (s *Server) handleRead(ctx *fasthttp.RequestCtx) {
	bp, err := needle.ParseBlobPath(string(ctx.Path()))
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	fid := bp.FileID
	n, err := s.store.Read(fid.VolumeID, fid.Key, fid.Cookie)
	if err != nil {
		s.storeError(ctx, fid, err)
		return
	}
	var tagBuf [12]byte
	etag := append(append(append(tagBuf[:0], '"'), needle.ETag(n.Data)...), '"')
	modTime := time.Unix(int64(n.LastModified), 0)
	if n.LastModified == 0 {
		modTime = time.Unix(0, int64(n.AppendAtNs))
	}
	h := &ctx.Response.Header
	h.Set("Accept-Ranges", "bytes")
	if name := bp.Name; name != "" || len(n.Name) > 0 {
		if name == "" {
			name = string(n.Name)
		}
		if cd := mime.FormatMediaType("inline", map[string]string{"filename": name}); cd != "" {
			h.Set("Content-Disposition", cd)
		}
	}
	conds, plain := readCondsOf(&ctx.Request.Header)
	if plain {
		// The common whole-blob read.
		h.SetBytesV("ETag", etag)
		setLastModified(h, modTime)
		h.SetContentType(blobContentType(n, bp))
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.Response.SetBodyRaw(n.Data) // HEAD: fasthttp sends its length only
		return
	}
	a := answerRead(conds, n.Data, string(etag), modTime, blobContentType(n, bp))
	if a.validators {
		h.SetBytesV("ETag", etag)
		if a.status != fasthttp.StatusNotModified { // RFC 9110 15.4.5: the ETag is enough
			setLastModified(h, modTime)
		}
	}
	switch a.status {
	case fasthttp.StatusNotModified:
		ctx.SetStatusCode(a.status) // no body, no Content-Type
	case fasthttp.StatusPreconditionFailed:
		writeError(ctx, a.status, "precondition failed: the blob's ETag or modification time does not match")
	case fasthttp.StatusRequestedRangeNotSatisfiable:
		h.Set("Content-Range", a.contentRange)
		writeError(ctx, a.status, fmt.Sprintf("range %q not satisfiable: the blob has %d bytes", conds.rangeSpec, len(n.Data)))
	default:
		if a.contentRange != "" {
			h.Set("Content-Range", a.contentRange)
		}
		h.SetContentType(a.contentType)
		ctx.SetStatusCode(a.status)
		ctx.Response.SetBodyRaw(a.body)
	}
}

// readCondsOf copies the Range and conditional headers of a read; plain
// means there are none.
func readCondsOf(h *fasthttp.RequestHeader) (c readConds, plain bool) {
	rng, inm, ims := h.Peek("Range"), h.Peek("If-None-Match"), h.Peek("If-Modified-Since")
	im, ius := h.Peek("If-Match"), h.Peek("If-Unmodified-Since")
	if len(rng)+len(inm)+len(ims)+len(im)+len(ius) == 0 {
		return readConds{}, true
	}
	c = readConds{
		ifMatch: string(im), ifNoneMatch: string(inm), ifModifiedSince: string(ims), ifUnmodifiedSince: string(ius),
		rangeSpec: string(rng),
	}
	if len(rng) > 0 {
		c.ifRange = string(h.Peek("If-Range"))
	}
	return c, false
}

func setLastModified(h *fasthttp.ResponseHeader, t time.Time) {
	if !isZeroTime(t) {
		h.SetLastModified(t)
	}
}

// blobContentType is the stored mime type, else the type of the extension
// in the URL or in the stored name, else application/octet-stream.
func blobContentType(n *needle.Needle, bp needle.BlobPath) string {
	if len(n.Mime) > 0 {
		return string(n.Mime)
	}
	if bp.Ext != "" {
		if t := mime.TypeByExtension(bp.Ext); t != "" {
			return t
		}
	}
	if i := bytes.LastIndexByte(n.Name, '.'); i > 0 {
		if t := mime.TypeByExtension(string(n.Name[i:])); t != "" {
			return t
		}
	}
	return "application/octet-stream"
}

// upload is a parsed write request.
type upload struct {
	fid       needle.FileID
	n         *needle.Needle
	replicate bool // forwarded by a peer: store only
}

func (s *Server) handleWrite(ctx *fasthttp.RequestCtx) {
	up, status, err := s.parseUpload(ctx)
	if err != nil {
		writeError(ctx, status, err.Error())
		return
	}
	etag, status, err := s.write(up)
	if err != nil {
		writeError(ctx, status, err.Error())
		return
	}
	writeJSON(ctx, fasthttp.StatusCreated, struct {
		ETag string `json:"eTag"`
		Name string `json:"name"`
		Size int    `json:"size"`
	}{etag, string(up.n.Name), len(up.n.Data)})
}

// write stores an upload here and on every peer replica at once; it
// succeeds only if all did, with the data's ETag. On failure it returns
// the HTTP status that answers it. Every forward ends before write
// returns: they read up.n.Data, which may be a request's body.
func (s *Server) write(up *upload) (string, int, error) {
	rctx, cancel := context.WithTimeout(s.reqCtx, forwardTimeout)
	defer cancel()
	peers, err := s.peersFor(rctx, up.fid.VolumeID, up.replicate)
	if err != nil {
		return "", s.storeStatus(up.fid, err, true), err
	}
	errc := make(chan error, len(peers))
	for _, peer := range peers {
		go func() { errc <- s.forwardWrite(rctx, peer, up) }()
	}
	w, localErr := s.store.Write(up.fid.VolumeID, up.n)
	var peerErrs []error
	for range peers {
		if err := <-errc; err != nil {
			peerErrs = append(peerErrs, err)
		}
	}
	if localErr != nil {
		return "", s.storeStatus(up.fid, localErr, true), localErr
	}
	if len(peerErrs) > 0 {
		err := errors.Join(peerErrs...)
		s.log.Error("write not replicated to every replica", "fid", up.fid.String(), "err", err)
		return "", fasthttp.StatusServiceUnavailable, fmt.Errorf("write %s stored here but not on every replica: %v", up.fid, err)
	}
	return w.ETag, 0, nil
}

// parseUpload turns a raw PUT/POST body or the first file of a multipart
// form into a needle. The needle's Data may alias the request body; its
// Name and Mime do not alias the request.
func (s *Server) parseUpload(ctx *fasthttp.RequestCtx) (*upload, int, error) {
	bp, err := needle.ParseBlobPath(string(ctx.Path()))
	if err != nil {
		return nil, fasthttp.StatusBadRequest, err
	}
	if bp.FileID.Key == 0 { // before the body is looked at (newUpload checks again)
		return nil, fasthttp.StatusBadRequest, fmt.Errorf("file id %s: key 0 is reserved", bp.FileID)
	}
	q := ctx.QueryArgs()
	var data []byte
	limit := s.cfg.MaxUploadBytes
	body := ctx.Request.Body()
	name := q.Peek("name")
	ctype := ctx.Request.Header.ContentType()
	if form, boundary := multipartForm(ctx, ctype); form {
		part, err := firstFilePart(multipart.NewReader(bytes.NewReader(body), boundary))
		if err != nil {
			return nil, fasthttp.StatusBadRequest, fmt.Errorf("multipart upload: %w", err)
		}
		if fn := part.FileName(); fn != "" && len(name) == 0 {
			name = []byte(fn)
		}
		ctype = []byte(part.Header.Get("Content-Type"))
		if data, err = readAllLimited(part, limit); err != nil {
			return nil, uploadStatus(err), fmt.Errorf("multipart upload: %w", err)
		}
	} else {
		if int64(len(body)) > limit {
			return nil, fasthttp.StatusRequestEntityTooLarge, fmt.Errorf("upload of %d bytes is over the %d byte limit", len(body), limit)
		}
		// fasthttp answers a body shorter than its Content-Length with an
		// error and never calls the handler; this only guards that.
		if cl := ctx.Request.Header.ContentLength(); cl >= 0 && len(body) != cl {
			return nil, fasthttp.StatusBadRequest, fmt.Errorf("upload cut short: %d of %d bytes", len(body), cl)
		}
		data = body
	}
	var ts uint64
	if v := q.Peek("ts"); len(v) > 0 {
		if ts, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			return nil, fasthttp.StatusBadRequest, fmt.Errorf("bad ts %q: want unix seconds", v)
		}
	}
	up, err := newUpload(bp.FileID, data, name, ctype, ts, string(q.Peek("ttl")), string(q.Peek("type")) == "replicate")
	if err != nil {
		return nil, fasthttp.StatusBadRequest, err
	}
	return up, 0, nil
}

// newUpload makes the upload of data as fid, for a PUT or an in-process
// write: key 0 is refused, the default content types are not stored,
// names and types are copied (data is not), LastModified is ts or now,
// and the needle must fit the format.
func newUpload(fid needle.FileID, data, name, ctype []byte, ts uint64, ttl string, replicate bool) (*upload, error) {
	if fid.Key == 0 {
		return nil, fmt.Errorf("file id %s: key 0 is reserved", fid)
	}
	n := &needle.Needle{Cookie: fid.Cookie, ID: fid.Key, Data: data, Name: append([]byte{}, name...)}
	if len(ctype) > 0 && !bytes.HasPrefix(ctype, []byte("application/octet-stream")) && !bytes.HasPrefix(ctype, []byte("multipart/")) {
		n.Mime = bytes.Clone(ctype)
	}
	n.LastModified = ts
	if ts == 0 {
		n.LastModified = uint64(time.Now().Unix())
	}
	var err error
	if n.TTL, err = needle.ParseTTL(ttl); err != nil {
		return nil, err
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return &upload{fid: fid, n: n, replicate: replicate}, nil
}

// multipartForm reports whether a write is a POST of a multipart form, and
// its boundary.
func multipartForm(ctx *fasthttp.RequestCtx, ctype []byte) (bool, string) {
	const form = "multipart/form-data"
	if !ctx.IsPost() || len(ctype) < len(form) || !bytes.EqualFold(ctype[:len(form)], []byte(form)) {
		return false, ""
	}
	mediaType, params, err := mime.ParseMediaType(string(ctype))
	if err != nil || mediaType != form {
		return false, ""
	}
	return true, params["boundary"]
}

func firstFilePart(mr *multipart.Reader) (*multipart.Part, error) {
	for {
		part, err := mr.NextPart()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("no file part in the form")
			}
			return nil, err
		}
		if part.FileName() != "" || part.FormName() == "file" {
			return part, nil
		}
	}
}

// readAllLimited reads r into new memory; more than limit bytes is
// errTooLarge.
func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: file data is over the %d byte limit", errTooLarge, limit)
	}
	return data, nil
}

func uploadStatus(err error) int {
	if errors.Is(err, errTooLarge) {
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusBadRequest
}

func (s *Server) handleDelete(ctx *fasthttp.RequestCtx) {
	bp, err := needle.ParseBlobPath(string(ctx.Path()))
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	fid := bp.FileID
	replicate := string(ctx.QueryArgs().Peek("type")) == "replicate"
	rctx, cancel := context.WithTimeout(s.reqCtx, forwardTimeout)
	defer cancel()
	peers, err := s.peersFor(rctx, fid.VolumeID, replicate)
	if err != nil {
		s.storeError(ctx, fid, err)
		return
	}
	errc := make(chan error, len(peers))
	for _, peer := range peers {
		go func() { errc <- s.blobs.Delete(rctx, peer, fid.String(), true) }()
	}
	// Deletes are idempotent: a replica that no longer has the blob is done.
	freed, localErr := s.store.Delete(fid.VolumeID, fid.Key, fid.Cookie)
	deletedSomewhere := localErr == nil
	var peerErrs []error
	for range peers {
		switch err := <-errc; {
		case err == nil:
			deletedSomewhere = true
		case !errors.Is(err, client.ErrNotFound):
			peerErrs = append(peerErrs, err)
		}
	}
	if localErr != nil && !errors.Is(localErr, storage.ErrNotFound) {
		s.storeError(ctx, fid, localErr)
		return
	}
	if len(peerErrs) > 0 {
		writeError(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("delete %s not done on every replica: %v", fid, errors.Join(peerErrs...)))
		return
	}
	if !deletedSomewhere {
		s.storeError(ctx, fid, localErr)
		return
	}
	writeJSON(ctx, fasthttp.StatusAccepted, struct {
		Size int64 `json:"size"`
	}{freed})
}

// storeError answers with the status that fits a store error and logs the
// ones that are the server's fault.
func (s *Server) storeError(ctx *fasthttp.RequestCtx, fid needle.FileID, err error) {
	writeError(ctx, s.storeStatus(fid, err, ctx.IsPost() || ctx.IsPut()), err.Error())
}

// storeStatus is the HTTP status answering a store error of a read or,
// with write set, a write of fid; a server error is logged.
func (s *Server) storeStatus(fid needle.FileID, err error, write bool) int {
	code := fasthttp.StatusInternalServerError
	switch {
	case errors.Is(err, storage.ErrVolumeNotFound), errors.Is(err, storage.ErrNotFound):
		code = fasthttp.StatusNotFound
	case errors.Is(err, storage.ErrCookieMismatch):
		code = fasthttp.StatusNotFound
		if write {
			code = fasthttp.StatusConflict
		}
	case errors.Is(err, storage.ErrReadOnly):
		code = fasthttp.StatusConflict
	case errors.Is(err, storage.ErrBadNeedle):
		code = fasthttp.StatusBadRequest
	case errors.Is(err, storage.ErrVolumeFull), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		code = fasthttp.StatusInsufficientStorage
	case errors.Is(err, errReplicasMissing):
		code = fasthttp.StatusServiceUnavailable
	case errors.Is(err, storage.ErrClosed), errors.Is(err, context.Canceled):
		code = fasthttp.StatusServiceUnavailable
	}
	if code >= 500 {
		s.log.Error("blob request failed", "write", write, "fid", fid.String(), "err", err)
	}
	return code
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = fasthttp.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.Response.SetBody(b)
	ctx.Response.AppendBodyString("\n")
}

func writeError(ctx *fasthttp.RequestCtx, code int, msg string) {
	writeJSON(ctx, code, struct {
		Error string `json:"error"`
	}{msg})
}

// lingerListener hands out lingerConns.
type lingerListener struct {
	net.Listener
	lingering *lingerSet
}

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c, set: l.lingering}, nil
}

// lingerConn is a connection that can be told to close gracefully. fasthttp
// closes a connection right after refusing a request whose body it did not
// read (413); closing a socket with unread data sends a reset, which can
// reach the client before it has read the answer, so the client sees
// "connection reset" instead of the 413. After lingerOnClose, Close first
// shuts down the sending side (the client reads the answer, then EOF) and
// reads and drops what the client still sends, for a bounded time and
// size, as net/http's server does.
type lingerConn struct {
	net.Conn
	set    *lingerSet
	linger atomic.Bool
}

// lingerOnClose makes the next Close graceful, unless the server is
// closing. Called by the goroutine serving the connection.
func (c *lingerConn) lingerOnClose() {
	if !c.linger.Load() && c.set.add() {
		c.linger.Store(true)
	}
}

func (c *lingerConn) Close() error {
	if c.linger.Swap(false) {
		defer c.set.done()
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, c.Conn, lingerBytes)
		}
	}
	return c.Conn.Close()
}

// lingerSet counts lingering closes so that Server.Close can wait for them
// (fasthttp counts a connection closed before it calls Close).
type lingerSet struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// add reports whether a connection may linger, and counts it if so.
func (l *lingerSet) add() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	return true
}

func (l *lingerSet) done() { l.wg.Done() }

// closeAndWait refuses new lingering closes and waits for those under way
// (lingerTimeout at most).
func (l *lingerSet) closeAndWait() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.wg.Wait()
}
