package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/integration/cluster"
)

var (
	buildOnce sync.Once
	kelpBin   string
	buildErr  error
)

// kelpBinary builds cmd/kelp once per test run.
func kelpBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kelp-bin")
		if err != nil {
			buildErr = err
			return
		}
		kelpBin = filepath.Join(dir, "kelp")
		out, err := exec.Command("go", "build", "-o", kelpBin, "github.com/kelpfs/kelp/cmd/kelp").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return kelpBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if kelpBin != "" {
		os.RemoveAll(filepath.Dir(kelpBin))
	}
	os.Exit(code)
}

// proc is a kelp process started by a test; it is killed at cleanup.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{} // closed when the process has been reaped
	err    error         // Wait's result, valid after exited
}

// stop sends SIGTERM and fails the test unless the process exits cleanly
// within d.
func (p *proc) stop(t testing.TB, d time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("kelp %s after SIGTERM: %v\n%s", p.cmd.Args[1], p.err, p.out.String())
		}
	case <-time.After(d):
		t.Fatalf("kelp %s did not stop within %v of SIGTERM\n%s", p.cmd.Args[1], d, p.out.String())
	}
}

func startKelp(t testing.TB, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(kelpBinary(t), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kelp %v: %v", args, err)
	}
	p := &proc{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("kelp %s output:\n%s", args[0], out.String())
		}
	})
	return p
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitAssign polls the master until an assign succeeds (a volume server is
// registered and a volume can be placed).
func waitAssign(t testing.TB, masterHTTP string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + masterHTTP + "/dir/assign")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("master %s never assigned a file id", masterHTTP)
}

// kill -9 a volume server process in the middle of a write load and start it
// again: every write it acknowledged reads back intact.
func TestKill9VolumeServerLosesNoAckedWrite(t *testing.T) {
	dir := t.TempDir()
	mp, mg := cluster.FreePort(t), cluster.FreePort(t)
	vp, vg := cluster.FreePort(t), cluster.FreePort(t)
	masterAddr := fmt.Sprintf("127.0.0.1:%d", mp)
	startKelp(t, "master", "-ip", "127.0.0.1", "-port", fmt.Sprint(mp), "-port.grpc", fmt.Sprint(mg), "-mdir", filepath.Join(dir, "m"))
	volumeArgs := []string{"volume", "-ip", "127.0.0.1", "-port", fmt.Sprint(vp), "-port.grpc", fmt.Sprint(vg),
		"-dir", filepath.Join(dir, "v"), "-max", "4", "-master", fmt.Sprintf("%s.%d", masterAddr, mg), "-pulse", "200ms"}
	vol := startKelp(t, volumeArgs...)
	waitAssign(t, masterAddr)

	cl, err := client.NewCluster(client.ClusterConfig{Master: client.MasterClientConfig{Address: fmt.Sprintf("127.0.0.1:%d", mg)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	acked := map[string][]byte{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				data := randomBytes(t, 512+(i*131)%8192)
				fid, _, err := cl.Write(ctx, data, client.WriteOptions{})
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					time.Sleep(5 * time.Millisecond) // the server is down; keep trying gently
					continue
				}
				mu.Lock()
				acked[fid] = data
				mu.Unlock()
			}
		}()
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for ackedCount() < 500 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if err := vol.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-vol.exited
	before := ackedCount()
	startKelp(t, volumeArgs...)
	// Writes resume once the restarted server is back.
	for ackedCount() < before+200 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("load did not resume after the restart: %d acked before, %d after", before, ackedCount())
	}
	for fid, data := range acked {
		got, err := cl.Read(ctx, fid)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("acknowledged blob %s after kill -9: err %v, intact %v", fid, err, bytes.Equal(got, data))
		}
	}
	t.Logf("%d acknowledged blobs intact (%d before the kill)", len(acked), before)
}

// `kelp server` gives a working one-machine cluster, `kelp benchmark` runs
// against it, and SIGTERM stops it cleanly.
func TestServerAndBenchmarkBinary(t *testing.T) {
	dir := t.TempDir()
	mp, mg, vp, vg := cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t)
	fp, fg := cluster.FreePort(t), cluster.FreePort(t)
	srv := startKelp(t, "server", "-dir", dir, "-ip", "127.0.0.1",
		"-master.port", fmt.Sprint(mp), "-master.port.grpc", fmt.Sprint(mg),
		"-volume.port", fmt.Sprint(vp), "-volume.port.grpc", fmt.Sprint(vg),
		"-filer.port", fmt.Sprint(fp), "-filer.port.grpc", fmt.Sprint(fg))
	masterAddr := fmt.Sprintf("127.0.0.1:%d", mp)
	waitAssign(t, masterAddr)
	out, err := exec.Command(kelpBinary(t), "benchmark", "-master", fmt.Sprintf("%s.%d", masterAddr, mg),
		"-n", "2000", "-c", "4", "-size", "1024").CombinedOutput()
	if err != nil {
		t.Fatalf("benchmark: %v\n%s", err, out)
	}
	for _, want := range []string{"Write 2000 blobs", "Randomly read 2000 blobs", "Requests per second", "Failed requests:        0", "99%"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("benchmark output lacks %q:\n%s", want, out)
		}
	}
	srv.stop(t, 20*time.Second)
}

