package meta

import (
	"context"
	"fmt"
)

// ReadDir returns up to limit entries of dir (all if limit <= 0) whose
// names sort after after ("" starts at the beginning), in name order. The
// last name returned is the cookie to resume from: entries added or
// removed meanwhile never make a resumed listing skip or repeat others.
// "." and ".." are not listed.
func (n *Namespace) ReadDir(ctx context.Context, dir Inode, after string, limit int) ([]Entry, error) {
	var out []Entry
	err := n.view(ctx, func(t *txn) error {
		out = out[:0]
		if _, err := t.dirAttr(dir); err != nil {
			return err
		}
		prefix := dirPrefix(dir)
		start := prefix
		if after != "" {
			start = append(direntKey(dir, after), 0)
		}
		return t.tx.Scan(prefix, start, func(k, v []byte) (bool, error) {
			ino, typ, err := decodeDirent(v)
			if err != nil {
				return false, fmt.Errorf("entry %q: %w", k[9:], err)
			}
			out = append(out, Entry{Name: string(k[9:]), Inode: ino, Type: typ})
			return limit <= 0 || len(out) < limit, nil
		})
	})
	return out, wrap("readdir", err)
}

// Path returns a path of ino ("/" for the root): a directory's only one,
// or one of a file's names.
func (n *Namespace) Path(ctx context.Context, ino Inode) (string, error) {
	var p string
	err := n.view(ctx, func(t *txn) error {
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		if a.Nlink == 0 && !a.IsDir() {
			return fmt.Errorf("inode %d is unlinked: %w", ino, ErrNotFound)
		}
		p, err = t.path(ino)
		return err
	})
	return p, wrap("path", err)
}

// EntryAttr is a directory entry with its inode's attributes.
type EntryAttr struct {
	Entry
	Attr Attr
}

// ReadDirPlus is ReadDir returning the attributes too, read from the same
// snapshot (for listings and READDIRPLUS).
func (n *Namespace) ReadDirPlus(ctx context.Context, dir Inode, after string, limit int) ([]EntryAttr, error) {
	var out []EntryAttr
	err := n.view(ctx, func(t *txn) error {
		out = out[:0]
		if _, err := t.dirAttr(dir); err != nil {
			return err
		}
		prefix := dirPrefix(dir)
		start := prefix
		if after != "" {
			start = append(direntKey(dir, after), 0)
		}
		var es []Entry
		err := t.tx.Scan(prefix, start, func(k, v []byte) (bool, error) {
			ino, typ, err := decodeDirent(v)
			if err != nil {
				return false, fmt.Errorf("entry %q: %w", k[9:], err)
			}
			es = append(es, Entry{Name: string(k[9:]), Inode: ino, Type: typ})
			return limit <= 0 || len(es) < limit, nil
		})
		if err != nil {
			return err
		}
		for _, e := range es {
			a, err := t.attr(e.Inode)
			if err != nil {
				return fmt.Errorf("entry %q: %w", e.Name, err)
			}
			out = append(out, EntryAttr{Entry: e, Attr: *a})
		}
		return nil
	})
	return out, wrap("readdirplus", err)
}
