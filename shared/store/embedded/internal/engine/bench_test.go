package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Run: go test -run '^$' -bench . ./shared/store/embedded/internal/engine/

// BenchmarkJournalSync measures what a durable write waits for at the
// least: a 1.5 KB write over zeros written ahead, and fdatasync, as the
// journal appends a batch. The disk's flush sets it; a durable writer alone
// cannot go faster than one of these per write.
func BenchmarkJournalSync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "sync"), os.O_CREATE|os.O_RDWR, 0o600)
	require.NoError(b, err)
	defer f.Close()
	zeros := make([]byte, 1<<20)
	for range 64 {
		_, err := f.Write(zeros)
		require.NoError(b, err)
	}
	require.NoError(b, f.Sync())
	buf := make([]byte, 1500)
	off := int64(0)
	for b.Loop() {
		if off+int64(len(buf)) > 64<<20 {
			off = 0
		}
		_, err := f.WriteAt(buf, off)
		require.NoError(b, err)
		require.NoError(b, datasync(f))
		off += int64(len(buf))
	}
}
