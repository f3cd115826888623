package meta

import (
	"context"
	"fmt"
	"strings"
)

// MaxSymlinkFollows is how many symlinks Resolve follows before ErrLoop
// (Linux's limit).
const MaxSymlinkFollows = 40

// Resolve returns the attributes at an absolute slash-separated path,
// following symlinks in the directories along it (and the last component
// too with followLast); "." and ".." are resolved, empty components
// ignored. It is for the edges (HTTP API, events); the mount resolves
// names one Lookup at a time.
func (n *Namespace) Resolve(ctx context.Context, path string, followLast bool) (Attr, error) {
	var out Attr
	err := n.view(ctx, func(t *txn) error {
		a, err := t.resolve(RootInode, path, followLast, new(int))
		out = a
		return err
	})
	return out, wrap("resolve", err)
}

func (t *txn) resolve(start Inode, path string, followLast bool, follows *int) (Attr, error) {
	if strings.HasPrefix(path, "/") {
		start = RootInode
	}
	cur, err := t.dirAttr(start)
	if err != nil {
		return Attr{}, err
	}
	parts := strings.Split(path, "/")
	for i, p := range parts {
		last := true
		for _, q := range parts[i+1:] {
			if q != "" && q != "." {
				last = false
				break
			}
		}
		switch p {
		case "", ".":
			continue
		case "..":
			if cur, err = t.attr(cur.Parent); err != nil {
				return Attr{}, err
			}
			continue
		}
		if !cur.IsDir() {
			return Attr{}, fmt.Errorf("%q: %w", p, ErrNotDir)
		}
		if err := t.n.checkName(p); err != nil {
			return Attr{}, err
		}
		ino, _, err := t.lookup(cur.Inode, p)
		if err != nil {
			return Attr{}, err
		}
		next, err := t.attr(ino)
		if err != nil {
			return Attr{}, err
		}
		if next.Mode&S_IFMT == S_IFLNK && (!last || followLast) {
			*follows++
			if *follows > MaxSymlinkFollows {
				return Attr{}, fmt.Errorf("%q: %w", path, ErrLoop)
			}
			r, err := t.resolve(cur.Inode, next.Target, true, follows)
			if err != nil {
				return Attr{}, err
			}
			next = &r
		}
		cur = next
	}
	return *cur, nil
}
