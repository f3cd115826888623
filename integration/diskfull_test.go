package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/volumed"
)

// A volume server whose disk fills up answers writes with 507 and a message
// that says so, keeps serving what it stored, and never stores a partial
// needle.
func TestDiskFullFailsCleanly(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "small-disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must be able to mount a small tmpfs (runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a 2 MiB tmpfs to fill (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })

	c := cluster.Start(t, cluster.Options{Volume: func(_ int, cfg *volumed.Config) { cfg.Dirs = []string{disk} }})
	cl := c.Client()
	ctx := ctxT(t)
	stored := map[string][]byte{}
	var fullErr error
	for i := 0; i < 200 && fullErr == nil; i++ {
		data := randomBytes(t, 64<<10)
		fid, _, err := cl.Write(ctx, data, client.WriteOptions{})
		if err != nil {
			fullErr = err
			break
		}
		stored[fid] = data
	}
	if fullErr == nil {
		t.Fatal("12 MiB of writes fit on a 2 MiB disk")
	}
	if !errors.Is(fullErr, client.ErrNoSpace) || !strings.Contains(fullErr.Error(), "no space left on device") {
		t.Fatalf("write on a full disk: want a no-space error that says so, got %v", fullErr)
	}
	if len(stored) == 0 {
		t.Fatal("nothing was stored before the disk filled")
	}
	for fid, data := range stored {
		got, err := cl.Read(ctx, fid)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %s on a full disk: %v", fid, err)
		}
	}
	// After a restart the volumes load cleanly: no partial needle became data.
	c.RestartVolume(0)
	for fid, data := range stored {
		got, err := cl.Read(ctx, fid)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %s after restart: %v", fid, err)
		}
	}
}
