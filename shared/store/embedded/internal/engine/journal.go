package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson"
)

// journal is the file that the group commit appends to. Only the flusher
// goroutine touches it once the engine is open.
type journal struct {
	path string
	gen  uint64
	f    file
	size int64  // where the next record goes: the end of the last durable one
	crc  uint32 // the checksum chain's value after that record
	// alloc is the file's size: beyond size it holds zeros, written (and
	// synced) ahead of the records. Appending over written blocks changes
	// no file size and allocates nothing, so the append's fdatasync has
	// only data to flush, not the file system's metadata journal: about
	// 40% less time per sync on the machine of docs/PERFORMANCE.md. A
	// reader takes zeros after the last record for the journal's end.
	alloc int64
	buf   []byte
	// With a sync interval (Options.SyncInterval), an append is written and
	// not synced: synced is where the last fdatasync reached, at lastSync.
	interval time.Duration
	synced   int64
	lastSync time.Time
}

// Zeros are written ahead in chunks that double from minAhead up to
// maxAhead.
const (
	minAhead = 64 << 10
	maxAhead = 4 << 20
)

var zeros = make([]byte, minAhead)

func journalPath(path string, gen uint64) string {
	return fmt.Sprintf("%s.journal-%06d", path, gen)
}

// journals lists the journal files of path by generation.
func journals(path string) ([]uint64, error) {
	matches, err := filepath.Glob(path + ".journal-*")
	if err != nil {
		return nil, err
	}
	var gens []uint64
	for _, m := range matches {
		gen, err := strconv.ParseUint(strings.TrimPrefix(m, path+".journal-"), 10, 64)
		if err != nil {
			continue // not ours
		}
		gens = append(gens, gen)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	return gens, nil
}

// createJournal makes a new, empty journal of generation gen, durably: the
// header synced, and the file's name in its directory.
func createJournal(fs fileSystem, path string, gen uint64) (*journal, error) {
	p := journalPath(path, gen)
	f, err := fs.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating the journal: %w", err)
	}
	j := &journal{path: p, gen: gen, f: f}
	if err := j.reset(); err != nil {
		_ = f.Close()
		_ = os.Remove(p)
		return nil, err
	}
	if err := syncDir(dirOf(p)); err != nil {
		_ = f.Close()
		return nil, err
	}
	return j, nil
}

// reset makes j empty: a new header (with a new salt) and nothing after it.
func (j *journal) reset() error {
	h := fileHeader{magic: journalMagic, version: formatVersion, gen: j.gen, salt: rand.Uint32()}
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("writing the journal %s: %w", j.path, err)
	}
	if _, err := j.f.WriteAt(h.encode(), 0); err != nil {
		return fmt.Errorf("writing the journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing the journal %s: %w", j.path, err)
	}
	j.size, j.crc, j.alloc, j.synced = headerSize, h.salt, headerSize, headerSize
	return nil
}

// errSyncFailed: a journal written but not synced (a sync interval) could
// not be synced. The writes it holds were acknowledged: a process crash
// keeps them (the operating system has them), an operating system crash
// may not. Nothing more is written.
var errSyncFailed = errors.New("the journal could not be synced")

// errUnsynced: an append failed while writes acknowledged before it (a
// sync interval) were not synced yet; as errSyncFailed, nothing more is
// written.
var errUnsynced = errors.New("the writes acknowledged since the journal's last sync may not be on disk (an operating system crash could lose them, a crash of this process cannot)")

// sync makes every record written durable, if some are not.
func (j *journal) sync() error {
	if j.synced == j.size {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("%w: %s: %w", errSyncFailed, j.path, err)
	}
	j.synced, j.lastSync = j.size, time.Now()
	return nil
}

// due reports whether records written have waited the sync interval.
func (j *journal) due(now time.Time) bool {
	return j.synced < j.size && now.Sub(j.lastSync) >= j.interval
}

// reserve makes the file hold zeros up to at least n bytes after the last
// record, synced.
func (j *journal) reserve(n int64) error {
	if j.size+n <= j.alloc {
		return nil
	}
	chunk := min(max(j.alloc, minAhead), maxAhead)
	end := j.alloc + chunk
	for end < j.size+n {
		end += chunk
	}
	for off := j.alloc; off < end; off += int64(len(zeros)) {
		if _, err := j.f.WriteAt(zeros[:min(int64(len(zeros)), end-off)], off); err != nil {
			return fmt.Errorf("extending the journal %s: %w", j.path, err)
		}
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("extending the journal %s: %w", j.path, err)
	}
	j.alloc, j.synced, j.lastSync = end, j.size, time.Now() // the records before synced too
	return nil
}

