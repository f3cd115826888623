package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
)

// filerRootInode is the inode of the filer's root directory.
const filerRootInode = 1

// filerBenchPage is how many entries one ReadDir call asks for.
const filerBenchPage = 1000

// filerBenchFile is one file of the filer benchmark.
type filerBenchFile struct {
	parent uint64 // inode of its subdirectory
	name   string // current name (changes with the rename phase)
	inode  uint64 // 0 if its create failed
}

// filerPhaseResult is the summary of one filer benchmark phase.
type filerPhaseResult struct {
	name  string
	st    phaseStats
	extra string // e.g. entries/s of the readdir phase
}

// runFilerBenchmark measures metadata operations straight against a filer's
// gRPC API: mkdir, create, getattr, lookup, readdir, rename, unlink. Each
// phase reports requests/s and latency percentiles; a summary table ends
// the run. With keep, the files and directories are left in place (no
// unlink phase, no cleanup), so the store's size per inode can be measured.
func runFilerBenchmark(ctx context.Context, filer string, n, c int, keep bool, stdout io.Writer) error {
	fg, err := client.GRPCAddress(filer)
	if err != nil {
		return fmt.Errorf("-filer: %w", err)
	}
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: fg})
	if err != nil {
		return err
	}
	defer fc.Close()
	api := fc.API()

	var results []filerPhaseResult
	totalFailed := 0
	report := func(name, title string, st phaseStats, conc int, extra string) {
		st.print(stdout, title, conc)
		if extra != "" {
			fmt.Fprintf(stdout, "%s\n", extra)
		}
		if st.failed > 0 {
			fmt.Fprintf(stdout, "first %s error: %v\n", name, st.firstErr)
		}
		totalFailed += st.failed
		results = append(results, filerPhaseResult{name: name, st: st, extra: extra})
	}

	// mkdir: the benchmark directory, then c subdirectories.
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	benchName := "kelp-benchmark-" + hex.EncodeToString(suffix[:])
	var benchDir uint64
	subdirs := make([]uint64, c)
	mk := runPhase(ctx, c+1, 1, func(ctx context.Context, i int) (int, error) {
		if i == 0 {
			r, err := api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: filerRootInode, Name: benchName, Mode: 0o755})
			if err != nil {
				return 0, fmt.Errorf("mkdir /%s: %w", benchName, err)
			}
			benchDir = r.GetAttr().GetInode()
			return 0, nil
		}
		if benchDir == 0 {
			return 0, fmt.Errorf("mkdir d%03d: no benchmark directory", i-1)
		}
		r, err := api.Mkdir(ctx, &filerpb.MkdirRequest{Parent: benchDir, Name: fmt.Sprintf("d%03d", i-1), Mode: 0o755})
		if err != nil {
			return 0, fmt.Errorf("mkdir /%s/d%03d: %w", benchName, i-1, err)
		}
		subdirs[i-1] = r.GetAttr().GetInode()
		return 0, nil
	})
	report("mkdir", fmt.Sprintf("Mkdir /%s and %d subdirectories", benchName, c), mk, 1, "")
	if benchDir == 0 || mk.failed > 0 || ctx.Err() != nil {
		return fmt.Errorf("mkdir failed: %v", mk.firstErr)
	}
	if !keep {
		defer func() {
			// Cleanup: whatever is left (files whose unlink failed are
			// unlinked again), then the directories.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := filerBenchCleanup(cctx, api, benchName, benchDir, subdirs); err != nil {
				fmt.Fprintf(stdout, "\ncleanup of /%s: %v\n", benchName, err)
			}
		}()
	}

	files := make([]filerBenchFile, n)
	for i := range files {
		files[i] = filerBenchFile{parent: subdirs[i%c], name: fmt.Sprintf("f%08d", i)}
	}
	cr := runPhase(ctx, n, c, func(ctx context.Context, i int) (int, error) {
		f := &files[i]
		r, err := api.Create(ctx, &filerpb.CreateRequest{Parent: f.parent, Name: f.name, Mode: 0o100644, Exclusive: true})
		if err != nil {
			return 0, err
		}
		f.inode = r.GetAttr().GetInode()
		return 0, nil
	})
	report("create", fmt.Sprintf("Create %d empty files in %d directories", n, c), cr, c, "")
	var created []int
	for i := range files {
		if files[i].inode != 0 {
			created = append(created, i)
		}
	}
	if len(created) == 0 {
		return fmt.Errorf("no file was created: %v", cr.firstErr)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	ga := runPhase(ctx, n, c, func(ctx context.Context, _ int) (int, error) {
		f := &files[created[mrand.IntN(len(created))]]
		r, err := api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: f.inode})
		if err != nil {
			return 0, err
		}
		if r.GetAttr().GetInode() != f.inode {
			return 0, fmt.Errorf("getattr %d: got inode %d", f.inode, r.GetAttr().GetInode())
		}
		return 0, nil
	})
	report("getattr", fmt.Sprintf("GetAttr of %d random files", n), ga, c, "")

	lk := runPhase(ctx, n, c, func(ctx context.Context, _ int) (int, error) {
		f := &files[created[mrand.IntN(len(created))]]
		r, err := api.Lookup(ctx, &filerpb.LookupRequest{Parent: f.parent, Name: f.name})
		if err != nil {
			return 0, err
		}
		if r.GetAttr().GetInode() != f.inode {
			return 0, fmt.Errorf("lookup %s: got inode %d, want %d", f.name, r.GetAttr().GetInode(), f.inode)
		}
		return 0, nil
	})
	report("lookup", fmt.Sprintf("Lookup of %d random names", n), lk, c, "")
	if ctx.Err() != nil {
		return ctx.Err()
	}

	rd, entries := filerBenchReadDir(ctx, api, subdirs, c)
	want := len(created)
	extra := fmt.Sprintf("Entries listed:         %d (want %d)\nEntries per second:     %.2f [#/sec]",
		entries, want, float64(entries)/rd.elapsed.Seconds())
	if entries != int64(want) && rd.failed == 0 {
		rd.failed++
		rd.firstErr = fmt.Errorf("listed %d entries, want %d", entries, want)
	}
	report("readdir", fmt.Sprintf("ReadDir of %d directories in pages of %d", c, filerBenchPage), rd, c, extra)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	rn := runPhase(ctx, len(created), c, func(ctx context.Context, i int) (int, error) {
		f := &files[created[i]]
		newName := f.name + ".renamed"
		_, err := api.Rename(ctx, &filerpb.RenameRequest{OldParent: f.parent, OldName: f.name, NewParent: f.parent, NewName: newName})
		if err != nil {
			return 0, err
		}
		f.name = newName
		return 0, nil
	})
	report("rename", fmt.Sprintf("Rename %d files within their directory", len(created)), rn, c, "")
	if ctx.Err() != nil {
		return ctx.Err()
	}

	if !keep {
		ul := runPhase(ctx, len(created), c, func(ctx context.Context, i int) (int, error) {
			f := &files[created[i]]
			_, err := api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: f.parent, Name: f.name})
			return 0, err
		})
		report("unlink", fmt.Sprintf("Unlink %d files", len(created)), ul, c, "")
	}

	fmt.Fprintf(stdout, "\n------------ Summary (c=%d) ------------\n", c)
	fmt.Fprintf(stdout, "%-8s %9s %8s %12s %9s %9s %9s\n", "phase", "requests", "failed", "requests/s", "p50 ms", "p99 ms", "max ms")
	for _, r := range results {
		fmt.Fprintf(stdout, "%-8s %9d %8d %12.0f %9.2f %9.2f %9.2f\n", r.name, r.st.completed, r.st.failed,
			float64(r.st.completed)/r.st.elapsed.Seconds(),
			percentileMs(r.st.latencies, 50), percentileMs(r.st.latencies, 99), percentileMs(r.st.latencies, 100))
	}
	fmt.Fprintf(stdout, "readdir: %.0f entries/s\n", float64(entries)/rd.elapsed.Seconds())
	if keep {
		fmt.Fprintf(stdout, "kept /%s (%d files)\n", benchName, len(created))
	}
	if totalFailed > 0 {
		return fmt.Errorf("%d filer requests failed", totalFailed)
	}
	return nil
}

