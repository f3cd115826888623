package lint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "github.com/kelpfs/kelp"

// A pattern names packages or import paths: "x" is exactly x, "x/..." is x
// and everything below it, "..." is everything. Module-internal patterns are
// relative to the module root; third-party ones are full import paths.

// rule says what the packages matching Pkg may import. When several rules
// match a package, the most specific Pkg wins (see specificity).
type rule struct {
	Pkg string
	// Internal lists the module-internal packages the package may import.
	// A package may always import its own subpackages.
	Internal []string
	// TestInternal lists extra module-internal imports allowed in _test files.
	TestInternal []string
	// External lists the third-party imports allowed; nil means stdlib only.
	External []string
	// Deny lists third-party imports forbidden even when External allows them.
	Deny []string
	// Why is the STYLE.md rule, quoted in violation messages.
	Why string
}

var (
	anyThirdParty = []string{"..."}
	grpcAndProto  = []string{"google.golang.org/grpc/...", "google.golang.org/protobuf/...", "google.golang.org/genproto/..."}
	goFuse        = "github.com/hanwen/go-fuse/..."
)

// layering is the table of dependency rules from STYLE.md "Dependency
// direction". Add a row for every new top-level package or subtree.
func layering() []rule {
	const (
		daemon = "daemons import their own subpackages, client, locks, needle, api/*; never each other"
		pure   = "filerd/meta, filerd/store, volumed/storage, masterd/topology know nothing of api/* or gRPC"
	)
	return []rule{
		{Pkg: "api/...", Internal: []string{"api/..."}, External: grpcAndProto,
			Why: "api/* is generated code only"},
		{Pkg: "needle", Why: "needle imports stdlib only"},
		{Pkg: "locks", Why: "locks imports stdlib only"},
		{Pkg: "internal/lint", Why: "internal/lint imports stdlib only"},
		{Pkg: "cache/...", External: []string{"github.com/hashicorp/golang-lru/..."},
			Why: "cache imports stdlib and golang-lru only"},
		{Pkg: "client/...", Internal: []string{"api/...", "needle"}, External: anyThirdParty,
			Why: "client imports api/*, needle, grpc/protobuf and stdlib"},

		{Pkg: "masterd/...", Internal: []string{"client/...", "locks", "needle", "api/..."}, External: anyThirdParty, Why: daemon},
		{Pkg: "masterd/topology/...", Internal: []string{"needle"}, External: anyThirdParty, Deny: grpcAndProto, Why: pure},

		{Pkg: "volumed/...", Internal: []string{"client/...", "locks", "needle", "api/..."}, External: anyThirdParty, Why: daemon},
		{Pkg: "volumed/storage/...", Internal: []string{"needle", "volumed/ec/..."}, External: anyThirdParty, Deny: grpcAndProto, Why: pure},
		{Pkg: "volumed/ec/...", Internal: []string{"needle", "volumed/storage/..."}, External: anyThirdParty, Deny: grpcAndProto,
			Why: "volumed/ec is pure like volumed/storage: needle and storage only, no api/* or gRPC"},

		{Pkg: "filerd/...", Internal: []string{"client/...", "locks", "needle", "api/..."}, External: anyThirdParty, Why: daemon},
		{Pkg: "filerd/meta/...", Internal: []string{"filerd/store", "needle"}, TestInternal: []string{"filerd/store/..."},
			External: anyThirdParty, Deny: grpcAndProto, Why: pure + "; filerd/meta -> filerd/store, needle"},
		{Pkg: "filerd/store/...", Internal: []string{"filerd/store"}, TestInternal: []string{"filerd/store/..."},
			External: anyThirdParty, Deny: grpcAndProto, Why: pure + "; a store implementation depends on the store seam only"},

		{Pkg: "mount/...", Internal: []string{"client/...", "cache/...", "locks", "needle", "api/..."}, External: anyThirdParty,
			Deny: []string{goFuse}, Why: "mount -> client, cache, locks, needle, api/*; testable without FUSE, so no go-fuse"},
		{Pkg: "mount/fusefs/...", Internal: []string{"mount"}, External: []string{goFuse, "golang.org/x/sys/..."},
			Why: "mount/fusefs -> mount, go-fuse"},
		{Pkg: "filersync/...", Internal: []string{"client/...", "cache/...", "locks", "needle", "api/..."}, External: anyThirdParty,
			Why: "filersync -> client, cache, locks, needle, api/*"},

		{Pkg: "cmd/...", Internal: []string{"masterd/...", "volumed/...", "filerd/...", "mount/...", "filersync/...",
			"client/...", "cache/...", "locks", "needle", "api/..."}, External: anyThirdParty,
			Why: "cmd/kelp -> the daemons, mount/fusefs, filersync and what they export"},
		{Pkg: "integration/...", Internal: []string{"..."}, External: anyThirdParty, Why: "integration -> anything"},
	}
}

