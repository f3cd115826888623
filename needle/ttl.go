package needle

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrBadTTL reports a TTL string that does not parse.
var ErrBadTTL = errors.New("needle: malformed ttl")

// TTL units as stored in the second TTL byte.
const (
	TTLEmpty  byte = 0
	TTLMinute byte = 'm'
	TTLHour   byte = 'h'
	TTLDay    byte = 'd'
	TTLWeek   byte = 'w'
	TTLMonth  byte = 'M' // 30 days
	TTLYear   byte = 'y' // 365 days
)

// TTL is a time to live: Count units. The zero value means none.
type TTL struct {
	Count uint8
	Unit  byte
}

// ParseTTL parses "" (none) or "<count><unit>" with unit one of m h d w M y,
// e.g. "3m", "4h", "5d". A bare number counts minutes.
func ParseTTL(s string) (TTL, error) {
	if s == "" {
		return TTL{}, nil
	}
	unit := s[len(s)-1]
	num := s[:len(s)-1]
	if '0' <= unit && unit <= '9' {
		unit, num = TTLMinute, s
	}
	if unitDuration(unit) == 0 {
		return TTL{}, fmt.Errorf("%w %q: unit must be one of m h d w M y", ErrBadTTL, s)
	}
	n, err := strconv.ParseUint(num, 10, 8)
	if err != nil {
		return TTL{}, fmt.Errorf("%w %q: count must be 0 to 255", ErrBadTTL, s)
	}
	if n == 0 {
		return TTL{}, nil
	}
	return TTL{Count: uint8(n), Unit: unit}, nil
}

// TTLFromBytes decodes the 2-byte stored form.
func TTLFromBytes(b []byte) TTL {
	if b[0] == 0 || unitDuration(b[1]) == 0 {
		return TTL{}
	}
	return TTL{Count: b[0], Unit: b[1]}
}

// IsZero reports whether there is no TTL.
func (t TTL) IsZero() bool { return t.Count == 0 }

// Bytes returns the 2-byte stored form.
func (t TTL) Bytes() [2]byte {
	if t.IsZero() {
		return [2]byte{}
	}
	return [2]byte{t.Count, t.Unit}
}

// String returns the parseable form, "" for none.
func (t TTL) String() string {
	if t.IsZero() {
		return ""
	}
	return strconv.Itoa(int(t.Count)) + string(t.Unit)
}

// Duration returns the TTL as a duration, 0 for none.
func (t TTL) Duration() time.Duration {
	return time.Duration(t.Count) * unitDuration(t.Unit)
}

func unitDuration(u byte) time.Duration {
	switch u {
	case TTLMinute:
		return time.Minute
	case TTLHour:
		return time.Hour
	case TTLDay:
		return 24 * time.Hour
	case TTLWeek:
		return 7 * 24 * time.Hour
	case TTLMonth:
		return 30 * 24 * time.Hour
	case TTLYear:
		return 365 * 24 * time.Hour
	}
	return 0
}
