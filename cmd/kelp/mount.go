package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kelpfs/kelp/mount"
	"github.com/kelpfs/kelp/mount/fusefs"
)

// mountFlags maps `kelp mount` flags (also `kelp server -mount`) onto a
// mount.Config and fusefs.Options.
type mountFlags struct {
	filer             string
	dir               string
	filerPath         string
	cacheDir          string
	cacheCapacityMB   int64
	cacheMemoryMB     int64
	imageCapacityMB   int64
	inlineImages      int
	chunkSizeMB       int
	writeBufferMB     int64
	concurrentWriters int
	readOnly          bool
	allowOthers       bool
	umask             string
	replication       string
	collection        string
	ttl               string
	entryTimeout      time.Duration
	attrTimeout       time.Duration
	metaCacheTTL      time.Duration
	opTimeout         time.Duration
	fuseDebug         bool
	writebackCache    bool
	readAheadKB       int
}

func (m *mountFlags) register(fs *flag.FlagSet, prefix string) {
	d := mount.DefaultConfig()
	if prefix == "" {
		fs.StringVar(&m.filer, "filer", "localhost:8888", "filer address host:port (gRPC at port+10000, or host:port.grpcPort)")
		fs.StringVar(&m.dir, "dir", "", "mount point, an existing empty directory (required)")
	}
	fs.StringVar(&m.filerPath, prefix+"filer.path", d.FilerPath, "directory of the filer to mount as the root")
	fs.StringVar(&m.cacheDir, prefix+"cacheDir", "", "directory of the chunk cache's disk tier (default: a directory under the user cache dir, one per mount point)")
	fs.Int64Var(&m.cacheCapacityMB, prefix+"cacheCapacityMB", d.CacheCapacityMB, "disk budget of the chunk cache in MiB (0 turns the disk tier off)")
	fs.Int64Var(&m.cacheMemoryMB, prefix+"cacheMemoryMB", d.CacheMemoryMB, "memory budget of the chunk cache in MiB")
	fs.Int64Var(&m.imageCapacityMB, prefix+"imageCapacityMB", d.ImageCapacityMB, "disk budget in MiB, in -cacheDir, for local images of the files this mount writes, which the kernel reads directly through FUSE passthrough (as root, Linux 6.9+); 0 keeps none")
	fs.IntVar(&m.inlineImages, prefix+"inlineImages", d.InlineImages, "how many files written at once keep their image current as they are written; the images of others are filled after their writers close (0: half the CPUs, at least 1; -1: none)")
	fs.IntVar(&m.chunkSizeMB, prefix+"chunkSizeMB", d.ChunkSizeMB, "files are stored in chunks of this many MiB")
	fs.Int64Var(&m.writeBufferMB, prefix+"writeBufferMB", d.WriteBufferMB, "memory for unflushed writes across all open files, in MiB; beyond it writers wait for uploads, and chunks queued for upload (or whose upload failed) move to -cacheDir (up to -cacheCapacityMB) instead")
	fs.IntVar(&m.concurrentWriters, prefix+"concurrentWriters", d.ConcurrentWriters, "chunk uploads in flight at once")
	fs.BoolVar(&m.readOnly, prefix+"readOnly", false, "mount read-only")
	fs.BoolVar(&m.allowOthers, prefix+"allowOthers", false, "let other users use the mount (permissions are still checked; needs root or user_allow_other in /etc/fuse.conf)")
	fs.StringVar(&m.umask, prefix+"umask", "022", "octal umask applied to new files and directories, on top of the process's own (a parent directory's default ACL replaces both, as POSIX says)")
	fs.StringVar(&m.replication, prefix+"replication", "", "replication xyz of new chunks (default: the filer's)")
	fs.StringVar(&m.collection, prefix+"collection", "", "collection of new chunks (default: the filer's)")
	fs.StringVar(&m.ttl, prefix+"ttl", "", "time to live of new chunks, e.g. 3d (default: none)")
	fs.DurationVar(&m.entryTimeout, prefix+"entryTimeout", d.EntryTimeout, "how long the kernel caches names (other clients' changes invalidate sooner)")
	fs.DurationVar(&m.attrTimeout, prefix+"attrTimeout", d.AttrTimeout, "how long the kernel caches attributes (other clients' changes invalidate sooner)")
	fs.DurationVar(&m.metaCacheTTL, prefix+"metadataCacheTTL", d.MetadataCacheTTL, "how long the mount answers lookups and stats from its own cache, kept current by the filer's change log (0: ask the filer every time)")
	fs.DurationVar(&m.opTimeout, prefix+"opTimeout", d.OpTimeout, "an operation fails with EIO when the filer stays away this long")
	fs.BoolVar(&m.fuseDebug, prefix+"fuse.debug", false, "log every FUSE request")
	fs.IntVar(&m.readAheadKB, prefix+"readAheadKB", fusefs.DefaultReadAheadKB, "how far the kernel reads ahead of a sequential reader, in KiB (set through sysfs when running as root; 0 keeps the kernel's 128)")
	fs.BoolVar(&m.writebackCache, prefix+"writebackCache", false, "let the kernel buffer writes in its page cache (faster small writes; data reaches the cluster on fsync/close or kernel writeback)")
}

