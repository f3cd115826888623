package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kelpfs/kelp/mount"
	"github.com/kelpfs/kelp/mount/fusefs"
)

// NeedFUSE skips t when this machine cannot mount FUSE file systems,
// unless CI is set: there a missing FUSE is a failure, not a skip.
func NeedFUSE(t testing.TB) {
	t.Helper()
	why := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "no /dev/fuse"
	} else if os.Geteuid() != 0 {
		if _, err := lookPath("fusermount3", "fusermount"); err != nil {
			why = "not root and no fusermount"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("FUSE tests cannot run: %s (CI must provide FUSE)", why)
	}
	t.Skipf("skipping FUSE test: %s (set up FUSE, or run as root, to run it)", why)
}

func lookPath(names ...string) (string, error) {
	for _, n := range names {
		for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("none of %v on PATH", names)
}

// Mount is a FUSE mount of the cluster's filer.
type Mount struct {
	Dir string
	FS  *mount.FS
	m   *fusefs.Mounted
	t   testing.TB
}

// MountFiler mounts the cluster's filer at a fresh directory (skipping the
// test when FUSE is unavailable outside CI); adjust tunes the config. The
// mount is unmounted and flushed at cleanup.
func (c *Cluster) MountFiler(adjust func(*mount.Config)) *Mount {
	t := c.t
	t.Helper()
	NeedFUSE(t)
	if c.Filer == nil {
		t.Fatal("MountFiler: the cluster has no filer (set Options.Filer)")
	}
	cfg := mount.DefaultConfig()
	cfg.Filer = c.Filer.MountAddr()
	cfg.CacheDir = filepath.Join(t.TempDir(), "cache")
	cfg.CacheCapacityMB = 256
	cfg.OpTimeout = 20 * time.Second
	cfg.Logger = c.log.With("mount", 0)
	if adjust != nil {
		adjust(&cfg)
	}
	fsys, err := mount.New(cfg)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	dir := t.TempDir()
	m, err := fusefs.Mount(fsys, dir, fusefs.Options{ReadAheadKB: fusefs.DefaultReadAheadKB})
	if err != nil {
		fsys.Close()
		t.Fatalf("mount: %v", err)
	}
	mt := &Mount{Dir: dir, FS: fsys, m: m, t: t}
	t.Cleanup(mt.Unmount)
	return mt
}

// Unmount unmounts and flushes (idempotent), failing the test (Errorf) if
// either fails.
func (m *Mount) Unmount() {
	if err := m.TryUnmount(); err != nil {
		m.t.Errorf("%v", err)
	}
}

// TryUnmount is Unmount returning what failed instead of failing the test:
// for tests where the cluster is gone and the final flush may fail. It is
// idempotent (nil after the first call).
func (m *Mount) TryUnmount() error {
	if m.m == nil {
		return nil
	}
	var errs []error
	if err := m.m.Unmount(); err != nil {
		errs = append(errs, fmt.Errorf("unmount %s: %w", m.Dir, err))
	}
	if err := m.FS.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close mount %s: %w", m.Dir, err))
	}
	m.m = nil
	return errors.Join(errs...)
}

// Path joins elems under the mount point.
func (m *Mount) Path(elems ...string) string {
	return filepath.Join(append([]string{m.Dir}, elems...)...)
}

// Mounted reports whether dir is a mount point, from /proc/self/mountinfo.
func Mounted(t testing.TB, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
