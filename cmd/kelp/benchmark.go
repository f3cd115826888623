package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kelpfs/kelp/client"
)

func runBenchmark(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("benchmark", "Writes n blobs of -size bytes with -c concurrent clients (assign + upload each),\nthen reads n of them back at random, and reports requests/s, MB/s and latency percentiles.\nWith -filer, measures the filer's metadata operations over gRPC instead (mkdir, create,\ngetattr, lookup, readdir, rename, unlink of n empty files in c directories).", stderr)
	filer := fs.String("filer", "", "benchmark this filer's metadata operations instead of the blob store (host:port, gRPC at port+10000, or host:port.grpcPort)")
	keep := fs.Bool("keep", false, "with -filer: keep the created files (no unlink phase, no cleanup), to measure the store's size")
	master := fs.String("master", "localhost:9333", "master address host:port (gRPC at port+10000, or host:port.grpcPort)")
	n := fs.Int("n", 1024*1024, "number of blobs to write and of random reads (with -filer: files, default 20000)")
	c := fs.Int("c", 16, "concurrent clients")
	size := fs.Int("size", 1024, "blob size in bytes")
	replication := fs.String("replication", "", "replication of the written blobs (default: the master's)")
	collection := fs.String("collection", "benchmark", "collection to write into")
	write := fs.Bool("write", true, "run the write phase")
	read := fs.Bool("read", true, "run the read phase (needs the write phase)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the benchmark client to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n <= 0 || *c <= 0 || *size < 0 {
		return fmt.Errorf("-n and -c must be positive and -size non-negative")
	}
	if !*write && *filer == "" {
		return errors.New("-write=false: the read phase reads what the write phase wrote; nothing to do")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *filer != "" {
		nSet := false
		fs.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
		if !nSet {
			*n = 20000
		}
		return runFilerBenchmark(ctx, *filer, *n, *c, *keep, stdout)
	}
	mg, err := client.GRPCAddress(*master)
	if err != nil {
		return fmt.Errorf("-master: %w", err)
	}
	cl, err := client.NewCluster(client.ClusterConfig{
		Master: client.MasterClientConfig{Address: mg, LookupTTL: time.Hour},
		Blobs:  client.BlobClientConfig{MaxConnsPerHost: 2 * *c},
	})
	if err != nil {
		return err
	}
	defer cl.Close()

	data := make([]byte, *size)
	_, _ = rand.Read(data)
	fids := make([]string, *n)
	opts := client.WriteOptions{Assign: client.AssignRequest{Replication: *replication, Collection: *collection}}
	ws := runPhase(ctx, *n, *c, func(ctx context.Context, i int) (int, error) {
		fid, _, err := cl.Write(ctx, data, opts)
		if err != nil {
			return 0, err
		}
		fids[i] = fid
		return len(data), nil
	})
	ws.print(stdout, fmt.Sprintf("Write %d blobs of %d bytes", *n, *size), *c)
	if ws.failed > 0 {
		fmt.Fprintf(stdout, "first write error: %v\n", ws.firstErr)
	}
	if ctx.Err() != nil || !*read {
		return ctx.Err()
	}
	written := slices.DeleteFunc(slices.Clone(fids), func(s string) bool { return s == "" })
	if len(written) == 0 {
		return fmt.Errorf("no blob was written: %v", ws.firstErr)
	}
	rs := runPhase(ctx, *n, *c, func(ctx context.Context, _ int) (int, error) {
		fid := written[mrand.IntN(len(written))]
		b, err := cl.Read(ctx, fid)
		if err != nil {
			return 0, err
		}
		if len(b) != len(data) {
			return 0, fmt.Errorf("read %s: %d bytes, want %d", fid, len(b), len(data))
		}
		return len(b), nil
	})
	rs.print(stdout, fmt.Sprintf("Randomly read %d blobs", *n), *c)
	if rs.failed > 0 {
		fmt.Fprintf(stdout, "first read error: %v\n", rs.firstErr)
	}
	if ws.failed+rs.failed > 0 {
		return fmt.Errorf("%d writes and %d reads failed", ws.failed, rs.failed)
	}
	return nil
}

// phaseStats are the results of one benchmark phase.
type phaseStats struct {
	elapsed   time.Duration
	completed int
	failed    int
	bytes     int64
	latencies []time.Duration
	firstErr  error
}

// runPhase runs op n times on c workers and measures each call.
func runPhase(ctx context.Context, n, c int, op func(ctx context.Context, i int) (int, error)) phaseStats {
	var next atomic.Int64
	var mu sync.Mutex
	st := phaseStats{latencies: make([]time.Duration, 0, n)}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, n/c+1)
			var done, failed int
			var bytes int64
			var firstErr error
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					break
				}
				t := time.Now()
				b, err := op(ctx, i)
				lat = append(lat, time.Since(t))
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				done++
				bytes += int64(b)
			}
			mu.Lock()
			st.latencies = append(st.latencies, lat...)
			st.completed += done
			st.failed += failed
			st.bytes += bytes
			if st.firstErr == nil {
				st.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	slices.Sort(st.latencies)
	return st
}

func (st phaseStats) print(w io.Writer, title string, c int) {
	secs := st.elapsed.Seconds()
	fmt.Fprintf(w, "\n------------ %s ------------\n", title)
	fmt.Fprintf(w, "Concurrency Level:      %d\n", c)
	fmt.Fprintf(w, "Time taken for tests:   %.3f seconds\n", secs)
	fmt.Fprintf(w, "Completed requests:     %d\n", st.completed)
	fmt.Fprintf(w, "Failed requests:        %d\n", st.failed)
	fmt.Fprintf(w, "Total transferred:      %d bytes\n", st.bytes)
	fmt.Fprintf(w, "Requests per second:    %.2f [#/sec]\n", float64(st.completed)/secs)
	fmt.Fprintf(w, "Transfer rate:          %.2f [MB/sec]\n", float64(st.bytes)/secs/1e6)
	if len(st.latencies) == 0 {
		return
	}
	var sum time.Duration
	for _, l := range st.latencies {
		sum += l
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(w, "\nConnection Times (ms)\n              min      avg        max\n")
	fmt.Fprintf(w, "Total:        %.1f      %.1f       %.1f\n", ms(st.latencies[0]), ms(sum/time.Duration(len(st.latencies))), ms(st.latencies[len(st.latencies)-1]))
	fmt.Fprintf(w, "\nPercentage of the requests served within a certain time (ms)\n")
	for _, p := range []float64{50, 66, 75, 80, 90, 95, 98, 99} {
		i := int(p/100*float64(len(st.latencies))) - 1
		i = max(0, min(i, len(st.latencies)-1))
		fmt.Fprintf(w, "   %2.0f%%      %.2f ms\n", p, ms(st.latencies[i]))
	}
	fmt.Fprintf(w, "  100%%      %.2f ms\n", ms(st.latencies[len(st.latencies)-1]))
}
