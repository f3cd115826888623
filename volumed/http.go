package volumed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kelpfs/kelp/needle"
	"github.com/kelpfs/kelp/volumed/storage"
)

// httpHandler routes the blob API: GET/HEAD/POST/PUT/DELETE on every blob
// URL form, and /status.
func (s *Server) httpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status":
			s.handleStatus(w, r)
			return
		case "/", "/favicon.ico":
			writeError(w, http.StatusNotFound, "no blob here: use /<volume>,<key><cookie>")
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.handleRead(w, r)
		case http.MethodPost, http.MethodPut:
			s.handleWrite(w, r)
		case http.MethodDelete:
			s.handleDelete(w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST, PUT, DELETE")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		}
	})
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
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
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRead(w http.ResponseWriter, r *http.Request) {
	bp, err := needle.ParseBlobPath(r.URL.Path)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	fid := bp.FileID
	n, err := s.store.Read(fid.VolumeID, fid.Key, fid.Cookie)
	if err != nil {
		s.storeError(w, r, fid, err)
		return
	}
	h := w.Header()
	etag := `"` + needle.ETag(n.Data) + `"`
	h.Set("ETag", etag)
	h.Set("Accept-Ranges", "bytes")
	modTime := time.Unix(int64(n.LastModified), 0)
	if n.LastModified == 0 {
		modTime = time.Unix(0, int64(n.AppendAtNs))
	}
	h.Set("Last-Modified", modTime.UTC().Format(http.TimeFormat))
	ctype := string(n.Mime)
	if ctype == "" && bp.Ext != "" {
		ctype = mime.TypeByExtension(bp.Ext)
	}
	if ctype == "" && len(n.Name) > 0 {
		if i := bytes.LastIndexByte(n.Name, '.'); i > 0 {
			ctype = mime.TypeByExtension(string(n.Name[i:]))
		}
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h.Set("Content-Type", ctype)
	if name := bp.Name; name != "" || len(n.Name) > 0 {
		if name == "" {
			name = string(n.Name)
		}
		h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	}
	if r.Header.Get("Range") == "" && r.Header.Get("If-None-Match") == "" &&
		r.Header.Get("If-Modified-Since") == "" && r.Header.Get("If-Match") == "" &&
		r.Header.Get("If-Unmodified-Since") == "" {
		// Fast path for the common whole-blob read.
		h.Set("Content-Length", strconv.Itoa(len(n.Data)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(n.Data)
		}
		return
	}
	// Ranges (single and multiple), conditional requests and HEAD.
	http.ServeContent(w, r, "", modTime, bytes.NewReader(n.Data))
}

// upload is a parsed write request.
type upload struct {
	fid       needle.FileID
	n         *needle.Needle
	replicate bool // forwarded by a peer: store only
}

func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request) {
	up, status, err := s.parseUpload(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	peers, err := s.peersFor(r.Context(), up.fid.VolumeID, up.replicate)
	if err != nil {
		s.storeError(w, r, up.fid, err)
		return
	}
	// Store locally and on every peer at once; acknowledge only if all did.
	errc := make(chan error, len(peers))
	for _, peer := range peers {
		go func() { errc <- s.forwardWrite(r.Context(), peer, up) }()
	}
	_, localErr := s.store.Write(up.fid.VolumeID, up.n)
	var peerErrs []error
	for range peers {
		if err := <-errc; err != nil {
			peerErrs = append(peerErrs, err)
		}
	}
	if localErr != nil {
		s.storeError(w, r, up.fid, localErr)
		return
	}
	if len(peerErrs) > 0 {
		err := errors.Join(peerErrs...)
		s.log.Error("write not replicated to every replica", "fid", up.fid.String(), "err", err)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("write %s stored here but not on every replica: %v", up.fid, err))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"name": string(up.n.Name), "size": len(up.n.Data), "eTag": needle.ETag(up.n.Data),
	})
}

