package integration

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountSignalsDuringNamespaceOps is the reproducer of posixtest's
// occasional OpenSymlinkRace failure under -race ("shuffler: Rename:
// interrupted system call"): a signal reaching a thread blocked in a
// namespace call on the mount makes the kernel send FUSE_INTERRUPT, and
// the mount gave up the filer call and answered EINTR, which the program
// sees as a failed rename (or create, symlink, stat...) that may well have
// happened. Go's runtime preempts with SIGURG, so any Go program under load
// can see it. Reads and writes of regular files never fail with EINTR on a
// local disk either, so they finish too unless they are stuck. Here another goroutine keeps signalling the thread making
// the calls, through the raw system calls (no EINTR retry as in package
// os); every call must succeed.
func TestMountSignalsDuringNamespaceOps(t *testing.T) {
	// No chunk cache: every read fetches from the volume server, and waits.
	_, m := mountCluster(t, noChunkCache)
	dir := m.Path("sig")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const rounds = 150
	tid := make(chan int)
	done := make(chan struct{})
	var errs []string
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		fail := func(i int, what string, err error) {
			errs = append(errs, fmt.Sprintf("round %d: %s: %v", i, what, err))
		}
		path, tmp, sub := dir+"/f", dir+"/f.tmp", dir+"/d"
		var st unix.Stat_t
		buf := make([]byte, 64)
		data, back := make([]byte, 256<<10), make([]byte, 256<<10)
		for i := 0; i < rounds && len(errs) < 10; i++ {
			fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600)
			if err != nil {
				fail(i, "create", err)
				continue
			}
			if n, err := unix.Pwrite(fd, data, 0); err != nil || n != len(data) {
				fail(i, "write", fmt.Errorf("%d bytes, %v", n, err))
			}
			if err := unix.Close(fd); err != nil {
				fail(i, "close", err)
			}
			if err := unix.Rename(tmp, path); err != nil {
				fail(i, "rename file", err)
			}
			if err := unix.Fchmodat(unix.AT_FDCWD, path, 0o640, 0); err != nil {
				fail(i, "chmod", err)
			}
			if fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT, 0); err != nil {
				fail(i, "open", err)
			} else {
				if err := unix.Fstat(fd, &st); err != nil {
					fail(i, "fstat", err)
				}
				// O_DIRECT: the read goes to the mount, not the page cache.
				if n, err := unix.Pread(fd, back, 0); err != nil || n != len(data) {
					fail(i, "read", fmt.Errorf("%d bytes, %v", n, err))
				}
				_ = unix.Close(fd)
			}
			if err := unix.Symlink("/etc/passwd", tmp); err != nil {
				fail(i, "symlink", err)
			}
			if err := unix.Rename(tmp, path); err != nil {
				fail(i, "rename symlink", err)
			}
			if _, err := unix.Readlink(path, buf); err != nil {
				fail(i, "readlink", err)
			}
			if err := unix.Lstat(path, &st); err != nil {
				fail(i, "lstat", err)
			}
			if err := unix.Mkdir(sub, 0o755); err != nil {
				fail(i, "mkdir", err)
			}
			if err := unix.Rmdir(sub); err != nil {
				fail(i, "rmdir", err)
			}
			if err := unix.Unlink(path); err != nil {
				fail(i, "unlink", err)
			}
		}
	}()
	id := <-tid
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = unix.Tgkill(os.Getpid(), id, unix.SIGURG)
			time.Sleep(20 * time.Microsecond)
		}
	}()
	<-done
	if len(errs) > 0 {
		t.Errorf("with signals arriving (SIGURG, as Go's scheduler sends), namespace calls failed:\n  %s", strings.Join(errs, "\n  "))
	}
}
