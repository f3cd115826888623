package volumed

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAnswerRead(t *testing.T) {
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz") // 36 bytes
	const etag, ctype = `"c0ffee00"`, "image/jpeg"
	mod := time.Date(2024, 5, 6, 7, 8, 9, 500_000_000, time.UTC) // sub-second part dropped by HTTP dates
	date := func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
	type part struct{ contentRange, body string }
	for _, tc := range []struct {
		name         string
		c            readConds
		status       int
		contentRange string
		body         string // for 200 and single-range 206
		parts        []part // for multipart/byteranges
	}{
		{name: "no headers", status: 200, body: string(data)},

		// Ranges.
		{name: "single range", c: readConds{rangeSpec: "bytes=10-19"}, status: 206, contentRange: "bytes 10-19/36", body: "abcdefghij"},
		{name: "open range", c: readConds{rangeSpec: "bytes=30-"}, status: 206, contentRange: "bytes 30-35/36", body: "uvwxyz"},
		{name: "suffix range", c: readConds{rangeSpec: "bytes=-3"}, status: 206, contentRange: "bytes 33-35/36", body: "xyz"},
		{name: "suffix longer than blob", c: readConds{rangeSpec: "bytes=-100"}, status: 206, contentRange: "bytes 0-35/36", body: string(data)},
		{name: "end past the blob", c: readConds{rangeSpec: "bytes=34-1000"}, status: 206, contentRange: "bytes 34-35/36", body: "yz"},
		{name: "spaces", c: readConds{rangeSpec: "bytes= 1 - 2 "}, status: 206, contentRange: "bytes 1-2/36", body: "12"},
		{name: "multiple ranges", c: readConds{rangeSpec: "bytes=0-1,30-"}, status: 206,
			parts: []part{{"bytes 0-1/36", "01"}, {"bytes 30-35/36", "uvwxyz"}}},
		{name: "multiple with one past the end", c: readConds{rangeSpec: "bytes=0-1,100-,-2"}, status: 206,
			parts: []part{{"bytes 0-1/36", "01"}, {"bytes 34-35/36", "yz"}}},
		{name: "no overlap", c: readConds{rangeSpec: "bytes=100-200"}, status: 416, contentRange: "bytes */36"},
		{name: "no overlap, several", c: readConds{rangeSpec: "bytes=36-,50-60"}, status: 416, contentRange: "bytes */36"},
		{name: "empty suffix", c: readConds{rangeSpec: "bytes=-0"}, status: 416, contentRange: "bytes */36"},
		{name: "malformed: unit", c: readConds{rangeSpec: "items=0-5"}, status: 200, body: string(data)},
		{name: "malformed: no dash", c: readConds{rangeSpec: "bytes=5"}, status: 200, body: string(data)},
		{name: "malformed: end before start", c: readConds{rangeSpec: "bytes=9-3"}, status: 200, body: string(data)},
		{name: "malformed: letters", c: readConds{rangeSpec: "bytes=a-b"}, status: 200, body: string(data)},
		{name: "malformed: negative", c: readConds{rangeSpec: "bytes=--5"}, status: 200, body: string(data)},
		{name: "malformed: empty spec", c: readConds{rangeSpec: "bytes="}, status: 200, body: string(data)},
		{name: "ranges larger than the blob", c: readConds{rangeSpec: "bytes=0-,0-"}, status: 200, body: string(data)},

		// If-Range.
		{name: "if-range etag matches", c: readConds{rangeSpec: "bytes=0-1", ifRange: etag}, status: 206, contentRange: "bytes 0-1/36", body: "01"},
		{name: "if-range etag differs", c: readConds{rangeSpec: "bytes=0-1", ifRange: `"other"`}, status: 200, body: string(data)},
		{name: "if-range weak etag", c: readConds{rangeSpec: "bytes=0-1", ifRange: "W/" + etag}, status: 200, body: string(data)},
		{name: "if-range date matches", c: readConds{rangeSpec: "bytes=0-1", ifRange: date(mod)}, status: 206, contentRange: "bytes 0-1/36", body: "01"},
		{name: "if-range date differs", c: readConds{rangeSpec: "bytes=0-1", ifRange: date(mod.Add(-time.Hour))}, status: 200, body: string(data)},

		// If-None-Match and If-Modified-Since.
		{name: "if-none-match matches", c: readConds{ifNoneMatch: etag}, status: 304},
		{name: "if-none-match in a list", c: readConds{ifNoneMatch: `"a", W/"b",` + etag}, status: 304},
		{name: "if-none-match weak", c: readConds{ifNoneMatch: "W/" + etag}, status: 304},
		{name: "if-none-match star", c: readConds{ifNoneMatch: "*"}, status: 304},
		{name: "if-none-match differs", c: readConds{ifNoneMatch: `"a", "b"`}, status: 200, body: string(data)},
		{name: "if-none-match beats range", c: readConds{ifNoneMatch: etag, rangeSpec: "bytes=0-1"}, status: 304},
		{name: "if-none-match differs, range", c: readConds{ifNoneMatch: `"x"`, rangeSpec: "bytes=0-1"}, status: 206, contentRange: "bytes 0-1/36", body: "01"},
		{name: "if-modified-since later", c: readConds{ifModifiedSince: date(mod.Add(time.Hour))}, status: 304},
		{name: "if-modified-since same second", c: readConds{ifModifiedSince: date(mod)}, status: 304},
		{name: "if-modified-since earlier", c: readConds{ifModifiedSince: date(mod.Add(-time.Second))}, status: 200, body: string(data)},
		{name: "if-modified-since unparsable", c: readConds{ifModifiedSince: "yesterday"}, status: 200, body: string(data)},
		{name: "if-modified-since ignored with if-none-match", c: readConds{ifNoneMatch: `"x"`, ifModifiedSince: date(mod.Add(time.Hour))}, status: 200, body: string(data)},

		// If-Match and If-Unmodified-Since.
		{name: "if-match matches", c: readConds{ifMatch: etag}, status: 200, body: string(data)},
		{name: "if-match star", c: readConds{ifMatch: "*"}, status: 200, body: string(data)},
		{name: "if-match differs", c: readConds{ifMatch: `"other"`}, status: 412},
		{name: "if-match weak never matches", c: readConds{ifMatch: "W/" + etag}, status: 412},
		{name: "if-match list", c: readConds{ifMatch: `"a",` + etag}, status: 200, body: string(data)},
		{name: "if-match with range", c: readConds{ifMatch: etag, rangeSpec: "bytes=-1"}, status: 206, contentRange: "bytes 35-35/36", body: "z"},
		{name: "if-unmodified-since later", c: readConds{ifUnmodifiedSince: date(mod.Add(time.Hour))}, status: 200, body: string(data)},
		{name: "if-unmodified-since same second", c: readConds{ifUnmodifiedSince: date(mod)}, status: 200, body: string(data)},
		{name: "if-unmodified-since earlier", c: readConds{ifUnmodifiedSince: date(mod.Add(-time.Second))}, status: 412},
		{name: "if-unmodified-since ignored with if-match", c: readConds{ifMatch: etag, ifUnmodifiedSince: date(mod.Add(-time.Hour))}, status: 200, body: string(data)},
		{name: "if-match fails before if-none-match", c: readConds{ifMatch: `"x"`, ifNoneMatch: etag}, status: 412},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := answerRead(tc.c, data, etag, mod, ctype)
			if a.status != tc.status || a.contentRange != tc.contentRange {
				t.Fatalf("status %d, Content-Range %q; want %d, %q", a.status, a.contentRange, tc.status, tc.contentRange)
			}
			if wantValidators := tc.status != 416; a.validators != wantValidators {
				t.Errorf("validators %v, want %v", a.validators, wantValidators)
			}
			if tc.parts == nil {
				if string(a.body) != tc.body {
					t.Fatalf("body %q, want %q", a.body, tc.body)
				}
				if wantType := map[bool]string{true: ctype}[tc.status/100 == 2]; a.contentType != wantType {
					t.Fatalf("content type %q, want %q", a.contentType, wantType)
				}
				return
			}
			mt, params, err := mime.ParseMediaType(a.contentType)
			if err != nil || mt != "multipart/byteranges" {
				t.Fatalf("content type %q (%v), want multipart/byteranges", a.contentType, err)
			}
			mr := multipart.NewReader(strings.NewReader(string(a.body)), params["boundary"])
			var got []part
			for {
				p, err := mr.NextPart()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if p.Header.Get("Content-Type") != ctype {
					t.Errorf("part content type %q", p.Header.Get("Content-Type"))
				}
				b, _ := io.ReadAll(p)
				got = append(got, part{p.Header.Get("Content-Range"), string(b)})
			}
			if !reflect.DeepEqual(got, tc.parts) {
				t.Fatalf("parts %q, want %q", got, tc.parts)
			}
		})
	}
}

