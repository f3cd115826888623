package needle_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/needle"
)

func FuzzParseFileID(f *testing.F) {
	for _, s := range []string{
		"3,01637037d6", "3,00637037d6", "3,1637037d6", "3,01637037d6_2", "0,0000000000",
		"4294967295,ffffffffffffffffffffffff", "3,fffffffffffffffe637037d6_1", "3,637037d6",
		"3,01637037D6", "", ",", "3,01637037d6_", "3,0g637037d6", "3,01637037d6_18446744073709551615",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fid, err := needle.ParseFileID(s)
		if err != nil {
			if !errors.Is(err, needle.ErrBadFileID) {
				t.Fatalf("ParseFileID(%q): error %v does not wrap ErrBadFileID", s, err)
			}
			return
		}
		str := fid.String()
		back, err := needle.ParseFileID(str)
		if err != nil || back != fid {
			t.Fatalf("ParseFileID(%q) = %+v, but its String %q parses to %+v, %v", s, fid, str, back, err)
		}
		if back.String() != str {
			t.Fatalf("String not canonical: %q then %q", str, back.String())
		}
		// The blob-path forms name the same id.
		for _, p := range []string{"/" + str, "/" + str + ".bin", "/" + strings.Replace(str, ",", "/", 1) + "/x.bin"} {
			bp, err := needle.ParseBlobPath(p)
			if err != nil || bp.FileID != fid {
				t.Fatalf("ParseBlobPath(%q) = %+v, %v; want %+v", p, bp, err, fid)
			}
		}
	})
}