// filerBenchReadDir lists every subdirectory fully in pages of
// filerBenchPage on c workers (one directory per worker at a time). The
// stats count pages; the second result counts entries.
func filerBenchReadDir(ctx context.Context, api filerpb.FilerClient, subdirs []uint64, c int) (phaseStats, int64) {
	var entries atomic.Int64
	var mu sync.Mutex
	var pageLat []time.Duration
	pages := 0
	st := runPhase(ctx, len(subdirs), c, func(ctx context.Context, i int) (int, error) {
		var lat []time.Duration
		defer func() {
			mu.Lock()
			pageLat = append(pageLat, lat...)
			pages += len(lat)
			mu.Unlock()
		}()
		after := ""
		for {
			t := time.Now()
			r, err := api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: subdirs[i], After: after, Limit: filerBenchPage})
			lat = append(lat, time.Since(t))
			if err != nil {
				return 0, err
			}
			es := r.GetEntries()
			entries.Add(int64(len(es)))
			if r.GetEof() || len(es) == 0 {
				return 0, nil
			}
			after = es[len(es)-1].GetName()
		}
	})
	// Report per page: completed counts pages, the latencies are pages'.
	slices.Sort(pageLat)
	st.completed = pages - st.failed
	st.latencies = pageLat
	return st, entries.Load()
}

// filerBenchCleanup unlinks whatever is left in the subdirectories and
// removes them and the benchmark directory.
func filerBenchCleanup(ctx context.Context, api filerpb.FilerClient, benchName string, benchDir uint64, subdirs []uint64) error {
	for i, d := range subdirs {
		if d == 0 {
			continue
		}
		for {
			r, err := api.ReadDir(ctx, &filerpb.ReadDirRequest{Inode: d, Limit: filerBenchPage})
			if err != nil {
				return err
			}
			for _, e := range r.GetEntries() {
				if _, err := api.Unlink(ctx, &filerpb.UnlinkRequest{Parent: d, Name: e.GetName()}); err != nil {
					return err
				}
			}
			if r.GetEof() || len(r.GetEntries()) == 0 {
				break
			}
		}
		if _, err := api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: benchDir, Name: fmt.Sprintf("d%03d", i)}); err != nil {
			return err
		}
	}
	_, err := api.Rmdir(ctx, &filerpb.RmdirRequest{Parent: filerRootInode, Name: benchName})
	return err
}

// percentileMs returns the p-th percentile of sorted latencies in ms, with
// the same index rule as phaseStats.print.
func percentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}
