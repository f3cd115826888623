package filerd

import (
	"bytes"
	"testing"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
)

// aclBytes is an ACL xattr value (version 2) of entries {tag, perm, id}.
func aclBytes(entries ...[3]uint32) []byte {
	b := []byte{2, 0, 0, 0}
	for _, e := range entries {
		b = append(b, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8),
			byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	return b
}

const noID = 0xffffffff

// TestAccessACLOverGRPC: setting an access ACL answers with the inode's new
// attributes (mode from the ACL, ctime and generation bumped), and the
// change log carries them.
func TestAccessACLOverGRPC(t *testing.T) {
	tf := startFiler(t, nil)
	api, ctx := tf.api, tf.ctx
	f := must[*filerpb.EntryResponse](t)(api.Create(ctx, &filerpb.CreateRequest{Parent: root, Name: "f", Mode: 0o600, Exclusive: true}))
	change := must[*filerpb.ChangeResponse](t)

	// user::rw- group::r-- other::r--: mode 0644, nothing stored.
	resp := change(api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: meta.XattrACLAccess,
		Value: aclBytes([3]uint32{0x01, 6, noID}, [3]uint32{0x04, 4, noID}, [3]uint32{0x20, 4, noID})}))
	if len(resp.Changed) != 1 {
		t.Fatalf("changed %v, want the file", resp.Changed)
	}
	a := resp.Changed[0]
	if a.Inode != f.Attr.Inode || a.Mode != uint32(meta.S_IFREG|0o644) ||
		a.CtimeNs <= f.Attr.CtimeNs || a.Generation <= f.Attr.Generation {
		t.Fatalf("changed attr %+v, file was %+v", a, f.Attr)
	}
	_, err := api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: f.Attr.Inode, Name: meta.XattrACLAccess})
	wantErrno(t, err, "ENODATA", client.ErrNotFound)
	evs := readLog(t, tf.s, 0)
	last := evs[len(evs)-1]
	if last.Kind != meta.EventUpdate || last.NewEntry.Attr.Mode != a.Mode || last.NewEntry.Attr.Generation != a.Generation {
		t.Fatalf("last event %+v, want the update to mode %#o", last, a.Mode)
	}

	// A named user and a mask: stored, group bits from the mask.
	v := aclBytes([3]uint32{0x01, 6, noID}, [3]uint32{0x02, 7, 1000}, [3]uint32{0x04, 4, noID},
		[3]uint32{0x10, 5, noID}, [3]uint32{0x20, 0, noID})
	resp = change(api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: meta.XattrACLAccess, Value: v}))
	if len(resp.Changed) != 1 || resp.Changed[0].Mode != uint32(meta.S_IFREG|0o650) {
		t.Fatalf("changed %v, want mode %#o", resp.Changed, meta.S_IFREG|0o650)
	}
	gx := must[*filerpb.GetXattrResponse](t)(api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: f.Attr.Inode, Name: meta.XattrACLAccess}))
	if !bytes.Equal(gx.Value, v) {
		t.Fatalf("stored ACL %x, want %x", gx.Value, v)
	}

	// chmod rewrites the owner, mask and other entries.
	mode := uint32(0o704)
	must[*filerpb.AttrResponse](t)(api.SetAttr(ctx, &filerpb.SetAttrRequest{Inode: f.Attr.Inode, Mode: &mode}))
	gx = must[*filerpb.GetXattrResponse](t)(api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: f.Attr.Inode, Name: meta.XattrACLAccess}))
	want := aclBytes([3]uint32{0x01, 7, noID}, [3]uint32{0x02, 7, 1000}, [3]uint32{0x04, 4, noID},
		[3]uint32{0x10, 0, noID}, [3]uint32{0x20, 4, noID})
	if !bytes.Equal(gx.Value, want) {
		t.Fatalf("ACL after chmod %x, want %x", gx.Value, want)
	}

	// A malformed ACL is EINVAL.
	_, err = api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: f.Attr.Inode, Name: meta.XattrACLAccess, Value: []byte{1, 0, 0, 0}})
	wantErrno(t, err, "EINVAL", client.ErrInvalid)
}
