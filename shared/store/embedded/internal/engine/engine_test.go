package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(killChildEnv) != "" {
		killChild()
		return
	}
	goleak.VerifyTestMain(m)
}

var (
	nsA = NS{"db", "a"}
	nsB = NS{"db", "b"}
)

func testOptions(path string) Options {
	return Options{Path: path, OplogMinSize: 1000, OplogMaxSize: 2000, OplogMinAge: time.Second, OplogMaxAge: time.Hour}
}

func openT(t *testing.T, opts Options) (*Engine, Recovery) {
	t.Helper()
	e, rec, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e, rec
}

// d builds a document of key, value pairs; a value built by d nests, an
// int is an int32.
func d(pairs ...any) bsonkit.Doc {
	var doc bson.D
	for i := 0; i < len(pairs); i += 2 {
		v := pairs[i+1]
		switch x := v.(type) {
		case bsonkit.Doc:
			v = *x
		case int: // as BSON decodes it
			v = int32(x)
		}
		doc = append(doc, bson.E{Key: pairs[i].(string), Value: v})
	}
	return &doc
}

func insert(t *testing.T, e *Engine, ns NS, docs ...bsonkit.Doc) {
	t.Helper()
	require.NoError(t, e.Write(func(txn *Txn) error {
		_, err := txn.Insert(ns, docs, true)
		return err
	}))
}

// dump is the committed state as text: per collection, each document's
// extended JSON in natural order, its indexes, and the oplog's entries.
func dump(t *testing.T, e *Engine) string {
	t.Helper()
	v, _, err := e.Current()
	require.NoError(t, err)
	var b strings.Builder
	for _, ns := range v.namespaces() {
		fmt.Fprintf(&b, "%s:\n", ns)
		docs, err := v.Find(ns, nil, nil, 0, 0)
		require.NoError(t, err)
		for _, doc := range docs {
			fmt.Fprintf(&b, "  %s\n", jsonOf(t, doc))
		}
		for _, s := range v.Indexes(ns) {
			fmt.Fprintf(&b, "  index %s %s unique=%v\n", s.Name, jsonOf(t, s.Key), s.Unique)
		}
	}
	for _, entry := range v.Oplog() {
		fmt.Fprintf(&b, "oplog %s\n", jsonOf(t, entry))
	}
	return b.String()
}

func jsonOf(t *testing.T, doc bsonkit.Doc) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(doc, true, false)
	require.NoError(t, err)
	return string(b)
}

func ids(t *testing.T, e *Engine, ns NS) []string {
	t.Helper()
	v, _, err := e.Current()
	require.NoError(t, err)
	docs, err := v.Find(ns, nil, nil, 0, 0)
	require.NoError(t, err)
	out := make([]string, len(docs))
	for i, doc := range docs {
		out[i] = fmt.Sprint(bsonkit.Get(doc, "_id"))
	}
	return out
}

// copyDir copies the files of dir (no subdirectories) into a new
// directory: what a kill -9 would leave on disk, since a process's writes
// are in the page cache once write returns.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, entry := range entries {
		if entry.IsDir() {
			continue
		}
		src, err := os.Open(filepath.Join(dir, entry.Name()))
		require.NoError(t, err)
		out, err := os.Create(filepath.Join(dst, entry.Name()))
		require.NoError(t, err)
		_, err = io.Copy(out, src)
		require.NoError(t, err)
		require.NoError(t, src.Close())
		require.NoError(t, out.Close())
	}
	return dst
}

