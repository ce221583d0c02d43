package engine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// Both kinds of file (a snapshot, a journal) are a 32-byte header and then
// frames. The header:
//
//	magic [8]byte  "RTRGSNAP" or "RTRGJRNL"
//	version uint32 the format (1)
//	_       uint32 zero
//	gen     uint64 the generation: a snapshot of generation g holds what the
//	               journals before g held; journal g follows it
//	salt    uint32 a random seed of the frames' checksum chain
//	crc     uint32 CRC-32C of the 28 bytes before it
//
// A frame is its payload's length (uint32), a checksum (uint32) and the
// payload (a BSON document). The checksum is a CRC-32C of the length and
// the payload, seeded with the checksum of the frame before (the salt for
// the first): a frame only checks out after the very frames it was written
// after, so neither a stale frame left beyond the end by a failed write nor
// one of another file can pass for the next one. Integers are little-endian.
const (
	headerSize     = 32
	frameHead      = 8
	maxFrame       = 1 << 30
	formatVersion  = 1
	snapshotMagic  = "RTRGSNAP"
	journalMagic   = "RTRGJRNL"
	legacyFormat   = 0 // lungo v0.4.0's file: one BSON document
	legacyFormatIs = "lungo v0.4.0's single-document file"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrFormat: a data file is in a format this build does not read (newer, or
// not a data file at all). The error that wraps it names the file and the
// version found.
var ErrFormat = errors.New("unsupported data file format")

type fileHeader struct {
	magic   string
	version uint32
	gen     uint64
	salt    uint32
}

func (h fileHeader) encode() []byte {
	b := make([]byte, headerSize)
	copy(b, h.magic)
	binary.LittleEndian.PutUint32(b[8:], h.version)
	binary.LittleEndian.PutUint64(b[16:], h.gen)
	binary.LittleEndian.PutUint32(b[24:], h.salt)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

// decodeHeader reads a header of the given magic. A header of a newer
// version wraps ErrFormat.
func decodeHeader(b []byte, magic, path string) (fileHeader, error) {
	if len(b) < headerSize {
		return fileHeader{}, fmt.Errorf("%s: %d bytes, shorter than a header", path, len(b))
	}
	if string(b[:8]) != magic {
		return fileHeader{}, fmt.Errorf("%s: no %s header", path, magic)
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return fileHeader{}, fmt.Errorf("%s: the header's checksum does not match", path)
	}
	h := fileHeader{
		magic:   magic,
		version: binary.LittleEndian.Uint32(b[8:]),
		gen:     binary.LittleEndian.Uint64(b[16:]),
		salt:    binary.LittleEndian.Uint32(b[24:]),
	}
	if h.version != formatVersion {
		return h, fmt.Errorf("%w: %s is format version %d; this build reads version %d only: open it with the retrigger that wrote it, or a newer one",
			ErrFormat, path, h.version, formatVersion)
	}
	return h, nil
}

// appendFrame appends a frame of payload, chained after prev, and returns
// the chain's new value.
func appendFrame(dst []byte, prev uint32, payload []byte) ([]byte, uint32) {
	var head [frameHead]byte
	binary.LittleEndian.PutUint32(head[:4], uint32(len(payload)))
	crc := crc32.Update(prev, castagnoli, head[:4])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(head[4:], crc)
	dst = append(dst, head[:]...)
	return append(dst, payload...), crc
}

// tailError reports where and why the frames stop checking out.
type tailError struct {
	offset int64
	reason string
}

func (e *tailError) Error() string { return fmt.Sprintf("%s at offset %d", e.reason, e.offset) }

// frameReader reads the frames after a header.
type frameReader struct {
	r      *bufio.Reader
	crc    uint32
	offset int64 // of the next frame
	buf    []byte
}

func newFrameReader(r io.Reader, salt uint32) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 1<<16), crc: salt, offset: headerSize}
}

// next returns the next frame's payload (valid until the next call), io.EOF
// at a clean end, or a *tailError.
func (fr *frameReader) next() ([]byte, error) {
	var head [frameHead]byte
	n, err := io.ReadFull(fr.r, head[:])
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return nil, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, &tailError{fr.offset, "an incomplete record (its header cut short)"}
	case err != nil:
		return nil, err
	}
	size := binary.LittleEndian.Uint32(head[:4])
	if size > maxFrame {
		return nil, &tailError{fr.offset, fmt.Sprintf("a record with an impossible length (%d bytes)", size)}
	}
	if cap(fr.buf) < int(size) {
		fr.buf = make([]byte, size)
	}
	payload := fr.buf[:size]
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, &tailError{fr.offset, "an incomplete record (cut short)"}
		}
		return nil, err
	}
	crc := crc32.Update(fr.crc, castagnoli, head[:4])
	crc = crc32.Update(crc, castagnoli, payload)
	if crc != binary.LittleEndian.Uint32(head[4:]) {
		return nil, &tailError{fr.offset, "a record whose checksum does not match"}
	}
	fr.crc = crc
	fr.offset += frameHead + int64(size)
	return payload, nil
}

// file is what the engine writes through: an *os.File, or in tests a
// wrapper that injects faults.
type file interface {
	io.Writer
	io.WriterAt
	// Sync makes what was written durable (fdatasync where there is one).
	Sync() error
	Truncate(size int64) error
	Close() error
}

// fileSystem opens the files the engine writes.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (file, error)
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return datasync(f.File) }

// syncDir makes the entries of dir (a file created, renamed or removed)
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

func dirOf(path string) string { return filepath.Dir(path) }
