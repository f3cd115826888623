package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/kelpfs/kelp/filerd/store"
)

// ErrInjected is the error a Faulty store injects unless told otherwise.
var ErrInjected = errors.New("storetest: injected fault")

// Op is a set of operations a Faulty store can fail (bits, so that one
// fault can count several kinds: OpSet|OpDelete).
type Op uint8

// The operations Faulty counts.
const (
	OpGet    Op = 1 << iota // Tx.Get
	OpSet                   // Tx.Set
	OpDelete                // Tx.Delete
	OpScan                  // Tx.Scan (the call, not each key)
	// OpCommit fails an Update whose fn returned nil instead of
	// committing it: nothing is applied.
	OpCommit
	// OpCommitAck lets an Update commit, then reports the fault anyway: an
	// ambiguous commit, as a networked store can produce when the
	// connection drops after the commit.
	OpCommitAck

	// OpWrite is every write a transaction makes.
	OpWrite = OpSet | OpDelete
)

func (o Op) String() string {
	names := []string{"get", "set", "delete", "scan", "commit", "commit-ack"}
	var parts []string
	for i, n := range names {
		if o&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, "|")
}

// Faulty wraps a store.Store and fails one chosen operation. With no fault
// armed it behaves exactly like the store it wraps (the conformance suite
// checks this). It is safe for concurrent use; ops are counted across all
// transactions, retried attempts included.
//
// A write fault (OpSet, OpDelete) fails the whole Update even if fn ignores
// the error, as real stores do. To test that every failure point of an
// operation leaves nothing half-done, sweep n:
//
//	for n := 0; ; n++ {
//		f.FailAfter(storetest.OpWrite|storetest.OpCommit, n, nil)
//		before := f.Injected()
//		err := doOperation()
//		if f.Injected() == before { break } // ran to the end: no failure point left
//		// err must be non-nil and the state unchanged
//	}
type Faulty struct {
	inner store.Store

	mu       sync.Mutex
	armed    bool
	ops      Op
	left     int
	err      error
	injected int
}

var _ store.Store = (*Faulty)(nil)

// NewFaulty wraps inner with no fault armed. Closing the Faulty closes
// inner.
func NewFaulty(inner store.Store) *Faulty { return &Faulty{inner: inner} }

// FailAfter arms a one-shot fault: after n more operations in ops succeed,
// the next one fails with err (ErrInjected when nil), then the fault is
// disarmed. It replaces any fault armed before.
func (f *Faulty) FailAfter(ops Op, n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.ops, f.left, f.err = true, ops, n, err
}

// FailAfterSets fails the (n+1)th Set from now with ErrInjected.
func (f *Faulty) FailAfterSets(n int) { f.FailAfter(OpSet, n, nil) }

// FailNextCommit fails the next Update at its commit: fn runs to the end
// and nothing is applied.
func (f *Faulty) FailNextCommit() { f.FailAfter(OpCommit, 0, nil) }

// Disarm removes the armed fault, if any.
func (f *Faulty) Disarm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
}

// Injected returns how many faults were injected so far.
func (f *Faulty) Injected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected
}

// fault counts one op and returns the injected error if the fault fires.
func (f *Faulty) fault(op Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.armed || f.ops&op == 0 {
		return nil
	}
	if f.left > 0 {
		f.left--
		return nil
	}
	f.armed = false
	f.injected++
	return fmt.Errorf("storetest: %v: %w", op, f.err)
}

// View implements store.Store.
func (f *Faulty) View(ctx context.Context, fn func(store.Tx) error) error {
	return f.inner.View(ctx, func(tx store.Tx) error {
		return fn(&faultyTx{f: f, tx: tx})
	})
}

// Update implements store.Store.
func (f *Faulty) Update(ctx context.Context, fn func(store.Tx) error) error {
	err := f.inner.Update(ctx, func(tx store.Tx) error {
		ft := &faultyTx{f: f, tx: tx}
		if err := fn(ft); err != nil {
			return err
		}
		if ft.err != nil {
			return fmt.Errorf("storetest: a write failed but fn went on: %w", ft.err)
		}
		return f.fault(OpCommit)
	})
	if err != nil {
		return err
	}
	return f.fault(OpCommitAck)
}

// Close implements store.Store.
func (f *Faulty) Close() error { return f.inner.Close() }

type faultyTx struct {
	f   *Faulty
	tx  store.Tx
	err error // first injected write fault
}

func (t *faultyTx) Get(key []byte) ([]byte, error) {
	if err := t.f.fault(OpGet); err != nil {
		return nil, err
	}
	return t.tx.Get(key)
}

func (t *faultyTx) Set(key, value []byte) error {
	if err := t.f.fault(OpSet); err != nil {
		if t.err == nil {
			t.err = err
		}
		return err
	}
	return t.tx.Set(key, value)
}

func (t *faultyTx) Delete(key []byte) error {
	if err := t.f.fault(OpDelete); err != nil {
		if t.err == nil {
			t.err = err
		}
		return err
	}
	return t.tx.Delete(key)
}

func (t *faultyTx) Scan(prefix, start []byte, fn func(key, value []byte) (bool, error)) error {
	if err := t.f.fault(OpScan); err != nil {
		return err
	}
	return t.tx.Scan(prefix, start, fn)
}
