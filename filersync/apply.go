package filersync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc/metadata"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// Applying an event to the target, by path and idempotently: each entry
// the event names is made to match the event's state of it.

// errSuperseded: the source no longer has the state an event carries (its
// chunks were replaced and collected); a later event carries the newer
// state, so this one is skipped.
var errSuperseded = errors.New("superseded by a later change on the source")

// withSignatures tags target calls with the signatures the event carries,
// so the target records them and the reverse direction skips the change.
func withSignatures(ctx context.Context, sigs []int32) context.Context {
	if len(sigs) == 0 {
		return ctx
	}
	parts := make([]string, len(sigs))
	for i, s := range sigs {
		parts[i] = strconv.Itoa(int(s))
	}
	return metadata.AppendToOutgoingContext(ctx, client.FilerSignatureKey, strings.Join(parts, ","))
}

// apply applies one event; nil when it is done (or does not concern the
// target). The chunks an attempt copies to the target are kept for the
// event's next attempt if it fails, and what the event copied and did not
// commit is deleted once it is applied or superseded.
func (r *replicator) apply(ctx context.Context, ev *filerpb.MetadataEvent) error {
	err := r.applyEvent(withLedger(ctx, r.copier.ledgerFor(ev, r.log)), ev)
	if err == nil || errors.Is(err, errSuperseded) {
		r.copier.eventDone(ctx, ev)
	}
	return err
}

func (r *replicator) applyEvent(ctx context.Context, ev *filerpb.MetadataEvent) error {
	ctx = withSignatures(ctx, ev.Signatures)
	switch ev.Kind {
	case filerpb.MetadataEvent_CREATE, filerpb.MetadataEvent_UPDATE:
		if np, ok := r.mapPath(ev.NewPath); ok {
			r.learnLinkTarget(ctx, ev)
			return r.upsert(ctx, ev.NewPath, np, ev.NewEntry)
		}
	case filerpb.MetadataEvent_DELETE:
		if op, ok := r.mapPath(ev.OldPath); ok {
			return r.remove(ctx, op)
		}
	case filerpb.MetadataEvent_RENAME:
		return r.applyRename(ctx, ev)
	}
	return nil
}

func (r *replicator) applyRename(ctx context.Context, ev *filerpb.MetadataEvent) error {
	op, okOld := r.mapPath(ev.OldPath)
	np, okNew := r.mapPath(ev.NewPath)
	switch {
	case okOld && okNew && ev.Exchange:
		// Swap on the target if both are there, then make each match.
		if err := r.renameOnTarget(ctx, op, np, 2); err != nil && !notFound(err) {
			return err
		}
		if err := r.upsert(ctx, ev.NewPath, np, ev.OldEntry); err != nil {
			return err
		}
		return r.upsert(ctx, ev.OldPath, op, ev.NewEntry)
	case okOld && okNew:
		err := r.renameOnTarget(ctx, op, np, 0)
		switch {
		case err == nil:
			return r.upsert(ctx, ev.NewPath, np, ev.NewEntry)
		case errors.Is(err, errAppliedBefore):
			// np holds what the source moved there (copied from the
			// source's present state, merged with anything of the
			// target's own), and what is at op on the target came
			// later: replayed events that made entries at op again
			// before this rename moved them, or an entry made after
			// the rename, whose own events follow this one and make
			// it again.
			r.log.Debug("filer.sync: rename found in place; merging", "old", op, "new", np)
			if err := r.copyIn(ctx, ev.NewPath, np, ev.NewEntry); err != nil {
				return err
			}
			return r.remove(ctx, op)
		case notFound(err):
			// Not on the target (applied before, or never there):
			// make it from the source.
			return r.copyIn(ctx, ev.NewPath, np, ev.NewEntry)
		}
		return err
	case okOld:
		return r.remove(ctx, op) // moved out of what is kept in step
	case okNew:
		return r.copyIn(ctx, ev.NewPath, np, ev.NewEntry) // moved in
	}
	return nil
}

