package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"

	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd"
	"github.com/kelpfs/kelp/masterd"
	"github.com/kelpfs/kelp/mount"
	"github.com/kelpfs/kelp/mount/fusefs"
	"github.com/kelpfs/kelp/volumed"
)

func runServer(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("server", "Starts a one-machine cluster in one process: a master, a volume server and a filer,\nwith their data under -dir (DIR/master, DIR/volume and DIR/filer).", stderr)
	dir := fs.String("dir", "", "directory for all data (required)")
	ip := fs.String("ip", "", "IP address to bind and advertise (default: every interface, advertised as 127.0.0.1)")
	var mf masterFlags
	var vf volumeFlags
	var ff filerFlags
	var df daemonFlags
	var mountf mountFlags
	mountDir := fs.String("mount", "", "also mount the cluster at this directory through FUSE (mount.* flags tune it)")
	mountf.register(fs, "mount.")
	mf.register(fs, "master.")
	vf.register(fs, "volume.")
	ff.register(fs, "filer.")
	df.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("no data directory: give -dir")
	}
	log, stopDebug, err := df.start(ctx, stderr)
	if err != nil {
		return err
	}
	defer stopDebug()
	mf.metaDir = filepath.Join(*dir, "master")
	mcfg, err := mf.config(*ip)
	if err != nil {
		return err
	}
	mcfg.Logger = log
	vf.dirs = filepath.Join(*dir, "volume")
	advertise := *ip
	if advertise == "" {
		advertise = "127.0.0.1"
	}
	vcfg, err := vf.config(*ip, net.JoinHostPort(advertise, strconv.Itoa(portOfAddr(mcfg.GRPCAddr))))
	if err != nil {
		return err
	}
	vcfg.Logger = log
	ff.dir = filepath.Join(*dir, "filer")
	fcfg, err := ff.config(*ip, net.JoinHostPort(advertise, strconv.Itoa(portOfAddr(mcfg.GRPCAddr))))
	if err != nil {
		return err
	}
	fcfg.Logger = log
	var (
		mountCfg  mountConfig
		mountDone = make(chan error, 1)
	)
	if *mountDir != "" {
		if err := checkMountPoint(*mountDir); err != nil {
			return err
		}
		mountf.dir = *mountDir
		mountf.filer = fmt.Sprintf("127.0.0.1:%d.%d", portOfAddr(fcfg.HTTPAddr), portOfAddr(fcfg.GRPCAddr))
		if mountf.cacheDir == "" {
			mountf.cacheDir = filepath.Join(*dir, "mountcache")
		}
		if mountCfg.cfg, mountCfg.opts, err = mountf.config(log); err != nil {
			return err
		}
	}

	master, err := masterd.New(mcfg)
	if err != nil {
		return err
	}
	volume, err := volumed.New(vcfg)
	if err != nil {
		master.Close()
		return err
	}
	filer, err := filerd.New(fcfg)
	if err != nil {
		volume.Close()
		master.Close()
		return err
	}
	// Start order: master, volume server, then the filer once the master
	// serves. Stop order, on a signal or when any of them fails: the filer
	// first (no new writes), then the volume server, then the master.
	fctx, stopFiler := context.WithCancel(context.Background())
	defer stopFiler()
	vctx, stopVolume := context.WithCancel(context.Background())
	defer stopVolume()
	mctx, stopMaster := context.WithCancel(context.Background())
	defer stopMaster()
	masterDone := make(chan error, 1)
	volumeDone := make(chan error, 1)
	filerDone := make(chan error, 1)
	go func() { masterDone <- master.Serve(mctx) }()
	go func() { volumeDone <- volume.Serve(vctx) }()
	var mErr, vErr, fErr, mntErr error
	mOut, vOut, fOut, mntOut := false, false, false, false
	mountCtx, stopMount := context.WithCancel(context.Background())
	defer stopMount()
	mounting := false
	select {
	case <-master.Ready():
		go func() { filerDone <- filer.Serve(fctx) }()
		if *mountDir != "" {
			mounting = true
			go func() {
				select {
				case <-filer.Ready():
					// The mount calls the filer and writes to the
					// volume server in-process.
					mountCfg.cfg.FilerConn = filer.Local()
					mountCfg.cfg.LocalVolumes = map[string]client.LocalBlobs{volume.Addr(): volume.LocalBlobs()}
					mountDone <- serveMount(mountCtx, mountCfg.cfg, *mountDir, mountCfg.opts, log, nil)
				case <-mountCtx.Done():
					mountDone <- nil
				}
			}()
		}
	case mErr = <-masterDone:
		mOut = true
		filer.Close()
		filerDone <- nil
	case vErr = <-volumeDone:
		vOut = true
		filer.Close()
		filerDone <- nil
	case <-ctx.Done():
		filer.Close()
		filerDone <- nil
	}
	if !mOut && !vOut {
		select {
		case fErr = <-filerDone:
			fOut = true
		case vErr = <-volumeDone:
			vOut = true
		case mErr = <-masterDone:
			mOut = true
		case mntErr = <-mountDone:
			mntOut = true
		case <-ctx.Done():
		}
	}
	// The mount goes first: it flushes what applications wrote through
	// the filer and volume server still running.
	stopMount()
	if mounting && !mntOut {
		mntErr = <-mountDone
	}
	stopFiler()
	if !fOut {
		fErr = <-filerDone
	}
	stopVolume()
	if !vOut {
		vErr = <-volumeDone
	}
	stopMaster()
	if !mOut {
		mErr = <-masterDone
	}
	if mntErr != nil {
		mntErr = fmt.Errorf("mount: %w", mntErr)
	}
	if err := errors.Join(mntErr, fErr, vErr, mErr); err != nil {
		return fmt.Errorf("server stopped: %w", err)
	}
	return nil
}

// mountConfig is what `kelp server -mount` mounts.
type mountConfig struct {
	cfg  mount.Config
	opts fusefs.Options
}

func portOfAddr(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
