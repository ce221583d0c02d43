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
	"syscall"
	"testing"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"github.com/stretchr/testify/require"
)

// faultFS is the real file system with faults injected: while full is
// set, a write stores half of its bytes and fails with ENOSPC, as a full
// disk does (for the files whose name contains only, when it is set). It
// also records how much of each file the last Sync made durable.
type faultFS struct {
	full   atomic.Bool
	eio    atomic.Bool // the next Sync fails with EIO, as a disk that could not write back
	only   string
	mu     sync.Mutex
	synced map[string]int64
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := osFS{}.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{file: f, fs: fs, name: name}, nil
}

func (fs *faultFS) failing(name string) bool {
	return fs.full.Load() && strings.Contains(name, fs.only)
}

type faultFile struct {
	file
	fs   *faultFS
	name string
}

func (f *faultFile) enospc() error {
	return &os.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.fs.failing(f.name) {
		n, _ := f.file.Write(p[:len(p)/2])
		return n, f.enospc()
	}
	return f.file.Write(p)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.failing(f.name) {
		n, _ := f.file.WriteAt(p[:len(p)/2], off)
		return n, f.enospc()
	}
	return f.file.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if strings.Contains(f.name, f.fs.only) && f.fs.eio.CompareAndSwap(true, false) {
		return &os.PathError{Op: "fdatasync", Path: f.name, Err: syscall.EIO}
	}
	if err := f.file.Sync(); err != nil {
		return err
	}
	st, err := os.Stat(f.name)
	if err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.synced == nil {
		f.fs.synced = map[string]int64{}
	}
	f.fs.synced[f.name] = st.Size()
	return nil
}

func TestFullDiskFailsTheWriteAndKeepsTheEngineConsistent(t *testing.T) {
	dir := t.TempDir()
	fs := &faultFS{}
	opts := testOptions(filepath.Join(dir, "db"))
	opts.fs = fs
	e, _ := openT(t, opts)
	insert(t, e, nsA, d("_id", "a1", "n", 1))
	before := dump(t, e)

	fs.full.Store(true)
	err := e.Write(func(txn *Txn) error {
		_, err := txn.Insert(nsA, bsonkit.List{d("_id", "a2")}, true)
		return err
	})
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Contains(t, err.Error(), "no space left on device")
	require.Contains(t, err.Error(), "were not applied")
	err = e.Write(func(txn *Txn) error { // a write of two operations
		if _, err := txn.Update(nsA, d("_id", "a1"), d("$set", d("n", 2)), 1, false); err != nil {
			return err
		}
		_, err := txn.Insert(nsB, bsonkit.List{d("_id", "b1")}, true)
		return err
	})
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Equal(t, before, dump(t, e), "nothing of the failed writes is visible")

	fs.full.Store(false) // space came back
	insert(t, e, nsA, d("_id", "a3"))
	require.NoError(t, e.Write(func(txn *Txn) error {
		_, err := txn.Update(nsA, d("_id", "a1"), d("$set", d("n", 3)), 1, false)
		return err
	}))
	require.Equal(t, []string{"a1", "a3"}, ids(t, e, nsA))
	want := dump(t, e)

	crashed := filepath.Join(copyDir(t, dir), "db")
	e2, rec := openT(t, testOptions(crashed))
	require.Equal(t, want, dump(t, e2))
	require.Empty(t, rec.Dropped, "the failed appends were cut off the journal: %s", rec)
	require.Equal(t, 3, rec.Records)
}

