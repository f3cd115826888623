package needle_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kelpfs/kelp/needle"
)

func TestParseTTL(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		in    string
		want  needle.TTL
		dur   time.Duration
		bytes [2]byte
		str   string
	}{
		{"", needle.TTL{}, 0, [2]byte{}, ""},
		{"3m", needle.TTL{Count: 3, Unit: needle.TTLMinute}, 3 * time.Minute, [2]byte{3, 'm'}, "3m"},
		{"4h", needle.TTL{Count: 4, Unit: needle.TTLHour}, 4 * time.Hour, [2]byte{4, 'h'}, "4h"},
		{"5d", needle.TTL{Count: 5, Unit: needle.TTLDay}, 5 * day, [2]byte{5, 'd'}, "5d"},
		{"6w", needle.TTL{Count: 6, Unit: needle.TTLWeek}, 42 * day, [2]byte{6, 'w'}, "6w"},
		{"7M", needle.TTL{Count: 7, Unit: needle.TTLMonth}, 210 * day, [2]byte{7, 'M'}, "7M"},
		{"8y", needle.TTL{Count: 8, Unit: needle.TTLYear}, 8 * 365 * day, [2]byte{8, 'y'}, "8y"},
		{"255y", needle.TTL{Count: 255, Unit: needle.TTLYear}, 255 * 365 * day, [2]byte{255, 'y'}, "255y"},
		{"15", needle.TTL{Count: 15, Unit: needle.TTLMinute}, 15 * time.Minute, [2]byte{15, 'm'}, "15m"},
		{"007d", needle.TTL{Count: 7, Unit: needle.TTLDay}, 7 * day, [2]byte{7, 'd'}, "7d"},
		{"0d", needle.TTL{}, 0, [2]byte{}, ""},
		{"0", needle.TTL{}, 0, [2]byte{}, ""},
	}
	for _, c := range cases {
		got, err := needle.ParseTTL(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseTTL(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if d := got.Duration(); d != c.dur {
			t.Errorf("%q.Duration() = %v, want %v", c.in, d, c.dur)
		}
		if b := got.Bytes(); b != c.bytes {
			t.Errorf("%q.Bytes() = %v, want %v", c.in, b, c.bytes)
		}
		if s := got.String(); s != c.str {
			t.Errorf("%q.String() = %q, want %q", c.in, s, c.str)
		}
		if got.IsZero() != (c.str == "") {
			t.Errorf("%q.IsZero() = %v", c.in, got.IsZero())
		}
		if back := needle.TTLFromBytes(c.bytes[:]); back != got {
			t.Errorf("TTLFromBytes(%v) = %+v, want %+v", c.bytes, back, got)
		}
		if again, err := needle.ParseTTL(got.String()); err != nil || again != got {
			t.Errorf("ParseTTL(String()) = %+v, %v", again, err)
		}
	}
}

func TestParseTTLErrors(t *testing.T) {
	bad := []string{"m", "h", "3s", "3Y", "3D", "3H", "3x", "256m", "256", "1000d", "-1d", "+1d", " 1d", "1d ", "1.5d", "d3", "3dd", "0x1d", "1_0d", "\xff"}
	for _, s := range bad {
		if got, err := needle.ParseTTL(s); !errors.Is(err, needle.ErrBadTTL) {
			t.Errorf("ParseTTL(%q) = %+v, %v; want ErrBadTTL", s, got, err)
		}
	}
}

func TestTTLFromBytesRejectsUnknown(t *testing.T) {
	for _, b := range [][]byte{{0, 'd'}, {3, 0}, {3, 'x'}, {3, 'D'}} {
		if got := needle.TTLFromBytes(b); !got.IsZero() || got != (needle.TTL{}) {
			t.Errorf("TTLFromBytes(%v) = %+v, want zero", b, got)
		}
	}
}
