package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugFlags is the opt-in profiling listener every daemon shares.
type debugFlags struct{ addr string }

func (d *debugFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.addr, "debug.addr", "", "serve pprof under /debug/pprof/ on this address, e.g. 127.0.0.1:6060 (off when empty)")
}

// start serves pprof until ctx ends; it returns a stop function that waits
// for the listener to close.
func (d *debugFlags) start(ctx context.Context, log *slog.Logger) (stop func(), err error) {
	if d.addr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveHTTP(ctx, "pprof", "-debug.addr", d.addr, mux, log)
}

// serveHTTP serves h (what, for the log) on addr (given with flag) until
// ctx ends or stop is called; stop waits for the listener to close.
func serveHTTP(ctx context.Context, what, flag, addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("listener stopped", "flag", flag, "err", err)
		}
	}()
	log.Info("serving "+what, "addr", ln.Addr().String())
	stopCtx, cancel := context.WithCancel(ctx)
	go func() {
		<-stopCtx.Done()
		srv.Close()
	}()
	return func() { cancel(); <-done }, nil
}

// daemonFlags are the flags every daemon command shares: logging and the
// opt-in profiling listener.
type daemonFlags struct {
	log   logFlags
	debug debugFlags
}

func (d *daemonFlags) register(fs *flag.FlagSet) {
	d.log.register(fs)
	d.debug.register(fs)
}

// start builds the logger and starts the debug listener; stop ends it.
func (d *daemonFlags) start(ctx context.Context, stderr io.Writer) (log *slog.Logger, stop func(), err error) {
	if log, err = d.log.logger(stderr); err != nil {
		return nil, nil, err
	}
	if stop, err = d.debug.start(ctx, log); err != nil {
		return nil, nil, err
	}
	return log, stop, nil
}
