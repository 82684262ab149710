package filelog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
)

func openWriter(t *testing.T, dir string, segSize int64) *filelog.Writer {
	t.Helper()
	w, err := filelog.OpenWriter(dir, filelog.WriterOptions{SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func appendN(t *testing.T, w *filelog.Writer, from, n int) replicate.Position {
	t.Helper()
	var p replicate.Position
	for i := from; i < from+n; i++ {
		var err error
		if p, err = w.Append([]byte(fmt.Sprintf("rec-%05d", i))); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func open(t *testing.T, dir string, pos replicate.Position) replicate.Cursor {
	t.Helper()
	src := &filelog.Source{Dir: dir, PollInterval: time.Millisecond}
	c, err := src.Open(context.Background(), replicate.Checkpoint{Pos: pos})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readN reads exactly n records, checking their data and order.
func readN(t *testing.T, c replicate.Cursor, from, n int) []replicate.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []replicate.Record
	for len(got) < n {
		recs, err := c.Next(ctx, n-len(got))
		if err != nil {
			t.Fatalf("after %d records: %v", len(got), err)
		}
		got = append(got, recs...)
	}
	for i, r := range got {
		if want := fmt.Sprintf("rec-%05d", from+i); string(r.Data) != want {
			t.Fatalf("record %d is %q, want %q", i, r.Data, want)
		}
		if i > 0 && bytes.Compare(got[i-1].Pos, r.Pos) >= 0 {
			t.Fatalf("positions not increasing: %x then %x", got[i-1].Pos, r.Pos)
		}
	}
	if cp := c.Checkpoint(); !bytes.Equal(cp.Pos, got[len(got)-1].Pos) {
		t.Fatalf("checkpoint %x, last record at %x", cp.Pos, got[len(got)-1].Pos)
	}
	return got
}

func TestWriteReadAcrossSegmentsAndResume(t *testing.T) {
	dir := t.TempDir()
	w := openWriter(t, dir, 100) // about 5 records a segment
	appendN(t, w, 0, 40)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(segs) < 5 {
		t.Fatalf("expected rotation, got %d segments", len(segs))
	}
	recs := readN(t, open(t, dir, nil), 0, 40)
	// Resume from every position: the rest follows exactly.
	for i := 0; i < 40; i += 7 {
		readN(t, open(t, dir, recs[i].Pos), i+1, 39-i)
	}
}

func TestCursorFollowsGrowth(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, nil) // the log does not exist yet
	done := make(chan []replicate.Record)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		recs, err := c.Next(ctx, 10)
		if err != nil {
			t.Error(err)
		}
		done <- recs
	}()
	w := openWriter(t, dir, 60)
	appendN(t, w, 0, 1)
	if recs := <-done; len(recs) != 1 || string(recs[0].Data) != "rec-00000" {
		t.Fatalf("got %q", recs)
	}
	appendN(t, w, 1, 20)
	readN(t, c, 1, 20)
}

// Polling runs on the injected clock: no new data is seen until the poll
// timer fires.
func TestCursorPollsOnClock(t *testing.T) {
	dir := t.TempDir()
	w := openWriter(t, dir, 0)
	clk := clock.NewFake(time.Unix(0, 0))
	src := &filelog.Source{Dir: dir, PollInterval: time.Second, Clock: clk}
	c, err := src.Open(context.Background(), replicate.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan int)
	go func() {
		recs, err := c.Next(context.Background(), 5)
		if err != nil {
			t.Error(err)
		}
		got <- len(recs)
	}()
	if err := clk.WaitForTimers(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	appendN(t, w, 0, 3)
	select {
	case n := <-got:
		t.Fatalf("Next returned %d records before the poll timer fired", n)
	default:
	}
	clk.Advance(time.Second)
	if n := <-got; n != 3 {
		t.Fatalf("got %d records, want 3", n)
	}
	// Next honours ctx while waiting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Next(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on a cancelled ctx = %v", err)
	}
}

func TestDamageIsNamed(t *testing.T) {
	type setup func(t *testing.T, dir string, recs []replicate.Record) (pos replicate.Position, openErr bool)
	seg1 := func(dir string) string { return filepath.Join(dir, filelog.SegmentName(1)) }
	cases := []struct {
		name  string
		setup setup
		want  error
		file  string
	}{
		{"flipped data byte", func(t *testing.T, dir string, _ []replicate.Record) (replicate.Position, bool) {
			flipByte(t, seg1(dir), filelog.HeaderLen+filelog.FrameOverhead+2)
			return nil, false
		}, filelog.ErrCorrupt, "offset 20"},
		{"huge length", func(t *testing.T, dir string, _ []replicate.Record) (replicate.Position, bool) {
			flipByte(t, seg1(dir), filelog.HeaderLen)
			return nil, false
		}, filelog.ErrCorrupt, "offset 20"},
		{"bad header", func(t *testing.T, dir string, _ []replicate.Record) (replicate.Position, bool) {
			flipByte(t, seg1(dir), 1)
			return nil, true
		}, filelog.ErrCorrupt, "offset 0"},
		{"position beyond a truncated file", func(t *testing.T, dir string, recs []replicate.Record) (replicate.Position, bool) {
			if err := os.Truncate(seg1(dir), filelog.HeaderLen+5); err != nil {
				t.Fatal(err)
			}
			return recs[1].Pos, true
		}, filelog.ErrTruncated, "offset 54"},
		{"truncated while reading", func(t *testing.T, dir string, recs []replicate.Record) (replicate.Position, bool) {
			return recs[2].Pos, false // truncated below, after Open
		}, filelog.ErrTruncated, "offset 71"},
		{"missing segment", func(t *testing.T, dir string, recs []replicate.Record) (replicate.Position, bool) {
			return filelog.EncodePosition(9, filelog.HeaderLen), true
		}, filelog.ErrTruncated, filelog.SegmentName(9)},
		{"malformed position", func(t *testing.T, dir string, recs []replicate.Record) (replicate.Position, bool) {
			return replicate.Position("short"), true
		}, filelog.ErrCorrupt, dir0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openWriter(t, dir, 0)
			appendN(t, w, 0, 3)
			recs := readN(t, open(t, dir, nil), 0, 3)
			pos, openErr := tc.setup(t, dir, recs)
			src := &filelog.Source{Dir: dir, PollInterval: time.Millisecond}
			c, err := src.Open(context.Background(), replicate.Checkpoint{Pos: pos})
			if !openErr {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer c.Close()
				if tc.name == "truncated while reading" {
					if err := os.Truncate(seg1(dir), filelog.HeaderLen); err != nil {
						t.Fatal(err)
					}
				}
				_, err = c.Next(context.Background(), 10)
			}
			file := tc.file
			if file == dir0 {
				file = dir
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), file) {
				t.Fatalf("error %v; want %v naming %q", err, tc.want, file)
			}
		})
	}
}

const dir0 = "<dir>"

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x80
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// A crash mid-append leaves a torn record: the Writer cuts it off on open,
// and a reader of a sealed segment with a torn end reports it.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	w := openWriter(t, dir, 0)
	end := appendN(t, w, 0, 3)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, filelog.SegmentName(1))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := filelog.AppendRecord(nil, []byte("never finished"))
	if _, err := f.Write(torn[:10]); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// A reader at the end of the only segment waits: the record may still
	// be being written.
	c := open(t, dir, end)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next at a torn tail = %v, want to wait", err)
	}
	// Make the segment sealed by creating the next one by hand: now the
	// torn record is damage.
	if err := os.WriteFile(filepath.Join(dir, filelog.SegmentName(2)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(context.Background(), 1); !errors.Is(err, filelog.ErrCorrupt) || !strings.Contains(err.Error(), seg) {
		t.Fatalf("Next over a torn sealed segment = %v", err)
	}
	if err := os.Remove(filepath.Join(dir, filelog.SegmentName(2))); err != nil {
		t.Fatal(err)
	}

	w2 := openWriter(t, dir, 0)
	if p := w2.Position(); !bytes.Equal(p, end) {
		t.Fatalf("reopened writer at %x, want %x (torn record cut)", p, end)
	}
	appendN(t, w2, 3, 2)
	readN(t, open(t, dir, nil), 0, 5)
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(filelog.AppendRecord(nil, []byte("hello")))
	f.Add(filelog.AppendRecord(nil, nil))
	f.Add([]byte{0, 0, 0, 5, 1, 2, 3})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		data, n, need, err := filelog.DecodeRecord(b)
		switch {
		case errors.Is(err, filelog.ErrShort):
			if need <= len(b) {
				t.Fatalf("short with need %d <= %d", need, len(b))
			}
		case err != nil:
			if !errors.Is(err, filelog.ErrCorrupt) {
				t.Fatalf("unexpected error class: %v", err)
			}
		default:
			if n > len(b) || !bytes.Equal(filelog.AppendRecord(nil, data), b[:n]) {
				t.Fatalf("decoded %q (%d bytes) does not re-encode to its input", data, n)
			}
		}
	})
}

