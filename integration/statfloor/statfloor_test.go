package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kelpfs/kelp/integration/cluster"
)

// TestStatFloor mounts the null filesystem through each transport and
// checks that it answers what a stat loop asks, through the path it
// claims, and unmounts cleanly.
func TestStatFloor(t *testing.T) {
	cluster.NeedFUSE(t)
	for _, transport := range []string{"gofuse", "dev", "uring"} {
		t.Run(transport, func(t *testing.T) {
			if transport != "gofuse" {
				needRoot(t)
			}
			if transport == "uring" {
				allowURing(t)
			}
			mnt := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			mounted := make(chan struct{})
			done := make(chan error, 1)
			var n counts
			go func() { done <- serve(ctx, mnt, transport, 10, mounted, &n) }()
			select {
			case <-mounted:
			case err := <-done:
				t.Fatalf("serve ended before mounting: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("not mounted within 10s")
			}
			stopped := false
			defer func() {
				if !stopped {
					cancel()
					<-done
				}
			}()

			const rounds = 50
			for r := 0; r < rounds; r++ {
				for i := 0; i < 10; i++ {
					var st syscall.Stat_t
					p := filepath.Join(mnt, "f"+strconv.Itoa(i))
					if err := syscall.Stat(p, &st); err != nil {
						t.Fatalf("stat %s: %v", p, err)
					}
					if st.Ino != node(i) || st.Size != 4096 || st.Mode != syscall.S_IFREG|0o644 || st.Nlink != 1 {
						t.Fatalf("stat %s: ino %d size %d mode %o nlink %d, want ino %d size 4096 mode %o nlink 1",
							p, st.Ino, st.Size, st.Mode, st.Nlink, node(i), syscall.S_IFREG|0o644)
					}
				}
			}
			for name, want := range map[string]error{"f10": syscall.ENOENT, "f03": syscall.ENOENT, "g1": syscall.ENOENT, "f1/x": syscall.ENOTDIR} {
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(mnt, name), &st); !errors.Is(err, want) {
					t.Errorf("stat %s: %v, want %v", name, err, want)
				}
			}
			// Every stat of a file asked the server again (its
			// attributes expire at once), through the transport's
			// own path.
			switch transport {
			case "dev":
				if got := n.dev.Load(); got < rounds*10 {
					t.Errorf("/dev/fuse answered %d requests, want at least %d", got, rounds*10)
				}
			case "uring":
				if got := n.ring.Load(); got < rounds*10 {
					t.Errorf("the rings answered %d requests, want at least %d", got, rounds*10)
				}
				if got := n.dev.Load(); got > 5 {
					t.Errorf("/dev/fuse answered %d requests with the rings up, want only INIT (and forgets)", got)
				}
			}

			cancel()
			stopped = true
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("serve did not end within 15s of its context")
			}
			if cluster.Mounted(t, mnt) {
				t.Fatalf("%s is still mounted after serve ended", mnt)
			}
		})
	}
}

func TestServeRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	if err := serve(ctx, t.TempDir(), "splice", 10, nil, nil); err == nil || !strings.Contains(err.Error(), `"splice"`) {
		t.Errorf("unknown transport: %v, want an error naming it", err)
	}
	if err := serve(ctx, t.TempDir(), "dev", 0, nil, nil); err == nil || !strings.Contains(err.Error(), "-files 0") {
		t.Errorf("no files: %v, want an error naming -files", err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the dev and uring transports mount with mount(2): CI must run as root")
	}
	t.Skip("skipping: the dev and uring transports mount with mount(2), which needs root")
}

// allowURing turns the fuse module's enable_uring on for the test, and
// back off after it. It only lets this process's mount ask for io_uring:
// other FUSE servers keep /dev/fuse unless they ask for it too.
func allowURing(t *testing.T) {
	t.Helper()
	const param = "/sys/module/fuse/parameters/enable_uring"
	b, err := os.ReadFile(param)
	if err != nil {
		// No such parameter: the kernel has no FUSE over io_uring
		// (before 6.14, or built without CONFIG_FUSE_IO_URING).
		t.Skipf("skipping: this kernel has no FUSE over io_uring (%v)", err)
	}
	old := strings.TrimSpace(string(b))
	if old == "Y" {
		return
	}
	if err := os.WriteFile(param, []byte("Y"), 0); err != nil {
		t.Fatalf("turn on FUSE over io_uring: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(param, []byte(old), 0); err != nil {
			t.Errorf("restore %s to %s: %v", param, old, err)
		}
	})
}
