package integration

import (
	"os"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// notYet names the suite's tests for features a later issue brings.
var notYet = map[string]string{
	"FcntlFlockLocksFile": "locks across mounts are issue 5 (the mount does not forward fcntl/flock locks yet)",
}

// TestMountPosixSuite runs go-fuse's POSIX conformance tests on a mount,
// each in a directory of its own.
func TestMountPosixSuite(t *testing.T) {
	_, m := mountCluster(t, nil)
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			if why, ok := notYet[name]; ok {
				t.Skip(why)
			}
			dir := m.Path(name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			fn(t, dir)
		})
	}
}