// everyKind writes one of each kind of change.
func everyKind(t *testing.T, e *Engine) {
	t.Helper()
	insert(t, e, nsA, d("_id", "a1", "n", 1), d("_id", "a2", "n", 2), d("_id", "a3", "n", 3))
	require.NoError(t, e.Write(func(txn *Txn) error {
		return txn.CreateIndex(nsA, IndexSpec{Name: "n_unique", Key: d("n", 1), Unique: true})
	}))
	require.NoError(t, e.Write(func(txn *Txn) error {
		return txn.CreateIndex(nsA, IndexSpec{Name: "m", Key: d("m", 1)})
	}))
	require.NoError(t, e.Write(func(txn *Txn) error {
		_, err := txn.Update(nsA, d("_id", "a1"), d("$set", d("m", "x"), "$unset", d("n", "")), 1, false)
		return err
	}))
	require.NoError(t, e.Write(func(txn *Txn) error {
		_, err := txn.Replace(nsA, d("_id", "a2"), d("n", 20, "r", true), false)
		return err
	}))
	require.NoError(t, e.Write(func(txn *Txn) error {
		_, err := txn.Delete(nsA, d("_id", "a3"), 1)
		return err
	}))
	require.NoError(t, e.Write(func(txn *Txn) error { // one write, two collections
		if _, err := txn.Update(nsB, d("_id", "b1"), d("$inc", d("c", 1)), 1, true); err != nil {
			return err
		}
		_, err := txn.Insert(nsA, bsonkit.List{d("_id", "a4", "n", 4)}, true)
		return err
	}))
	insert(t, e, NS{"db", "gone"}, d("_id", "g1"))
	require.NoError(t, e.Write(func(txn *Txn) error { return txn.Drop(NS{"db", "gone"}) }))
}

func TestReopenRestoresStateIndexesAndOplog(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "after Close", true: "after a crash"}[crash], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data", "db")
			e, rec, err := Open(testOptions(path))
			require.NoError(t, err)
			require.True(t, rec.Created)
			everyKind(t, e)
			want := dump(t, e)
			if crash {
				path = filepath.Join(copyDir(t, filepath.Dir(path)), "db")
			}
			require.NoError(t, e.Close())

			e, rec = openT(t, testOptions(path))
			require.Equal(t, want, dump(t, e))
			require.Empty(t, rec.Dropped)
			if crash {
				require.Equal(t, 9, rec.Records, "each write one record: %s", rec)
			} else {
				require.Zero(t, rec.Records, "Close wrote a snapshot of everything: %s", rec)
				require.Equal(t, 4, rec.Documents)
			}
			// the unique index is enforced after the reopen
			err = e.Write(func(txn *Txn) error {
				_, err := txn.Insert(nsA, bsonkit.List{d("_id", "a5", "n", 4)}, true)
				return err
			})
			require.ErrorIs(t, err, ErrDuplicate)
			// and timestamps go on after the last one
			before := e.clock.last
			insert(t, e, nsA, d("_id", "a6", "n", 6))
			v, _, _ := e.Current()
			require.True(t, EntryTS(v.Oplog()[len(v.Oplog())-1]).After(before))
		})
	}
}

func TestOperationsAreAtomic(t *testing.T) {
	e, _ := openT(t, testOptions(filepath.Join(t.TempDir(), "db")))
	require.NoError(t, e.Write(func(txn *Txn) error {
		return txn.CreateIndex(nsA, IndexSpec{Name: "k", Key: d("k", 1), Unique: true})
	}))
	insert(t, e, nsA, d("_id", 1, "k", "x"))
	before := dump(t, e)

	// an ordered insert keeps the documents before the one that fails
	err := e.Write(func(txn *Txn) error {
		_, err := txn.Insert(nsA, bsonkit.List{d("_id", 2, "k", "y"), d("_id", 3, "k", "x"), d("_id", 4, "k", "z")}, true)
		return err
	})
	require.ErrorIs(t, err, ErrDuplicate)
	require.Equal(t, before, dump(t, e), "the failed write changed nothing")

	// a write whose second operation fails is undone whole
	err = e.Write(func(txn *Txn) error {
		if _, err := txn.Insert(nsA, bsonkit.List{d("_id", 5, "k", "five")}, true); err != nil {
			return err
		}
		_, err := txn.Update(nsA, d("_id", 5), d("$set", d("k", "x")), 1, false)
		return err
	})
	require.ErrorIs(t, err, ErrDuplicate)
	require.Equal(t, before, dump(t, e))

	// a failed operation inside a write that goes on leaves no trace
	require.NoError(t, e.Write(func(txn *Txn) error {
		_, err := txn.Insert(nsA, bsonkit.List{d("_id", 1)}, true)
		require.ErrorIs(t, err, ErrDuplicate)
		_, err = txn.Insert(nsA, bsonkit.List{d("_id", 6, "k", "six")}, true)
		return err
	}))
	require.Equal(t, []string{"1", "6"}, ids(t, e, nsA))
}