// errJournalBroken: a write to the journal failed, and so did cutting the
// journal back to its last durable record. Nothing more is written.
var errJournalBroken = errors.New("the journal could not be cut back after a failed write")

// append writes payloads as records after the last durable one and syncs
// them. On an error nothing of them counts: the file is cut back to its
// last durable record, and the next append goes there. If even that fails,
// the error wraps errJournalBroken.
func (j *journal) append(payloads [][]byte, hook hookFunc) error {
	j.buf = j.buf[:0]
	crc := j.crc
	for _, p := range payloads {
		j.buf, crc = appendFrame(j.buf, crc, p)
	}
	err := j.reserve(int64(len(j.buf)))
	if err == nil {
		err = j.write(hook)
	}
	if err == nil {
		hook.at("append-unsynced")
		if j.interval > 0 {
			// Written: a process crash keeps it. Synced with the others
			// of the interval, by this append or the engine's timer.
			j.size += int64(len(j.buf))
			j.crc = crc
			if j.due(time.Now()) {
				return j.sync()
			}
			return nil
		}
		if err = j.f.Sync(); err != nil {
			err = fmt.Errorf("syncing the journal %s: %w", j.path, err)
		}
	}
	if err != nil {
		// The zeros ahead go too: they are written again on the next
		// append.
		if terr := j.f.Truncate(j.size); terr != nil {
			return fmt.Errorf("%w (%w); then cutting it back: %w", errJournalBroken, err, terr)
		}
		if serr := j.f.Sync(); serr != nil {
			return fmt.Errorf("%w (%w); then syncing it: %w", errJournalBroken, err, serr)
		}
		j.alloc = j.size
		if j.synced < j.size {
			// Writes acknowledged since the last sync (a sync interval)
			// may not be on disk: nothing more is written.
			return fmt.Errorf("%w; %w", err, errUnsynced)
		}
		return err
	}
	hook.at("append-synced")
	j.size += int64(len(j.buf))
	j.synced, j.crc = j.size, crc
	if cap(j.buf) > 4<<20 {
		j.buf = nil // a rare large batch: do not keep its buffer
	}
	return nil
}

func (j *journal) write(hook hookFunc) error {
	buf, off := j.buf, j.size
	if hook != nil && len(buf) > 1 {
		// Tests: a torn append, half of it written when the hook runs.
		half := len(buf) / 2
		if _, err := j.f.WriteAt(buf[:half], off); err != nil {
			return fmt.Errorf("writing the journal %s: %w", j.path, err)
		}
		hook.at("append-torn")
		buf, off = buf[half:], off+int64(half)
	}
	if _, err := j.f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("writing the journal %s: %w", j.path, err)
	}
	return nil
}

