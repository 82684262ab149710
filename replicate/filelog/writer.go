package filelog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hakit/hakit/replicate"
)

// DefaultSegmentSize is the size past which a Writer starts a new segment.
const DefaultSegmentSize = 64 << 20

// ErrClosed is returned by a closed Writer.
var ErrClosed = errors.New("filelog: writer closed")

// Writer appends records to a log directory. One Writer per directory:
// the format has no protection against two writers, which would
// interleave frames. A Writer is safe for concurrent use.
//
// Appends reach the file at once (readers see them) but are durable only
// after Sync. When a Writer opens an existing log it checks the last
// segment and cuts off an incomplete record at its end — what a crash in
// the middle of an append leaves behind — while any other damage is an
// error naming the file and offset.
type Writer struct {
	dir     string
	segSize int64

	mu   sync.Mutex
	f    *os.File
	seg  uint64
	size int64
	buf  []byte
}

// WriterOptions configures OpenWriter.
type WriterOptions struct {
	// SegmentSize is the size after which appends go to a new segment;
	// 0 selects DefaultSegmentSize. A segment may exceed it by the last
	// Append.
	SegmentSize int64
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	return o
}

func (o WriterOptions) validate() error {
	if o.SegmentSize < 0 {
		return fmt.Errorf("%w: SegmentSize: must not be negative, got %d", ErrConfig, o.SegmentSize)
	}
	return nil
}

// OpenWriter opens the log in dir for appending, creating dir and the
// first segment if needed. Invalid options are refused with an error
// wrapping ErrConfig.
func OpenWriter(dir string, opts WriterOptions) (*Writer, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("filelog: create log directory: %w", err)
	}
	if stale, err := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); err == nil {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, segSize: opts.SegmentSize}
	if len(segs) == 0 {
		if err := w.create(1); err != nil {
			return nil, err
		}
		return w, nil
	}
	if err := w.recover(segs[len(segs)-1]); err != nil {
		return nil, err
	}
	return w, nil
}

// recover opens the last segment, scans it and cuts off a torn tail.
func (w *Writer) recover(seg uint64) error {
	path := segmentPath(w.dir, seg)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("filelog: open segment: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("filelog: read %s: %w", path, err)
	}
	if err := checkHeader(b, seg); err != nil {
		f.Close()
		return fmt.Errorf("filelog: %s offset 0: %w", path, err)
	}
	off := HeaderLen
	for off < len(b) {
		_, n, _, err := DecodeRecord(b[off:])
		if errors.Is(err, ErrShort) {
			break
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("filelog: %s offset %d: %w", path, off, err)
		}
		off += n
	}
	if off < len(b) {
		if err := f.Truncate(int64(off)); err != nil {
			f.Close()
			return fmt.Errorf("filelog: cut torn record in %s at offset %d: %w", path, off, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("filelog: sync %s: %w", path, err)
		}
	}
	w.f, w.seg, w.size = f, seg, int64(off)
	return nil
}

// create starts segment seg. The header is written and synced in a
// temporary file that is then linked under the segment's name, so a
// reader never sees a segment without its whole header; the link fails if
// the segment exists.
func (w *Writer) create(seg uint64) error {
	path := segmentPath(w.dir, seg)
	tmp, err := os.CreateTemp(w.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("filelog: create segment: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(encodeHeader(seg))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("filelog: write header of %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("filelog: create segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("filelog: open segment: %w", err)
	}
	w.f, w.seg, w.size = f, seg, HeaderLen
	return nil
}

// tempPrefix starts the names of segments being created; such a file left
// by a crash is not a segment and is removed by the next OpenWriter.
const tempPrefix = ".segment-"

// Append writes records with the given data, in one write, and returns the
// position after the last one. It starts a new segment first if the
// current one has reached the segment size.
func (w *Writer) Append(data ...[]byte) (replicate.Position, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil, ErrClosed
	}
	if w.size >= w.segSize && w.size > HeaderLen {
		if err := w.f.Sync(); err != nil {
			return nil, fmt.Errorf("filelog: sync %s: %w", w.f.Name(), err)
		}
		old := w.f
		if err := w.create(w.seg + 1); err != nil {
			return nil, err
		}
		old.Close()
	}
	w.buf = w.buf[:0]
	for _, d := range data {
		if len(d) > MaxRecordSize {
			return nil, fmt.Errorf("filelog: record of %d bytes exceeds %d", len(d), MaxRecordSize)
		}
		w.buf = AppendRecord(w.buf, d)
	}
	n, err := w.f.WriteAt(w.buf, w.size)
	if err != nil {
		// Cut off whatever part was written, so the log stays whole.
		_ = w.f.Truncate(w.size)
		return nil, fmt.Errorf("filelog: append to %s at offset %d: %w", w.f.Name(), w.size, err)
	}
	w.size += int64(n)
	return EncodePosition(w.seg, uint64(w.size)), nil
}

// Sync makes every appended record durable.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return ErrClosed
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("filelog: sync %s: %w", w.f.Name(), err)
	}
	return nil
}

// Position returns the position after the last appended record.
func (w *Writer) Position() replicate.Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return EncodePosition(w.seg, uint64(w.size))
}

// Close syncs and closes the Writer.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return ErrClosed
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// listSegments returns the segment numbers in dir, ascending, and checks
// that they have no gaps.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("filelog: list %s: %w", dir, err)
	}
	var segs []uint64
	for _, e := range ents {
		if seg, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, seg)
		}
	}
	slices.Sort(segs)
	for i := 1; i < len(segs); i++ {
		if segs[i] != segs[i-1]+1 {
			return nil, fmt.Errorf("%w: %s: segment %d follows %d", ErrTruncated, dir, segs[i], segs[i-1])
		}
	}
	return segs, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("filelog: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("filelog: sync directory %s: %w", dir, err)
	}
	return nil
}
