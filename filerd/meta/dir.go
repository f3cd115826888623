package meta

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
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
		attrs, err := t.attrsOf(es)
		if err != nil {
			return err
		}
		for i, e := range es {
			out = append(out, EntryAttr{Entry: e, Attr: *attrs[i]})
		}
		return nil
	})
	return out, wrap("readdirplus", err)
}

// Reading many inodes' attributes: files made together have neighbouring
// inode numbers, and one scan over a run of them costs far less than a
// point lookup each, which searches every level of the store (1024
// attributes in badger: ~0.4 ms scanned, ~3.6 ms looked up one by one).
const (
	// scanGap is the widest gap between two inode numbers one scan
	// steps over: the unrelated inodes in between are read and skipped.
	scanGap = 8
	// scanRun is the fewest inodes a scan is started for.
	scanRun = 16
)

// attrsOf returns the attributes of es's inodes, in es's order: runs of
// close inode numbers in one scan each, the others one by one.
func (t *txn) attrsOf(es []Entry) ([]*Attr, error) {
	out := make([]*Attr, len(es))
	byIno := make([]int, len(es))
	for i := range byIno {
		byIno[i] = i
	}
	slices.SortFunc(byIno, func(a, b int) int { return cmp.Compare(es[a].Inode, es[b].Inode) })
	for i := 0; i < len(byIno); {
		j := i + 1
		for j < len(byIno) && es[byIno[j]].Inode-es[byIno[j-1]].Inode <= scanGap {
			j++
		}
		if j-i >= scanRun {
			if err := t.scanAttrs(es, byIno[i:j], out); err != nil {
				return nil, err
			}
		}
		for _, k := range byIno[i:j] {
			if out[k] != nil {
				continue
			}
			// Not scanned, or not found by the scan: the lookup
			// reports a missing inode as such.
			a, err := t.attr(es[k].Inode)
			if err != nil {
				return nil, fmt.Errorf("entry %q: %w", es[k].Name, err)
			}
			out[k] = a
		}
		i = j
	}
	return out, nil
}

// scanAttrs fills out for the entries run names (indexes into es, sorted by
// inode) from one scan of their inodes' range, caching them in t as attr
// does; what this transaction has already read or written wins.
func (t *txn) scanAttrs(es []Entry, run []int, out []*Attr) error {
	last := es[run[len(run)-1]].Inode
	j := 0
	return t.tx.Scan([]byte{pfxInode}, attrKey(es[run[0]].Inode), func(k, v []byte) (bool, error) {
		if len(k) != 9 {
			return true, nil
		}
		ino := Inode(binary.BigEndian.Uint64(k[1:]))
		for j < len(run) && es[run[j]].Inode < ino {
			j++ // no such inode: left to attr to report
		}
		if j < len(run) && es[run[j]].Inode == ino {
			c, ok := t.attrs[ino]
			if !ok {
				a, err := decodeAttr(v)
				if err != nil {
					return false, fmt.Errorf("entry %q: inode %d: %w", es[run[j]].Name, ino, err)
				}
				c = &cachedAttr{a: a}
				t.attrs[ino] = c
			}
			for ; j < len(run) && es[run[j]].Inode == ino; j++ {
				if !c.deleted {
					out[run[j]] = &c.a
				}
			}
		}
		return ino < last && j < len(run), nil
	})
}
