package messaging

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite deployments/streams from the code")

// The stream definitions operators load with `nats stream add --config`
// are the ones the producer creates.
func TestStreamDefinitionsMatchCode(t *testing.T) {
	t.Parallel()
	n := DefaultNames()
	for _, cfg := range []any{n.EventsConfig(StreamOptions{}), n.DLQConfig(StreamOptions{})} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		require.NoError(t, enc.Encode(cfg))
		want := buf.Bytes()
		var named struct{ Name string }
		require.NoError(t, json.Unmarshal(want, &named))
		path := filepath.Join("..", "..", "deployments", "streams", named.Name+".json")
		if *update {
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, want, 0o644))
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err, "run: go test ./shared/messaging -run TestStreamDefinitionsMatchCode -update")
		require.Equal(t, string(want), string(got), "%s is out of date: rerun with -update", path)
	}
}