// `kelp server -mount` (the README's first command) mounts the cluster it
// starts, the mount calling its filer and volume server in-process: files, renames and
// locks work through it, the filer's HTTP API sees what was written, and
// SIGTERM flushes, unmounts and exits cleanly.
func TestServerMountBinary(t *testing.T) {
	cluster.NeedFUSE(t)
	dir, mnt := t.TempDir(), t.TempDir()
	// A failing test kills the server: no mount may outlive it (this
	// runs after the kill, before the directory goes).
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	mp, mg, vp, vg := cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t)
	fp, fg := cluster.FreePort(t), cluster.FreePort(t)
	srv := startKelp(t, "server", "-dir", dir, "-ip", "127.0.0.1", "-mount", mnt,
		"-master.port", fmt.Sprint(mp), "-master.port.grpc", fmt.Sprint(mg),
		"-volume.port", fmt.Sprint(vp), "-volume.port.grpc", fmt.Sprint(vg),
		"-filer.port", fmt.Sprint(fp), "-filer.port.grpc", fmt.Sprint(fg))
	for deadline := time.Now().Add(30 * time.Second); !cluster.Mounted(t, mnt); {
		select {
		case <-srv.exited:
			t.Fatalf("kelp server exited before mounting: %v\n%s", srv.err, srv.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("not mounted within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(srv.out.String(), "filer.inProcess=true volumes.inProcess=1"); {
		if time.Now().After(deadline) {
			t.Fatalf("the mount does not say it calls the filer and the volume server in-process:\n%s", srv.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	data := bytes.Repeat([]byte("kelp server mount\n"), 40000) // 720 KB: chunks, not inline
	if err := os.MkdirAll(filepath.Join(mnt, "d", "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "d", "tmp"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "d", "tmp"), filepath.Join(mnt, "d", "e", "file")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "d", "e", "file")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back through the mount: %d bytes, %v", len(got), err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/d/e/file", fp))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("filer HTTP GET: status %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}

	// flock between two open file descriptions goes through the lock
	// service like any other mount's.
	a, err := os.Open(filepath.Join(mnt, "d", "e", "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(filepath.Join(mnt, "d", "e", "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := syscall.Flock(int(a.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock: %v", err)
	}
	if err := syscall.Flock(int(b.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != syscall.EWOULDBLOCK {
		t.Fatalf("second flock while the first is held: %v, want EWOULDBLOCK", err)
	}
	if err := syscall.Flock(int(a.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(b.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock after the unlock: %v", err)
	}
	a.Close()
	b.Close()

	srv.stop(t, 30*time.Second)
	if cluster.Mounted(t, mnt) {
		t.Fatalf("%s still mounted after kelp server exited", mnt)
	}
}

// Bad flags and unreachable peers give a message that names the problem and
// a non-zero exit.
func TestBinaryBadInput(t *testing.T) {
	bin := kelpBinary(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"filer.fsck", "-dir", "/nonexistent/kelp-store"}, 1, "/nonexistent/kelp-store holds no filer store"},
		{[]string{"volume", "-master", "127.0.0.1:9333"}, 1, "-dir"},
		{[]string{"master", "-port", "x"}, 2, "-port"},
		{[]string{"volume", "-dir", t.TempDir(), "-master", "nohostport"}, 1, "-master"},
		{[]string{"benchmark", "-master", "127.0.0.1:1.2", "-n", "1"}, 1, "127.0.0.1:2"},
		{[]string{"server", "-dir", "/proc/kelp-cannot-create"}, 1, "/proc/kelp-cannot-create"},
		{[]string{"filer", "-master", "127.0.0.1:9333"}, 1, "-dir"},
		{[]string{"filer", "-dir", t.TempDir(), "-maxMB", "0"}, 1, "ChunkSizeMB"},
	} {
		cmd := exec.Command(bin, tc.args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("kelp %v: exit %d, want %d; output should name %q:\n%s", tc.args, code, tc.code, tc.want, out)
		}
	}
	for _, sub := range []string{"master", "volume", "filer", "server", "benchmark"} {
		out, err := exec.Command(bin, sub, "-h").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage: kelp "+sub) {
			t.Errorf("kelp %s -h: %v\n%s", sub, err, out)
		}
	}
}
