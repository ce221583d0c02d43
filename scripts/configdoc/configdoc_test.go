package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docs/CONFIGURATION.md is what the commands' -help says: a flag added,
// removed or reworded without regenerating it fails here.
func TestConfigurationDocMatchesTheCommands(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	want, err := Generate(root)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(root, "docs", "CONFIGURATION.md"))
	require.NoError(t, err)
	if string(got) != want {
		gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		for i := 0; i < max(len(gotLines), len(wantLines)); i++ {
			g, w := line(gotLines, i), line(wantLines, i)
			if g != w {
				t.Fatalf("docs/CONFIGURATION.md differs from the commands' -help at line %d:\n file: %s\n help: %s\nrun: go run ./scripts/configdoc -write", i+1, g, w)
			}
		}
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end of file)"
}

func TestParse(t *testing.T) {
	t.Parallel()
	help := "x: does x; needs y.\n\nUsage of x (every flag can also be set by its environment variable):\n" +
		"  -a-b, RETRIGGER_A_B (default 1s)\n    \tthe a (not negative)\n" +
		"  -c, RETRIGGER_C\n    \tthe c | with a pipe\n"
	summary, flags, err := Parse("x", help)
	require.NoError(t, err)
	require.Equal(t, "does x; needs y.", summary)
	require.Equal(t, []Flag{
		{Name: "a-b", Env: "RETRIGGER_A_B", Default: "1s", HasDefault: true, Usage: "the a (not negative)"},
		{Name: "c", Env: "RETRIGGER_C", Usage: "the c | with a pipe"},
	}, flags)
	_, _, err = Parse("x", "Usage of x:\n")
	require.ErrorContains(t, err, "summary")
	out, err := Render(map[string]string{"producer": help, "consumer": help, "archiver": help, "dev": help, "loadgen": help})
	require.Error(t, err, "each command is parsed under its own name")
	require.Empty(t, out)
}
