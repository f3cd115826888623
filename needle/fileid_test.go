package needle_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

func TestParseFileID(t *testing.T) {
	cases := []struct {
		in   string
		want needle.FileID
	}{
		{"3,01637037d6", needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}},
		{"3,01637037D6", needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}},
		{"3,1637037d6", needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}},
		{"3,0000000001637037d6", needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}},
		{"3,00637037d6", needle.FileID{VolumeID: 3, Key: 0, Cookie: 0x637037d6}},
		{"0,0000000000", needle.FileID{}},
		{"4294967295,ffffffffffffffffffffffff", needle.FileID{VolumeID: 1<<32 - 1, Key: 1<<64 - 1, Cookie: 1<<32 - 1}},
		{"7,0102030405060708090a0b0c", needle.FileID{VolumeID: 7, Key: 0x0102030405060708, Cookie: 0x090a0b0c}},
		{"3,01637037d6_1", needle.FileID{VolumeID: 3, Key: 0x02, Cookie: 0x637037d6}},
		{"3,01637037d6_2", needle.FileID{VolumeID: 3, Key: 0x03, Cookie: 0x637037d6}},
		{"3,01637037d6_0", needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}},
		{"3,ff637037d6_1", needle.FileID{VolumeID: 3, Key: 0x100, Cookie: 0x637037d6}},
		{"3,fffffffffffffffe637037d6_1", needle.FileID{VolumeID: 3, Key: 1<<64 - 1, Cookie: 0x637037d6}},
	}
	for _, c := range cases {
		got, err := needle.ParseFileID(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseFileID(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestParseFileIDErrors(t *testing.T) {
	bad := []string{
		"", ",", "3", "3,", ",01637037d6", "3;01637037d6",
		"x,01637037d6", "-3,01637037d6", "+3,01637037d6", " 3,01637037d6", "4294967296,01637037d6",
		"3,637037d6",                   // cookie only, no key
		"3,0g637037d6",                 // not hex
		"3,01637037d6 ",                // trailing space
		"3,01637037d6,1",               // two commas
		"3,+1637037d6",                 // sign
		"3,0x1637037d6",                // prefix
		"3,01637037d6_",                // empty delta
		"3,01637037d6_x",               // bad delta
		"3,01637037d6_-1",              // negative delta
		"3,01637037d6_1_2",             // two deltas
		"3,ffffffffffffffff637037d6_1", // delta overflows the key
		"3,01ffffffffffffffff637037d6", // key longer than 8 bytes
		"3,01637037d6.jpg",             // extensions belong to blob paths
		"3,01637037d6/a",               // so do names
		strings.Repeat("9", 30) + ",01637037d6",
	}
	for _, s := range bad {
		if got, err := needle.ParseFileID(s); !errors.Is(err, needle.ErrBadFileID) {
			t.Errorf("ParseFileID(%q) = %+v, %v; want ErrBadFileID", s, got, err)
		}
	}
}

func TestFileIDString(t *testing.T) {
	cases := []struct {
		fid  needle.FileID
		want string
	}{
		{needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}, "3,01637037d6"},
		{needle.FileID{VolumeID: 3, Key: 0, Cookie: 0x637037d6}, "3,00637037d6"},
		{needle.FileID{}, "0,0000000000"},
		{needle.FileID{VolumeID: 12, Key: 0x100, Cookie: 1}, "12,010000000001"},
		{needle.FileID{VolumeID: 1, Key: 0x0102030405060708, Cookie: 0x090a0b0c}, "1,0102030405060708090a0b0c"},
		{needle.FileID{VolumeID: 1<<32 - 1, Key: 1<<64 - 1, Cookie: 1<<32 - 1}, "4294967295,ffffffffffffffffffffffff"},
	}
	for _, c := range cases {
		if got := c.fid.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.fid, got, c.want)
		}
		back, err := needle.ParseFileID(c.want)
		if err != nil || back != c.fid {
			t.Errorf("ParseFileID(%q) = %+v, %v; want %+v", c.want, back, err, c.fid)
		}
		_, kc, _ := strings.Cut(c.want, ",")
		if got := needle.FormatKeyCookie(c.fid.Key, c.fid.Cookie); got != kc {
			t.Errorf("FormatKeyCookie = %q, want %q", got, kc)
		}
	}
}

