package fusefs

import (
	"bytes"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func (r *rawFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, name string, dest []byte) (uint32, fuse.Status) {
	v, errno := r.fs.GetXattr(opCtx(h), r.ino(h.NodeId), name)
	if errno != 0 {
		return 0, status(errno)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	names, errno := r.fs.ListXattr(opCtx(h), r.ino(h.NodeId))
	if errno != 0 {
		return 0, status(errno)
	}
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
	}
	if len(dest) < b.Len() {
		return uint32(b.Len()), fuse.ERANGE
	}
	return uint32(copy(dest, b.Bytes())), fuse.OK
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, name string, data []byte) fuse.Status {
	return status(r.fs.SetXattr(opCtx(&in.InHeader), r.ino(in.NodeId), name, data, in.Flags))
}

func (r *rawFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return status(r.fs.RemoveXattr(opCtx(h), r.ino(h.NodeId), name))
}
