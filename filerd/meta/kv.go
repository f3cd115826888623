package meta

import (
	"context"
	"errors"
	"fmt"

	"github.com/kelpfs/kelp/filerd/store"
)

// MaxKVKeyLen and MaxKVValueLen bound the side key-value records.
const (
	MaxKVKeyLen   = 1024
	MaxKVValueLen = 1 << 20
)

func checkKVKey(key string) error {
	if key == "" || len(key) > MaxKVKeyLen {
		return fmt.Errorf("kv key of %d bytes: %w", len(key), ErrInvalid)
	}
	return nil
}

// KVGet returns the side record key, or ErrNotFound.
func (n *Namespace) KVGet(ctx context.Context, key string) ([]byte, error) {
	if err := checkKVKey(key); err != nil {
		return nil, wrap("kv get", err)
	}
	var out []byte
	err := n.st.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(kvKey(key))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("kv %q: %w", key, ErrNotFound)
		}
		out = v
		return err
	})
	return out, wrap("kv get", err)
}

// KVPut stores the side record key = value. Side records are not namespace
// changes and make no change-log event.
func (n *Namespace) KVPut(ctx context.Context, key string, value []byte) error {
	if err := checkKVKey(key); err != nil {
		return wrap("kv put", err)
	}
	if len(value) > MaxKVValueLen {
		return wrap("kv put", fmt.Errorf("value of %d bytes: %w", len(value), ErrInvalid))
	}
	return wrap("kv put", n.st.Update(ctx, func(tx store.Tx) error { return tx.Set(kvKey(key), value) }))
}

// KVDelete removes the side record key; a missing one is not an error.
func (n *Namespace) KVDelete(ctx context.Context, key string) error {
	if err := checkKVKey(key); err != nil {
		return wrap("kv delete", err)
	}
	return wrap("kv delete", n.st.Update(ctx, func(tx store.Tx) error { return tx.Delete(kvKey(key)) }))
}

// PendingDeletions returns up to limit chunks waiting for deletion from
// the volume servers, oldest first. The GC worker deletes the blobs, then
// acknowledges them with AckDeletions; a crash in between only repeats a
// deletion. A manifest chunk's record covers the blobs it lists too (see
// PendingDeletion).
func (n *Namespace) PendingDeletions(ctx context.Context, limit int) ([]PendingDeletion, error) {
	var out []PendingDeletion
	err := n.st.View(ctx, func(tx store.Tx) error {
		out = out[:0]
		return tx.Scan([]byte{pfxGC}, nil, func(k, v []byte) (bool, error) {
			c, keep, err := decodeGCRecord(v)
			if err != nil {
				return false, err
			}
			out = append(out, PendingDeletion{Key: append([]byte(nil), k...), Chunk: c, Keep: keep})
			return limit <= 0 || len(out) < limit, nil
		})
	})
	return out, wrap("pending deletions", err)
}

// AckDeletions removes deleted chunks from the queue.
func (n *Namespace) AckDeletions(ctx context.Context, keys [][]byte) error {
	for _, k := range keys {
		if len(k) == 0 || k[0] != pfxGC {
			return wrap("ack deletions", fmt.Errorf("key %q: %w", k, ErrInvalid))
		}
	}
	return wrap("ack deletions", n.st.Update(ctx, func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}))
}