// copyIn makes dst match the source entry at src, and for a directory
// everything below it (as the source has it now).
func (r *replicator) copyIn(ctx context.Context, src, dst string, e *filerpb.EntryState) error {
	if err := r.upsert(ctx, src, dst, e); err != nil {
		return err
	}
	if e.GetAttr().GetMode()&syscall.S_IFMT != syscall.S_IFDIR {
		return nil
	}
	return r.copyTree(ctx, src, dst)
}

// renameOnTarget renames op to np on the target (flags as RenameRequest).
func (r *replicator) renameOnTarget(ctx context.Context, op, np string, flags uint32) error {
	od, on := parentOf(op)
	nd, nn := parentOf(np)
	oa, err := r.dst.lookup(ctx, od)
	if err != nil {
		return err
	}
	nino, err := r.dst.ensureDir(ctx, nd)
	if err != nil {
		return err
	}
	_, err = r.dst.api.Rename(ctx, &filerpb.RenameRequest{OldParent: oa.Inode, OldName: on, NewParent: nino, NewName: nn, Flags: flags})
	switch client.PosixErrno(err) {
	case "ENOTEMPTY":
		// The source cannot have replaced a non-empty directory: the
		// one at np is this rename applied before (an event replayed
		// after a restart, with op made anew since) or the target's
		// own. Either way it stays; upsert makes it match.
		return errAppliedBefore
	case "EEXIST", "EISDIR", "ENOTDIR":
		// Something of another kind is in the way: it goes, as it did
		// on the source (a non-empty directory stays, as above).
		if rerr := r.removeIfNotDir(ctx, np); rerr != nil {
			return rerr
		}
		_, err = r.dst.api.Rename(ctx, &filerpb.RenameRequest{OldParent: oa.Inode, OldName: on, NewParent: nino, NewName: nn, Flags: flags})
		if client.PosixErrno(err) == "ENOTEMPTY" {
			return errAppliedBefore
		}
	}
	return err
}

// errAppliedBefore: a rename found its destination already in place.
var errAppliedBefore = errors.New("rename applied before")

// removeIfNotDir removes dst unless it is a non-empty directory.
func (r *replicator) removeIfNotDir(ctx context.Context, dst string) error {
	err := r.removePath(ctx, dst, false)
	if client.PosixErrno(err) == "ENOTEMPTY" {
		return nil
	}
	return err
}

// remove deletes dst on the target, a directory with everything in it;
// a missing one is no error.
func (r *replicator) remove(ctx context.Context, dst string) error {
	return r.removePath(ctx, dst, true)
}

// removePath is remove; without recursive a non-empty directory stays
// and the error says ENOTEMPTY.
func (r *replicator) removePath(ctx context.Context, dst string, recursive bool) error {
	if dst == "/" {
		return nil // never the root itself
	}
	dir, name := parentOf(dst)
	pa, err := r.dst.lookup(ctx, dir)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ent, err := r.dst.api.Lookup(ctx, &filerpb.LookupRequest{Parent: pa.Inode, Name: name})
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !recursive && ent.Attr.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		_, err := r.dst.api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: pa.Inode, Name: name})
		if notFound(err) {
			return nil
		}
		return err
	}
	return r.removeEntry(ctx, pa.Inode, name, ent.Attr)
}

func (r *replicator) removeEntry(ctx context.Context, parent uint64, name string, a *filerpb.Attr) error {
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		_, err := r.dst.api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: parent, Name: name})
		if notFound(err) {
			return nil
		}
		return err
	}
	for {
		_, err := r.dst.api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: parent, Name: name})
		if err == nil || notFound(err) {
			return nil
		}
		if client.PosixErrno(err) != "ENOTEMPTY" {
			return err
		}
		// Empty it first: the target had entries the source's
		// directory no longer has when it was deleted.
		list, err := r.dst.api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: a.Inode, Limit: 1024, WithAttrs: true})
		if err != nil {
			return err
		}
		for _, c := range list.Entries {
			if err := r.removeEntry(ctx, a.Inode, c.Name, c.Attr); err != nil {
				return err
			}
		}
	}
}