func FuzzDecodePosition(f *testing.F) {
	f.Add([]byte(filelog.EncodePosition(1, filelog.HeaderLen)))
	f.Add([]byte(filelog.EncodePosition(7, 1<<40)))
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		seg, off, err := filelog.DecodePosition(b)
		if err != nil {
			if !errors.Is(err, filelog.ErrCorrupt) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if again := filelog.EncodePosition(seg, off); !bytes.Equal(again, b) {
			t.Fatalf("%x decoded to %d/%d, re-encodes to %x", b, seg, off, again)
		}
	})
}

// A reader waiting at a torn tail carries on when the Writer restarts,
// cuts the torn record and appends new ones.
func TestReaderSurvivesWriterRecovery(t *testing.T) {
	dir := t.TempDir()
	w := openWriter(t, dir, 0)
	appendN(t, w, 0, 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, filelog.SegmentName(1))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := filelog.AppendRecord(nil, []byte("torn record that was never finished"))
	if _, err := f.Write(torn[:20]); err != nil {
		t.Fatal(err)
	}
	f.Close()

	c := open(t, dir, nil)
	readN(t, c, 0, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next at a torn tail = %v, want to wait", err)
	}
	w2 := openWriter(t, dir, 0) // cuts the torn record
	appendN(t, w2, 2, 3)
	readN(t, c, 2, 3)
}

// A reader following a writer that rotates segments constantly sees every
// record once, in order: segments appear only with their whole header,
// and a segment is finished before the next exists.
func TestConcurrentReaderAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, nil)
	const n = 600
	w := openWriter(t, dir, 64) // a new segment every three records
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := w.Append([]byte(fmt.Sprintf("rec-%05d", i))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	readN(t, c, 0, n)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
