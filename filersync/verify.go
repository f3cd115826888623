package filersync

// Verify is the check behind `kelp filer.sync.verify`: it walks two
// filers' trees side by side and reports what is only in one, and what
// differs where both have an entry. It reads the namespaces through the
// filers' gRPC APIs, changes nothing and reads no chunk bytes: contents
// are compared by the ETags of the blobs each visible byte range shows.
//
// Concurrency: Verify walks up to VerifyOptions.Concurrency directories
// at once, each in its own goroutine; a walker that finds a subdirectory
// while every slot is taken walks it itself, depth first, so goroutines
// and memory stay bounded (a few pages of names per directory being
// walked) whatever the size of the tree. Every goroutine has returned
// when Verify does.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// VerifySide is one tree to compare.
type VerifySide struct {
	// Filer is the filer's gRPC API (client.FilerClient.API()).
	Filer filerpb.FilerClient
	// Path is the root of the tree ("/" or "" = the whole namespace); it
	// must be a directory. Its own attributes are not compared, only
	// what is below it.
	Path string
	// Exclude lists absolute paths in this filer's namespace left out,
	// with everything below them. A path excluded on either side is left
	// out of the comparison on both.
	Exclude []string
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Concurrency is how many directories are walked at once (each
	// compares up to verifyEntryFanout of its entries at once); 0 means 8.
	Concurrency int
	// Logger receives a progress line every 10 s and a summary; nil
	// discards them.
	Logger *slog.Logger
}

// VerifyReport is what Verify found. Paths are relative to each side's
// Path, with a leading "/" ("/dir/f"). An entry missing on one side is
// reported alone, not with everything below it (as diff -r does).
type VerifyReport struct {
	Missing  []string     // in A, not in B; sorted
	Extra    []string     // in B, not in A; sorted
	Differ   []Difference // sorted by Path; an entry's differences in a fixed order
	Compared int          // entries compared (present on both sides)
}

// Difference is one way an entry present on both sides differs.
type Difference struct {
	Path string
	// What says how, A's value first: "type dir != file", "size 10 != 12",
	// "content", "content unverifiable (chunk without ETag)",
	// `symlink target "a" != "b"`, "mode 0644 != 0600", "uid 0 != 1000",
	// "gid ...", "rdev ...", "xattr user.x missing" (on A, not on B),
	// "xattr user.x extra", "xattr user.x value", "changed during verify".
	What string
}

// Clean reports whether the trees matched: nothing missing, extra or
// different.
func (r VerifyReport) Clean() bool {
	return len(r.Missing) == 0 && len(r.Extra) == 0 && len(r.Differ) == 0
}

const (
	// verifyPage is the names asked for per ReadDir call (the filer may
	// answer fewer).
	verifyPage = 1024
	// verifyBatch is the names of one directory merged before their
	// entries are compared and its subdirectories walked.
	verifyBatch = 1024
	// verifyEntryFanout is the entries of one directory compared at once.
	verifyEntryFanout = 8
	// verifyCallTimeout bounds one filer call, so a filer that stops
	// answering fails the walk instead of hanging it.
	verifyCallTimeout = time.Minute
	// verifyPadMax is the largest size up to which inline content is
	// compared with a single chunk by computing its ETag.
	verifyPadMax = 1 << 20
	// verifyProgressEvery is the interval of the progress log line.
	verifyProgressEvery = 10 * time.Second
)

// Verify walks a's tree and b's side by side and reports the entries
// missing from b, the extra ones in b, and the differences of those in
// both: file type; for regular files the size and the content (the
// visible byte ranges after newest-wins resolution of overlapping chunks,
// each as its offset, length and the ETag and offset of the blob it
// shows; or inline bytes); symlink targets; permission bits (mode &
// 07777, not for symlinks), uid and gid; rdev of devices; extended
// attributes (names and values). Inode numbers, times and link counts are
// not compared; a hard-linked file is compared under each of its names.
//
// A name that vanishes during the walk counts as missing on that side.
// An error that stops the walk (a filer unreachable, a call timing out,
// ctx ending) is returned, wrapped with the side and path it hit, with
// the report found so far.
func Verify(ctx context.Context, a, b VerifySide, opts VerifyOptions) (VerifyReport, error) {
	ta, err := newVerifyTree("A", a)
	if err != nil {
		return VerifyReport{}, err
	}
	tb, err := newVerifyTree("B", b)
	if err != nil {
		return VerifyReport{}, err
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 8
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	v := &verifier{a: ta, b: tb, slots: make(chan struct{}, conc), log: lg, cancel: cancel}
	start := time.Now()
	lg.Info("filer.sync.verify: start", "a", ta.root, "b", tb.root, "concurrency", conc)

	if ta.excludedRoot() || tb.excludedRoot() {
		lg.Info("filer.sync.verify: the whole tree is excluded")
		return VerifyReport{}, nil
	}
	ia, err := ta.resolveRoot(ctx)
	if err != nil {
		return VerifyReport{}, err
	}
	ib, err := tb.resolveRoot(ctx)
	if err != nil {
		return VerifyReport{}, err
	}

	stop := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() { v.logProgress(stop) })
	v.slots <- struct{}{}
	if err := v.walk(ctx, "/", ia, ib); err != nil {
		v.fail(err)
	}
	<-v.slots
	v.wg.Wait()
	close(stop)
	progress.Wait()

	rep := v.report()
	v.mu.Lock()
	err = v.err
	v.mu.Unlock()
	if err != nil && parent.Err() != nil && !errors.Is(err, parent.Err()) {
		// A call cut short by ctx fails with the client's sentinel;
		// say why it was cut.
		err = fmt.Errorf("%w (%w)", err, context.Cause(parent))
	}
	level, msg := slog.LevelInfo, "filer.sync.verify: done"
	if err != nil {
		level, msg = slog.LevelError, "filer.sync.verify: stopped"
	}
	lg.Log(ctx, level, msg, "compared", rep.Compared, "missing", len(rep.Missing), "extra", len(rep.Extra),
		"differ", len(rep.Differ), "took", time.Since(start).Round(time.Millisecond), "err", err)
	return rep, err
}

// verifyTree is one side of a Verify.
type verifyTree struct {
	name    string // "A" or "B"
	api     filerpb.FilerClient
	root    string          // cleaned absolute path
	exclude map[string]bool // cleaned absolute paths
}

func newVerifyTree(name string, s VerifySide) (*verifyTree, error) {
	if s.Filer == nil {
		return nil, fmt.Errorf("filersync: verify: %w: no filer for side %s", client.ErrInvalid, name)
	}
	root, err := cleanAbs(s.Path)
	if err != nil {
		return nil, fmt.Errorf("filersync: verify: %w: side %s path: %v", client.ErrInvalid, name, err)
	}
	t := &verifyTree{name: name, api: s.Filer, root: root, exclude: make(map[string]bool, len(s.Exclude))}
	for _, x := range s.Exclude {
		p, err := cleanAbs(x)
		if err != nil || x == "" {
			return nil, fmt.Errorf("filersync: verify: %w: side %s exclude %q: not an absolute path", client.ErrInvalid, name, x)
		}
		t.exclude[p] = true
	}
	return t, nil
}

// abs is the absolute path of rel (with its leading "/") in this tree.
func (t *verifyTree) abs(rel string) string { return path.Join(t.root, rel) }

// excludedRoot reports whether an exclude covers the whole tree.
func (t *verifyTree) excludedRoot() bool {
	for x := range t.exclude {
		if under(t.root, x) {
			return true
		}
	}
	return false
}

// resolveRoot returns the inode of the tree's root directory.
func (t *verifyTree) resolveRoot(ctx context.Context) (uint64, error) {
	ino := uint64(rootInode)
	for _, name := range strings.Split(strings.Trim(t.root, "/"), "/") {
		if name == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, verifyCallTimeout)
		r, err := t.api.Lookup(cctx, &filerpb.LookupRequest{Parent: ino, Name: name})
		cancel()
		if err != nil {
			return 0, fmt.Errorf("filersync: verify: side %s path %s: %w", t.name, t.root, err)
		}
		if r.GetAttr().GetMode()&syscall.S_IFMT != syscall.S_IFDIR {
			return 0, fmt.Errorf("filersync: verify: side %s path %s: %w: %s is not a directory", t.name, t.root, client.ErrInvalid, name)
		}
		ino = r.Attr.Inode
	}
	return ino, nil
}

