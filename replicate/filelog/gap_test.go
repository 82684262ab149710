package filelog_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
)

// A reader that reaches the end of a segment whose successors were
// removed while later segments remain (a lagging reader overtaken by
// retention, or a segment lost by hand) must report the missing segment,
// not wait for it for ever as if the log were idle.
func TestMissingNextSegmentIsNamed(t *testing.T) {
	for _, gone := range [][]uint64{{2}, {2, 3}} {
		t.Run(filelog.SegmentName(gone[len(gone)-1]), func(t *testing.T) {
			dir := t.TempDir()
			w := openWriter(t, dir, 60) // a few records a segment
			appendN(t, w, 0, 20)
			segs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			if len(segs) < 4 {
				t.Fatalf("expected at least 4 segments, got %d", len(segs))
			}
			c := open(t, dir, filelog.EncodePosition(1, filelog.HeaderLen))
			for _, seg := range gone {
				if err := os.Remove(filepath.Join(dir, filelog.SegmentName(seg))); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var err error
			for err == nil {
				_, err = c.Next(ctx, 100)
			}
			if !errors.Is(err, filelog.ErrTruncated) || !strings.Contains(err.Error(), filelog.SegmentName(2)) {
				t.Fatalf("Next at the end of segment 1 with segment 2 gone = %v, want ErrTruncated naming %s", err, filelog.SegmentName(2))
			}
		})
	}
}

// A log whose first segment was removed (retention) cannot be read from
// its beginning: opening at the nil position must say so instead of
// starting silently at the oldest segment left.
func TestOpenAtBeginningOfTrimmedLogIsRefused(t *testing.T) {
	dir := t.TempDir()
	w := openWriter(t, dir, 60)
	appendN(t, w, 0, 20)
	if err := os.Remove(filepath.Join(dir, filelog.SegmentName(1))); err != nil {
		t.Fatal(err)
	}
	src := &filelog.Source{Dir: dir}
	c, err := src.Open(context.Background(), replicate.Checkpoint{})
	if err == nil {
		c.Close()
		t.Fatal("Open at the beginning of a log without segment 1 succeeded")
	}
	if !errors.Is(err, filelog.ErrTruncated) || !strings.Contains(err.Error(), "segment 1") {
		t.Fatalf("Open at the beginning: %v; want ErrTruncated naming segment 1", err)
	}
}

// Out-of-range options are refused with ErrConfig, naming every field.
func TestOptionsOutOfRange(t *testing.T) {
	if _, err := filelog.OpenWriter(t.TempDir(), filelog.WriterOptions{SegmentSize: -1}); !errors.Is(err, filelog.ErrConfig) ||
		!strings.Contains(err.Error(), "filelog: invalid config: SegmentSize: ") {
		t.Errorf("OpenWriter with a negative SegmentSize: %v", err)
	}
	_, err := (&filelog.Source{Dir: t.TempDir(), PollInterval: -1, ReadSize: -1}).Open(context.Background(), replicate.Checkpoint{})
	for _, field := range []string{"PollInterval", "ReadSize"} {
		if !errors.Is(err, filelog.ErrConfig) || !strings.Contains(err.Error(), "filelog: invalid config: "+field+": ") {
			t.Errorf("Open with negative options: %v; want it to name %s", err, field)
		}
	}
}