// upsert makes the target entry at dst match e, the source's state of the
// entry at src: created if missing, replaced if of another type, then its
// content, attributes and xattrs set where they differ.
func (r *replicator) upsert(ctx context.Context, src, dst string, e *filerpb.EntryState) error {
	if e == nil || e.Attr == nil {
		return nil
	}
	if dst == "/" || dst == r.dstRoot {
		// The mapped roots exist on both sides; only their attributes
		// follow.
		a, err := r.dst.lookup(ctx, dst)
		if notFound(err) {
			_, err = r.dst.ensureDir(ctx, dst)
			if err == nil {
				a, err = r.dst.lookup(ctx, dst)
			}
		}
		if err != nil {
			return err
		}
		return r.setMeta(ctx, a, e, false)
	}
	if ledgerOf(ctx) == nil {
		// Not part of an event: what this call copies and does not
		// commit is deleted when it returns.
		l := newCopyLedger(r.dst.blobs, r.log)
		ctx = withLedger(ctx, l)
		defer l.discard(ctx)
	}
	dir, name := parentOf(dst)
	parent, err := r.dst.ensureDir(ctx, dir)
	if err != nil {
		return err
	}
	typ := e.Attr.Mode & syscall.S_IFMT
	var a, old *filerpb.Attr // the target's entry of the same kind, or one of another kind in the way
	ent, err := r.dst.api.Lookup(ctx, &filerpb.LookupRequest{Parent: parent, Name: name})
	switch {
	case err == nil && ent.Attr.Mode&syscall.S_IFMT == typ && !(typ == syscall.S_IFLNK && !r.sameTarget(ctx, ent.Attr.Inode, e.SymlinkTarget)):
		a = ent.Attr
	case err == nil:
		old = ent.Attr
	case notFound(err):
	default:
		return err
	}
	fresh := false // made just now: no xattrs
	switch {
	case typ == syscall.S_IFREG && a == nil:
		a, fresh, e, err = r.createFile(ctx, src, parent, name, e, old)
	case typ == syscall.S_IFREG:
		a, e, err = r.syncContent(ctx, src, a, e)
	case a == nil:
		if err = r.removeOld(ctx, parent, name, old); err == nil {
			a, err = r.create(ctx, parent, name, e)
			fresh = true
		}
	}
	if err != nil {
		return err
	}
	if err := r.setMeta(ctx, a, e, fresh); err != nil {
		return err
	}
	if typ == syscall.S_IFREG {
		r.inodes.Add(e.Attr.Inode, a.Inode)
		if e.Attr.Nlink > 1 {
			r.rememberLink(ctx, e.Attr.Inode, a.Inode)
		}
	}
	return nil
}

// removeOld removes old, an entry of another kind at name in parent, if
// there is one.
func (r *replicator) removeOld(ctx context.Context, parent uint64, name string, old *filerpb.Attr) error {
	if old == nil {
		return nil
	}
	return r.removeEntry(ctx, parent, name, old)
}

func (r *replicator) sameTarget(ctx context.Context, ino uint64, target string) bool {
	rl, err := r.dst.api.Readlink(ctx, &filerpb.ReadlinkRequest{Inode: ino})
	return err == nil && rl.Target == target
}

// create makes the entry e, a directory, symlink or special file, as
// name in parent (attributes and xattrs follow).
func (r *replicator) create(ctx context.Context, parent uint64, name string, e *filerpb.EntryState) (*filerpb.Attr, error) {
	at := e.Attr
	var resp *filerpb.EntryResponse
	var err error
	switch at.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		resp, err = r.dst.api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: parent, Name: name, Mode: at.Mode & 0o7777, Uid: at.Uid, Gid: at.Gid})
	case syscall.S_IFLNK:
		resp, err = r.dst.api.Symlink(ctx, &filerpb.SymlinkRequest{Parent: parent, Name: name, Target: e.SymlinkTarget, Uid: at.Uid, Gid: at.Gid})
	default:
		resp, err = r.dst.api.Create(ctx, &filerpb.CreateRequest{Parent: parent, Name: name, Mode: at.Mode, Uid: at.Uid, Gid: at.Gid,
			Rdev: at.Rdev, Exclusive: true})
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	return resp.Attr, nil
}

