package filelog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
)

// Write a log with the Writer and read it back with the Source, then
// resume from a position.
func Example() {
	dir, _ := os.MkdirTemp("", "filelog-example-")
	defer os.RemoveAll(dir)
	logDir := filepath.Join(dir, "changes")

	w, err := filelog.OpenWriter(logDir, filelog.WriterOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	first, _ := w.Append([]byte("insert 1"))
	_, _ = w.Append([]byte("update 1"), []byte("delete 1"))
	_ = w.Sync()
	defer w.Close()

	ctx := context.Background()
	src := &filelog.Source{Dir: logDir}
	cur, _ := src.Open(ctx, replicate.Checkpoint{Pos: first}) // resume after the first record
	defer cur.Close()
	recs, _ := cur.Next(ctx, 10)
	for _, r := range recs {
		seg, off, _ := filelog.DecodePosition(r.Pos)
		fmt.Printf("%s (segment %d, offset %d)\n", r.Data, seg, off)
	}
	// Output:
	// update 1 (segment 1, offset 52)
	// delete 1 (segment 1, offset 68)
}
