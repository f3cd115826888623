package filerd

// The HTTP file API, for people and scripts, shaped like SeaweedFS's filer:
//
//	PUT  /a/b/file            raw body -> file (parents made, mkdir -p)
//	POST /a/b/file            raw or multipart body (first file part) -> file
//	POST /a/b/   (multipart)  the part is stored as /a/b/<its file name>
//	POST /a/b/   (no body)    mkdir -p /a/b
//	GET  /a/b/file            content (Range, ETag, Last-Modified, If-*)
//	GET  /a/b/                listing: JSON (Accept: application/json,
//	                          ?format=json or ?pretty) or HTML; ?limit, ?lastFileName
//	DELETE /a/b/file          unlink; a directory must be empty unless ?recursive=true
//	GET  /?blob=<fid>         a blob's bytes by file id; POST /?blob writes one
//	                          (the blob proxy, http_blob.go)
//
// Bodies stream: they are cut into blobs of Config.ChunkSizeMB, each written
// to the cluster as it is read, and the file's chunk list is replaced in one
// namespace transaction at the end, so a reader sees the old content or the
// new, never a mix. Bodies up to the inline limit live in the inode.
// Errors are JSON {"error": "..."} with the status of httpStatus.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/needle"
)

const (
	// maxHTTPPath is the longest request path accepted (PATH_MAX).
	maxHTTPPath = 4096
	// defaultFileMode and defaultDirMode are the modes of files and
	// directories an HTTP request makes without ?mode=.
	defaultFileMode = 0o644
	defaultDirMode  = 0o755
	// deleteBatch is how many entries one step of a recursive delete lists.
	deleteBatch = 1000
	// minReadWindow is the least a GET asks a volume server for at once
	// when it fetches the first bytes.
	minReadWindow = 64 << 10
	// cleanupTimeout bounds the deletion of blobs an upload that failed
	// had already written.
	cleanupTimeout = 30 * time.Second
)

// HTTP-layer sentinels; httpStatus maps them with meta's and client's.
var (
	errBadRequest = errors.New("bad request")
	errMethod     = errors.New("method not allowed")
	errTooLarge   = errors.New("request body too large")
	errNotFound   = errors.New("not found")
)

// httpHandler returns the HTTP file API.
func (s *Server) httpHandler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// httpStatus is the one table from errors to HTTP status codes.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest), errors.Is(err, meta.ErrInvalid), errors.Is(err, meta.ErrNameTooLong),
		errors.Is(err, meta.ErrLoop), errors.Is(err, meta.ErrXattrTooBig), errors.Is(err, client.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound), errors.Is(err, meta.ErrNotFound), errors.Is(err, meta.ErrStale):
		return http.StatusNotFound
	case errors.Is(err, meta.ErrExists), errors.Is(err, meta.ErrNotEmpty), errors.Is(err, meta.ErrNotDir),
		errors.Is(err, meta.ErrIsDir):
		return http.StatusConflict
	case errors.Is(err, meta.ErrPermission), errors.Is(err, client.ErrPermission):
		return http.StatusForbidden
	case errors.Is(err, client.ErrNoSpace), errors.Is(err, store.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrTimeout), errors.Is(err, client.ErrPrecondition),
		errors.Is(err, client.ErrCanceled), errors.Is(err, store.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if isBlobRequest(r) {
		s.serveBlob(w, r)
		return
	}
	p, err := parseHTTPPath(r.URL.Path, s.ns.Config().MaxNameLen)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.handleGet(w, r, p)
	case http.MethodPut, http.MethodPost:
		s.handleWrite(w, r, p)
	case http.MethodDelete:
		s.handleDelete(w, r, p)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, POST, DELETE")
		s.httpError(w, r, fmt.Errorf("%s: %w", r.Method, errMethod))
	}
}

// httpPath is a request path checked and split: no empty, "." or ".."
// components, no NUL, every name within the length limit.
type httpPath struct {
	parts []string
	// dir is set when the path ends in '/' (or is the root).
	dir bool
}

