package filesink_test

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

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// logRig is a file log source and a transactional file target, the
// deployment of examples/embed, with files a test can copy and remove.
type logRig struct {
	t           *testing.T
	dir, target string
	w           *filelog.Writer
	store       storage.Store
	data        [][]byte // every record written to the log
	sink        *filesink.Sink
	nextTok     fence.Token
}

func newLogRig(t *testing.T) *logRig {
	t.Helper()
	dir := t.TempDir()
	w, err := filelog.OpenWriter(filepath.Join(dir, "log"), filelog.WriterOptions{SegmentSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	r := &logRig{t: t, dir: dir, target: filepath.Join(dir, "target.log"), w: w, store: memstore.New(), nextTok: 1}
	r.open()
	return r
}

func (r *logRig) open() {
	r.t.Helper()
	if r.sink != nil {
		r.sink.Close()
	}
	s, err := filesink.Open(r.target)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sink = s
	r.t.Cleanup(func() { s.Close() })
}

func (r *logRig) write(n int) {
	r.t.Helper()
	for range n {
		d := []byte(fmt.Sprintf("change-%04d", len(r.data)))
		if _, err := r.w.Append(d); err != nil {
			r.t.Fatal(err)
		}
		r.data = append(r.data, d)
	}
	if err := r.w.Sync(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *logRig) stream() *replicate.Stream {
	return &replicate.Stream{Source: &filelog.Source{Dir: filepath.Join(r.dir, "log"), PollInterval: time.Millisecond},
		Sink: r.sink.Conditional(), Store: r.store, Key: "embed/checkpoint", HeartbeatInterval: -1, CheckpointRecords: 1}
}

// run runs a Stream until the target holds every record written, then
// stops it.
func (r *logRig) run() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	tok := r.nextTok
	r.nextTok++
	go func() { done <- r.stream().Run(ctx, tok) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := filesink.ReadRecords(r.target)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(got) >= len(r.data) {
			break
		}
		select {
		case err := <-done:
			r.t.Fatalf("Run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the target has %d of %d records", len(got), len(r.data))
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		r.t.Fatal(err)
	}
}

// backup copies the target's files; restore puts them back.
func (r *logRig) backup() map[string][]byte {
	r.t.Helper()
	files := map[string][]byte{}
	for _, p := range []string{r.target, r.target + ".state"} {
		b, err := os.ReadFile(p)
		if err != nil {
			r.t.Fatal(err)
		}
		files[p] = b
	}
	return files
}

func (r *logRig) restore(files map[string][]byte) {
	r.t.Helper()
	r.sink.Close()
	r.sink = nil
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.open()
}

func (r *logRig) checkTarget() {
	r.t.Helper()
	got, err := filesink.ReadRecords(r.target)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(got) != len(r.data) {
		r.t.Fatalf("the target has %d records, the source %d", len(got), len(r.data))
	}
	for i := range got {
		if !bytes.Equal(got[i], r.data[i]) {
			r.t.Fatalf("record %d: target %q, source %q", i, got[i], r.data[i])
		}
	}
}

// The target file is restored from a backup taken before the checkpoint
// moved on: the records in between are delivered again, and the target
// equals the source record for record.
func TestTargetRestoredFromBackup(t *testing.T) {
	r := newLogRig(t)
	r.write(10)
	r.run()
	saved := r.backup()
	r.write(30)
	r.run()
	r.restore(saved)
	r.write(5)
	r.run()
	r.checkTarget()
}

// The same, with the log's old segments removed by retention since the
// backup: the records between the target and the checkpoint are gone, and
// the Run refuses to start (ErrGap), leaving the target as restored.
func TestTargetRestoredBehindTrimmedLog(t *testing.T) {
	r := newLogRig(t)
	r.write(10)
	r.run()
	saved := r.backup()
	r.write(60)
	r.run()
	segs, err := filepath.Glob(filepath.Join(r.dir, "log", "*.log"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("want at least 3 segments, have %v (%v)", segs, err)
	}
	for _, seg := range segs[:2] {
		if err := os.Remove(seg); err != nil {
			t.Fatal(err)
		}
	}
	r.restore(saved)
	before, _ := filesink.ReadRecords(r.target)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.stream().Run(ctx, r.nextTok)
	if !errors.Is(err, replicate.ErrGap) || !errors.Is(err, filelog.ErrTruncated) || !strings.Contains(err.Error(), "embed/checkpoint") {
		t.Fatalf("Run behind a trimmed log: %v; want ErrGap naming the key", err)
	}
	after, _ := filesink.ReadRecords(r.target)
	if len(after) != len(before) {
		t.Fatalf("the refused Run changed the target from %d to %d records", len(before), len(after))
	}
}

// A target file that replaces the old one (a new file: a new sink ID) is
// refused until the checkpoint is pointed at it on purpose; then it gets
// every record.
func TestReplacedTargetNeedsRebuild(t *testing.T) {
	r := newLogRig(t)
	r.write(10)
	r.run()
	r.sink.Close()
	r.sink = nil
	for _, p := range []string{r.target, r.target + ".state"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	r.open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.stream().Run(ctx, r.nextTok); !errors.Is(err, replicate.ErrIdentity) {
		t.Fatalf("Run into a replaced target: %v; want ErrIdentity", err)
	}
	r.nextTok++
	if _, err := replicate.RebuildCheckpoint(ctx, r.store, "embed/checkpoint", r.nextTok, r.sink, replicate.CompareBytes, time.Now()); err != nil {
		t.Fatal(err)
	}
	r.nextTok++
	r.run()
	r.checkTarget()
}
