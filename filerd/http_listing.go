package filerd

// Directory listings of the HTTP API: JSON shaped like SeaweedFS's filer
// listing (so scripts written for it keep working), or a plain HTML page.

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/kelpfs/kelp/filerd/meta"
)

const (
	defaultListLimit = 100
	maxListLimit     = 10000
)

// listing is a page of a directory, with SeaweedFS's field names.
type listing struct {
	Path                  string
	Entries               []listingEntry
	Limit                 int
	LastFileName          string
	ShouldDisplayLoadMore bool
	EmptyFolder           bool
}

// listingEntry is one entry of a listing, with SeaweedFS's field names
// (Mode is a Go fs.FileMode value, as SeaweedFS prints it) and a few more.
type listingEntry struct {
	FullPath      string
	Mtime         time.Time
	Crtime        time.Time
	Mode          uint32
	Uid           uint32
	Gid           uint32
	Mime          string
	TtlSec        int32
	SymlinkTarget string
	FileSize      uint64
	Rdev          uint32
	Inode         uint64
	Nlink         uint32
	IsDirectory   bool
}

// fileMode converts POSIX mode bits to a Go fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	switch m & meta.S_IFMT {
	case meta.S_IFDIR:
		fm |= fs.ModeDir
	case meta.S_IFLNK:
		fm |= fs.ModeSymlink
	case meta.S_IFIFO:
		fm |= fs.ModeNamedPipe
	case meta.S_IFSOCK:
		fm |= fs.ModeSocket
	case meta.S_IFCHR:
		fm |= fs.ModeDevice | fs.ModeCharDevice
	case meta.S_IFBLK:
		fm |= fs.ModeDevice
	}
	if m&meta.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&meta.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&meta.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// wantsJSON reports whether a listing request asks for JSON.
func wantsJSON(r *http.Request) bool {
	q := r.URL.Query()
	if q.Has("pretty") || q.Get("format") == "json" {
		return true
	}
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}

func parseListParams(q url.Values) (limit int, after string, err error) {
	limit = defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return 0, "", fmt.Errorf("limit=%q: want a positive count: %w", v, errBadRequest)
		}
		limit = min(n, maxListLimit)
	}
	after = q.Get("lastFileName")
	if strings.ContainsAny(after, "/\x00") {
		return 0, "", fmt.Errorf("lastFileName=%q: want a name: %w", after, errBadRequest)
	}
	return limit, after, nil
}

func (s *Server) serveListing(w http.ResponseWriter, r *http.Request, p httpPath, dir meta.Attr) {
	limit, after, err := parseListParams(r.URL.Query())
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	asJSON := wantsJSON(r)
	if r.Method == http.MethodHead {
		ct := "text/html; charset=utf-8"
		if asJSON {
			ct = "application/json; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Last-Modified", time.Unix(0, dir.Mtime).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		return
	}
	es, err := s.ns.ReadDirPlus(r.Context(), dir.Inode, after, limit+1)
	if err != nil {
		s.httpError(w, r, err)
		return
	}
	more := len(es) > limit
	if more {
		es = es[:limit]
	}
	base := p.String()
	l := listing{Path: base, Entries: make([]listingEntry, 0, len(es)), Limit: limit, ShouldDisplayLoadMore: more,
		EmptyFolder: len(es) == 0 && after == ""}
	for _, e := range es {
		a := e.Attr
		le := listingEntry{
			FullPath: path.Join(base, e.Name), Mtime: time.Unix(0, a.Mtime), Crtime: time.Unix(0, a.Crtime),
			Mode: uint32(fileMode(a.Mode)), Uid: a.Uid, Gid: a.Gid, SymlinkTarget: a.Target,
			Rdev: a.Rdev, Inode: uint64(a.Inode), Nlink: a.Nlink, IsDirectory: a.IsDir(),
		}
		if a.IsRegular() {
			le.FileSize = a.Size
			if t := mime.TypeByExtension(path.Ext(e.Name)); t != "" {
				le.Mime = t
			}
		}
		l.Entries = append(l.Entries, le)
		l.LastFileName = e.Name
	}
	if asJSON {
		writeJSON(w, r, http.StatusOK, l, r.URL.Query().Has("pretty"))
		return
	}
	s.writeListingHTML(w, r, l)
}

const listingHTML = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Path}}</title>
<style>body{font-family:sans-serif}td,th{padding:2px 12px;text-align:left}td.n{text-align:right}</style>
</head><body>
<h1>{{.Path}}</h1>
<table>
<tr><th>Name</th><th>Size</th><th>Modified</th><th>Mode</th></tr>
{{if .Parent}}<tr><td><a href="{{.Parent}}">../</a></td><td></td><td></td><td></td></tr>
{{end}}{{range .Rows}}<tr><td><a href="{{.Href}}">{{.Name}}</a></td><td class="n">{{.Size}}</td><td>{{.Mtime}}</td><td>{{.Mode}}</td></tr>
{{end}}</table>
{{if .Next}}<p><a href="{{.Next}}">next page</a></p>
{{end}}</body></html>
`

type htmlRow struct {
	Name, Href, Size, Mtime, Mode string
}

// escapePath percent-escapes each component of an absolute path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func (s *Server) writeListingHTML(w http.ResponseWriter, r *http.Request, l listing) {
	tmpl, err := template.New("listing").Parse(listingHTML)
	if err != nil {
		s.httpError(w, r, fmt.Errorf("listing template: %w", err))
		return
	}
	data := struct {
		Path, Parent, Next string
		Rows               []htmlRow
	}{Path: l.Path}
	if l.Path != "/" {
		data.Parent = escapePath(path.Dir(l.Path))
		if data.Parent != "/" {
			data.Parent += "/"
		}
	}
	for _, e := range l.Entries {
		name := path.Base(e.FullPath)
		row := htmlRow{Name: name, Href: escapePath(e.FullPath), Mtime: e.Mtime.UTC().Format(time.RFC3339),
			Mode: fs.FileMode(e.Mode).String()}
		if e.IsDirectory {
			row.Name += "/"
			row.Href += "/"
		} else {
			row.Size = strconv.FormatUint(e.FileSize, 10)
		}
		data.Rows = append(data.Rows, row)
	}
	if l.ShouldDisplayLoadMore {
		q := url.Values{"limit": {strconv.Itoa(l.Limit)}, "lastFileName": {l.LastFileName}}
		dir := escapePath(l.Path)
		if dir != "/" {
			dir += "/"
		}
		data.Next = dir + "?" + q.Encode()
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		s.httpError(w, r, fmt.Errorf("listing page: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}