func parseHTTPPath(raw string, maxName int) (httpPath, error) {
	switch {
	case !strings.HasPrefix(raw, "/"):
		return httpPath{}, fmt.Errorf("path %q is not absolute: %w", raw, errBadRequest)
	case len(raw) > maxHTTPPath:
		return httpPath{}, fmt.Errorf("path of %d bytes is over %d: %w", len(raw), maxHTTPPath, errBadRequest)
	case strings.IndexByte(raw, 0) >= 0:
		return httpPath{}, fmt.Errorf("path %q contains NUL: %w", raw, errBadRequest)
	}
	var p httpPath
	for _, part := range strings.Split(raw, "/") {
		switch {
		case part == "":
			continue
		case part == "." || part == "..":
			return httpPath{}, fmt.Errorf("path %q: %q components are not allowed: %w", raw, part, errBadRequest)
		case len(part) > maxName:
			return httpPath{}, fmt.Errorf("path %q: name of %d bytes is over %d: %w", raw, len(part), maxName, errBadRequest)
		}
		p.parts = append(p.parts, part)
	}
	p.dir = len(p.parts) == 0 || strings.HasSuffix(raw, "/")
	return p, nil
}

// String is the clean absolute path ("/" for the root).
func (p httpPath) String() string { return "/" + strings.Join(p.parts, "/") }

// name is the last component ("" for the root).
func (p httpPath) name() string {
	if len(p.parts) == 0 {
		return ""
	}
	return p.parts[len(p.parts)-1]
}

// parent is the path of the directory holding p.
func (p httpPath) parent() httpPath {
	if len(p.parts) == 0 {
		return p
	}
	return httpPath{parts: p.parts[:len(p.parts)-1], dir: true}
}

// child is p with name appended.
func (p httpPath) child(name string) httpPath {
	return httpPath{parts: append(p.parts[:len(p.parts):len(p.parts)], name)}
}

