package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/mount"
)

// Written data whose upload fails waits on disk in the cache directory,
// not in memory, until a flush stores it: a writer can go on writing far
// past the write-buffer cap while the volume server is down, reads see
// the data, and close after the server is back commits all of it.
func TestMountSpillFailedUploads(t *testing.T) {
	cluster.NeedFUSE(t)
	c := cluster.Start(t, cluster.Options{Filer: true})
	const bufMB, chunkMB, totalMB = 4, 1, 24
	var cacheDir string
	m := c.MountFiler(func(cfg *mount.Config) {
		cfg.ChunkSizeMB, cfg.WriteBufferMB = chunkMB, bufMB
		cfg.OpTimeout = 3 * time.Second
		cacheDir = cfg.CacheDir
	})
	f, err := os.OpenFile(m.Path("big"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c.StopVolume(0)
	data := randomBytes(t, totalMB<<20)
	err = cluster.Within(t, liveness, "writing 6x the write buffer with the volume server down", func() error {
		for off := 0; off < len(data); off += 1 << 20 {
			if _, err := f.Write(data[off : off+1<<20]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write with the volume server down: %v (writes are buffered; only fsync and close report upload failures)", err)
	}
	// Every sealed chunk has been tried and failed by now, or is about
	// to be: wait for the failures to land on disk.
	minSpilled := int64(totalMB-bufMB-chunkMB) << 20
	cluster.WaitFor(t, liveness, "failed chunks spilled to disk", func() error {
		if st := m.FS.BufferStats(); st.Spilled < minSpilled {
			return fmt.Errorf("%d bytes spilled, %d in the write buffer; want at least %d spilled", st.Spilled, st.Memory, minSpilled)
		}
		return nil
	})
	spillDir := filepath.Join(cacheDir, "spill")
	if ents, err := os.ReadDir(spillDir); err != nil || len(ents) == 0 {
		t.Fatalf("spill dir %s: %d files, %v", spillDir, len(ents), err)
	}

	// Reads through FUSE (not the page cache) find the spilled bytes.
	got, err := readDirect(m.Path("big"))
	if err != nil {
		t.Fatalf("read back while the volume server is down: %v", err)
	}
	sameBytes(t, "read back of spilled data", got, data)

	c.RestartVolume(0)
	if err := cluster.Within(t, liveness, "close after the volume server came back", f.Close); err != nil {
		t.Fatalf("close after the volume server came back: %v", err)
	}
	if st := m.FS.BufferStats(); st.Spilled != 0 {
		t.Errorf("%d bytes still spilled after a successful close", st.Spilled)
	}
	if ents, _ := os.ReadDir(spillDir); len(ents) != 0 {
		t.Errorf("spill dir keeps %d files after a successful close", len(ents))
	}
	other, err := readDirect(c.MountFiler(noChunkCache).Path("big"))
	if err != nil {
		t.Fatalf("read through another mount: %v", err)
	}
	if !bytes.Equal(other, data) {
		sameBytes(t, "another mount's read", other, data)
	}
}
