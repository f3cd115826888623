package meta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kelpfs/kelp/filerd/store"
)

// MaxCheckProblems caps Report.Problems; further problems are only counted
// in Report.Omitted.
const MaxCheckProblems = 100

// Report is the result of a consistency check of the namespace (Check).
type Report struct {
	// Problems describes each inconsistency found, in a stable order, at
	// most MaxCheckProblems of them.
	Problems []string
	// Omitted counts the problems left out of Problems by the cap.
	Omitted int

	// Inodes counts the stored inodes; Dirs, Files (regular), Symlinks and
	// Specials (fifos, sockets, devices) split them by type.
	Inodes, Dirs, Files, Symlinks, Specials int
	// Entries counts the directory entries.
	Entries int
	// OpenUnlinked counts the open-unlinked markers.
	OpenUnlinked int
	// Chunks counts the chunk references held by files' chunk lists.
	Chunks int
	// PendingDeletions counts the chunks queued for deletion.
	PendingDeletions int
}

// Clean reports whether the check found no problem.
func (r *Report) Clean() bool { return len(r.Problems) == 0 && r.Omitted == 0 }

// String summarizes the report: the counts, then one problem per line.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d inodes (%d dirs, %d files, %d symlinks, %d special), %d entries, %d open-unlinked, %d chunks, %d pending deletions",
		r.Inodes, r.Dirs, r.Files, r.Symlinks, r.Specials, r.Entries, r.OpenUnlinked, r.Chunks, r.PendingDeletions)
	if r.Clean() {
		b.WriteString(": clean")
		return b.String()
	}
	fmt.Fprintf(&b, ": %d problems", len(r.Problems)+r.Omitted)
	for _, p := range r.Problems {
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	if r.Omitted > 0 {
		fmt.Fprintf(&b, "\n  ... and %d more", r.Omitted)
	}
	return b.String()
}