func TestFileIDKeyDeltaMatchesString(t *testing.T) {
	// fid_N names the same blob as the fid whose key is N more.
	base := needle.FileID{VolumeID: 9, Key: 0xfe, Cookie: 0xabcdef01}
	for n := uint64(0); n < 5; n++ {
		got, err := needle.ParseFileID(base.String() + "_" + string(rune('0'+n)))
		if err != nil {
			t.Fatal(err)
		}
		want := base
		want.Key += n
		if got != want {
			t.Fatalf("_%d: got %+v want %+v", n, got, want)
		}
	}
}

func TestParseVolumeIDAndKeyCookie(t *testing.T) {
	if v, err := needle.ParseVolumeID("42"); err != nil || v != 42 {
		t.Fatalf("ParseVolumeID = %d, %v", v, err)
	}
	if _, err := needle.ParseVolumeID(""); err == nil {
		t.Fatal("empty volume id parsed")
	}
	k, c, err := needle.ParseKeyCookie("01637037d6_3")
	if err != nil || k != 4 || c != 0x637037d6 {
		t.Fatalf("ParseKeyCookie = %x %x %v", k, c, err)
	}
}

func TestParseBlobPath(t *testing.T) {
	fid := needle.FileID{VolumeID: 3, Key: 0x01, Cookie: 0x637037d6}
	cases := []struct {
		in   string
		want needle.BlobPath
	}{
		{"/3,01637037d6", needle.BlobPath{FileID: fid}},
		{"/3,01637037d6.jpg", needle.BlobPath{FileID: fid, Ext: ".jpg"}},
		{"/3/01637037d6", needle.BlobPath{FileID: fid}},
		{"/3/01637037d6.jpg", needle.BlobPath{FileID: fid, Ext: ".jpg"}},
		{"/3/01637037d6/name.jpg", needle.BlobPath{FileID: fid, Ext: ".jpg", Name: "name.jpg"}},
		{"/3/01637037d6/archive.tar.gz", needle.BlobPath{FileID: fid, Ext: ".gz", Name: "archive.tar.gz"}},
		{"/3/01637037d6/README", needle.BlobPath{FileID: fid, Name: "README"}},
		{"/3/01637037d6/.hidden", needle.BlobPath{FileID: fid, Name: ".hidden"}},
		{"/3/01637037d6.png/name.jpg", needle.BlobPath{FileID: fid, Ext: ".png", Name: "name.jpg"}},
		{"3,01637037d6", needle.BlobPath{FileID: fid}},
		{"/3,00637037d6_1.jpg", needle.BlobPath{FileID: fid, Ext: ".jpg"}},
		{"/3/00637037d6_1", needle.BlobPath{FileID: fid}},
	}
	for _, c := range cases {
		got, err := needle.ParseBlobPath(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBlobPath(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestParseBlobPathErrors(t *testing.T) {
	bad := []string{
		"", "/", "//", "/3", "/3,", "/3/", "/,01637037d6", "//01637037d6",
		"/x,01637037d6", "/x/01637037d6", "/3,637037d6", "/3/637037d6",
		"/3,0163/7037d6", "/3,01637037d6/name.jpg", "/3,01637037d6/",
		"/3/01637037d6/", "/3/01637037d6/a/b", "/a/3/01637037d6", "/a/3,01637037d6",
		"/3/01637037d6,x", "/3,01637037d6_x.jpg", "/3,zz637037d6",
	}
	for _, p := range bad {
		if got, err := needle.ParseBlobPath(p); !errors.Is(err, needle.ErrBadFileID) {
			t.Errorf("ParseBlobPath(%q) = %+v, %v; want ErrBadFileID", p, got, err)
		}
	}
}
