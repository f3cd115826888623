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
	// Chunks counts the chunk references held by files' chunk lists;
	// Manifests counts those that are manifest chunks.
	Chunks, Manifests int
	// PendingDeletions counts the chunks queued for deletion.
	PendingDeletions int
	// FoldIntents counts the folds begun and not finished (manifest.go).
	FoldIntents int
	// Named is the inode count the store keeps (InodeCount), -1 if it
	// keeps none.
	Named int64
}

// Clean reports whether the check found no problem.
func (r *Report) Clean() bool { return len(r.Problems) == 0 && r.Omitted == 0 }

// String summarizes the report: the counts, then one problem per line.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d inodes (%d dirs, %d files, %d symlinks, %d special), %d entries, %d open-unlinked, %d chunks (%d manifests), %d pending deletions",
		r.Inodes, r.Dirs, r.Files, r.Symlinks, r.Specials, r.Entries, r.OpenUnlinked, r.Chunks, r.Manifests, r.PendingDeletions)
	if r.FoldIntents > 0 {
		fmt.Fprintf(&b, ", %d fold intents", r.FoldIntents)
	}
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
// read-only transaction (a consistent snapshot), like fsck, then, when
// Config.Manifests is set, the manifest invariants too. See CheckStoreWith.
func (n *Namespace) Check(ctx context.Context) (Report, error) {
	return CheckStoreWith(ctx, n.st, n.cfg.Manifests)
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
//   - no chunk (manifest chunks included) is both referenced by a file and
//     queued for deletion, and no fold intent names a blob a file uses;
//   - the inode count the store keeps is the number of named inodes;
//   - no inode number is at or above the allocator's counter;
//   - every value decodes.
//
// It reads without opening a Namespace, so it can check a store as a
// crashed filer left it, before Open frees its open-unlinked inodes. It
// returns an error only when the store fails; inconsistencies are in the
// Report. It reads no blob; CheckStoreWith also checks inside manifests.
func CheckStore(ctx context.Context, st store.Store) (Report, error) {
	return CheckStoreWith(ctx, st, nil)
}

// CheckStoreWith is CheckStore and, when r is not nil, reads the manifests
// the snapshot references or has queued for deletion and checks that:
//   - every manifest a file references can be read and lists valid chunks;
//   - a blob a file's manifest lists is not queued for deletion, not a
//     data chunk of the same file, and not listed by another manifest of
//     it (the invariant of manifest.go);
//   - a queued manifest's deletion would spare every blob a file still
//     uses (its Keep list covers them).
//
// A queued manifest that cannot be read is skipped: the GC may have
// deleted it already (it deletes a manifest's blob last).
func CheckStoreWith(ctx context.Context, st store.Store, r ManifestReader) (Report, error) {
	var rep Report
	var c checker
	err := st.View(ctx, func(tx store.Tx) error {
		rep = Report{}
		c = checker{tx: tx, r: &rep}
		return c.run()
	})
	if err != nil {
		return Report{}, fmt.Errorf("meta: check: %w", err)
	}
	if r != nil {
		if err := c.checkManifests(ctx, r); err != nil {
			return Report{}, fmt.Errorf("meta: check: %w", err)
		}
	}
	c.tx = nil
	return rep, nil
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

	manifests       map[Inode][]Chunk // the manifest chunks of each file
	data            map[Inode]map[string]bool
	queuedManifests []PendingDeletion
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
	c.manifests = map[Inode][]Chunk{}
	c.data = map[Inode]map[string]bool{}
	c.queuedManifests = nil
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
		ch, keep, err := decodeGCRecord(v)
		if err != nil {
			r.addf("pending deletion %x: undecodable: %v", k, err)
			return
		}
		r.PendingDeletions++
		c.queued[ch.FileID] = true
		if ch.IsManifest {
			c.queuedManifests = append(c.queuedManifests, PendingDeletion{Key: append([]byte(nil), k...), Chunk: ch, Keep: keep})
		}
	})
	if err != nil {
		return err
	}

	c.checkEntries()
	c.checkInodes()
	if err := c.checkData(); err != nil {
		return err
	}
	if err := c.checkFolds(); err != nil {
		return err
	}
	if err := c.checkXattrs(); err != nil {
		return err
	}
	if err := c.checkCount(); err != nil {
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
			if ch.IsManifest {
				r.Manifests++
				c.manifests[ino] = append(c.manifests[ino], ch)
			}
		}
		if len(c.manifests[ino]) > 0 {
			set := map[string]bool{}
			for _, ch := range fd.Chunks {
				if !ch.IsManifest {
					set[ch.FileID] = true
				}
			}
			c.data[ino] = set
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

// checkFolds checks the fold intents: each decodes and names a blob no
// file references (a committed fold deletes its intent).
func (c *checker) checkFolds() error {
	return c.scan(pfxFold, func(k, v []byte) {
		c.r.FoldIntents++
		fid := string(k[1:])
		if _, err := decodeInt(v); err != nil {
			c.r.addf("fold intent %q: undecodable: %v", fid, err)
		}
		if inos := c.refs[fid]; len(inos) > 0 {
			c.r.addf("fold intent %q: its blob is referenced by inode %v", fid, inos)
		}
	})
}

// checkCount checks the kept inode count against the named inodes.
func (c *checker) checkCount() error {
	c.r.Named = -1
	if _, err := c.tx.Get(metaKey(countedKey)); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	sum, err := sumCount(c.tx)
	if err != nil {
		c.r.addf("inode count: %v", err)
		return nil
	}
	c.r.Named = sum
	var want int64
	for _, a := range c.attrs {
		if a.IsDir() || a.Nlink > 0 {
			want++
		}
	}
	if sum != want {
		c.r.addf("inode count %d, but %d inodes have a name", sum, want)
	}
	return nil
}

// checkManifests checks inside the manifests the snapshot references or
// has queued (see CheckStoreWith); it reads blobs, after the snapshot.
func (c *checker) checkManifests(ctx context.Context, rd ManifestReader) error {
	r := c.r
	live := map[string]string{} // blob -> "inode I manifest M" listing it
	for _, ino := range sortedInodes(c.manifests) {
		seen := map[string]string{}
		for _, m := range c.manifests[ino] {
			inner, err := rd.ReadManifest(ctx, m.FileID)
			if err == nil {
				err = CheckManifest(inner)
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.addf("inode %d: manifest %s: %v", ino, m.FileID, err)
				continue
			}
			for _, ch := range inner {
				where := fmt.Sprintf("inode %d manifest %s", ino, m.FileID)
				switch {
				case c.queued[ch.FileID]:
					r.addf("chunk %s: listed by %s and queued for deletion", ch.FileID, where)
				case c.data[ino][ch.FileID]:
					r.addf("chunk %s: listed by %s and also a data chunk of it", ch.FileID, where)
				case seen[ch.FileID] != "" && seen[ch.FileID] != m.FileID:
					r.addf("chunk %s: listed by two manifests of inode %d (%s, %s)", ch.FileID, ino, seen[ch.FileID], m.FileID)
				}
				seen[ch.FileID] = m.FileID
				live[ch.FileID] = where
			}
		}
	}
	for _, q := range c.queuedManifests {
		inner, err := rd.ReadManifest(ctx, q.Chunk.FileID)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue // deleted already, or unreadable: nothing to judge
		}
		keep := map[string]bool{}
		for _, k := range q.Keep {
			keep[k] = true
		}
		for _, ch := range inner {
			if keep[ch.FileID] {
				continue
			}
			if inos := c.refs[ch.FileID]; len(inos) > 0 {
				r.addf("queued manifest %s would delete chunk %s, which inode %v uses", q.Chunk.FileID, ch.FileID, inos)
			} else if where := live[ch.FileID]; where != "" {
				r.addf("queued manifest %s would delete chunk %s, listed by %s", q.Chunk.FileID, ch.FileID, where)
			}
		}
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
