package docscheck

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/metrics"
)

// The README's table of metrics is the metrics shared/metrics defines:
// each name, type, labels, the commands that export it and its help.
func TestReadmeListsTheMetrics(t *testing.T) {
	t.Parallel()
	var want []string
	for _, d := range metrics.New("docscheck").Definitions() {
		labels := make([]string, len(d.Labels))
		for i, l := range d.Labels {
			labels[i] = "`" + l + "`"
		}
		parts := "every command"
		if d.Parts != nil {
			ps := make([]string, len(d.Parts))
			for i, p := range d.Parts {
				ps[i] = string(p)
			}
			parts = strings.Join(ps, ", ")
		}
		want = append(want, fmt.Sprintf("| `%s` | %s | %s | %s | %s |", d.Name, d.Type, strings.Join(labels, ", "), parts, d.Help))
	}
	var got []string
	for _, line := range strings.Split(read(t, "README.md"), "\n") {
		if strings.HasPrefix(line, "| `retrigger_") {
			got = append(got, line)
		}
	}
	require.Equal(t, want, got, "README.md's table of metrics (| metric | type | labels | exported by | meaning |)")
}
