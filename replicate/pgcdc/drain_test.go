package pgcdc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
)

// BenchmarkDrain reads a load from a slot without a sink: the source's
// own rate, against pg_recvlogical (PostgreSQL's own client, writing the
// pgoutput stream to a file) on an identical slot. The load is decoded
// once beforehand, so that neither pays for reading the WAL first.
func BenchmarkDrain(b *testing.B) {
	srv := pgcdctest.Start(b, pgcdctest.Options{})
	srv.Exec(b, "postgres", `CREATE TABLE t (id bigint PRIMARY KEY, name text, qty int, price numeric(10,2), at timestamptz)`, `CREATE PUBLICATION p FOR TABLE t`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, srv.SuperDSN())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	const rows = 100000
	var hkRate, rlRate float64
	for i := 0; b.Loop(); i++ {
		hs, rs, ws := fmt.Sprintf("h%d", i), fmt.Sprintf("r%d", i), fmt.Sprintf("w%d", i)
		srv.Exec(b, "postgres", `TRUNCATE t`, `SELECT pg_create_logical_replication_slot('`+hs+`', 'pgoutput')`,
			`SELECT pg_create_logical_replication_slot('`+rs+`', 'pgoutput')`, `SELECT pg_create_logical_replication_slot('`+ws+`', 'pgoutput')`)
		for from := 1; from <= rows; from += 50 {
			if _, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO t SELECT g, 'n' || g, g, g, now() FROM generate_series(%d, %d) g`, from, from+49)); err != nil {
				b.Fatal(err)
			}
		}
		var end LSN
		if err := c.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&end); err != nil {
			b.Fatal(err)
		}
		srv.Exec(b, "postgres", `SELECT count(*) FROM pg_logical_slot_get_binary_changes('`+ws+`', NULL, NULL, 'proto_version', '1', 'publication_names', 'p')`)

		src, err := New(Config{ConnString: srv.SuperDSN(), Slot: hs, Publication: "p"})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		cur, err := src.Open(ctx, replicate.Checkpoint{})
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < rows; {
			recs, err := cur.Next(ctx, 5000)
			if err != nil {
				b.Fatal(err)
			}
			n += len(recs)
		}
		hk := time.Since(start)
		cur.Close()

		out := filepath.Join(b.TempDir(), "out")
		start = time.Now()
		cmd := exec.CommandContext(ctx, filepath.Join(pgcdctest.BinDir(), "pg_recvlogical"), "-d", srv.SuperDSN(), "-S", rs, "--start", "-f", out,
			"-o", "proto_version=1", "-o", "publication_names=p", "-E", end.String(), "--no-loop")
		cmd.Env = append(os.Environ(), "HOME="+b.TempDir())
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pg_recvlogical: %v %s", err, o)
		}
		rl := time.Since(start)
		srv.Exec(b, "postgres", `SELECT pg_drop_replication_slot('`+hs+`')`, `SELECT pg_drop_replication_slot('`+rs+`')`, `SELECT pg_drop_replication_slot('`+ws+`')`)
		hkRate += rows / hk.Seconds()
		rlRate += rows / rl.Seconds()
		b.Logf("hakit %v (%.0f rows/s), pg_recvlogical %v (%.0f rows/s)", hk, rows/hk.Seconds(), rl, rows/rl.Seconds())
	}
	b.ReportMetric(hkRate/float64(b.N), "hakit-rows/s")
	b.ReportMetric(rlRate/float64(b.N), "recvlogical-rows/s")
}
