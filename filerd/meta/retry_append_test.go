package meta

import "testing"

// A client that retries an append whose reply was lost commits the same
// chunk twice; the blob stays in the file and must never be queued for
// deletion, nor may a truncate that keeps part of it free it.
func TestRepeatedAppendKeepsBlob(t *testing.T) {
	ns, ctx := newNS(t)
	f := mkfile(t, ns, RootInode, "f")
	c := Chunk{Offset: 0, Size: 10, FileID: "3,01637037d6", ModifiedNs: 5}
	for i := 0; i < 2; i++ {
		if _, err := ns.AppendChunks(ctx, f.Inode, []Chunk{c}, 0); err != nil {
			t.Fatal(err)
		}
	}
	size := uint64(4)
	if _, err := ns.SetAttr(ctx, f.Inode, SetAttrRequest{Size: &size}); err != nil {
		t.Fatal(err)
	}
	content, err := ns.GetContent(ctx, f.Inode)
	if err != nil {
		t.Fatal(err)
	}
	if len(content.Chunks) != 1 || content.Chunks[0].FileID != c.FileID {
		t.Fatalf("chunks %v", content.Chunks)
	}
	pd, err := ns.PendingDeletions(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pd {
		if p.Chunk.FileID == c.FileID {
			t.Fatalf("blob %s queued for deletion while the file still uses it", c.FileID)
		}
	}
	checkInvariants(t, ns)
}
