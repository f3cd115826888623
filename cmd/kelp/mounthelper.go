package main

// The mount(8) helper. Installed or linked as /sbin/mount.kelp, the kelp
// binary is what `mount -t kelp`, `mount -a` and systemd's .mount units run
// for a line of type kelp in /etc/fstab:
//
//	mount.kelp SPEC DIR [-sfnv] [-N namespace] [-o OPTIONS] [-t type.subtype]
//
// It turns SPEC and OPTIONS into `kelp mount` flags, starts `kelp mount`
// as a detached daemon (its own session, output to a log file) and
// returns once the kernel lists DIR as a fuse.kelp mount, or fails with
// the tail of the daemon's log. `umount DIR` ends the daemon: serveMount
// sees the mount go away, flushes and exits.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mountHelperName is the name under which the binary acts as mount(8)'s
// helper for file systems of type kelp.
const mountHelperName = "mount.kelp"

// Exit codes of a mount helper, as mount(8) defines them.
const (
	helperExitOK      = 0  // success
	helperExitUsage   = 1  // incorrect invocation or permissions
	helperExitSystem  = 2  // system error (cannot start the daemon)
	helperExitFailure = 32 // mount failure
)

const (
	// helperDefaultTimeout is how long the helper waits for the daemon's
	// mount to appear (option mountTimeout= changes it).
	helperDefaultTimeout = 30 * time.Second
	// helperLogDir holds the daemons' logs and pid files when writable;
	// otherwise os.TempDir() does.
	helperLogDir = "/var/log/kelp"
	// helperCacheDir holds the chunk caches of mounts made by root
	// without a cacheDir= option.
	helperCacheDir = "/var/cache/kelp"
	// helperFsType is the type the kernel lists a kelp mount under.
	helperFsType = "fuse.kelp"
)

// errHelperUsage marks an invocation error (exit 1).
var errHelperUsage = errors.New("mount.kelp")

// helperArgs is a parsed mount.kelp command line.
type helperArgs struct {
	spec, dir string
	fake      bool   // -f: validate, do not mount
	verbose   bool   // -v
	sloppy    bool   // -s: unknown options are warned about and ignored
	options   string // the -o lists, joined with commas
}

// parseHelperArgs parses `SPEC DIR [-sfnv] [-N ns] [-o OPTIONS] [-t TYPE]`
// in any order; flags may be combined (-fv) and option values attached
// (-oro). -n (do not write mtab) has nothing to do and is accepted.
func parseHelperArgs(args []string) (helperArgs, error) {
	var h helperArgs
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		if a == "-h" || a == "--help" {
			return h, flag.ErrHelp
		}
		for j := 1; j < len(a); j++ {
			switch c := a[j]; c {
			case 's':
				h.sloppy = true
			case 'f':
				h.fake = true
			case 'n':
			case 'v':
				h.verbose = true
			case 'o', 't', 'N':
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return h, fmt.Errorf("%w: option -%c needs a value", errHelperUsage, c)
					}
					i++
					val = args[i]
				}
				switch c {
				case 'o':
					opts = append(opts, val)
				case 't':
					if val != "kelp" && val != helperFsType {
						return h, fmt.Errorf("%w: -t %s: this helper mounts type kelp only", errHelperUsage, val)
					}
				case 'N':
					return h, fmt.Errorf("%w: -N %s: mounting in another mount namespace is not supported", errHelperUsage, val)
				}
				j = len(a)
			default:
				return h, fmt.Errorf("%w: unknown flag -%c", errHelperUsage, c)
			}
		}
	}
	if len(pos) != 2 {
		return h, fmt.Errorf("%w: want SPEC and DIR, got %d arguments", errHelperUsage, len(pos))
	}
	h.spec, h.dir = pos[0], pos[1]
	h.options = strings.Join(opts, ",")
	return h, nil
}

// mountSpec is the filer a SPEC names.
type mountSpec struct {
	filer string // host:port or host:port.grpcPort, as -filer takes it
	path  string // the filer directory to mount, clean and absolute
}