// global rules hold for every package whatever its table row says.
var (
	// exclusive third-party imports: only the packages matching the pattern
	// may import them.
	exclusive = []struct{ Import, Owner, Why string }{
		{"github.com/dgraph-io/badger/...", "filerd/store/badger/...", "only filerd/store/badger imports badger"},
		{"github.com/hanwen/go-fuse/...", "mount/fusefs/...", "only mount/fusefs (and integration tests) imports go-fuse"},
	}
	exclusiveExempt = []string{"integration/..."}
	// unimportable module-internal subtrees.
	unimportable = []struct{ Pattern, Except, Why string }{
		{"integration/...", "integration/...", "nothing imports integration"},
		{"cmd/...", "", "nothing imports cmd"},
	}
	bannedNames = []string{"util", "utils", "common", "helpers", "helper"}
)

// match reports whether path (module-relative or full) matches pattern.
func match(pattern, path string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchAny(patterns []string, path string) bool {
	for _, p := range patterns {
		if match(p, path) {
			return true
		}
	}
	return false
}

// specificity ranks patterns: longer bases are more specific, and an exact
// pattern beats "base/..." with the same base.
func specificity(pattern string) int {
	if pattern == "..." {
		return 0
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return 2 * len(base)
	}
	return 2*len(pattern) + 1
}

// ruleFor returns the most specific rule for a module-relative package path.
func ruleFor(rules []rule, pkg string) (rule, bool) {
	best, found := rule{}, false
	for _, r := range rules {
		if match(r.Pkg, pkg) && (!found || specificity(r.Pkg) > specificity(best.Pkg)) {
			best, found = r, true
		}
	}
	return best, found
}

func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// internalPath returns the module-relative form of an import path.
func internalPath(imp string) (string, bool) {
	if imp == modulePath {
		return ".", true
	}
	rel, ok := strings.CutPrefix(imp, modulePath+"/")
	return rel, ok
}

// pkgInfo is what the checks need to know about one package.
type pkgInfo struct {
	Rel   string // module-relative path, "." for the root
	Name  string
	Files []fileInfo
}

type fileInfo struct {
	Name    string // path relative to the module root
	Test    bool
	Imports []importInfo
}

type importInfo struct {
	Path string
	Line int
}

type violation struct {
	Where string // file:line or package
	Msg   string
}

func (v violation) String() string { return v.Where + ": " + v.Msg }

// checkImports applies the rule table and the global rules to pkgs.
func checkImports(pkgs []pkgInfo, rules []rule) []violation {
	var out []violation
	for _, p := range pkgs {
		r, ok := ruleFor(rules, p.Rel)
		if !ok {
			out = append(out, violation{p.Rel, fmt.Sprintf("package %s matches no layering rule: add a row for it to layering() in internal/lint/layering_test.go (see STYLE.md \"Dependency direction\")", p.Rel)})
		}
		last := p.Rel[strings.LastIndex(p.Rel, "/")+1:]
		for _, b := range bannedNames {
			if strings.EqualFold(p.Name, b) || strings.EqualFold(last, b) {
				out = append(out, violation{p.Rel, fmt.Sprintf("package %s is named %q: no util, common or helpers packages (STYLE.md); name it for the one concept it owns", p.Rel, b)})
			}
		}
		for _, f := range p.Files {
			for _, imp := range f.Imports {
				where := fmt.Sprintf("%s:%d", f.Name, imp.Line)
				for _, msg := range checkImport(p.Rel, r, ok, f.Test, imp.Path) {
					out = append(out, violation{where, fmt.Sprintf("package %s imports %q: %s", p.Rel, imp.Path, msg)})
				}
			}
		}
	}
	return out
}

// checkImport returns why pkg (covered by r when hasRule) may not import imp.
func checkImport(pkg string, r rule, hasRule, test bool, imp string) []string {
	var msgs []string
	if rel, ok := internalPath(imp); ok {
		for _, u := range unimportable {
			if match(u.Pattern, rel) && !(u.Except != "" && match(u.Except, pkg)) {
				msgs = append(msgs, u.Why)
			}
		}
		if !hasRule || rel == pkg {
			return msgs
		}
		allowed := matchAny(r.Internal, rel) || strings.HasPrefix(rel, pkg+"/") || (test && matchAny(r.TestInternal, rel))
		if !allowed {
			list := strings.Join(r.Internal, ", ")
			if test && len(r.TestInternal) > 0 {
				list += "; in tests also " + strings.Join(r.TestInternal, ", ")
			}
			if list == "" {
				msgs = append(msgs, fmt.Sprintf("rule %q allows no module-internal imports (%s)", r.Pkg, r.Why))
			} else {
				msgs = append(msgs, fmt.Sprintf("rule %q allows only %s (%s)", r.Pkg, list, r.Why))
			}
		}
		return msgs
	}
	if isStdlib(imp) {
		return nil
	}
	if !matchAny(exclusiveExempt, pkg) {
		for _, e := range exclusive {
			if match(e.Import, imp) && !match(e.Owner, pkg) {
				msgs = append(msgs, e.Why)
			}
		}
	}
	if !hasRule {
		return msgs
	}
	switch {
	case matchAny(r.Deny, imp):
		msgs = append(msgs, fmt.Sprintf("rule %q forbids %s (%s)", r.Pkg, strings.Join(r.Deny, ", "), r.Why))
	case !matchAny(r.External, imp):
		list := strings.Join(r.External, ", ")
		if list == "" {
			list = "stdlib only"
		}
		msgs = append(msgs, fmt.Sprintf("rule %q allows third-party imports %s (%s)", r.Pkg, list, r.Why))
	}
	return msgs
}

// exitCalls finds os.Exit and log.Fatal* calls in a parsed file.
func exitCalls(fset *token.FileSet, f *ast.File) []string {
	names := map[string]string{} // local name -> import path
	for _, is := range f.Imports {
		p, err := strconv.Unquote(is.Path.Value)
		if err != nil || (p != "os" && p != "log") {
			continue
		}
		local := p
		if is.Name != nil {
			local = is.Name.Name
		}
		names[local] = p
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok || id.Obj != nil { // id.Obj != nil: a local variable, not a package
			return true
		}
		switch p := names[id.Name]; {
		case p == "os" && sel.Sel.Name == "Exit",
			p == "log" && strings.HasPrefix(sel.Sel.Name, "Fatal"):
			out = append(out, fmt.Sprintf("%d: %s.%s", fset.Position(sel.Pos()).Line, p, sel.Sel.Name))
		}
		return true
	})
	return out
}