// httpError answers err as JSON with its status; server-side failures are logged.
func (s *Server) httpError(w http.ResponseWriter, r *http.Request, err error) {
	code := httpStatus(err)
	if code >= 500 {
		s.log.Error("http request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	} else {
		s.log.Debug("http request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeJSON(w, r, code, map[string]string{"error": err.Error()}, false)
}

func writeJSON(w http.ResponseWriter, r *http.Request, code int, v any, pretty bool) {
	var b []byte
	var err error
	if pretty {
		b, err = json.MarshalIndent(v, "", "  ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"error": "encode answer: " + err.Error()})
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// ---- GET / HEAD

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, p httpPath) {
	ctx := r.Context()
	a, err := s.ns.Resolve(ctx, p.String(), true)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	if a.IsDir() {
		s.serveListing(w, r, p, a)
		return
	}
	if p.dir {
		s.httpError(w, r, fmt.Errorf("%s/: %w", p, meta.ErrNotDir))
		return
	}
	c, err := s.content(ctx, a.Inode)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	rd := newContentReader(ctx, s.cluster, c, s.chunkSize())
	if r.Method == http.MethodGet && c.Attr.Size > 0 {
		// Fetch the first bytes before any header goes out, so a cluster
		// that cannot serve them is a clean 503, not a cut body.
		if err := rd.prefetch(rangeStart(r.Header.Get("Range"), int64(c.Attr.Size))); err != nil {
			s.httpError(w, r, fmt.Errorf("read %s: %w", p, err))
			return
		}
	}
	h := w.Header()
	h.Set("ETag", `"`+contentETag(c)+`"`)
	h.Set("Content-Type", mimeType(p.name()))
	http.ServeContent(w, r, p.name(), time.Unix(0, c.Attr.Mtime), rd)
	if rd.err != nil && !errors.Is(rd.err, context.Canceled) {
		s.log.Error("http read failed after the answer started", "path", p.String(), "err", rd.err)
	}
}

// mimeType guesses a content type from a file name's extension.
func mimeType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// contentETag is the single chunk's ETag for a file that is one whole
// chunk, the content's for inline files, and for others an md5 over the
// chunks' (offset, size, ETag) with "-<count>", as S3 and SeaweedFS mark
// multi-part ETags.
func contentETag(c meta.Content) string {
	if len(c.Chunks) == 0 {
		return needle.ETag(c.Inline)
	}
	if ch := c.Chunks[0]; len(c.Chunks) == 1 && ch.Offset == 0 && uint64(ch.Size) == c.Attr.Size && ch.ETag != "" {
		return ch.ETag
	}
	h := md5.New()
	fmt.Fprintf(h, "%d;", c.Attr.Size)
	for _, ch := range c.Chunks {
		tag := ch.ETag
		if tag == "" {
			tag = ch.FileID
		}
		fmt.Fprintf(h, "%d:%d:%s;", ch.Offset, ch.Size, tag)
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(c.Chunks))
}

// rangeStart is where the first range of a Range header starts (0 when
// there is none or it does not parse: ServeContent judges it).
func rangeStart(h string, size int64) int64 {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0
	}
	first, _, _ := strings.Cut(spec, ",")
	a, b, ok := strings.Cut(strings.TrimSpace(first), "-")
	if !ok {
		return 0
	}
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0
		}
		return max(size-n, 0)
	}
	n, err := strconv.ParseInt(a, 10, 64)
	if err != nil || n < 0 || n >= size {
		return 0
	}
	return n
}

// contentReader is an io.ReadSeeker over a file's content that fetches
// blob ranges lazily: each fetch asks for what the caller wants, doubling
// on sequential reads up to one chunk, so a small Range costs a small read
// and a whole file streams in chunk-sized requests with one window of
// memory. Holes read as zeros. Not safe for concurrent use.
type contentReader struct {
	ctx     context.Context
	cluster *client.Cluster
	size    int64
	inline  []byte
	ivs     []meta.VisibleInterval
	maxWin  int64

	pos    int64
	buf    []byte // bytes at [bufOff, bufOff+len(buf))
	bufOff int64
	win    int64 // the next fetch's size; 0 after a seek
	err    error // the first fetch error
}

func newContentReader(ctx context.Context, cl *client.Cluster, c meta.Content, maxWin int64) *contentReader {
	r := &contentReader{ctx: ctx, cluster: cl, size: int64(c.Attr.Size), maxWin: maxWin}
	if len(c.Chunks) > 0 {
		r.ivs = meta.VisibleIntervals(c.Chunks)
	} else {
		r.inline = c.Inline
	}
	return r
}

func (r *contentReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek to %d: negative position", offset)
	}
	if offset != r.pos {
		r.win = 0
	}
	r.pos = offset
	return offset, nil
}

// prefetch positions the reader at off and fetches the bytes there.
func (r *contentReader) prefetch(off int64) error {
	r.Seek(off, io.SeekStart)
	_, err := r.fill(minReadWindow)
	return err
}

// interval returns the visible interval holding r.pos, or the index of the
// next one and false (a hole).
func (r *contentReader) interval() (int, bool) {
	i := sort.Search(len(r.ivs), func(i int) bool { return r.ivs[i].Stop > r.pos })
	return i, i < len(r.ivs) && r.ivs[i].Start <= r.pos
}

// fill fetches into r.buf the bytes at r.pos if they are in a blob and not
// buffered yet: want bytes at least, or the growing window. It reports
// whether r.buf holds r.pos afterwards.
func (r *contentReader) fill(want int64) (bool, error) {
	if r.pos >= r.bufOff && r.pos < r.bufOff+int64(len(r.buf)) {
		return true, nil
	}
	if r.pos >= r.size || r.ivs == nil {
		return false, nil
	}
	i, ok := r.interval()
	if !ok {
		return false, nil
	}
	iv := r.ivs[i]
	n := min(max(want, r.win), r.maxWin)
	n = max(min(n, iv.Stop-r.pos, r.size-r.pos), 1)
	data, err := r.cluster.ReadRange(r.ctx, iv.FileID, iv.ChunkOffset+r.pos-iv.Start, n)
	if err == nil && len(data) == 0 {
		err = fmt.Errorf("blob %s has no bytes at %d: %w", iv.FileID, iv.ChunkOffset+r.pos-iv.Start, io.ErrUnexpectedEOF)
	}
	if err != nil {
		if r.err == nil {
			r.err = err
		}
		return false, err
	}
	r.buf, r.bufOff = data, r.pos
	r.win = min(2*n, r.maxWin)
	return true, nil
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if left := r.size - r.pos; int64(len(p)) > left {
		p = p[:left]
	}
	var n int
	if r.ivs == nil {
		// Inline content; bytes past it (a file extended by truncate) are zeros.
		if r.pos < int64(len(r.inline)) {
			n = copy(p, r.inline[r.pos:])
		} else {
			n = len(p)
			clear(p)
		}
		r.pos += int64(n)
		return n, nil
	}
	ok, err := r.fill(int64(len(p)))
	if err != nil {
		return 0, err
	}
	if ok {
		n = copy(p, r.buf[r.pos-r.bufOff:])
	} else {
		// A hole up to the next interval or the end.
		end := r.size
		if i, _ := r.interval(); i < len(r.ivs) {
			end = min(end, r.ivs[i].Start)
		}
		n = int(min(int64(len(p)), end-r.pos))
		clear(p[:n])
	}
	r.pos += int64(n)
	return n, nil
}

// ---- PUT / POST

// writeParams are a write request's query parameters.
type writeParams struct {
	opts    client.WriteOptions
	mode    uint32
	modeSet bool
}

func (s *Server) parseWriteParams(q url.Values) (writeParams, error) {
	wp := writeParams{mode: defaultFileMode}
	wp.opts.Assign.Replication = s.cfg.DefaultReplication
	wp.opts.Assign.Collection = s.cfg.Collection
	if v := q.Get("replication"); v != "" {
		if _, err := needle.ParseReplicaPlacement(v); err != nil {
			return wp, fmt.Errorf("replication %q: %v: %w", v, err, errBadRequest)
		}
		wp.opts.Assign.Replication = v
	}
	if q.Has("collection") {
		v := q.Get("collection")
		if err := needle.ValidateCollection(v); err != nil {
			return wp, fmt.Errorf("collection %q: %v: %w", v, err, errBadRequest)
		}
		wp.opts.Assign.Collection = v
	}
	if v := q.Get("ttl"); v != "" {
		if _, err := needle.ParseTTL(v); err != nil {
			return wp, fmt.Errorf("ttl %q: %v: %w", v, err, errBadRequest)
		}
		wp.opts.Assign.TTL, wp.opts.Upload.TTL = v, v
	}
	if v := q.Get("mode"); v != "" {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || uint32(m) & ^meta.ModePerm != 0 {
			return wp, fmt.Errorf("mode %q: want octal permission bits up to 7777: %w", v, errBadRequest)
		}
		wp.mode, wp.modeSet = uint32(m), true
	}
	return wp, nil
}

// writeResult is the answer to a write, as SeaweedFS's filer gives it.
type writeResult struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
	ETag string `json:"eTag,omitempty"`
}

