package meta

import (
	"context"
	"fmt"
)

// Content is a regular file's attributes and content: chunks, or inline
// bytes for a small file. Bytes up to Attr.Size that no chunk (or the
// inline bytes) covers read as zeros.
type Content struct {
	Attr   Attr
	Chunks []Chunk
	Inline []byte
	// Unchanged: the file is at the generation the caller said it holds
	// (ContentSince); Chunks and Inline are left out.
	Unchanged bool
}

// GetContent returns the attributes and content of a regular file.
func (n *Namespace) GetContent(ctx context.Context, ino Inode) (Content, error) {
	return n.ContentSince(ctx, ino, 0)
}

// ContentSince is GetContent for a caller that holds the file's content
// as of generation known (0: none): if the file is still at it, only its
// attributes are read, and the answer says Unchanged. A generation moves
// with every change of the inode, so an equal one means the same content.
func (n *Namespace) ContentSince(ctx context.Context, ino Inode, known uint64) (Content, error) {
	var out Content
	err := n.view(ctx, func(t *txn) error {
		a, err := t.attr(ino)
		if err != nil {
			return err
		}
		if !a.IsRegular() {
			if a.IsDir() {
				return fmt.Errorf("inode %d: %w", ino, ErrIsDir)
			}
			return fmt.Errorf("inode %d is not a regular file: %w", ino, ErrInvalid)
		}
		if known != 0 && a.Generation == known {
			out = Content{Attr: *a, Unchanged: true}
			return nil
		}
		fd, err := t.data(ino)
		if err != nil {
			return err
		}
		out = Content{Attr: *a, Chunks: fd.Chunks, Inline: fd.Inline}
		return nil
	})
	return out, wrap("content", err)
}

// regular returns the attributes of regular file ino.
func (t *txn) regular(ino Inode) (*Attr, error) {
	a, err := t.attr(ino)
	if err != nil {
		return nil, err
	}
	if a.IsDir() {
		return nil, fmt.Errorf("inode %d: %w", ino, ErrIsDir)
	}
	if !a.IsRegular() {
		return nil, fmt.Errorf("inode %d is not a regular file: %w", ino, ErrInvalid)
	}
	return a, nil
}

// CommitRequest is one change of a regular file's content (Commit).
type CommitRequest struct {
	// Chunks are appended (newer ones win where they overlap), or replace
	// the whole list with Replace. Never manifest chunks.
	Chunks []Chunk
	// Size is, for an append, the least size the file has afterwards; for
	// a replace, its size.
	Size uint64
	// Replace makes Chunks the whole content.
	Replace bool
	// Inline, when not nil, replaces the content with these bytes kept in
	// the inode (at most Config.InlineLimit); Chunks must be empty.
	Inline []byte
	// Mtime is the file's mtime afterwards; 0 means the commit's time.
	// ctime is always the commit's time.
	Mtime int64
}

// Commit changes a regular file's content as req says, in one
// transaction with one change-log event, mtime included: AppendChunks,
// SetChunks or SetInline with an optional mtime.
func (n *Namespace) Commit(ctx context.Context, ino Inode, req CommitRequest) (Attr, error) {
	switch {
	case req.Inline != nil:
		if len(req.Chunks) > 0 {
			return Attr{}, wrap("commit", fmt.Errorf("inline content and chunks together: %w", ErrInvalid))
		}
		return n.setInline(ctx, ino, req.Inline, req.Mtime)
	case req.Replace:
		return n.setChunks(ctx, ino, req.Chunks, req.Size, req.Mtime)
	default:
		return n.appendChunks(ctx, ino, req.Chunks, req.Size, req.Mtime)
	}
}

// AppendChunks adds chunks to a file (a write), raising its size to the end
// of the last chunk and at least to minSize. Chunks the new ones hide
// completely are queued for deletion in the same transaction. A file with
// inline content must be converted with SetChunks first (ErrInvalid).
//
// An appended chunk that repeats one the file already holds (a retried
// append) keeps its blob: the blob is never queued for deletion while the
// file uses it. A repeat of a chunk folded into a manifest since is
// dropped from the append, so a blob is listed in one manifest or outside
// any; telling it apart reads the manifests it could be in (Config.Manifests:
// only those at or before its offset and not older than it).
func (n *Namespace) AppendChunks(ctx context.Context, ino Inode, chunks []Chunk, minSize uint64) (Attr, error) {
	return n.appendChunks(ctx, ino, chunks, minSize, 0)
}

func (n *Namespace) appendChunks(ctx context.Context, ino Inode, chunks []Chunk, minSize uint64, mtime int64) (Attr, error) {
	if err := checkChunks(chunks); err != nil {
		return Attr{}, wrap("append chunks", err)
	}
	var out Attr
	err := n.update(ctx, func(t *txn) error {
		a, err := t.regular(ino)
		if err != nil {
			return err
		}
		fd, err := t.data(ino)
		if err != nil {
			return err
		}
		if len(fd.Inline) > 0 {
			return fmt.Errorf("append chunks to inline content: %w", ErrInvalid)
		}
		added, err := n.dropFolded(ctx, fd.Chunks, chunks)
		if err != nil {
			return err
		}
		all := append(fd.Chunks, added...)
		kept, dropped := compactChunks(all)
		if err := t.freeDropped(kept, dropped); err != nil {
			return err
		}
		fd.Chunks = kept
		size := minSize
		for _, c := range chunks {
			if end := uint64(c.Offset + c.Size); end > size {
				size = end
			}
		}
		if size > a.Size {
			a.Size = size
		}
		return t.finishWrite(ino, a, &fd, mtime, &out)
	})
	return out, wrap("append chunks", err)
}

