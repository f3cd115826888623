// Package store is the filer's key-value seam: a small transactional
// interface the namespace (filerd/meta) is written against, so the embedded
// badger store can be swapped for a distributed transactional KV (TiKV,
// FoundationDB, PostgreSQL) without touching the namespace.
//
// Keys and values are opaque bytes; keys sort bytewise. Every method is safe
// for concurrent use. A transaction is used by one goroutine only.
package store

import (
	"context"
	"errors"
)

// Errors every implementation returns (wrapped with context).
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("store: key not found")
	// ErrConflict: a concurrent transaction changed what this one read;
	// Update retries on its own, so callers only see it when retries ran out.
	ErrConflict = errors.New("store: transaction conflict")
	// ErrTooBig: the transaction holds more than the store accepts at once.
	ErrTooBig = errors.New("store: transaction too big")
	// ErrReadOnly: a write inside View.
	ErrReadOnly = errors.New("store: write in a read-only transaction")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store: closed")
	// ErrNoSpace: the disk under the store is (nearly) full; writes fail,
	// reads keep working.
	ErrNoSpace = errors.New("store: no space left")
)

// Store is a transactional, ordered key-value store.
type Store interface {
	// View runs fn in a read-only transaction over a consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it atomically
	// and durably when fn returns nil; nothing of it is visible if fn
	// fails, if any Set or Delete in it failed (even if fn ignored the
	// error), or if the commit fails. fn may run more than once (after a
	// conflict), so it must not have effects outside tx.
	//
	// Conflicts are detected per key read, not per key range: a Scan
	// protects only the keys it returned, so a key inserted into a scanned
	// range by another transaction is no conflict. Transactions that must
	// exclude each other over a range (rmdir checking a directory is empty
	// against create adding to it) must both read or write one shared key,
	// such as the directory's inode.
	Update(ctx context.Context, fn func(Tx) error) error
	// Close flushes and releases the store.
	Close() error
}

// Tx is one transaction. Keys up to 64,000 bytes and values up to 1 MiB are
// accepted by every implementation; larger ones may fail with ErrTooBig.
type Tx interface {
	// Get returns a copy of the value of key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Set writes key = value; the store keeps its own copies.
	Set(key, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key []byte) error
	// Scan calls fn for each key with the given prefix that is >= start (all
	// of them if start is nil), in ascending order, until fn returns false
	// or an error. key and value are valid only during the call. Writes made
	// earlier in the same transaction are visible.
	Scan(prefix, start []byte, fn func(key, value []byte) (more bool, err error)) error
}