func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request, p httpPath) {
	ctx := r.Context()
	wp, err := s.parseWriteParams(r.URL.Query())
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(mediaType, "multipart/") {
		s.handleMultipart(w, r, p, wp)
		return
	}
	body, empty, err := peekEmpty(r.Body, r.ContentLength)
	if err != nil {
		s.httpError(w, r, fmt.Errorf("read body: %v: %w", err, errBadRequest))
		return
	}
	if p.dir {
		if !empty {
			s.httpError(w, r, fmt.Errorf("%s is a directory path: a body needs a file name (or a multipart form): %w", p, errBadRequest))
			return
		}
		mode := uint32(defaultDirMode)
		if wp.modeSet {
			mode = wp.mode
		}
		a, err := s.mkdirAll(ctx, p.parts, mode)
		if err != nil {
			s.httpError(w, r, err)
			return
		}
		writeJSON(w, r, http.StatusCreated, writeResult{Name: p.name(), Size: a.Size}, false)
		return
	}
	s.writeFile(w, r, p, body, wp)
}

// peekEmpty reports whether body is empty, reading one byte if the length
// is unknown; the returned reader yields the whole body.
func peekEmpty(body io.Reader, length int64) (io.Reader, bool, error) {
	if body == nil || body == http.NoBody || length == 0 {
		return http.NoBody, true, nil
	}
	if length > 0 {
		return body, false, nil
	}
	var b [1]byte
	n, err := io.ReadFull(body, b[:])
	if err == io.EOF {
		return http.NoBody, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return io.MultiReader(strings.NewReader(string(b[:n])), body), false, nil
}

func (s *Server) handleMultipart(w http.ResponseWriter, r *http.Request, p httpPath, wp writeParams) {
	mr, err := r.MultipartReader()
	if err != nil {
		s.httpError(w, r, fmt.Errorf("multipart body: %v: %w", err, errBadRequest))
		return
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			s.httpError(w, r, fmt.Errorf("multipart body has no file part: %w", errBadRequest))
			return
		}
		if err != nil {
			s.httpError(w, r, fmt.Errorf("multipart body: %v: %w", err, errBadRequest))
			return
		}
		if part.FileName() == "" {
			part.Close()
			continue
		}
		target := p
		toDir := p.dir
		if !toDir {
			// An existing directory takes the part under its own name.
			if a, err := s.ns.Resolve(r.Context(), p.String(), true); err == nil && a.IsDir() {
				toDir = true
			}
		}
		if toDir {
			name := partFileName(part.FileName())
			if name == "" || name == "." || name == ".." || len(name) > s.ns.Config().MaxNameLen || strings.IndexByte(name, 0) >= 0 {
				part.Close()
				s.httpError(w, r, fmt.Errorf("multipart file name %q: %w", part.FileName(), errBadRequest))
				return
			}
			target = p.child(name)
		}
		s.writeFile(w, r, target, part, wp)
		part.Close()
		return
	}
}