// verifier is one run of Verify.
type verifier struct {
	a, b   *verifyTree
	slots  chan struct{} // one per walking goroutine
	log    *slog.Logger
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // spawned walkers

	compared atomic.Int64

	mu      sync.Mutex
	missing []string
	extra   []string
	differ  []Difference
	err     error // the first error that stopped the walk
}

// fail records the first error that stops the walk and stops the others.
func (v *verifier) fail(err error) {
	v.mu.Lock()
	if v.err == nil {
		v.err = err
	}
	v.mu.Unlock()
	v.cancel(err)
}

// excluded reports whether the entry at rel is left out.
func (v *verifier) excluded(rel string) bool {
	return v.a.exclude[v.a.abs(rel)] || v.b.exclude[v.b.abs(rel)]
}

// descend walks the directory pair at rel in a new goroutine if a slot is
// free, else in this one.
func (v *verifier) descend(ctx context.Context, rel string, ia, ib uint64) error {
	select {
	case v.slots <- struct{}{}:
		v.wg.Go(func() {
			defer func() { <-v.slots }()
			if err := v.walk(ctx, rel, ia, ib); err != nil {
				v.fail(err)
			}
		})
		return nil
	default:
		return v.walk(ctx, rel, ia, ib)
	}
}

// verifyItem is one name of a directory pair, with its entry on each side
// (nil where absent).
type verifyItem struct {
	rel  string
	a, b *filerpb.DirEntry
}

