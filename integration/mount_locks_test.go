package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kelpfs/kelp/filerd"
	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// Locks across mounts (issue 5): two mounts of one filer stand for two
// machines. The test process's fcntl locks on mount A and on mount B are
// held by two owners (two lock sessions), exactly as two processes on two
// machines would be; a python child stands in where a distinct process is
// needed (its pid, a signal, a kill).

// lockWait bounds how long a lock hand-over may take before the test
// fails: far above what it takes (milliseconds), it only catches hangs.
const lockWait = 10 * time.Second

func lockCluster(t *testing.T, filerCfg func(*filerd.Config)) (c *cluster.Cluster, a, b *cluster.Mount) {
	t.Helper()
	cluster.NeedFUSE(t)
	c = cluster.Start(t, cluster.Options{Filer: true, FilerConfig: filerCfg})
	return c, c.MountFiler(nil), c.MountFiler(nil)
}

func openRW(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// setlk is fcntl(F_SETLK or cmd) of [start, start+len) (len 0: to EOF).
func setlk(f *os.File, cmd int, typ int16, start, length int64) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: start, Len: length}
	return unix.FcntlFlock(f.Fd(), cmd, &lk)
}

func TestMountLocks(t *testing.T) {
	_, a, b := lockCluster(t, nil)
	t.Run("Flock", func(t *testing.T) { testLocksFlock(t, a, b) })
	t.Run("FcntlRanges", func(t *testing.T) { testLocksFcntlRanges(t, a, b) })
	t.Run("CloseReleases", func(t *testing.T) { testLocksCloseReleases(t, a, b) })
	t.Run("OFD", func(t *testing.T) { testLocksOFD(t, a, b) })
	t.Run("Handover", func(t *testing.T) { testLocksHandover(t, a, b) })
	t.Run("InterruptedWait", func(t *testing.T) { testLocksInterruptedWait(t, a, b) })
	t.Run("DataUnderLock", func(t *testing.T) { testLocksDataUnderLock(t, a, b) })
	t.Run("ReleaseOfAnotherDescription", func(t *testing.T) { testLocksReleaseOfAnotherDescription(t, a, b) })
	t.Run("Deadlock", func(t *testing.T) { testLocksDeadlock(t, a, b) })
	t.Run("LinksAndRenames", func(t *testing.T) { testLocksLinksAndRenames(t, a, b) })
	for _, m := range []*cluster.Mount{a, b} {
		if st := m.FS.LockStats(); st.Lost != 0 {
			t.Errorf("mount %s lost %d locks", m.Dir, st.Lost)
		}
	}
}

// testLocksFlock: flock(1) -n on B fails while A holds the lock and
// succeeds once A lets go; the lock belongs to the open file description,
// so it survives closing one of two dup'ed descriptors.
func testLocksFlock(t *testing.T, a, b *cluster.Mount) {
	flockBin := needProgram(t, "flock")
	fa := openRW(t, a.Path("flock"))
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock on A: %v", err)
	}
	if out, err := exec.Command(flockBin, "-n", b.Path("flock"), "true").CombinedOutput(); err == nil {
		t.Fatalf("flock -n on B succeeded while A holds the lock (%s)", out)
	}
	fb := openRW(t, b.Path("flock"))
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("LOCK_SH|LOCK_NB on B while A holds LOCK_EX: %v, want EWOULDBLOCK", err)
	}
	// A downgrades: shared locks coexist.
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		t.Fatalf("downgrade on A: %v", err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		t.Fatalf("LOCK_SH on B beside A's LOCK_SH: %v", err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(flockBin, "-n", b.Path("flock"), "true").CombinedOutput(); err != nil {
		t.Fatalf("flock -n on B after A unlocked: %v (%s)", err, out)
	}

	// Closing a dup keeps the lock; closing the last descriptor drops it.
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	dup, err := unix.Dup(int(fa.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	fa.Close()
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("LOCK_EX on B after A closed one of two descriptors: %v, want EWOULDBLOCK", err)
	}
	unix.Close(dup)
	// The kernel sends the release after close(2) returns.
	cluster.WaitFor(t, lockWait, "B's flock after A closed its last descriptor", func() error {
		return unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	})
}

// testLocksFcntlRanges: record locks on disjoint ranges coexist,
// overlapping ones conflict, shared ones share, and F_GETLK on B reports
// A's lock with its range, type and pid.
func testLocksFcntlRanges(t *testing.T, a, b *cluster.Mount) {
	fa, fb := openRW(t, a.Path("ranges")), openRW(t, b.Path("ranges"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	refused := func(err error, what string) {
		t.Helper()
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			t.Fatalf("%s: %v, want EAGAIN", what, err)
		}
	}
	must(setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 100))
	must(setlk(fa, unix.F_SETLK, unix.F_RDLCK, 300, 100))
	must(setlk(fb, unix.F_SETLK, unix.F_WRLCK, 100, 100)) // disjoint: [100, 200)
	refused(setlk(fb, unix.F_SETLK, unix.F_WRLCK, 50, 100), "B write-locks [50,150) over A's [0,100)")
	refused(setlk(fb, unix.F_SETLK, unix.F_RDLCK, 99, 1), "B read-locks byte 99 under A's write lock")
	must(setlk(fb, unix.F_SETLK, unix.F_RDLCK, 300, 50)) // shared beside shared
	refused(setlk(fb, unix.F_SETLK, unix.F_WRLCK, 350, 0), "B write-locks [350,EOF) over A's read lock")
	refused(setlk(fa, unix.F_SETLK, unix.F_WRLCK, 150, 10), "A write-locks inside B's [100,200)")

	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 0, Len: 1000}
	must(unix.FcntlFlock(fb.Fd(), unix.F_GETLK, &lk))
	if lk.Type != unix.F_WRLCK || lk.Start != 0 || lk.Len != 100 || lk.Pid != int32(os.Getpid()) {
		t.Fatalf("F_GETLK on B = type %d [%d, +%d) pid %d, want A's write lock [0,+100) pid %d",
			lk.Type, lk.Start, lk.Len, lk.Pid, os.Getpid())
	}
	lk = unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 200, Len: 100}
	must(unix.FcntlFlock(fb.Fd(), unix.F_GETLK, &lk))
	if lk.Type != unix.F_UNLCK {
		t.Fatalf("F_GETLK on B of free bytes [200,300) = type %d, want F_UNLCK", lk.Type)
	}
	// Unlocking the middle of a lock splits it; unlocking what is not
	// held is a no-op.
	must(setlk(fa, unix.F_SETLK, unix.F_UNLCK, 40, 20))
	must(setlk(fa, unix.F_SETLK, unix.F_UNLCK, 5000, 10))
	must(setlk(fb, unix.F_SETLK, unix.F_WRLCK, 45, 10))
	refused(setlk(fb, unix.F_SETLK, unix.F_WRLCK, 39, 1), "B write-locks byte 39 (A kept [0,40))")
	refused(setlk(fb, unix.F_SETLK, unix.F_WRLCK, 60, 1), "B write-locks byte 60 (A kept [60,100))")
	// Bad ranges never reach the filer: the kernel answers a negative
	// start with EINVAL and a length past OFFSET_MAX with EOVERFLOW.
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 1<<62, 1<<62+1); !errors.Is(err, unix.EOVERFLOW) {
		t.Fatalf("lock with an overflowing length: %v, want EOVERFLOW", err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, -10, 5); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("lock with a negative start: %v, want EINVAL", err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 5, -10); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("lock of a negative length reaching below 0: %v, want EINVAL", err)
	}
}

