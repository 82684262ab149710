package etcdstore_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/etcdstore"
	"github.com/hakit/hakit/storage/etcdstore/etcdtest"
	"go.etcd.io/etcd/server/v3/embed"
)

// BenchmarkPut compares a fenced Put (Store.Put: the fence check rides in
// the write's transaction) with the same write unfenced: Backend.Commit of
// one put with no conditions, which is one etcd transaction holding one
// put, over the same client to the same server with the same 256-byte
// value. It runs serially and with 16 concurrent writers, on a server that
// skips fsync (the server's CPU cost dominates, which is the hard case for
// the ratio) and on one that fsyncs every commit (the disk dominates, as
// in production).
//
// The two kinds run in alternating chunks of 32 writes, taking turns to go
// first, so that both see the same server state and the same load on
// the machine (a timing taken minutes apart on a shared machine compares
// the machine, not the code). Each op is one plain and one fenced write;
// the benchmark reports plain-ops/s, fenced-ops/s and their ratio,
// fenced/plain. The target is ratio >= 0.9.
func BenchmarkPut(b *testing.B) {
	value := make([]byte, 256)
	ctx := context.Background()
	for _, disk := range []struct {
		name  string
		fsync bool
	}{{"nofsync", false}, {"fsync", true}} {
		srv := etcdtest.Start(b, etcdtest.WithConfig(func(c *embed.Config) { c.UnsafeNoFsync = !disk.fsync }))
		cli := srv.Client(b)
		be := etcdstore.NewBackend(cli, "bench/plain/")
		st := etcdstore.New(cli, "bench/fenced/")
		plain := func(key string) error {
			_, err := be.Commit(ctx, nil, []storage.Op{{Key: key, Value: value}})
			return err
		}
		fenced := func(key string) error {
			_, err := st.Put(ctx, 7, key, value)
			return err
		}
		if err := fenced("warm"); err != nil { // creates the fence record
			b.Fatal(err)
		}

		for _, mode := range []struct {
			name    string
			writers int
		}{{"serial", 1}, {"parallel16", 16}} {
			b.Run(disk.name+"/"+mode.name, func(b *testing.B) {
				const chunk = 32 // writes per kind per turn
				var took [2]time.Duration
				kinds := [2]func(string) error{plain, fenced}
				b.ResetTimer()
				for turn, done := 0, 0; done < b.N; turn, done = turn+1, done+chunk {
					n := min(chunk, b.N-done)
					for i := range kinds {
						k := (i + turn) % 2 // alternate which kind goes first
						start := time.Now()
						if err := runWriters(mode.writers, n, kinds[k]); err != nil {
							b.Fatal(err)
						}
						took[k] += time.Since(start)
					}
				}
				plainRate := float64(b.N) / took[0].Seconds()
				fencedRate := float64(b.N) / took[1].Seconds()
				b.ReportMetric(plainRate, "plain-ops/s")
				b.ReportMetric(fencedRate, "fenced-ops/s")
				b.ReportMetric(fencedRate/plainRate, "ratio")
			})
		}
	}
}

// runWriters performs n writes spread over w goroutines, each on one of 64
// keys, and returns the first error.
func runWriters(w, n int, write func(key string) error) error {
	if w == 1 {
		for i := range n {
			if err := write("k" + strconv.Itoa(i%64)); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for g := range w {
		wg.Go(func() {
			for i := g; i < n; i += w {
				if err := write("k" + strconv.Itoa(i%64)); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
