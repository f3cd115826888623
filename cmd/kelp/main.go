// Command kelp carries every Kelp daemon and tool as a subcommand:
// kelp master | volume | filer | mount | filer.sync | server | benchmark. Each subcommand parses its
// flags into the package's Config, starts the server and stops it cleanly
// on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand.
type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"master", "start a master server (topology, file ids, volume placement)", runMaster},
		{"volume", "start a volume server (needle volumes, blob HTTP API)", runVolume},
		{"filer", "start a filer (namespace, change log, gRPC and HTTP file APIs)", runFiler},
		{"filer.fsck", "check the namespace of a stopped filer's store", runFsck},
		{"mount", "mount a filer's namespace as a local directory through FUSE", runMount},
		{"filer.sync", "keep a tree of one filer in step with a tree of another, both ways", runFilerSync},
		{"filer.sync.verify", "compare a tree of one filer with a tree of another", runFilerSyncVerify},
		{"server", "start master, volume server and filer in one process (one-machine cluster)", runServer},
		{"benchmark", "measure the blob store (write, random read) or, with -filer, the filer's metadata operations", runBenchmark},
		{"version", "print the version", runVersion},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if filepath.Base(os.Args[0]) == mountHelperName {
		os.Exit(runMountHelper(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == args[0] {
			cmd = &c
			break
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "kelp: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "kelp %s: %v\n", cmd.name, err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Kelp: a distributed POSIX filesystem.")
	fmt.Fprintln(w, "\nUsage: kelp <command> [flags]\n\nCommands:")
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nRun 'kelp <command> -h' for the flags of a command.")
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, "kelp", version)
	return nil
}

// errUsage marks a flag error already reported to the user.
var errUsage = errors.New("usage")

// newFlagSet returns a flag set that prints its usage with a summary line.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kelp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: kelp %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping errors to errUsage or flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return errUsage
	}
	return nil
}

// logFlags are the logging flags every daemon shares.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log.level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log.format", "text", "log format: text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("bad -log.level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad -log.format %q: want text or json", l.format)
}
