package needle

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadFileID reports a malformed file id or blob URL path.
var ErrBadFileID = errors.New("needle: malformed file id")

// FileID names one blob: a volume, a key within it and the cookie that
// guards against guessed URLs.
type FileID struct {
	VolumeID uint32
	Key      uint64
	Cookie   uint32
}

// String formats the id as "<volume>,<key hex><cookie 8 hex>".
func (f FileID) String() string {
	return strconv.FormatUint(uint64(f.VolumeID), 10) + "," + FormatKeyCookie(f.Key, f.Cookie)
}

// FormatKeyCookie returns the part of a file id after the comma. At least one
// key byte is kept, so key 0 gives "00" + cookie, which ParseKeyCookie accepts.
func FormatKeyCookie(key uint64, cookie uint32) string {
	var b [12]byte
	putUint64(b[0:8], key)
	putUint32(b[8:12], cookie)
	i := 0
	for i < 7 && b[i] == 0 {
		i++
	}
	return hex.EncodeToString(b[i:])
}

// ParseFileID parses "<volume>,<key><cookie>" with an optional "_N" suffix.
func ParseFileID(s string) (FileID, error) {
	vol, rest, ok := strings.Cut(s, ",")
	if !ok {
		return FileID{}, fmt.Errorf("%w %q: want <volume>,<key><cookie>", ErrBadFileID, s)
	}
	return parseParts(s, vol, rest)
}

func parseParts(whole, vol, keyCookie string) (FileID, error) {
	vid, err := ParseVolumeID(vol)
	if err != nil {
		return FileID{}, fmt.Errorf("%w %q: %v", ErrBadFileID, whole, err)
	}
	key, cookie, err := ParseKeyCookie(keyCookie)
	if err != nil {
		return FileID{}, fmt.Errorf("%w %q: %v", ErrBadFileID, whole, err)
	}
	return FileID{VolumeID: vid, Key: key, Cookie: cookie}, nil
}

// ParseVolumeID parses a decimal volume id.
func ParseVolumeID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad volume id %q", s)
	}
	return uint32(v), nil
}

// ParseKeyCookie parses "<key hex><cookie 8 hex>[_N]".
func ParseKeyCookie(s string) (key uint64, cookie uint32, err error) {
	var delta uint64
	if base, d, ok := strings.Cut(s, "_"); ok {
		delta, err = strconv.ParseUint(d, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bad key delta %q", d)
		}
		s = base
	}
	if len(s) <= 8 || len(s) > 24 {
		return 0, 0, fmt.Errorf("key and cookie %q: want 9 to 24 hex digits", s)
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return 0, 0, fmt.Errorf("key and cookie %q: not hex", s)
		}
	}
	k, err := strconv.ParseUint(s[:len(s)-8], 16, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("key %q: %v", s[:len(s)-8], err)
	}
	c, err := strconv.ParseUint(s[len(s)-8:], 16, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("cookie %q: %v", s[len(s)-8:], err)
	}
	if k+delta < k {
		return 0, 0, fmt.Errorf("key delta %d overflows", delta)
	}
	return k + delta, uint32(c), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// BlobPath is a parsed blob URL path.
type BlobPath struct {
	FileID FileID
	// Ext is the extension given after the key, with its dot (".jpg"), or "".
	Ext string
	// Name is the file name given as the last path element, or "".
	Name string
}

// ParseBlobPath parses every URL path form the volume server accepts:
//
//	/3,01637037d6   /3,01637037d6.jpg
//	/3/01637037d6   /3/01637037d6.jpg   /3/01637037d6/name.jpg
func ParseBlobPath(p string) (BlobPath, error) {
	s := strings.TrimPrefix(p, "/")
	var vol, kc, name string
	if v, rest, ok := strings.Cut(s, ","); ok && !strings.Contains(v, "/") {
		vol, kc = v, rest
		if strings.Contains(kc, "/") {
			return BlobPath{}, fmt.Errorf("%w: path %q", ErrBadFileID, p)
		}
	} else {
		parts := strings.Split(s, "/")
		switch len(parts) {
		case 2:
			vol, kc = parts[0], parts[1]
		case 3:
			vol, kc, name = parts[0], parts[1], parts[2]
			if name == "" {
				return BlobPath{}, fmt.Errorf("%w: path %q has an empty name", ErrBadFileID, p)
			}
		default:
			return BlobPath{}, fmt.Errorf("%w: path %q", ErrBadFileID, p)
		}
	}
	var ext string
	if i := strings.IndexByte(kc, '.'); i >= 0 {
		kc, ext = kc[:i], kc[i:]
	}
	if name != "" && ext == "" {
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			ext = name[i:]
		}
	}
	fid, err := parseParts(p, vol, kc)
	if err != nil {
		return BlobPath{}, err
	}
	return BlobPath{FileID: fid, Ext: ext, Name: name}, nil
}
