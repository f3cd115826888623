package filerd

// The blob proxy of the HTTP API: chunk bytes by file id, for clients that
// reach the filer but not its volume servers (filer.sync -a.filerProxy).
// It lives on the root path under a query parameter no file request uses,
// so no file name can collide with it:
//
//	GET  /?blob=<fid>   200 the blob's bytes (application/octet-stream, ETag;
//	                    Range and If-None-Match as ServeContent handles them);
//	                    HEAD the same without the body;
//	                    404 no such blob, 400 malformed fid
//	POST /?blob         body (up to Config.ChunkSizeMB, else 413) -> a new blob
//	                    in the filer's cluster, placed as an HTTP PUT places its
//	                    chunks (Config.DefaultReplication and Collection, the same
//	                    ?replication, ?collection, ?ttl overrides);
//	                    201 {"fid": "...", "eTag": "...", "size": N}
//	DELETE /?blob=<fid> 204 the blob is deleted from its volume servers;
//	                    404 no such blob, 400 malformed fid
//	other methods       405
//
// A blob written here is referenced by nothing until the caller commits an
// entry that names it; one never committed stays in its volume as garbage
// unless the caller deletes it. DELETE removes a blob whatever names it:
// it is for blobs the caller wrote and did not commit (a filer.sync
// attempt that failed), never for a file's chunks, which the filer's own
// collector deletes once no entry names them.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// blobParam is the query parameter that makes a request on "/" a blob request.
const blobParam = "blob"

// isBlobRequest reports whether r is for the blob proxy: the root path with
// ?blob. Any other path, or the root without it, is a file request.
func isBlobRequest(r *http.Request) bool {
	return r.URL.Path == "/" && r.URL.Query().Has(blobParam)
}

func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.handleBlobGet(w, r)
	case http.MethodPost:
		s.handleBlobPost(w, r)
	case http.MethodDelete:
		s.handleBlobDelete(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
		s.httpError(w, r, fmt.Errorf("%s /?%s: %w", r.Method, blobParam, errMethod))
	}
}

// blobID is the request's ?blob=<fid>, checked and in its canonical form.
func blobID(r *http.Request) (string, error) {
	raw := r.URL.Query().Get(blobParam)
	id, err := needle.ParseFileID(raw)
	if err != nil {
		return "", fmt.Errorf("blob %q: %v: %w", raw, err, errBadRequest)
	}
	return id.String(), nil
}

// blobError is err of a call on blob fid, a missing blob's made a plain
// 404: a replica's other errors joined in must not turn it into a 400 or a
// 503.
func blobError(what, fid string, err error) error {
	if errors.Is(err, client.ErrNotFound) {
		err = fmt.Errorf("%w: %v", errNotFound, err)
	}
	return fmt.Errorf("%s blob %s: %w", what, fid, err)
}

func (s *Server) handleBlobGet(w http.ResponseWriter, r *http.Request) {
	fid, err := blobID(r)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	data, err := s.cluster.Read(r.Context(), fid)
	if err != nil {
		s.httpError(w, r, blobError("read", fid, err))
		return
	}
	// Cluster.Read gives no ETag: it is computed as volume servers do.
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+needle.ETag(data)+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func (s *Server) handleBlobDelete(w http.ResponseWriter, r *http.Request) {
	fid, err := blobID(r)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	if err := s.cluster.Delete(r.Context(), fid); err != nil {
		s.httpError(w, r, blobError("delete", fid, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// blobResult is the answer to a blob write.
type blobResult struct {
	FileID string `json:"fid"`
	ETag   string `json:"eTag"`
	Size   int64  `json:"size"`
}

func (s *Server) handleBlobPost(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if v := q.Get(blobParam); v != "" {
		s.httpError(w, r, fmt.Errorf("POST /?%s=%q: a new blob's file id is assigned, not chosen; send /?%s: %w",
			blobParam, v, blobParam, errBadRequest))
		return
	}
	wp, err := s.parseWriteParams(q)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	data, err := readBlobBody(w, r, s.chunkSize())
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	fid, res, err := s.cluster.Write(r.Context(), data, wp.opts)
	if err != nil {
		s.httpError(w, r, fmt.Errorf("write blob of %d bytes: %w", len(data), err))
		return
	}
	etag := res.ETag
	if etag == "" {
		etag = needle.ETag(data)
	}
	writeJSON(w, r, http.StatusCreated, blobResult{FileID: fid, ETag: etag, Size: int64(len(data))}, false)
}

// readBlobBody reads a request body of at most limit bytes. A declared
// length over the limit is refused before anything is read; a chunked body
// is cut off at the limit.
func readBlobBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	n := r.ContentLength
	if n > limit {
		return nil, fmt.Errorf("blob of %d bytes is over the %d byte chunk size: %w", n, limit, errTooLarge)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	if n < 0 {
		data, err := io.ReadAll(body)
		if err != nil {
			return nil, bodyError(err)
		}
		return data, nil
	}
	// The server ends a body with a Content-Length there, so one read of
	// exactly n bytes is the whole of it.
	data := make([]byte, n)
	if _, err := io.ReadFull(body, data); err != nil {
		return nil, bodyError(err)
	}
	return data, nil
}
