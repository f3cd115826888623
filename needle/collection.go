package needle

import (
	"errors"
	"fmt"
)

// ErrBadCollection reports a collection name that cannot be used.
var ErrBadCollection = errors.New("needle: malformed collection name")

// MaxCollectionLen bounds a collection name.
const MaxCollectionLen = 128

// ValidateCollection checks a collection name: empty (the default
// collection), or 1 to 128 of [A-Za-z0-9._-] not starting with '.' or '-',
// so it is safe as a volume file name prefix. The master and the volume
// servers apply the same rule.
func ValidateCollection(c string) error {
	if c == "" {
		return nil
	}
	bad := len(c) > MaxCollectionLen || c[0] == '.' || c[0] == '-'
	for i := 0; i < len(c) && !bad; i++ {
		b := c[i]
		bad = !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-')
	}
	if bad {
		return fmt.Errorf("%w %.40q: want 1 to %d of [A-Za-z0-9._-], not starting with '.' or '-'", ErrBadCollection, c, MaxCollectionLen)
	}
	return nil
}