// parseMountSpec parses host:port[.grpcPort][:/path]; host may be an IPv6
// address in brackets. Without a path the filer's root is mounted.
func parseMountSpec(s string) (mountSpec, error) {
	bad := func(why string) (mountSpec, error) {
		return mountSpec{}, fmt.Errorf("%w: bad SPEC %q: %s (want host:port:/path, host:port or host:port.grpcPort:/path)", errHelperUsage, s, why)
	}
	var host, rest string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return bad("unclosed [")
		}
		host, rest = s[:end+1], s[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return bad("no port after the address")
		}
		rest = rest[1:]
	} else {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return bad("no port")
		}
		host, rest = s[:i], s[i+1:]
	}
	if host == "" || host == "[]" {
		return bad("no host")
	}
	ports, p, hasPath := strings.Cut(rest, ":")
	if hasPath && !strings.HasPrefix(p, "/") {
		return bad("the path must be absolute")
	}
	if !hasPath {
		p = "/"
	}
	httpPort, grpcPort, hasGRPC := strings.Cut(ports, ".")
	if !validPort(httpPort) {
		return bad(fmt.Sprintf("port %q is not a number within 1..65535", httpPort))
	}
	if hasGRPC && !validPort(grpcPort) {
		return bad(fmt.Sprintf("gRPC port %q is not a number within 1..65535", grpcPort))
	}
	return mountSpec{filer: host + ":" + ports, path: path.Clean(p)}, nil
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= 65535 && strconv.Itoa(n) == s
}

// helperOptions is what the -o list asks for.
type helperOptions struct {
	flags    []string      // `kelp mount` flags, in the order given
	logFile  string        // logFile=: where the daemon's output goes
	timeout  time.Duration // mountTimeout=: how long to wait for the mount
	cacheDir bool          // cacheDir= was given
	ignored  []string      // fstab and util-linux options dropped
	unknown  []string      // options dropped under -s
}

// helperValueOption maps the -o options that take a value to the
// `kelp mount` flags they set.
func helperValueOption(name string) (flagName string, ok bool) {
	switch name {
	case "cacheDir", "cacheCapacityMB", "cacheMemoryMB", "imageCapacityMB", "inlineImages", "chunkSizeMB", "writeBufferMB", "concurrentWriters",
		"replication", "collection", "ttl", "umask", "entryTimeout", "attrTimeout", "metadataCacheTTL", "opTimeout", "readAheadKB":
		return name, true
	case "logLevel":
		return "log.level", true
	case "logFormat":
		return "log.format", true
	}
	return "", false
}

// helperBoolOption maps the -o options that are switches to the
// `kelp mount` flag and value they set; name=true|false also works.
func helperBoolOption(name string) (flagName string, value bool, ok bool) {
	switch name {
	case "allow_other", "allowOthers":
		return "allowOthers", true, true
	case "ro", "readOnly":
		return "readOnly", true, true
	case "rw":
		return "readOnly", false, true
	case "writebackCache":
		return "writebackCache", true, true
	}
	return "", false, false
}

// ignoredOption reports whether an option belongs to fstab, systemd or
// mount(8) rather than to the mount itself: it is accepted and not
// passed on (FUSE mounts are nosuid and nodev anyway).
func ignoredOption(name string, hasValue bool) bool {
	switch {
	case strings.HasPrefix(name, "x-"):
		return true
	case name == "comment" || name == "user":
		// comment=...: a note for fstab readers and systemd;
		// user=NAME: added by mount(8) for a user mount.
		return true
	case hasValue:
		return false
	}
	switch name {
	case "defaults", "_netdev", "nofail", "noauto", "auto", "user", "users", "nouser", "owner", "group",
		"nosuid", "suid", "nodev", "dev", "exec", "noexec", "relatime", "norelatime", "noatime", "atime",
		"strictatime", "nodiratime", "diratime", "lazytime", "nolazytime", "async", "silent", "loud":
		return true
	}
	return false
}