// partFileName is the last component of a form's file name (some browsers
// send a whole client-side path, with either separator).
func partFileName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// writeFile stores body as the file at p and answers the request.
func (s *Server) writeFile(w http.ResponseWriter, r *http.Request, p httpPath, body io.Reader, wp writeParams) {
	ctx := r.Context()
	parent, err := s.mkdirAll(ctx, p.parent().parts, defaultDirMode)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	// Refuse a directory before reading the body; a symlink writes its target.
	existing, err := s.ns.Lookup(ctx, parent.Inode, p.name())
	switch {
	case errors.Is(err, meta.ErrNotFound):
		existing = meta.Attr{}
	case err != nil:
		s.httpError(w, r, err)
		return
	case existing.Mode&meta.S_IFMT == meta.S_IFLNK:
		if existing, err = s.ns.Resolve(ctx, p.String(), true); err != nil {
			s.httpError(w, r, err)
			return
		}
		fallthrough
	default:
		if existing.IsDir() {
			s.httpError(w, r, fmt.Errorf("%s: %w", p, meta.ErrIsDir))
			return
		}
		if !existing.IsRegular() {
			s.httpError(w, r, fmt.Errorf("%s is not a regular file: %w", p, meta.ErrInvalid))
			return
		}
	}

	up, err := s.uploadBody(ctx, body, wp.opts)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	a, err := s.commitFile(ctx, parent.Inode, p.name(), existing, up, wp)
	if err != nil {
		s.httpError(w, r, fmt.Errorf("%s: %w", p, err))
		return
	}
	etag := needle.ETag(up.inline)
	if len(up.chunks) > 0 {
		etag = contentETag(meta.Content{Attr: a, Chunks: up.chunks})
	}
	writeJSON(w, r, http.StatusCreated, writeResult{Name: p.name(), Size: a.Size, ETag: etag}, false)
}

