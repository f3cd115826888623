package filerd

import (
	"testing"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/filerd/meta"
)

// writeChunks gives a new file n chunks assigned by the fake master. It
// writes straight to the namespace: gRPC commits would wake the GC loop,
// which the tests that run GC passes by hand must keep asleep.
func writeChunks(t *testing.T, tf *testFiler, name string, n int) (meta.Inode, []string) {
	t.Helper()
	ns, ctx := tf.s.ns, tf.ctx
	f := must[meta.Attr](t)(ns.Create(ctx, meta.RootInode, name, meta.CreateRequest{Mode: 0o644}))
	var chunks []meta.Chunk
	var fids []string
	for i := range n {
		a := must[*filerpb.AssignVolumeResponse](t)(tf.api.AssignVolume(ctx, &filerpb.AssignVolumeRequest{}))
		chunks = append(chunks, meta.Chunk{Offset: int64(i) * 100, Size: 100, FileID: a.FileId, ModifiedNs: int64(i + 1)})
		fids = append(fids, a.FileId)
	}
	must[meta.Attr](t)(ns.AppendChunks(ctx, f.Inode, chunks, 0))
	return f.Inode, fids
}

func TestGCDeletesFreedChunks(t *testing.T) {
	tf := startFiler(t, nil)
	ns, ctx := tf.s.ns, tf.ctx
	ino, fids := writeChunks(t, tf, "truncated", 3)
	_, gone := writeChunks(t, tf, "unlinked", 2)

	size := uint64(150) // keeps chunk 0, trims chunk 1, frees chunk 2
	must[meta.Attr](t)(ns.SetAttr(ctx, ino, meta.SetAttrRequest{Size: &size}))
	if err := ns.Unlink(ctx, meta.RootInode, "unlinked"); err != nil {
		t.Fatal(err)
	}

	tf.vol.setFail(gone[1], true)
	deleted, failed, err := tf.s.collectGarbage(ctx)
	if err != nil || deleted != 2 || failed != 1 {
		t.Fatalf("gc pass: deleted %d failed %d err %v", deleted, failed, err)
	}
	for _, fid := range []string{fids[2], gone[0]} {
		if tf.vol.deletions(fid) != 1 {
			t.Fatalf("%s deleted %d times", fid, tf.vol.deletions(fid))
		}
	}
	for _, fid := range []string{fids[0], fids[1]} {
		if tf.vol.deletions(fid) != 0 {
			t.Fatalf("live chunk %s deleted", fid)
		}
	}
	if pend := pendingFids(t, tf.s); pend != gone[1] {
		t.Fatalf("queue after a failed delete: %q, want %q", pend, gone[1])
	}

	// The failure clears; the next pass deletes it.
	tf.vol.setFail(gone[1], false)
	deleted, failed, err = tf.s.collectGarbage(ctx)
	if err != nil || deleted != 1 || failed != 0 || tf.vol.deletions(gone[1]) != 1 {
		t.Fatalf("retry pass: deleted %d failed %d err %v", deleted, failed, err)
	}
	if pend := pendingFids(t, tf.s); pend != "" {
		t.Fatalf("queue not empty: %q", pend)
	}
}

func TestGCBlobAlreadyGoneAndUnknownVolume(t *testing.T) {
	tf := startFiler(t, nil)
	ctx := tf.ctx
	ino, fids := writeChunks(t, tf, "f", 1)
	tf.vol.mu.Lock()
	tf.vol.missing[fids[0]] = true
	tf.vol.mu.Unlock()
	// A chunk on a volume the master does not know stays queued: that is
	// no proof the blob is gone.
	if _, err := tf.s.ns.SetChunks(ctx, ino, []meta.Chunk{{Size: 5, FileID: "9,01aaaaaaaa"}}, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := tf.s.ns.SetChunks(ctx, ino, nil, 0); err != nil {
		t.Fatal(err)
	}
	deleted, failed, err := tf.s.collectGarbage(ctx)
	if err != nil || deleted != 1 || failed != 1 {
		t.Fatalf("gc pass: deleted %d failed %d err %v", deleted, failed, err)
	}
	if pend := pendingFids(t, tf.s); pend != "9,01aaaaaaaa" {
		t.Fatalf("queue %q", pend)
	}
}

func TestGCLoopRunsWhenWoken(t *testing.T) {
	tf := startFiler(t, nil) // GCInterval is an hour: only the wake-up can run it
	_, fids := writeChunks(t, tf, "f", 2)
	must[*filerpb.ChangeResponse](t)(tf.api.Unlink(tf.ctx, &filerpb.UnlinkRequest{Parent: root, Name: "f"}))
	eventually(t, "gc loop", func() bool { return pendingFids(t, tf.s) == "" })
	for _, fid := range fids {
		if tf.vol.deletions(fid) != 1 {
			t.Fatalf("%s deleted %d times", fid, tf.vol.deletions(fid))
		}
	}
}