// parseHelperOptions maps a comma-separated -o list onto `kelp mount`
// flags. An option it does not know is an error naming it, unless sloppy
// (mount -s), when it is only recorded in unknown.
func parseHelperOptions(list string, sloppy bool) (helperOptions, error) {
	o := helperOptions{timeout: helperDefaultTimeout}
	for _, opt := range strings.Split(list, ",") {
		if opt == "" {
			continue
		}
		name, value, hasValue := strings.Cut(opt, "=")
		if ignoredOption(name, hasValue) {
			o.ignored = append(o.ignored, opt)
			continue
		}
		if f, ok := helperValueOption(name); ok {
			if !hasValue || value == "" {
				return o, fmt.Errorf("%w: option %s needs a value (%s=...)", errHelperUsage, name, name)
			}
			o.flags = append(o.flags, "-"+f+"="+value)
			o.cacheDir = o.cacheDir || name == "cacheDir"
			continue
		}
		if f, v, ok := helperBoolOption(name); ok {
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil || name == "ro" || name == "rw" {
					return o, fmt.Errorf("%w: option %s takes no value other than true or false, got %q", errHelperUsage, name, opt)
				}
				v = v == b
			}
			o.flags = append(o.flags, "-"+f+"="+strconv.FormatBool(v))
			continue
		}
		switch name {
		case "logFile":
			if !hasValue || value == "" {
				return o, fmt.Errorf("%w: option logFile needs a value (logFile=/path)", errHelperUsage)
			}
			o.logFile = value
			continue
		case "mountTimeout":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return o, fmt.Errorf("%w: option mountTimeout wants a positive duration such as 30s, got %q", errHelperUsage, value)
			}
			o.timeout = d
			continue
		}
		if sloppy {
			o.unknown = append(o.unknown, opt)
			continue
		}
		return o, fmt.Errorf("%w: unknown mount option %q (kelp options: cacheDir=, cacheCapacityMB=, cacheMemoryMB=, imageCapacityMB=, inlineImages=, chunkSizeMB=, writeBufferMB=, concurrentWriters=, replication=, collection=, ttl=, umask=, entryTimeout=, attrTimeout=, metadataCacheTTL=, opTimeout=, readAheadKB=, allow_other, ro, rw, writebackCache, logFile=, logLevel=, mountTimeout=; see docs/mount.md)", errHelperUsage, name)
	}
	return o, nil
}

// helperDaemonArgs is the `kelp mount` command line (without the program
// name) that serves spec at dir with opts.
func helperDaemonArgs(spec mountSpec, dir string, opts helperOptions) []string {
	args := []string{"mount", "-filer", spec.filer, "-dir", dir, "-filer.path", spec.path}
	if !opts.cacheDir && os.Geteuid() == 0 {
		args = append(args, "-cacheDir="+filepath.Join(helperCacheDir, systemdEscapePath(dir)))
	}
	return append(args, opts.flags...)
}

// checkDaemonArgs parses args (from helperDaemonArgs) as `kelp mount`
// would and validates the configuration they give, so bad values fail
// before anything starts.
func checkDaemonArgs(args []string) error {
	fs := flag.NewFlagSet("kelp mount", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var mf mountFlags
	var df daemonFlags
	mf.register(fs, "")
	df.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: bad mount option: %v", errHelperUsage, err)
	}
	if _, err := df.log.logger(io.Discard); err != nil {
		return fmt.Errorf("%w: %v", errHelperUsage, err)
	}
	if _, _, err := mf.config(slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return fmt.Errorf("%w: %v", errHelperUsage, err)
	}
	return nil
}