// listPackages runs `go list -e -json ./...` in root and parses every Go file's
// imports. Packages that fail to load (half-written, not yet existing) are
// still listed with whatever files go list found.
type listedPackage struct {
	ImportPath   string
	Name         string
	Dir          string
	GoFiles      []string
	CgoFiles     []string
	TestGoFiles  []string
	XTestGoFiles []string
	Error        *struct{ Err string }
}

func listPackages(t *testing.T, root string) ([]pkgInfo, []listedPackage) {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var listed []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var lp listedPackage
		if err := dec.Decode(&lp); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		listed = append(listed, lp)
	}
	if len(listed) == 0 {
		t.Fatalf("go list found no packages in %s\n%s", root, stderr.String())
	}
	var pkgs []pkgInfo
	for _, lp := range listed {
		rel, ok := internalPath(lp.ImportPath)
		if !ok {
			t.Logf("skipping %s: not in module %s", lp.ImportPath, modulePath)
			continue
		}
		if lp.Error != nil {
			t.Logf("package %s has load errors (checked anyway): %s", rel, lp.Error.Err)
		}
		p := pkgInfo{Rel: rel, Name: lp.Name}
		add := func(files []string, test bool) {
			for _, name := range files {
				path := filepath.Join(lp.Dir, name)
				fset := token.NewFileSet()
				f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
				if f == nil {
					t.Logf("skipping %s: %v", path, err)
					continue
				}
				relFile, _ := filepath.Rel(root, path)
				fi := fileInfo{Name: relFile, Test: test}
				for _, is := range f.Imports {
					ip, err := strconv.Unquote(is.Path.Value)
					if err != nil {
						continue
					}
					fi.Imports = append(fi.Imports, importInfo{Path: ip, Line: fset.Position(is.Pos()).Line})
				}
				p.Files = append(p.Files, fi)
			}
		}
		add(lp.GoFiles, false)
		add(lp.CgoFiles, false)
		add(lp.TestGoFiles, true)
		add(lp.XTestGoFiles, true)
		pkgs = append(pkgs, p)
	}
	return pkgs, listed
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

