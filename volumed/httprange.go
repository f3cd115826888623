package volumed

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// This file decides the answer to a GET or HEAD of a blob that carries a
// Range header or conditional headers, the way net/http's ServeContent does
// (RFC 9110 sections 13 and 14), on a blob held in memory. It knows nothing
// of the HTTP server; http.go feeds it the request headers and writes out
// the readAnswer.

// readConds are the request headers that can change a blob read's answer.
// Empty means absent.
type readConds struct {
	ifMatch           string
	ifNoneMatch       string
	ifModifiedSince   string
	ifUnmodifiedSince string
	ifRange           string
	rangeSpec         string // the Range header
}

// readAnswer is the answer to a blob read.
type readAnswer struct {
	// status is 200, 206, 304, 412 or 416.
	status int
	// contentType is the blob's type, or multipart/byteranges with its
	// boundary for several ranges; empty for 304, 412 and 416.
	contentType string
	// contentRange is the Content-Range header: the range of a single-range
	// 206, "bytes */size" for a 416, else empty.
	contentRange string
	// body is what to send (aliasing data for 200 and a single range); for
	// 304, 412 and 416 it is empty and the caller chooses the body.
	body []byte
	// validators says whether ETag and Last-Modified belong in the answer
	// (not on a 416, and a 304 drops Last-Modified itself).
	validators bool
}

// httpRange is a byte range of the blob.
type httpRange struct {
	start, length int64
}

func (r httpRange) contentRange(size int64) string {
	return "bytes " + strconv.FormatInt(r.start, 10) + "-" + strconv.FormatInt(r.start+r.length-1, 10) +
		"/" + strconv.FormatInt(size, 10)
}

// Range parsing outcomes besides a list of ranges.
var (
	// errNoOverlap: every range starts past the end of the blob (416).
	errNoOverlap = errors.New("invalid range: failed to overlap")
	// errBadRange: the header is malformed; it is ignored (RFC 9110 14.2).
	errBadRange = errors.New("invalid range")
)

// answerRead decides the answer to a GET or HEAD of data, whose strong
// entity tag (quoted) is etag, modified at modTime and of type ctype.
//
// Preconditions follow RFC 9110 section 13.2.2: a failing If-Match, or
// If-Unmodified-Since when If-Match is absent, gives 412; a matching
// If-None-Match (weak comparison, or *) gives 304; If-Modified-Since, only
// when If-None-Match is absent and at second precision, gives 304 when the
// blob is not newer. Then a Range header (honoured only if If-Range, when
// present, matches) gives 206 with one range, or multipart/byteranges with
// several; 416 with "bytes */size" when no range overlaps the blob. A
// malformed Range header, or ranges adding up to more than the blob, is
// ignored and the whole blob is served with 200.
func answerRead(c readConds, data []byte, etag string, modTime time.Time, ctype string) readAnswer {
	if st := checkPreconditions(c, etag, modTime); st != 0 {
		return readAnswer{status: st, validators: true}
	}
	size := int64(len(data))
	whole := readAnswer{status: http.StatusOK, contentType: ctype, body: data, validators: true}
	spec := c.rangeSpec
	if spec == "" || !ifRangeHolds(c.ifRange, etag, modTime) {
		return whole
	}
	ranges, err := parseRange(spec, size)
	switch {
	case errors.Is(err, errNoOverlap):
		if size == 0 {
			// Some clients send a Range with every request; an empty
			// blob is served whole rather than refused.
			return whole
		}
		return readAnswer{status: http.StatusRequestedRangeNotSatisfiable, contentRange: "bytes */" + strconv.FormatInt(size, 10)}
	case err != nil, len(ranges) == 0, sumRanges(ranges) > size:
		// Malformed, empty, or larger in total than the blob itself
		// (likely abuse): serve the whole blob.
		return whole
	case len(ranges) == 1:
		ra := ranges[0]
		return readAnswer{status: http.StatusPartialContent, contentType: ctype, contentRange: ra.contentRange(size),
			body: data[ra.start : ra.start+ra.length], validators: true}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, ra := range ranges {
		// Writes to a bytes.Buffer do not fail.
		part, _ := mw.CreatePart(textproto.MIMEHeader{
			"Content-Range": {ra.contentRange(size)},
			"Content-Type":  {ctype},
		})
		_, _ = part.Write(data[ra.start : ra.start+ra.length])
	}
	_ = mw.Close()
	return readAnswer{status: http.StatusPartialContent, contentType: "multipart/byteranges; boundary=" + mw.Boundary(),
		body: buf.Bytes(), validators: true}
}

// checkPreconditions returns 412, 304, or 0 when the read goes ahead.
func checkPreconditions(c readConds, etag string, modTime time.Time) int {
	if c.ifMatch != "" {
		if !etagListMatches(c.ifMatch, etag, false) {
			return http.StatusPreconditionFailed
		}
	} else if c.ifUnmodifiedSince != "" && !isZeroTime(modTime) {
		if t, err := http.ParseTime(c.ifUnmodifiedSince); err == nil && modTime.Truncate(time.Second).After(t) {
			return http.StatusPreconditionFailed
		}
	}
	if c.ifNoneMatch != "" {
		if etagListMatches(c.ifNoneMatch, etag, true) {
			return http.StatusNotModified
		}
	} else if c.ifModifiedSince != "" && !isZeroTime(modTime) {
		if t, err := http.ParseTime(c.ifModifiedSince); err == nil && !modTime.Truncate(time.Second).After(t) {
			return http.StatusNotModified
		}
	}
	return 0
}

// ifRangeHolds reports whether a Range header is to be honoured: If-Range
// is absent, or is an entity tag that strongly matches etag, or a date
// equal to modTime at second precision.
func ifRangeHolds(ir, etag string, modTime time.Time) bool {
	if ir == "" {
		return true
	}
	if tag, _ := scanETag(ir); tag != "" {
		return etagStrongMatch(tag, etag)
	}
	if isZeroTime(modTime) {
		return false
	}
	t, err := http.ParseTime(ir)
	return err == nil && t.Unix() == modTime.Unix()
}

// etagListMatches reports whether the If-Match or If-None-Match value list
// is * or holds a tag matching etag: weakly for If-None-Match, strongly for
// If-Match. Parsing stops at the first malformed element.
func etagListMatches(list, etag string, weak bool) bool {
	for {
		list = textproto.TrimString(list)
		if list == "" {
			return false
		}
		if list[0] == ',' {
			list = list[1:]
			continue
		}
		if list[0] == '*' {
			return true
		}
		tag, rest := scanETag(list)
		if tag == "" {
			return false
		}
		if weak && etagWeakMatch(tag, etag) || !weak && etagStrongMatch(tag, etag) {
			return true
		}
		list = rest
	}
}

// scanETag returns the entity tag (W/"x" or "x") at the start of s and the
// text after it, or "" when s does not start with one.
func scanETag(s string) (tag, rest string) {
	s = textproto.TrimString(s)
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s[start:]) < 2 || s[start] != '"' {
		return "", ""
	}
	for i := start + 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0x21 || c >= 0x23 && c <= 0x7E || c >= 0x80:
		case c == '"':
			return s[:i+1], s[i+1:]
		default:
			return "", ""
		}
	}
	return "", ""
}

