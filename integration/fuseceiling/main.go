// Command fuseceiling mounts go-fuse's loopback filesystem (a directory
// served back through FUSE, with no cluster behind it), so fsbench.sh can
// measure what FUSE itself costs on a machine: no FUSE filesystem built
// on go-fuse can beat these figures on the same path, and a Kelp figure
// close to them is bounded by FUSE, not by Kelp.
//
//	fuseceiling [-passthrough] [-timeout 1s] SOURCE MOUNTPOINT
//
// With -passthrough, opened files are handed to the kernel as backing
// files (FUSE passthrough, Linux 6.9+, root), so reads and writes skip
// the FUSE round trip altogether. It serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

func main() {
	passthrough := flag.Bool("passthrough", false, "hand opened files to the kernel as backing files (FUSE passthrough)")
	timeout := flag.Duration("timeout", time.Second, "kernel entry and attribute cache timeout")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: fuseceiling [-passthrough] [-timeout 1s] SOURCE MOUNTPOINT")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := serve(flag.Arg(0), flag.Arg(1), *passthrough, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "fuseceiling:", err)
		os.Exit(1)
	}
}

func serve(source, mountpoint string, passthrough bool, timeout time.Duration) error {
	root, err := fs.NewLoopbackRoot(source)
	if err != nil {
		return fmt.Errorf("loopback of %s: %w", source, err)
	}
	mo := fuse.MountOptions{
		FsName:        "fuseceiling",
		Name:          "fuseceiling",
		MaxWrite:      1 << 20, // as Kelp's mount: 1 MiB requests
		MaxReadAhead:  1 << 20,
		MaxBackground: 64,
		DirectMount:   true,
		// Splicing a 1 MiB read does not fit the default 1 MiB pipe
		// limit: every attempt would fail and fall back to a copy (as
		// Kelp's reads are copies).
		DisableSplice: true,
	}
	if !passthrough {
		mo.DisabledCapabilities = fuse.CAP_PASSTHROUGH
	}
	srv, err := fs.Mount(mountpoint, root, &fs.Options{EntryTimeout: &timeout, AttrTimeout: &timeout, MountOptions: mo})
	if err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	setReadAhead(mountpoint)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		if err := srv.Unmount(); err != nil {
			fmt.Fprintln(os.Stderr, "fuseceiling: unmount:", err)
		}
	}()
	srv.Wait()
	return nil
}

// setReadAhead gives the mount the 32 MiB read-ahead window Kelp's mount
// sets, so sequential reads are compared on equal terms.
func setReadAhead(mountpoint string) {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte("32768"), 0); err != nil {
		fmt.Fprintln(os.Stderr, "fuseceiling: read-ahead left at the kernel's default:", err)
	}
}
