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
// value. It runs with one writer and with 16 concurrent writers, on a
// server that skips fsync (the server's CPU cost dominates, the hard case
// for the ratio) and on one that fsyncs every commit (the disk dominates,
// as in production).
//
// Every writer alternates plain and fenced writes op by op and times each,
// so both kinds see the same server state and the same load on the
// machine; a timing taken seconds apart on a shared machine compares the
// machine, not the code. With w writers each kind's rate is
// w / mean latency (Little's law; exact for one writer). The benchmark
// reports plain-ops/s, fenced-ops/s and ratio = fenced/plain; one op is
// one write of each kind. The target is ratio >= 0.9.
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
		kinds := [2]func(key string) error{
			func(key string) error {
				_, err := be.Commit(ctx, nil, []storage.Op{{Key: key, Value: value}})
				return err
			},
			func(key string) error {
				_, err := st.Put(ctx, 7, key, value)
				return err
			},
		}
		if err := kinds[1]("warm"); err != nil { // creates the fence record
			b.Fatal(err)
		}

		for _, writers := range []int{1, 16} {
			name := "serial"
			if writers > 1 {
				name = "parallel" + strconv.Itoa(writers)
			}
			b.Run(disk.name+"/"+name, func(b *testing.B) {
				var (
					mu    sync.Mutex
					took  [2]time.Duration
					wg    sync.WaitGroup
					errMu sync.Mutex
					first error
				)
				b.ResetTimer()
				for g := range writers {
					wg.Go(func() {
						var local [2]time.Duration
						for i := g; i < b.N; i += writers {
							key := "k" + strconv.Itoa(i%64)
							for j := range 2 {
								k := (i + j) % 2 // alternate which kind goes first
								start := time.Now()
								if err := kinds[k](key); err != nil {
									errMu.Lock()
									first = err
									errMu.Unlock()
									return
								}
								local[k] += time.Since(start)
							}
						}
						mu.Lock()
						took[0] += local[0]
						took[1] += local[1]
						mu.Unlock()
					})
				}
				wg.Wait()
				if first != nil {
					b.Fatal(first)
				}
				plainRate := float64(writers*b.N) / took[0].Seconds()
				fencedRate := float64(writers*b.N) / took[1].Seconds()
				b.ReportMetric(plainRate, "plain-ops/s")
				b.ReportMetric(fencedRate, "fenced-ops/s")
				b.ReportMetric(fencedRate/plainRate, "ratio")
			})
		}
	}
}
