package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kelpfs/kelp/integration/cluster"
)

// helperLink is where mount(8) looks for the helper of type kelp.
const helperLink = "/sbin/mount.kelp"

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER.
const prSetChildSubreaper = 36

// needMountHelperSetup skips t (fails it under CI) unless it can install
// /sbin/mount.kelp and run mount(8): root, mount and umount on PATH, and
// no mount.kelp installed already (the test would not be testing this
// build).
func needMountHelperSetup(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not root (mount -t kelp needs " + helperLink + " and root)"
	} else if _, err := exec.LookPath("mount"); err != nil {
		why = "no mount(8) on PATH"
	} else if _, err := exec.LookPath("umount"); err != nil {
		why = "no umount(8) on PATH"
	} else if _, err := os.Lstat(helperLink); err == nil {
		why = helperLink + " already exists (installed by make install?); remove it to run this test"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("mount helper test cannot run: %s (CI must allow it)", why)
	}
	t.Skipf("skipping mount helper test: %s", why)
}

// runTool runs a system tool with a deadline, returning its combined
// output and exit code (-1 when it could not run or timed out).
func runTool(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return string(out), ee.ExitCode()
	}
	return fmt.Sprintf("%s\n(%v)", out, err), -1
}

// kelpMountAt returns the source of the fuse.kelp mount at dir, if any.
func kelpMountAt(t *testing.T, dir string) (source string, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != dir {
			continue
		}
		for i := 6; i+2 < len(f); i++ {
			if f[i] == "-" && f[i+1] == "fuse.kelp" {
				return f[i+2], true
			}
		}
	}
	return "", false
}

// helperDaemon is a `kelp mount` started by mount.kelp; with the test
// process a child subreaper, it is the test's child once the helper exits.
type helperDaemon struct {
	pid int
	log string
}

