package integration

import (
	"bytes"
	"testing"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/integration/cluster"
	"github.com/kelpfs/kelp/needle"
)

// An assign with a TTL lands on a volume created with that TTL, apart from
// volumes without one; expiry itself is tested in volumed/storage with an
// injected clock.
func TestTTLAssignUsesTTLVolume(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	cl := c.Client()
	ctx := ctxT(t)
	data := []byte("short-lived")
	fid, _, err := cl.Write(ctx, data, client.WriteOptions{
		Assign: client.AssignRequest{TTL: "3m", Collection: "tmp"},
		Upload: client.UploadOptions{TTL: "3m"},
	})
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := cl.Write(ctx, data, client.WriteOptions{Assign: client.AssignRequest{Collection: "tmp"}})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := needle.ParseFileID(fid)
	p, _ := needle.ParseFileID(plain)
	if f.VolumeID == p.VolumeID {
		t.Fatalf("TTL and plain blobs share volume %d", f.VolumeID)
	}
	st, err := c.Volumes[0].Server().Store().VolumeStatus(f.VolumeID)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL.String() != "3m" {
		t.Fatalf("volume %d has TTL %q, want 3m", f.VolumeID, st.TTL)
	}
	got, err := cl.Read(ctx, fid)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read TTL blob before expiry: %v", err)
	}
	if _, err := cl.Master.Assign(ctx, client.AssignRequest{TTL: "3x"}); err == nil {
		t.Fatal("assign with a bad TTL succeeded")
	}
}