// parseUpload reads a raw PUT/POST body or the first file of a multipart
// form into a needle.
func (s *Server) parseUpload(w http.ResponseWriter, r *http.Request) (*upload, int, error) {
	bp, err := needle.ParseBlobPath(r.URL.Path)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	if bp.FileID.Key == 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("file id %s: key 0 is reserved", bp.FileID)
	}
	q := r.URL.Query()
	n := &needle.Needle{Cookie: bp.FileID.Cookie, ID: bp.FileID.Key}
	limit := s.cfg.MaxUploadBytes
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("upload of %d bytes is over the %d byte limit", r.ContentLength, limit)
	}
	body := http.MaxBytesReader(w, r.Body, limit+64<<10)
	name, ctype := q.Get("name"), r.Header.Get("Content-Type")
	mediaType, params, _ := mime.ParseMediaType(ctype)
	if r.Method == http.MethodPost && mediaType == "multipart/form-data" {
		mr := multipart.NewReader(body, params["boundary"])
		part, err := firstFilePart(mr)
		if err != nil {
			return nil, uploadStatus(err), fmt.Errorf("multipart upload: %w", err)
		}
		if fn := part.FileName(); fn != "" && name == "" {
			name = fn
		}
		ctype = part.Header.Get("Content-Type")
		n.Data, err = readAllLimited(part, limit)
		if err != nil {
			return nil, uploadStatus(err), fmt.Errorf("multipart upload: %w", err)
		}
	} else {
		if r.ContentLength > 0 {
			n.Data = make([]byte, 0, r.ContentLength)
		}
		buf := bytes.NewBuffer(n.Data)
		if _, err := buf.ReadFrom(io.LimitReader(body, limit+1)); err != nil {
			return nil, uploadStatus(err), fmt.Errorf("upload body: %w", err)
		}
		n.Data = buf.Bytes()
		if int64(len(n.Data)) > limit {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("upload is over the %d byte limit", limit)
		}
		if r.ContentLength >= 0 && int64(len(n.Data)) != r.ContentLength {
			return nil, http.StatusBadRequest, fmt.Errorf("upload cut short: %d of %d bytes", len(n.Data), r.ContentLength)
		}
	}
	if ctype != "" && !strings.HasPrefix(ctype, "application/octet-stream") && !strings.HasPrefix(ctype, "multipart/") {
		n.Mime = []byte(ctype)
	}
	n.Name = []byte(name)
	if ts := q.Get("ts"); ts != "" {
		v, err := strconv.ParseUint(ts, 10, 64)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("bad ts %q: want unix seconds", ts)
		}
		n.LastModified = v
	} else {
		n.LastModified = uint64(time.Now().Unix())
	}
	if n.TTL, err = needle.ParseTTL(q.Get("ttl")); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if err := n.Validate(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	return &upload{fid: bp.FileID, n: n, replicate: q.Get("type") == "replicate"}, 0, nil
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

func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return data, nil
}

func uploadStatus(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	bp, err := needle.ParseBlobPath(r.URL.Path)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	fid := bp.FileID
	replicate := r.URL.Query().Get("type") == "replicate"
	peers, err := s.peersFor(r.Context(), fid.VolumeID, replicate)
	if err != nil {
		s.storeError(w, r, fid, err)
		return
	}
	errc := make(chan error, len(peers))
	for _, peer := range peers {
		go func() { errc <- s.blobs.Delete(r.Context(), peer, fid.String(), true) }()
	}
	freed, localErr := s.store.Delete(fid.VolumeID, fid.Key, fid.Cookie)
	var peerErrs []error
	for range peers {
		if err := <-errc; err != nil {
			peerErrs = append(peerErrs, err)
		}
	}
	if localErr != nil {
		s.storeError(w, r, fid, localErr)
		return
	}
	if len(peerErrs) > 0 {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("delete %s done here but not on every replica: %v", fid, errors.Join(peerErrs...)))
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"size": freed})
}

// storeError answers with the status that fits a store error and logs the
// ones that are the server's fault.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, fid needle.FileID, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, storage.ErrVolumeNotFound), errors.Is(err, storage.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, storage.ErrCookieMismatch):
		code = http.StatusNotFound
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			code = http.StatusConflict
		}
	case errors.Is(err, storage.ErrReadOnly):
		code = http.StatusConflict
	case errors.Is(err, storage.ErrVolumeFull):
		code = http.StatusInsufficientStorage
	case errors.Is(err, errReplicasMissing):
		code = http.StatusServiceUnavailable
	case errors.Is(err, storage.ErrClosed), errors.Is(err, context.Canceled):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		s.log.Error("blob request failed", "method", r.Method, "fid", fid.String(), "err", err)
	}
	writeError(w, code, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
