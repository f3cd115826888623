package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kelpfs/kelp/api/filerpb"
	"github.com/kelpfs/kelp/client"
	"github.com/kelpfs/kelp/filerd/meta"
	"github.com/kelpfs/kelp/filerd/store/badger"
	"github.com/kelpfs/kelp/integration/cluster"
)

// crashModel is what one load worker knows for sure about its subtree:
// the names whose operations were acknowledged, and the names acknowledged
// operations removed. The operation in flight when the filer died is
// uncertain: the names it touches are dropped from both sets.
type crashModel struct {
	dirs  map[string]uint64 // dir path -> inode
	files map[string]uint64 // file path -> inode
	sizes map[uint64]int64  // file inode -> size; -1 unknown
	gone  map[string]bool   // paths an acknowledged op removed
	ops   int               // acknowledged operations
}

func newCrashModel() *crashModel {
	return &crashModel{dirs: map[string]uint64{}, files: map[string]uint64{},
		sizes: map[uint64]int64{}, gone: map[string]bool{}}
}

func (m *crashModel) forget(paths ...string) {
	for _, p := range paths {
		delete(m.dirs, p)
		delete(m.files, p)
		delete(m.gone, p)
	}
}

func pick[V any](r *mrand.Rand, m map[string]V) (string, bool) {
	if len(m) == 0 {
		return "", false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[r.IntN(len(keys))], true
}

// crashWorker runs namespace operations under its own directory until a
// call fails; it returns that error (nil if stop closed first).
func crashWorker(ctx context.Context, api filerpb.FilerClient, w int, m *crashModel, stop <-chan struct{}) error {
	r := mrand.New(mrand.NewPCG(uint64(w), 42))
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 10*time.Second) }
	top := fmt.Sprintf("/w%d", w)
	c, cancel := call()
	e, err := api.Mkdir(c, &filerpb.MkdirRequest{Parent: uint64(meta.RootInode), Name: top[1:], Mode: 0o755})
	cancel()
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", top, err)
	}
	m.dirs[top] = e.Attr.Inode
	m.ops++
	isEmpty := func(d string) bool {
		for p := range m.dirs {
			if path.Dir(p) == d {
				return false
			}
		}
		for p := range m.files {
			if path.Dir(p) == d {
				return false
			}
		}
		return true
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		dir, _ := pick(r, m.dirs)
		dino := m.dirs[dir]
		c, cancel := call()
		var err error
		switch op := r.IntN(10); {
		case op < 2: // mkdir
			name := fmt.Sprintf("d%d", i)
			var e *filerpb.EntryResponse
			if e, err = api.Mkdir(c, &filerpb.MkdirRequest{Parent: dino, Name: name, Mode: 0o755}); err == nil {
				m.dirs[path.Join(dir, name)] = e.Attr.Inode
			}
		case op < 5: // create, then commit inline content
			p := path.Join(dir, fmt.Sprintf("f%d", i))
			var e *filerpb.EntryResponse
			if e, err = api.Create(c, &filerpb.CreateRequest{Parent: dino, Name: path.Base(p), Mode: 0o644, Exclusive: true}); err != nil {
				break
			}
			ino := e.Attr.Inode
			m.files[p], m.sizes[ino] = ino, 0
			m.ops++
			content := bytes.Repeat([]byte{byte('a' + i%26)}, 1+r.IntN(1500))
			if _, err = api.CommitChunks(c, &filerpb.CommitChunksRequest{Inode: ino, Inline: content}); err != nil {
				m.sizes[ino] = -1
				break
			}
			m.sizes[ino] = int64(len(content))
		case op < 6: // rename a file into a random directory
			old, ok := pick(r, m.files)
			if !ok {
				break
			}
			np := path.Join(dir, fmt.Sprintf("r%d", i))
			if _, err = api.Rename(c, &filerpb.RenameRequest{OldParent: m.dirs[path.Dir(old)], OldName: path.Base(old),
				NewParent: dino, NewName: path.Base(np)}); err != nil {
				m.forget(old, np)
				break
			}
			m.files[np] = m.files[old]
			delete(m.files, old)
			m.gone[old] = true
		case op < 7: // hard link
			f, ok := pick(r, m.files)
			if !ok {
				break
			}
			np := path.Join(dir, fmt.Sprintf("h%d", i))
			if _, err = api.Link(c, &filerpb.LinkRequest{Inode: m.files[f], NewParent: dino, NewName: path.Base(np)}); err == nil {
				m.files[np] = m.files[f]
			}
		case op < 8: // unlink
			f, ok := pick(r, m.files)
			if !ok {
				break
			}
			if _, err = api.Unlink(c, &filerpb.UnlinkRequest{Parent: m.dirs[path.Dir(f)], Name: path.Base(f)}); err != nil {
				m.forget(f)
				break
			}
			delete(m.files, f)
			m.gone[f] = true
		case op < 9: // rmdir an empty directory
			if dir == top || !isEmpty(dir) {
				break
			}
			if _, err = api.Rmdir(c, &filerpb.RmdirRequest{Parent: m.dirs[path.Dir(dir)], Name: path.Base(dir)}); err != nil {
				m.forget(dir)
				break
			}
			delete(m.dirs, dir)
			m.gone[dir] = true
		default: // truncate
			f, ok := pick(r, m.files)
			if !ok {
				break
			}
			ino := m.files[f]
			size := uint64(r.IntN(2000))
			if _, err = api.SetAttr(c, &filerpb.SetAttrRequest{Inode: ino, Size: &size}); err != nil {
				m.sizes[ino] = -1
				break
			}
			m.sizes[ino] = int64(size)
		}
		cancel()
		if err != nil {
			return err
		}
		m.ops++
	}
}

