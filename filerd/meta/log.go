package meta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kelpfs/kelp/filerd/store"
)

// ReadLog calls fn for every event with sinceNs < TsNs <= untilNs, in
// timestamp order, until fn returns false. Events above Watermark() may
// still be joined by others with smaller timestamps; a reader that must
// not miss any stops at the watermark. A sinceNs before the newest trimmed
// event is ErrLogTrimmed.
func (n *Namespace) ReadLog(ctx context.Context, sinceNs, untilNs int64, fn func(Event) bool) error {
	if untilNs <= sinceNs {
		return nil
	}
	if untilNs <= n.Watermark() { // all committed: the recent log holds them, if it reaches back
		for {
			if err := ctx.Err(); err != nil {
				return wrap("read log", err)
			}
			evs, tss, ok := n.recent.events(sinceNs, untilNs, 256)
			if !ok {
				break // evicted meanwhile: the store has the rest
			}
			for i, v := range evs {
				ev, err := decodeEvent(v)
				if err != nil {
					return wrap("read log", err)
				}
				if !fn(ev) {
					return nil
				}
				sinceNs = tss[i]
			}
			if len(evs) < 256 {
				return nil
			}
		}
	}
	err := n.st.View(ctx, func(tx store.Tx) error {
		trimmed, err := getInt(tx, metaKey("logtrim"))
		if err != nil {
			return err
		}
		if sinceNs < trimmed {
			return fmt.Errorf("events after %d trimmed up to %d: %w", sinceNs, trimmed, ErrLogTrimmed)
		}
		from := sinceNs + 1
		if from < 0 {
			from = 0
		}
		return tx.Scan([]byte{pfxLog}, logKey(from), func(k, v []byte) (bool, error) {
			if len(k) != 9 {
				return true, nil
			}
			if int64(binary.BigEndian.Uint64(k[1:])) > untilNs {
				return false, nil
			}
			ev, err := decodeEvent(v)
			if err != nil {
				return false, err
			}
			return fn(ev), nil
		})
	})
	return wrap("read log", err)
}

// TrimLog deletes the events with TsNs < beforeNs (in batches, one
// transaction each). It records the newest deleted timestamp; a later read
// from before it gets ErrLogTrimmed.
func (n *Namespace) TrimLog(ctx context.Context, beforeNs int64) error {
	const batch = 512
	n.recent.trim(beforeNs) // first: reads from before it go to the store, which knows
	for {
		if err := ctx.Err(); err != nil {
			return wrap("trim log", err)
		}
		done := false
		err := n.st.Update(ctx, func(tx store.Tx) error {
			var keys [][]byte
			var newest int64
			err := tx.Scan([]byte{pfxLog}, nil, func(k, _ []byte) (bool, error) {
				if len(k) != 9 {
					return false, fmt.Errorf("log key %q: %w", k, ErrCorrupt)
				}
				ts := int64(binary.BigEndian.Uint64(k[1:]))
				if ts >= beforeNs {
					return false, nil
				}
				keys = append(keys, append([]byte(nil), k...))
				newest = ts
				return len(keys) < batch, nil
			})
			if err != nil {
				return err
			}
			done = len(keys) < batch
			if len(keys) == 0 {
				return nil
			}
			for _, k := range keys {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			old, err := getInt(tx, metaKey("logtrim"))
			if err != nil || old >= newest {
				return err
			}
			return tx.Set(metaKey("logtrim"), binary.BigEndian.AppendUint64(nil, uint64(newest)))
		})
		if err != nil {
			return wrap("trim log", err)
		}
		if done {
			return nil
		}
	}
}

func getInt(tx store.Tx, key []byte) (int64, error) {
	v, err := tx.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%q: %w", key, ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}
