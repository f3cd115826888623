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
}

// GetContent returns the attributes and content of a regular file.
func (n *Namespace) GetContent(ctx context.Context, ino Inode) (Content, error) {
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

// AppendChunks adds chunks to a file (a write), raising its size to the end
// of the last chunk and at least to minSize. Chunks the new ones hide
// completely are queued for deletion in the same transaction. A file with
// inline content must be converted with SetChunks first (ErrInvalid).
func (n *Namespace) AppendChunks(ctx context.Context, ino Inode, chunks []Chunk, minSize uint64) (Attr, error) {
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
		all := append(fd.Chunks, chunks...)
		kept, dropped := compactChunks(all)
		// A retried append repeats a chunk the file already holds: its
		// blob stays in use and must not be queued for deletion.
		if err := t.freeChunks(unreferenced(kept, dropped)); err != nil {
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
		return t.finishWrite(ino, a, &fd, &out)
	})
	return out, wrap("append chunks", err)
}

// SetChunks replaces a file's whole content with chunks and sets its size
// (a commit of a rewritten file). The chunks no longer used, and those the
// list itself hides, are queued for deletion.
func (n *Namespace) SetChunks(ctx context.Context, ino Inode, chunks []Chunk, size uint64) (Attr, error) {
	if err := checkChunks(chunks); err != nil {
		return Attr{}, wrap("set chunks", err)
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
		if err := t.freeChunks(unreferenced(kept, dropped)); err != nil {
			return err
		}
		fd := fileData{Chunks: kept}
		a.Size = size
		return t.finishWrite(ino, a, &fd, &out)
	})
	return out, wrap("set chunks", err)
}

// SetInline replaces a file's content with data stored in the inode (at
// most Config.InlineLimit bytes, else ErrInvalid); its chunks are queued
// for deletion.
func (n *Namespace) SetInline(ctx context.Context, ino Inode, data []byte) (Attr, error) {
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
		if err := t.freeChunks(old.Chunks); err != nil {
			return err
		}
		fd := fileData{Inline: append([]byte(nil), data...)}
		a.Size = uint64(len(data))
		return t.finishWrite(ino, a, &fd, &out)
	})
	return out, wrap("set inline", err)
}

func (t *txn) finishWrite(ino Inode, a *Attr, fd *fileData, out *Attr) error {
	if err := t.setData(ino, fd); err != nil {
		return err
	}
	a.Mtime, a.Ctime = t.ts, t.ts
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
	if err := t.freeChunks(unreferenced(fd.Chunks, freed)); err != nil {
		return err
	}
	return t.setData(ino, &fd)
}

// unreferenced returns the chunks of dropped whose blob no chunk of kept
// uses, each blob once: the ones safe to delete.
func unreferenced(kept, dropped []Chunk) []Chunk {
	used := make(map[string]bool, len(kept)+len(dropped))
	for _, c := range kept {
		used[c.FileID] = true
	}
	var free []Chunk
	for _, c := range dropped {
		if !used[c.FileID] {
			used[c.FileID] = true
			free = append(free, c)
		}
	}
	return free
}

// trimChunks drops chunks at or past size (appending them to freed when
// it is not nil) and trims the ones that straddle it.
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

func checkChunks(cs []Chunk) error {
	for _, c := range cs {
		if c.Offset < 0 || c.Size <= 0 || c.FileID == "" || c.Offset > 1<<62 || c.Size > 1<<62 {
			return fmt.Errorf("chunk %+v: %w", c, ErrInvalid)
		}
	}
	return nil
}