// createFile makes the regular file e as name in parent, content
// included, in place of old (an entry of another kind, or nil): a hard
// link to the target inode that already holds e's source inode, or a new
// file whose chunks are stored in the target cluster before its name is
// made, so the target never shows it with bytes missing (a chunk that
// cannot be read fails the event before anything is made). It returns the
// target entry, whether it was made new (it has no xattrs), and the source
// state its content is: e, or the source's present state if e's chunks
// were gone.
func (r *replicator) createFile(ctx context.Context, src string, parent uint64, name string, e *filerpb.EntryState,
	old *filerpb.Attr) (*filerpb.Attr, bool, *filerpb.EntryState, error) {
	if e.Attr.Nlink > 1 {
		if ino := r.linkedInode(ctx, e.Attr.Inode); ino != 0 {
			if err := r.removeOld(ctx, parent, name, old); err != nil {
				return nil, false, nil, err
			}
			old = nil
			resp, err := r.dst.api.Link(ctx, &filerpb.LinkRequest{Inode: ino, NewParent: parent, NewName: name})
			if err == nil {
				a, e, err := r.syncContent(ctx, src, resp.Attr, e)
				return a, false, e, err
			}
			r.log.Debug("hard link on the target failed; copying instead", "name", name, "err", err)
		}
	}
	c, err := r.prepareContent(ctx, src, e, emptyFile)
	if err != nil {
		return nil, false, nil, err
	}
	e = c.e
	if err := r.removeOld(ctx, parent, name, old); err != nil {
		return nil, false, nil, err
	}
	at := e.Attr
	resp, err := r.dst.api.Create(ctx, &filerpb.CreateRequest{Parent: parent, Name: name, Mode: at.Mode, Uid: at.Uid, Gid: at.Gid,
		Exclusive: true})
	if err != nil {
		return nil, false, nil, fmt.Errorf("create %s: %w", name, err)
	}
	a, err := r.commitContent(ctx, resp.Attr, c)
	if err != nil {
		// No empty file stays behind for the retry.
		r.unlinkIfInode(ctx, parent, name, resp.Attr.Inode)
		return nil, false, nil, err
	}
	return a, true, e, nil
}

// unlinkIfInode removes name in parent if it is still inode ino; a
// failure is only logged (the event's retry makes the file anyway).
func (r *replicator) unlinkIfInode(ctx context.Context, parent uint64, name string, ino uint64) {
	ent, err := r.dst.api.Lookup(ctx, &filerpb.LookupRequest{Parent: parent, Name: name})
	if err == nil && ent.Attr.Inode == ino {
		_, err = r.dst.api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: parent, Name: name})
	}
	if err != nil && !notFound(err) {
		r.log.Warn("filer.sync: removing a file whose content could not be committed", "name", name, "err", err)
	}
}

// learnLinkTarget finds the target's copy of the file a link event adds
// a name to, when the replicator does not know it (the file was copied
// under its one name before a restart): the event names another of the
// file's names (linked_path), and the target file there is taken as the
// copy only if it holds the source file's content (size, modification
// time, and the same inline bytes or the same chunks by ETag), since it
// may have been replaced on the target. Without it, the new name gets a
// copy of the content instead of a link.
func (r *replicator) learnLinkTarget(ctx context.Context, ev *filerpb.MetadataEvent) {
	e := ev.NewEntry
	if ev.LinkedPath == "" || e.GetAttr().GetNlink() < 2 || r.linkedInode(ctx, e.Attr.Inode) != 0 {
		return
	}
	lp, ok := r.mapPath(ev.LinkedPath)
	if !ok {
		return
	}
	a, err := r.dst.lookup(ctx, lp)
	if err != nil || a.Mode&syscall.S_IFMT != syscall.S_IFREG || a.Size != e.Attr.Size || a.MtimeNs != e.Attr.MtimeNs {
		return
	}
	have, err := r.dst.api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: a.Inode})
	if err != nil || have.Attr.Size != e.Attr.Size {
		return
	}
	if len(e.Chunks) == 0 {
		if len(have.Chunks) != 0 || !bytes.Equal(have.Inline, e.Inline) {
			return
		}
	} else {
		want, err := r.src.resolve(ctx, e.Chunks)
		if err != nil || len(have.Inline) != 0 || !sameChunks(have.Chunks, want) {
			return
		}
	}
	r.inodes.Add(e.Attr.Inode, a.Inode)
}