// verifyResult is what comparing one item found.
type verifyResult struct {
	rel          string
	onlyA, onlyB bool     // present on one side only
	compared     bool     // present on both and compared
	diffs        []string // Difference.What, in order
	subdir       bool     // a directory on both sides: walk it
	inoA, inoB   uint64
}

// walk compares the directories ia (on A) and ib (on B) at rel, and
// everything below them, merging their sorted listings page by page.
func (v *verifier) walk(ctx context.Context, rel string, ia, ib uint64) error {
	ca := &verifyCursor{t: v.a, rel: rel, ino: ia}
	cb := &verifyCursor{t: v.b, rel: rel, ino: ib}
	for {
		items, done, err := v.merge(ctx, rel, ca, cb)
		if err != nil {
			return err
		}
		if ca.gone || cb.gone {
			// The directory vanished (or became something else) on a
			// side while it was listed: it is now on the other only.
			if !(ca.gone && cb.gone) {
				v.record([]verifyResult{{rel: rel, onlyA: cb.gone, onlyB: ca.gone}})
			}
			return nil
		}
		results, err := v.compareAll(ctx, items)
		if err != nil {
			return err
		}
		v.record(results)
		for _, r := range results {
			if !r.subdir {
				continue
			}
			if err := v.descend(ctx, r.rel, r.inoA, r.inoB); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// merge takes up to verifyBatch names from both listings in order, leaving
// out excluded ones; done says both listings are exhausted.
func (v *verifier) merge(ctx context.Context, rel string, ca, cb *verifyCursor) (items []verifyItem, done bool, err error) {
	for len(items) < verifyBatch {
		ea, err := ca.peek(ctx)
		if err != nil {
			return nil, false, err
		}
		eb, err := cb.peek(ctx)
		if err != nil {
			return nil, false, err
		}
		if ca.gone || cb.gone {
			return nil, false, nil
		}
		var it verifyItem
		switch {
		case ea == nil && eb == nil:
			return items, true, nil
		case eb == nil || ea != nil && ea.Name < eb.Name:
			it = verifyItem{a: ea}
			ca.next()
		case ea == nil || eb.Name < ea.Name:
			it = verifyItem{b: eb}
			cb.next()
		default:
			it = verifyItem{a: ea, b: eb}
			ca.next()
			cb.next()
		}
		name := it.a.GetName()
		if it.a == nil {
			name = it.b.GetName()
		}
		it.rel = path.Join(rel, name)
		if v.excluded(it.rel) {
			continue
		}
		items = append(items, it)
	}
	return items, false, nil
}

// compareAll compares the items, up to verifyEntryFanout at once, and
// returns their results in the items' order.
func (v *verifier) compareAll(ctx context.Context, items []verifyItem) ([]verifyResult, error) {
	results := make([]verifyResult, len(items))
	sem := make(chan struct{}, verifyEntryFanout)
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for i, it := range items {
		if it.a == nil || it.b == nil {
			results[i] = verifyResult{rel: it.rel, onlyA: it.b == nil, onlyB: it.a == nil}
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, context.Cause(ctx)
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r, err := v.compareEntry(ctx, it)
			if err != nil {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
				return
			}
			results[i] = r
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return results, nil
}

// record adds results to the report.
func (v *verifier) record(results []verifyResult) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range results {
		switch {
		case r.onlyA:
			v.missing = append(v.missing, r.rel)
			v.log.Debug("filer.sync.verify: missing", "path", r.rel)
		case r.onlyB:
			v.extra = append(v.extra, r.rel)
			v.log.Debug("filer.sync.verify: extra", "path", r.rel)
		}
		if r.compared {
			v.compared.Add(1)
		}
		for _, d := range r.diffs {
			v.differ = append(v.differ, Difference{Path: r.rel, What: d})
			v.log.Debug("filer.sync.verify: differs", "path", r.rel, "what", d)
		}
	}
}

// report returns the sorted report.
func (v *verifier) report() VerifyReport {
	v.mu.Lock()
	defer v.mu.Unlock()
	rep := VerifyReport{Missing: slices.Clone(v.missing), Extra: slices.Clone(v.extra),
		Differ: slices.Clone(v.differ), Compared: int(v.compared.Load())}
	slices.Sort(rep.Missing)
	slices.Sort(rep.Extra)
	slices.SortStableFunc(rep.Differ, func(x, y Difference) int { return strings.Compare(x.Path, y.Path) })
	return rep
}

func (v *verifier) logProgress(stop <-chan struct{}) {
	t := time.NewTicker(verifyProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			v.mu.Lock()
			m, e, d := len(v.missing), len(v.extra), len(v.differ)
			v.mu.Unlock()
			v.log.Info("filer.sync.verify: progress", "compared", v.compared.Load(), "missing", m, "extra", e, "differ", d)
		}
	}
}

// verifyCursor reads one directory's listing in name order, a page at a
// time. gone is set when the directory vanished or stopped being one.
type verifyCursor struct {
	t     *verifyTree
	rel   string
	ino   uint64
	page  []*filerpb.DirEntry
	after string // the last name read
	eof   bool
	gone  bool
}

// peek returns the next entry without taking it; nil at the end or when
// the directory is gone.
func (c *verifyCursor) peek(ctx context.Context) (*filerpb.DirEntry, error) {
	for len(c.page) == 0 {
		if c.eof || c.gone {
			return nil, nil
		}
		cctx, cancel := context.WithTimeout(ctx, verifyCallTimeout)
		resp, err := c.t.api.ReadDir(cctx, &filerpb.ReadDirRequest{Inode: c.ino, After: c.after, Limit: verifyPage, WithAttrs: true})
		cancel()
		if err != nil {
			if verifyGone(err) || verifyChanged(err) {
				c.gone = true
				return nil, nil
			}
			return nil, fmt.Errorf("filersync: verify: side %s: list %s: %w", c.t.name, c.t.abs(c.rel), err)
		}
		// The merge needs the filer's order (bytewise by name).
		for _, e := range resp.Entries {
			if e.Name <= c.after || e.Name == "" {
				return nil, fmt.Errorf("filersync: verify: side %s: list %s: %w: name %q after %q, out of order",
					c.t.name, c.t.abs(c.rel), client.ErrInternal, e.Name, c.after)
			}
			c.after = e.Name
		}
		c.page = resp.Entries
		c.eof = resp.Eof || len(resp.Entries) == 0
	}
	return c.page[0], nil
}

func (c *verifyCursor) next() { c.page = c.page[1:] }

// verifyGone reports whether err says an entry is no longer there,
// however the error was wrapped.
func verifyGone(err error) bool {
	switch client.PosixErrno(err) {
	case "ENOENT", "ESTALE":
		return true
	case "":
		return errors.Is(client.FromStatus("", err), client.ErrNotFound)
	}
	return false
}

// verifyChanged reports whether err says an entry is not of the type it
// was listed with (replaced meanwhile).
func verifyChanged(err error) bool {
	switch client.PosixErrno(err) {
	case "ENOTDIR", "EISDIR", "EINVAL":
		return true
	}
	return false
}

// verifyEntry is the state of one entry Verify compares.
type verifyEntry struct {
	attr    *filerpb.Attr
	content fileContent // regular files
	target  string      // symlinks
	xattrs  map[string][]byte
}

// state reads the entry e of the directory at rel. It returns nil if the
// entry is gone, and errChangedDuringVerify if it is no longer of its
// listed type.
func (t *verifyTree) state(ctx context.Context, rel string, e *filerpb.DirEntry) (*verifyEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyCallTimeout)
	defer cancel()
	st := &verifyEntry{attr: e.Attr}
	fail := func(what string, err error) (*verifyEntry, error) {
		switch {
		case verifyGone(err):
			return nil, nil
		case verifyChanged(err):
			return nil, errChangedDuringVerify
		}
		return nil, fmt.Errorf("filersync: verify: side %s: %s %s: %w", t.name, what, t.abs(rel), err)
	}
	if st.attr == nil {
		r, err := t.api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: e.Inode})
		if err != nil {
			return fail("getattr", err)
		}
		st.attr = r.Attr
	}
	switch st.attr.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		r, err := t.api.GetChunks(ctx, &filerpb.GetChunksRequest{Inode: e.Inode})
		if err != nil {
			return fail("chunks of", err)
		}
		if r.Attr != nil {
			st.attr = r.Attr
		}
		st.content = contentOf(st.attr.Size, r.Chunks, r.Inline)
	case syscall.S_IFLNK:
		r, err := t.api.Readlink(ctx, &filerpb.ReadlinkRequest{Inode: e.Inode})
		if err != nil {
			return fail("readlink", err)
		}
		st.target = r.Target
	}
	names, err := t.api.ListXattr(ctx, &filerpb.ListXattrRequest{Inode: e.Inode})
	if err != nil {
		return fail("listxattr", err)
	}
	st.xattrs = make(map[string][]byte, len(names.Names))
	for _, n := range names.Names {
		r, err := t.api.GetXattr(ctx, &filerpb.GetXattrRequest{Inode: e.Inode, Name: n})
		if client.PosixErrno(err) == "ENODATA" {
			continue // removed since the listing
		}
		if err != nil {
			return fail("getxattr "+n+" of", err)
		}
		st.xattrs[n] = r.Value
	}
	return st, nil
}