func TestAnswerReadEmptyBlob(t *testing.T) {
	mod := time.Unix(1700000000, 0)
	for _, spec := range []string{"bytes=0-", "bytes=5-10", "bytes=-5"} {
		if a := answerRead(readConds{rangeSpec: spec}, nil, `"0"`, mod, "text/plain"); a.status != 200 || len(a.body) != 0 {
			t.Errorf("%s on an empty blob: %d %q, want 200 and nothing", spec, a.status, a.body)
		}
	}
}

func TestAnswerReadZeroModTime(t *testing.T) {
	// An unknown modification time never satisfies date conditions.
	data := []byte("abc")
	date := time.Now().UTC().Format(http.TimeFormat)
	for _, c := range []readConds{
		{ifModifiedSince: date},
		{ifUnmodifiedSince: "Mon, 02 Jan 2006 15:04:05 GMT"},
	} {
		if a := answerRead(c, data, `"1"`, time.Unix(0, 0), "text/plain"); a.status != 200 {
			t.Errorf("%+v with no modification time: %d, want 200", c, a.status)
		}
	}
	if a := answerRead(readConds{rangeSpec: "bytes=0-0", ifRange: date}, data, `"1"`, time.Unix(0, 0), "text/plain"); a.status != 200 {
		t.Errorf("If-Range date with no modification time: %d, want 200", a.status)
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		spec string
		size int64
		want []httpRange
		err  error
	}{
		{"bytes=0-0", 10, []httpRange{{0, 1}}, nil},
		{"bytes=0-0,-1", 10, []httpRange{{0, 1}, {9, 1}}, nil},
		{"bytes=5-,", 10, []httpRange{{5, 5}}, nil},
		{"bytes=9-9", 10, []httpRange{{9, 1}}, nil},
		{"bytes=10-", 10, nil, errNoOverlap},
		{"bytes=+1-2", 10, nil, errBadRange},
		{"bytes=1-+2", 10, nil, errBadRange},
		{"bytes=99999999999999999999-", 10, nil, errBadRange},
		{"Bytes=0-1", 10, nil, errBadRange},
		{"bytes 0-1", 10, nil, errBadRange},
	} {
		got, err := parseRange(tc.spec, tc.size)
		if !errors.Is(err, tc.err) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRange(%q, %d) = %v, %v; want %v, %v", tc.spec, tc.size, got, err, tc.want, tc.err)
		}
	}
}

