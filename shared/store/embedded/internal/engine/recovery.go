package engine

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/retrigger/retrigger/shared/filelock"
)

// Recovery is what Open found and did.
type Recovery struct {
	Path string
	// Created: there was no data file; the store starts empty.
	Created bool
	// Migrated names the older format the data file was in and was
	// converted from ("" when it was in this one).
	Migrated string
	// From the snapshot: its generation, documents and oplog entries.
	Generation        uint64
	Documents         int
	Entries           int
	SnapshotBytes     int64
	Journals, Records int // journal files and records replayed
	// Dropped lists the tails of journals that did not check out: torn by
	// a crash in the middle of an append, or damaged. They were cut off,
	// not replayed.
	Dropped []Dropped
	Took    time.Duration
}

// Dropped is a journal's tail that was cut off.
type Dropped struct {
	File          string
	Offset, Bytes int64
	Reason        string
}

func (d Dropped) String() string {
	return fmt.Sprintf("%s: %d bytes from offset %d (%s)", d.File, d.Bytes, d.Offset, d.Reason)
}

// String says it in a sentence or two, for a log.
func (r Recovery) String() string {
	if r.Path == "" {
		return "in memory"
	}
	var b strings.Builder
	switch {
	case r.Created:
		fmt.Fprintf(&b, "%s: a new store", r.Path)
	case r.Migrated != "":
		fmt.Fprintf(&b, "%s: converted from %s to format %d: %d documents, %d oplog entries", r.Path, r.Migrated, formatVersion, r.Documents, r.Entries)
	default:
		fmt.Fprintf(&b, "%s: snapshot %d with %d documents and %d oplog entries", r.Path, r.Generation, r.Documents, r.Entries)
	}
	if r.Records > 0 {
		fmt.Fprintf(&b, ", then %d journal records replayed", r.Records)
	}
	fmt.Fprintf(&b, " (%s)", r.Took.Round(time.Millisecond))
	for _, d := range r.Dropped {
		fmt.Fprintf(&b, "; dropped the journal tail %s, never replayed", d)
	}
	return b.String()
}

// recover loads the data file and replays the journals after it.
func (e *Engine) recover() (Recovery, error) {
	start := time.Now()
	path := e.opts.Path
	rec := Recovery{Path: path}
	if err := os.MkdirAll(dirOf(path), 0o700); err != nil {
		return rec, fmt.Errorf("creating the data directory: %w", err)
	}
	lock, err := filelock.Acquire(path+".lock", "the data file "+path)
	if err != nil {
		return rec, err
	}
	e.lock = lock
	_ = os.Remove(path + ".tmp") // a snapshot a crash cut short
	l, err := readDataFile(path)
	if err != nil {
		return rec, err
	}
	gens, err := journals(path)
	if err != nil {
		return rec, err
	}

	switch {
	case l == nil && len(gens) > 0:
		return rec, fmt.Errorf("%s is missing, and its journals (%s) are there: restore the data file, or move the journals aside to start empty", path, journalPath(path, gens[0]))
	case l == nil:
		rec.Created = true
		if _, err := writeSnapshot(e.fs, path, 1, e.cut(), nil); err != nil {
			return rec, err
		}
		e.snapGen = 1
	default:
		if err := e.load(l); err != nil {
			return rec, fmt.Errorf("%s: %w", path, err)
		}
		rec.Documents, rec.Entries, rec.SnapshotBytes = l.docs, len(l.oplog), l.bytes
		e.snapGen, e.snapBytes = l.gen, l.bytes
		if l.migrate {
			if len(gens) > 0 {
				return rec, fmt.Errorf("%s is in %s (format %d), yet journals of a newer format are beside it (%s): move one or the other aside",
					path, legacyFormatIs, legacyFormat, journalPath(path, gens[0]))
			}
			e.dirtyAll()
			n, err := writeSnapshot(e.fs, path, 1, e.cut(), nil)
			if err != nil {
				return rec, fmt.Errorf("converting %s from %s (format %d): %w (the file is unchanged)", path, legacyFormatIs, legacyFormat, err)
			}
			rec.Migrated = fmt.Sprintf("%s (format %d)", legacyFormatIs, legacyFormat)
			e.snapGen, e.snapBytes = 1, n
		}
	}
	rec.Generation = e.snapGen

	var replay []uint64
	for _, g := range gens {
		if g < e.snapGen {
			_ = os.Remove(journalPath(path, g)) // covered by the snapshot
			continue
		}
		if g != e.snapGen+uint64(len(replay)) {
			return rec, fmt.Errorf("%s: journal %d is missing before %s: restore it, or move the later journals aside (their writes will be lost)",
				path, e.snapGen+uint64(len(replay)), journalPath(path, g))
		}
		replay = append(replay, g)
	}
	for i, g := range replay {
		last := i == len(replay)-1
		jp := journalPath(path, g)
		records, end, crc, size, tail, err := readJournal(jp, g, func(ops []journalOp) error { return e.replay(ops) })
		rec.Journals++
		rec.Records += records
		if err != nil {
			return rec, err
		}
		if tail != nil {
			if !last {
				return rec, fmt.Errorf("%s: %s, with journal %d after it: the journal is damaged, not torn (restore it from a backup)", jp, tail, g+1)
			}
			rec.Dropped = append(rec.Dropped, Dropped{File: jp, Offset: tail.offset, Bytes: nonZeroEnd(jp, tail.offset, size) - tail.offset, Reason: tail.reason})
		}
		if !last {
			continue
		}
		f, err := e.fs.OpenFile(jp, os.O_RDWR, 0o600)
		if err != nil {
			return rec, fmt.Errorf("opening the journal: %w", err)
		}
		// synced: as far as the header, as far as this process knows: the
		// next sync covers what the crashed one may not have synced.
		e.j = &journal{path: jp, gen: g, f: f, size: end, crc: crc, alloc: size, synced: headerSize}
		if tail != nil {
			if end < headerSize {
				err = e.j.reset()
			} else if err = f.Truncate(end); err == nil {
				err = f.Sync()
				e.j.alloc = end
			}
			if err != nil {
				_ = f.Close()
				return rec, fmt.Errorf("cutting off the journal's tail: %w", err)
			}
		}
	}
	if e.j == nil {
		if e.j, err = createJournal(e.fs, path, e.snapGen); err != nil {
			return rec, err
		}
	}
	e.j.interval = e.opts.SyncInterval
	rec.Took = time.Since(start)
	return rec, nil
}

