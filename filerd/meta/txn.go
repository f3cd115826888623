package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/kelpfs/kelp/filerd/store"
)

// txn is one attempt of one mutation: the store transaction, its
// timestamp, the attributes it read (written back by flush), and its event.
type txn struct {
	n        *Namespace
	tx       store.Tx
	ts       int64
	attrs    map[Inode]*cachedAttr
	ev       *Event
	gcSeq    uint32
	dying    []Inode // inodes this operation frees (see freeOrKeep)
	orphaned []Inode // inodes this attempt kept as open-unlinked
	freed    []Chunk // chunks queued for deletion, for the event
	hints    []Inode // files left with more than FoldThreshold data chunks
	noHint   bool    // a fold: it gives no fold hint of its own
}

type cachedAttr struct {
	a       Attr
	dirty   bool
	deleted bool
}

// attr returns the cached attributes of ino (reading them once), or
// ErrNotFound.
func (t *txn) attr(ino Inode) (*Attr, error) {
	if c, ok := t.attrs[ino]; ok {
		if c.deleted {
			return nil, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
		}
		return &c.a, nil
	}
	v, err := t.tx.Get(attrKey(ino))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	a, err := decodeAttr(v)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	c := &cachedAttr{a: a}
	t.attrs[ino] = c
	return &c.a, nil
}

// dirAttr returns the attributes of a directory; ErrNotFound if it is
// missing, ErrNotDir if it is something else.
func (t *txn) dirAttr(ino Inode) (*Attr, error) {
	a, err := t.attr(ino)
	if err != nil {
		return nil, err
	}
	if !a.IsDir() {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrNotDir)
	}
	return a, nil
}

// touch marks ino's attributes for writing back.
// Its generation goes up once per operation.
func (t *txn) touch(ino Inode) {
	c := t.attrs[ino]
	if !c.dirty {
		c.dirty = true
		c.a.Generation++
	}
}

// create caches new attributes to be written by flush.
func (t *txn) create(a Attr) *Attr {
	a.Generation = 1
	c := &cachedAttr{a: a, dirty: true}
	t.attrs[a.Inode] = c
	return &c.a
}

// remove deletes ino's attributes, xattrs and back references, and queues
// its chunks for deletion.
func (t *txn) remove(ino Inode) error {
	c, ok := t.attrs[ino]
	if !ok {
		if _, err := t.attr(ino); err != nil {
			return err
		}
		c = t.attrs[ino]
	}
	c.deleted = true
	if c.a.IsRegular() {
		fd, err := t.data(ino)
		if err != nil {
			return err
		}
		if err := t.freeDropped(nil, fd.Chunks); err != nil {
			return err
		}
		if err := t.tx.Delete(dataKey(ino)); err != nil {
			return err
		}
	}
	if err := t.deletePrefix(xattrPrefix(ino)); err != nil {
		return err
	}
	if err := t.deletePrefix(backrefPrefix(ino)); err != nil {
		return err
	}
	return t.tx.Delete(orphanKey(ino))
}