func report(t *testing.T, what string, vs []violation) {
	t.Helper()
	sort.Slice(vs, func(i, j int) bool { return vs[i].String() < vs[j].String() })
	for _, v := range vs {
		t.Errorf("%s: %s", what, v)
	}
}

func TestLayering(t *testing.T) {
	root := moduleRoot(t)
	pkgs, _ := listPackages(t, root)
	t.Logf("checked %d packages", len(pkgs))
	report(t, "layering", checkImports(pkgs, layering()))
}

func TestNoExitOutsideCmd(t *testing.T) {
	root := moduleRoot(t)
	_, listed := listPackages(t, root)
	var vs []violation
	for _, lp := range listed {
		rel, ok := internalPath(lp.ImportPath)
		if !ok || match("cmd/...", rel) {
			continue
		}
		// Test tools that must import go-fuse directly (which cmd/ may
		// not) live under integration/ as commands of their own.
		if lp.Name == "main" && match("integration/...", rel) {
			continue
		}
		for _, name := range append(append([]string{}, lp.GoFiles...), lp.CgoFiles...) {
			path := filepath.Join(lp.Dir, name)
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if f == nil {
				t.Logf("skipping %s: %v", path, err)
				continue
			}
			relFile, _ := filepath.Rel(root, path)
			for _, c := range exitCalls(fset, f) {
				line, call, _ := strings.Cut(c, ": ")
				vs = append(vs, violation{relFile + ":" + line, fmt.Sprintf("%s outside cmd/: return an error instead (STYLE.md: no os.Exit or log.Fatal outside cmd/)", call)})
			}
		}
	}
	report(t, "exit", vs)
}