// commitFile creates the file if it is new and replaces its content with
// up in one transaction. On a failure that certainly left the blobs
// unreferenced they are deleted.
func (s *Server) commitFile(ctx context.Context, parent meta.Inode, name string, existing meta.Attr, up uploaded, wp writeParams) (meta.Attr, error) {
	a := existing
	var err error
	if a.Inode == 0 {
		a, err = s.ns.Create(ctx, parent, name, meta.CreateRequest{Mode: meta.S_IFREG | wp.mode})
		if err != nil {
			s.deleteBlobs(ctx, up.chunks)
			return meta.Attr{}, err
		}
	}
	if len(up.chunks) > 0 {
		a, err = s.ns.SetChunks(ctx, a.Inode, up.chunks, uint64(up.size))
	} else {
		a, err = s.ns.SetInline(ctx, a.Inode, up.inline)
	}
	if err != nil {
		if errors.Is(err, meta.ErrNotFound) || errors.Is(err, meta.ErrIsDir) || errors.Is(err, meta.ErrInvalid) ||
			errors.Is(err, meta.ErrStale) || errors.Is(err, store.ErrNoSpace) {
			s.deleteBlobs(ctx, up.chunks)
		} else if len(up.chunks) > 0 {
			s.log.Warn("http write: commit failed; its blobs are kept in case it committed", "chunks", len(up.chunks), "err", err)
		}
		return meta.Attr{}, err
	}
	if wp.modeSet && existing.Inode != 0 && a.Mode&meta.ModePerm != wp.mode {
		m := wp.mode
		if a, err = s.ns.SetAttr(ctx, a.Inode, meta.SetAttrRequest{Mode: &m}); err != nil {
			return meta.Attr{}, err
		}
	}
	return a, nil
}

// uploaded is a body written to the cluster: chunks, or inline bytes.
type uploaded struct {
	chunks []meta.Chunk
	inline []byte
	size   int64
}

// chunkSize is the size of the blobs HTTP uploads are cut into.
func (s *Server) chunkSize() int64 {
	mb := s.cfg.ChunkSizeMB
	if mb <= 0 {
		mb = 4
	}
	return int64(mb) << 20
}

// inlineLimit is the largest body kept in the inode.
func (s *Server) inlineLimit() int {
	l := min(s.cfg.InlineLimit, s.ns.Config().InlineLimit)
	return max(min(l, int(s.chunkSize())-1), 0)
}

// uploadBody reads body to its end: a body up to the inline limit is
// returned as bytes, a longer one is written to the cluster one chunk at a
// time (so memory holds one chunk, whatever the size). On a failure the
// blobs already written are deleted.
func (s *Server) uploadBody(ctx context.Context, body io.Reader, opts client.WriteOptions) (uploaded, error) {
	head := make([]byte, s.inlineLimit()+1)
	n, err := io.ReadFull(body, head)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return uploaded{inline: head[:n], size: int64(n)}, nil
	}
	if err != nil {
		return uploaded{}, bodyError(err)
	}
	buf := make([]byte, s.chunkSize())
	fill := copy(buf, head[:n])
	var up uploaded
	for {
		m, err := io.ReadFull(body, buf[fill:])
		fill += m
		eof := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !eof {
			s.deleteBlobs(ctx, up.chunks)
			return uploaded{}, bodyError(err)
		}
		if fill > 0 {
			fid, res, err := s.cluster.Write(ctx, buf[:fill], opts)
			if err != nil {
				s.deleteBlobs(ctx, up.chunks)
				return uploaded{}, fmt.Errorf("write chunk at %d: %w", up.size, err)
			}
			up.chunks = append(up.chunks, meta.Chunk{Offset: up.size, Size: int64(fill), FileID: fid,
				ModifiedNs: time.Now().UnixNano(), ETag: res.ETag})
			up.size += int64(fill)
			fill = 0
		}
		if eof {
			return up, nil
		}
	}
}

// bodyError classifies a failure to read a request body.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("body over %d bytes: %w", mbe.Limit, errTooLarge)
	}
	return fmt.Errorf("read body: %v: %w", err, errBadRequest)
}