// TestFaultsUnderConcurrentWriters flips a fault on and off while writers
// run: a full disk (a write fails) or a failing sync (an fdatasync fails,
// while later batches are written and syncing). The store ends with
// exactly the writes that succeeded, before and after a reopen.
func TestFaultsUnderConcurrentWriters(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault func(fs *faultFS) *atomic.Bool
		want  syscall.Errno
	}{
		{"full disk", func(fs *faultFS) *atomic.Bool { return &fs.full }, syscall.ENOSPC},
		{"failing sync", func(fs *faultFS) *atomic.Bool { return &fs.eio }, syscall.EIO},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := &faultFS{only: ".journal-"}
			opts := testOptions(filepath.Join(dir, "db"))
			opts.fs = fs
			e, _ := openT(t, opts)
			fault := tt.fault(fs)

			var (
				mu     sync.Mutex
				acked  []string
				failed atomic.Int64
				wg     sync.WaitGroup
			)
			for g := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 150 {
						id := fmt.Sprintf("g%d-%03d", g, i)
						err := e.Write(func(txn *Txn) error {
							_, err := txn.Insert(nsA, bsonkit.List{d("_id", id)}, true)
							return err
						})
						switch {
						case err == nil:
							mu.Lock()
							acked = append(acked, id)
							mu.Unlock()
						case errors.Is(err, tt.want):
							failed.Add(1)
						default:
							t.Error(err)
							return
						}
					}
				}()
			}
			for i := 0; failed.Load() < 50 && i < 10000; i++ {
				fault.Store(i%2 == 0)
				_ = e.Write(func(txn *Txn) error { // fails while faulty: it paces the flips
					_, err := txn.Insert(nsB, bsonkit.List{d("n", i)}, true)
					return err
				})
			}
			fault.Store(false)
			wg.Wait()
			require.NotZero(t, failed.Load())
			require.NotEmpty(t, acked)
			sort.Strings(acked)
			got := ids(t, e, nsA)
			sort.Strings(got)
			require.Equal(t, acked, got)

			e2, rec := openT(t, testOptions(filepath.Join(copyDir(t, dir), "db")))
			got = ids(t, e2, nsA)
			sort.Strings(got)
			require.Equal(t, acked, got, rec.String())
			require.Empty(t, rec.Dropped, "failed appends were cut off: %s", rec)
		})
	}
}

func TestFullDiskDuringASnapshot(t *testing.T) {
	dir := t.TempDir()
	fs := &faultFS{only: ".tmp"} // only the snapshots fail
	opts := testOptions(filepath.Join(dir, "db"))
	opts.fs, opts.SnapshotBytes = fs, 2<<10
	e, _ := openT(t, opts)
	fs.full.Store(true)
	pad := strings.Repeat("p", 200)
	for i := 0; e.SnapshotErr() == nil; i++ {
		insert(t, e, nsA, d("_id", i, "pad", pad)) // writes go on
		require.Less(t, i, 10000, "no snapshot tried")
	}
	require.ErrorIs(t, e.SnapshotErr(), syscall.ENOSPC)
	want := dump(t, e)
	e2, rec := openT(t, testOptions(filepath.Join(copyDir(t, dir), "db")))
	require.Equal(t, want, dump(t, e2), "the journals kept everything: %s", rec)
	require.NoError(t, e2.Close())

	// Close's snapshot fails too, and says that nothing is lost.
	err := e.Close()
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Contains(t, err.Error(), "nothing is lost")
	e3, rec := openT(t, testOptions(filepath.Join(dir, "db")))
	require.Equal(t, want, dump(t, e3), rec.String())

	// with space back, snapshots work again
	fs.full.Store(false)
	require.NoError(t, e3.Close())
	opts.fs = nil
	e4, rec := openT(t, opts)
	require.Zero(t, rec.Records, "Close wrote a snapshot: %s", rec)
	require.Equal(t, want, dump(t, e4))
}