func (m *mountFlags) config(log *slog.Logger) (mount.Config, fusefs.Options, error) {
	cfg := mount.DefaultConfig()
	cfg.Filer = m.filer
	cfg.FilerPath = m.filerPath
	cfg.CacheDir = m.cacheDir
	cfg.CacheCapacityMB = m.cacheCapacityMB
	cfg.CacheMemoryMB = m.cacheMemoryMB
	cfg.ImageCapacityMB = m.imageCapacityMB
	cfg.InlineImages = m.inlineImages
	cfg.ChunkSizeMB = m.chunkSizeMB
	cfg.WriteBufferMB = m.writeBufferMB
	cfg.ConcurrentWriters = m.concurrentWriters
	cfg.ReadOnly = m.readOnly
	cfg.Replication, cfg.Collection, cfg.TTL = m.replication, m.collection, m.ttl
	cfg.EntryTimeout, cfg.AttrTimeout, cfg.OpTimeout = m.entryTimeout, m.attrTimeout, m.opTimeout
	cfg.MetadataCacheTTL = m.metaCacheTTL
	cfg.Logger = log
	umask, err := strconv.ParseUint(m.umask, 8, 32)
	if err != nil || umask > 0o777 {
		return cfg, fusefs.Options{}, fmt.Errorf("bad -umask %q: want an octal mask such as 022", m.umask)
	}
	cfg.Umask = uint32(umask)
	if cfg.CacheDir == "" && cfg.CacheCapacityMB > 0 {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		abs, _ := filepath.Abs(m.dir)
		cfg.CacheDir = filepath.Join(base, "kelp", strings.ReplaceAll(strings.Trim(abs, "/"), "/", "_"))
	}
	opts := fusefs.Options{AllowOther: m.allowOthers, ReadOnly: m.readOnly, Debug: m.fuseDebug, WritebackCache: m.writebackCache,
		FsName: m.filer + ":" + m.filerPath, ReadAheadKB: m.readAheadKB}
	if m.readAheadKB < 0 {
		return cfg, opts, fmt.Errorf("bad -readAheadKB %d: must not be negative", m.readAheadKB)
	}
	return cfg, opts, cfg.Validate()
}

// checkMountPoint refuses a missing, non-directory or already mounted
// mount point with a message that says which.
func checkMountPoint(dir string) error {
	if dir == "" {
		return errors.New("no mount point: give -dir")
	}
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("mount point %s does not exist: create it first", dir)
		}
		if errors.Is(err, syscall.ENOTCONN) {
			return fmt.Errorf("mount point %s is a dead mount (transport endpoint is not connected): run umount %s first", dir, dir)
		}
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if mounted, err := isMountPoint(abs); err == nil && mounted {
		return fmt.Errorf("mount point %s is busy: something is already mounted there", dir)
	}
	return nil
}

// isMountPoint reports whether dir is listed in /proc/self/mountinfo.
func isMountPoint(dir string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountPath(f[4]) == dir {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func runMount(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("mount", "Mounts a Kelp filer's namespace at -dir through FUSE and serves it until unmounted\n(umount DIR) or stopped (SIGINT/SIGTERM flush and unmount).", stderr)
	var mf mountFlags
	var df daemonFlags
	mf.register(fs, "")
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, stopDebug, err := df.start(ctx, stderr)
	if err != nil {
		return err
	}
	defer stopDebug()
	if err := checkMountPoint(mf.dir); err != nil {
		return err
	}
	cfg, opts, err := mf.config(log)
	if err != nil {
		return err
	}
	// The process is the mount alone: hold the Go heap to its budgets
	// (GOMEMLIMIT, if set, wins).
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit())
		log.Info("memory limit", "MiB", cfg.MemoryLimit()>>20)
	}
	return serveMount(ctx, cfg, mf.dir, opts, log, nil)
}

// serveMount mounts cfg's filer at dir and serves until ctx ends (then it
// unmounts) or someone unmounts it; ready, if set, is called once the
// mount is up.
func serveMount(ctx context.Context, cfg mount.Config, dir string, opts fusefs.Options, log *slog.Logger, ready func()) error {
	fsys, err := mount.New(cfg)
	if err != nil {
		return err
	}
	m, err := fusefs.Mount(fsys, dir, opts)
	if err != nil {
		fsys.Close()
		return err
	}
	log.Info("mounted", "dir", dir, "filer", cfg.Filer, "filer.inProcess", cfg.FilerConn != nil, "volumes.inProcess", len(cfg.LocalVolumes), "filer.path", cfg.FilerPath, "cacheDir", cfg.CacheDir)
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
		log.Info("unmounting", "dir", dir)
		if err := m.Unmount(); err != nil {
			log.Error("unmount failed; flushing anyway", "dir", dir, "err", err)
		}
	case <-m.Done():
		log.Info("unmounted from outside", "dir", dir)
	}
	if err := fsys.Close(); err != nil {
		return fmt.Errorf("flush at unmount: %w", err)
	}
	return nil
}
