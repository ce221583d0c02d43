package engine

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retrigger/retrigger/shared/filelock"
)

// ErrClosed: the engine was closed.
var ErrClosed = errors.New("engine closed")

// Options configure an engine.
type Options struct {
	// Path of the snapshot file; the journals are Path.journal-NNNNNN, the
	// lock Path.lock. Empty: everything stays in memory.
	Path string
	// The oplog keeps an entry while it is among the last OplogMinSize or
	// younger than OplogMinAge, and drops it once it is also beyond the last
	// OplogMaxSize or older than OplogMaxAge (whole seconds).
	OplogMinSize, OplogMaxSize int
	OplogMinAge, OplogMaxAge   time.Duration
	// SnapshotBytes: once the journal holds this much, or as much as the
	// last snapshot if that is more, a snapshot is written in the
	// background and the journal starts anew. Default 32 MiB: a snapshot
	// rewrites the whole state (under a flood, 8 MiB took an eighth of the
	// process's CPU), and Open replays the journal written since.
	SnapshotBytes int64
	// SyncInterval: 0 syncs every journal append (fdatasync) before its
	// writes return, which makes them survive an operating system crash or
	// a power cut. Above 0, a write returns once the operating system has
	// it, which a crash of this process (kill -9) does not lose, and the
	// journal is synced at most this long after (by the next append that
	// comes later, or by a timer), before a snapshot starts a new journal,
	// and on Close: an operating system crash may lose the writes of the
	// last interval, as MongoDB's journal commit interval (100 ms) and
	// NATS's sync_interval (2 min) do.
	SyncInterval time.Duration

	fs   fileSystem // tests: a file system that injects faults
	hook hookFunc   // tests: called at named points (see hookFunc)
}

// DefaultSnapshotBytes is Options.SnapshotBytes's default.
const DefaultSnapshotBytes = 32 << 20

// hookFunc is called, in tests, at named points of a commit, of a journal
// append and of a snapshot, so that a test can kill the process there:
// "commit", "append-torn" (half of a batch written), "append-unsynced",
// "append-synced", "rotate", "snapshot-partial", "snapshot-synced",
// "snapshot-renamed".
type hookFunc func(point string)

func (h hookFunc) at(point string) {
	if h != nil {
		h(point)
	}
}

// Engine is an open engine.
type Engine struct {
	opts Options

	// mu is the writers' turn: it guards the working state and everything
	// below it up to cur.
	mu       sync.Mutex
	w        *state
	dirty    map[NS]struct{} // collections changed since the last cut
	lastCut  *View
	clock    clock
	pending  *batch // writes applied and waiting for the next journal append
	inflight *batch // the batch being appended
	leading  bool   // a writer is appending batches (the leader)
	idle     *sync.Cond
	closed   bool
	broken   error // set when the journal cannot be written any more

	cur atomic.Pointer[published]

	// A file-backed engine's. j and the snapshot state belong to the
	// leader (one writer at a time, see lead) once Open returns.
	file      bool
	fs        fileSystem
	lock      *filelock.Lock
	j         *journal
	snapDone  chan snapResult
	snapping  bool
	snapBytes int64 // size of the last snapshot
	snapErr   atomic.Pointer[error]
	snapGen   uint64 // generation of the snapshot on disk
	stopSync  chan struct{}
	syncDone  chan struct{}
}

// published is what readers see: the last durable state, and a channel
// closed when the next one is published.
type published struct {
	view   *View
	ch     chan struct{}
	closed bool
}

type batch struct {
	payloads [][]byte
	done     chan struct{}
	lead     chan struct{} // takes one of the batch's writers to append it
	err      error
	view     *View // the state after this batch, cut when it is appended
}

func newBatch() *batch { return &batch{done: make(chan struct{}), lead: make(chan struct{}, 1)} }

func (b *batch) finish(err error) {
	b.err = err
	close(b.done)
}

type snapResult struct {
	gen   uint64
	bytes int64
	err   error
}