func (j *journal) close() error {
	if j == nil || j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// encodeRecord is the journal's record of one Write: {o: [op...]}, each op
// {e: oplog entry} or {i: index spec}.
func encodeRecord(ops []journalOp) ([]byte, error) {
	list := make(bson.A, len(ops))
	for i, op := range ops {
		if op.entry != nil {
			list[i] = bson.D{{Key: "e", Value: *op.entry}}
			continue
		}
		list[i] = bson.D{{Key: "i", Value: encodeIndex(op.index.ns, op.index.spec)}}
	}
	return bson.Marshal(bson.D{{Key: "o", Value: list}})
}

func encodeIndex(ns NS, s IndexSpec) bson.D {
	d := bson.D{
		{Key: "ns", Value: ns.String()},
		{Key: "name", Value: s.Name},
		{Key: "key", Value: *s.Key},
		{Key: "unique", Value: s.Unique},
	}
	if s.Partial != nil {
		d = append(d, bson.E{Key: "partial", Value: *s.Partial})
	}
	if s.Expiry != 0 {
		d = append(d, bson.E{Key: "expiry", Value: int64(s.Expiry)})
	}
	return d
}

func decodeIndex(d bson.D) (NS, IndexSpec, error) {
	var (
		s  IndexSpec
		ns NS
	)
	for _, e := range d {
		switch e.Key {
		case "ns":
			name, _ := e.Value.(string)
			var err error
			if ns, err = parseNS(name); err != nil {
				return ns, s, err
			}
		case "name":
			s.Name, _ = e.Value.(string)
		case "key":
			if k, ok := e.Value.(bson.D); ok {
				s.Key = &k
			}
		case "unique":
			s.Unique, _ = e.Value.(bool)
		case "partial":
			if p, ok := e.Value.(bson.D); ok {
				s.Partial = &p
			}
		case "expiry":
			n, _ := e.Value.(int64)
			s.Expiry = time.Duration(n)
		}
	}
	if s.Key == nil || s.Name == "" {
		return ns, s, fmt.Errorf("an index without a name or a key: %v", d)
	}
	return ns, s, nil
}

// decodeRecord returns the ops of a journal record.
func decodeRecord(payload []byte) ([]journalOp, error) {
	var d bson.D
	if err := bson.Unmarshal(payload, &d); err != nil {
		return nil, err
	}
	if len(d) != 1 || d[0].Key != "o" {
		return nil, fmt.Errorf("not a journal record: %v", d)
	}
	list, ok := d[0].Value.(bson.A)
	if !ok {
		return nil, fmt.Errorf("not a journal record: %v", d)
	}
	ops := make([]journalOp, 0, len(list))
	for _, item := range list {
		op, ok := item.(bson.D)
		if !ok || len(op) != 1 {
			return nil, fmt.Errorf("not a journal op: %v", item)
		}
		v, ok := op[0].Value.(bson.D)
		if !ok {
			return nil, fmt.Errorf("not a journal op: %v", item)
		}
		switch op[0].Key {
		case "e":
			ops = append(ops, journalOp{entry: &v})
		case "i":
			ns, spec, err := decodeIndex(v)
			if err != nil {
				return nil, err
			}
			ops = append(ops, journalOp{index: &indexOp{ns: ns, spec: spec}})
		default:
			return nil, fmt.Errorf("not a journal op: %v", item)
		}
	}
	return ops, nil
}

// readJournal replays the journal of generation gen at path through apply.
// It returns where its valid records end, the checksum chain there and the
// file's size; a tail that does not check out is returned as a *tailError,
// never applied, unless it is all zeros (the zeros written ahead of the
// records). A header that does not check out is a tail at offset 0.
func readJournal(path string, gen uint64, apply func([]journalOp) error) (records int, end int64, crc uint32, size int64, tail *tailError, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, 0, nil, err
	}
	size = int64(len(data))
	h, err := decodeHeader(data, journalMagic, path)
	if err != nil {
		if errors.Is(err, ErrFormat) {
			return 0, 0, 0, size, nil, err
		}
		return 0, 0, 0, size, &tailError{0, "a journal header that does not check out (" + err.Error() + ")"}, nil
	}
	if h.gen != gen {
		return 0, 0, 0, size, nil, fmt.Errorf("%s: its header says generation %d", path, h.gen)
	}
	fr := newFrameReader(bytes.NewReader(data[headerSize:]), h.salt)
	for {
		at := fr.offset
		payload, err := fr.next()
		if errors.Is(err, io.EOF) {
			return records, fr.offset, fr.crc, size, nil, nil
		}
		var te *tailError
		if errors.As(err, &te) {
			if allZero(data[te.offset:]) { // the zeros written ahead
				return records, fr.offset, fr.crc, size, nil, nil
			}
			return records, fr.offset, fr.crc, size, te, nil
		}
		if err != nil {
			return records, fr.offset, fr.crc, size, nil, err
		}
		ops, err := decodeRecord(payload)
		if err != nil {
			// The checksum held, so this is no torn write: refuse.
			return records, at, fr.crc, size, nil, fmt.Errorf("%s: the record at offset %d: %w", path, at, err)
		}
		if err := apply(ops); err != nil {
			return records, at, fr.crc, size, nil, fmt.Errorf("%s: replaying the record at offset %d: %w", path, at, err)
		}
		records++
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// entryNS returns the namespace of an oplog entry.
func entryNS(entry bsonkit.Doc) (NS, bool) {
	db, _ := bsonkit.Get(entry, "ns.db").(string)
	coll, _ := bsonkit.Get(entry, "ns.coll").(string)
	return NS{db, coll}, db != ""
}