func (r *Report) addf(format string, args ...any) {
	if len(r.Problems) >= MaxCheckProblems {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check verifies the namespace's invariants over the raw store in one
// read-only transaction (a consistent snapshot), like fsck. See CheckStore.
func (n *Namespace) Check(ctx context.Context) (Report, error) {
	return CheckStore(ctx, n.st)
}

// CheckStore verifies, in one read-only transaction over st, that:
//   - the root exists and is a directory no entry names;
//   - every directory entry lies in an existing directory and points at an
//     existing inode of the entry's type;
//   - a directory has exactly one entry, which matches the parent and name
//     it records, and nlink 2 + its subdirectories (the root too);
//   - a non-directory's nlink equals its entries, its recorded name is one
//     of them, and its back references are exactly its entries when it has
//     several names and absent otherwise;
//   - every inode is reachable from the root, or has nlink 0 and is marked
//     open-unlinked (and every marker is on such an inode);
//   - every per-inode key (data, xattr, back reference, marker) belongs to
//     an existing inode, and data only to a regular file;
//   - no chunk is both referenced by a file and queued for deletion;
//   - no inode number is at or above the allocator's counter;
//   - every value decodes.
//
// It reads without opening a Namespace, so it can check a store as a
// crashed filer left it, before Open frees its open-unlinked inodes. It
// returns an error only when the store fails; inconsistencies are in the
// Report.
func CheckStore(ctx context.Context, st store.Store) (Report, error) {
	var r Report
	err := st.View(ctx, func(tx store.Tx) error {
		r = Report{}
		c := checker{tx: tx, r: &r}
		return c.run()
	})
	if err != nil {
		return Report{}, fmt.Errorf("meta: check: %w", err)
	}
	return r, nil
}

type checkEntry struct {
	dir   Inode
	name  string
	child Inode
	typ   Type
}

type checkLink struct {
	dir  Inode
	name string
}

// checker holds one check's state; it lives for one View attempt.
type checker struct {
	tx store.Tx
	r  *Report

	attrs    map[Inode]*Attr
	entries  []checkEntry
	names    map[Inode][]checkLink // entries naming each inode
	subdirs  map[Inode]int
	backrefs map[Inode][]checkLink
	orphans  map[Inode]bool
	queued   map[string]bool
	refs     map[string][]Inode // chunk file id -> files referencing it
}

func (c *checker) scan(prefix byte, fn func(k, v []byte)) error {
	return c.tx.Scan([]byte{prefix}, nil, func(k, v []byte) (bool, error) {
		fn(k, v)
		return true, nil
	})
}

func (c *checker) run() error {
	c.attrs = map[Inode]*Attr{}
	c.names = map[Inode][]checkLink{}
	c.subdirs = map[Inode]int{}
	c.backrefs = map[Inode][]checkLink{}
	c.orphans = map[Inode]bool{}
	c.queued = map[string]bool{}
	c.refs = map[string][]Inode{}
	r := c.r

	// Inodes.
	err := c.scan(pfxInode, func(k, v []byte) {
		if len(k) != 9 {
			r.addf("malformed inode key %q", k)
			return
		}
		ino := Inode(binary.BigEndian.Uint64(k[1:]))
		a, err := decodeAttr(v)
		if err != nil {
			r.addf("inode %d: undecodable attributes: %v", ino, err)
			return
		}
		if a.Inode != ino {
			r.addf("inode %d: attributes say inode %d", ino, a.Inode)
		}
		c.attrs[ino] = &a
		r.Inodes++
		switch a.Mode & S_IFMT {
		case S_IFDIR:
			r.Dirs++
		case S_IFREG:
			r.Files++
		case S_IFLNK:
			r.Symlinks++
		default:
			r.Specials++
		}
	})
	if err != nil {
		return err
	}
	// Directory entries.
	err = c.scan(pfxDirent, func(k, v []byte) {
		if len(k) < 10 {
			r.addf("malformed entry key %q", k)
			return
		}
		dir, name := Inode(binary.BigEndian.Uint64(k[1:9])), string(k[9:])
		child, typ, err := decodeDirent(v)
		if err != nil {
			r.addf("entry %d/%q: undecodable: %v", dir, name, err)
			return
		}
		r.Entries++
		c.entries = append(c.entries, checkEntry{dir, name, child, typ})
	})
	if err != nil {
		return err
	}
	// Back references, open-unlinked markers, the deletion queue.
	err = c.scan(pfxBackref, func(k, _ []byte) {
		if len(k) < 18 {
			r.addf("malformed back reference key %q", k)
			return
		}
		ino := Inode(binary.BigEndian.Uint64(k[1:9]))
		c.backrefs[ino] = append(c.backrefs[ino], checkLink{Inode(binary.BigEndian.Uint64(k[9:17])), string(k[17:])})
	})
	if err != nil {
		return err
	}
	err = c.scan(pfxOrphan, func(k, _ []byte) {
		if len(k) != 9 {
			r.addf("malformed open-unlinked key %q", k)
			return
		}
		c.orphans[Inode(binary.BigEndian.Uint64(k[1:]))] = true
		r.OpenUnlinked++
	})
	if err != nil {
		return err
	}
	err = c.scan(pfxGC, func(k, v []byte) {
		ch, err := decodeChunk(v)
		if err != nil {
			r.addf("pending deletion %x: undecodable: %v", k, err)
			return
		}
		r.PendingDeletions++
		c.queued[ch.FileID] = true
	})
	if err != nil {
		return err
	}

	c.checkEntries()
	c.checkInodes()
	if err := c.checkData(); err != nil {
		return err
	}
	if err := c.checkXattrs(); err != nil {
		return err
	}
	return c.checkAllocator()
}

func (c *checker) checkEntries() {
	r := c.r
	for _, e := range c.entries {
		d, ok := c.attrs[e.dir]
		switch {
		case !ok:
			r.addf("entry %d/%q: directory %d does not exist", e.dir, e.name, e.dir)
		case !d.IsDir():
			r.addf("entry %d/%q: inode %d is not a directory (mode %o)", e.dir, e.name, e.dir, d.Mode)
		}
		a, ok := c.attrs[e.child]
		if !ok {
			r.addf("entry %d/%q: dangling, inode %d does not exist", e.dir, e.name, e.child)
			continue
		}
		if e.child == RootInode {
			r.addf("entry %d/%q names the root", e.dir, e.name)
		}
		if TypeOf(a.Mode) != e.typ {
			r.addf("entry %d/%q: type %d, inode %d has mode %o", e.dir, e.name, e.typ, e.child, a.Mode)
		}
		c.names[e.child] = append(c.names[e.child], checkLink{e.dir, e.name})
		if a.IsDir() {
			c.subdirs[e.dir]++
		}
	}
}

func (c *checker) checkInodes() {
	r := c.r
	root, ok := c.attrs[RootInode]
	switch {
	case !ok:
		r.addf("root inode %d does not exist", RootInode)
	case !root.IsDir():
		r.addf("root inode %d is not a directory (mode %o)", RootInode, root.Mode)
	}
	reach := c.reachable()
	for _, ino := range sortedInodes(c.attrs) {
		a := c.attrs[ino]
		names := c.names[ino]
		switch {
		case ino == RootInode:
			if want := uint32(2 + c.subdirs[ino]); a.Nlink != want {
				r.addf("root: nlink %d, want %d (2 + %d subdirectories)", a.Nlink, want, c.subdirs[ino])
			}
		case a.IsDir():
			if want := uint32(2 + c.subdirs[ino]); a.Nlink != want {
				r.addf("directory %d: nlink %d, want %d (2 + %d subdirectories)", ino, a.Nlink, want, c.subdirs[ino])
			}
			if len(names) != 1 {
				r.addf("directory %d: %d entries name it %v, want 1", ino, len(names), names)
			} else if names[0].dir != a.Parent || names[0].name != a.Name {
				r.addf("directory %d: records name %d/%q, its entry is %d/%q", ino, a.Parent, a.Name, names[0].dir, names[0].name)
			}
			if c.orphans[ino] {
				r.addf("directory %d: marked open-unlinked", ino)
			}
		default:
			if a.Nlink != uint32(len(names)) {
				r.addf("inode %d: nlink %d, but %d entries name it %v", ino, a.Nlink, len(names), names)
			}
			if len(names) > 0 && !containsLink(names, checkLink{a.Parent, a.Name}) {
				r.addf("inode %d: records name %d/%q, not one of its entries %v", ino, a.Parent, a.Name, names)
			}
			c.checkBackrefs(ino, names)
			if len(names) == 0 && !c.orphans[ino] {
				r.addf("inode %d: no entry names it and it is not marked open-unlinked", ino)
			}
			if len(names) > 0 && c.orphans[ino] {
				r.addf("inode %d: marked open-unlinked but %d entries name it", ino, len(names))
			}
		}
		if !reach[ino] && !c.orphans[ino] && len(names) > 0 {
			r.addf("inode %d: not reachable from the root", ino)
		}
	}
	for _, ino := range sortedInodes(c.orphans) {
		if _, ok := c.attrs[ino]; !ok {
			r.addf("open-unlinked marker of missing inode %d", ino)
		}
	}
	for _, ino := range sortedInodes(c.backrefs) {
		if _, ok := c.attrs[ino]; !ok {
			r.addf("back references of missing inode %d: %v", ino, c.backrefs[ino])
		}
	}
}

// checkBackrefs checks the back references of the non-directory ino: its
// entries when it has several names, none otherwise.
func (c *checker) checkBackrefs(ino Inode, names []checkLink) {
	refs := c.backrefs[ino]
	if len(names) <= 1 {
		if len(refs) > 0 {
			c.r.addf("inode %d: %d names but back references %v", ino, len(names), refs)
		}
		return
	}
	a, b := fmtLinks(names), fmtLinks(refs)
	if a != b {
		c.r.addf("inode %d: entries %s, back references %s", ino, a, b)
	}
}

// reachable returns the inodes reachable from the root through entries.
func (c *checker) reachable() map[Inode]bool {
	children := map[Inode][]Inode{}
	for _, e := range c.entries {
		children[e.dir] = append(children[e.dir], e.child)
	}
	reach := map[Inode]bool{RootInode: true}
	queue := []Inode{RootInode}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, ch := range children[d] {
			if !reach[ch] {
				reach[ch] = true
				queue = append(queue, ch)
			}
		}
	}
	return reach
}

func (c *checker) checkData() error {
	r := c.r
	err := c.scan(pfxData, func(k, v []byte) {
		if len(k) != 9 {
			r.addf("malformed data key %q", k)
			return
		}
		ino := Inode(binary.BigEndian.Uint64(k[1:]))
		a, ok := c.attrs[ino]
		switch {
		case !ok:
			r.addf("data of missing inode %d", ino)
		case !a.IsRegular():
			r.addf("data of inode %d, which is not a regular file (mode %o)", ino, a.Mode)
		}
		fd, err := decodeData(v)
		if err != nil {
			r.addf("data of inode %d: undecodable: %v", ino, err)
			return
		}
		for _, ch := range fd.Chunks {
			r.Chunks++
			c.refs[ch.FileID] = append(c.refs[ch.FileID], ino)
		}
	})
	if err != nil {
		return err
	}
	fids := make([]string, 0, len(c.refs))
	for fid := range c.refs {
		if c.queued[fid] {
			fids = append(fids, fid)
		}
	}
	sort.Strings(fids)
	for _, fid := range fids {
		r.addf("chunk %s: referenced by inode %v and queued for deletion", fid, c.refs[fid])
	}
	return nil
}

func (c *checker) checkXattrs() error {
	missing := map[Inode]int{}
	err := c.scan(pfxXattr, func(k, _ []byte) {
		if len(k) < 10 {
			c.r.addf("malformed xattr key %q", k)
			return
		}
		ino := Inode(binary.BigEndian.Uint64(k[1:9]))
		if _, ok := c.attrs[ino]; !ok {
			missing[ino]++
		}
	})
	if err != nil {
		return err
	}
	for _, ino := range sortedInodes(missing) {
		c.r.addf("%d xattrs of missing inode %d", missing[ino], ino)
	}
	return nil
}

// checkAllocator checks that no inode was handed out at or above the
// allocator's counter (a later allocation would reuse its number).
func (c *checker) checkAllocator() error {
	v, err := c.tx.Get(metaKey("nextino"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		for ino := range c.attrs {
			if ino != RootInode {
				c.r.addf("inode %d exists but no inode counter is stored", ino)
				break
			}
		}
		return nil
	case err != nil:
		return err
	case len(v) != 8:
		c.r.addf("inode counter: %d bytes, want 8", len(v))
		return nil
	}
	next := Inode(binary.BigEndian.Uint64(v))
	for _, ino := range sortedInodes(c.attrs) {
		if ino >= next {
			c.r.addf("inode %d: at or above the inode counter %d", ino, next)
		}
	}
	return nil
}

func sortedInodes[V any](m map[Inode]V) []Inode {
	out := make([]Inode, 0, len(m))
	for ino := range m {
		out = append(out, ino)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func containsLink(ls []checkLink, l checkLink) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

func fmtLinks(ls []checkLink) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = fmt.Sprintf("%d/%q", l.dir, l.name)
	}
	sort.Strings(s)
	return "[" + strings.Join(s, " ") + "]"
}