// systemdEscapePath names a path the way systemd-escape --path does
// (/mnt/kelp becomes mnt-kelp), so logs match the .mount unit's name.
func systemdEscapePath(p string) string {
	p = strings.Trim(path.Clean(p), "/")
	if p == "" {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '_', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}

// openHelperLog opens (appending) the daemon's log: logFile when given,
// else helperLogDir/mount-ESCAPED.log, else the same name under
// os.TempDir() when helperLogDir is not writable.
func openHelperLog(logFile, dir string) (*os.File, error) {
	if logFile != "" {
		if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
			return nil, err
		}
		return os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	}
	name := "mount-" + systemdEscapePath(dir) + ".log"
	if err := os.MkdirAll(helperLogDir, 0o755); err == nil {
		if f, err := os.OpenFile(filepath.Join(helperLogDir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640); err == nil {
			return f, nil
		}
	}
	return os.OpenFile(filepath.Join(os.TempDir(), "kelp-"+name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}

// helperPidFile is where the daemon's pid is written: the log's name
// with .pid for .log.
func helperPidFile(logPath string) string {
	return strings.TrimSuffix(logPath, ".log") + ".pid"
}

// kelpMounts returns the mount ids of the fuse.kelp mounts at dir, from
// /proc/self/mountinfo.
func kelpMounts(dir string) (map[string]bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseKelpMounts(b, dir), nil
}

// parseKelpMounts finds the fuse.kelp mounts at dir in a mountinfo text:
// "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER".
func parseKelpMounts(mountinfo []byte, dir string) map[string]bool {
	ids := map[string]bool{}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || unescapeMountPath(f[4]) != dir {
			continue
		}
		for i := 6; i+1 < len(f); i++ {
			if f[i] == "-" {
				if f[i+1] == helperFsType {
					ids[f[0]] = true
				}
				break
			}
		}
	}
	return ids
}

// logTail returns the last n lines of the file at p.
func logTail(p string, n int) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func helperUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: %s SPEC DIR [-sfnv] [-o OPTIONS]

The mount(8) helper for file systems of type kelp: mounts the filer SPEC names
at DIR through a detached 'kelp mount' daemon and returns once the mount is
ready. 'umount DIR' stops the daemon.

SPEC:   host:port:/path  (also host:port for "/", host:port.grpcPort:/path)
-f      validate only, do not mount     -v  verbose
-s      ignore unknown options (warn)   -n  accepted (nothing to do)
-o      comma-separated options: cacheDir=, cacheCapacityMB=, cacheMemoryMB=,
        imageCapacityMB=, inlineImages=, chunkSizeMB=, writeBufferMB=,
        concurrentWriters=, replication=,
        collection=, ttl=, umask=, entryTimeout=, attrTimeout=,
        metadataCacheTTL=, opTimeout=, readAheadKB=,
        allow_other (allowOthers), ro, rw, writebackCache, logLevel=,
        logFormat=, logFile=, mountTimeout=; fstab and systemd options
        (defaults, _netdev, nofail, noauto, x-systemd.*, ...) are ignored.

fstab:  filer-host:8888:/remote/path /mnt/kelp kelp defaults,_netdev,cacheCapacityMB=1024 0 0
See docs/mount.md.
`, mountHelperName)
}

// runMountHelper is main for the binary called as mount.kelp; it returns
// the exit code.
func runMountHelper(args []string, stdout, stderr io.Writer) int {
	h, err := parseHelperArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		helperUsage(stdout)
		return helperExitOK
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, mountHelperName+": "+format+"\n", a...)
		return code
	}
	if err != nil {
		helperUsage(stderr)
		return fail(helperExitUsage, "%v", strings.TrimPrefix(err.Error(), mountHelperName+": "))
	}
	usageErr := func(err error) int {
		return fail(helperExitUsage, "%s", strings.TrimPrefix(err.Error(), mountHelperName+": "))
	}
	spec, err := parseMountSpec(h.spec)
	if err != nil {
		return usageErr(err)
	}
	opts, err := parseHelperOptions(h.options, h.sloppy)
	if err != nil {
		return usageErr(err)
	}
	for _, u := range opts.unknown {
		fmt.Fprintf(stderr, "%s: ignoring unknown option %q (-s)\n", mountHelperName, u)
	}
	dir, err := filepath.Abs(h.dir)
	if err != nil {
		return usageErr(err)
	}
	daemonArgs := helperDaemonArgs(spec, dir, opts)
	if err := checkDaemonArgs(daemonArgs); err != nil {
		return usageErr(err)
	}
	if h.verbose {
		if len(opts.ignored) > 0 {
			fmt.Fprintf(stdout, "%s: not passed on: %s\n", mountHelperName, strings.Join(opts.ignored, ","))
		}
		fmt.Fprintf(stdout, "%s: kelp %s\n", mountHelperName, strings.Join(daemonArgs, " "))
	}
	if h.fake {
		// mount -f also records mounts that already exist: only check
		// that the mount point is a directory.
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fail(helperExitFailure, "mount point %s is not a directory", dir)
		}
		return helperExitOK
	}
	before, err := kelpMounts(dir)
	if err != nil {
		return fail(helperExitSystem, "%v", err)
	}
	if len(before) > 0 {
		if _, err := os.Stat(dir); errors.Is(err, syscall.ENOTCONN) {
			return fail(helperExitFailure, "%v", checkMountPoint(dir))
		}
		return fail(helperExitFailure, "%s is already mounted on %s (a kelp mount is there)", h.spec, dir)
	}
	if err := checkMountPoint(dir); err != nil {
		return fail(helperExitFailure, "%v", err)
	}
	return startMountDaemon(dir, daemonArgs, opts, h.verbose, before, stdout, stderr)
}

// startMountDaemon starts `kelp mount` detached and waits until a new
// fuse.kelp mount shows up at dir (exit 0), the daemon exits (32, with
// its log's tail) or opts.timeout passes (the daemon is stopped; 32).
func startMountDaemon(dir string, daemonArgs []string, opts helperOptions, verbose bool, before map[string]bool, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, mountHelperName+": "+format+"\n", a...)
		return code
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(helperExitSystem, "cannot find my own binary: %v", err)
	}
	logf, err := openHelperLog(opts.logFile, dir)
	if err != nil {
		return fail(helperExitUsage, "cannot open the log file: %v", err)
	}
	defer logf.Close()
	logPath := logf.Name()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(helperExitSystem, "%v", err)
	}
	defer devnull.Close()
	fmt.Fprintf(logf, "%s %s: starting kelp %s\n", time.Now().Format(time.RFC3339), mountHelperName, strings.Join(daemonArgs, " "))
	// argv[0] is "kelp" so the daemon runs `kelp mount` even when this
	// binary is a copy named mount.kelp.
	proc, err := os.StartProcess(exe, append([]string{"kelp"}, daemonArgs...), &os.ProcAttr{
		Dir:   "/",
		Files: []*os.File{devnull, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return fail(helperExitSystem, "cannot start the mount daemon: %v", err)
	}
	pid := proc.Pid
	pidFile := helperPidFile(logPath)
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		fmt.Fprintf(stderr, "%s: warning: cannot write the pid file: %v\n", mountHelperName, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// stop ends a daemon that did not mount in time (or whose helper was
	// interrupted): SIGTERM, then SIGKILL if it lingers.
	stop := func() {
		_ = proc.Signal(syscall.SIGTERM)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if exited, _ := reapNoHang(pid); exited {
				return
			}
		}
		_ = proc.Kill()
		_, _ = proc.Wait()
	}
	deadline := time.Now().Add(opts.timeout)
	for {
		now, err := kelpMounts(dir)
		if err != nil {
			stop()
			return fail(helperExitSystem, "%v", err)
		}
		for id := range now {
			if !before[id] {
				if verbose {
					fmt.Fprintf(stdout, "%s: %s mounted by kelp mount (pid %d, log %s)\n", mountHelperName, dir, pid, logPath)
				}
				_ = proc.Release()
				return helperExitOK
			}
		}
		if exited, status := reapNoHang(pid); exited {
			return fail(helperExitFailure, "mounting %s failed: kelp mount %s; its log (%s) ends:\n%s",
				dir, status, logPath, logTail(logPath, 20))
		}
		if time.Now().After(deadline) {
			stop()
			return fail(helperExitFailure, "mounting %s failed: not mounted within %v (option mountTimeout=); its log (%s) ends:\n%s",
				dir, opts.timeout, logPath, logTail(logPath, 20))
		}
		select {
		case s := <-sigs:
			stop()
			return fail(helperExitFailure, "mounting %s interrupted by %v", dir, s)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reapNoHang reaps child pid if it has exited, describing how.
func reapNoHang(pid int) (exited bool, how string) {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	switch {
	case err != nil:
		return true, fmt.Sprintf("is gone (%v)", err)
	case got != pid:
		return false, ""
	case ws.Signaled():
		return true, fmt.Sprintf("was killed by %v", ws.Signal())
	}
	return true, fmt.Sprintf("exited with status %d", ws.ExitStatus())
}
