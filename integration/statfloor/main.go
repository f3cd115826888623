// Command statfloor measures the floor of a stat through FUSE on a
// machine: it mounts a filesystem that does no work at all (a directory
// of N files whose attributes are constants) and answers every request
// from memory, so a stat loop over it times nothing but the FUSE round
// trip. The files' attributes expire at once, as the kernel treats a file
// just written (it asks again at the next stat), so each stat is one
// GETATTR, as in fsbench's stat phase. No FUSE filesystem can answer a
// stat after a write faster than this on the same transport.
//
//	statfloor [-transport gofuse|dev|uring] [-files 5000] MOUNTPOINT
//
// Transports:
//   - gofuse: go-fuse's server, as Kelp's mount uses it;
//   - dev: one thread reading /dev/fuse and writing the answers back, the
//     least a /dev/fuse server can do;
//   - uring: FUSE over io_uring (Linux 6.14+): one ring per CPU, its thread
//     pinned to that CPU, each request answered on the CPU of its caller.
//     The kernel offers it only while the fuse module parameter
//     enable_uring is Y (/sys/module/fuse/parameters/enable_uring, root).
//
// dev and uring mount with mount(2) and need root. It serves until SIGINT
// or SIGTERM, or until unmounted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	transport := flag.String("transport", "gofuse", "how requests reach the server: gofuse, dev or uring")
	files := flag.Int("files", 5000, "number of files (f0, f1, ...) in the mount's root")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: statfloor [-transport gofuse|dev|uring] [-files 5000] MOUNTPOINT")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := serve(ctx, flag.Arg(0), *transport, *files, nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "statfloor:", err)
		os.Exit(1)
	}
}