// TestPowerLossKeepsAcknowledgedWrites cuts the power, as far as a file
// can tell: of each file only what its last Sync made durable is kept. Every
// write acknowledged before the cut is there: none is acknowledged before
// its journal record is synced.
func TestPowerLossKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	fs := &faultFS{}
	opts := testOptions(filepath.Join(dir, "db"))
	opts.fs = fs
	e, _ := openT(t, opts)
	var (
		mu     sync.Mutex
		acked  []string
		stop   atomic.Bool
		wg     sync.WaitGroup
		enough = make(chan struct{})
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("g%d-%05d", g, i)
				if err := e.Write(func(txn *Txn) error {
					_, err := txn.Insert(nsA, bsonkit.List{d("_id", id)}, true)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				if len(acked) == 300 {
					close(enough)
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatal("300 writes took more than a minute")
	}
	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()
	cut := powerCut(t, dir, fs)
	stop.Store(true)
	wg.Wait()

	e2, rec := openT(t, testOptions(filepath.Join(cut, "db")))
	got := map[string]bool{}
	for _, id := range ids(t, e2, nsA) {
		got[id] = true
	}
	for _, id := range before {
		require.True(t, got[id], "%s was acknowledged before the cut and is lost (%s)", id, rec)
	}
}

// powerCut copies dir keeping of each file only what was synced (a file
// the engine synced through fs), or all of it (the others, written whole
// and synced before they were renamed into place).
func powerCut(t *testing.T, dir string, fs *faultFS) string {
	t.Helper()
	fs.mu.Lock()
	synced := map[string]int64{}
	for k, v := range fs.synced {
		synced[k] = v
	}
	fs.mu.Unlock()
	dst := t.TempDir()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, entry := range entries {
		src := filepath.Join(dir, entry.Name())
		in, err := os.Open(src)
		require.NoError(t, err)
		var r io.Reader = in
		if n, ok := synced[src]; ok {
			r = io.LimitReader(in, n)
		}
		out, err := os.Create(filepath.Join(dst, entry.Name()))
		require.NoError(t, err)
		_, err = io.Copy(out, r)
		require.NoError(t, err)
		require.NoError(t, in.Close())
		require.NoError(t, out.Close())
	}
	return dst
}

// With a sync interval, a write returns before its journal record is
// synced, and the record is synced within the interval even when no write
// follows it (the engine's timer): after a power cut then, every write is
// there. A sync that fails stops the engine taking writes, saying what an
// operating system crash could take.
func TestSyncInterval(t *testing.T) {
	dir := t.TempDir()
	fs := &faultFS{only: "journal"}
	opts := testOptions(filepath.Join(dir, "db"))
	opts.fs, opts.SyncInterval = fs, 20*time.Millisecond
	e, _ := openT(t, opts)
	var written []string
	for i := range 100 {
		id := fmt.Sprintf("w%03d", i)
		require.NoError(t, e.Write(func(txn *Txn) error {
			_, err := txn.Insert(nsA, bsonkit.List{d("_id", id)}, true)
			return err
		}))
		written = append(written, id)
	}
	journal := journalPath(opts.Path, e.j.gen)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := os.Stat(journal)
		require.NoError(t, err)
		fs.mu.Lock()
		synced := fs.synced[journal]
		fs.mu.Unlock()
		e.mu.Lock()
		size := e.j.size
		e.mu.Unlock()
		if synced == st.Size() && size > headerSize {
			break
		}
		require.False(t, time.Now().After(deadline), "the journal was not synced within 10s of the last write")
		<-time.After(5 * time.Millisecond) // look again
	}
	cut := powerCut(t, dir, fs)
	e2, rec := openT(t, testOptions(filepath.Join(cut, "db")))
	require.Equal(t, written, ids(t, e2, nsA), "after a power cut once the interval passed (%s)", rec)

	fs.eio.Store(true) // the next sync of the journal fails
	var err error
	deadline = time.Now().Add(10 * time.Second)
	for i := 0; err == nil && time.Now().Before(deadline); i++ { // writes until a sync is due, and fails
		err = e.Write(func(txn *Txn) error {
			_, err := txn.Insert(nsA, bsonkit.List{d("_id", fmt.Sprintf("x%07d", i))}, true)
			return err
		})
	}
	require.ErrorContains(t, err, "operating system crash")
	err = e.Write(func(txn *Txn) error {
		_, err := txn.Insert(nsA, bsonkit.List{d("_id", "after")}, true)
		return err
	})
	require.ErrorContains(t, err, "stopped accepting writes")
	require.ErrorContains(t, err, "operating system crash")
}
