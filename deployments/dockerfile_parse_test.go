package deployments

import (
	"fmt"
	"os"
	"strings"
)

// dockerfile is what the tests need of deployments/docker/Dockerfile: its
// stages, and in the build stage the environment and the go build commands.
type dockerfile struct {
	stages []*stage
}

type stage struct {
	from     string            // image reference, variables expanded
	name     string            // AS name
	args     map[string]string // ARG defaults declared in the stage
	env      map[string]string // ENV, variables expanded
	user     string            // last USER
	workdir  string            // last WORKDIR
	labels   map[string]string // LABEL
	copies   [][]string        // COPY arguments (flags included)
	runs     [][]string        // RUN shell scripts, as simple commands of words
	commands []string          // instruction names in order
}

// goBuild is one `go build` of a RUN instruction.
type goBuild struct {
	flags   []string // every argument but -o OUT and the package
	output  string   // -o
	pkg     string   // ./dir/of/the/package, relative to WORKDIR (the repo root)
	guarded bool     // inside an `if`: skipped when its condition fails
}

// parseDockerfile reads a Dockerfile: continuation lines are joined,
// comment lines dropped (as Docker does, also inside a continued
// instruction), variables expanded from ARG defaults, ENV and vars (which
// win, like --build-arg and BuildKit's automatic platform arguments).
func parseDockerfile(path string, vars map[string]string) (*dockerfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var instructions []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		instructions = append(instructions, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("%s: the last instruction ends with a continuation", path)
	}

	d := &dockerfile{}
	global := map[string]string{}
	lookup := func(s *stage) func(string) (string, bool) {
		return func(name string) (string, bool) {
			if v, ok := vars[name]; ok {
				return v, true
			}
			if s != nil {
				if v, ok := s.env[name]; ok {
					return v, true
				}
				if v, ok := s.args[name]; ok {
					return v, true
				}
			}
			v, ok := global[name]
			return v, ok
		}
	}
	var s *stage
	for _, ins := range instructions {
		cmd, rest, _ := strings.Cut(ins, " ")
		cmd = strings.ToUpper(cmd)
		rest = strings.TrimSpace(rest)
		if s != nil {
			s.commands = append(s.commands, cmd)
		}
		switch cmd {
		case "ARG":
			words, err := shellWords(rest, lookup(s))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ins, err)
			}
			for _, w := range flatten(words) {
				name, def, _ := strings.Cut(w, "=")
				if s == nil {
					global[name] = def
				} else if v, ok := global[name]; ok && def == "" {
					s.args[name] = v // ARG NAME in a stage re-declares a global one
				} else {
					s.args[name] = def
				}
			}
		case "FROM":
			words, err := shellWords(rest, lookup(nil))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ins, err)
			}
			w := flatten(words)
			for len(w) > 0 && strings.HasPrefix(w[0], "--") {
				w = w[1:]
			}
			if len(w) == 0 {
				return nil, fmt.Errorf("%s: no image", ins)
			}
			s = &stage{from: w[0], args: map[string]string{}, env: map[string]string{}, labels: map[string]string{}}
			if len(w) == 3 && strings.EqualFold(w[1], "AS") {
				s.name = w[2]
			}
			d.stages = append(d.stages, s)
		case "ENV", "LABEL":
			if s == nil {
				return nil, fmt.Errorf("%s before FROM", cmd)
			}
			words, err := shellWords(rest, lookup(s))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ins, err)
			}
			for _, w := range flatten(words) {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					return nil, fmt.Errorf("%s: %q is not KEY=VALUE", ins, w)
				}
				if cmd == "ENV" {
					s.env[k] = v
				} else {
					s.labels[k] = v
				}
			}
		case "USER":
			s.user = rest
		case "WORKDIR":
			s.workdir = rest
		case "COPY":
			words, err := shellWords(rest, lookup(s))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ins, err)
			}
			s.copies = append(s.copies, flatten(words))
		case "RUN":
			words, err := shellWords(rest, lookup(s))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ins, err)
			}
			// Drop RUN's own flags (--mount=..., --network=...).
			if len(words) > 0 {
				for len(words[0]) > 0 && strings.HasPrefix(words[0][0], "--") {
					words[0] = words[0][1:]
				}
			}
			for _, c := range words {
				if len(c) > 0 {
					s.runs = append(s.runs, c)
				}
			}
		}
	}
	return d, nil
}

func flatten(cmds [][]string) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c...)
	}
	return out
}