func readHelperDaemon(t *testing.T, logFile string) helperDaemon {
	t.Helper()
	b, err := os.ReadFile(strings.TrimSuffix(logFile, ".log") + ".pid")
	if err != nil {
		t.Fatalf("mount.kelp wrote no pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return helperDaemon{pid: pid, log: logFile}
}

// waitExit reaps the daemon within a deadline and returns its status.
func (d helperDaemon) waitExit(t *testing.T) syscall.WaitStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(d.pid, &ws, syscall.WNOHANG, nil)
		if err != nil {
			t.Fatalf("wait for kelp mount (pid %d): %v (not the test's child?)", d.pid, err)
		}
		if got == d.pid {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatalf("kelp mount (pid %d) still running 30s after umount; log:\n%s", d.pid, readFile(t, d.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// unmountClean runs umount(8) on dir and checks that the daemon behind it
// exits 0 having seen the unmount, and that the kernel no longer lists it.
func unmountClean(t *testing.T, dir string, d helperDaemon) {
	t.Helper()
	if out, code := runTool(t, "umount", dir); code != 0 {
		t.Fatalf("umount %s: exit %d\n%s", dir, code, out)
	}
	ws := d.waitExit(t)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("kelp mount after umount: %v (exit status %d), want exit 0; log:\n%s", ws, ws.ExitStatus(), readFile(t, d.log))
	}
	if _, ok := kelpMountAt(t, dir); ok {
		t.Fatalf("%s still in /proc/self/mountinfo after umount", dir)
	}
	if log := readFile(t, d.log); !strings.Contains(log, "unmounted from outside") {
		t.Fatalf("kelp mount's log does not show the external unmount:\n%s", log)
	}
}

// `mount -t kelp` and fstab lines (mount -a, mount DIR) go through
// /sbin/mount.kelp: it returns once the mount is ready, leaves `kelp
// mount` running detached, drops fstab-only options, and `umount` stops
// the daemon with exit 0. Bad options and a bad filer path fail with
// mount(8)'s exit codes and a message that says why.
func TestMountHelper(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kelp server and mounts it through mount(8)")
	}
	cluster.NeedFUSE(t)
	needMountHelperSetup(t)
	bin := kelpBinary(t)
	if err := os.Symlink(bin, helperLink); err != nil {
		t.Fatalf("install %s: %v", helperLink, err)
	}
	t.Cleanup(func() { os.Remove(helperLink) })
	// The daemons mount.kelp leaves behind become this process's children,
	// so the test can reap them and see their exit status.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", e)
	}
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })

	dir := t.TempDir()
	mp, mg, vp, vg := cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t)
	fp, fg := cluster.FreePort(t), cluster.FreePort(t)
	startKelp(t, "server", "-dir", filepath.Join(dir, "data"), "-ip", "127.0.0.1",
		"-master.port", fmt.Sprint(mp), "-master.port.grpc", fmt.Sprint(mg),
		"-volume.port", fmt.Sprint(vp), "-volume.port.grpc", fmt.Sprint(vg),
		"-filer.port", fmt.Sprint(fp), "-filer.port.grpc", fmt.Sprint(fg))
	waitAssign(t, fmt.Sprintf("127.0.0.1:%d", mp))
	filerBenchWaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", fp))

	mnt, mnt2 := filepath.Join(dir, "mnt"), filepath.Join(dir, "mnt2")
	for _, d := range []string{mnt, mnt2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var daemons []helperDaemon
	// Whatever happens, nothing stays mounted and no daemon outlives the
	// test (this runs before the server and the temp dir go away).
	t.Cleanup(func() {
		for _, d := range []string{mnt, mnt2} {
			if _, ok := kelpMountAt(t, d); ok {
				_ = syscall.Unmount(d, syscall.MNT_DETACH)
			}
		}
		for _, d := range daemons {
			var ws syscall.WaitStatus
			if got, err := syscall.Wait4(d.pid, &ws, syscall.WNOHANG, nil); err == nil && got == 0 {
				_ = syscall.Kill(d.pid, syscall.SIGKILL)
				_, _ = syscall.Wait4(d.pid, &ws, 0, nil)
			}
			if t.Failed() {
				t.Logf("log of kelp mount pid %d:\n%s", d.pid, readFile(t, d.log))
			}
		}
	})
	spec := func(p string) string { return fmt.Sprintf("127.0.0.1:%d.%d:%s", fp, fg, p) }

	// 1. mount -t kelp with our options and fstab-only ones.
	log1 := filepath.Join(dir, "logs", "m1.log")
	opts := "cacheCapacityMB=64,_netdev,nofail,x-systemd.automount,comment=test,noatime,cacheDir=" + filepath.Join(dir, "cache1") + ",logFile=" + log1
	out, code := runTool(t, "mount", "-t", "kelp", spec("/"), mnt, "-o", opts)
	if code != 0 {
		t.Fatalf("mount -t kelp: exit %d\n%s\nlog:\n%s", code, out, readFile(t, log1))
	}
	// The helper returned: the mount must be ready now, not eventually.
	if _, ok := kelpMountAt(t, mnt); !ok {
		t.Fatalf("mount -t kelp returned 0 but %s is not a fuse.kelp mount", mnt)
	}
	d1 := readHelperDaemon(t, log1)
	daemons = append(daemons, d1)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", d1.pid))
	if err != nil {
		t.Fatalf("the daemon (pid %d) is not running after mount returned: %v", d1.pid, err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	joined := strings.Join(args, " ")
	if len(args) < 2 || args[1] != "mount" || !strings.Contains(joined, "-dir "+mnt) || !strings.Contains(joined, "-cacheCapacityMB=64") {
		t.Fatalf("daemon command line: %q", args)
	}
	for _, dropped := range []string{"_netdev", "nofail", "x-systemd", "comment", "noatime", "logFile"} {
		if strings.Contains(joined, dropped) {
			t.Errorf("fstab-only option %s reached the daemon: %q", dropped, args)
		}
	}
	data := bytes.Repeat([]byte("kelp through mount.kelp\n"), 50000) // ~1.2 MB
	if err := os.MkdirAll(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "sub", "f"), data, 0o644); err != nil {
		t.Fatalf("write through the helper's mount: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "sub", "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v (intact %v)", err, bytes.Equal(got, data))
	}
	// Mounting again on the same directory is refused (mount(8) exit 32).
	if out, code := runTool(t, "mount", "-t", "kelp", spec("/"), mnt, "-o", "logFile="+filepath.Join(dir, "logs", "dup.log")); code != 32 || !strings.Contains(out, "already mounted") {
		t.Errorf("second mount on %s: exit %d, want 32 naming 'already mounted':\n%s", mnt, code, out)
	}
	unmountClean(t, mnt, d1)

	// 2. An fstab line for a subtree, through mount -a and mount DIR.
	log2 := filepath.Join(dir, "logs", "m2.log")
	fstab := filepath.Join(dir, "fstab")
	line := fmt.Sprintf("%s %s kelp defaults,_netdev,nofail,x-systemd.requires=kelp-filer.service,cacheCapacityMB=64,cacheDir=%s,logFile=%s 0 0\n",
		spec("/sub"), mnt2, filepath.Join(dir, "cache2"), log2)
	if err := os.WriteFile(fstab, []byte("# kelp test fstab\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runTool(t, "mount", "-a", "-T", fstab); code != 0 {
		t.Fatalf("mount -a -T %s: exit %d\n%s\nlog:\n%s", fstab, code, out, readFile(t, log2))
	}
	source, ok := kelpMountAt(t, mnt2)
	if !ok {
		t.Fatalf("mount -a did not mount %s", mnt2)
	}
	d2 := readHelperDaemon(t, log2)
	daemons = append(daemons, d2)
	if got, err := os.ReadFile(filepath.Join(mnt2, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the subtree mount does not show /sub/f: %v", err)
	}
	// mount -a skips what is mounted when the kernel's source matches the
	// fstab spec; with a different source it tries again and the helper
	// refuses the busy mount point.
	out, code = runTool(t, "mount", "-a", "-T", fstab)
	if source == spec("/sub") && code != 0 {
		t.Errorf("second mount -a: exit %d, want 0 (already mounted)\n%s", code, out)
	} else if source != spec("/sub") {
		t.Logf("mountinfo source %q differs from the fstab spec %q: a second mount -a reports exit %d (%s)",
			source, spec("/sub"), code, strings.TrimSpace(out))
	}
	unmountClean(t, mnt2, d2)
	if out, code := runTool(t, "mount", "-T", fstab, mnt2); code != 0 {
		t.Fatalf("mount -T %s %s: exit %d\n%s\nlog:\n%s", fstab, mnt2, code, out, readFile(t, log2))
	}
	d3 := readHelperDaemon(t, log2)
	daemons = append(daemons, d3)
	if d3.pid == d2.pid {
		t.Fatalf("mount DIR reused pid %d from the previous daemon", d2.pid)
	}
	if got, err := os.ReadFile(filepath.Join(mnt2, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("mount DIR: read /sub/f: %v", err)
	}
	unmountClean(t, mnt2, d3)

	// 3. Failures: mount(8) passes on the helper's exit code and message.
	out, code = runTool(t, "mount", "-t", "kelp", spec("/"), mnt, "-o", "_netdev,cacheSizeMB=64")
	if code != 1 || !strings.Contains(out, `unknown mount option "cacheSizeMB"`) {
		t.Errorf("unknown option: exit %d, want 1 naming the option:\n%s", code, out)
	}
	log4 := filepath.Join(dir, "logs", "m4.log")
	out, code = runTool(t, "mount", "-t", "kelp", spec("/no/such/dir"), mnt, "-o", "cacheCapacityMB=0,logFile="+log4)
	if code != 32 || !strings.Contains(out, "/no/such/dir") || !strings.Contains(out, "exited with status 1") {
		t.Errorf("missing filer path: exit %d, want 32 with the daemon's log naming the path:\n%s", code, out)
	}
	if _, ok := kelpMountAt(t, mnt); ok {
		t.Errorf("%s is mounted after a failed mount", mnt)
	}
}