// nonZeroEnd returns where the bytes of the file at path, from off to
// size, stop being anything but the zeros written ahead.
func nonZeroEnd(path string, off, size int64) int64 {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < size {
		return size
	}
	end := size
	for end > off && data[end-1] == 0 {
		end--
	}
	return end
}

// load puts a data file's contents into the working state.
func (e *Engine) load(l *loaded) error {
	t := &Txn{e: e, noUndo: true}
	for _, lns := range l.colls {
		c := t.collection(lns.ns, true)
		for _, spec := range lns.indexes {
			if err := t.createIndex(lns.ns, spec, false); err != nil {
				return fmt.Errorf("index %q of %s: %w", spec.Name, lns.ns, err)
			}
		}
		for _, doc := range lns.docs {
			if err := t.add(c, doc); err != nil {
				return fmt.Errorf("a document of %s: %w", lns.ns, err)
			}
		}
	}
	e.w.oplog = append(e.w.oplog, l.oplog...)
	e.clock.observe(l.ts)
	for _, entry := range l.oplog {
		e.clock.observe(EntryTS(entry))
	}
	return nil
}

// replay applies a journal record to the working state.
func (e *Engine) replay(ops []journalOp) error {
	t := &Txn{e: e, noUndo: true}
	for _, op := range ops {
		if op.index != nil {
			if err := t.createIndex(op.index.ns, op.index.spec, false); err != nil {
				return fmt.Errorf("index %q of %s: %w", op.index.spec.Name, op.index.ns, err)
			}
			continue
		}
		if err := e.replayEntry(t, op.entry); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) replayEntry(t *Txn, entry bsonkit.Doc) error {
	ns, ok := entryNS(entry)
	if !ok {
		return fmt.Errorf("an oplog entry without a namespace: %v", entry)
	}
	switch op, _ := bsonkit.Get(entry, "operationType").(string); op {
	case "insert", "update", "replace":
		full, ok := bsonkit.Get(entry, "fullDocument").(bson.D)
		if !ok {
			return fmt.Errorf("an %s without its document: %v", op, entry)
		}
		doc := &full
		c := t.collection(ns, true)
		var err error
		if it, found := c.byID(bsonkit.Get(doc, "_id")); found {
			err = t.swap(c, it, doc)
		} else {
			err = t.add(c, doc)
		}
		if err != nil {
			return fmt.Errorf("%s of %s: %w", op, ns, err)
		}
	case "delete":
		if c := t.collection(ns, false); c != nil {
			if it, found := c.byID(bsonkit.Get(entry, "documentKey._id")); found {
				if err := t.remove(c, it); err != nil {
					return fmt.Errorf("delete of %s: %w", ns, err)
				}
			}
		}
	case "drop":
		delete(e.w.colls, ns)
	case "dropDatabase":
		for n := range e.w.colls {
			if n.DB == ns.DB {
				delete(e.w.colls, n)
			}
		}
	default:
		return fmt.Errorf("an oplog entry of an unknown operation %q", op)
	}
	e.w.oplog = append(e.w.oplog, entry)
	e.clock.observe(EntryTS(entry))
	return nil
}
