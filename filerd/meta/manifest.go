package meta

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/kelpfs/kelp/filerd/store"
	"github.com/kelpfs/kelp/needle"
)

// Manifest chunks.
//
// A file whose list holds very many chunks has runs of them folded into
// manifest chunks: the run's chunks are written to a manifest blob (by the
// filer, which owns the blob format and the volume servers; this package
// only sees ManifestReader) and the run is replaced in the list, in its
// place, by one manifest chunk whose span covers the run and whose
// ModifiedNs is the newest of the run's.
//
// Expanding a manifest chunk puts the chunks its blob lists in its place,
// each cut to the manifest chunk's span (a truncate trims the manifest
// chunk like any other). Since the run keeps its place and its order, the
// expanded list resolves newest-wins (VisibleIntervals) to exactly the
// bytes the list had before the fold, ties between equal ModifiedNs
// included.
//
// Invariant: within one file a blob is listed in at most one manifest, and
// a blob listed in a manifest is not also a data chunk of the list. Folds
// check it (a run whose blobs the rest of the list also uses is not
// folded); appends keep it by dropping an appended chunk already folded
// (a retried append, see AppendChunks). Garbage collection relies on it:
//
//   - dropping a data chunk queues its blob unless a kept chunk uses it
//     (a kept manifest cannot list it, by the invariant);
//   - dropping a manifest chunk queues one record that deletes its blob
//     and every blob it lists, except the Keep list: the blobs of the data
//     chunks of the list (kept, or dropped in the same change and so
//     queued on their own) that the manifest may list, i.e. those at or
//     after its offset and not newer than it. A chunk in a manifest is the
//     very chunk that was folded, so a list that still uses its blob holds
//     a chunk with the same offset and time.
//
// Folding is crash-safe without leaking the blob: BeginFold records an
// intent for the manifest blob's file id before the blob is written; Fold
// swaps the run for the manifest chunk and deletes the intent in one
// transaction that first checks the run is still in the list; a fold that
// fails or never finishes leaves its intent, which AbandonFold or
// ExpireFolds turn into a plain deletion of the blob (not of the chunks it
// lists, which the file still holds). A Fold and an expiry exclude each
// other through the intent key.
//
// A fold changes no byte, attribute or generation of the file and logs no
// event: it is bookkeeping. Later events carry manifest chunks as stored.

// ErrFoldConflict reports a Fold whose run is no longer in the file's list
// (a write or truncate came in between), whose file is gone, or whose
// intent was expired: the caller abandons the fold and may try again.
var ErrFoldConflict = errors.New("meta: fold conflict")

// maxManifestChunks bounds the chunks one manifest may list.
const maxManifestChunks = 1 << 20

// ManifestChunk returns the manifest chunk standing for run (data chunks,
// at least one) stored as blob fid: its span covers the run and its
// ModifiedNs is the newest of the run's.
func ManifestChunk(fid string, run []Chunk) Chunk {
	m := Chunk{FileID: fid, IsManifest: true}
	if len(run) == 0 {
		return m
	}
	start, end := run[0].Offset, run[0].Offset+run[0].Size
	m.ModifiedNs = run[0].ModifiedNs
	for _, c := range run[1:] {
		start = min(start, c.Offset)
		end = max(end, c.Offset+c.Size)
		m.ModifiedNs = max(m.ModifiedNs, c.ModifiedNs)
	}
	m.Offset, m.Size = start, end-start
	return m
}

// CheckManifest validates the chunks a manifest blob lists (as a reader
// decoded them): at least one, none a manifest, each with a file id and a
// positive size at a non-negative offset. A reader calls it on what it
// decodes; ExpandChunks checks the spans against the manifest chunk.
func CheckManifest(inner []Chunk) error {
	if len(inner) == 0 || len(inner) > maxManifestChunks {
		return fmt.Errorf("manifest of %d chunks: %w", len(inner), ErrCorrupt)
	}
	for _, c := range inner {
		if c.IsManifest || c.FileID == "" || c.Size <= 0 || c.Offset < 0 {
			return fmt.Errorf("manifest lists chunk %+v: %w", c, ErrCorrupt)
		}
	}
	return nil
}

