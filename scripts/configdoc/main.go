// Command configdoc writes docs/CONFIGURATION.md, the reference of every
// flag of every command, from the commands' own -help output: it builds
// the producer, the consumer, the archiver, the local run and the load
// generator, runs each with -help, and renders what they print. Run it
// from the repository root after changing a flag:
//
//	go run ./scripts/configdoc -write
//
// Its test fails when the file and the commands disagree.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// commands are the documented commands: their name, package and what the
// section adds to their -help.
var commands = []struct {
	name, pkg, note string
}{
	{"producer", "./producer/cmd/producer", "Run one. A numeric or duration flag set to 0 takes its default unless its rule says what 0 means. Tracing is set by the OTEL_* variables (README, Tracing)."},
	{"consumer", "./consumer/cmd/consumer", "Run as many replicas as the load needs. A numeric or duration flag set to 0 takes its default unless its rule says what 0 means. Tracing is set by the OTEL_* variables (README, Tracing)."},
	{"archiver", "./consumer/cmd/archiver", "Run one or more. A numeric or duration flag set to 0 takes its default. Tracing is set by the OTEL_* variables (README, Tracing)."},
	{"dev", "./scripts/dev", "`go run ./scripts/dev`: the local run of the README's quick start; every value is checked as given."},
	{"loadgen", "./scripts/loadgen", "`go run ./scripts/loadgen`: see `scripts/loadgen/README.md`. A numeric or duration flag set to 0 takes its default unless its rule says what 0 means."},
}

func main() {
	write := flag.Bool("write", false, "write docs/CONFIGURATION.md instead of printing it")
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	doc, err := Generate(*root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "configdoc: %v\n", err)
		os.Exit(1)
	}
	if !*write {
		fmt.Print(doc)
		return
	}
	if err := os.WriteFile(filepath.Join(*root, "docs", "CONFIGURATION.md"), []byte(doc), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "configdoc: %v\n", err)
		os.Exit(1)
	}
}

// Generate builds the commands of the repository at root and renders the
// reference from their -help output.
func Generate(root string) (string, error) {
	bin, err := os.MkdirTemp("", "retrigger-configdoc-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(bin)
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, c := range commands {
		args = append(args, c.pkg)
	}
	build := exec.Command("go", args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the commands: %w\n%s", err, out)
	}
	helps := map[string]string{}
	for _, c := range commands {
		var out bytes.Buffer
		run := exec.Command(filepath.Join(bin, filepath.Base(c.pkg)), "-help")
		run.Stdout, run.Stderr = &out, &out
		run.Env = cleanEnv()
		if err := run.Run(); err != nil {
			return "", fmt.Errorf("%s -help: %w\n%s", c.name, err, out.String())
		}
		helps[c.name] = out.String()
	}
	return Render(helps)
}

// cleanEnv is the environment without RETRIGGER_* variables, which -help
// does not read, but a command might one day.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RETRIGGER_") {
			env = append(env, kv)
		}
	}
	return env
}

// Flag is one flag as -help prints it.
type Flag struct {
	Name, Env, Default, Usage string
	HasDefault                bool
}

var flagLine = regexp.MustCompile(`^  -([a-z0-9][a-z0-9-]*), (RETRIGGER_[A-Z0-9_]+)(?: \(default (.*)\))?$`)

// Parse reads a command's -help output: its summary line and its flags.
func Parse(name, help string) (summary string, flags []Flag, err error) {
	lines := strings.Split(strings.TrimRight(help, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], name+": ") {
		return "", nil, fmt.Errorf("%s -help does not start with %q and a summary", name, name+": ")
	}
	summary = strings.TrimPrefix(lines[0], name+": ")
	for i := 1; i < len(lines); i++ {
		m := flagLine.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "    \t") {
			return "", nil, fmt.Errorf("%s -help: flag -%s has no usage line", name, m[1])
		}
		flags = append(flags, Flag{Name: m[1], Env: m[2], Default: m[3], HasDefault: strings.Contains(lines[i], " (default "),
			Usage: strings.TrimPrefix(lines[i+1], "    \t")})
		i++
	}
	if len(flags) == 0 {
		return "", nil, errors.New(name + " -help lists no flag")
	}
	return summary, flags, nil
}

const intro = `# Configuration

Every flag of every command, with its ` + "`RETRIGGER_*`" + ` environment variable,
its default, and the values it takes. This file is generated from the
commands' own ` + "`-help`" + ` output (` + "`go run ./scripts/configdoc -write`" + `), and
` + "`go test ./scripts/configdoc`" + ` fails when it and the commands disagree.

How every command reads its settings:

- Each flag has a variable: ` + "`-nats-url`" + ` is ` + "`RETRIGGER_NATS_URL`" + `. A flag on the
  command line beats its variable.
- A bad value stops the command before it connects, with exit code 2 and
  a message that names the flag and its variable, e.g. ` + "`invalid -stream-replicas\n  (RETRIGGER_STREAM_REPLICAS): must be 1 to 5 (JetStream's range; 3 in\n  production), got 7`" + `.
- A float flag never takes ` + "`NaN`" + ` or ` + "`±Inf`" + `.
- Connection strings (` + "`-mongodb-uri`" + `, ` + "`-nats-url`" + `, the URLs of ` + "`-handlers`" + `)
  are shown with their credentials masked in every message, log line and
  result: the user information, secret options (` + "`password=`" + `, ` + "`token=`" + `,
  ` + "`tlsCertificateKeyFilePassword`" + `, ` + "`authMechanismProperties`" + `, ...) and
  anything that could be one in a string that does not parse.
- The stock commands (producer, consumer, archiver) wait up to
  ` + "`-connect-timeout`" + ` for MongoDB and NATS at start, saying every few seconds
  what they wait for, then exit 1 with the cause. They can start in any
  order: the consumer and the archiver create the streams they need when
  the producer has not yet, and the producer then applies its settings.
`

// Render is the reference for the -help outputs of the commands.
func Render(helps map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString(intro)
	for _, c := range commands {
		summary, flags, err := Parse(c.name, helps[c.name])
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n%s\n\n", c.name, sentence(summary), c.note)
		b.WriteString("| flag | variable | default | what it sets, and the values it takes |\n|---|---|---|---|\n")
		for _, f := range flags {
			def := "none"
			if f.HasDefault && f.Default != "" {
				def = "`" + f.Default + "`"
			}
			fmt.Fprintf(&b, "| `-%s` | `%s` | %s | %s |\n", f.Name, f.Env, def, cell(f.Usage))
		}
	}
	return b.String(), nil
}

// sentence capitalises the summary.
func sentence(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// cell makes text safe in a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer(`\`, `\\`, "|", `\|`, "*", `\*`, "<", "&lt;", ">", "&gt;").Replace(s)
}
