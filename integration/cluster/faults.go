package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/needle"
)

// This file holds the fault-injection helpers: stopping everything at
// once, finding which volume servers hold a chunk, talking to the filer
// directly, small filesystems to fill, and bounded waits.

// StopAll stops the filer (if any), every volume server and the master, as
// if the whole cluster went away at once. Restart the parts with
// RestartMaster, RestartVolume and Filer.Start.
func (c *Cluster) StopAll() {
	if c.Filer != nil {
		c.Filer.Stop()
	}
	for i := range c.Volumes {
		c.StopVolume(i)
	}
	c.StopMaster()
}

// Start starts a stopped filer again on its addresses and store; a running
// filer is left alone.
func (f *Filer) Start() {
	f.c.t.Helper()
	if f.srv != nil {
		return
	}
	f.start()
}

// FilerClient returns a new gRPC client of the cluster's filer, closed at
// the end of the test. It connects lazily, so it survives filer restarts.
func (c *Cluster) FilerClient() *client.FilerClient {
	c.t.Helper()
	if c.Filer == nil {
		c.t.Fatal("FilerClient: the cluster has no filer (set Options.Filer)")
	}
	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: c.Filer.GRPCAddr()})
	if err != nil {
		c.t.Fatalf("filer client: %v", err)
	}
	c.t.Cleanup(func() { fc.Close() })
	return fc
}

// FilerEntry resolves the absolute filer path p through fc, failing the
// test if it cannot.
func (c *Cluster) FilerEntry(fc *client.FilerClient, p string) *filerpb.Attr {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	attr := &filerpb.Attr{Inode: 1}
	for _, name := range strings.Split(strings.Trim(path.Clean(p), "/"), "/") {
		if name == "" {
			continue
		}
		resp, err := fc.API().Lookup(ctx, &filerpb.LookupRequest{Parent: attr.Inode, Name: name})
		if err != nil {
			c.t.Fatalf("filer lookup %s (at %q): %v", p, name, err)
		}
		attr = resp.Attr
	}
	return attr
}

// FileChunks returns the chunks of the file at the absolute filer path p
// (manifests expanded), in the filer's order.
func (c *Cluster) FileChunks(p string) []*filerpb.Chunk {
	c.t.Helper()
	fc := c.FilerClient()
	attr := c.FilerEntry(fc, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := fc.API().GetChunks(ctx, &filerpb.GetChunksRequest{Inode: attr.Inode})
	if err != nil {
		c.t.Fatalf("filer chunks of %s: %v", p, err)
	}
	return resp.Chunks
}

// VolumesHolding returns the indexes in c.Volumes of the volume servers the
// master lists for the volume of fid, sorted. The master must be up; a
// server it has dropped as dead is not listed.
func (c *Cluster) VolumesHolding(fid string) []int {
	c.t.Helper()
	id, err := needle.ParseFileID(fid)
	if err != nil {
		c.t.Fatalf("VolumesHolding: %v", err)
	}
	mc, err := client.NewMasterClient(client.MasterClientConfig{Address: c.Master.GRPCAddr()})
	if err != nil {
		c.t.Fatalf("master client: %v", err)
	}
	defer mc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	locs, err := mc.Lookup(ctx, id.VolumeID)
	if err != nil {
		c.t.Fatalf("lookup volume of %s: %v", fid, err)
	}
	var out []int
	for _, l := range locs {
		i := slices.IndexFunc(c.Volumes, func(v *Volume) bool { return v.URL() == l.URL })
		if i < 0 {
			c.t.Fatalf("volume of %s is on %s, which is not one of this cluster's volume servers", fid, l.URL)
		}
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// Tmpfs mounts a tmpfs of sizeMB MiB on a new directory and unmounts it at
// cleanup (lazily, so a leftover user cannot make cleanup fail). It needs
// root: without it the test is skipped, or fails when CI is set.
func Tmpfs(t testing.TB, sizeMB int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must be able to mount a small tmpfs (runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a %d MiB tmpfs (needs root): %v: %s", sizeMB, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// WaitFor polls cond until it returns nil, failing the test with cond's
// last error once timeout has passed.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Within runs fn on a goroutine of its own and returns its result, failing
// the test (Fatal) if fn has not returned after d. It is a liveness bound
// for calls that must not hang, not a performance assertion: pick d far
// above what the call should take. A call that overstays keeps its
// goroutine (it may be stuck in the kernel).
func Within[T any](t testing.TB, d time.Duration, what string, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("%s did not return within %s (hung)", what, d)
		panic("unreachable")
	}
}
