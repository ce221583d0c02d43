package deployments

import (
	"debug/buildinfo"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const versionVar = "github.com/retrigger/retrigger/shared/version.Version"

// ldflagsOf returns the value of a go build's -ldflags.
func ldflagsOf(b goBuild) (string, bool) {
	for _, f := range b.flags {
		if v, ok := strings.CutPrefix(f, "-ldflags="); ok {
			return v, true
		}
	}
	return "", false
}

// TestDockerfile checks the image's build against the issue: a golang
// build stage that builds static (CGO_ENABLED=0), -trimpath binaries with
// the version stamped, a distroless static nonroot runtime with OCI labels
// and a numeric non-root USER, and one binary per cmd package.
func TestDockerfile(t *testing.T) {
	d, err := parseDockerfile(dockerfilePath, dockerVars())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.stages) != 2 {
		t.Errorf("%d stages, want 2 (build, runtime)", len(d.stages))
	}
	build := d.stage("build")
	if build == nil {
		t.Fatal("no stage named build")
	}
	if !strings.HasPrefix(build.from, "golang:1.26") {
		t.Errorf("build stage FROM %s, want the official golang:1.26 image", build.from)
	}
	if build.env["CGO_ENABLED"] != "0" {
		t.Errorf("build stage ENV CGO_ENABLED=%q, want 0 (static binaries)", build.env["CGO_ENABLED"])
	}
	// The go builds run at the root of the copied context, as the test's
	// builds do.
	copiesContext := false
	for _, c := range build.copies {
		copiesContext = copiesContext || len(c) == 2 && c[0] == "." && (c[1] == "." || c[1] == "./")
	}
	if !copiesContext || build.workdir == "" {
		t.Errorf("the build stage does not COPY . . into its WORKDIR (%q): the go build package paths are relative to the context root", build.workdir)
	}
	builds, err := build.goBuilds()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, b := range builds {
		name := path.Base(b.output)
		if names[name] {
			t.Errorf("two builds write %s", name)
		}
		names[name] = true
		if path.Dir(b.output) != "/out" {
			t.Errorf("%s: -o %s, want /out/NAME (the runtime stage copies /out/)", name, b.output)
		}
		if !contains(b.flags, "-trimpath") {
			t.Errorf("%s: no -trimpath in %q", name, b.flags)
		}
		ld, ok := ldflagsOf(b)
		if !ok || !strings.Contains(" "+ld+" ", " -X "+versionVar+"="+testVersion+" ") {
			t.Errorf("%s: -ldflags %q does not stamp -X %s=$VERSION", name, ld, versionVar)
		}
		// An entrypoint is a main package under cmd/, named like its binary.
		if !strings.Contains(b.pkg, "/cmd/") || path.Base(b.pkg) != name {
			t.Errorf("%s: package %s is not .../cmd/%s", name, b.pkg, name)
		}
		dir := filepath.Join(repoRoot, filepath.FromSlash(b.pkg))
		if _, err := os.Stat(dir); err != nil {
			if !b.guarded {
				t.Errorf("%s: package %s does not exist and its build is unconditional: the image would not build", name, b.pkg)
			} else {
				t.Logf("%s: package %s does not exist yet; its build is guarded", name, b.pkg)
			}
			continue
		}
		if pkg := packageName(t, dir); pkg != "main" {
			t.Errorf("%s: package %s is package %q, want main", name, b.pkg, pkg)
		}
	}
	for _, want := range []string{"producer", "consumer", "archiver", "retrigger"} {
		if !names[want] {
			t.Errorf("the image does not build %s", want)
		}
	}
	checkVersionVar(t)

	rt := d.stage("")
	if rt.from != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime FROM %s, want gcr.io/distroless/static-debian12:nonroot", rt.from)
	}
	uid, gid, ok := strings.Cut(rt.user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("runtime USER %q: want a numeric non-root uid (runAsNonRoot cannot check a name)", rt.user)
	}
	if ok {
		if _, err := strconv.Atoi(gid); err != nil {
			t.Errorf("runtime USER %q: numeric gid wanted", rt.user)
		}
	}
	for _, l := range []string{"title", "description", "source", "version", "revision", "created"} {
		if rt.labels["org.opencontainers.image."+l] == "" {
			t.Errorf("no OCI label org.opencontainers.image.%s", l)
		}
	}
	if v := rt.labels["org.opencontainers.image.version"]; v != testVersion {
		t.Errorf("label org.opencontainers.image.version = %q, want the VERSION build argument %q", v, testVersion)
	}
	if dst := imageBinDir(t, d); dst != "/usr/local/bin" {
		t.Errorf("binaries copied to %s, want /usr/local/bin (the manifests run /usr/local/bin/NAME)", dst)
	}
	for _, c := range rt.commands {
		if c == "RUN" {
			t.Errorf("the runtime stage has a RUN: distroless has no shell")
		}
	}
}