// testLocksCloseReleases: closing any descriptor of a file drops the
// process's record locks on it, as POSIX says, even one it did not lock
// through.
func testLocksCloseReleases(t *testing.T, a, b *cluster.Mount) {
	fa := openRW(t, a.Path("close"))
	fb1 := openRW(t, b.Path("close"))
	fb2 := openRW(t, b.Path("close"))
	if err := setlk(fb1, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 1); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("A's lock while B holds one: %v, want EAGAIN", err)
	}
	fb2.Close() // not the descriptor the lock went through
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 1); err != nil {
		t.Fatalf("A's lock after B's process closed the file: %v", err)
	}
	if st := b.FS.LockStats(); st.Held != 0 {
		t.Fatalf("mount B still records %d locks after close", st.Held)
	}
}

// testLocksOFD: open file description locks (F_OFD_SETLK) reach the
// filer as record locks owned by the open file: two descriptions of one
// process conflict, and the lock goes with the description's last close.
func testLocksOFD(t *testing.T, a, b *cluster.Mount) {
	f1, f2 := openRW(t, a.Path("ofd")), openRW(t, a.Path("ofd"))
	fb := openRW(t, b.Path("ofd"))
	if err := setlk(f1, unix.F_OFD_SETLK, unix.F_WRLCK, 0, 10); err != nil {
		t.Fatalf("F_OFD_SETLK: %v", err)
	}
	if err := setlk(f2, unix.F_OFD_SETLK, unix.F_WRLCK, 5, 10); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("F_OFD_SETLK through a second description of the same process: %v, want EAGAIN", err)
	}
	if err := setlk(fb, unix.F_SETLK, unix.F_RDLCK, 0, 1); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("F_SETLK on B over A's OFD lock: %v, want EAGAIN", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f2.Fd(), unix.F_OFD_GETLK, &lk); err != nil || lk.Type != unix.F_WRLCK || lk.Start != 0 || lk.Len != 10 {
		t.Fatalf("F_OFD_GETLK = %+v, %v; want the write lock [0,+10)", lk, err)
	}
	f1.Close()
	cluster.WaitFor(t, lockWait, "OFD lock of a closed description released", func() error {
		return setlk(f2, unix.F_OFD_SETLK, unix.F_WRLCK, 5, 10)
	})
}

