package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kelpfs/kelp/integration/cluster"
)

// filerBenchWaitHTTP polls url until it answers with any status.
func filerBenchWaitHTTP(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

// `kelp benchmark -filer` runs every metadata phase against a `kelp server`
// without a failure, and cleans up after itself unless -keep is given.
func TestFilerBenchmarkBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kelp server")
	}
	dir := t.TempDir()
	mp, mg, vp, vg := cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t), cluster.FreePort(t)
	fp, fg := cluster.FreePort(t), cluster.FreePort(t)
	startKelp(t, "server", "-dir", dir, "-ip", "127.0.0.1",
		"-master.port", fmt.Sprint(mp), "-master.port.grpc", fmt.Sprint(mg),
		"-volume.port", fmt.Sprint(vp), "-volume.port.grpc", fmt.Sprint(vg),
		"-filer.port", fmt.Sprint(fp), "-filer.port.grpc", fmt.Sprint(fg))
	filerBenchWaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", fp))
	filer := fmt.Sprintf("127.0.0.1:%d.%d", fp, fg)

	bench := func(extra ...string) string {
		t.Helper()
		args := append([]string{"benchmark", "-filer", filer, "-n", "200", "-c", "4"}, extra...)
		out, err := exec.Command(kelpBinary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kelp %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := bench()
	for _, want := range []string{
		"Mkdir /kelp-benchmark-", "Create 200 empty files in 4 directories", "GetAttr of 200 random files",
		"Lookup of 200 random names", "ReadDir of 4 directories in pages of 1000", "Entries listed:         200 (want 200)",
		"Rename 200 files within their directory", "Unlink 200 files", "Summary (c=4)", "99%",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("benchmark output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "first ") || strings.Contains(out, "cleanup of") {
		t.Fatalf("benchmark reported an error:\n%s", out)
	}
	// The first run removed its directory: the root lists nothing; a -keep
	// run leaves its directory behind and has no unlink phase.
	if got := filerBenchListRoot(t, fp); len(got) != 0 {
		t.Fatalf("root after a benchmark: %v, want empty", got)
	}
	out = bench("-keep")
	if strings.Contains(out, "Unlink 200 files") || !strings.Contains(out, "kept /kelp-benchmark-") {
		t.Fatalf("-keep run:\n%s", out)
	}
	if got := filerBenchListRoot(t, fp); len(got) != 1 || !strings.HasPrefix(got[0], "/kelp-benchmark-") {
		t.Fatalf("root after a -keep benchmark: %v, want one kelp-benchmark-* directory", got)
	}
}

// filerBenchListRoot returns the full paths in the filer's root directory,
// from its HTTP JSON listing.
func filerBenchListRoot(t testing.TB, httpPort int) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", httpPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct{ Entries []struct{ FullPath string } }
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatalf("GET / listing: %v", err)
	}
	var paths []string
	for _, e := range l.Entries {
		paths = append(paths, e.FullPath)
	}
	return paths
}
