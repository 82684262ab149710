package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
)

// generator appends a change stream to the source log at a steady rate.
type generator struct {
	w      *filelog.Writer
	stopc  chan struct{}
	done   chan error
	once   sync.Once
	result []byte
	err    error
}

// changeRecord is record n of the generated stream: unique and
// deterministic, so the check can tell a lost record from a duplicate.
func changeRecord(n uint64) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"account":%d,"delta":%d}`, n, n%97, int64(n%13)-6)
}

func startGenerator(c *demoCluster) (*generator, error) {
	// Small segments, so that the cursors cross segment boundaries too.
	w, err := filelog.OpenWriter(c.sourceDir, filelog.WriterOptions{SegmentSize: 256 << 10})
	if err != nil {
		return nil, err
	}
	g := &generator{w: w, stopc: make(chan struct{}), done: make(chan error, 1)}
	const tick = 10 * time.Millisecond
	perTick := max(1, c.opts.Rate/int(time.Second/tick))
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		batch := make([][]byte, perTick)
		for {
			select {
			case <-g.stopc:
				g.done <- nil
				return
			case <-t.C:
			}
			n := c.generated.Load()
			for i := range batch {
				batch[i] = changeRecord(n + uint64(i) + 1)
			}
			if _, err := w.Append(batch...); err != nil {
				g.done <- err
				return
			}
			c.generated.Add(uint64(perTick))
		}
	}()
	return g, nil
}

// stop stops appending, closes the log and returns its end position.
// Later calls return the first call's result.
func (g *generator) stop() ([]byte, error) {
	g.once.Do(func() {
		close(g.stopc)
		err := <-g.done
		g.result = g.w.Position()
		if cerr := g.w.Close(); err == nil {
			err = cerr
		}
		g.err = err
	})
	return g.result, g.err
}

// verify reads the source back through its own Source and the target
// through the sink's reader, and fills in the counts.
func verify(ctx context.Context, c *demoCluster, n int, res *DemoResult) error {
	src, err := readSource(ctx, c.sourceDir, n)
	if err != nil {
		return err
	}
	dst, err := filesink.ReadRecords(c.sinkPath)
	if err != nil {
		return err
	}
	res.Source, res.Target = len(src), len(dst)
	res.Lost, res.Duplicated, res.Equal = compareRecords(src, dst)
	return nil
}

// compareRecords counts the source records missing from the target and
// the target's extra copies, and reports whether the target is exactly
// the source, in order.
func compareRecords(src, dst [][]byte) (lost, duplicated int, equal bool) {
	seen := make(map[string]int, len(dst))
	for _, r := range dst {
		seen[string(r)]++
	}
	for _, r := range src {
		if seen[string(r)] == 0 {
			lost++
		}
	}
	for _, k := range seen {
		duplicated += k - 1
	}
	equal = len(src) == len(dst)
	for i := 0; equal && i < len(src); i++ {
		equal = string(src[i]) == string(dst[i])
	}
	return lost, duplicated, equal
}

// readSource reads the first n records of the log in dir.
func readSource(ctx context.Context, dir string, n int) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cur, err := (&filelog.Source{Dir: dir}).Open(ctx, replicate.Checkpoint{})
	if err != nil {
		return nil, err
	}
	defer cur.Close()
	out := make([][]byte, 0, n)
	for len(out) < n {
		recs, err := cur.Next(ctx, n-len(out))
		if err != nil {
			return nil, fmt.Errorf("read source after %d records: %w", len(out), err)
		}
		for _, r := range recs {
			out = append(out, r.Data)
		}
	}
	return out, nil
}

// printSummary prints the result as a short table.
func printSummary(w io.Writer, r *DemoResult) {
	var terms []string
	for _, t := range r.Terms {
		terms = append(terms, fmt.Sprintf("%s:%d", t.ID, t.Token))
	}
	verdict := "OK: target == source, record for record"
	if !r.Equal {
		verdict = "FAILED: target differs from source"
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "summary")
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "  %-12s %s\n", k, fmt.Sprintf(format, args...)) }
	row("members", "%s (embedded Raft on loopback)", strings.Join(r.Members, " "))
	row("terms", "%s (member:token, in order)", strings.Join(terms, " -> "))
	if r.Killed != "" {
		row("failover", "%s after kill -9 %s (elected %s; to first record applied)", ms(r.Failover), r.Killed, ms(r.Elected))
	}
	if r.SwitchTo != "" {
		row("switchover", "%s to %s (request to first record applied)", ms(r.Switchover), r.SwitchTo)
	}
	if r.Paused != "" {
		row("pause", "%s after %s paused; its held write (token %d) refused as stale", ms(r.PauseFailover), r.Paused, r.Fenced.Token)
	}
	if r.Source > 0 || r.Target > 0 {
		row("records", "%d source, %d target", r.Source, r.Target)
		row("lost", "%d", r.Lost)
		row("duplicated", "%d", r.Duplicated)
		row("result", "%s", verdict)
	}
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
