package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseMountSpec(t *testing.T) {
	for _, tc := range []struct {
		in          string
		filer, path string
		err         string // substring of the error; "" for success
	}{
		{in: "filer-host:8888:/remote/path", filer: "filer-host:8888", path: "/remote/path"},
		{in: "filer-host:8888", filer: "filer-host:8888", path: "/"},
		{in: "filer-host:8888:/", filer: "filer-host:8888", path: "/"},
		{in: "host:8888.18888:/path", filer: "host:8888.18888", path: "/path"},
		{in: "host:8888.18888", filer: "host:8888.18888", path: "/"},
		{in: "10.0.0.5:8888:/a//b/../c/", filer: "10.0.0.5:8888", path: "/a/c"},
		{in: "[::1]:8888:/x", filer: "[::1]:8888", path: "/x"},
		{in: "[fe80::1]:8888.9999", filer: "[fe80::1]:8888.9999", path: "/"},
		{in: "host:8888:/with:colon", filer: "host:8888", path: "/with:colon"},
		{in: "filer-host", err: "no port"},
		{in: ":8888:/x", err: "no host"},
		{in: "host:8888:relative", err: "must be absolute"},
		{in: "host::/x", err: `port ""`},
		{in: "host:http:/x", err: `port "http"`},
		{in: "host:0", err: `port "0"`},
		{in: "host:65536", err: `port "65536"`},
		{in: "host:08888", err: `port "08888"`},
		{in: "host:8888.", err: `gRPC port ""`},
		{in: "host:8888.x:/", err: `gRPC port "x"`},
		{in: "[::1:8888", err: "unclosed ["},
		{in: "[::1]8888", err: "no port after"},
		{in: "[]:8888", err: "no host"},
		{in: "", err: "no port"},
	} {
		got, err := parseMountSpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errHelperUsage) {
				t.Errorf("parseMountSpec(%q) = %+v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.filer != tc.filer || got.path != tc.path {
			t.Errorf("parseMountSpec(%q) = %+v, %v; want filer %q path %q", tc.in, got, err, tc.filer, tc.path)
		}
	}
}

func TestParseHelperArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want helperArgs
		err  string
	}{
		{args: []string{"h:1:/", "/mnt/k"}, want: helperArgs{spec: "h:1:/", dir: "/mnt/k"}},
		// util-linux's order: spec dir, then flags, then -o.
		{args: []string{"h:1:/", "/mnt/k", "-sfnv", "-o", "rw,ro"},
			want: helperArgs{spec: "h:1:/", dir: "/mnt/k", sloppy: true, fake: true, verbose: true, options: "rw,ro"}},
		{args: []string{"-v", "-o", "a=1", "h:1", "/m", "-ob", "-t", "kelp"},
			want: helperArgs{spec: "h:1", dir: "/m", verbose: true, options: "a=1,b"}},
		{args: []string{"h:1", "/m", "-t", "fuse.kelp", "-n"}, want: helperArgs{spec: "h:1", dir: "/m"}},
		{args: []string{"h:1", "/m", "-fo", "ro"}, want: helperArgs{spec: "h:1", dir: "/m", fake: true, options: "ro"}},
		{args: []string{"--", "h:1", "-weird-dir"}, want: helperArgs{spec: "h:1", dir: "-weird-dir"}},
		{args: []string{"h:1"}, err: "want SPEC and DIR, got 1"},
		{args: []string{"h:1", "/m", "/extra"}, err: "got 3"},
		{args: []string{"h:1", "/m", "-o"}, err: "-o needs a value"},
		{args: []string{"h:1", "/m", "-x"}, err: "unknown flag -x"},
		{args: []string{"h:1", "/m", "-t", "nfs"}, err: "type kelp only"},
		{args: []string{"h:1", "/m", "-N", "/proc/1/ns/mnt"}, err: "namespace is not supported"},
	} {
		got, err := parseHelperArgs(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseHelperArgs(%q) = %+v, %v; want an error containing %q", tc.args, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseHelperArgs(%q) = %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
	if _, err := parseHelperArgs([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestParseHelperOptions(t *testing.T) {
	for _, tc := range []struct {
		in      string
		flags   []string
		ignored []string
		err     string
	}{
		{in: "", flags: nil},
		{in: "defaults", ignored: []string{"defaults"}},
		{in: "defaults,_netdev,cacheCapacityMB=1024", flags: []string{"-cacheCapacityMB=1024"}, ignored: []string{"defaults", "_netdev"}},
		{in: "cacheDir=/var/cache/k,cacheCapacityMB=64,cacheMemoryMB=32,imageCapacityMB=0,chunkSizeMB=8,writeBufferMB=128,concurrentWriters=4",
			flags: []string{"-cacheDir=/var/cache/k", "-cacheCapacityMB=64", "-cacheMemoryMB=32", "-imageCapacityMB=0", "-chunkSizeMB=8", "-writeBufferMB=128", "-concurrentWriters=4"}},
		{in: "replication=001,collection=pics,ttl=3d,umask=077,entryTimeout=1s,attrTimeout=2s,opTimeout=1m",
			flags: []string{"-replication=001", "-collection=pics", "-ttl=3d", "-umask=077", "-entryTimeout=1s", "-attrTimeout=2s", "-opTimeout=1m"}},
		{in: "allow_other", flags: []string{"-allowOthers=true"}},
		{in: "allowOthers", flags: []string{"-allowOthers=true"}},
		{in: "allowOthers=false", flags: []string{"-allowOthers=false"}},
		{in: "rw,ro", flags: []string{"-readOnly=false", "-readOnly=true"}},
		{in: "writebackCache,logLevel=debug,logFormat=json", flags: []string{"-writebackCache=true", "-log.level=debug", "-log.format=json"}},
		{in: "nofail,noauto,auto,user,users,nouser,owner,group,user=alice,x-systemd.automount,x-systemd.requires=kelp-filer.service,x-gvfs-show,comment=systemd.automount",
			ignored: []string{"nofail", "noauto", "auto", "user", "users", "nouser", "owner", "group", "user=alice", "x-systemd.automount",
				"x-systemd.requires=kelp-filer.service", "x-gvfs-show", "comment=systemd.automount"}},
		{in: "nosuid,suid,nodev,dev,exec,noexec,relatime,noatime,atime",
			ignored: []string{"nosuid", "suid", "nodev", "dev", "exec", "noexec", "relatime", "noatime", "atime"}},
		{in: ",,ro,,", flags: []string{"-readOnly=true"}},
		{in: "bogus", err: `unknown mount option "bogus"`},
		{in: "defaults,fsname=x", err: `unknown mount option "fsname"`},
		{in: "CacheDir=/x", err: `unknown mount option "CacheDir"`},
		{in: "noatime=1", err: `unknown mount option "noatime"`},
		{in: "cacheDir", err: "option cacheDir needs a value"},
		{in: "chunkSizeMB=", err: "option chunkSizeMB needs a value"},
		{in: "ro=1", err: "option ro takes no value"},
		{in: "allow_other=maybe", err: "option allow_other takes no value"},
		{in: "logFile", err: "option logFile needs a value"},
		{in: "mountTimeout=soon", err: "mountTimeout wants a positive duration"},
		{in: "mountTimeout=-1s", err: "mountTimeout wants a positive duration"},
	} {
		got, err := parseHelperOptions(tc.in, false)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errHelperUsage) {
				t.Errorf("parseHelperOptions(%q): %v; want an error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseHelperOptions(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got.flags, tc.flags) || !reflect.DeepEqual(got.ignored, tc.ignored) {
			t.Errorf("parseHelperOptions(%q) = flags %q ignored %q; want %q and %q", tc.in, got.flags, got.ignored, tc.flags, tc.ignored)
		}
	}
}

func TestParseHelperOptionsHelperOnly(t *testing.T) {
	o, err := parseHelperOptions("logFile=/tmp/k.log,mountTimeout=5s,cacheDir=/c", false)
	if err != nil {
		t.Fatal(err)
	}
	if o.logFile != "/tmp/k.log" || o.timeout != 5*time.Second || !o.cacheDir || !reflect.DeepEqual(o.flags, []string{"-cacheDir=/c"}) {
		t.Fatalf("got %+v", o)
	}
	if o, _ := parseHelperOptions("ro", false); o.timeout != helperDefaultTimeout || o.cacheDir {
		t.Fatalf("defaults: %+v", o)
	}
	// -s: unknown options are recorded, not fatal; known ones still apply.
	o, err = parseHelperOptions("bogus,ro,also=1", true)
	if err != nil || !reflect.DeepEqual(o.unknown, []string{"bogus", "also=1"}) || !reflect.DeepEqual(o.flags, []string{"-readOnly=true"}) {
		t.Fatalf("sloppy: %+v, %v", o, err)
	}
	// Bad values of known options stay errors under -s.
	if _, err := parseHelperOptions("cacheDir", true); err == nil {
		t.Fatal("sloppy cacheDir without a value: no error")
	}
}

func TestHelperDaemonArgs(t *testing.T) {
	spec := mountSpec{filer: "h:8888.18888", path: "/data"}
	opts, err := parseHelperOptions("cacheDir=/c,ro,_netdev", false)
	if err != nil {
		t.Fatal(err)
	}
	got := helperDaemonArgs(spec, "/mnt/kelp", opts)
	want := []string{"mount", "-filer", "h:8888.18888", "-dir", "/mnt/kelp", "-filer.path", "/data", "-cacheDir=/c", "-readOnly=true"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("helperDaemonArgs = %q, want %q", got, want)
	}
	if err := checkDaemonArgs(got); err != nil {
		t.Fatalf("checkDaemonArgs(%q): %v", got, err)
	}
	// Without cacheDir=, root mounts cache under /var/cache/kelp.
	opts, _ = parseHelperOptions("", false)
	got = helperDaemonArgs(spec, "/mnt/kelp", opts)
	hasDefault := false
	for _, a := range got {
		hasDefault = hasDefault || a == "-cacheDir=/var/cache/kelp/mnt-kelp"
	}
	if hasDefault != (os.Geteuid() == 0) {
		t.Fatalf("root %v, args %q", os.Geteuid() == 0, got)
	}
}

func TestCheckDaemonArgsRejectsBadValues(t *testing.T) {
	spec := mountSpec{filer: "h:8888", path: "/"}
	for opt, want := range map[string]string{
		"cacheCapacityMB=lots":          "cacheCapacityMB",
		"chunkSizeMB=999":               "ChunkSizeMB 999",
		"umask=999":                     "umask",
		"entryTimeout=forever":          "entryTimeout",
		"replication=9z9":               "replication",
		"ttl=sometimes":                 "ttl",
		"logLevel=loud":                 "log.level",
		"concurrentWriters=0":           "ConcurrentWriters",
		"writeBufferMB=1,chunkSizeMB=4": "WriteBufferMB",
	} {
		o, err := parseHelperOptions(opt, false)
		if err != nil {
			t.Errorf("%s: %v", opt, err)
			continue
		}
		err = checkDaemonArgs(helperDaemonArgs(spec, "/mnt/kelp", o))
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errHelperUsage) {
			t.Errorf("option %s: %v; want an error naming %q", opt, err, want)
		}
	}
}

func TestSystemdEscapePath(t *testing.T) {
	for in, want := range map[string]string{
		"/mnt/kelp":        "mnt-kelp",
		"/":                "-",
		"/mnt/kelp/":       "mnt-kelp",
		"/srv/a-b":         `srv-a\x2db`,
		"/home/my files/x": `home-my\x20files-x`,
		"/.hidden/x":       `\x2ehidden-x`,
		"/a.b/c_d:e":       "a.b-c_d:e",
	} {
		if got := systemdEscapePath(in); got != want {
			t.Errorf("systemdEscapePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseKelpMounts(t *testing.T) {
	info := strings.Join([]string{
		`22 1 0:21 / /proc rw,nosuid - proc proc rw`,
		`42 26 0:39 / /mnt/kelp rw,nosuid,nodev,relatime - fuse.kelp kelp:h:8888/ rw,user_id=0`,
		`43 26 0:40 / /mnt/kelp rw,relatime shared:7 - fuse.sshfs x:/ rw`,
		`44 26 0:41 / /mnt/my\040kelp rw,relatime shared:9 master:2 - fuse.kelp kelp:h:8888/ rw`,
		`45 26 0:42 / /mnt/kelp2 rw - fuse.kelp kelp:h:8888/ rw`,
		``,
	}, "\n")
	if got := parseKelpMounts([]byte(info), "/mnt/kelp"); !reflect.DeepEqual(got, map[string]bool{"42": true}) {
		t.Errorf("/mnt/kelp: %v", got)
	}
	if got := parseKelpMounts([]byte(info), "/mnt/my kelp"); !reflect.DeepEqual(got, map[string]bool{"44": true}) {
		t.Errorf("/mnt/my kelp: %v", got)
	}
	if got := parseKelpMounts([]byte(info), "/mnt"); len(got) != 0 {
		t.Errorf("/mnt: %v", got)
	}
}

func TestLogTailAndPidFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.log")
	var b bytes.Buffer
	for i := range 30 {
		b.WriteString(strings.Repeat("x", i) + "\n")
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tail := logTail(p, 3)
	if tail != strings.Repeat("x", 27)+"\n"+strings.Repeat("x", 28)+"\n"+strings.Repeat("x", 29) {
		t.Errorf("tail: %q", tail)
	}
	if got := helperPidFile("/var/log/kelp/mount-mnt-kelp.log"); got != "/var/log/kelp/mount-mnt-kelp.pid" {
		t.Errorf("pid file: %s", got)
	}
	if got := helperPidFile("/tmp/k.out"); got != "/tmp/k.out.pid" {
		t.Errorf("pid file: %s", got)
	}
}

// The helper's command line, end to end short of starting a daemon:
// usage errors exit 1 naming the problem, -f validates and exits 0, and
// a missing mount point is a mount failure (32).
func TestRunMountHelperExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"h:8888:/x", dir, "-f", "-o", "defaults,_netdev,nofail,x-systemd.automount,cacheCapacityMB=64"}, 0, ""},
		{[]string{"h:8888:/x", dir, "-fv", "-o", "rw,_netdev,cacheDir=/c"}, 0, "kelp mount -filer h:8888 -dir " + dir + " -filer.path /x"},
		{[]string{"h:8888:/x", dir, "-f", "-o", "_netdev,bogus=1"}, 1, `unknown mount option "bogus"`},
		{[]string{"h:8888:/x", dir, "-f", "-s", "-o", "bogus=1"}, 0, `ignoring unknown option "bogus=1"`},
		{[]string{"h:8888:/x", dir, "-f", "-o", "chunkSizeMB=0"}, 1, "ChunkSizeMB 0"},
		{[]string{"nohostport", dir, "-f"}, 1, "bad SPEC"},
		{[]string{"h:8888"}, 1, "want SPEC and DIR"},
		{[]string{"h:8888", filepath.Join(dir, "missing"), "-o", "cacheDir=" + dir}, 32, "does not exist"},
		{[]string{"h:8888", filepath.Join(dir, "missing"), "-f"}, 32, "not a directory"},
		{[]string{"-h"}, 0, "Usage: mount.kelp"},
	} {
		var out, errb bytes.Buffer
		code := runMountHelper(tc.args, &out, &errb)
		all := out.String() + errb.String()
		if code != tc.code || !strings.Contains(all, tc.want) {
			t.Errorf("mount.kelp %q: exit %d, want %d; output should contain %q:\n%s", tc.args, code, tc.code, tc.want, all)
		}
	}
}