// testLocksHandover: F_SETLKW on B blocks while A holds the lock and is
// granted after A unlocks; the time from A's unlock call to B's F_SETLKW
// returning is logged (median and worst of the samples).
func testLocksHandover(t *testing.T, a, b *cluster.Mount) {
	const samples = 30
	fa, fb := openRW(t, a.Path("handover")), openRW(t, b.Path("handover"))
	var lat []time.Duration
	for i := range samples {
		if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
			t.Fatal(err)
		}
		type grant struct {
			at  time.Time
			err error
		}
		got := make(chan grant, 1)
		go func() {
			err := setlk(fb, unix.F_SETLKW, unix.F_WRLCK, 0, 0)
			got <- grant{time.Now(), err}
		}()
		time.Sleep(20 * time.Millisecond) // let B's request reach the filer and wait
		select {
		case g := <-got:
			t.Fatalf("sample %d: B's F_SETLKW returned (%v) while A holds the lock", i, g.err)
		default:
		}
		unlocked := time.Now() // B may be granted before A's unlock returns
		if err := setlk(fa, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
			t.Fatal(err)
		}
		var g grant
		select {
		case g = <-got:
		case <-time.After(lockWait):
			t.Fatalf("sample %d: B's F_SETLKW not granted %v after A unlocked", i, lockWait)
		}
		if g.err != nil {
			t.Fatalf("sample %d: B's F_SETLKW: %v", i, g.err)
		}
		lat = append(lat, g.at.Sub(unlocked))
		if err := setlk(fb, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(lat)
	t.Logf("F_SETLKW hand-over from mount A to mount B: median %v, p90 %v, max %v (%d samples)",
		lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1], len(lat))
}

