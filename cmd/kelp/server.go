package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"

	"github.com/kelpfs/kelp/masterd"
	"github.com/kelpfs/kelp/volumed"
)

func runServer(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlagSet("server", "Starts a one-machine cluster in one process: a master and a volume server,\nwith their data under -dir (DIR/master and DIR/volume).", stderr)
	dir := fs.String("dir", "", "directory for all data (required)")
	ip := fs.String("ip", "", "IP address to bind and advertise (default: every interface, advertised as 127.0.0.1)")
	var mf masterFlags
	var vf volumeFlags
	var df daemonFlags
	mf.register(fs, "master.")
	vf.register(fs, "volume.")
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

	master, err := masterd.New(mcfg)
	if err != nil {
		return err
	}
	volume, err := volumed.New(vcfg)
	if err != nil {
		master.Close()
		return err
	}
	// The volume server stops first, on a signal or when the master fails;
	// the master stops once the volume server is down.
	vctx, stopVolume := context.WithCancel(ctx)
	defer stopVolume()
	mctx, stopMaster := context.WithCancel(context.Background())
	defer stopMaster()
	masterDone := make(chan error, 1)
	volumeDone := make(chan error, 1)
	go func() { masterDone <- master.Serve(mctx) }()
	go func() { volumeDone <- volume.Serve(vctx) }()
	var mErr, vErr error
	select {
	case vErr = <-volumeDone:
		stopMaster()
		mErr = <-masterDone
	case mErr = <-masterDone:
		stopVolume()
		vErr = <-volumeDone
	}
	if err := errors.Join(vErr, mErr); err != nil {
		return fmt.Errorf("server stopped: %w", err)
	}
	return nil
}

func portOfAddr(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