func (t *txn) deletePrefix(prefix []byte) error {
	var keys [][]byte
	err := t.tx.Scan(prefix, nil, func(k, _ []byte) (bool, error) {
		keys = append(keys, append([]byte(nil), k...))
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := t.tx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// flush writes back every changed attribute.
func (t *txn) flush() error {
	for ino, c := range t.attrs {
		switch {
		case c.deleted:
			if err := t.tx.Delete(attrKey(ino)); err != nil {
				return err
			}
		case c.dirty:
			if err := t.tx.Set(attrKey(ino), encodeAttr(&c.a)); err != nil {
				return err
			}
		}
	}
	return nil
}

// lookup returns the entry name in dir, or ErrNotFound.
func (t *txn) lookup(dir Inode, name string) (Inode, Type, error) {
	v, err := t.tx.Get(direntKey(dir, name))
	if errors.Is(err, store.ErrNotFound) {
		return 0, 0, fmt.Errorf("%q in %d: %w", name, dir, ErrNotFound)
	}
	if err != nil {
		return 0, 0, err
	}
	return decodeDirent(v)
}

func (t *txn) setEntry(dir Inode, name string, ino Inode, typ Type) error {
	return t.tx.Set(direntKey(dir, name), encodeDirent(ino, typ))
}

func (t *txn) delEntry(dir Inode, name string) error {
	return t.tx.Delete(direntKey(dir, name))
}

// empty reports whether dir has no entries.
func (t *txn) empty(dir Inode) (bool, error) {
	empty := true
	err := t.tx.Scan(dirPrefix(dir), nil, func(_, _ []byte) (bool, error) {
		empty = false
		return false, nil
	})
	return empty, err
}

// data returns a regular file's content record (empty if none).
func (t *txn) data(ino Inode) (fileData, error) {
	v, err := t.tx.Get(dataKey(ino))
	if errors.Is(err, store.ErrNotFound) {
		return fileData{}, nil
	}
	if err != nil {
		return fileData{}, err
	}
	fd, err := decodeData(v)
	if err != nil {
		return fileData{}, fmt.Errorf("inode %d: %w", ino, err)
	}
	return fd, nil
}

// setData stores a file's content record (deleting an empty one) and
// notes a fold hint when the chunk list grew past Config.FoldThreshold.
func (t *txn) setData(ino Inode, fd *fileData) error {
	if len(fd.Chunks) == 0 && len(fd.Inline) == 0 {
		return t.tx.Delete(dataKey(ino))
	}
	if th := t.n.cfg.FoldThreshold; th > 0 && !t.noHint && len(fd.Chunks) > th && dataChunks(fd.Chunks) > th {
		t.hints = append(t.hints, ino)
	}
	return t.tx.Set(dataKey(ino), encodeData(fd))
}

// queueDeletion adds one record to the GC queue (keep: see
// PendingDeletion) and the chunk to the event's freed list.
func (t *txn) queueDeletion(c Chunk, keep []string) error {
	if c.FileID == "" {
		return nil
	}
	t.gcSeq++
	if err := t.tx.Set(gcKey(t.ts, t.gcSeq), encodeGCRecord(&c, keep)); err != nil {
		return err
	}
	t.freed = append(t.freed, c)
	return nil
}

// path returns the path of ino, walking its recorded parents up to the root.
func (t *txn) path(ino Inode) (string, error) {
	var parts []string
	for i := 0; ino != RootInode; i++ {
		if i > 4096 {
			return "", fmt.Errorf("path of %d: %w", ino, ErrCorrupt)
		}
		a, err := t.attr(ino)
		if err != nil {
			return "", err
		}
		parts = append(parts, a.Name)
		ino = a.Parent
	}
	if len(parts) == 0 {
		return "/", nil
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(parts[i])
	}
	return b.String(), nil
}

// childPath returns the path of name in dir.
func (t *txn) childPath(dir Inode, name string) (string, error) {
	p, err := t.path(dir)
	if err != nil {
		return "", err
	}
	if p == "/" {
		return "/" + name, nil
	}
	return p + "/" + name, nil
}

// state captures ino for an event: attributes, content and xattrs.
func (t *txn) state(ino Inode) (*EntryState, error) {
	s, err := t.attrState(ino)
	if err != nil {
		return nil, err
	}
	a := &s.Attr
	if a.IsRegular() {
		fd, err := t.data(ino)
		if err != nil {
			return nil, err
		}
		s.Chunks, s.Inline = fd.Chunks, fd.Inline
	}
	err = t.tx.Scan(xattrPrefix(ino), nil, func(k, v []byte) (bool, error) {
		if s.Xattrs == nil {
			s.Xattrs = make(map[string][]byte)
		}
		s.Xattrs[string(k[9:])] = append([]byte(nil), v...)
		return true, nil
	})
	return s, err
}

// attrState is the state of an entry that went away (a delete, what a
// rename replaced): its attributes (a symlink's target among them) only.
// Subscribers need no more of it, and leaving content and xattrs out
// spares a read and keeps a 4 KiB inline file's bytes out of the log.
func (t *txn) attrState(ino Inode) (*EntryState, error) {
	a, err := t.attr(ino)
	if err != nil {
		return nil, err
	}
	return &EntryState{Attr: *a}, nil
}

// dropLink removes one name (dir, name) of the non-directory a: nlink goes
// down; at zero the inode is freed, or kept as open-unlinked while the
// filer holds handles on it.
func (t *txn) dropLink(a *Attr, dir Inode, name string) error {
	if a.Nlink > 0 {
		a.Nlink--
	}
	a.Ctime = t.ts
	t.touch(a.Inode)
	if a.Nlink == 0 {
		if err := t.countInode(dir, -1); err != nil {
			return err
		}
		if t.freeOrKeep(a.Inode) {
			return t.remove(a.Inode)
		}
		t.orphaned = append(t.orphaned, a.Inode)
		if err := t.deletePrefix(backrefPrefix(a.Inode)); err != nil {
			return err
		}
		return t.tx.Set(orphanKey(a.Inode), nil)
	}
	if err := t.tx.Delete(backrefKey(a.Inode, dir, name)); err != nil {
		return err
	}
	if a.Parent == dir && a.Name == name {
		// The recorded name went away: take another one.
		err := t.tx.Scan(backrefPrefix(a.Inode), nil, func(k, _ []byte) (bool, error) {
			if len(k) >= 17 {
				a.Parent = Inode(binary.BigEndian.Uint64(k[9:17]))
				a.Name = string(k[17:])
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	if a.Nlink == 1 {
		return t.deletePrefix(backrefPrefix(a.Inode))
	}
	return nil
}

// addLink records a new name (dir, name) of the non-directory a.
func (t *txn) addLink(a *Attr, dir Inode, name string) error {
	if a.Nlink == 1 {
		if err := t.tx.Set(backrefKey(a.Inode, a.Parent, a.Name), nil); err != nil {
			return err
		}
	}
	a.Nlink++
	a.Ctime = t.ts
	t.touch(a.Inode)
	return t.tx.Set(backrefKey(a.Inode, dir, name), nil)
}

// moveName renames one name of a from (odir, oname) to (ndir, nname).
func (t *txn) moveName(a *Attr, odir Inode, oname string, ndir Inode, nname string) error {
	if !a.IsDir() && a.Nlink > 1 {
		if err := t.tx.Delete(backrefKey(a.Inode, odir, oname)); err != nil {
			return err
		}
		if err := t.tx.Set(backrefKey(a.Inode, ndir, nname), nil); err != nil {
			return err
		}
	}
	if a.IsDir() || (a.Parent == odir && a.Name == oname) {
		a.Parent, a.Name = ndir, nname
	}
	a.Ctime = t.ts
	t.touch(a.Inode)
	return nil
}

// checkName validates a name of a new or existing entry.
func (n *Namespace) checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	case len(name) > n.cfg.MaxNameLen:
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	}
	return nil
}