func FuzzParseBlobPath(f *testing.F) {
	for _, s := range []string{
		"/3,01637037d6", "/3,01637037d6.jpg", "/3/01637037d6", "/3/01637037d6.jpg",
		"/3/01637037d6/name.jpg", "3,01637037d6", "/3,0163/7037d6", "/3/01637037d6/a/b",
		"/3/01637037d6/", "/", "", "/3,01637037d6_1.tar.gz", "/3/01637037d6.png/.x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		bp, err := needle.ParseBlobPath(p)
		if err != nil {
			if !errors.Is(err, needle.ErrBadFileID) {
				t.Fatalf("ParseBlobPath(%q): error %v does not wrap ErrBadFileID", p, err)
			}
			return
		}
		if bp.Ext != "" && !strings.HasPrefix(bp.Ext, ".") {
			t.Fatalf("ParseBlobPath(%q): ext %q without a dot", p, bp.Ext)
		}
		if strings.Contains(bp.Name, "/") || strings.Contains(bp.Ext, "/") {
			t.Fatalf("ParseBlobPath(%q) = %+v: slash in name or ext", p, bp)
		}
		if !strings.Contains(p, bp.Ext) || !strings.Contains(p, bp.Name) {
			t.Fatalf("ParseBlobPath(%q) = %+v: ext or name not from the path", p, bp)
		}
		back, err := needle.ParseFileID(bp.FileID.String())
		if err != nil || back != bp.FileID {
			t.Fatalf("ParseBlobPath(%q) = %+v; its id re-parses to %+v, %v", p, bp, back, err)
		}
		// Rebuilding the path from the parsed parts gives the same result.
		var again string
		if bp.Name != "" {
			again = "/" + strings.Replace(bp.FileID.String(), ",", "/", 1)
			if bp.Ext != "" && !strings.HasSuffix(bp.Name, bp.Ext) {
				again += bp.Ext
			}
			again += "/" + bp.Name
		} else {
			again = "/" + bp.FileID.String() + bp.Ext
		}
		bp2, err := needle.ParseBlobPath(again)
		if err != nil || bp2 != bp {
			t.Fatalf("ParseBlobPath(%q) = %+v; rebuilt %q parses to %+v, %v", p, bp, again, bp2, err)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	seed := &needle.Needle{Cookie: 0x637037d6, ID: 1, Data: []byte("hello"), Name: []byte("a.txt"),
		Mime: []byte("text/plain"), LastModified: 1700000000, TTL: needle.TTL{Count: 3, Unit: 'd'}, IsManifest: true, AppendAtNs: 5}
	f.Add(seed.AppendRecord(nil), uint32(1), uint64(2), []byte("data"), []byte("n"), []byte("m"), uint64(0), uint8(0), byte(0), false, uint64(0))
	f.Add((&needle.Needle{ID: 9}).AppendRecord(nil), uint32(0), uint64(0), []byte{}, []byte{}, []byte{}, uint64(1<<40-1), uint8(255), byte('y'), true, uint64(1<<63))
	f.Add(needle.AppendDeleteRecord(nil, 7, 8, 9), ^uint32(0), ^uint64(0), []byte(nil), bytes.Repeat([]byte{'x'}, 255), []byte(nil), uint64(1), uint8(1), byte('m'), false, uint64(1))
	f.Add([]byte{}, uint32(0), uint64(0), []byte(nil), []byte(nil), []byte(nil), uint64(0), uint8(0), byte(0), false, uint64(0))
	f.Add(bytes.Repeat([]byte{0xff}, 40), uint32(0), uint64(0), []byte(nil), []byte(nil), []byte(nil), uint64(0), uint8(2), byte('x'), false, uint64(0))

	units := []byte{needle.TTLMinute, needle.TTLHour, needle.TTLDay, needle.TTLWeek, needle.TTLMonth, needle.TTLYear}
	f.Fuzz(func(t *testing.T, raw []byte, cookie uint32, id uint64, data, name, mime []byte,
		lastMod uint64, ttlCount uint8, ttlUnit byte, manifest bool, appendAt uint64) {
		// 1. Arbitrary bytes never panic; a decoded needle re-encodes to a
		// record that decodes to the same fields.
		n, deleted, err := needle.DecodeRecord(raw)
		if err == nil && !deleted {
			if verr := n.Validate(); verr != nil {
				t.Fatalf("decoded needle does not validate: %v", verr)
			}
			rec := n.AppendRecord(nil)
			n2, del2, err := needle.DecodeRecord(rec)
			if err != nil || del2 || !needlesEqual(n, n2) {
				t.Fatalf("re-encoded decoded needle: %+v, %v, %v; want %+v", n2, del2, err, n)
			}
			h, _ := needle.ParseHeader(raw)
			if int64(len(raw)) < int64(needle.HeaderSize)+int64(h.Size)+needle.ChecksumSize+needle.TimestampSize {
				t.Fatalf("decoded a record from %d bytes, record size %d", len(raw), needle.RecordSize(h.Size))
			}
		} else if err != nil && n != nil {
			t.Fatalf("error %v with a needle", err)
		}
		if err != nil && !errors.Is(err, needle.ErrShortRecord) && !errors.Is(err, needle.ErrChecksum) && !errors.Is(err, needle.ErrCorrupt) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		// The same bytes as a body behind a valid header and checksum, so the
		// fuzzer explores body decoding instead of stopping at the CRC.
		if len(raw) > 0 {
			n, deleted, err := needle.DecodeRecord(sealed(raw))
			switch {
			case err == nil && deleted:
				t.Fatal("non-empty body decoded as a deletion")
			case err == nil:
				n2, _, err := needle.DecodeRecord(n.AppendRecord(nil))
				if err != nil || !needlesEqual(n, n2) {
					t.Fatalf("sealed body % x: re-encoded %+v, %v; want %+v", raw, n2, err, n)
				}
			case !errors.Is(err, needle.ErrCorrupt):
				t.Fatalf("sealed body % x: %v, want nil or ErrCorrupt", raw, err)
			}
		}

		// 2. Encode -> decode round trip of fuzzed fields.
		if len(name) > 255 {
			name = name[:255]
		}
		if len(mime) > 255 {
			mime = mime[:255]
		}
		want := &needle.Needle{
			Cookie: cookie, ID: id, Data: data, Name: name, Mime: mime,
			LastModified: lastMod % (1 << 40), IsManifest: manifest, AppendAtNs: appendAt,
			TTL: needle.TTL{Count: ttlCount, Unit: units[int(ttlUnit)%len(units)]},
		}
		if ttlCount == 0 {
			want.TTL = needle.TTL{}
		}
		if err := want.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		prefix := []byte{1, 2, 3, 4, 5, 6, 7, 8}
		rec := want.AppendRecord(bytes.Clone(prefix))
		if !bytes.Equal(rec[:8], prefix) {
			t.Fatal("prefix overwritten")
		}
		rec = rec[8:]
		if int64(len(rec)) != needle.RecordSize(want.BodySize()) || len(rec)%needle.Alignment != 0 {
			t.Fatalf("record of %d bytes, RecordSize %d", len(rec), needle.RecordSize(want.BodySize()))
		}
		got, deleted, err := needle.DecodeRecord(rec)
		if err != nil || deleted || !needlesEqual(got, want) {
			t.Fatalf("round trip: %+v, %v, %v; want %+v", got, deleted, err, want)
		}
		// A torn tail is never taken for a record.
		cut := int(needle.HeaderSize + want.BodySize() + needle.ChecksumSize + needle.TimestampSize - 1)
		if _, _, err := needle.DecodeRecord(rec[:cut]); !errors.Is(err, needle.ErrShortRecord) {
			t.Fatalf("torn record: %v", err)
		}
		del := needle.AppendDeleteRecord(nil, id, cookie, appendAt)
		dn, deleted, err := needle.DecodeRecord(del)
		if err != nil || !deleted || dn.ID != id || dn.Cookie != cookie || dn.AppendAtNs != appendAt {
			t.Fatalf("deletion round trip: %+v, %v, %v", dn, deleted, err)
		}
	})
}

func FuzzParseSuperBlock(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 12, 5, 'd', 2, 3, 0, 0})
	f.Add([]byte{1, 222, 255, 'y', 255, 255, 255, 255, 9})
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 3, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := needle.ParseSuperBlock(b)
		if err != nil {
			if !errors.Is(err, needle.ErrShortRecord) && !errors.Is(err, needle.ErrCorrupt) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(b) < needle.SuperBlockSize {
			t.Fatalf("parsed a superblock from %d bytes", len(b))
		}
		enc := sb.Bytes()
		if len(enc) != needle.SuperBlockSize {
			t.Fatalf("Bytes gave %d bytes", len(enc))
		}
		back, err := needle.ParseSuperBlock(enc)
		if err != nil || back != sb {
			t.Fatalf("re-parse: %+v, %v; want %+v", back, err, sb)
		}
		if !bytes.Equal(enc[:2], b[:2]) || !bytes.Equal(enc[4:6], b[4:6]) {
			t.Fatalf("version, placement or revision changed: % x -> % x", b[:8], enc)
		}
		if rp, err := needle.ParseReplicaPlacement(sb.Replication.String()); err != nil || rp != sb.Replication {
			t.Fatalf("placement %+v does not round trip its string: %+v, %v", sb.Replication, rp, err)
		}
		if !sb.TTL.IsZero() {
			if tt, err := needle.ParseTTL(sb.TTL.String()); err != nil || tt != sb.TTL {
				t.Fatalf("ttl %+v does not round trip its string: %+v, %v", sb.TTL, tt, err)
			}
		}
	})
}