// answerRead agrees with net/http's ServeContent, which the blob API used
// before, on every combination below, except that a malformed Range header
// is ignored (200) where ServeContent refuses it (416 without a
// Content-Range).
func TestAnswerReadMatchesServeContent(t *testing.T) {
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	const etag, ctype = `"c0ffee00"`, "text/plain"
	mod := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	date := func(d time.Duration) string { return mod.Add(d).Format(http.TimeFormat) }
	ranges := []string{"", "bytes=0-0", "bytes=10-19", "bytes=-5", "bytes=30-", "bytes=0-1,30-", "bytes=36-",
		"bytes=3-1", "bytes=x", "chars=0-1", "bytes=0-,0-", "bytes=0-99"}
	tags := []string{"", etag, `"nope"`, "*", "W/" + etag, `"a", ` + etag}
	dates := []string{"", date(-time.Hour), date(0), date(time.Hour), "garbage"}
	ifRanges := []string{"", etag, `"nope"`, date(0), date(time.Second)}
	for _, rng := range ranges {
		for _, im := range tags {
			for _, inm := range tags {
				for _, ims := range dates {
					for _, ius := range dates {
						for _, ir := range ifRanges {
							c := readConds{rangeSpec: rng, ifMatch: im, ifNoneMatch: inm, ifModifiedSince: ims, ifUnmodifiedSince: ius, ifRange: ir}
							compareWithServeContent(t, c, data, etag, mod, ctype)
						}
					}
				}
			}
		}
	}
}

func compareWithServeContent(t *testing.T, c readConds, data []byte, etag string, mod time.Time, ctype string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/1,01", nil)
	for k, v := range map[string]string{"Range": c.rangeSpec, "If-Match": c.ifMatch, "If-None-Match": c.ifNoneMatch,
		"If-Modified-Since": c.ifModifiedSince, "If-Unmodified-Since": c.ifUnmodifiedSince, "If-Range": c.ifRange} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	rec.Header().Set("Etag", etag)
	rec.Header().Set("Content-Type", ctype)
	http.ServeContent(rec, req, "", mod, bytes.NewReader(data))
	want := rec.Result()
	wantBody := rec.Body.Bytes()
	got := answerRead(c, data, etag, mod, ctype)
	if want.StatusCode == 416 && want.Header.Get("Content-Range") == "" {
		// Malformed: net/http refuses, we serve the whole blob.
		if got.status != 200 || !bytes.Equal(got.body, data) {
			t.Errorf("%+v: %d, want the whole blob for a malformed Range", c, got.status)
		}
		return
	}
	if got.status != want.StatusCode || got.contentRange != want.Header.Get("Content-Range") {
		t.Errorf("%+v: status %d, Content-Range %q; net/http: %d, %q", c, got.status, got.contentRange,
			want.StatusCode, want.Header.Get("Content-Range"))
		return
	}
	if got.status/100 != 2 {
		return
	}
	if strings.HasPrefix(got.contentType, "multipart/") {
		// Boundaries differ: compare with the boundary replaced.
		_, gp, _ := mime.ParseMediaType(got.contentType)
		_, wp, _ := mime.ParseMediaType(want.Header.Get("Content-Type"))
		wantBody = bytes.ReplaceAll(wantBody, []byte(wp["boundary"]), []byte(gp["boundary"]))
	} else if got.contentType != want.Header.Get("Content-Type") {
		t.Errorf("%+v: content type %q, net/http %q", c, got.contentType, want.Header.Get("Content-Type"))
	}
	if !bytes.Equal(got.body, wantBody) {
		t.Errorf("%+v: body %q, net/http %q", c, got.body, wantBody)
	}
}