// SetChunks replaces a file's whole content with chunks and sets its size
// (a commit of a rewritten file). The chunks no longer used, and those the
// list itself hides, are queued for deletion.
func (n *Namespace) SetChunks(ctx context.Context, ino Inode, chunks []Chunk, size uint64) (Attr, error) {
	return n.setChunks(ctx, ino, chunks, size, 0)
}

func (n *Namespace) setChunks(ctx context.Context, ino Inode, chunks []Chunk, size uint64, mtime int64) (Attr, error) {
	if err := checkChunks(chunks); err != nil {
		return Attr{}, wrap("set chunks", err)
	}
	if size > 1<<62 {
		return Attr{}, wrap("set chunks", fmt.Errorf("size %d: %w", size, ErrInvalid))
	}
	var out Attr
	err := n.update(ctx, func(t *txn) error {
		a, err := t.regular(ino)
		if err != nil {
			return err
		}
		old, err := t.data(ino)
		if err != nil {
			return err
		}
		kept, dropped := compactChunks(append([]Chunk(nil), chunks...))
		kept = trimChunks(kept, int64(size), &dropped)
		dropped = append(dropped, old.Chunks...)
		if err := t.freeDropped(kept, dropped); err != nil {
			return err
		}
		fd := fileData{Chunks: kept}
		a.Size = size
		return t.finishWrite(ino, a, &fd, mtime, &out)
	})
	return out, wrap("set chunks", err)
}

// SetInline replaces a file's content with data stored in the inode (at
// most Config.InlineLimit bytes, else ErrInvalid); its chunks are queued
// for deletion.
func (n *Namespace) SetInline(ctx context.Context, ino Inode, data []byte) (Attr, error) {
	return n.setInline(ctx, ino, data, 0)
}

func (n *Namespace) setInline(ctx context.Context, ino Inode, data []byte, mtime int64) (Attr, error) {
	if len(data) > n.cfg.InlineLimit {
		return Attr{}, wrap("set inline", fmt.Errorf("%d bytes over the inline limit %d: %w", len(data), n.cfg.InlineLimit, ErrInvalid))
	}
	var out Attr
	err := n.update(ctx, func(t *txn) error {
		a, err := t.regular(ino)
		if err != nil {
			return err
		}
		old, err := t.data(ino)
		if err != nil {
			return err
		}
		if err := t.freeDropped(nil, old.Chunks); err != nil {
			return err
		}
		fd := fileData{Inline: append([]byte(nil), data...)}
		a.Size = uint64(len(data))
		return t.finishWrite(ino, a, &fd, mtime, &out)
	})
	return out, wrap("set inline", err)
}

// finishWrite stores a file's new content and records the update: mtime
// (the commit's time when 0) and ctime change.
func (t *txn) finishWrite(ino Inode, a *Attr, fd *fileData, mtime int64, out *Attr) error {
	if err := t.setData(ino, fd); err != nil {
		return err
	}
	a.Mtime, a.Ctime = t.ts, t.ts
	if mtime != 0 {
		a.Mtime = mtime
	}
	t.touch(ino)
	return t.updateEvent(ino, out)
}

// truncateData cuts a file's content at size: chunks past it are queued
// for deletion and a straddling chunk's visible size is trimmed.
func (t *txn) truncateData(ino Inode, size int64) error {
	fd, err := t.data(ino)
	if err != nil {
		return err
	}
	var freed []Chunk
	fd.Chunks = trimChunks(fd.Chunks, size, &freed)
	if int64(len(fd.Inline)) > size {
		fd.Inline = fd.Inline[:size]
	}
	if err := t.freeDropped(fd.Chunks, freed); err != nil {
		return err
	}
	return t.setData(ino, &fd)
}

// trimChunks drops chunks at or past size (appending them to freed when
// it is not nil) and trims the ones that straddle it. A manifest chunk is
// trimmed like any chunk: its expansion is cut to its span.
func trimChunks(cs []Chunk, size int64, freed *[]Chunk) []Chunk {
	out := cs[:0:0]
	for _, c := range cs {
		switch {
		case c.Offset >= size:
			if freed != nil {
				*freed = append(*freed, c)
			}
		case c.Offset+c.Size > size:
			c.Size = size - c.Offset
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}

// checkChunks validates chunks a client commits: data chunks only.
func checkChunks(cs []Chunk) error {
	for _, c := range cs {
		if c.Offset < 0 || c.Size <= 0 || c.FileID == "" || c.Offset > 1<<62 || c.Size > 1<<62 {
			return fmt.Errorf("chunk %+v: %w", c, ErrInvalid)
		}
		if c.IsManifest {
			return fmt.Errorf("chunk %s: manifest chunks are made by the filer, not committed: %w", c.FileID, ErrInvalid)
		}
	}
	return nil
}