// Open opens an engine: a file-backed one loads its snapshot and replays its
// journals (see Recovery). A data file in lungo v0.4.0's format is
// converted; one in a newer format, or none known, is refused with an error
// wrapping ErrFormat; a data file another process holds, with one wrapping
// filelock.ErrLocked that names the process.
func Open(opts Options) (*Engine, Recovery, error) {
	if opts.SnapshotBytes <= 0 {
		opts.SnapshotBytes = DefaultSnapshotBytes
	}
	e := &Engine{
		opts:  opts,
		w:     &state{colls: map[NS]*coll{}},
		dirty: map[NS]struct{}{},
		fs:    opts.fs,
		file:  opts.Path != "",
	}
	if e.fs == nil {
		e.fs = osFS{}
	}
	e.lastCut = &View{colls: map[NS]*coll{}}
	var rec Recovery
	if opts.Path != "" {
		var err error
		if rec, err = e.recover(); err != nil {
			_ = e.j.close()
			_ = e.lock.Release()
			return nil, rec, err
		}
	}
	e.w.trim(opts, time.Now())
	e.dirtyAll()
	e.cur.Store(&published{view: e.cut(), ch: make(chan struct{})})
	e.pending = newBatch()
	e.idle = sync.NewCond(&e.mu)
	e.snapDone = make(chan snapResult, 1)
	if e.file && opts.SyncInterval > 0 {
		e.stopSync, e.syncDone = make(chan struct{}), make(chan struct{})
		go e.syncLoop()
	}
	return e, rec, nil
}

// syncLoop syncs the journal when writes stopped before their interval
// passed: an append syncs what is due when one comes.
func (e *Engine) syncLoop() {
	defer close(e.syncDone)
	tick := time.NewTicker(e.opts.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-e.stopSync:
			return
		case <-tick.C:
		}
		e.mu.Lock()
		if e.leading || e.broken != nil {
			e.mu.Unlock()
			continue // an append is under way: it syncs what is due
		}
		e.leading = true // the journal is this goroutine's for the sync
		e.mu.Unlock()
		var err error
		if e.j.due(time.Now()) {
			err = e.j.sync()
		}
		e.mu.Lock()
		if err != nil {
			e.broken = fmt.Errorf("the embedded store stopped accepting writes: %w (the writes of the last %s may be lost on an operating system crash, not on a crash of this process); reopen it", err, e.opts.SyncInterval)
		}
		e.handOff()
		e.mu.Unlock()
	}
}

func (e *Engine) dirtyAll() {
	for ns := range e.w.colls {
		e.dirty[ns] = struct{}{}
	}
}

// Current returns the last committed state and a channel that is closed
// when a newer one is committed or the engine closes; ErrClosed once it is
// closed.
func (e *Engine) Current() (*View, <-chan struct{}, error) {
	p := e.cur.Load()
	if p.closed {
		return nil, p.ch, ErrClosed
	}
	return p.view, p.ch, nil
}

// Write runs fn on the working state and commits what it did, when fn
// returns nil, as one unit: for a file-backed engine, Write returns once it
// is in the journal, synced, along with every write committed before it.
// When fn returns an error everything it did is undone and the error
// returned. Writers take turns: fn should only operate on the Txn.
//
// A Write that changed nothing, or failed, still waits until the writes it
// saw are durable, so that no answer rests on a write a crash could lose,
// and a reader after it sees what it saw (readers see durable writes only). A Write
// that was applied waits for its journal append whatever happens meanwhile:
// it reports its true outcome. When the append fails (a full disk), the
// Write and every write applied after it are undone and fail with that
// error; the engine goes on with the next ones.
func (e *Engine) Write(fn func(*Txn) error) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if e.broken != nil {
		err := e.broken
		e.mu.Unlock()
		return err
	}
	t := &Txn{e: e}
	if err := e.run(t, fn); err != nil {
		// Its answer (a duplicate key, say) may rest on writes not durable
		// yet: return once they are, so that a retry reads them, and with
		// their error if they fail.
		b := e.tail()
		e.mu.Unlock()
		if b != nil {
			if berr := e.await(b); berr != nil {
				return berr
			}
		}
		return err
	}
	if !t.dirty {
		b := e.tail()
		e.mu.Unlock()
		if b == nil {
			return nil
		}
		return e.await(b)
	}
	if !e.file {
		e.w.trim(e.opts, time.Now())
		e.publish(e.cut())
		e.mu.Unlock()
		return nil
	}
	payload, err := encodeRecord(t.ops)
	if err != nil {
		t.rollback(savepoint{})
		e.mu.Unlock()
		return fmt.Errorf("encoding the journal record: %w", err)
	}
	e.w.trim(e.opts, time.Now())
	b := e.pending
	b.payloads = append(b.payloads, payload)
	e.opts.hook.at("commit")
	if !e.leading {
		// No append in progress: this writer appends its batch itself,
		// without waking anyone.
		e.leading = true
		e.mu.Unlock()
		e.lead()
		return b.err
	}
	e.mu.Unlock()
	return e.await(b)
}