// deleteBlobs deletes blobs nothing references, best effort: a blob that
// stays is garbage, not damage.
func (s *Server) deleteBlobs(ctx context.Context, chunks []meta.Chunk) {
	if len(chunks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for _, c := range chunks {
		if err := s.cluster.Delete(ctx, c.FileID); err != nil && !errors.Is(err, client.ErrNotFound) {
			s.log.Warn("http write: could not delete an unreferenced blob", "fid", c.FileID, "err", err)
		}
	}
}

// mkdirAll makes the directories of parts that do not exist (mode for the
// last one, defaultDirMode for the others) and returns the last one's
// attributes. Symlinks to directories are followed.
func (s *Server) mkdirAll(ctx context.Context, parts []string, mode uint32) (meta.Attr, error) {
	full := "/" + strings.Join(parts, "/")
	if a, err := s.ns.Resolve(ctx, full, true); err == nil {
		if !a.IsDir() {
			return meta.Attr{}, fmt.Errorf("%s: %w", full, meta.ErrNotDir)
		}
		return a, nil
	} else if !errors.Is(err, meta.ErrNotFound) {
		return meta.Attr{}, err
	}
	cur, err := s.ns.GetAttr(ctx, meta.RootInode)
	if err != nil {
		return meta.Attr{}, err
	}
	for i, name := range parts {
		m := uint32(defaultDirMode)
		if i == len(parts)-1 {
			m = mode
		}
		a, err := s.ns.Lookup(ctx, cur.Inode, name)
		if errors.Is(err, meta.ErrNotFound) {
			a, err = s.ns.Mkdir(ctx, cur.Inode, name, m, 0, 0)
			if errors.Is(err, meta.ErrExists) {
				a, err = s.ns.Lookup(ctx, cur.Inode, name)
			}
		}
		if err != nil {
			return meta.Attr{}, err
		}
		sub := "/" + strings.Join(parts[:i+1], "/")
		if a.Mode&meta.S_IFMT == meta.S_IFLNK {
			if a, err = s.ns.Resolve(ctx, sub, true); err != nil {
				return meta.Attr{}, err
			}
		}
		if !a.IsDir() {
			return meta.Attr{}, fmt.Errorf("%s: %w", sub, meta.ErrNotDir)
		}
		cur = a
	}
	return cur, nil
}

// ---- DELETE

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, p httpPath) {
	ctx := r.Context()
	if len(p.parts) == 0 {
		s.httpError(w, r, fmt.Errorf("refusing to delete the root directory: %w", errBadRequest))
		return
	}
	recursive := false
	if v := r.URL.Query().Get("recursive"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.httpError(w, r, fmt.Errorf("recursive=%q: want true or false: %w", v, errBadRequest))
			return
		}
		recursive = b
	}
	parent, err := s.ns.Resolve(ctx, p.parent().String(), true)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	if !parent.IsDir() {
		s.httpError(w, r, fmt.Errorf("%s: %w", p.parent(), meta.ErrNotDir))
		return
	}
	a, err := s.ns.Lookup(ctx, parent.Inode, p.name())
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	if a.IsDir() {
		if recursive {
			err = s.removeTree(ctx, a.Inode)
		}
		if err == nil {
			err = s.ns.Rmdir(ctx, parent.Inode, p.name())
		}
	} else if p.dir {
		err = fmt.Errorf("%s/: %w", p, meta.ErrNotDir)
	} else {
		err = s.ns.Unlink(ctx, parent.Inode, p.name())
	}
	if err != nil {
		s.httpError(w, r, fmt.Errorf("delete %s: %w", p, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// removeTree deletes everything under dir, depth first, one entry per
// transaction and deleteBatch entries per listing, so no transaction grows
// with the tree. Entries removed meanwhile by others are skipped.
func (s *Server) removeTree(ctx context.Context, dir meta.Inode) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		es, err := s.ns.ReadDir(ctx, dir, "", deleteBatch)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return nil
		}
		for _, e := range es {
			if e.Type.Mode() == meta.S_IFDIR {
				if err = s.removeTree(ctx, e.Inode); err == nil {
					err = s.ns.Rmdir(ctx, dir, e.Name)
				}
			} else {
				err = s.ns.Unlink(ctx, dir, e.Name)
			}
			if err != nil && !errors.Is(err, meta.ErrNotFound) {
				return err
			}
		}
	}
}
