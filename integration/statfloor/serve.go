package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// maxWrite bounds the largest request; a stat needs far less, and it sets
// the size of every read buffer and ring entry.
const maxWrite = 128 << 10

// counts are the requests answered through each path.
type counts struct {
	dev, ring atomic.Int64
}

// serve mounts a nullFS of files files on mnt through transport and
// serves it until ctx ends (then it unmounts) or someone else unmounts
// it. mounted, if not nil, is closed once the mount answers; n, if not
// nil, counts the requests answered (dev and uring only).
func serve(ctx context.Context, mnt, transport string, files int, mounted chan<- struct{}, n *counts) error {
	if n == nil {
		n = &counts{}
	}
	if files < 1 {
		return fmt.Errorf("-files %d: need at least one file", files)
	}
	fsys := newNullFS(files)
	switch transport {
	case "gofuse":
		return serveGoFuse(ctx, mnt, fsys, mounted)
	case "dev":
		return serveOwn(ctx, mnt, fsys, false, mounted, n)
	case "uring":
		return serveOwn(ctx, mnt, fsys, true, mounted, n)
	}
	return fmt.Errorf("-transport %q: want gofuse, dev or uring", transport)
}

func serveGoFuse(ctx context.Context, mnt string, fsys *nullFS, mounted chan<- struct{}) error {
	srv, err := fuse.NewServer(fsys, mnt, &fuse.MountOptions{
		FsName:      "statfloor",
		Name:        "statfloor",
		DirectMount: os.Geteuid() == 0,
		MaxWrite:    maxWrite,
		Options:     []string{"default_permissions"},
	})
	if err != nil {
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve()
	}()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		<-done
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	if mounted != nil {
		close(mounted)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	if err := srv.Unmount(); err != nil {
		if derr := unix.Unmount(mnt, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", mnt, err, derr)
		}
	}
	<-done
	return nil
}

// serveOwn mounts with mount(2) and answers /dev/fuse itself; with uring,
// it then moves the requests to FUSE over io_uring. Interrupts and forgets
// still come through /dev/fuse then, so its loop keeps running.
func serveOwn(ctx context.Context, mnt string, fsys *nullFS, uring bool, mounted chan<- struct{}, n *counts) error {
	if uring {
		if err := uringEnabled(); err != nil {
			return err
		}
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/fuse: %w", err)
	}
	defer unix.Close(fd)
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,default_permissions", fd, fsys.uid, fsys.gid)
	if err := unix.Mount("statfloor", mnt, "fuse.statfloor", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mount %s (mount(2) needs root): %w", mnt, err)
	}
	opts := &fuse.MountOptions{MaxWrite: maxWrite}
	if uring {
		opts.ExtraCapabilities = fuse.CAP_OVER_IO_URING
	}
	dev := &devServer{fd: fd, ps: fuse.NewProtocolServer(fsys, opts), inited: make(chan *fuse.InitOut, 1), n: &n.dev}
	loopDone := make(chan error, 1)
	go func() { loopDone <- dev.loop() }()

	var queues *uringQueues
	fail := func(err error) error {
		_ = unmount(mnt)
		<-loopDone
		if queues != nil {
			queues.stop()
		}
		return err
	}
	var init *fuse.InitOut
	select {
	case init = <-dev.inited:
	case err := <-loopDone:
		return fmt.Errorf("serve %s: ended before INIT: %v", mnt, err)
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if uring {
		if init.Flags64()&fuse.CAP_OVER_IO_URING == 0 {
			return fail(errors.New("the kernel did not agree to FUSE over io_uring"))
		}
		payload := max(8192, int(init.MaxWrite), int(init.MaxPages)*os.Getpagesize())
		if queues, err = startURing(dev.ps, fd, payload, &n.ring); err != nil {
			return fail(err)
		}
	}
	if mounted != nil {
		close(mounted)
	}
	select {
	case err = <-loopDone:
	case <-ctx.Done():
		if uerr := unmount(mnt); uerr != nil {
			err = uerr
		}
		<-loopDone
	}
	if queues != nil {
		if qerr := queues.stop(); err == nil {
			err = qerr
		}
	}
	return err
}

func unmount(mnt string) error {
	if err := unix.Unmount(mnt, 0); err != nil {
		if derr := unix.Unmount(mnt, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", mnt, err, derr)
		}
	}
	return nil
}

// uringEnabled says why FUSE over io_uring is not available, if it is not.
func uringEnabled() error {
	const param = "/sys/module/fuse/parameters/enable_uring"
	b, err := os.ReadFile(param)
	if err != nil {
		return fmt.Errorf("FUSE over io_uring needs Linux 6.14+ built with CONFIG_FUSE_IO_URING: %w", err)
	}
	if strings.TrimSpace(string(b)) != "Y" {
		return fmt.Errorf("FUSE over io_uring is off: echo Y > %s (root) to allow it", param)
	}
	return nil
}

// devServer answers /dev/fuse from one thread: read a request, answer it,
// write the answer.
type devServer struct {
	fd     int
	ps     *fuse.ProtocolServer
	inited chan *fuse.InitOut // gets the INIT answer, once
	n      *atomic.Int64      // requests answered
}

const (
	inHeaderSize  = 40 // struct fuse_in_header
	outHeaderSize = 16 // struct fuse_out_header
)

// loop serves until the mount goes away (ENODEV).
func (d *devServer) loop() error {
	in := make([]byte, maxWrite+64<<10)
	out := make([]byte, maxWrite+64<<10)
	first := true
	for {
		n, err := unix.Read(d.fd, in)
		switch {
		case err == unix.ENODEV:
			return nil
		case err == unix.EINTR || err == unix.ENOENT || err == unix.EAGAIN:
			continue // interrupted, or a request the kernel took back
		case err != nil:
			return fmt.Errorf("read /dev/fuse: %w", err)
		}
		d.n.Add(1)
		w, st := d.ps.HandleRequest([][]byte{in[:n]}, [][]byte{out})
		if !st.Ok() {
			return fmt.Errorf("request of %d bytes: %v", n, st)
		}
		if w == 0 {
			continue // no answer (FORGET)
		}
		if _, err := unix.Write(d.fd, out[:w]); err != nil && err != unix.ENOENT {
			return fmt.Errorf("write /dev/fuse: %w", err)
		}
		if first {
			first = false
			if w >= outHeaderSize+int(unsafe.Sizeof(fuse.InitOut{})) {
				init := *(*fuse.InitOut)(unsafe.Pointer(&out[outHeaderSize]))
				d.inited <- &init
			} else {
				d.inited <- &fuse.InitOut{}
			}
		}
	}
}

// stopTimeout bounds how long the io_uring queues may take to see the
// connection end.
const stopTimeout = 5 * time.Second