// ExpandChunks returns cs with every manifest chunk replaced, in its
// place, by the chunks its blob lists (read through r), cut to its span.
// A list without manifests is returned as it is (r may then be nil).
func ExpandChunks(ctx context.Context, cs []Chunk, r ManifestReader) ([]Chunk, error) {
	has := false
	for i := range cs {
		if cs[i].IsManifest {
			has = true
			break
		}
	}
	if !has {
		return cs, nil
	}
	if r == nil {
		return nil, fmt.Errorf("expand manifests: no manifest reader: %w", ErrInvalid)
	}
	out := make([]Chunk, 0, len(cs))
	for _, c := range cs {
		if !c.IsManifest {
			out = append(out, c)
			continue
		}
		inner, err := r.ReadManifest(ctx, c.FileID)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", c.FileID, err)
		}
		if out, err = appendExpanded(out, c, inner); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// appendExpanded appends manifest chunk m's chunks inner, cut to m's span.
func appendExpanded(out []Chunk, m Chunk, inner []Chunk) ([]Chunk, error) {
	if err := CheckManifest(inner); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.FileID, err)
	}
	end := m.Offset + m.Size
	for _, c := range inner {
		if c.Offset < m.Offset || c.ModifiedNs > m.ModifiedNs {
			return nil, fmt.Errorf("manifest %s lists chunk %+v outside its span or newer than it: %w", m.FileID, c, ErrCorrupt)
		}
		if c.Offset >= end {
			continue
		}
		if c.Offset+c.Size > end {
			c.Size = end - c.Offset
		}
		out = append(out, c)
	}
	return out, nil
}

// dataChunks counts the chunks of cs that are not manifests.
func dataChunks(cs []Chunk) int {
	n := 0
	for i := range cs {
		if !cs[i].IsManifest {
			n++
		}
	}
	return n
}

// compactChunks drops the chunks that no byte of the expanded list comes
// from and returns the kept ones (in their order) and the dropped ones. It
// never reads a manifest, so it judges conservatively:
//
//   - a data chunk is dropped when the other data chunks hide all of it
//     (adding the chunks of manifests can only hide it more);
//   - a manifest chunk is dropped when data chunks that beat every chunk
//     it may list cover its whole span: newer than it, or as new and later
//     in the list (its chunks are no newer than it and stand in its place).
//
// A data chunk hidden only by chunks inside manifests, and the hidden
// chunks inside a manifest that stays, are kept until their manifest goes.
func compactChunks(chunks []Chunk) (kept, dropped []Chunk) {
	var data []int // positions of the data chunks
	for i := range chunks {
		if !chunks[i].IsManifest {
			data = append(data, i)
		}
	}
	ivs := needle.VisibleIntervals(len(data), func(k int) needle.ChunkSpan {
		c := &chunks[data[k]]
		return needle.ChunkSpan{Offset: c.Offset, Size: c.Size, ModifiedNs: c.ModifiedNs}
	})
	used := make([]bool, len(chunks))
	for _, iv := range ivs {
		used[data[iv.Index]] = true
	}
	for i := range chunks {
		if chunks[i].IsManifest {
			used[i] = !manifestHidden(chunks, i, data, ivs)
		}
	}
	for i, c := range chunks {
		if used[i] {
			kept = append(kept, c)
		} else {
			dropped = append(dropped, c)
		}
	}
	return kept, dropped
}

// manifestHidden reports whether the visible intervals of the data chunks
// (ivs, over positions data of chunks) cover manifest chunk i's whole span
// with chunks that beat it.
func manifestHidden(chunks []Chunk, i int, data []int, ivs []needle.Interval) bool {
	m := &chunks[i]
	pos, end := m.Offset, m.Offset+m.Size
	if end <= pos {
		return true
	}
	k := sort.Search(len(ivs), func(k int) bool { return ivs[k].Stop > pos })
	for ; k < len(ivs) && pos < end; k++ {
		iv := ivs[k]
		if iv.Start > pos {
			return false // a hole in the data chunks: the manifest may show there
		}
		j := data[iv.Index]
		w := &chunks[j]
		if w.ModifiedNs < m.ModifiedNs || w.ModifiedNs == m.ModifiedNs && j < i {
			return false
		}
		pos = iv.Stop
	}
	return pos >= end
}

