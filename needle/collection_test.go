package needle

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateCollection(t *testing.T) {
	for _, c := range []string{"", "photos", "a.b_c-d", "X1", strings.Repeat("a", MaxCollectionLen)} {
		if err := ValidateCollection(c); err != nil {
			t.Errorf("ValidateCollection(%q): %v", c, err)
		}
	}
	for _, c := range []string{".", "..", ".hidden", "-x", "a/b", "a b", "é", "a\x00", strings.Repeat("a", MaxCollectionLen+1)} {
		if err := ValidateCollection(c); !errors.Is(err, ErrBadCollection) {
			t.Errorf("ValidateCollection(%q) = %v, want ErrBadCollection", c, err)
		}
	}
}