// imageBinDir returns where the runtime stage copies the build's /out/.
func imageBinDir(t *testing.T, d *dockerfile) string {
	t.Helper()
	for _, c := range d.stage("").copies {
		if len(c) == 3 && c[0] == "--from=build" && strings.TrimSuffix(c[1], "/") == "/out" {
			return strings.TrimSuffix(c[2], "/")
		}
	}
	t.Fatalf("the runtime stage does not COPY --from=build /out/ DIR: %q", d.stage("").copies)
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// packageName returns the package clause of the first Go file of dir.
func packageName(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		return file.Name.Name
	}
	t.Fatalf("no Go file in %s", dir)
	return ""
}

// checkVersionVar checks that the -X target is a string variable: the
// linker silently ignores -X of anything else.
func checkVersionVar(t *testing.T) {
	dir := filepath.Join(repoRoot, "shared", "version")
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name != "Version" {
						continue
					}
					// -X needs a string variable, uninitialized or
					// initialized to a constant string.
					if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "string" {
						return
					}
					if vs.Type == nil && i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							return
						}
					}
					t.Errorf("%s is not a string variable set to a constant", versionVar)
					return
				}
			}
		}
	}
	t.Errorf("%s is not a package-level var in %s", versionVar, dir)
}

// TestImageBinariesStatic builds each command exactly as the Dockerfile does
// (its ENV, its go build flags, in a copy of the build context that
// .dockerignore leaves) and checks that the binary is static: nothing for
// the dynamic loader in a distroless static image, which has no libc.
func TestImageBinariesStatic(t *testing.T) {
	for _, c := range commands(t) {
		t.Run(c.name+"/static", func(t *testing.T) {
			c := builtCommand(t, c.name)
			if err := staticELF(c.bin); err != nil {
				t.Errorf("%s is not static: %v", c.name, err)
			}
			info, err := buildinfo.ReadFile(c.bin)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
				t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
			}
			// (-trimpath keeps go build from recording -ldflags: the stamp
			// is checked through -version.)
		})
		t.Run(c.name+"/version", func(t *testing.T) {
			c := builtCommand(t, c.name)
			if _, ok := c.flags["version"]; !ok {
				t.Skipf("%s has no -version flag yet: the stamped version cannot be read back", c.name)
			}
			out, err := exec.Command(c.bin, "-version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), testVersion) {
				t.Errorf("%s -version = %q (%v), want it to print %s", c.name, out, err, testVersion)
			}
		})
	}
}

// TestStaticCheckRejectsDynamicBinary shows that staticELF can fail: a
// Debian binary is dynamically linked against libc.
func TestStaticCheckRejectsDynamicBinary(t *testing.T) {
	const dynamic = "/bin/ls"
	if _, err := os.Stat(dynamic); err != nil {
		t.Skipf("no %s on this machine", dynamic)
	}
	if err := staticELF(dynamic); err == nil {
		t.Errorf("staticELF(%s) found it static", dynamic)
	} else {
		t.Logf("%s: %v", dynamic, err)
	}
}

// TestBuildContext checks the context .dockerignore leaves: the workspace
// loads (go.work and the go.mod of every module it uses), and it carries no
// tests. That it holds every source the commands need is shown by
// TestImageBinariesStatic, which builds in it.
func TestBuildContext(t *testing.T) {
	commands(t) // makes contextDir
	work, err := os.ReadFile(filepath.Join(contextDir, "go.work"))
	if err != nil {
		t.Fatalf("go.work is not in the build context: %v", err)
	}
	for _, dir := range workUses(string(work)) {
		for _, f := range []string{"go.mod", "go.sum"} {
			if _, err := os.Stat(filepath.Join(contextDir, dir, f)); err != nil {
				t.Errorf("go.work uses %s but %s/%s is not in the build context (.dockerignore)", dir, dir, f)
			}
		}
	}
	var tests, files int
	filepath.WalkDir(contextDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			files++
			if strings.HasSuffix(p, "_test.go") {
				tests++
			}
		}
		return nil
	})
	if tests > 0 {
		t.Errorf("%d _test.go files in the build context", tests)
	}
	t.Logf("build context: %d files", files)
}

// workUses returns the directories of a go.work's use directives.
func workUses(work string) []string {
	var dirs []string
	inBlock := false
	for _, line := range strings.Split(work, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "use (":
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case inBlock && line != "":
			dirs = append(dirs, line)
		case strings.HasPrefix(line, "use "):
			dirs = append(dirs, strings.TrimSpace(strings.TrimPrefix(line, "use ")))
		}
	}
	return dirs
}
