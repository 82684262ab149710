package filesink_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/replicate/filesink"
	"github.com/hakit/hakit/storage/memstore"
)

// Replicate a file log into a transactional target file: each batch and
// its position are committed together, so a later term (or a restart
// after a crash) continues exactly after the last committed record.
func Example() {
	dir, _ := os.MkdirTemp("", "filesink-example-")
	defer os.RemoveAll(dir)
	logDir, target := filepath.Join(dir, "log"), filepath.Join(dir, "mirror.log")

	w, _ := filelog.OpenWriter(logDir, filelog.WriterOptions{})
	end, _ := w.Append([]byte("alpha"), []byte("beta"), []byte("gamma"))
	_ = w.Close()

	sink, err := filesink.Open(target)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sink.Close()
	stream := &replicate.Stream{
		Source: &filelog.Source{Dir: logDir},
		Sink:   sink,
		Store:  memstore.New(),
		Key:    "mirror/checkpoint",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx, 1) }()
	for {
		// The target's committed position says when it has everything.
		if pos, _ := sink.Position(ctx); string(pos) == string(end) {
			break
		}
		select {
		case err := <-done: // Run ended before the target caught up
			fmt.Println("stream stopped:", err)
			cancel()
			return
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Println(err)
	}

	recs, _ := filesink.ReadRecords(target)
	for _, r := range recs {
		fmt.Println(string(r))
	}
	// Output:
	// alpha
	// beta
	// gamma
}