// freeDropped queues for deletion what dropped chunks free, given that
// the file keeps kept:
//
//   - a data chunk, unless a kept chunk or an earlier dropped one uses its
//     blob (each blob is queued once);
//   - a manifest chunk (once per blob, unless kept) with its Keep list:
//     the blobs of the data chunks of kept and dropped at or after its
//     offset and not newer than it (see the invariant above).
func (t *txn) freeDropped(kept, dropped []Chunk) error {
	used := make(map[string]bool, len(kept)+len(dropped))
	for _, c := range kept {
		used[c.FileID] = true
	}
	var manifests []Chunk
	for _, c := range dropped {
		if used[c.FileID] {
			continue
		}
		used[c.FileID] = true
		if c.IsManifest {
			manifests = append(manifests, c)
			continue
		}
		if err := t.queueDeletion(c, nil); err != nil {
			return err
		}
	}
	for _, m := range manifests {
		keep := map[string]bool{}
		for _, list := range [][]Chunk{kept, dropped} {
			for _, c := range list {
				if !c.IsManifest && c.Offset >= m.Offset && c.ModifiedNs <= m.ModifiedNs {
					keep[c.FileID] = true
				}
			}
		}
		if err := t.queueDeletion(m, sortedKeys(keep)); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// dropFolded returns the appended chunks minus those already listed in one
// of list's manifests (a retried append of a chunk folded since), so that
// a blob is never both in a manifest and a data chunk of the same list. A
// manifest is read only if an appended chunk could be in it: at or after
// its offset and not newer than it.
func (n *Namespace) dropFolded(ctx context.Context, list, appended []Chunk) ([]Chunk, error) {
	var manifests []Chunk
	for _, c := range list {
		if c.IsManifest {
			manifests = append(manifests, c)
		}
	}
	if len(manifests) == 0 {
		return appended, nil
	}
	listed := map[string]map[string]bool{} // manifest fid -> the blobs it lists
	out := appended[:0:0]
	for _, c := range appended {
		folded := false
		for _, m := range manifests {
			if c.Offset < m.Offset || c.ModifiedNs > m.ModifiedNs {
				continue
			}
			set, ok := listed[m.FileID]
			if !ok {
				if n.cfg.Manifests == nil {
					return nil, fmt.Errorf("chunk %s may repeat one in manifest %s, and no manifest reader is configured: %w",
						c.FileID, m.FileID, ErrInvalid)
				}
				inner, err := n.cfg.Manifests.ReadManifest(ctx, m.FileID)
				if err != nil {
					return nil, fmt.Errorf("read manifest %s: %w", m.FileID, err)
				}
				set = make(map[string]bool, len(inner))
				for _, ic := range inner {
					set[ic.FileID] = true
				}
				listed[m.FileID] = set
			}
			if set[c.FileID] {
				folded = true
				break
			}
		}
		if !folded {
			out = append(out, c)
		}
	}
	return out, nil
}

// PlanFold returns the run of chunks of regular file ino to fold next, or
// nil when there is none: when the file has more than threshold data
// chunks, the first batch consecutive data chunks (oldest first, in list
// order) none of whose blobs the rest of the list also uses. The run is a
// copy; pass it unchanged to Fold.
func (n *Namespace) PlanFold(ctx context.Context, ino Inode, threshold, batch int) ([]Chunk, error) {
	if threshold < 0 || batch < 1 {
		return nil, wrap("plan fold", fmt.Errorf("threshold %d batch %d: %w", threshold, batch, ErrInvalid))
	}
	var run []Chunk
	err := n.view(ctx, func(t *txn) error {
		run = nil
		if _, err := t.regular(ino); err != nil {
			return err
		}
		fd, err := t.data(ino)
		if err != nil {
			return err
		}
		if dataChunks(fd.Chunks) <= threshold {
			return nil
		}
		uses := map[string]int{}
		for _, c := range fd.Chunks {
			uses[c.FileID]++
		}
		start := 0
		for i, c := range fd.Chunks {
			if c.IsManifest || uses[c.FileID] > 1 {
				start = i + 1
				continue
			}
			if i+1-start == batch {
				run = append([]Chunk(nil), fd.Chunks[start:i+1]...)
				return nil
			}
		}
		return nil
	})
	return run, wrap("plan fold", err)
}

// foldKey is the intent record of a fold whose manifest blob is fid.
func foldKey(fid string) []byte { return append([]byte{pfxFold}, fid...) }

// BeginFold records the intent to fold into manifest blob fid, before the
// blob is written: until Fold commits it, the blob counts as garbage that
// AbandonFold or ExpireFolds queue for deletion.
func (n *Namespace) BeginFold(ctx context.Context, fid string) error {
	if fid == "" {
		return wrap("begin fold", fmt.Errorf("empty file id: %w", ErrInvalid))
	}
	now := n.cfg.Clock()
	return wrap("begin fold", n.st.Update(ctx, func(tx store.Tx) error {
		return tx.Set(foldKey(fid), encodeInt(now))
	}))
}

// Fold replaces run, which must still stand consecutively and unchanged in
// regular file ino's list, by manifest chunk m (ManifestChunk of the run,
// stored as a blob whose fold BeginFold recorded), and deletes the fold's
// intent, in one transaction. ErrFoldConflict if the run is no longer
// there, the rest of the list uses one of its blobs, the file is gone, or
// the intent was expired; nothing changes then.
func (n *Namespace) Fold(ctx context.Context, ino Inode, run []Chunk, m Chunk) error {
	if len(run) < 1 {
		return wrap("fold", fmt.Errorf("empty run: %w", ErrInvalid))
	}
	if err := CheckManifest(run); err != nil {
		return wrap("fold", fmt.Errorf("run: %v: %w", err, ErrInvalid))
	}
	if want := ManifestChunk(m.FileID, run); m != want || m.FileID == "" {
		return wrap("fold", fmt.Errorf("manifest chunk %+v for a run spanning %+v: %w", m, want, ErrInvalid))
	}
	err := n.update(ctx, func(t *txn) error {
		t.noHint = true
		if _, err := t.tx.Get(foldKey(m.FileID)); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("intent of manifest %s is gone: %w", m.FileID, ErrFoldConflict)
		} else if err != nil {
			return err
		}
		if _, err := t.regular(ino); err != nil {
			if isNotFound(err) {
				return fmt.Errorf("inode %d: %v: %w", ino, err, ErrFoldConflict)
			}
			return err
		}
		fd, err := t.data(ino)
		if err != nil {
			return err
		}
		j := findRun(fd.Chunks, run)
		if j < 0 {
			return fmt.Errorf("inode %d: the run is no longer in the list: %w", ino, ErrFoldConflict)
		}
		inRun := make(map[string]bool, len(run))
		for _, c := range run {
			inRun[c.FileID] = true
		}
		for i, c := range fd.Chunks {
			if (i < j || i >= j+len(run)) && (inRun[c.FileID] || c.FileID == m.FileID) {
				return fmt.Errorf("inode %d: blob %s is also used outside the run: %w", ino, c.FileID, ErrFoldConflict)
			}
		}
		list := make([]Chunk, 0, len(fd.Chunks)-len(run)+1)
		list = append(list, fd.Chunks[:j]...)
		list = append(list, m)
		list = append(list, fd.Chunks[j+len(run):]...)
		fd.Chunks = list
		if err := t.setData(ino, &fd); err != nil {
			return err
		}
		return t.tx.Delete(foldKey(m.FileID))
	})
	return wrap("fold", err)
}

// findRun returns where run stands consecutively in cs, or -1.
func findRun(cs, run []Chunk) int {
	for j := 0; j+len(run) <= len(cs); j++ {
		if cs[j] != run[0] {
			continue
		}
		match := true
		for k := 1; k < len(run); k++ {
			if cs[j+k] != run[k] {
				match = false
				break
			}
		}
		if match {
			return j
		}
	}
	return -1
}

// AbandonFold gives up the fold into manifest blob fid: if its intent is
// still there (Fold did not commit), the blob is queued for deletion (the
// blob alone: the file still holds the chunks it lists). It is safe after
// any outcome of Fold, an ambiguous one included.
func (n *Namespace) AbandonFold(ctx context.Context, fid string) error {
	return wrap("abandon fold", n.update(ctx, func(t *txn) error {
		if _, err := t.tx.Get(foldKey(fid)); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if err := t.tx.Delete(foldKey(fid)); err != nil {
			return err
		}
		return t.queueDeletion(Chunk{FileID: fid}, nil)
	}))
}

// ExpireFolds abandons the folds begun before beforeNs (a filer that
// crashed or hung mid-fold) and returns how many it found.
func (n *Namespace) ExpireFolds(ctx context.Context, beforeNs int64) (int, error) {
	const batch = 256
	total := 0
	for {
		// Most passes find nothing: look before taking a write transaction.
		expired := false
		err := n.st.View(ctx, func(tx store.Tx) error {
			expired = false
			return tx.Scan([]byte{pfxFold}, nil, func(_, v []byte) (bool, error) {
				ts, err := decodeInt(v)
				expired = err != nil || ts < beforeNs
				return !expired, nil
			})
		})
		if err != nil || !expired {
			return total, wrap("expire folds", err)
		}
		found := 0
		err = n.update(ctx, func(t *txn) error {
			found = 0
			var fids []string
			err := t.tx.Scan([]byte{pfxFold}, nil, func(k, v []byte) (bool, error) {
				ts, err := decodeInt(v)
				if err != nil || ts < beforeNs {
					fids = append(fids, string(k[1:]))
				}
				return len(fids) < batch, nil
			})
			if err != nil {
				return err
			}
			for _, fid := range fids {
				if err := t.tx.Delete(foldKey(fid)); err != nil {
					return err
				}
				if err := t.queueDeletion(Chunk{FileID: fid}, nil); err != nil {
					return err
				}
			}
			found = len(fids)
			return nil
		})
		if err != nil {
			return total, wrap("expire folds", err)
		}
		total += found
		if found < batch {
			return total, nil
		}
	}
}

func encodeInt(v int64) []byte {
	e := enc{}
	e.i(v)
	return e.b
}

func decodeInt(b []byte) (int64, error) {
	d := dec{b: b}
	v := d.i()
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return v, d.done("int")
}
