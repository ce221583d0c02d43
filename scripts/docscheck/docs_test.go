package docscheck

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/scripts/loadtest"
)

var root = filepath.Join("..", "..")

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	require.NoError(t, err)
	return string(b)
}

// Documents that describe the same thing say the same.
func TestDocsAgree(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"perf.sh and its documents give one duration", func(t *testing.T) {
			minutes := regexp.MustCompile(`about\s+(\d+)\s+(?:#\s*)?minutes`) // perf.sh wraps it in a comment
			want := ""
			for _, path := range []string{"scripts/loadgen/perf.sh", "docs/PERFORMANCE.md", "scripts/loadgen/README.md"} {
				m := minutes.FindStringSubmatch(read(t, path))
				require.NotNil(t, m, "%s gives no duration", path)
				if want == "" {
					want = m[1]
				}
				require.Equal(t, want, m[1], "%s says about %s minutes, perf.sh about %s", path, m[1], want)
			}
		}},
		{"a column a document names is in one of its tables", func(t *testing.T) {
			quoted := regexp.MustCompile(`"([A-Z][A-Za-z ]+)" (?:is|column)`)
			for _, path := range []string{"docs/PERFORMANCE.md", "README.md", "scripts/loadgen/README.md"} {
				doc := read(t, path)
				var headers []string
				for _, line := range strings.Split(doc, "\n") {
					if strings.HasPrefix(line, "|") {
						headers = append(headers, strings.ToLower(line))
					}
				}
				for _, m := range quoted.FindAllStringSubmatch(doc, -1) {
					found := false
					for _, h := range headers {
						found = found || strings.Contains(h, "| "+strings.ToLower(m[1])+" |")
					}
					require.True(t, found, "%s names a %q column that none of its tables has", path, m[1])
				}
			}
		}},
		{"perf.sh's output folder is ignored", func(t *testing.T) {
			out := regexp.MustCompile(`OUT=\$\{1:-([^}]+)\}`).FindStringSubmatch(read(t, "scripts/loadgen/perf.sh"))
			require.NotNil(t, out, "perf.sh's default output folder")
			require.Contains(t, strings.Split(read(t, ".gitignore"), "\n"), out[1]+"/")
		}},
		{"every counter of the load generator is explained", func(t *testing.T) {
			readme := read(t, "scripts/loadgen/README.md")
			fields := []string{"handler_runs", "handler_failures", "foreign"}
			st := reflect.TypeOf(loadtest.PipelineStats{})
			for i := range st.NumField() {
				fields = append(fields, strings.Split(st.Field(i).Tag.Get("json"), ",")[0])
			}
			var rows []string
			for _, line := range strings.Split(readme, "\n") {
				if strings.HasPrefix(line, "| `") {
					rows = append(rows, line)
				}
			}
			for _, f := range fields {
				explained := false
				for _, row := range rows {
					first, _, _ := strings.Cut(strings.TrimPrefix(row, "| "), " | ")
					explained = explained || strings.Contains(first, "`"+f+"`")
				}
				require.True(t, explained, "scripts/loadgen/README.md has no row explaining the %s counter", f)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t)
		})
	}
}