// await waits for b to be durable, or to be handed b to append (by the
// leader of the batch before).
func (e *Engine) await(b *batch) error {
	select {
	case <-b.done:
	case <-b.lead:
		e.lead()
		<-b.done
	}
	return b.err
}

// lead appends the pending batch, as the leader: one writer at a time (the
// one that set leading) appends, while the writes that arrive meanwhile
// gather in the next batch. It then hands the next batch, if there is one,
// to one of its writers: group commit with a leader, as the databases do it
// (no goroutine of its own to wake: a writer alone appends its own write).
func (e *Engine) lead() {
	e.mu.Lock()
	b := e.pending
	b.view = e.cut()
	e.pending = newBatch()
	e.inflight = b
	e.mu.Unlock()

	e.collectSnapshot()
	err := e.j.append(b.payloads, e.opts.hook)

	e.mu.Lock()
	e.inflight = nil
	if err != nil && errors.Is(err, errSyncFailed) {
		// Written and acknowledged: not undone, but nothing more is.
		e.broken = fmt.Errorf("the embedded store stopped accepting writes: %w (the writes of the last %s may be lost on an operating system crash, not on a crash of this process); reopen it", err, e.opts.SyncInterval)
		e.publish(b.view)
		b.finish(nil)
	} else if err != nil {
		err = fmt.Errorf("committing: %w; this write, and the ones that came with it or after it, were not applied", err)
		if errors.Is(err, errJournalBroken) || errors.Is(err, errUnsynced) {
			e.broken = fmt.Errorf("the embedded store stopped accepting writes: %w; reopen it", err)
		}
		// The working state has this batch's writes and the next one's,
		// which were applied on top of them: back to the last durable one.
		e.restore(e.cur.Load().view)
		next := e.pending
		e.pending = newBatch()
		b.finish(err)
		next.finish(err)
	} else {
		e.publish(b.view)
		b.finish(nil)
	}
	e.mu.Unlock()

	if err == nil {
		e.maybeSnapshot(b.view) // still the leader: the journal is this writer's
	}

	e.mu.Lock()
	e.handOff()
	e.mu.Unlock()
}

// handOff ends a turn with the journal: the next batch, if there is one,
// goes to one of its writers. Under mu.
func (e *Engine) handOff() {
	if next := e.pending; len(next.payloads) > 0 {
		next.lead <- struct{}{} // one of its writers appends it
	} else {
		e.leading = false
		e.idle.Broadcast()
	}
}

// run calls fn, undoing what it did when it fails or panics.
func (e *Engine) run(t *Txn, fn func(*Txn) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			t.rollback(savepoint{})
			e.mu.Unlock()
			panic(r)
		}
	}()
	if err = fn(t); err != nil {
		t.rollback(savepoint{})
	}
	return err
}

// tail returns the batch that the writes applied so far end in, nil if
// they are all durable.
func (e *Engine) tail() *batch {
	if len(e.pending.payloads) > 0 {
		return e.pending
	}
	return e.inflight
}

// cut returns a view of the working state.
func (e *Engine) cut() *View {
	prev := e.lastCut
	v := &View{colls: make(map[NS]*coll, len(e.w.colls)), oplog: e.w.oplog, ts: e.clock.last}
	for ns, c := range prev.colls {
		if _, dirty := e.dirty[ns]; !dirty {
			v.colls[ns] = c
		}
	}
	for ns := range e.dirty {
		if c := e.w.colls[ns]; c != nil {
			v.colls[ns] = c.snapshot()
		}
	}
	clear(e.dirty)
	e.lastCut = v
	return v
}

// publish makes v the state readers see. Under mu.
func (e *Engine) publish(v *View) {
	old := e.cur.Load()
	e.cur.Store(&published{view: v, ch: make(chan struct{})})
	close(old.ch)
}

// restore makes the working state v again. Under mu.
func (e *Engine) restore(v *View) {
	w := &state{colls: make(map[NS]*coll, len(v.colls)), oplog: v.oplog}
	for ns, c := range v.colls {
		w.colls[ns] = c.snapshot()
	}
	e.w = w
	e.lastCut = v
	clear(e.dirty)
}