// errChangedDuringVerify marks an entry replaced by one of another type
// while it was being read.
var errChangedDuringVerify = errors.New("changed during verify")

// compareEntry compares an item present on both sides.
func (v *verifier) compareEntry(ctx context.Context, it verifyItem) (verifyResult, error) {
	r := verifyResult{rel: it.rel}
	ma, mb := entryMode(it.a), entryMode(it.b)
	if ma&syscall.S_IFMT != mb&syscall.S_IFMT {
		r.compared = true
		r.diffs = []string{fmt.Sprintf("type %s != %s", typeName(ma), typeName(mb))}
		return r, nil
	}
	sa, errA := v.a.state(ctx, it.rel, it.a)
	sb, errB := v.b.state(ctx, it.rel, it.b)
	for _, err := range []error{errA, errB} {
		if err != nil && !errors.Is(err, errChangedDuringVerify) {
			return r, err
		}
	}
	switch {
	case errA != nil || errB != nil:
		r.compared = true
		r.diffs = []string{errChangedDuringVerify.Error()}
		return r, nil
	case sa == nil && sb == nil:
		return r, nil // gone from both
	case sa == nil:
		r.onlyB = true
		return r, nil
	case sb == nil:
		r.onlyA = true
		return r, nil
	}
	r.compared = true
	r.diffs = diffEntries(sa, sb)
	if ma&syscall.S_IFMT == syscall.S_IFDIR {
		r.subdir, r.inoA, r.inoB = true, it.a.Inode, it.b.Inode
	}
	return r, nil
}

