package badger_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/filerd/store"
)

const crashChildEnv = "KELP_BADGER_CRASH_CHILD_DIR"

// TestCrashDurability kills -9 a process writing to the store and checks
// that every Update it acknowledged is there after reopening (SyncWrites).
func TestCrashDurability(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDurability$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(out)
	for acked < 300 && sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked, _ = strconv.Atoi(n)
		}
	}
	_ = cmd.Process.Kill() // SIGKILL: no Close, no flush
	_ = cmd.Wait()
	if acked < 300 {
		t.Fatalf("child stopped after acknowledging %d writes", acked)
	}
	s := open(t, diskConfig(dir))
	defer s.Close()
	err = s.View(t.Context(), func(tx store.Tx) error {
		for i := 0; i <= acked; i++ {
			v, err := tx.Get(fmt.Appendf(nil, "crash/%06d", i))
			if err != nil {
				return fmt.Errorf("acknowledged write %d of %d lost: %w", i, acked, err)
			}
			if want := crashValue(i); string(v) != want {
				return fmt.Errorf("write %d: value of %d bytes, want %d", i, len(v), len(want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// crashChild writes one key per Update and prints each acknowledgement
// until it is killed.
func crashChild(t *testing.T, dir string) {
	s := open(t, diskConfig(dir))
	for i := 0; ; i++ {
		err := s.Update(t.Context(), func(tx store.Tx) error {
			return tx.Set(fmt.Appendf(nil, "crash/%06d", i), []byte(crashValue(i)))
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(os.Stdout, "acked %d\n", i); err != nil {
			return
		}
	}
}

// crashValue is write i's value: odd ones over the value threshold (they
// live in the value log), even ones under it (in the LSM tree).
func crashValue(i int) string {
	v := strconv.Itoa(i)
	if i%2 == 1 {
		v += strings.Repeat("v", 4096)
	}
	return v
}
