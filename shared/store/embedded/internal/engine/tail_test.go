package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// crashedWith10 writes ten documents, one Write each, and returns the data
// file of what a crash right after would leave, and the journal's record
// offsets (the start of each record, then the end).
func crashedWith10(t *testing.T) (path string, offsets []int64) {
	t.Helper()
	dir := t.TempDir()
	e, _ := openT(t, testOptions(filepath.Join(dir, "db")))
	offsets = append(offsets, e.j.size)
	for i := range 10 {
		insert(t, e, nsA, d("_id", i, "data", fmt.Sprintf("document %d", i)))
		offsets = append(offsets, e.j.size) // the flusher is idle once Write returned
	}
	path = filepath.Join(copyDir(t, dir), "db")
	require.NoError(t, e.Close())
	return path, offsets
}

func TestTornOrCorruptTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, journal string, offsets []int64)
		keep   int    // documents recovered
		reason string // of the dropped tail; "" for none
		from   int    // record from whose start the tail is dropped
	}{
		{"intact", func(*testing.T, string, []int64) {}, 10, "", 0},
		{"last record cut short", func(t *testing.T, j string, o []int64) {
			require.NoError(t, os.Truncate(j, o[10]-3))
		}, 9, "an incomplete record (cut short)", 9},
		{"last record's header cut short", func(t *testing.T, j string, o []int64) {
			require.NoError(t, os.Truncate(j, o[9]+5))
		}, 9, "an incomplete record (its header cut short)", 9},
		{"a byte of the last record flipped", func(t *testing.T, j string, o []int64) {
			flip(t, j, o[10]-2)
		}, 9, "a record whose checksum does not match", 9},
		{"a byte of a middle record flipped", func(t *testing.T, j string, o []int64) {
			flip(t, j, o[5]+frameHead+3)
		}, 5, "a record whose checksum does not match", 5},
		{"a length flipped", func(t *testing.T, j string, o []int64) {
			flip(t, j, o[7]+1)
		}, 7, "", 7},
		{"garbage after the end", func(t *testing.T, j string, o []int64) {
			f, err := os.OpenFile(j, os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte("garbage"), o[10]+100)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, 10, "a record whose checksum does not match", 10},
		{"the header cut short", func(t *testing.T, j string, o []int64) {
			require.NoError(t, os.Truncate(j, 20))
		}, 0, "a journal header that does not check out", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, offsets := crashedWith10(t)
			j := journalPath(path, 1)
			tt.damage(t, j, offsets)
			data, err := os.ReadFile(j)
			require.NoError(t, err)
			if tt.name == "intact" {
				require.Greater(t, len(data), int(offsets[10]), "zeros are written ahead of the records")
				require.True(t, allZero(data[offsets[10]:]))
			}
			for len(data) > 0 && data[len(data)-1] == 0 {
				data = data[:len(data)-1] // a dropped tail is counted without the zeros ahead
			}

			e, rec := openT(t, testOptions(path))
			require.Len(t, ids(t, e, nsA), tt.keep, rec.String())
			require.Equal(t, tt.keep, rec.Records)
			if tt.name == "intact" {
				require.Empty(t, rec.Dropped)
			} else {
				require.Len(t, rec.Dropped, 1, rec.String())
				dr := rec.Dropped[0]
				require.Equal(t, j, dr.File)
				if tt.reason != "" {
					require.Contains(t, dr.Reason, tt.reason)
				}
				at := int64(0)
				if tt.from >= 0 {
					at = offsets[tt.from]
				}
				require.Equal(t, at, dr.Offset)
				require.Equal(t, int64(len(data))-at, dr.Bytes)
				require.Contains(t, rec.String(), "dropped the journal tail "+j)
			}

			// The tail is gone from the file: writes go on after the last
			// good record, and a crash after them recovers them all.
			insert(t, e, nsA, d("_id", "after"))
			crashed := filepath.Join(copyDir(t, filepath.Dir(path)), "db")
			e2, rec2 := openT(t, testOptions(crashed))
			require.Empty(t, rec2.Dropped, rec2.String())
			require.Equal(t, ids(t, e, nsA), ids(t, e2, nsA))
			require.Contains(t, ids(t, e2, nsA), "after")
		})
	}
}

func flip(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, at)
	require.NoError(t, err)
	b[0] ^= 0x5a
	_, err = f.WriteAt(b, at)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// TestDamagedJournalBeforeAnotherIsRefused: only the last journal can have
// been cut short by a crash; a bad record in an earlier one is damage, and
// dropping it would replay the later journal on a state it does not follow.
func TestDamagedJournalBeforeAnotherIsRefused(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(filepath.Join(dir, "db"))
	e, _ := openT(t, opts)
	insert(t, e, nsA, d("_id", 1))
	insert(t, e, nsA, d("_id", 2))
	crashed := copyDir(t, dir)
	require.NoError(t, e.Close())
	path := filepath.Join(crashed, "db")
	// a second journal after the first, as a rotation would leave it
	j2, err := createJournal(osFS{}, path, 2)
	require.NoError(t, err)
	require.NoError(t, j2.append([][]byte{mustRecord(t, nsA, 3)}, nil))
	require.NoError(t, j2.close())
	flip(t, journalPath(path, 1), headerSize+frameHead+2)

	_, _, err = Open(testOptions(path))
	require.Error(t, err)
	require.Contains(t, err.Error(), "the journal is damaged, not torn")
	require.Contains(t, err.Error(), journalPath(path, 1))
}

func mustRecord(t *testing.T, ns NS, id int) []byte {
	t.Helper()
	doc := d("_id", id)
	b, err := encodeRecord([]journalOp{{entry: newEntry(new(clock).next(), ns, "insert", doc, nil)}})
	require.NoError(t, err)
	return b
}