// testLocksDataUnderLock: two mounts take turns updating one file in
// place under an fcntl lock, each keeping the file open (and its pages
// cached) throughout, as a database does: what one writes before it
// unlocks is what the other reads once it holds the lock.
func testLocksDataUnderLock(t *testing.T, a, b *cluster.Mount) {
	fa, fb := openRW(t, a.Path("counter")), openRW(t, b.Path("counter"))
	if _, err := fa.WriteAt([]byte(fmt.Sprintf("%08d", 0)), 0); err != nil {
		t.Fatal(err)
	}
	if err := fa.Sync(); err != nil {
		t.Fatal(err)
	}
	files := []*os.File{fa, fb}
	const rounds = 40
	for i := range rounds {
		f := files[i%2]
		if err := setlk(f, unix.F_SETLKW, unix.F_WRLCK, 0, 0); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if _, err := f.ReadAt(buf, 0); err != nil {
			t.Fatalf("round %d: read: %v", i, err)
		}
		if got := string(buf); got != fmt.Sprintf("%08d", i) {
			t.Fatalf("round %d on mount %d: read %q under the lock, want %08d (the other mount's last write)", i, i%2, got, i)
		}
		// A longer value in some rounds: the size changes too.
		val := fmt.Sprintf("%08d", i+1)
		if i%3 == 0 {
			val += strings.Repeat("+", i)
		}
		if _, err := f.WriteAt([]byte(val), 0); err != nil {
			t.Fatal(err)
		}
		if err := setlk(f, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// testLocksReleaseOfAnotherDescription: the late release of an open file
// description a process once locked through (a child kept it open) does
// not take the lock the process now holds through another description.
func testLocksReleaseOfAnotherDescription(t *testing.T, a, b *cluster.Mount) {
	const script = `
import fcntl, os, sys, time
p = sys.argv[1]
fd1 = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd1, fcntl.LOCK_EX, 10, 0)
fcntl.lockf(fd1, fcntl.LOCK_UN, 10, 0)
pid = os.fork()
if pid == 0:
    time.sleep(0.5)
    os._exit(0)  # the child's copy of fd1 is the description's last
os.close(fd1)
fd2 = os.open(p, os.O_RDWR)
fcntl.lockf(fd2, fcntl.LOCK_EX, 10, 0)
os.waitpid(pid, 0)
time.sleep(0.5)  # the kernel sends the release after the child's exit
print("locked", flush=True)
sys.stdin.readline()
`
	h := startPython(t, script, a.Path("released"))
	if line := h.read(t); line != "locked" {
		t.Fatalf("holder: %q", line)
	}
	fb := openRW(t, b.Path("released"))
	if err := setlk(fb, unix.F_SETLK, unix.F_WRLCK, 0, 10); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("B's lock while the process holds it through its second descriptor: %v, want EAGAIN", err)
	}
}

// lockHolderPy takes a lock in a process of its own and obeys commands
// on stdin; it reports each outcome on stdout, one line each.
const lockHolderPy = `
import fcntl, os, signal, sys
class Alarm(Exception): pass
def alarm(signum, frame): raise Alarm()
signal.signal(signal.SIGALRM, alarm)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
print("pid", os.getpid(), flush=True)
for line in sys.stdin:
    cmd = line.split()
    try:
        if cmd[0] == "flock":      # flock ex, blocking
            fcntl.flock(fd, fcntl.LOCK_EX)
        elif cmd[0] == "lockw":    # blocking write lock of everything, interrupted after cmd[1] seconds
            signal.setitimer(signal.ITIMER_REAL, float(cmd[1]))
            fcntl.lockf(fd, fcntl.LOCK_EX)
            signal.setitimer(signal.ITIMER_REAL, 0)
        elif cmd[0] == "unlock":
            fcntl.lockf(fd, fcntl.LOCK_UN)
        elif cmd[0] in ("setlk", "setlkw"):  # setlk[w] r|w|u start len: fcntl lock of [start, start+len)
            op = {"r": fcntl.LOCK_SH, "w": fcntl.LOCK_EX, "u": fcntl.LOCK_UN}[cmd[1]]
            if cmd[0] == "setlk":
                op |= fcntl.LOCK_NB
            fcntl.lockf(fd, op, int(cmd[3]), int(cmd[2]))
        print("ok", flush=True)
    except Alarm:
        print("interrupted", flush=True)
    except OSError as e:
        print("error", e.errno, flush=True)
`

// pyHolder is a running lockHolderPy.
type pyHolder struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	pid int
}

func startPyHolder(t *testing.T, path string) *pyHolder {
	t.Helper()
	h := startPython(t, lockHolderPy, path)
	if line := h.read(t); !strings.HasPrefix(line, "pid ") {
		t.Fatalf("lock holder: %q", line)
	} else if _, err := fmt.Sscan(strings.TrimPrefix(line, "pid "), &h.pid); err != nil {
		t.Fatal(err)
	}
	return h
}

// startPython runs a python3 script with args, its stdin and stdout
// piped to the returned holder; it is killed at cleanup.
func startPython(t *testing.T, script string, args ...string) *pyHolder {
	t.Helper()
	py := needProgram(t, "python3")
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &pyHolder{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
}

func (h *pyHolder) read(t *testing.T) string {
	t.Helper()
	line := cluster.Within(t, 30*time.Second, "lock holder's answer", func() string {
		if !h.out.Scan() {
			return "EOF"
		}
		return h.out.Text()
	})
	return line
}

// do sends one command and returns its outcome line.
func (h *pyHolder) do(t *testing.T, cmd string) string {
	t.Helper()
	h.send(t, cmd)
	return h.read(t)
}

// send sends one command without waiting for its outcome (read it).
func (h *pyHolder) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := fmt.Fprintln(h.in, cmd); err != nil {
		t.Fatal(err)
	}
}

// inSyscall reports whether the holder is inside system call nr (it
// blocks there), from /proc/<pid>/syscall.
func (h *pyHolder) inSyscall(t *testing.T, nr int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", h.pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	return len(f) > 0 && f[0] == fmt.Sprint(nr)
}

// testLocksInterruptedWait: a signal ends a process's F_SETLKW on B with
// EINTR while A holds the lock, and leaves no lock and no waiter behind:
// once A unlocks, the lock is free for anyone.
func testLocksInterruptedWait(t *testing.T, a, b *cluster.Mount) {
	fa := openRW(t, a.Path("interrupt"))
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	h := startPyHolder(t, b.Path("interrupt"))
	if got := h.do(t, "lockw 0.3"); got != "interrupted" {
		t.Fatalf("interrupted F_SETLKW: %q, want interrupted", got)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	// Nobody holds it now: the test process takes it through B.
	fb := openRW(t, b.Path("interrupt"))
	if err := setlk(fb, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatalf("lock after the interrupted waiter gave up: %v (the withdrawn request left a lock)", err)
	}
	if err := setlk(fb, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := h.do(t, "lockw 5"); got != "ok" {
		t.Fatalf("F_SETLKW on a free lock: %q", got)
	}
}

// testLocksDeadlock: a deadlock between processes on two mounts is
// found by the filer: P1 on A holds [0,10) and waits (F_SETLKW) for
// [10,20), which P2 on B holds; P2's F_SETLKW of [0,10) would close the
// cycle and fails with EDEADLK at once, while P1 goes on waiting; once P2
// unlocks, P1 is granted.
func testLocksDeadlock(t *testing.T, a, b *cluster.Mount) {
	p1 := startPyHolder(t, a.Path("deadlock"))
	if got := p1.do(t, "setlk w 0 10"); got != "ok" {
		t.Fatalf("P1's lock of [0,10) on A: %q", got)
	}
	fb := openRW(t, b.Path("deadlock")) // P2 is the test process, on B
	if err := setlk(fb, unix.F_SETLK, unix.F_WRLCK, 10, 10); err != nil {
		t.Fatalf("P2's lock of [10,20) on B: %v", err)
	}
	p1.send(t, "setlkw w 10 10")
	cluster.WaitFor(t, lockWait, "P1 waiting in F_SETLKW", func() error {
		if !p1.inSyscall(t, unix.SYS_FCNTL) {
			return errors.New("P1 is not in fcntl(2)")
		}
		return nil
	})
	// From the kernel's FUSE request to the filer's wait queue is well
	// under a millisecond here; P2's request must come after it.
	time.Sleep(200 * time.Millisecond)
	err := cluster.Within(t, lockWait, "P2's F_SETLKW closing a deadlock", func() error {
		return setlk(fb, unix.F_SETLKW, unix.F_WRLCK, 0, 10)
	})
	if !errors.Is(err, unix.EDEADLK) {
		t.Fatalf("P2's F_SETLKW of [0,10), held by P1 who waits for P2: %v, want EDEADLK", err)
	}
	if !p1.inSyscall(t, unix.SYS_FCNTL) {
		t.Fatal("P1 stopped waiting when P2's request was refused")
	}
	if err := setlk(fb, unix.F_SETLK, unix.F_UNLCK, 10, 10); err != nil {
		t.Fatal(err)
	}
	if got := p1.read(t); got != "ok" {
		t.Fatalf("P1's F_SETLKW of [10,20) after P2 unlocked: %q", got)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_GETLK, &lk); err != nil || lk.Type != unix.F_WRLCK || lk.Start != 0 || lk.Len != 20 || lk.Pid != int32(p1.pid) {
		t.Fatalf("F_GETLK on B = %+v, %v; want P1's (pid %d) write lock [0,+20)", lk, err, p1.pid)
	}
}

// testLocksLinksAndRenames: a lock belongs to the file, not to a name:
// through a hard link made on the other mount it conflicts, and after the
// holder renames the file under it, F_GETLK through the new name reports
// it.
func testLocksLinksAndRenames(t *testing.T, a, b *cluster.Mount) {
	fa := openRW(t, a.Path("lockx"))
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 10, 20); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(b.Path("lockx"), b.Path("locky")); err != nil {
		t.Fatalf("hard link on B: %v", err)
	}
	fy := openRW(t, b.Path("locky"))
	if err := setlk(fy, unix.F_SETLK, unix.F_WRLCK, 15, 1); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("B's lock through the hard link y of x, over A's lock through x: %v, want EAGAIN", err)
	}
	if err := setlk(fy, unix.F_SETLK, unix.F_WRLCK, 0, 10); err != nil {
		t.Fatalf("B's lock through y beside A's: %v", err)
	}
	if err := setlk(fy, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a.Path("lockx"), a.Path("lockz")); err != nil {
		t.Fatalf("rename on A while holding the lock: %v", err)
	}
	var fz *os.File
	cluster.WaitFor(t, lockWait, "z on B after A's rename", func() error {
		var err error
		fz, err = os.OpenFile(b.Path("lockz"), os.O_RDWR, 0)
		return err
	})
	t.Cleanup(func() { fz.Close() })
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(fz.Fd(), unix.F_GETLK, &lk); err != nil || lk.Type != unix.F_WRLCK || lk.Start != 10 || lk.Len != 20 || lk.Pid != int32(os.Getpid()) {
		t.Fatalf("F_GETLK on B through z = %+v, %v; want A's write lock [10,+20) of pid %d", lk, err, os.Getpid())
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := setlk(fz, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatalf("B's lock through z once A unlocked through x's descriptor: %v", err)
	}
}

// TestMountLocksSQLite: SQLite from several writer processes at once,
// each inserting in transactions for a fixed time: with a rollback journal
// three on each of two mounts, and in WAL mode three on one mount (WAL
// keeps its index in shared memory, a mapping of the -shm file, which
// only processes of one machine share: SQLite does not support WAL across
// machines, sqlite.org/wal.html, so neither does Kelp across mounts).
// Every row a writer reports committed is there, through either mount,
// and the database is sound.
//
// The rollback journal is SQLite's default (journal_mode=DELETE): created
// and removed in every transaction, so each lock hand-over between the
// mounts must also hand over the namespace: the next holder must not see
// the journal the previous one removed (lock grants wait for the change
// log, docs/mount.md, SQLite).
func TestMountLocksSQLite(t *testing.T) {
	py := needProgram(t, "python3")
	if out, err := progTry("", nil, py, "-c", "import sqlite3"); err != nil {
		t.Fatalf("python3 has no sqlite3 module: %v\n%s", err, out)
	}
	_, a, b := lockCluster(t, nil)
	t.Run("RollbackJournalTwoMounts", func(t *testing.T) {
		testSQLiteWriters(t, py, "rollback.sqlite", "DELETE", 5*time.Second, []*cluster.Mount{a, a, a, b, b, b}, []*cluster.Mount{a, b})
	})
	t.Run("WALOneMount", func(t *testing.T) {
		testSQLiteWriters(t, py, "wal.sqlite", "WAL", 3*time.Second, []*cluster.Mount{a, a, a}, []*cluster.Mount{a, b})
	})
}

// sqliteWriterPy inserts rows (writer, 0), (writer, 1), ... one
// transaction each until its time is up, bumping a shared counter every
// tenth, and reports what it committed: "committed <rows> <bumps>".
const sqliteWriterPy = `
import sqlite3, sys, time
path, writer, secs, journal = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
con = sqlite3.connect(path, timeout=60, isolation_level=None)
con.execute("PRAGMA journal_mode=" + journal)
until = time.monotonic() + secs
n = bumps = 0
while time.monotonic() < until:
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t(writer, n, payload) VALUES (?, ?, ?)", (writer, n, "x" * (n % 700)))
    bump = n % 10 == 0
    if bump:
        con.execute("UPDATE counters SET c = c + 1 WHERE id = 1")
    con.execute("COMMIT")
    n += 1
    bumps += bump
con.close()
print("committed", n, bumps, flush=True)
`

// testSQLiteWriters runs one writer process per entry of writers, each
// on its mount, for about d, then checks the database through each of
// checkers.
func testSQLiteWriters(t *testing.T, py, db, journal string, d time.Duration, writers, checkers []*cluster.Mount) {
	const init = `
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode=" + sys.argv[2])
con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, writer TEXT, n INTEGER, payload TEXT, UNIQUE(writer, n))")
con.execute("CREATE TABLE counters(id INTEGER PRIMARY KEY, c INTEGER)")
con.execute("INSERT INTO counters VALUES (1, 0)")
con.close()
`
	progRun(t, "", nil, py, "-c", init, writers[0].Path(db), journal)
	// A writer's last transaction may wait for the others' last ones:
	// bounded well past d, it only catches hangs.
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	start := time.Now()
	var procs []*exec.Cmd
	var names []string
	var outs []*strings.Builder
	for w, m := range writers {
		name := fmt.Sprintf("%s-%d", filepath.Base(m.Dir), w)
		cmd := exec.CommandContext(ctx, py, "-c", sqliteWriterPy, m.Path(db), name, fmt.Sprint(d.Seconds()), journal)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs, names, outs = append(procs, cmd), append(names, name), append(outs, out)
	}
	committed := make([]int, len(procs))
	var total, bumps int
	for i, cmd := range procs {
		err := cmd.Wait()
		out := outs[i].String()
		var b int
		if _, serr := fmt.Sscanf(out, "committed %d %d", &committed[i], &b); err != nil || serr != nil {
			t.Errorf("writer %s: %v\n%s", names[i], err, out)
		}
		if strings.Contains(out, "malformed") {
			t.Errorf("writer %s found the database malformed:\n%s", names[i], out)
		}
		total, bumps = total+committed[i], bumps+b
	}
	elapsed := time.Since(start)
	if t.Failed() {
		return
	}
	t.Logf("SQLite (%s journal): %d transactions from %d processes in %v (%.0f/s; per writer %v)",
		journal, total, len(procs), elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), committed)
	// Per writer: rows, distinct n, lowest and highest n.
	const check = `
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
print(con.execute("PRAGMA integrity_check").fetchone()[0])
print(con.execute("SELECT c FROM counters").fetchone()[0])
for w in sys.argv[2:]:
    print(w, *con.execute("SELECT count(*), count(DISTINCT n), coalesce(min(n), -1), coalesce(max(n), -1) FROM t WHERE writer = ?", (w,)).fetchone())
print("others", con.execute("SELECT count(*) FROM t WHERE writer NOT IN (%s)" % ",".join("?" * (len(sys.argv) - 2)), sys.argv[2:]).fetchone()[0])
`
	want := fmt.Sprintf("ok\n%d\n", bumps)
	for i, name := range names {
		n, lowest := committed[i], 0
		if n == 0 {
			lowest = -1
		}
		want += fmt.Sprintf("%s %d %d %d %d\n", name, n, n, lowest, n-1)
	}
	want += "others 0\n"
	for _, m := range checkers {
		if got := progRun(t, "", nil, py, append([]string{"-c", check, m.Path(db)}, names...)...); got != want {
			t.Errorf("database through %s:\n%s\nwant:\n%s", m.Dir, got, want)
		}
	}
}

// TestMountLocksKilledMount: a mount process killed with SIGKILL while a
// process holds a lock through it: the other mount gets the lock once the
// dead mount's lease runs out (LockSessionTTL), and the time is logged.
func TestMountLocksKilledMount(t *testing.T) {
	const ttl = 2 * time.Second
	c, _, b := lockCluster(t, func(cfg *filerd.Config) { cfg.LockSessionTTL = ttl })
	p, dir := startKelpMount(t, c)
	h := startPyHolder(t, filepath.Join(dir, "killed"))
	if got := h.do(t, "flock"); got != "ok" {
		t.Fatalf("flock through the kelp mount process: %q", got)
	}
	fb := openRW(t, b.Path("killed"))
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("flock on B while the other mount's process holds it: %v, want EWOULDBLOCK", err)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-p.exited
	got := cluster.Within(t, ttl+lockWait, "flock on B after the holder's mount died", func() error {
		return unix.Flock(int(fb.Fd()), unix.LOCK_EX)
	})
	if got != nil {
		t.Fatalf("flock on B after the holder's mount died: %v", got)
	}
	t.Logf("lock taken over %v after the holding mount was killed (lease %v)", time.Since(killed).Round(time.Millisecond), ttl)
}

// startKelpMount runs `kelp mount` of c's filer on a fresh directory, a
// process of its own (to be killed), and waits until it is mounted.
func startKelpMount(t *testing.T, c *cluster.Cluster) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	p := startKelp(t, "mount", "-filer", c.Filer.MountAddr(), "-dir", dir, "-cacheDir", t.TempDir())
	cluster.WaitFor(t, 20*time.Second, "kelp mount ready", func() error {
		if !isMountPoint(dir) {
			return fmt.Errorf("%s not mounted yet", dir)
		}
		return nil
	})
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return p, dir
}