// collectSnapshot takes the result of a snapshot written in the
// background, if there is one. The leader's.
func (e *Engine) collectSnapshot() {
	select {
	case r := <-e.snapDone:
		e.snapshotDone(r)
	default:
	}
}

// snapshotThreshold is the journal size that starts a snapshot.
func (e *Engine) snapshotThreshold() int64 {
	return max(e.opts.SnapshotBytes, e.snapBytes)
}

// maybeSnapshot starts a snapshot once the journal is large enough: a new
// journal takes the next writes, and the state at the end of the old one,
// view, is written in the background. The leader's.
func (e *Engine) maybeSnapshot(view *View) {
	if e.snapping || e.j.size < e.snapshotThreshold() {
		return
	}
	// The old journal is synced before the new one takes writes: a later
	// journal's records never stand on an earlier one's lost tail.
	if err := e.j.sync(); err != nil {
		e.mu.Lock()
		e.broken = fmt.Errorf("the embedded store stopped accepting writes: %w; reopen it", err)
		e.mu.Unlock()
		return
	}
	next, err := createJournal(e.fs, e.opts.Path, e.j.gen+1)
	if err != nil {
		e.setSnapErr(fmt.Errorf("starting a new journal for a snapshot: %w", err))
		return
	}
	next.interval = e.opts.SyncInterval
	e.opts.hook.at("rotate")
	old := e.j
	e.j = next
	_ = old.close()
	e.snapping = true
	go func() {
		n, err := writeSnapshot(e.fs, e.opts.Path, next.gen, view, e.opts.hook)
		e.snapDone <- snapResult{gen: next.gen, bytes: n, err: err}
	}()
}

// snapshotDone removes the journals a new snapshot covers.
func (e *Engine) snapshotDone(r snapResult) {
	e.snapping = false
	if r.err != nil {
		// The journals still hold everything; the next one is tried once
		// the journal has grown by the threshold again.
		e.setSnapErr(r.err)
		return
	}
	e.snapBytes, e.snapGen = r.bytes, r.gen
	e.snapErr.Store(nil)
	e.removeJournalsBefore(r.gen)
}

func (e *Engine) setSnapErr(err error) { e.snapErr.Store(&err) }

// SnapshotErr returns the error of the last snapshot, nil if it worked:
// the journal keeps every write meanwhile, and grows.
func (e *Engine) SnapshotErr() error {
	if p := e.snapErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (e *Engine) removeJournalsBefore(gen uint64) {
	gens, err := journals(e.opts.Path)
	if err != nil {
		return
	}
	removed := false
	for _, g := range gens {
		if g < gen {
			if os.Remove(journalPath(e.opts.Path, g)) == nil {
				removed = true
			}
		}
	}
	if removed {
		_ = syncDir(dirOf(e.opts.Path))
	}
}

// Close commits the writes in flight, writes a last snapshot (for a
// file-backed engine) and closes. Readers get ErrClosed from then on.
// Safe to call twice.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	var err error
	if e.file {
		// The writes in flight finish by themselves: each batch has a
		// writer that appends it.
		if e.stopSync != nil {
			close(e.stopSync)
			<-e.syncDone
		}
		e.mu.Lock()
		for e.leading {
			e.idle.Wait()
		}
		e.mu.Unlock()
		if e.snapping {
			e.snapshotDone(<-e.snapDone)
		}
		err = e.j.sync() // if the last snapshot fails, the journal has everything
		if serr := e.finalSnapshot(); err == nil {
			err = serr
		}
		if cerr := e.j.close(); err == nil && cerr != nil {
			err = cerr
		}
		if lerr := e.lock.Release(); err == nil && lerr != nil {
			err = lerr
		}
	}
	e.mu.Lock()
	old := e.cur.Load()
	e.cur.Store(&published{view: old.view, ch: old.ch, closed: true})
	close(old.ch)
	e.mu.Unlock()
	return err
}

// finalSnapshot writes a snapshot of the last state, so that the next Open
// reads one file, unless the snapshot on disk already is that state.
func (e *Engine) finalSnapshot() error {
	if e.j.size == headerSize && e.snapGen == e.j.gen {
		return nil
	}
	gen := e.j.gen + 1
	if _, err := writeSnapshot(e.fs, e.opts.Path, gen, e.cur.Load().view, nil); err != nil {
		return fmt.Errorf("closing: %w (nothing is lost: the journal keeps every write, and the next open replays it)", err)
	}
	_ = e.j.close()
	e.removeJournalsBefore(gen + 1)
	return nil
}
