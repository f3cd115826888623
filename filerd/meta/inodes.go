package meta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kelpfs/kelp/filerd/store"
)

// The inode count (InodeCount, StatFs's files) is the number of inodes
// that have a name: the root, every directory, and every other inode with
// nlink > 0 (open-unlinked inodes are not counted). It is kept in the same
// transactions as the changes, in 256 signed stripes "m" "icount/"
// stripe(1): an operation counts on the stripe of the directory whose name
// it adds or removes, which is the stripe of the in-process lock
// (Namespace.dirLocks) it already holds, so the count adds no store
// conflict between operations of one filer. "m" "icounted" marks a store
// whose count is kept; Open counts an older store once.

const (
	countPrefix = "icount/"
	countedKey  = "icounted"
)

// dirStripe is the stripe of directory d: its lock and its count stripe.
func dirStripe(d Inode) int { return int(uint64(d) * 0x9E3779B97F4A7C15 >> 56) }

func countKey(stripe int) []byte { return append(metaKey(countPrefix), byte(stripe)) }

// countInode adds delta to the inode count, on dir's stripe.
func (t *txn) countInode(dir Inode, delta int64) error {
	k := countKey(dirStripe(dir))
	v, err := getInt(t.tx, k)
	if err != nil {
		return err
	}
	return t.tx.Set(k, binary.BigEndian.AppendUint64(nil, uint64(v+delta)))
}

// InodeCount returns the number of inodes that have a name.
func (n *Namespace) InodeCount(ctx context.Context) (uint64, error) {
	var sum int64
	err := n.st.View(ctx, func(tx store.Tx) error {
		var err error
		sum, err = sumCount(tx)
		return err
	})
	if err != nil {
		return 0, wrap("inode count", err)
	}
	return uint64(max(sum, 0)), nil
}

func sumCount(tx store.Tx) (int64, error) {
	var sum int64
	err := tx.Scan(metaKey(countPrefix), nil, func(k, v []byte) (bool, error) {
		if len(v) != 8 {
			return false, fmt.Errorf("inode count stripe %q: %w", k, ErrCorrupt)
		}
		sum += int64(binary.BigEndian.Uint64(v))
		return true, nil
	})
	return sum, err
}

// initInodeCount counts the named inodes of a store that keeps no count
// yet (one written before the count existed) and marks it counted.
func (n *Namespace) initInodeCount(ctx context.Context) error {
	counted := false
	var count int64
	err := n.st.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Get(metaKey(countedKey)); err == nil {
			counted = true
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		count = 0
		return tx.Scan([]byte{pfxInode}, nil, func(_, v []byte) (bool, error) {
			a, err := decodeAttr(v)
			if err != nil {
				return false, err
			}
			if a.IsDir() || a.Nlink > 0 {
				count++
			}
			return true, nil
		})
	})
	if err != nil || counted {
		return err
	}
	return n.st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Get(metaKey(countedKey)); err == nil {
			return nil // another filer on the same store did it
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var stale [][]byte
		err := tx.Scan(metaKey(countPrefix), nil, func(k, _ []byte) (bool, error) {
			stale = append(stale, append([]byte(nil), k...))
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		if err := tx.Set(countKey(0), binary.BigEndian.AppendUint64(nil, uint64(count))); err != nil {
			return err
		}
		return tx.Set(metaKey(countedKey), nil)
	})
}