// lookupPath resolves an absolute path one Lookup at a time.
func lookupPath(ctx context.Context, api filerpb.FilerClient, p string) (*filerpb.Attr, error) {
	ino := uint64(meta.RootInode)
	var attr *filerpb.Attr
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		e, err := api.Lookup(ctx, &filerpb.LookupRequest{Parent: ino, Name: name})
		if err != nil {
			return nil, fmt.Errorf("lookup %q in %s: %w", name, p, err)
		}
		attr, ino = e.Attr, e.Attr.Inode
	}
	return attr, nil
}

// waitFiler polls the filer's gRPC API until the root answers.
func waitFiler(t *testing.T, api filerpb.FilerClient) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := api.GetAttr(ctx, &filerpb.GetAttrRequest{Inode: uint64(meta.RootInode)})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("filer never answered over gRPC: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill -9 the filer process in the middle of a mixed namespace load (gRPC
// operations from 4 workers and multi-chunk HTTP uploads), then: the store
// it left is consistent (fsck: every inode reachable, nlink counts right,
// no chunk both referenced and queued for deletion), every acknowledged
// operation is there, and the restarted filer keeps working.
func TestFilerCrashKill9KeepsTreeConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	dir := t.TempDir()
	mp, mg := cluster.FreePort(t), cluster.FreePort(t)
	vp, vg := cluster.FreePort(t), cluster.FreePort(t)
	fp, fg := cluster.FreePort(t), cluster.FreePort(t)
	masterAddr := fmt.Sprintf("127.0.0.1:%d", mp)
	masterArg := fmt.Sprintf("%s.%d", masterAddr, mg)
	startKelp(t, "master", "-ip", "127.0.0.1", "-port", fmt.Sprint(mp), "-port.grpc", fmt.Sprint(mg), "-mdir", filepath.Join(dir, "m"))
	startKelp(t, "volume", "-ip", "127.0.0.1", "-port", fmt.Sprint(vp), "-port.grpc", fmt.Sprint(vg),
		"-dir", filepath.Join(dir, "v"), "-max", "8", "-master", masterArg, "-pulse", "200ms")
	waitAssign(t, masterAddr)
	filerDir := filepath.Join(dir, "f")
	filerArgs := []string{"filer", "-ip", "127.0.0.1", "-port", fmt.Sprint(fp), "-port.grpc", fmt.Sprint(fg),
		"-dir", filerDir, "-master", masterArg, "-maxMB", "1"}
	filer := startKelp(t, filerArgs...)

	fc, err := client.NewFilerClient(client.FilerClientConfig{Address: fmt.Sprintf("127.0.0.1:%d", fg)})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	api := fc.API()
	waitFiler(t, api)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var killed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const workers = 4
	models := make([]*crashModel, workers)
	errs := make([]error, workers)
	early := make([]bool, workers) // the worker failed before the kill
	for w := range workers {
		models[w] = newCrashModel()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = crashWorker(ctx, api, w, models[w], stop)
			early[w] = !killed.Load()
		}()
	}
	// Multi-chunk HTTP uploads, overwriting two files (the chunks they
	// replace are queued for deletion).
	base := fmt.Sprintf("http://127.0.0.1:%d", fp)
	httpFiles := map[string][]byte{} // acknowledged content
	var httpErr error
	var httpEarly bool
	var httpAcked atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(7, 7))
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			p := fmt.Sprintf("/http/big%d.dat", j%2)
			data := make([]byte, 2<<20+r.IntN(1<<20))
			for k := range data {
				data[k] = byte(r.Uint32())
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+p, bytes.NewReader(data))
			if err != nil {
				httpErr = err
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					err = fmt.Errorf("PUT %s: status %d", p, resp.StatusCode)
				}
			}
			if err != nil {
				delete(httpFiles, p)
				httpErr, httpEarly = err, !killed.Load()
				return
			}
			httpFiles[p] = data
			httpAcked.Add(1)
		}
	}()

	// Let the load run about 2 s and at least until two uploads landed,
	// then kill -9 the filer while the workers are still issuing calls.
	start := time.Now()
	for (time.Since(start) < 2*time.Second || httpAcked.Load() < 2) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	killed.Store(true)
	if err := filer.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-filer.exited
	// The workers stop at their first failed call; close stop for any that
	// did not notice yet.
	close(stop)
	wg.Wait()
	total, cut := 0, 0
	for w, err := range errs {
		total += models[w].ops
		if err != nil {
			cut++
		}
		if err != nil && (early[w] || !isUnavailable(err)) {
			t.Errorf("worker %d failed before the kill or not because the filer went away: %v", w, err)
		}
	}
	if httpErr != nil && httpEarly {
		t.Errorf("uploads: %v", httpErr)
	}
	t.Logf("%d namespace operations and %d uploads acknowledged before the kill; %d of %d workers cut off mid-call",
		total, httpAcked.Load(), cut, workers)
	if total < 50 {
		t.Fatalf("load too small to mean anything: %d operations", total)
	}

	// The operator's tool agrees: kelp filer.fsck finds the store clean.
	if out, err := exec.Command(kelpBinary(t), "filer.fsck", "-dir", filerDir).CombinedOutput(); err != nil || !strings.Contains(string(out), ": clean") {
		t.Fatalf("kelp filer.fsck after kill -9: %v\n%s", err, out)
	}

	// fsck the store as the dead filer left it, then through a namespace
	// (whose Open frees any open-unlinked inode), and resolve every
	// acknowledged name.
	bc := badger.DefaultConfig()
	bc.Dir = filerDir
	bc.MinFreeBytes = 0
	st, err := badger.Open(bc)
	if err != nil {
		t.Fatalf("open the filer's store after kill -9: %v", err)
	}
	rep, err := meta.CheckStore(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() {
		t.Errorf("store after kill -9: %s", rep.String())
	}
	t.Logf("after kill -9: %s", rep.String())
	ns, err := meta.Open(ctx, st, meta.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if rep, err = ns.Check(ctx); err != nil || !rep.Clean() {
		t.Errorf("namespace after reopen: %v %s", err, rep.String())
	}
	checked := 0
	for _, m := range models {
		for p, ino := range m.dirs {
			if a, err := ns.Resolve(ctx, p, false); err != nil || uint64(a.Inode) != ino {
				t.Errorf("acknowledged directory %s (inode %d): %v, inode %d", p, ino, err, a.Inode)
			}
			checked++
		}
		for p, ino := range m.files {
			a, err := ns.Resolve(ctx, p, false)
			if err != nil || uint64(a.Inode) != ino {
				t.Errorf("acknowledged file %s (inode %d): %v, inode %d", p, ino, err, a.Inode)
			} else if sz := m.sizes[ino]; sz >= 0 && a.Size != uint64(sz) {
				t.Errorf("acknowledged file %s: size %d, want %d", p, a.Size, sz)
			}
			checked++
		}
		for p := range m.gone {
			if _, err := ns.Resolve(ctx, p, false); !errors.Is(err, meta.ErrNotFound) {
				t.Errorf("path %s removed before the kill: resolve gives %v", p, err)
			}
		}
	}
	for p, data := range httpFiles {
		if a, err := ns.Resolve(ctx, p, false); err != nil || a.Size != uint64(len(data)) {
			t.Errorf("uploaded %s (%d bytes): %v, size %d", p, len(data), err, a.Size)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The restarted filer serves the same tree and takes new work.
	startKelp(t, filerArgs...)
	waitFiler(t, api)
	for _, m := range models {
		for p, ino := range m.files {
			a, err := lookupPath(ctx, api, p)
			if err != nil || a.Inode != ino {
				t.Errorf("after restart, %s: %v", p, err)
			}
		}
		for p, ino := range m.dirs {
			a, err := lookupPath(ctx, api, p)
			if err != nil || a.Inode != ino {
				t.Errorf("after restart, %s: %v", p, err)
			}
		}
	}
	for p, data := range httpFiles {
		if a := httpDo(t, http.MethodGet, base+p, nil); a.code != http.StatusOK || !bytes.Equal(a.body, data) {
			t.Errorf("after restart, GET %s: %d, %d bytes, want %d", p, a.code, len(a.body), len(data))
		}
	}
	w0, err := lookupPath(ctx, api, "/w0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := api.Create(ctx, &filerpb.CreateRequest{Parent: w0.Inode, Name: "after-restart", Mode: 0o644, Exclusive: true})
	if err != nil {
		t.Fatalf("create after restart: %v", err)
	}
	if a, err := lookupPath(ctx, api, "/w0/after-restart"); err != nil || a.Inode != e.Attr.Inode {
		t.Fatalf("lookup after restart: %v", err)
	}
	t.Logf("%d acknowledged names checked after the restart", checked)
}

// isUnavailable reports whether err is what a call sees when the filer
// process is gone.
func isUnavailable(err error) bool {
	return errors.Is(err, client.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}