// TestSnapshotsReplaceJournals floods the engine from several writers, so
// that a batch is always pending: snapshots still come every
// SnapshotBytes, and replace the journals they cover.
func TestSnapshotsReplaceJournals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	opts := testOptions(path)
	opts.SnapshotBytes = 8 << 10
	// A short history, trimmed by size only: a reopen in a later second
	// trims no more than the engine did.
	opts.OplogMinSize, opts.OplogMaxSize, opts.OplogMinAge, opts.OplogMaxAge = 10, 20, 0, time.Hour
	e, _ := openT(t, opts)
	pad := strings.Repeat("p", 300)
	var (
		wg      sync.WaitGroup
		largest atomic.Int64
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				id := fmt.Sprintf("g%d-%d", g, i)
				if err := e.Write(func(txn *Txn) error {
					if _, err := txn.Delete(nsA, d("_id", fmt.Sprintf("g%d-%d", g, i-5)), 1); err != nil {
						return err
					}
					_, err := txn.Insert(nsA, bsonkit.List{d("_id", id, "pad", pad)}, true)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
				gens, _ := journals(path)
				if st, err := os.Stat(journalPath(path, gens[len(gens)-1])); err == nil && st.Size() > largest.Load() {
					largest.Store(st.Size())
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, e.SnapshotErr())
	// 800 writes of about 700 bytes: some 70 snapshots' worth. A journal
	// grows past the threshold by what is written while a snapshot is
	// being written, not by the whole flood.
	require.Less(t, largest.Load(), int64(200<<10), "the largest journal")
	want := dump(t, e)
	crashed := filepath.Join(copyDir(t, dir), "db")
	require.NoError(t, e.Close())

	for _, p := range []string{path, crashed} {
		o := opts
		o.Path = p
		e2, rec := openT(t, o)
		require.Equal(t, want, dump(t, e2), rec.String())
		require.Greater(t, rec.Generation, uint64(10), rec.String())
		require.NoError(t, e2.Close())
	}
}

// TestConcurrentWritersShareCommits: many writers at once, each sees its
// own write committed and durable when Write returns.
func TestConcurrentWritersShareCommits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	e, _ := openT(t, testOptions(path))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := fmt.Sprintf("g%d-%03d", g, i)
				if err := e.Write(func(txn *Txn) error {
					_, err := txn.Insert(nsA, bsonkit.List{d("_id", id)}, true)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
				v, _, _ := e.Current()
				if docs, _ := v.Find(nsA, d("_id", id), nil, 0, 0); len(docs) != 1 {
					t.Errorf("%s not visible after its write returned", id)
				}
			}
		}()
	}
	wg.Wait()
	e2, rec := openT(t, testOptions(filepath.Join(copyDir(t, dir), "db")))
	got := ids(t, e2, nsA)
	sort.Strings(got)
	require.Len(t, got, 400, rec.String())
	require.Equal(t, 400, rec.Records, "one record a write")
}

// A write that fails on another's write (a duplicate key) returns once that
// write is durable, so that a read right after it finds it: readers see
// durable writes only, and an optimistic retry loop (read, then write on a
// condition) must not spin on a state it cannot read yet.
func TestFailedWriteReturnsOnceWhatItSawIsDurable(t *testing.T) {
	e, _ := openT(t, testOptions(filepath.Join(t.TempDir(), "db")))
	for round := range 50 {
		id := fmt.Sprintf("r%d", round)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := e.Write(func(txn *Txn) error {
					_, err := txn.Insert(nsA, bsonkit.List{d("_id", id)}, true)
					return err
				})
				if errors.Is(err, ErrDuplicate) {
					v, _, _ := e.Current()
					if docs, _ := v.Find(nsA, d("_id", id), nil, 0, 0); len(docs) != 1 {
						t.Errorf("%s: a duplicate, yet a read after it does not find the document", id)
					}
				} else if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
}