// stage returns the stage named name, or the last one for "".
func (d *dockerfile) stage(name string) *stage {
	if name == "" && len(d.stages) > 0 {
		return d.stages[len(d.stages)-1]
	}
	for _, s := range d.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

// goBuilds returns the `go build` commands of the stage's RUN instructions.
func (s *stage) goBuilds() ([]goBuild, error) {
	var out []goBuild
	for _, words := range s.runs {
		guarded := false
		for len(words) > 0 && shellKeyword[words[0]] {
			guarded = guarded || words[0] == "then"
			words = words[1:]
		}
		if len(words) < 2 || words[0] != "go" || words[1] != "build" {
			continue
		}
		b := goBuild{guarded: guarded}
		args := words[2:]
		for i := 0; i < len(args); i++ {
			switch a := args[i]; {
			case a == "-o":
				if i+1 == len(args) {
					return nil, fmt.Errorf("go build: -o without a value: %q", words)
				}
				b.output = args[i+1]
				i++
			case strings.HasPrefix(a, "-o="):
				b.output = strings.TrimPrefix(a, "-o=")
			case goBuildValueFlag[a]:
				// -ldflags VALUE: keep it as the one word -ldflags=VALUE.
				if i+1 == len(args) {
					return nil, fmt.Errorf("go build: %s without a value: %q", a, words)
				}
				b.flags = append(b.flags, a+"="+args[i+1])
				i++
			case strings.HasPrefix(a, "-"):
				b.flags = append(b.flags, a)
			default:
				if b.pkg != "" {
					return nil, fmt.Errorf("go build: more than one package: %q", words)
				}
				b.pkg = a
			}
		}
		if b.output == "" || b.pkg == "" {
			return nil, fmt.Errorf("go build without -o or package: %q", words)
		}
		out = append(out, b)
	}
	return out, nil
}

// goBuildValueFlag are the go build flags that take a value.
var goBuildValueFlag = map[string]bool{"-ldflags": true, "-gcflags": true, "-asmflags": true, "-tags": true, "-mod": true, "-p": true, "-C": true, "-pgo": true, "-buildmode": true, "-installsuffix": true, "-modfile": true, "-overlay": true, "-pkgdir": true, "-toolexec": true}

var shellKeyword = map[string]bool{"if": true, "then": true, "else": true, "elif": true, "fi": true, "do": true, "done": true, "!": true}

// shellWords splits a POSIX shell command line into simple commands (split
// at unquoted ;, &&, || and |) of words, with quotes removed and $VAR and
// ${VAR} expanded by lookup outside single quotes. It knows no more shell
// than the Dockerfile uses: an unknown variable, a command substitution, or
// an unterminated quote is an error rather than a guess.
func shellWords(s string, lookup func(string) (string, bool)) ([][]string, error) {
	var (
		cmds  [][]string
		words []string
		word  strings.Builder
		in    bool // a word is open (it may be empty: "")
	)
	endWord := func() {
		if in {
			words = append(words, word.String())
			word.Reset()
			in = false
		}
	}
	endCmd := func() {
		endWord()
		cmds = append(cmds, words)
		words = nil
	}
	expand := func(i int) (int, error) { // s[i] == '$'
		if i+1 < len(s) && s[i+1] == '(' {
			return 0, fmt.Errorf("command substitution in %q", s)
		}
		var name string
		j := i + 1
		if j < len(s) && s[j] == '{' {
			k := strings.IndexByte(s[j:], '}')
			if k < 0 {
				return 0, fmt.Errorf("unterminated ${ in %q", s)
			}
			name = s[j+1 : j+k]
			j += k + 1
		} else {
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name = s[i+1 : j]
		}
		if name == "" {
			word.WriteByte('$')
			return i + 1, nil
		}
		if strings.ContainsAny(name, ":-+?") {
			return 0, fmt.Errorf("${%s}: parameter expansion operators are not supported here", name)
		}
		v, ok := lookup(name)
		if !ok {
			return 0, fmt.Errorf("$%s is not an ARG, ENV or given variable", name)
		}
		word.WriteString(v)
		in = true
		return j, nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			endWord()
			i++
		case c == ';' || c == '|' || c == '&':
			if c == '&' && !(i+1 < len(s) && s[i+1] == '&') {
				return nil, fmt.Errorf("background & in %q", s)
			}
			endCmd()
			i++
			if i < len(s) && (s[i] == '&' || s[i] == '|') {
				i++
			}
		case c == '\'':
			k := strings.IndexByte(s[i+1:], '\'')
			if k < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			word.WriteString(s[i+1 : i+1+k])
			in = true
			i += k + 2
		case c == '"':
			in = true
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated \" in %q", s)
				}
				if s[i] == '"' {
					i++
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					word.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '`' {
					return nil, fmt.Errorf("command substitution in %q", s)
				}
				if s[i] == '$' {
					j, err := expand(i)
					if err != nil {
						return nil, err
					}
					i = j
					continue
				}
				word.WriteByte(s[i])
				i++
			}
		case c == '\\':
			if i+1 < len(s) {
				word.WriteByte(s[i+1])
				in = true
			}
			i += 2
		case c == '$':
			j, err := expand(i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '`':
			return nil, fmt.Errorf("command substitution in %q", s)
		default:
			word.WriteByte(c)
			in = true
			i++
		}
	}
	endCmd()
	return cmds, nil
}