// linkKey is the target's KV record of the target inode that holds a
// hard-linked source inode's content.
func (r *replicator) linkKey(srcIno uint64) []byte {
	return fmt.Appendf(nil, "filer.sync.link.%d.%d", r.src.sig, srcIno)
}

func (r *replicator) rememberLink(ctx context.Context, srcIno, dstIno uint64) {
	if _, err := r.dst.api.KvPut(ctx, &filerpb.KvPutRequest{Key: r.linkKey(srcIno), Value: strconv.AppendUint(nil, dstIno, 10)}); err != nil {
		r.log.Warn("recording a hard link", "err", err)
	}
}

// linkedInode returns the target inode holding srcIno's content, if it
// still exists as a regular file. Files this replicator wrote lately are
// remembered in memory (the first name of a file is synced while it has
// one link); hard-linked ones in the target's KV store as well, so that
// a restart keeps them.
func (r *replicator) linkedInode(ctx context.Context, srcIno uint64) uint64 {
	ino, ok := r.inodes.Get(srcIno)
	if !ok {
		kv, err := r.dst.api.KvGet(ctx, &filerpb.KvGetRequest{Key: r.linkKey(srcIno)})
		if err != nil || !kv.Found {
			return 0
		}
		if ino, err = strconv.ParseUint(string(kv.Value), 10, 64); err != nil {
			return 0
		}
	}
	a, err := r.dst.api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: ino})
	if err != nil || a.Attr.Mode&syscall.S_IFMT != syscall.S_IFREG || a.Attr.Nlink == 0 {
		return 0
	}
	return ino
}

// setMeta sets owner, mode, times and xattrs where they differ (fresh:
// the entry was made just now and has no xattrs).
func (r *replicator) setMeta(ctx context.Context, a *filerpb.Attr, e *filerpb.EntryState, fresh bool) error {
	at := e.Attr
	if a.Uid != at.Uid || a.Gid != at.Gid {
		resp, err := r.dst.api.SetAttr(ctx, &filerpb.SetAttrRequest{Inode: a.Inode, Uid: &at.Uid, Gid: &at.Gid})
		if err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		a = resp.Attr // a chown may clear setuid and setgid
	}
	req := &filerpb.SetAttrRequest{Inode: a.Inode}
	set := false
	if a.Mode&0o7777 != at.Mode&0o7777 && at.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		m := at.Mode & 0o7777
		req.Mode, set = &m, true
	}
	if a.MtimeNs != at.MtimeNs {
		req.MtimeNs, set = &at.MtimeNs, true
	}
	if a.AtimeNs != at.AtimeNs {
		req.AtimeNs, set = &at.AtimeNs, true
	}
	if set {
		if _, err := r.dst.api.SetAttr(ctx, req); err != nil {
			return fmt.Errorf("setattr: %w", err)
		}
	}
	if fresh && len(e.Xattrs) == 0 {
		return nil
	}
	return r.syncXattrs(ctx, a.Inode, e.Xattrs)
}

func (r *replicator) syncXattrs(ctx context.Context, ino uint64, want map[string][]byte) error {
	list, err := r.dst.api.ListXattr(ctx, &filerpb.ListXattrRequest{Inode: ino})
	if err != nil {
		return fmt.Errorf("listxattr: %w", err)
	}
	for _, name := range list.Names {
		if _, ok := want[name]; !ok {
			if _, err := r.dst.api.RemoveXattr(ctx, &filerpb.RemoveXattrRequest{Inode: ino, Name: name}); err != nil && client.PosixErrno(err) != "ENODATA" {
				return fmt.Errorf("removexattr %s: %w", name, err)
			}
		}
	}
	for name, v := range want {
		if slices.Contains(list.Names, name) {
			cur, err := r.dst.api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: ino, Name: name})
			if err == nil && bytes.Equal(cur.Value, v) {
				continue
			}
		}
		if _, err := r.dst.api.SetXattr(ctx, &filerpb.SetXattrRequest{Inode: ino, Name: name, Value: v}); err != nil {
			return fmt.Errorf("setxattr %s: %w", name, err)
		}
	}
	return nil
}

