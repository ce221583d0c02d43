package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"github.com/256dpi/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// A snapshot's frames, in order:
//
//	{t: "meta", ts: the clock's last timestamp, namespaces: n}
//	per namespace: {t: "ns", ns: "db.coll", indexes: [spec...], docs: n}
//	               and its documents in natural order, in frames of
//	               {t: "docs", d: [doc...]}
//	{t: "oplog", d: [entry...]} frames, oldest first
//	{t: "end", docs: n, entries: n}
//
// A snapshot without its end frame is incomplete: it is only ever renamed
// into place once complete and synced, so that means damage, and Open
// refuses it.

const snapshotChunk = 1 << 20 // bytes of documents per frame, about

// writeSnapshot writes v as the snapshot of generation gen at path: into
// path.tmp, synced, then renamed over path, and the directory synced. It
// returns the snapshot's size.
func writeSnapshot(fs fileSystem, path string, gen uint64, v *View, hook hookFunc) (int64, error) {
	tmp := path + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("writing a snapshot: %w", err)
	}
	n, err := writeSnapshotTo(f, gen, v, hook)
	if err == nil {
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("syncing %s: %w", tmp, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("writing a snapshot: %w", err)
	}
	hook.at("snapshot-synced")
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("writing a snapshot: %w", err)
	}
	if err := syncDir(dirOf(path)); err != nil {
		return 0, fmt.Errorf("writing a snapshot: %w", err)
	}
	hook.at("snapshot-renamed")
	return n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeSnapshotTo(f file, gen uint64, v *View, hook hookFunc) (int64, error) {
	cw := &countingWriter{w: f}
	w := bufio.NewWriterSize(cw, 1<<20)
	h := fileHeader{magic: snapshotMagic, version: formatVersion, gen: gen, salt: rand.Uint32()}
	if _, err := w.Write(h.encode()); err != nil {
		return 0, err
	}
	crc := h.salt
	var buf []byte
	frame := func(d bson.D) error {
		payload, err := bson.Marshal(d)
		if err != nil {
			return err
		}
		buf, crc = appendFrame(buf[:0], crc, payload)
		_, err = w.Write(buf)
		return err
	}
	// chunks writes list in frames of about snapshotChunk bytes.
	chunks := func(t string, each func(yield func(bsonkit.Doc) bool)) (int, error) {
		var (
			batch bson.A
			size  int
			count int
			err   error
		)
		each(func(doc bsonkit.Doc) bool {
			batch = append(batch, *doc)
			size += docSize(doc)
			count++
			if size >= snapshotChunk {
				err = frame(bson.D{{Key: "t", Value: t}, {Key: "d", Value: batch}})
				batch, size = batch[:0], 0
			}
			return err == nil
		})
		if err == nil && len(batch) > 0 {
			err = frame(bson.D{{Key: "t", Value: t}, {Key: "d", Value: batch}})
		}
		return count, err
	}

	namespaces := v.namespaces()
	if err := frame(bson.D{{Key: "t", Value: "meta"}, {Key: "ts", Value: v.ts}, {Key: "namespaces", Value: len(namespaces)}}); err != nil {
		return 0, err
	}
	docs := 0
	for i, ns := range namespaces {
		c := v.colls[ns]
		specs := bson.A{}
		for _, s := range c.specs() {
			specs = append(specs, encodeIndex(ns, s))
		}
		if err := frame(bson.D{{Key: "t", Value: "ns"}, {Key: "ns", Value: ns.String()}, {Key: "indexes", Value: specs}, {Key: "docs", Value: c.docs.Len()}}); err != nil {
			return 0, err
		}
		n, err := chunks("docs", func(yield func(bsonkit.Doc) bool) {
			c.docs.Scan(func(it docItem) bool { return yield(it.doc) })
		})
		if err != nil {
			return 0, err
		}
		docs += n
		if hook != nil && i == len(namespaces)/2 {
			// Tests: a snapshot half written when the hook runs.
			if err := w.Flush(); err != nil {
				return 0, err
			}
			hook.at("snapshot-partial")
		}
	}
	entries, err := chunks("oplog", func(yield func(bsonkit.Doc) bool) {
		for _, e := range v.oplog {
			if !yield(e) {
				return
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if err := frame(bson.D{{Key: "t", Value: "end"}, {Key: "docs", Value: docs}, {Key: "entries", Value: entries}}); err != nil {
		return 0, err
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// docSize estimates a document's BSON size for chunking, cheaply.
func docSize(doc bsonkit.Doc) int {
	n := 16
	for _, e := range *doc {
		n += len(e.Key) + 16
		switch v := e.Value.(type) {
		case string:
			n += len(v)
		case bson.D:
			n += docSize(&v)
		case bson.A:
			n += 16 * len(v)
		case primitive.Binary:
			n += len(v.Data)
		}
	}
	return n
}

// loaded is what a data file held.
type loaded struct {
	format  int    // formatVersion, or legacyFormat
	gen     uint64 // the snapshot's generation (0 for a legacy file)
	ts      primitive.Timestamp
	colls   []loadedNS
	oplog   bsonkit.List
	docs    int
	bytes   int64
	migrate bool // a legacy file: write it anew in this format
}

type loadedNS struct {
	ns      NS
	indexes []IndexSpec
	docs    bsonkit.List
}

// readDataFile reads the snapshot at path: nil if there is none. A file in
// lungo's format is read as such; one in a newer format, or in none known,
// is refused with an error wrapping ErrFormat.
func readDataFile(path string) (*loaded, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a data file", path)
	}
	head := make([]byte, headerSize)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte(snapshotMagic)) {
		h, err := decodeHeader(head, snapshotMagic, path)
		if err != nil {
			return nil, err
		}
		l, err := readSnapshotFrames(f, h, path)
		if err != nil {
			return nil, err
		}
		l.bytes = st.Size()
		return l, nil
	}
	if isBSONDocument(head, st.Size()) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		l, err := readLegacy(data, path)
		if err != nil {
			return nil, err
		}
		l.bytes = st.Size()
		return l, nil
	}
	return nil, fmt.Errorf("%w: %s is not a retrigger data file (it starts with %q): move it aside, or point -data-dir elsewhere",
		ErrFormat, path, head[:min(len(head), 8)])
}

// isBSONDocument reports whether a file of this size starting with head
// could be one BSON document: its length prefix is the file's size.
func isBSONDocument(head []byte, size int64) bool {
	return len(head) >= 5 && int64(binary.LittleEndian.Uint32(head)) == size
}

func readSnapshotFrames(r io.Reader, h fileHeader, path string) (*loaded, error) {
	l := &loaded{format: formatVersion, gen: h.gen}
	fr := newFrameReader(r, h.salt)
	var cur *loadedNS
	for {
		payload, err := fr.next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the snapshot ends without its end record: it is damaged (restore it from a backup, or move it aside to start empty)", path)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: the snapshot is damaged: %w (restore it from a backup, or move it aside to start empty)", path, err)
		}
		var d bson.D
		if err := bson.Unmarshal(payload, &d); err != nil {
			return nil, fmt.Errorf("%s: record at offset %d: %w", path, fr.offset, err)
		}
		m := make(map[string]any, len(d))
		for _, e := range d {
			m[e.Key] = e.Value
		}
		switch m["t"] {
		case "meta":
			l.ts, _ = m["ts"].(primitive.Timestamp)
		case "ns":
			name, _ := m["ns"].(string)
			ns, err := parseNS(name)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			l.colls = append(l.colls, loadedNS{ns: ns})
			cur = &l.colls[len(l.colls)-1]
			specs, _ := m["indexes"].(bson.A)
			for _, s := range specs {
				sd, _ := s.(bson.D)
				_, spec, err := decodeIndex(sd)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				cur.indexes = append(cur.indexes, spec)
			}
		case "docs", "oplog":
			list, _ := m["d"].(bson.A)
			for _, item := range list {
				doc, ok := item.(bson.D)
				if !ok {
					return nil, fmt.Errorf("%s: a %s record holds a %T", path, m["t"], item)
				}
				if m["t"] == "oplog" {
					l.oplog = append(l.oplog, &doc)
				} else if cur == nil {
					return nil, fmt.Errorf("%s: documents before their namespace", path)
				} else {
					cur.docs = append(cur.docs, &doc)
					l.docs++
				}
			}
		case "end":
			docs, entries := asInt(m["docs"]), asInt(m["entries"])
			if docs != l.docs || entries != len(l.oplog) {
				return nil, fmt.Errorf("%s: the snapshot says %d documents and %d oplog entries, and holds %d and %d: it is damaged", path, docs, entries, l.docs, len(l.oplog))
			}
			return l, nil
		default:
			return nil, fmt.Errorf("%s: an unknown record %v", path, m["t"])
		}
	}
}

// lungo v0.4.0's file (lungo.File): {namespaces: {"db.coll": {documents:
// [...], indexes: {name: {key, unique, partial, expiry}}}}}, the oplog as
// the namespace "local.oplog".
type legacyFile struct {
	Namespaces map[string]legacyNS `bson:"namespaces"`
}

type legacyNS struct {
	Documents []bson.D             `bson:"documents"`
	Indexes   map[string]legacyIdx `bson:"indexes"`
}

type legacyIdx struct {
	Key     bson.D        `bson:"key"`
	Unique  bool          `bson:"unique"`
	Partial *bson.D       `bson:"partial"`
	Expiry  time.Duration `bson:"expiry"`
}

func readLegacy(data []byte, path string) (*loaded, error) {
	var raw bson.Raw = data
	if err := raw.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s is not a retrigger data file (not one BSON document: %v)", ErrFormat, path, err)
	}
	if _, err := raw.LookupErr("namespaces"); err != nil {
		return nil, fmt.Errorf("%w: %s is one BSON document but not %s (format %d): it has no namespaces", ErrFormat, path, legacyFormatIs, legacyFormat)
	}
	var lf legacyFile
	if err := bson.Unmarshal(data, &lf); err != nil {
		return nil, fmt.Errorf("%w: %s looks like %s (format %d) but does not read as one: %v", ErrFormat, path, legacyFormatIs, legacyFormat, err)
	}
	l := &loaded{format: legacyFormat, migrate: true}
	names := make([]string, 0, len(lf.Namespaces))
	for name := range lf.Namespaces {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		lns := lf.Namespaces[name]
		if name == "local.oplog" {
			for i := range lns.Documents {
				l.oplog = append(l.oplog, &lns.Documents[i])
			}
			continue
		}
		ns, err := parseNS(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out := loadedNS{ns: ns}
		for idxName, idx := range lns.Indexes {
			if idxName == "_id_" {
				continue // every collection's, built in
			}
			key := idx.Key
			out.indexes = append(out.indexes, IndexSpec{Name: idxName, Key: &key, Unique: idx.Unique, Partial: idx.Partial, Expiry: idx.Expiry})
		}
		for i := range lns.Documents {
			out.docs = append(out.docs, &lns.Documents[i])
		}
		l.docs += len(out.docs)
		l.colls = append(l.colls, out)
	}
	if n := len(l.oplog); n > 0 {
		l.ts = EntryTS(l.oplog[n-1])
	}
	return l, nil
}

func asInt(v any) int {
	switch n := v.(type) {
	case int32:
		return int(n)
	case int64:
		return int(n)
	}
	return -1
}