// isMountPoint reports whether dir is on another device than its parent.
func isMountPoint(dir string) bool {
	var st, pst syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || syscall.Stat(filepath.Dir(dir), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev
}

// TestMountLocksFilerRestart: locks held through mount A survive a filer
// restart by re-assertion, and mount B is granted none of them in
// between, neither during the grace period nor after it.
func TestMountLocksFilerRestart(t *testing.T) {
	const ttl, grace = time.Second, 3 * time.Second
	c, a, b := lockCluster(t, func(cfg *filerd.Config) { cfg.LockSessionTTL, cfg.LockGrace = ttl, grace })
	fa, fa2 := openRW(t, a.Path("restart")), openRW(t, a.Path("restart-flock"))
	fb, fb2 := openRW(t, b.Path("restart")), openRW(t, b.Path("restart-flock"))
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(fa2.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	c.Filer.Restart()
	restarted := time.Now()
	// B tries all along; every attempt must be refused, and none may be
	// granted while the grace period lets A re-assert.
	attempts := 0
	for time.Since(restarted) < grace+time.Second {
		attempts++
		err := setlk(fb, unix.F_SETLK, unix.F_WRLCK, 50, 10)
		if err == nil {
			t.Fatalf("B got a lock A held, %v after the filer restarted", time.Since(restarted))
		}
		if !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("B's lock after the restart: %v, want EAGAIN", err)
		}
		if err := unix.Flock(int(fb2.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Fatalf("B's flock after the restart: %v, want EWOULDBLOCK", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("B refused %d times; its first refusal took until the grace period ended", attempts)
	if st := a.FS.LockStats(); st.Lost != 0 || st.Held != 2 {
		t.Fatalf("mount A after the restart: %+v, want 2 held and none lost", st)
	}
	// A still holds them, and lets go.
	if err := setlk(fa, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(fa2.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := setlk(fb, unix.F_SETLK, unix.F_WRLCK, 50, 10); err != nil {
		t.Fatalf("B's lock once A unlocked: %v", err)
	}
	if err := unix.Flock(int(fb2.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("B's flock once A unlocked: %v", err)
	}
}

// TestMountLocksSessionExpired: when a mount's lock session ends behind
// its back (here closed through the filer's API, as a lease that ran out
// while the mount was cut off), its locks go to others, and the owner
// that held them gets ENOLCK at its next lock request, never a lock on
// stale state; the mount carries on under a fresh session.
func TestMountLocksSessionExpired(t *testing.T) {
	const ttl = time.Second
	c, a, b := lockCluster(t, func(cfg *filerd.Config) { cfg.LockSessionTTL = ttl })
	// The mount learns of the end at its next lock request, or at its
	// next renewal (every ttl/3) if that comes first.
	t.Run("NoticedByRequest", func(t *testing.T) { testLocksSessionEnded(t, c, a, b, "expired1", 0) })
	t.Run("NoticedByRenewal", func(t *testing.T) { testLocksSessionEnded(t, c, a, b, "expired2", ttl) })
}

func testLocksSessionEnded(t *testing.T, c *cluster.Cluster, a, b *cluster.Mount, name string, pause time.Duration) {
	fa, fb := openRW(t, a.Path(name)), openRW(t, b.Path(name))
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	before := a.FS.LockStats()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.FilerClient().Locks().CloseSession(ctx, before.Session); err != nil {
		t.Fatal(err)
	}
	if err := setlk(fb, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatalf("B's lock after A's session ended: %v", err)
	}
	time.Sleep(pause)
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 10); !errors.Is(err, unix.ENOLCK) {
		t.Fatalf("A's next lock request after its session ended: %v, want ENOLCK", err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 10); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("A's lock request while B holds the lock: %v, want EAGAIN", err)
	}
	st := a.FS.LockStats()
	if st.Lost != before.Lost+1 || st.Session == before.Session || st.Session == "" || st.Held != 0 {
		t.Fatalf("mount A's locks: %+v, want 1 more lost than %+v, none held, a new session", st, before)
	}
	if err := setlk(fb, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 10); err != nil {
		t.Fatalf("A's lock under its new session: %v", err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMountLockUnlock measures uncontended F_SETLK lock/unlock pairs
// through one mount (each pair is two lock calls to the filer and one
// content revalidation).
func BenchmarkMountLockUnlock(b *testing.B) {
	cluster.NeedFUSE(b)
	c := cluster.Start(b, cluster.Options{Filer: true})
	m := c.MountFiler(nil)
	f, err := os.OpenFile(m.Path("bench"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ResetTimer()
	for range b.N {
		if err := setlk(f, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
			b.Fatal(err)
		}
		if err := setlk(f, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}

// TestMountLocksFilerAway: a lock request while the filer is away fails
// with EIO once the mount's OpTimeout has passed, rather than hanging;
// with the filer back, locks work again.
func TestMountLocksFilerAway(t *testing.T) {
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true, FilerConfig: func(cfg *filerd.Config) {
		cfg.LockSessionTTL, cfg.LockGrace = time.Second, 2*time.Second
	}})
	const opTimeout = time.Second
	m := c.MountFiler(func(cfg *mount.Config) { cfg.OpTimeout = opTimeout })
	f := openRW(t, m.Path("away"))
	if err := setlk(f, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := setlk(f, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	c.Filer.Stop()
	start := time.Now()
	err := cluster.Within(t, 30*opTimeout, "F_SETLK with the filer away", func() error {
		return setlk(f, unix.F_SETLK, unix.F_WRLCK, 0, 0)
	})
	if !errors.Is(err, unix.EIO) {
		t.Fatalf("F_SETLK with the filer away: %v, want EIO", err)
	}
	t.Logf("F_SETLK with the filer away failed after %v (OpTimeout %v)", time.Since(start).Round(time.Millisecond), opTimeout)
	c.Filer.Start()
	cluster.WaitFor(t, 30*time.Second, "a lock with the filer back", func() error {
		return setlk(f, unix.F_SETLK, unix.F_WRLCK, 0, 0)
	})
}

// TestMountLocksLeaseLapsed: a mount cut off from the lock service (its
// renewals dropped, cluster.LockCut) past its lease loses its locks for
// real: the filer expires the session and grants the lock to another
// mount; the cut-off mount's owner gets ENOLCK once when it comes back,
// then goes on under a fresh session. The same holds when the filer
// restarts before the cut-off mount comes back: in the grace period the
// mount must not re-assert what its lapsed lease may have lost, or it
// could take the lock back from the mount that now holds it.
func TestMountLocksLeaseLapsed(t *testing.T) {
	const ttl, grace = 2 * time.Second, 2 * time.Second
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true, FilerConfig: func(cfg *filerd.Config) {
		cfg.LockSessionTTL, cfg.LockGrace = ttl, grace
	}})
	a, cutA := c.MountFilerLockCut(nil)
	b, cutB := c.MountFilerLockCut(nil)
	t.Run("FilerRunning", func(t *testing.T) { testLocksLeaseLapsed(t, c, a, b, cutA, nil, "lapsed1", ttl) })
	t.Run("FilerRestarted", func(t *testing.T) { testLocksLeaseLapsed(t, c, a, b, cutA, cutB, "lapsed2", ttl) })
}

// testLocksLeaseLapsed: A locks, is cut off until B gets the lock, and
// comes back; with cutB, the filer restarts before A comes back, and B is
// cut off meanwhile so that A is heard first (B comes back well within
// its lease and re-asserts).
func testLocksLeaseLapsed(t *testing.T, c *cluster.Cluster, a, b *cluster.Mount, cutA, cutB *cluster.LockCut, name string, ttl time.Duration) {
	fa, fb := openRW(t, a.Path(name)), openRW(t, b.Path(name))
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	beforeA, beforeB := a.FS.LockStats(), b.FS.LockStats()
	cutA.Cut()
	cut := time.Now()
	cluster.WaitFor(t, ttl+lockWait, "B's lock once A's lease ran out", func() error {
		return setlk(fb, unix.F_SETLK, unix.F_WRLCK, 0, 0)
	})
	t.Logf("B got the lock %v after A was cut off (lease %v)", time.Since(cut).Round(time.Millisecond), ttl)
	if cutB != nil {
		cutB.Cut()
		c.Filer.Restart()
	}
	cutA.Heal()
	cluster.WaitFor(t, lockWait, "A's fresh session", func() error {
		if st := a.FS.LockStats(); st.Session == beforeA.Session || st.Session == "" {
			return fmt.Errorf("mount A's lock session is still %q", st.Session)
		}
		return nil
	})
	if cutB != nil {
		cutB.Heal()
		cluster.WaitFor(t, lockWait, "B's fresh session", func() error {
			if st := b.FS.LockStats(); st.Session == beforeB.Session || st.Session == "" {
				return fmt.Errorf("mount B's lock session is still %q", st.Session)
			}
			return nil
		})
	}
	if st := b.FS.LockStats(); st.Lost != beforeB.Lost || st.Held != 1 {
		t.Fatalf("mount B's locks: %+v, want its lock held and none lost (before: %+v)", st, beforeB)
	}
	if st := a.FS.LockStats(); st.Lost != beforeA.Lost+1 || st.Held != 0 {
		t.Fatalf("mount A's locks: %+v, want 1 more lost than %+v and none held", st, beforeA)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 10); !errors.Is(err, unix.ENOLCK) {
		t.Fatalf("A's next lock request after its lease ran out: %v, want ENOLCK", err)
	}
	// Told once; B holds the lock (the filer's grace period, if any,
	// ends first).
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 10); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("A's lock request while B holds the lock: %v, want EAGAIN", err)
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(fa.Fd(), unix.F_GETLK, &lk); err != nil || lk.Type != unix.F_WRLCK || lk.Start != 0 || lk.Len != 0 {
		t.Fatalf("F_GETLK on A = %+v, %v; want B's write lock of the whole file", lk, err)
	}
	if err := setlk(fb, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_WRLCK, 0, 10); err != nil {
		t.Fatalf("A's lock under its fresh session: %v", err)
	}
	if err := setlk(fa, unix.F_SETLK, unix.F_UNLCK, 0, 0); err != nil {
		t.Fatal(err)
	}
}