// content is what a target file is to hold: the source state it comes
// from and, for chunked content, the target's chunk list, every chunk of
// it already stored in the target cluster.
type content struct {
	e      *filerpb.EntryState
	chunks []*filerpb.Chunk
	same   bool // the target file holds it already
}

// emptyFile is the content of a file made just now.
var emptyFile = &filerpb.GetChunksResponse{Attr: &filerpb.Attr{}}

// syncContent makes the existing target file a's content the source
// entry's: inline bytes, or chunks copied into the target's cluster
// (those the target already has are reused). The chunk list is committed
// only once every chunk is stored on the target. It returns the target's
// attributes after the change and the source state applied (e, or the
// source's present state if e's chunks were gone).
func (r *replicator) syncContent(ctx context.Context, src string, a *filerpb.Attr, e *filerpb.EntryState) (*filerpb.Attr, *filerpb.EntryState, error) {
	have, err := r.dst.api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: a.Inode})
	if err != nil {
		return nil, nil, fmt.Errorf("target chunks: %w", err)
	}
	// Copies the target file names are its own, whatever an earlier
	// attempt's commit answered: never deleted from here on.
	ledgerOf(ctx).spare(have.Chunks)
	c, err := r.prepareContent(ctx, src, e, have)
	if err != nil {
		return nil, nil, err
	}
	a, err = r.commitContent(ctx, have.Attr, c)
	return a, c.e, err
}

// prepareContent stores e's chunks in the target's cluster (reusing those
// the target file, whose content is have, already holds) and returns the
// content to commit. If a chunk is gone from the source (the file was
// rewritten since and its old chunks collected), the source's present
// state of the file is taken instead, once: if that too cannot be read,
// or the file is no longer there, the event fails (or is superseded),
// and a file is never committed with bytes missing.
func (r *replicator) prepareContent(ctx context.Context, src string, e *filerpb.EntryState, have *filerpb.GetChunksResponse) (content, error) {
	for refreshed := false; ; refreshed = true {
		size := e.Attr.Size
		if len(e.Chunks) == 0 {
			same := have.Attr.Size == size && len(have.Chunks) == 0 && bytes.Equal(have.Inline, e.Inline)
			return content{e: e, same: same}, nil
		}
		want, err := r.src.resolve(ctx, e.Chunks)
		if err == nil {
			if have.Attr.Size == size && len(have.Inline) == 0 && sameChunks(have.Chunks, want) {
				return content{e: e, same: true}, nil
			}
			var copied []*filerpb.Chunk
			if copied, err = r.copier.copyChunks(ctx, want, have.Chunks, ledgerOf(ctx)); err == nil {
				return content{e: e, chunks: copied}, nil
			}
		}
		if refreshed || !(errors.Is(err, client.ErrNotFound) || notFound(err)) {
			return content{}, err
		}
		if e, err = r.current(ctx, src, e.Attr.Inode); err != nil {
			return content{}, err
		}
	}
}

// commitContent commits c as the content of the target file a, unless it
// holds it already, and returns the file's attributes after.
func (r *replicator) commitContent(ctx context.Context, a *filerpb.Attr, c content) (*filerpb.Attr, error) {
	if c.same {
		return a, nil
	}
	at := c.e.Attr
	resp, err := r.dst.api.CommitChunks(ctx, &filerpb.CommitChunksRequest{Inode: a.Inode, Chunks: c.chunks, Inline: c.e.Inline,
		Size: at.Size, MtimeNs: at.MtimeNs, Replace: true})
	l := ledgerOf(ctx)
	if err != nil {
		if !commitRefused(err) {
			l.forget(c.chunks)
		}
		return nil, fmt.Errorf("commit content: %w", err)
	}
	l.committed(ctx, c.chunks)
	if len(c.chunks) > 0 {
		r.stats.bytes.Add(int64(at.Size))
	}
	return resp.Attr, nil
}

