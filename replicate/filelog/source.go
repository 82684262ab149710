package filelog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/replicate"
)

// Defaults for Source fields left at zero.
const (
	DefaultPollInterval = 50 * time.Millisecond
	DefaultReadSize     = 1 << 20
)

// Source reads the log in Dir and follows it as it grows: at the end of
// the newest segment a Cursor polls every PollInterval (on Clock) until
// more bytes or a new segment appear, or its ctx ends. It is a
// replicate.Source and replicate.Comparer; it keeps no State. Any number
// of Cursors may read the same log, in this process or another, while one
// Writer appends to it.
type Source struct {
	Dir          string
	PollInterval time.Duration // 0: DefaultPollInterval
	ReadSize     int           // bytes read per system call; 0: DefaultReadSize
	Clock        clock.Clock   // nil: the real clock
}

var (
	_ replicate.Source   = (*Source)(nil)
	_ replicate.Comparer = (*Source)(nil)
)

// Compare orders positions by their bytes (replicate.Comparer).
func (s *Source) Compare(a, b replicate.Position) int { return replicate.CompareBytes(a, b) }

// Open returns a Cursor after from.Pos; a nil Pos is the beginning of the
// log, the start of segment 1 (waiting for it if the log is empty). A log
// whose segment 1 was removed cannot be read from its beginning: a nil
// Pos is then an error matching ErrTruncated, never a silent start at the
// oldest segment left. A malformed position, a missing segment or a
// segment shorter than the position is an error naming the file and
// offset.
func (s *Source) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	c := &cursor{
		dir:  s.Dir,
		poll: s.PollInterval,
		read: s.ReadSize,
		clk:  s.Clock,
	}
	var errs []error
	if c.poll < 0 {
		errs = append(errs, fmt.Errorf("%w: PollInterval: must not be negative, got %v", ErrConfig, c.poll))
	}
	if c.read < 0 {
		errs = append(errs, fmt.Errorf("%w: ReadSize: must not be negative, got %d", ErrConfig, c.read))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.poll == 0 {
		c.poll = DefaultPollInterval
	}
	if c.read == 0 {
		c.read = DefaultReadSize
	}
	if c.clk == nil {
		c.clk = clock.Real()
	}
	if from.Pos == nil {
		segs, err := listSegments(s.Dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if len(segs) == 0 {
			return c, nil // seg 0: waiting for segment 1
		}
		if segs[0] != 1 {
			// The beginning is gone (retention, or damage): starting
			// at the oldest segment left would skip what was before it.
			return nil, fmt.Errorf("%w: %s has no segment 1 (the oldest is %s), so the log cannot be read from its beginning",
				ErrTruncated, s.Dir, SegmentName(segs[0]))
		}
		if err := c.openSegment(segs[0], HeaderLen); err != nil {
			return nil, err
		}
		return c, nil
	}
	seg, off, err := DecodePosition(from.Pos)
	if err != nil {
		return nil, fmt.Errorf("filelog: open %s at %x: %w", s.Dir, []byte(from.Pos), err)
	}
	if err := c.openSegment(seg, off); err != nil {
		return nil, err
	}
	return c, nil
}

// cursor reads one segment at a time. Invariant: bytes [off, off+len(buf))
// of the current segment are in buf, unparsed; records before off were
// returned.
type cursor struct {
	dir  string
	poll time.Duration
	read int
	clk  clock.Clock

	f    *os.File
	seg  uint64 // 0 until the first segment exists
	off  uint64
	buf  []byte
	path string

	scanned time.Time // when checkGap last listed the directory
}

// openSegment makes seg the current segment, positioned at off.
func (c *cursor) openSegment(seg, off uint64) error {
	path := segmentPath(c.dir, seg)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: segment file %s (offset %d) does not exist", ErrTruncated, path, off)
	}
	if err != nil {
		return fmt.Errorf("filelog: %w", err)
	}
	hdr := make([]byte, HeaderLen)
	if _, err := io.ReadFull(f, hdr); err != nil {
		f.Close()
		return fmt.Errorf("%w: %s offset 0: header: %v", ErrCorrupt, path, err)
	}
	if err := checkHeader(hdr, seg); err != nil {
		f.Close()
		return fmt.Errorf("filelog: %s offset 0: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("filelog: %w", err)
	}
	if uint64(st.Size()) < off {
		f.Close()
		return fmt.Errorf("%w: %s has %d bytes, position is at offset %d", ErrTruncated, path, st.Size(), off)
	}
	if c.f != nil {
		c.f.Close()
	}
	c.f, c.seg, c.off, c.buf, c.path = f, seg, off, nil, path
	return nil
}

// Next returns up to max records, following the log as it grows. A
// damaged record is an error naming the file and offset; the cursor
// should then be closed.
func (c *cursor) Next(ctx context.Context, max int) ([]replicate.Record, error) {
	if max <= 0 {
		max = 1
	}
	for {
		if c.f == nil {
			if err := c.awaitFirst(ctx); err != nil {
				return nil, err
			}
			continue
		}
		recs, need, err := c.parse(max)
		if err != nil || len(recs) > 0 {
			return recs, err
		}
		n, err := c.fill(need)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			continue
		}
		// At the end of the segment: move on if it has a successor.
		moved, err := c.advance()
		if err != nil || moved {
			if err != nil {
				return nil, err
			}
			continue
		}
		// Forget a partial record before waiting: if a Writer restarts
		// and cuts it off as a torn tail, the next read starts afresh at
		// the last whole record instead of splicing old and new bytes.
		c.buf = c.buf[:0]
		if err := c.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// parse decodes up to max whole records from buf.
func (c *cursor) parse(max int) ([]replicate.Record, int, error) {
	var recs []replicate.Record
	var pos []byte
	for len(recs) < max {
		data, n, need, err := DecodeRecord(c.buf)
		if errors.Is(err, ErrShort) {
			return recs, need, nil
		}
		if err != nil {
			return recs, 0, fmt.Errorf("filelog: %s offset %d: %w", c.path, c.off, err)
		}
		if recs == nil {
			recs = make([]replicate.Record, 0, min(max, 1+len(c.buf)/(n+1)))
		}
		if len(pos) < PositionLen {
			pos = make([]byte, PositionLen*min(256, max-len(recs)))
		}
		c.off += uint64(n)
		c.buf = c.buf[n:]
		p := pos[:PositionLen:PositionLen]
		pos = pos[PositionLen:]
		putPosition(p, c.seg, c.off)
		recs = append(recs, replicate.Record{Pos: p, Data: data[:len(data):len(data)]})
	}
	return recs, 0, nil
}

// fill reads more of the segment into buf so that at least need bytes can
// be there, and returns how many bytes it read. Records already returned
// alias buf's array below buf, so new bytes go only after it.
func (c *cursor) fill(need int) (int, error) {
	want := max(need, len(c.buf)+c.read/4)
	if cap(c.buf) < want {
		nb := make([]byte, len(c.buf), max(want, c.read))
		copy(nb, c.buf)
		c.buf = nb
	}
	at := int64(c.off) + int64(len(c.buf))
	n, err := c.f.ReadAt(c.buf[len(c.buf):cap(c.buf)], at)
	c.buf = c.buf[:len(c.buf)+n]
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("filelog: read %s at offset %d: %w", c.path, at, err)
	}
	if n == 0 {
		st, err := c.f.Stat()
		if err != nil {
			return 0, fmt.Errorf("filelog: %w", err)
		}
		if st.Size() < at {
			return 0, fmt.Errorf("%w: %s has %d bytes, the reader is at offset %d", ErrTruncated, c.path, st.Size(), at)
		}
	}
	return n, nil
}

// advance moves to the next segment if it exists and the current one has
// nothing more. The Writer finishes a segment before creating the next,
// so once the next exists one more read of the current one is final.
func (c *cursor) advance() (bool, error) {
	next := segmentPath(c.dir, c.seg+1)
	if _, err := os.Stat(next); errors.Is(err, fs.ErrNotExist) {
		return false, c.checkGap(next)
	} else if err != nil {
		return false, fmt.Errorf("filelog: %w", err)
	}
	n, err := c.fill(0)
	if err != nil || n > 0 {
		return n > 0, err
	}
	if len(c.buf) > 0 {
		return false, fmt.Errorf("%w: %s offset %d: incomplete record of %d bytes at the end of a segment that has a successor", ErrCorrupt, c.path, c.off, len(c.buf))
	}
	return true, c.openSegment(c.seg+1, HeaderLen)
}

// gapScanInterval is how often, on the cursor's clock, a cursor idle at the
// end of a segment lists the directory for later segments (checkGap).
const gapScanInterval = time.Second

// checkGap reports the next segment, path next, as missing when a later
// segment exists: the Writer creates segments in order, so that is damage
// (or retention that removed segments this cursor had yet to read), not an
// idle log. Every idle poll comes through here, so the directory is
// listed at most once per gapScanInterval.
func (c *cursor) checkGap(next string) error {
	now := c.clk.Now()
	if !c.scanned.IsZero() && now.Sub(c.scanned) < gapScanInterval {
		return nil
	}
	c.scanned = now
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("filelog: list %s: %w", c.dir, err)
	}
	later := uint64(0)
	for _, e := range ents {
		seg, ok := parseSegmentName(e.Name())
		switch {
		case !ok:
		case seg == c.seg+1:
			return nil // created since the Stat: not a gap
		case seg > c.seg+1 && (later == 0 || seg < later):
			later = seg
		}
	}
	if later != 0 {
		return fmt.Errorf("%w: segment file %s (offset %d) does not exist, but segment %d does", ErrTruncated, next, HeaderLen, later)
	}
	return nil
}

// awaitFirst waits for the first segment of an empty log.
func (c *cursor) awaitFirst(ctx context.Context) error {
	segs, err := listSegments(c.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(segs) > 0 {
		return c.openSegment(segs[0], HeaderLen)
	}
	return c.wait(ctx)
}

func (c *cursor) wait(ctx context.Context) error {
	t := c.clk.NewTimer(c.poll)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Checkpoint returns the position after the last record returned (the
// start of the first segment if none was).
func (c *cursor) Checkpoint() replicate.Checkpoint {
	if c.seg == 0 {
		return replicate.Checkpoint{}
	}
	return replicate.Checkpoint{Pos: EncodePosition(c.seg, c.off)}
}

// Close closes the current segment.
func (c *cursor) Close() error {
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
