package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/filerd/store/badger"
)

// runFsck checks a stopped filer's store: every entry points at an inode,
// link counts match, every inode is reachable, no chunk is both in use and
// queued for deletion.
func runFsck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("filer.fsck", "Checks the namespace of a stopped filer's store (the filer's -dir) and\nprints what is inconsistent. Exits 1 if anything is.", stderr)
	dir := fs.String("dir", "", "the filer's store directory (required; the filer must not be running)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("no store directory: give -dir")
	}
	// Opening creates a store; a wrong -dir must not get one.
	if ents, err := os.ReadDir(*dir); err != nil || len(ents) == 0 {
		return fmt.Errorf("%s holds no filer store (missing or empty)", *dir)
	}
	cfg := badger.DefaultConfig()
	cfg.Dir = *dir
	st, err := badger.Open(cfg)
	if err != nil {
		return fmt.Errorf("open store %s (is the filer still running?): %w", *dir, err)
	}
	defer st.Close()
	rep, err := meta.CheckStore(ctx, st)
	if err != nil {
		return fmt.Errorf("check %s: %w", *dir, err)
	}
	fmt.Fprintln(stdout, rep.String())
	if !rep.Clean() {
		return fmt.Errorf("%d problems found in %s", len(rep.Problems)+rep.Omitted, *dir)
	}
	return nil
}
