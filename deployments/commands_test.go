package deployments

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// The repository root, the Dockerfile and its build context.
var (
	repoRoot       = mustAbs("..")
	dockerfilePath = filepath.Join(repoRoot, "deployments", "docker", "Dockerfile")
	dockerignore   = filepath.Join(repoRoot, ".dockerignore")
)

// testVersion is passed as the Dockerfile's VERSION build argument.
const testVersion = "v0.0.0-deployments-test"

// binDir is where the commands are built, once for the whole test binary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "retrigger-deployments-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

// dockerVars are the build arguments of a `docker build` for this machine:
// BuildKit's automatic platform arguments, and VERSION.
func dockerVars() map[string]string {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	return map[string]string{
		"BUILDPLATFORM": platform, "TARGETPLATFORM": platform,
		"BUILDOS": runtime.GOOS, "BUILDARCH": runtime.GOARCH,
		"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH,
		"VERSION": testVersion,
	}
}

// command is one command of the image, built as the Dockerfile builds it.
type command struct {
	name    string  // binary name in the image (-o's base name)
	build   goBuild // the Dockerfile's go build
	bin     string  // the binary built here, "" if skipped
	skipped string  // why it was not built
	help    string  // its -help output
	flags   map[string]flag
}

// flag is one line of a command's -help: "  -name, RETRIGGER_NAME (default d)".
type flag struct {
	name, env, def string
	hasDefault     bool
}

var helpLine = regexp.MustCompile(`^  -([a-z0-9][a-z0-9-]*), (RETRIGGER_[A-Z0-9_]+)(?: \(default (.*)\))?$`)

// parseHelp reads the flags of a command's -help output.
func parseHelp(out string) (map[string]flag, error) {
	flags := map[string]flag{}
	for _, line := range strings.Split(out, "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		wantEnv := "RETRIGGER_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
		if m[2] != wantEnv {
			return nil, fmt.Errorf("flag -%s is listed with variable %s, want %s", m[1], m[2], wantEnv)
		}
		flags[m[1]] = flag{name: m[1], env: m[2], def: m[3], hasDefault: strings.Contains(line, " (default ")}
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("no flag found in -help output:\n%s", out)
	}
	return flags, nil
}

// byEnv returns the flag whose variable is env.
func (c *command) byEnv(env string) (flag, bool) {
	for _, f := range c.flags {
		if f.env == env {
			return f, true
		}
	}
	return flag{}, false
}

var (
	commandsOnce sync.Once
	commandsList []*command
	commandsErr  error
	contextDir   string
)

// commands builds every command the Dockerfile builds, in a copy of the
// Docker build context (the repository filtered by .dockerignore), with the
// Dockerfile's environment and go build flags, and reads their -help.
// Commands whose package directory is not in the repository are returned
// with skipped set.
func commands(t *testing.T) []*command {
	t.Helper()
	commandsOnce.Do(func() { commandsList, commandsErr = buildCommands() })
	if commandsErr != nil {
		t.Fatalf("building the commands as the Dockerfile does: %v", commandsErr)
	}
	return commandsList
}

// builtCommand returns the command named name, built, or skips the test.
func builtCommand(t *testing.T, name string) *command {
	t.Helper()
	for _, c := range commands(t) {
		if c.name == name {
			if c.skipped != "" {
				t.Skipf("command %s: %s", name, c.skipped)
			}
			return c
		}
	}
	t.Fatalf("the Dockerfile builds no command %q", name)
	return nil
}

func buildCommands() ([]*command, error) {
	d, err := parseDockerfile(dockerfilePath, dockerVars())
	if err != nil {
		return nil, err
	}
	build := d.stage("build")
	if build == nil {
		return nil, errors.New("the Dockerfile has no stage named build")
	}
	builds, err := build.goBuilds()
	if err != nil {
		return nil, err
	}
	if len(builds) == 0 {
		return nil, errors.New("the build stage runs no go build")
	}
	ctxDir := filepath.Join(binDir, "context")
	if err := copyBuildContext(repoRoot, ctxDir); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	contextDir = ctxDir
	env := buildEnv(build.env)
	var out []*command
	for _, b := range builds {
		c := &command{name: path.Base(b.output), build: b}
		out = append(out, c)
		pkgDir := filepath.Join(repoRoot, filepath.FromSlash(b.pkg))
		if _, err := os.Stat(pkgDir); errors.Is(err, fs.ErrNotExist) {
			c.skipped = fmt.Sprintf("package %s does not exist in the repository yet (the Dockerfile builds it once it does)", b.pkg)
			continue
		}
		c.bin = filepath.Join(binDir, "bin", c.name)
		args := append(append([]string{"build"}, b.flags...), "-o", c.bin, b.pkg)
		cmd := exec.Command("go", args...)
		cmd.Dir = ctxDir
		cmd.Env = env
		if outb, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s (in the build context, env %v): %v\n%s", strings.Join(args, " "), build.env, err, outb)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		help, err := exec.CommandContext(ctx, c.bin, "-help").CombinedOutput()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s -help: %v\n%s", c.name, err, help)
		}
		c.help = string(help)
		if c.flags, err = parseHelp(c.help); err != nil {
			return nil, fmt.Errorf("%s -help: %w", c.name, err)
		}
	}
	return out, nil
}

// buildEnv is this process's environment with the Dockerfile's ENV on top,
// without the settings that would make the build differ from the image's:
// GOFLAGS (the golang image sets none) and GOWORK (the context's go.work
// must be the one used).
func buildEnv(dockerEnv map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := dockerEnv[k]; ok || k == "GOFLAGS" || k == "GOWORK" {
			continue
		}
		env = append(env, kv)
	}
	keys := make([]string, 0, len(dockerEnv))
	for k := range dockerEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+dockerEnv[k])
	}
	return env
}

// contextMatcher reads .dockerignore as Docker does.
func contextMatcher() (*patternmatcher.PatternMatcher, error) {
	f, err := os.Open(dockerignore)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return patternmatcher.New(patterns)
}

// copyBuildContext copies the files of root that .dockerignore lets into
// the build context to dst.
func copyBuildContext(root, dst string) error {
	pm, err := contextMatcher()
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ".git" {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil || excluded {
			return err
		}
		return copyFile(p, filepath.Join(dst, filepath.FromSlash(rel)))
	})
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// staticELF reports why the ELF file at path is not a static executable:
// a program interpreter (PT_INTERP, the dynamic loader) or shared libraries
// it needs (DT_NEEDED).
func staticELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var problems []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(p.Open())
			problems = append(problems, fmt.Sprintf("program interpreter %s", bytes.TrimRight(interp, "\x00")))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	if len(libs) > 0 {
		problems = append(problems, fmt.Sprintf("needs shared libraries %v", libs))
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		problems = append(problems, fmt.Sprintf("ELF type %v is not an executable", f.Type))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// imageBinary maps an absolute path in the image (/usr/local/bin/NAME) to
// the command the Dockerfile builds under that name, or nil.
func imageBinary(t *testing.T, p string) *command {
	t.Helper()
	if path.Dir(p) != "/usr/local/bin" {
		return nil
	}
	for _, c := range commands(t) {
		if c.name == path.Base(p) {
			return c
		}
	}
	return nil
}