// commitRefused reports whether a failed commit surely changed nothing:
// the filer answered with a refusal, one of the codes it sends before it
// writes. Anything else (a timeout, a cancel, a lost connection, or an
// internal error, which the filer also sends for a store that failed
// after writing) may have left it done.
func commitRefused(err error) bool {
	for _, refusal := range []error{client.ErrNotFound, client.ErrInvalid, client.ErrPermission, client.ErrPrecondition,
		client.ErrNoSpace, client.ErrExists} {
		if errors.Is(err, refusal) {
			return true
		}
	}
	return false
}

// current fetches the source's present state of the file at src, if it is
// still the inode ino; errSuperseded otherwise.
func (r *replicator) current(ctx context.Context, src string, ino uint64) (*filerpb.EntryState, error) {
	a, err := r.src.lookup(ctx, src)
	if notFound(err) {
		return nil, errSuperseded
	}
	if err != nil {
		return nil, err
	}
	if a.Inode != ino {
		return nil, errSuperseded
	}
	e, err := r.sourceState(ctx, src, a)
	if notFound(err) {
		return nil, errSuperseded
	}
	return e, err
}

// sourceState reads the whole state of the source entry at p with
// attributes a: content or symlink target, and xattrs.
func (r *replicator) sourceState(ctx context.Context, p string, a *filerpb.Attr) (*filerpb.EntryState, error) {
	e := &filerpb.EntryState{Path: p, Attr: a}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		gc, err := r.src.api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: a.Inode})
		if err != nil {
			return nil, err
		}
		e.Attr, e.Chunks, e.Inline = gc.Attr, gc.Chunks, gc.Inline
	case syscall.S_IFLNK:
		rl, err := r.src.api.Readlink(ctx, &filerpb.ReadlinkRequest{Inode: a.Inode})
		if err != nil {
			return nil, err
		}
		e.SymlinkTarget = rl.Target
	}
	xl, err := r.src.api.ListXattr(ctx, &filerpb.ListXattrRequest{Inode: a.Inode})
	if err != nil {
		return nil, err
	}
	if len(xl.Names) > 0 {
		e.Xattrs = make(map[string][]byte, len(xl.Names))
	}
	for _, n := range xl.Names {
		v, err := r.src.api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: a.Inode, Name: n})
		if err != nil {
			return nil, err
		}
		e.Xattrs[n] = v.Value
	}
	return e, nil
}

// copyTree makes everything below the source directory src match on the
// target under dst, as the source has it now (a directory moved into the
// tree kept in step brings its contents). Entries that vanish on the
// source meanwhile are skipped: their own events follow.
func (r *replicator) copyTree(ctx context.Context, src, dst string) error {
	a, err := r.src.lookup(ctx, src)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	after := ""
	for {
		list, err := r.src.api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: a.Inode, After: after, Limit: 1024, WithAttrs: true})
		if notFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, c := range list.Entries {
			after = c.Name
			cs, cd := path.Join(src, c.Name), path.Join(dst, c.Name)
			if r.excluded(cs) {
				continue
			}
			e, err := r.sourceState(ctx, cs, c.Attr)
			if notFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if err := r.copyIn(ctx, cs, cd, e); err != nil && !errors.Is(err, errSuperseded) {
				return err
			}
		}
		if list.Eof || len(list.Entries) == 0 {
			return nil
		}
	}
}

// sameChunks reports whether two chunk lists hold the same bytes at the
// same places (same offsets, sizes and ETags, in the same order).
func sameChunks(a, b []*filerpb.Chunk) bool {
	return slices.EqualFunc(a, b, func(x, y *filerpb.Chunk) bool {
		return x.Offset == y.Offset && x.Size == y.Size && x.Etag == y.Etag && x.Etag != ""
	})
}