func etagStrongMatch(a, b string) bool { return a == b && a != "" && a[0] == '"' }

func etagWeakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// isZeroTime reports whether t is unset (zero or the Unix epoch).
func isZeroTime(t time.Time) bool { return t.IsZero() || t.Unix() == 0 && t.Nanosecond() == 0 }

// parseRange parses a Range header value ("bytes=0-9,20-,-5") against a
// blob of size bytes. Ranges starting past the end are dropped; if that
// leaves none, errNoOverlap. Anything malformed, or another unit than
// bytes, gives errBadRange.
func parseRange(s string, size int64) ([]httpRange, error) {
	const unit = "bytes="
	if !strings.HasPrefix(s, unit) {
		return nil, errBadRange
	}
	var ranges []httpRange
	noOverlap := false
	for ra := range strings.SplitSeq(s[len(unit):], ",") {
		ra = textproto.TrimString(ra)
		if ra == "" {
			continue
		}
		first, last, ok := strings.Cut(ra, "-")
		if !ok {
			return nil, errBadRange
		}
		first, last = textproto.TrimString(first), textproto.TrimString(last)
		var r httpRange
		if first == "" {
			// A suffix: the last n bytes.
			if last == "" || last[0] == '-' || last[0] == '+' {
				return nil, errBadRange
			}
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 {
				return nil, errBadRange
			}
			if n == 0 || size == 0 {
				noOverlap = true // nothing to send: unsatisfiable
				continue
			}
			n = min(n, size)
			r = httpRange{start: size - n, length: n}
		} else {
			if first[0] == '+' {
				return nil, errBadRange
			}
			i, err := strconv.ParseInt(first, 10, 64)
			if err != nil || i < 0 {
				return nil, errBadRange
			}
			if i >= size {
				noOverlap = true
				continue
			}
			r.start = i
			if last == "" {
				r.length = size - i
			} else {
				if last[0] == '+' {
					return nil, errBadRange
				}
				j, err := strconv.ParseInt(last, 10, 64)
				if err != nil || j < i {
					return nil, errBadRange
				}
				r.length = min(j, size-1) - i + 1
			}
		}
		ranges = append(ranges, r)
	}
	if noOverlap && len(ranges) == 0 {
		return nil, errNoOverlap
	}
	return ranges, nil
}

func sumRanges(ranges []httpRange) (n int64) {
	for _, r := range ranges {
		n += r.length
	}
	return n
}