// entryMode is a listed entry's mode (its type bits at least).
func entryMode(e *filerpb.DirEntry) uint32 {
	if e.Attr != nil {
		return e.Attr.Mode
	}
	return e.Type
}

// diffEntries lists how two entries of the same type differ.
func diffEntries(a, b *verifyEntry) []string {
	var d []string
	typ := a.attr.Mode & syscall.S_IFMT
	switch typ {
	case syscall.S_IFREG:
		if a.attr.Size != b.attr.Size {
			d = append(d, fmt.Sprintf("size %d != %d", a.attr.Size, b.attr.Size))
		} else if same, why := sameContent(a.content, b.content); !same {
			d = append(d, why)
		}
	case syscall.S_IFLNK:
		if a.target != b.target {
			d = append(d, fmt.Sprintf("symlink target %q != %q", a.target, b.target))
		}
	}
	if pa, pb := a.attr.Mode&0o7777, b.attr.Mode&0o7777; pa != pb && typ != syscall.S_IFLNK {
		d = append(d, fmt.Sprintf("mode %04o != %04o", pa, pb))
	}
	if a.attr.Uid != b.attr.Uid {
		d = append(d, fmt.Sprintf("uid %d != %d", a.attr.Uid, b.attr.Uid))
	}
	if a.attr.Gid != b.attr.Gid {
		d = append(d, fmt.Sprintf("gid %d != %d", a.attr.Gid, b.attr.Gid))
	}
	if (typ == syscall.S_IFCHR || typ == syscall.S_IFBLK) && a.attr.Rdev != b.attr.Rdev {
		d = append(d, fmt.Sprintf("rdev %d != %d", a.attr.Rdev, b.attr.Rdev))
	}
	names := make([]string, 0, len(a.xattrs)+len(b.xattrs))
	for n := range a.xattrs {
		names = append(names, n)
	}
	for n := range b.xattrs {
		if _, ok := a.xattrs[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		va, inA := a.xattrs[n]
		vb, inB := b.xattrs[n]
		switch {
		case !inB:
			d = append(d, "xattr "+n+" missing")
		case !inA:
			d = append(d, "xattr "+n+" extra")
		case !bytes.Equal(va, vb):
			d = append(d, "xattr "+n+" value")
		}
	}
	return d
}

// typeName names the file type of mode.
func typeName(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return "dir"
	case syscall.S_IFREG:
		return "file"
	case syscall.S_IFLNK:
		return "symlink"
	case syscall.S_IFIFO:
		return "fifo"
	case syscall.S_IFSOCK:
		return "socket"
	case syscall.S_IFCHR:
		return "char device"
	case syscall.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %07o", mode&syscall.S_IFMT)
}

// fileContent is a regular file's content as Verify compares it: the
// visible byte ranges of its chunks, each named by what it shows, and its
// inline bytes (cut to the file's size, trailing zeros dropped: they read
// the same as the hole after them).
type fileContent struct {
	spans  []contentSpan
	inline []byte
	// unverifiable says why the content cannot be compared ("" if it can).
	unverifiable string
}

// contentSpan is the file's bytes [Start, Stop), which are the bytes of
// the blob with ETag from BlobOffset on. Since an ETag is a hash of a
// blob's bytes, equal spans on two clusters hold equal bytes.
type contentSpan struct {
	Start, Stop int64
	ETag        string
	BlobOffset  int64
}

// contentOf resolves a file's chunks newest-wins (as the mount reads
// them) into its visible spans, cut at size; adjacent spans that continue
// the same bytes are merged, so how a blob was split into chunks does
// not matter.
func contentOf(size uint64, chunks []*filerpb.Chunk, inline []byte) fileContent {
	var fc fileContent
	end := int64(min(size, 1<<62))
	ivs := needle.VisibleIntervals(len(chunks), func(i int) needle.ChunkSpan {
		c := chunks[i]
		return needle.ChunkSpan{Offset: c.Offset, Size: c.Size, ModifiedNs: c.ModifiedNs}
	})
	for _, iv := range ivs {
		start, stop := iv.Start, min(iv.Stop, end)
		if start >= stop {
			break // sorted by Start: the rest is past the end too
		}
		c := chunks[iv.Index]
		switch {
		case c.IsManifest:
			fc.unverifiable = "manifest chunk not expanded"
		case c.Etag == "":
			fc.unverifiable = "chunk without ETag"
		}
		s := contentSpan{Start: start, Stop: stop, ETag: c.Etag, BlobOffset: iv.ChunkOffset}
		if n := len(fc.spans); n > 0 {
			p := &fc.spans[n-1]
			if p.ETag == s.ETag && p.Stop == s.Start && p.BlobOffset+(p.Stop-p.Start) == s.BlobOffset {
				p.Stop = s.Stop
				continue
			}
		}
		fc.spans = append(fc.spans, s)
	}
	if int64(len(inline)) > end {
		inline = inline[:end]
	}
	fc.inline = bytes.TrimRight(inline, "\x00")
	return fc
}

// sameContent compares two contents of files of the same size; when they
// differ, why is the Difference.What to report.
func sameContent(a, b fileContent) (same bool, why string) {
	for _, c := range []fileContent{a, b} {
		if c.unverifiable != "" {
			return false, "content unverifiable (" + c.unverifiable + ")"
		}
	}
	if bytes.Equal(a.inline, b.inline) && slices.Equal(a.spans, b.spans) {
		return true, ""
	}
	// One side inline, the other chunked (a filer with another inline
	// limit, a file grown and truncated back).
	if len(a.spans) == 0 && len(b.inline) == 0 && inlineIsSpans(a.inline, b.spans) ||
		len(b.spans) == 0 && len(a.inline) == 0 && inlineIsSpans(b.inline, a.spans) {
		return true, ""
	}
	return false, "content"
}

// inlineIsSpans reports whether inline bytes (followed by zeros) are what
// spans show: no span and only zeros, or one span from offset 0 of a blob
// whose ETag is that of the inline bytes padded with zeros to the span's
// length (the blob is then exactly those bytes).
func inlineIsSpans(inline []byte, spans []contentSpan) bool {
	switch {
	case len(spans) == 0:
		return len(inline) == 0
	case len(spans) > 1:
		return false
	}
	s := spans[0]
	if s.Start != 0 || s.BlobOffset != 0 || s.Stop < int64(len(inline)) || s.Stop > verifyPadMax {
		return false
	}
	buf := make([]byte, s.Stop)
	copy(buf, inline)
	return needle.ETag(buf) == s.ETag
}