// TestAPIGeneratedOnly checks that api/ holds only .proto files and
// generated Go code.
func TestAPIGeneratedOnly(t *testing.T) {
	root := moduleRoot(t)
	apiDir := filepath.Join(root, "api")
	if _, err := os.Stat(apiDir); errors.Is(err, os.ErrNotExist) {
		t.Skip("no api/ yet")
	}
	var vs []violation
	err := filepath.WalkDir(apiDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch filepath.Ext(path) {
		case ".proto":
		case ".go":
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.PackageClauseOnly)
			if f == nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if !ast.IsGenerated(f) {
				vs = append(vs, violation{rel, "handwritten Go under api/: api/* holds only .proto files and their generated code (make proto)"})
			}
		default:
			vs = append(vs, violation{rel, "api/* holds only .proto files and their generated code"})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	report(t, "api", vs)
}

// TestRuleMatcher feeds synthetic packages to the checks so that the test
// is known to fail on violations.
func TestRuleMatcher(t *testing.T) {
	m := func(rel string) string { return modulePath + "/" + rel }
	pkg := func(rel string, test bool, imports ...string) pkgInfo {
		fi := fileInfo{Name: rel + "/x.go", Test: test}
		for i, imp := range imports {
			fi.Imports = append(fi.Imports, importInfo{Path: imp, Line: i + 3})
		}
		return pkgInfo{Rel: rel, Name: filepath.Base(rel), Files: []fileInfo{fi}}
	}
	cases := []struct {
		p    pkgInfo
		want []string // substrings, one per expected violation; nil = clean
	}{
		{pkg("needle", false, "fmt", "encoding/binary"), nil},
		{pkg("needle", false, m("api/volumepb")), []string{`rule "needle" allows no module-internal imports`}},
		{pkg("needle", true, "github.com/google/go-cmp/cmp"), []string{"stdlib only"}},
		{pkg("locks", false, m("needle")), []string{`rule "locks"`}},
		{pkg("masterd", false, m("volumed")), []string{"never each other"}},
		{pkg("masterd", false, m("masterd/topology"), m("client"), m("api/masterpb"), "google.golang.org/grpc"), nil},
		{pkg("volumed/storage", false, m("needle"), m("volumed/ec")), nil},
		{pkg("volumed/storage", false, m("api/volumepb")), []string{"know nothing of api"}},
		{pkg("volumed/storage", false, "google.golang.org/grpc/codes"), []string{`forbids`}},
		{pkg("masterd/topology", false, m("masterd")), []string{`rule "masterd/topology/..."`}},
		{pkg("filerd/meta", false, m("filerd/store"), m("needle")), nil},
		{pkg("filerd/meta", false, m("filerd/store/badger")), []string{`rule "filerd/meta/..."`}},
		{pkg("filerd/meta", true, m("filerd/store/badger")), nil},
		{pkg("filerd/store/badger", false, m("filerd/store"), "github.com/dgraph-io/badger/v4"), nil},
		{pkg("filerd/store/badger", true, m("filerd/store/storetest")), nil},
		{pkg("filerd/store/badger", false, m("filerd/store/storetest")), []string{"store seam only"}},
		{pkg("filerd", false, "github.com/dgraph-io/badger/v4"), []string{"only filerd/store/badger imports badger"}},
		{pkg("integration/cluster", false, "github.com/dgraph-io/badger/v4"), nil},
		{pkg("client", false, m("masterd")), []string{`rule "client/..."`}},
		{pkg("client", false, m("api/filerpb"), m("needle"), "google.golang.org/grpc/status"), nil},
		{pkg("cache", false, "github.com/hashicorp/golang-lru/v2"), nil},
		{pkg("cache", false, "github.com/dgraph-io/ristretto"), []string{"golang-lru"}},
		{pkg("mount", false, m("client"), m("cache"), m("locks"), m("needle"), m("api/filerpb")), nil},
		{pkg("mount", false, "github.com/hanwen/go-fuse/v2/fuse"), []string{"only mount/fusefs", "no go-fuse"}},
		{pkg("mount/fusefs", false, m("mount"), "github.com/hanwen/go-fuse/v2/fuse"), nil},
		{pkg("mount/fusefs", false, m("client")), []string{"mount/fusefs -> mount, go-fuse"}},
		{pkg("filersync", false, m("filerd")), []string{"filersync ->"}},
		{pkg("cmd/kelp", false, m("masterd"), m("volumed"), m("client")), nil},
		{pkg("cmd/kelp", false, m("integration/cluster")), []string{"nothing imports integration", `rule "cmd/..."`}},
		{pkg("volumed", false, m("cmd/kelp")), []string{"nothing imports cmd", "never each other"}},
		{pkg("integration", true, m("integration/cluster"), m("masterd"), m("filerd/store/badger")), nil},
		{pkg("integration", true, m("cmd/kelp")), []string{"nothing imports cmd"}},
		{pkg("api/volumepb", false, "google.golang.org/protobuf/proto", m("api/masterpb")), nil},
		{pkg("api/volumepb", false, m("needle")), []string{"generated code only"}},
		{pkg("gateway", false, "fmt"), []string{"matches no layering rule"}},
		{pkg("masterd/util", false), []string{"no util, common or helpers"}},
		{pkg("common", false), []string{"matches no layering rule", "no util, common or helpers"}},
	}
	rules := layering()
	for _, c := range cases {
		got := checkImports([]pkgInfo{c.p}, rules)
		if len(got) != len(c.want) {
			t.Errorf("%s importing %v: got %d violations %v, want %d %q", c.p.Rel, c.p.Files[0].Imports, len(got), got, len(c.want), c.want)
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(got[i].String(), w) {
				t.Errorf("%s: violation %q does not mention %q", c.p.Rel, got[i], w)
			}
			if len(c.p.Files[0].Imports) > 0 && !strings.HasPrefix(got[i].Where, c.p.Rel+"/x.go:") && got[i].Where != c.p.Rel {
				t.Errorf("%s: violation %q names no file", c.p.Rel, got[i])
			}
		}
	}

	// Most specific rule wins.
	for pkg, want := range map[string]string{
		"masterd": "masterd/...", "masterd/topology": "masterd/topology/...", "masterd/topology/x": "masterd/topology/...",
		"mount": "mount/...", "mount/fusefs": "mount/fusefs/...", "filerd/store/badger": "filerd/store/...",
		"needle": "needle", "integration/cluster": "integration/...",
	} {
		if r, ok := ruleFor(rules, pkg); !ok || r.Pkg != want {
			t.Errorf("ruleFor(%s) = %q, want %q", pkg, r.Pkg, want)
		}
	}
	if _, ok := ruleFor(rules, "needlex"); ok {
		t.Error("needle rule matched needlex")
	}
	for _, c := range []struct {
		pat, path string
		want      bool
	}{
		{"api/...", "api", true}, {"api/...", "api/masterpb", true}, {"api/...", "apix", false},
		{"needle", "needle/x", false}, {"...", "anything/at/all", true},
		{"github.com/dgraph-io/badger/...", "github.com/dgraph-io/badger/v4", true},
		{"github.com/dgraph-io/badger/...", "github.com/dgraph-io/badgerx", false},
	} {
		if got := match(c.pat, c.path); got != c.want {
			t.Errorf("match(%q, %q) = %v", c.pat, c.path, got)
		}
	}
}

func TestExitCallsMatcher(t *testing.T) {
	src := `package p
import (
	"os"
	stdlog "log"
	"log/slog"
)
func a() { os.Exit(1) }
func b() { stdlog.Fatalf("x") }
func c() { stdlog.Fatal("x") }
func d() { slog.Error("fine"); _ = os.Getenv("X") }
func e(log struct{ Fatal func() }) { log.Fatal() }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := exitCalls(fset, f)
	want := []string{"7: os.Exit", "8: log.Fatalf", "9: log.Fatal"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("exitCalls = %q, want %q", got, want)
	}
}
